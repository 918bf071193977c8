"""Hostile links for the URL parameters of issues 11-13 (trainer and its savers, generate cache and
generated tokens, vLLM engine flags, parallelism, audio share, stack): every value is corrected with
a warning naming the parameter, never an exception, and the corrected view survives its own link.

`tests/test_hostile_pages.py` fuzzes the parameters that existed before; this file covers the ones
added since. The pure part (parse -> reconcile -> Workload -> link -> parse) runs many examples in
well under a second; the pages run through AppTest a bounded number of times.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from ui.state import MAIN_ALWAYS, MAIN_PARAMS, encode_params, main_workload, read_params, reconcile_main, resolve_trainer_values, trainer_relative

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")

# The parameters test_hostile_pages.py fuzzes already; everything else in MAIN_PARAMS landed since.
OLD = {"model", "precision", "mode", "context", "batch", "headroom", "gpus", "lora_rank", "runtime", "gpu_util", "kv_dtype", "my_gpu", "my_gpus"}
NEW = tuple(p.name for p in MAIN_PARAMS if p.name not in OLD)
HOSTILE = ["1e999", "NaN", "-1", "0", "1.5", "65536", "", "maybe", "<b>x</b>", "a\x00b", "[]", "%00", "x" * 300, "static", "quantized", "vllm",
           "int4", "fp8", "lora", "qlora", "full", "unsloth", "torchtune", "0.10", "0.99", "torch-1.12", "fsdp", "tp", "liger", "packed",
           "prompt-tuning", "oft", "vera", "optimizer+params", "adamw-8bit", "fused-linear-liger", "4096", "100000"]
MODES = ["inference", "lora", "qlora", "full"]


def _choices(name: str) -> list[str]:
    p = next(p for p in MAIN_PARAMS if p.name == name)
    return [str(c) for c in p.choices]


# Hostile text, or a valid value of some parameter (valid values combine into the contradictions reconcile_main resolves).
VALUE = st.one_of(st.sampled_from(HOSTILE), st.sampled_from([c for n in NEW for c in _choices(n)] or HOSTILE), st.text(max_size=12))
LINKS = st.dictionaries(st.sampled_from((*NEW, "mode", "precision", "runtime", "context")), VALUE, min_size=1, max_size=10)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=LINKS)
def test_new_parameters_parse_reconcile_and_survive_their_link(query: dict[str, str]) -> None:
    values, _ = read_params(MAIN_PARAMS, query)
    values, _ = reconcile_main(values)
    main_workload(values)  # the engine accepts every reconciled view (an InvalidWorkloadError here is an error box on the page)
    url_values, always = trainer_relative(values)
    link = encode_params(MAIN_PARAMS, url_values, always=MAIN_ALWAYS + always)
    again, notes = read_params(MAIN_PARAMS, link)
    again, fixes = reconcile_main(again)
    assert not notes and not fixes, (link, notes, fixes)
    assert resolve_trainer_values(again) == resolve_trainer_values(values), link


def test_every_new_parameter_with_a_hostile_value_is_one_warning_naming_it() -> None:
    at = AppTest.from_file("../pages/0_Calculator.py", default_timeout=120)
    at.query_params["mode"] = "lora"  # the trainer's settings are on screen only for fine-tuning
    for name in NEW:
        at.query_params[name] = "<b>x</b>"
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    for name in NEW:
        if name in ("lora_rank",):
            continue
        named = [w for w in warnings if f"URL parameter {name}=" in w]
        # trained_frac is a float: '<b>x</b>' is "not a number"; every choice / bool / int parameter says its own rule.
        assert len(named) == 1, (name, warnings)
    assert at.query_params["mode"] in ("lora", ["lora"])
    for name in NEW:  # the corrected link carries no hostile text
        assert "<b>" not in str(at.query_params.get(name, "")), name


# Bounded: three mixed links (AppTest costs seconds per run on a loaded 2-core box), each mixing hostile text
# with valid values that contradict each other, on the pages that read the main page's parameters.
MIXED_LINKS = [
    ("../pages/0_Calculator.py", {"mode": "inference", "cache": "static", "runtime": "vllm", "eager": "1", "gen": "1e9", "max_num_seqs": "-3",
                                  "vllm_version": "0.99", "max_batched": "NaN", "audio_share": "2", "stack": "<b>", "parallelism": "zero3"}),
    ("../pages/0_Calculator.py", {"mode": "full", "precision": "int4", "trainer": "torchtune", "optimizer": "sgd", "ckpt_every": "0",
                                  "offload": "maybe", "opt_in_bwd": "1", "paged_opt": "1", "packing": "x" * 300, "cpu_offload": "optimizer+params",
                                  "runtime": "vllm", "cache": "quantized", "kv_dtype": "bf16"}),
    ("../pages/3_Verification.py", {"mode": "qlora", "precision": "fp16", "trainer": "1e999", "peft": "prompt-tuning", "trained_frac": "0",
                                    "loss": "fused-linear-liger", "norm_kernel": "liger", "mlp_kernel": "%00", "gen": "5", "cache": "static"}),
]


@pytest.mark.parametrize(("page", "query"), MIXED_LINKS, ids=["calculator-vllm-static", "calculator-full-torchtune", "verification-qlora"])
def test_mixed_new_parameters_never_raise_on_the_pages(page: str, query: dict[str, str]) -> None:
    at = AppTest.from_file(page, default_timeout=120)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, query
    # The one error a valid link may show: the trainer cannot run on this model (TRL's fused LM head on higgs-audio's two heads).
    errors = [e.value for e in at.error if "fails at its first step" not in e.value]
    assert not errors, errors
    assert at.warning or at.info  # each correction is said
    if page.endswith("0_Calculator.py"):
        assert any(m.label.startswith("Peak VRAM") for m in at.metric)  # the corrected view is computed, not abandoned


@pytest.mark.parametrize("trainer", ["<script>", "unsloth", "custom", "1e999"])
def test_compare_page_trainer_link(trainer: str) -> None:
    at = AppTest.from_file("../pages/1_Compare.py", default_timeout=120)
    at.query_params["what"] = "settings"
    at.query_params["settings"] = "fp16/lora,int4/qlora"
    at.query_params["trainer"] = trainer
    at.run()
    assert not at.exception
    # The link's correction is a warning naming the trainer; the model's own "fails at its first step" (Unsloth's fused
    # loss on higgs-audio's two heads, said under the Compare table) is not one.
    corrections = [w.value for w in at.warning if "trainer" in w.value and "fails at its first step" not in w.value]
    assert bool(corrections) == (trainer not in ("unsloth", "custom"))
