"""Sample lengths as input: the library's reader and summary, the CLI options, the `lengths=` link
and the boxes on the main and Compare pages (AppTest), and the Verification page carrying them."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from calculator.cli import main
from calculator.errors import InvalidWorkloadError
from calculator.lengths import MAX_LINK_CHARS, MAX_SUMMARY_POINTS, describe_lengths, parse_lengths, summarise_lengths
from calculator.report import build_plan
from calculator.resolve import resolve_model
from calculator.trainers import preset_workload
from calculator.units import GiB
from ui.state import MAIN_PARAMS, read_params

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")
SEED = "meta-llama/Llama-3.2-3B-Instruct"


def test_parse_reads_any_separator_and_refuses_what_is_not_a_length():
    assert parse_lengths("120, 340 512\n7;[9]") == (120, 340, 512, 7, 9)
    assert parse_lengths("[1, 2, 3]") == (1, 2, 3) and parse_lengths("  ") == ()
    for bad in ("12, x", "1.5", "-3", "0", "99999999999"):
        with pytest.raises(InvalidWorkloadError):
            parse_lengths(bad)
    with pytest.raises(InvalidWorkloadError, match="characters"):
        parse_lengths("1," * 600, max_chars=MAX_LINK_CHARS)


def test_summary_keeps_the_shortest_and_the_longest():
    assert summarise_lengths((5, 1, 3)) == (1, 3, 5)
    lengths = tuple(range(1, 1001))
    s = summarise_lengths(lengths)
    assert len(s) == MAX_SUMMARY_POINTS and s[0] == 1 and s[-1] == 1000 and list(s) == sorted(s)
    assert s[MAX_SUMMARY_POINTS // 2] == 517  # nearest rank 16/31 of the way: index round(16 * 999 / 31) = 516, value 517
    assert describe_lengths((100, 200, 300)) == "3 lengths: shortest 100, median 200, p90 300, longest 300 tokens"


def test_link_parameter_is_normalised_summarised_and_bounded():
    values, notes = read_params(MAIN_PARAMS, {"lengths": "512,100, 2048"})
    assert values["lengths"] == "100,512,2048" and not notes
    values, notes = read_params(MAIN_PARAMS, {"lengths": ",".join(str(n) for n in range(100, 200))})
    assert len(values["lengths"].split(",")) == MAX_SUMMARY_POINTS and "summarised" in notes[0]
    for hostile in ("x" * (MAX_LINK_CHARS + 1), "5,abc", "0", "1e9"):
        values, notes = read_params(MAIN_PARAMS, {"lengths": hostile})
        assert values["lengths"] == "" and len(notes) == 1 and "lengths" in notes[0]


def _lora(**kw):
    return preset_workload("trl-sft", mode="lora", precision="bf16", context_length=2048, batch_size=4, **kw)


def test_cli_options_and_json(tmp_path, capsys):
    assert main(["estimate", SEED, "--offline", "--json", "--mode", "lora", "--precision", "bf16", "--context", "2048", "--batch", "4",
                 "--sample-lengths", "300,700,1200,2048"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"]["sample_lengths"] == [300, 700, 1200, 2048]
    spec = resolve_model(SEED, offline=True).spec
    expected = build_plan(spec, _lora(sample_lengths=(300, 700, 1200, 2048))).estimate
    assert data["total_bytes"] == expected.total_bytes
    # A file of lengths is read and summarised (the quantiles of 1..3000 keep 1 and 3000).
    path = tmp_path / "lengths.txt"
    path.write_text("\n".join(str(n) for n in range(1, 3001)))
    assert main(["estimate", SEED, "--offline", "--json", "--mode", "lora", "--sample-lengths-file", str(path)]) == 0
    lengths = json.loads(capsys.readouterr().out)["inputs"]["sample_lengths"]
    assert len(lengths) == MAX_SUMMARY_POINTS and (lengths[0], lengths[-1]) == (1, 3000)
    path.write_text("12, twelve")
    assert main(["estimate", SEED, "--offline", "--mode", "lora", "--sample-lengths-file", str(path)]) != 0
    assert "whole token counts" in capsys.readouterr().err


def _captions(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


def test_main_page_link_sizes_the_distribution_and_says_so():
    at = AppTest.from_file("../app.py", default_timeout=60)
    for k, v in {"model": SEED, "mode": "lora", "precision": "bf16", "context": "2048", "batch": "4", "lengths": "2048,300,700,1200"}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception and not at.warning
    assert at.text_area(key="main.lengths").value == "300,700,1200,2048"
    assert "4 lengths: shortest 300" in _captions(at) and "Allocator cache:" in _captions(at)
    spec = resolve_model(SEED).spec
    plan = build_plan(spec, _lora(sample_lengths=(300, 700, 1200, 2048)))
    peak = next(m.value for m in at.metric if m.label.startswith("Peak VRAM"))
    assert peak == f"{plan.estimate.total_bytes / GiB:,.2f} GiB"
    assert at.query_params["lengths"] == "300,700,1200,2048"


def test_main_page_box_summarises_a_pasted_list_and_the_link_follows():
    at = AppTest.from_file("../app.py", default_timeout=60)
    for k, v in {"model": SEED, "mode": "lora", "precision": "bf16", "context": "2048"}.items():
        at.query_params[k] = v
    at.run()
    before = next(m.value for m in at.metric if m.label.startswith("Peak VRAM"))
    at.text_area(key="main.lengths").input("\n".join(str(n) for n in range(64, 2049, 8))).run()
    assert not at.exception
    summary = at.text_area(key="main.lengths").value.split(",")
    assert len(summary) == MAX_SUMMARY_POINTS and (summary[0], summary[-1]) == ("64", "2048")
    assert at.query_params["lengths"] == ",".join(summary)
    assert next(m.value for m in at.metric if m.label.startswith("Peak VRAM")) != before
    at.text_area(key="main.lengths").input("12, twelve").run()
    assert not at.exception and any("whole token counts" in e.value for e in at.error)


def test_compare_page_applies_the_lengths_to_fine_tuning_rows():
    at = AppTest.from_file("../pages/1_Compare.py", default_timeout=60)
    for k, v in {"what": "settings", "model": SEED, "settings": "bf16/lora", "context": "2048", "batch": "4", "lengths": "300,2048"}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception and not at.error
    assert at.text_input(key="compare.lengths").value == "300,2048"
    row = at.dataframe[0].value.iloc[0]
    spec = resolve_model(SEED).spec
    expected = build_plan(spec, _lora(sample_lengths=(300, 2048))).estimate.total_bytes
    assert row["Peak VRAM (GiB)"] == round(expected / GiB, 2)


def test_verification_page_carries_the_lengths_from_the_link():
    at = AppTest.from_file("../pages/3_Verification.py", default_timeout=60)
    for k, v in {"model": SEED, "mode": "lora", "precision": "bf16", "context": "2048", "lengths": "300,2048"}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception
    assert "sample lengths" in _captions(at)
    assert "&lengths=300,2048)" in " ".join(m.value for m in at.markdown)  # the link back to the main page keeps them
