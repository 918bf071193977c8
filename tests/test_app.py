"""AppTest of the main page: default view, every mode and precision, links, bad input of every kind.

No network: the default and the catalog models resolve offline, and Hub failures are simulated by
patching `ui.loaders.resolve_model` (the loader boundary)."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

import ui.loaders
from calculator.errors import GatedModelError, HubUnavailableError, MalformedConfigError, ModelNotFoundError
from calculator.estimate import estimate
from calculator.report import build_plan, context_sweep
from calculator.resolve import resolve_model
from calculator.trainers import preset_workload
from calculator.units import GiB, format_count
from calculator.workload import Workload
from ui.state import DEFAULT_MODEL, MAIN_PARAMS, encode_params, main_workload, read_params, reconcile_main

APP = "app.py"
SECRET = "hf_do_not_show_this_token_123"


pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


def run_app(**params: str) -> AppTest:
    at = AppTest.from_file(f"../{APP}", default_timeout=30)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def metric(at: AppTest, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def peak_text(total_bytes: int) -> str:
    return f"{total_bytes / GiB:,.2f} GiB"


def page_text(at: AppTest) -> str:
    """Everything the page shows as text (errors, warnings, markdown, captions, metrics)."""
    parts = [e.value for e in (*at.error, *at.warning, *at.info, *at.success, *at.markdown, *at.caption)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


# --------------------------------------------------------------------------------------------


def test_default_view_matches_engine():
    at = run_app()
    assert not at.exception
    assert not at.error
    spec = resolve_model(DEFAULT_MODEL).spec
    w = Workload()
    plan = build_plan(spec, w)
    assert metric(at, "Parameters") == format_count(spec.num_params) == "5.77B"
    assert metric(at, "Peak VRAM") == peak_text(plan.estimate.total_bytes)
    assert metric(at, "Cheapest GPU") == f"${plan.cheapest.total_usd_per_hour:,.2f}/hr"
    assert metric(at, "Counted from") == "catalog"
    assert at.text_input(key="main.model").value == DEFAULT_MODEL
    assert at.query_params["model"] == DEFAULT_MODEL
    assert at.query_params["context"] == "4096"
    headers = [h.value for h in at.header]
    for heading in ("Memory breakdown", "Precision × mode", "VRAM vs context length", "GPU configurations", "What fits on my GPU?", "Export and share", "FAQ"):
        assert heading in headers


def test_every_mode_and_precision_in_one_session():
    at = run_app()
    spec = resolve_model(DEFAULT_MODEL).spec
    for mode in ("inference", "lora", "qlora", "full"):
        at.radio(key="main.mode").set_value(mode).run()
        assert not at.exception, mode
        values, _ = reconcile_main({p.name: at.session_state[f"main.{p.name}"] for p in MAIN_PARAMS})
        assert values["mode"] == mode
        assert metric(at, "Peak VRAM") == peak_text(estimate(spec, main_workload(values)).total_bytes), mode
    # QLoRA needs a quantized base, full fine-tuning 16-bit weights: the page corrects and says so.
    at.radio(key="main.mode").set_value("inference").run()
    for precision in ("fp32", "bf16", "fp16", "fp8", "int8", "int4"):
        at.selectbox(key="main.precision").set_value(precision).run()
        assert not at.exception, precision
        assert metric(at, "Peak VRAM") == peak_text(estimate(spec, Workload(precision=precision)).total_bytes), precision
        assert at.query_params["precision"] == precision


def test_qlora_with_fp16_is_corrected_visibly():
    at = run_app(mode="qlora", precision="fp16")
    assert not at.exception
    assert at.selectbox(key="main.precision").value == "int4"
    assert any("QLoRA" in i.value for i in at.info)


def test_link_reproduces_view():
    at = run_app(
        model="Qwen/Qwen2.5-7B", precision="bf16", mode="lora", context="8192", batch="2", grad_ckpt="1", headroom="10", my_gpu="h100-sxm", my_gpus="2"
    )
    assert not at.exception
    assert not at.warning
    assert at.text_input(key="main.model").value == "Qwen/Qwen2.5-7B"
    assert at.number_input(key="main.context").value == 8192
    assert at.number_input(key="main.batch").value == 2
    assert at.checkbox(key="main.grad_ckpt").value is True
    assert at.radio(key="main.my_gpus").value == 2
    spec = resolve_model("Qwen/Qwen2.5-7B").spec
    # No trainer in the link: fine-tuning assumes TRL's SFTTrainer (calculator/trainers.py), i.e. the model
    # loaded in fp32 under bf16 autocast, the fused LM-head loss and non-reentrant checkpointing (on anyway here).
    w = preset_workload("trl-sft", mode="lora", precision="bf16", context_length=8192, batch_size=2, gradient_checkpointing=True)
    plan = build_plan(spec, w, headroom_fraction=0.10)
    assert metric(at, "Peak VRAM") == peak_text(plan.estimate.total_bytes)
    assert metric(at, "Cheapest GPU") == f"${plan.cheapest.total_usd_per_hour:,.2f}/hr"
    # The page writes the link back naming its trainer; grad_ckpt=1 is TRL's own default, so it is left out.
    assert at.query_params["trainer"] == "trl-sft" and at.query_params["headroom"] == "10" and "grad_ckpt" not in at.query_params


def test_tampered_url_params_are_corrected_with_warnings():
    at = run_app(context="-5", precision="fp7", batch="abc", model="../../etc", gpus="1e9", headroom="nan", my_gpu="<script>")
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    for name in ("context", "precision", "batch", "model", "gpus", "headroom", "my_gpu"):
        assert f"URL parameter {name}=" in warnings, name
    assert at.text_input(key="main.model").value == DEFAULT_MODEL
    assert at.number_input(key="main.context").value == 4096
    assert at.selectbox(key="main.precision").value == "fp16"
    assert metric(at, "Peak VRAM") == peak_text(estimate(resolve_model(DEFAULT_MODEL).spec, Workload()).total_bytes)
    # The corrected values replace the tampered ones in the URL.
    assert at.query_params["context"] == "4096"


def test_absurd_but_allowed_numbers_do_not_crash():
    at = run_app(model="meta-llama/Llama-3.1-70B", context="10000000", batch="100000", gpus="64", mode="full", precision="fp32", lora_rank="4096")
    assert not at.exception
    assert metric(at, "Cheapest GPU") == "none"


def _fake_resolver(error: Exception, bad: str):
    real = resolve_model

    def fake(ref, **kwargs):
        if ref == bad:
            raise error
        return real(ref, **kwargs)

    return fake


@pytest.mark.parametrize(
    ("error", "expect"),
    [
        (ModelNotFoundError("nobody/nothing was not found on the Hub: check the spelling."), "not found"),
        (GatedModelError("nobody/nothing is gated: accept its license."), "HF_TOKEN"),
        (HubUnavailableError("The Hub could not be reached (timeout)."), "could not be reached"),
        (MalformedConfigError("config.json is not valid JSON."), "not valid JSON"),
    ],
    ids=["unknown", "gated", "hub-down", "malformed"],
)
def test_lookup_errors_keep_inputs_and_last_result(monkeypatch, error, expect):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr(ui.loaders, "resolve_model", _fake_resolver(error, "nobody/nothing"))
    at = run_app(precision="int8", context="2048")
    good_peak = metric(at, "Peak VRAM")
    at.text_input(key="main.model").set_value("nobody/nothing").run()
    assert not at.exception
    assert at.error and expect in at.error[0].value
    # Other inputs kept, the typed id kept, the last good result still shown (dimmed).
    assert at.text_input(key="main.model").value == "nobody/nothing"
    assert at.selectbox(key="main.precision").value == "int8"
    assert at.number_input(key="main.context").value == 2048
    assert metric(at, "Peak VRAM") == good_peak
    assert any("last model that loaded" in c.value for c in at.caption)
    assert SECRET not in page_text(at)
    # Fixing the id recovers.
    at.text_input(key="main.model").set_value("Qwen/Qwen2.5-7B").run()
    assert not at.error


def test_gated_message_mentions_missing_token(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(ui.loaders, "resolve_model", _fake_resolver(GatedModelError("org/gated is gated."), "org/gated"))
    at = run_app(model="org/gated")
    assert not at.exception
    assert "HF_TOKEN" in at.error[0].value and "No HF_TOKEN is configured" in at.error[0].value


def test_invalid_typed_model_id_is_refused_before_lookup(monkeypatch):
    def boom(ref, **kwargs):
        raise AssertionError("must not be looked up")

    at = run_app()
    monkeypatch.setattr(ui.loaders, "resolve_model", boom)
    at.text_input(key="main.model").set_value("../../etc/passwd").run()
    assert not at.exception
    assert "not a Hugging Face model id" in at.error[0].value


def test_catalog_pick_fills_model_id():
    at = run_app()
    at.selectbox(key="main.catalog_pick").set_value("Qwen/Qwen2.5-0.5B").run()
    assert at.text_input(key="main.model").value == "Qwen/Qwen2.5-0.5B"
    assert at.query_params["model"] == "Qwen/Qwen2.5-0.5B"
    assert metric(at, "Parameters") == format_count(resolve_model("Qwen/Qwen2.5-0.5B").spec.num_params)


def test_advanced_settings_vllm_and_multi_gpu():
    at = run_app(model="meta-llama/Llama-3.1-8B", runtime="vllm", gpu_util="0.8", gpus="2", parallelism="tp", kv_dtype="fp8", attention="flash")
    assert not at.exception and not at.warning
    spec = resolve_model("meta-llama/Llama-3.1-8B").spec
    w = Workload(runtime="vllm", gpu_memory_utilization=0.8, num_gpus=2, parallelism="tp", kv_cache_precision="fp8", attention="flash")
    assert metric(at, "Peak VRAM per GPU") == peak_text(estimate(spec, w).total_bytes)
    # Switching to training moves the runtime back to transformers, with a note.
    at.radio(key="main.mode").set_value("lora").run()
    assert not at.exception
    assert at.radio(key="main.runtime").value == "transformers"
    assert at.selectbox(key="main.parallelism").value == "auto"


def test_charts_carry_engine_numbers():
    at = run_app(model="meta-llama/Llama-3.1-8B", context="8192")
    spec = resolve_model("meta-llama/Llama-3.1-8B").spec
    w = Workload(context_length=8192)
    est = estimate(spec, w)
    charts = {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    bars = charts["What the peak is made of"]["data"]
    assert {t["meta"]: t["x"][0] for t in bars} == pytest.approx({k: v / GiB for k, v in est.breakdown.as_dict().items() if v > 0})
    sweep = context_sweep(spec, w, max_tokens=max(spec.max_position_embeddings, 8192))
    line = charts["VRAM vs context length"]["data"][0]
    assert line["x"] == [n for n, _ in sweep]
    assert line["y"] == pytest.approx([b / GiB for _, b in sweep])
    ranking = charts["GPU configurations by price"]["data"][0]
    plan = build_plan(spec, w)
    fitting = [c for c in plan.ranking if c.fits and c.priced]
    assert ranking["x"][::-1][0] == pytest.approx(fitting[0].total_usd_per_hour)


def test_what_fits_on_my_gpu_suggests_smallest_change():
    at = run_app(model="meta-llama/Llama-3.1-8B", mode="lora", precision="bf16", my_gpu="rtx-4090", my_gpus="1")
    assert not at.exception
    assert any("does not fit on 1× RTX 4090" in w.value and "smallest change" in w.value for w in at.warning)
    at.radio(key="main.my_gpus").set_value(8).run()
    assert not at.exception


def test_export_data_is_the_engine_dict():
    at = run_app()
    code = at.code[0].value
    assert code.startswith("?model=bosonai/higgs-audio-v2-generation-3B-base&precision=fp16&mode=inference&context=4096&batch=1")


# --------------------------------------------------------------------------------------------
# URL state, without Streamlit
# --------------------------------------------------------------------------------------------


def test_read_params_defaults_and_round_trip():
    values, notes = read_params(MAIN_PARAMS, {})
    assert notes == [] and values["model"] == DEFAULT_MODEL and values["context"] == 4096
    values["context"], values["grad_ckpt"], values["gpu_util"] = 32768, True, 0.85
    encoded = encode_params(MAIN_PARAMS, values, always=("model",))
    assert encoded == {"model": DEFAULT_MODEL, "context": "32768", "grad_ckpt": "1", "gpu_util": "0.85"}
    again, notes = read_params(MAIN_PARAMS, encoded)
    assert again == values and notes == []


@pytest.mark.parametrize(
    ("key", "raw", "expected", "noted"),
    [("context", "-5", 4096, True), ("context", "1.5", 4096, True), ("context", "8,192", 8192, False), ("batch", "abc", 1, True),
     ("precision", "FP8", "fp8", False), ("precision", "fp7", "fp16", True), ("grad_ckpt", "maybe", None, True), ("gpu_util", "inf", 0.9, True),
     ("model", "a/b/c", DEFAULT_MODEL, True), ("model", "https://evil.example/x", DEFAULT_MODEL, True), ("model", "..", DEFAULT_MODEL, True),
     ("model", "Qwen/Qwen2.5-7B@main", "Qwen/Qwen2.5-7B@main", False), ("my_gpus", "3", 1, True)],
)
def test_param_parsing(key, raw, expected, noted):
    values, notes = read_params(MAIN_PARAMS, {key: raw})
    assert values[key] == expected
    assert bool(notes) == noted


def test_reconcile_then_workload_is_valid():
    values, _ = read_params(MAIN_PARAMS, {"mode": "full", "precision": "int4", "runtime": "vllm", "parallelism": "tp"})
    fixed, notes = reconcile_main(values)
    assert len(notes) == 3
    # Full fine-tuning with no trainer named: TRL SFTTrainer's settings (calculator/trainers.py).
    assert main_workload(fixed) == preset_workload("trl-sft", mode="full", precision="bf16")


def test_vllm_runtime_shows_serving_capacity():
    at = run_app(model="meta-llama/Llama-3.1-8B", precision="bf16", runtime="vllm", context="8192")
    assert not at.exception and not at.error
    spec = resolve_model("meta-llama/Llama-3.1-8B").spec
    plan = build_plan(spec, Workload(precision="bf16", runtime="vllm", context_length=8192))
    from calculator.report import serving_for

    expected = serving_for(plan, plan.cheapest).max_concurrent_sequences
    frames = [d.value for d in at.dataframe if "vLLM sequences at once" in d.value.columns]
    assert frames and int(frames[0].loc[0, "vLLM sequences at once"]) == expected
    assert "Left free (1 - gpu_memory_utilization)" in set(at.dataframe[0].value["Component"])
