"""AppTest of the Verification page: settings from the main page's URL, a sized-down trace whose
table shows `run_verification`'s numbers, size limits, and the no-GPU / bad-input paths."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from calculator.resolve import resolve_model
from calculator.verify import comparison_table, run_verification
from calculator.workload import Workload

PAGE = "../pages/3_Verification.py"
LLAMA = "meta-llama/Llama-3.2-3B"


pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


def open_page(**params: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_settings_come_from_the_main_page_url() -> None:
    at = open_page(model=LLAMA, precision="bf16", mode="lora", context="256", batch="2", lora_targets="attention")
    assert not at.exception
    assert at.text_input(key="verify.model").value == LLAMA
    assert at.selectbox(key="verify.mode").value == "lora"
    assert at.selectbox(key="verify.precision").value == "bf16"
    assert at.number_input(key="verify.context").value == 256
    assert at.number_input(key="verify.batch").value == 2
    assert any("LoRA targets attention" in c.value for c in at.caption)  # a main-page setting without a widget here
    assert at.checkbox(key="verify.sized_down").value is True


@pytest.mark.trace
def test_sized_down_trace_table_matches_run_verification() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    at = open_page(model=LLAMA, precision="bf16", mode="inference", context="256", batch="1")
    assert not at.exception
    at.button(key="verify.run").click().run()
    assert not at.exception and not at.error
    shown = at.dataframe[0].value
    spec = resolve_model(LLAMA, offline=True).spec
    w = Workload(mode="inference", precision="bf16", context_length=256, batch_size=1)
    expected = comparison_table(run_verification(spec, w, level="trace", timeout=120, layers=2))
    assert shown.to_dict("records") == expected
    assert shown.iloc[-1]["Component"] == "total (torch allocated)"
    assert any("Full model (28 layers)" in c.value for c in at.caption)


def test_live_is_disabled_without_a_gpu() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    at = open_page(model=LLAMA, precision="bf16", context="256")
    at.radio(key="verify.level").set_value("live").run()
    assert not at.exception
    assert at.button(key="verify.run").disabled
    assert any("no CUDA GPU here" in i.value for i in at.info)


def test_full_depth_of_a_deep_model_is_refused_politely() -> None:
    at = open_page(model="meta-llama/Llama-3.1-70B", precision="bf16", mode="lora", context="1024")
    at.checkbox(key="verify.sized_down").uncheck().run()
    assert not at.exception
    assert any("sized-down (2 layers)" in w.value and "80 layers" in w.value for w in at.warning)
    assert at.button(key="verify.run").disabled


def test_bad_model_id_is_an_error_not_a_traceback() -> None:
    at = open_page(model=LLAMA, precision="bf16")
    at.text_input(key="verify.model").set_value("not a model!!").run()
    assert not at.exception
    assert at.error and "is not a Hugging Face model id" in at.error[0].value
    assert not at.button  # nothing to verify until the model loads


def test_lora_under_trl_on_the_seed_model_traces_without_a_stack_trace() -> None:
    """The seed model's LoRA trace under TRL's default was a stack trace (trl's fused head on its two heads)."""
    pytest.importorskip("torch")
    at = AppTest.from_file("../pages/3_Verification.py", default_timeout=400)
    at.query_params.update({"mode": "lora", "context": "128"})
    at.run()
    at.button[0].click().run()
    assert not at.exception
    assert any("The measurement runs that loop too." in e.value for e in [*at.caption, *at.info, *at.warning, *at.markdown])
