"""AppTest of the navigation entry and of the Compare and GPUs & prices pages: names and URL paths of
every page, default views, links, tampered parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui.loaders
from calculator.errors import ModelNotFoundError
from calculator.estimate import estimate
from calculator.pricing import data_issues
from calculator.resolve import resolve_model
from calculator.trainers import preset_workload
from calculator.units import GiB
from calculator.workload import Workload
from ui.navigation import NAV_PAGES

ROOT = Path(__file__).resolve().parent.parent
CALCULATOR = "../pages/0_Calculator.py"
COMPARE = "../pages/1_Compare.py"
GPUS = "../pages/2_GPUs_and_prices.py"


pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


def run_page(path: str, **params: str) -> AppTest:
    at = AppTest.from_file(path, default_timeout=30)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


# --- navigation -------------------------------------------------------------------------------


def test_navigation_lists_every_page_file_with_the_old_url_paths():
    # Every file in pages/ is a page (st.navigation disables discovery, so an unlisted file would be dead code),
    # the main page is first and named "Calculator", and each URL path is the one pages/ discovery gave it.
    assert sorted(p.path for p in NAV_PAGES) == sorted(f"pages/{f.name}" for f in (ROOT / "pages").glob("*.py"))
    assert [(p.title, p.url_path) for p in NAV_PAGES] == [
        ("Calculator", ""), ("Compare", "Compare"), ("GPUs & prices", "GPUs_and_prices"), ("Verification", "Verification"),
    ]
    assert [p.default for p in NAV_PAGES] == [True, False, False, False]


def test_navigation_entry_opens_main_page_and_switches_with_query_params():
    at = AppTest.from_file("../app.py", default_timeout=30)
    at.query_params["precision"] = "int4"
    at.query_params["context"] = "8192"
    at.run()
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["VRAM & GPU cost calculator"]
    # A shared link's parameters reach the main page through the navigation entry.
    assert at.selectbox(key="main.precision").value == "int4"
    assert at.query_params["context"] == "8192"
    for nav in NAV_PAGES[1:]:
        at.switch_page(nav.path).run()
        assert not at.exception, nav.path
        assert at.title, nav.path
    at.switch_page(NAV_PAGES[0].path).run()
    assert not at.exception and [t.value for t in at.title] == ["VRAM & GPU cost calculator"]


def test_calculator_page_file_runs_on_its_own():
    at = run_page(CALCULATOR, model="Qwen/Qwen2.5-7B", mode="lora")
    assert not at.exception and not at.error
    assert at.text_input(key="main.model").value == "Qwen/Qwen2.5-7B"
    assert at.query_params["mode"] == "lora"


def test_calculator_link_with_oft_vera_and_selective_checkpointing():
    # A link naming peft's OFT (block 64) or VeRA (rank 64) and the selective policy fills their widgets and survives rerun.
    at = run_page(CALCULATOR, model="meta-llama/Llama-3.2-3B", mode="lora", precision="bf16", peft="oft", oft_block="64",
                  grad_ckpt="1", ckpt_policy="selective-op")
    assert not at.exception and not at.error
    assert at.selectbox(key="main.peft").value == "oft" and at.number_input(key="main.oft_block").value == 64
    assert not at.number_input(key="main.oft_block").disabled and at.number_input(key="main.vera_rank").disabled
    assert at.selectbox(key="main.ckpt_policy").value == "selective-op"
    assert at.query_params["oft_block"] == "64" and at.query_params["ckpt_policy"] == "selective-op"
    vera = run_page(CALCULATOR, model="meta-llama/Llama-3.2-3B", mode="lora", peft="vera", vera_rank="64")
    assert not vera.exception and not vera.error and vera.number_input(key="main.vera_rank").value == 64


# --- Compare ------------------------------------------------------------------------------------


def compare_rows(at: AppTest) -> list[dict]:
    return at.dataframe[0].value.to_dict("records")


def test_compare_default_models_match_engine():
    at = run_page(COMPARE)
    assert not at.exception and not at.error
    rows = compare_rows(at)
    assert len(rows) == 3
    for row, model_id in zip(rows, ("bosonai/higgs-audio-v2-generation-3B-base", "meta-llama/Llama-3.2-3B", "Qwen/Qwen2.5-7B"), strict=True):
        assert row["Peak VRAM (GiB)"] == round(estimate(resolve_model(model_id).spec, Workload()).total_bytes / GiB, 2)
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["data"][-1]["x"] == [r["Compared"] for r in rows]
    assert all(b.label.startswith("+ ") for b in at.button) and len(at.button) == 5  # similar-model suggestions (name only; full id in help)


def test_compare_settings_link_and_tampering():
    at = run_page(COMPARE, what="settings", model="Qwen/Qwen2.5-7B", settings="fp16/inference,int4/qlora,fp7/x", context="2048", batch="zero")
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "fp7/x" in warnings and "batch=" in warnings
    rows = compare_rows(at)
    assert [r["Compared"] for r in rows] == ["fp16/inference", "int4/qlora"]
    spec = resolve_model("Qwen/Qwen2.5-7B").spec
    # Fine-tuning rows assume TRL's SFTTrainer unless the page's trainer says otherwise (calculator/trainers.py).
    qlora = preset_workload("trl-sft", mode="qlora", precision="int4", context_length=2048)
    assert rows[1]["Peak VRAM (GiB)"] == round(estimate(spec, qlora).total_bytes / GiB, 2)


def test_compare_add_suggested_model_and_unknown_model(monkeypatch):
    real = ui.loaders.resolve_model

    def fake(ref, **kw):
        if ref == "nobody/nothing":
            raise ModelNotFoundError("nobody/nothing was not found.")
        return real(ref, **kw)

    monkeypatch.setattr(ui.loaders, "resolve_model", fake)
    at = run_page(COMPARE, models="Qwen/Qwen2.5-7B,nobody/nothing")
    assert not at.exception
    assert "not found" in at.error[0].value
    assert len(compare_rows(at)) == 1
    at.button[0].click().run()
    assert not at.exception
    assert len(compare_rows(at)) == 2


def test_gpus_page_default_and_issues():
    at = run_page(GPUS)
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert len(table) == 39 and "Usable (GiB, nvidia-smi)" in table.columns
    assert any(e.label.startswith(f"Data issues ({len(data_issues())})") for e in at.expander)
    assert [h.value for h in at.header][:2] == ["GPU catalog", "Your negotiated prices"]


def test_gpus_page_filters_and_rates_from_link():
    at = run_page(GPUS, vendor="AMD", min_gib="200", rates="mi300x:1.25,bogus:3")
    assert not at.exception
    names = list(at.dataframe[0].value["GPU"])
    assert names == ["MI325X", "MI355X"]
    assert any("bogus" in w.value for w in at.warning)
    assert at.query_params["rates"] == "mi300x:1.25"


def test_gpus_page_set_rate_flows_into_main_page_ranking():
    at = run_page(GPUS)
    at.selectbox(key="gpus.rate_gpu").set_value("rtx-4060-ti-16gb")
    at.number_input(key="gpus.rate_usd").set_value(0.01)
    at.button(key="gpus.set_rate").click().run()
    assert at.query_params["rates"] == "rtx-4060-ti-16gb:0.01"
    # The main page of the same link ranks with the rate.
    main = AppTest.from_file("../app.py", default_timeout=30)
    main.query_params["rates"] = "rtx-4060-ti-16gb:0.01"
    main.run()
    assert not main.exception
    assert next(m.value for m in main.metric if m.label.startswith("Cheapest")) == "$0.01/hr"


def test_gpus_page_tampered_params():
    at = run_page(GPUS, vendor="Foo", min_gib="-3", q="<script>", gpu="../../x", live="maybe", rates="x" * 5000)
    assert not at.exception
    assert len(at.warning) >= 4


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _text_input(at: AppTest, label: str):
    return next(t for t in at.text_input if t.label == label)


def test_gpus_page_add_gpu_validates_then_adds():
    at = run_page(GPUS)
    _text_input(at, "GPU name").set_value("My card")
    _button(at, "Add GPU").click().run()
    assert not at.exception
    assert "needs an `id` and a `name`" in at.error[0].value
    _text_input(at, "GPU id").set_value("my-card")
    _button(at, "Add GPU").click().run()
    assert not at.exception and not at.error
    assert "My card" in list(at.dataframe[0].value["GPU"])


def test_live_prices_fall_back_to_bundled_with_a_note(monkeypatch):
    import calculator.pricing

    def offline(timeout):
        raise ImportError("gpuhunt")

    monkeypatch.setattr(calculator.pricing, "_gpuhunt_fetch", offline)
    monkeypatch.setenv("VRAM_CALC_CACHE", "/nonexistent-cache-dir-for-tests")
    at = run_page(GPUS, live="1")
    assert not at.exception
    assert at.toggle(key="gpus.live").value is True
    assert any("bundled price snapshot" in c.value for c in at.caption)
    assert at.query_params["live"] == "1"


# --- number formatting ----------------------------------------------------------------------------


def _display_values(element):
    """What the grid shows (the Styler's display values), not the numbers under it."""
    import pyarrow as pa

    return pa.ipc.open_stream(element.proto.arrow_data.styler.display_values).read_pandas()


@pytest.mark.parametrize(("path", "columns"), [
    (CALCULATOR, ("GiB", "GB")),
    (COMPARE, ("Peak VRAM (GiB)", "Peak VRAM (GB)", "Weights (GiB)", "KV cache (GiB)", "$/hr")),
    (GPUS, ("Usable (GiB, nvidia-smi)", "Cheapest $/GPU-hr")),
])
def test_memory_and_price_columns_show_two_decimals(path: str, columns: tuple[str, ...]):
    """The breakdown showed "0.3" GB beside "0.47" (the grid trims trailing zeros): every memory and price cell now
    carries two decimals, while the value under it stays a number."""
    import re

    at = run_page(path)
    assert not at.exception
    frame = next(d for d in at.dataframe if set(columns) <= set(d.value.columns))
    shown = _display_values(frame)
    for col in columns:
        cells = [c for c in shown[col] if c != "—"]
        assert cells and all(re.fullmatch(r"[\d,]+\.\d\d", c) for c in cells), (col, cells)
        assert frame.value[col].dtype.kind == "f"  # sortable numbers under the display


def test_compare_says_which_trainer_a_fine_tuning_row_is_sized_for():
    """Compare sized higgs-audio's LoRA row as HF Trainer (TRL cannot start on its two heads) with nothing saying so."""
    at = run_page(COMPARE, mode="lora")
    assert not at.exception
    frame = at.dataframe[0].value.set_index("Compared")
    assert frame.loc["higgs-audio-v2-generation-3B-base", "Trainer sized"] == "HF Trainer (chosen trainer cannot start)"
    assert frame.loc["Llama-3.2-3B", "Trainer sized"] == "TRL SFTTrainer"
    warnings = [w.value for w in at.warning if "fails at its first step" in w.value]
    assert len(warnings) == 1 and warnings[0].startswith("higgs-audio-v2-generation-3B-base: TRL SFTTrainer fails")
    spec = resolve_model("bosonai/higgs-audio-v2-generation-3B-base").spec
    peak = estimate(spec, preset_workload("hf-trainer", mode="lora", gradient_checkpointing=True, master_weights=True)).total_bytes
    assert frame.loc["higgs-audio-v2-generation-3B-base", "Peak VRAM (GiB)"] == round(peak / GiB, 2)
