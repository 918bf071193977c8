"""Features of issues 8-13 together, checked where a user would see them contradict each other:
the label on screen against the number under it, the same input through two paths."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from calculator.estimate import estimate
from calculator.memory import weight_bytes
from calculator.quantization import weight_format
from calculator.resolve import resolve_model
from calculator.trainers import preset_workload

LLAMA8 = "meta-llama/Llama-3.1-8B"


def test_fp32_base_under_a_16_bit_precision_is_said() -> None:
    """TRL's preset loads the base in fp32: the page says "LoRA at FP16" over 4-byte weights, so a note must say why."""
    spec = resolve_model(LLAMA8, offline=True).spec
    trl = estimate(spec, preset_workload("trl-sft", mode="lora", precision="fp16"))
    fp32 = weight_bytes(spec, weight_format(spec, preset_workload("custom", precision="fp32")))
    assert trl.breakdown.weights_bytes == fp32  # 8,030,261,248 params x 4 bytes
    assert any("held in fp32 (4 bytes per parameter), not fp16" in n for n in trl.notes)
    plain = estimate(spec, preset_workload("trl-sft", mode="lora", precision="fp16", master_weights=False))
    assert plain.breakdown.weights_bytes * 2 == fp32 and not any("held in fp32" in n for n in plain.notes)
    qlora = estimate(spec, preset_workload("trl-sft", mode="qlora", precision="int4"))
    assert not any("held in fp32" in n for n in qlora.notes)


def _calculator(**params: str) -> AppTest:
    at = AppTest.from_file("../pages/0_Calculator.py", default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


@pytest.mark.parametrize(("params", "says"), [
    # Before: "Your selection is highlighted" with no cell highlighted (BF16 is not a row; the cells are transformers').
    ({"precision": "bf16", "runtime": "vllm", "model": LLAMA8}, "Your vLLM selection is not a cell"),
    # BF16 was not a row ("Your precision (BF16) is not a row here"); it now shares the 16-bit row, computed at BF16.
    ({"precision": "bf16", "model": LLAMA8}, "Your selection is highlighted"),
    ({"precision": "fp8", "model": LLAMA8}, "Your selection is highlighted"),
    ({"precision": "int8", "model": LLAMA8}, "Your selection is highlighted"),
])
def test_precision_mode_caption_says_what_is_highlighted(fresh_streamlit_caches: None, params: dict[str, str], says: str) -> None:
    at = _calculator(**params)
    assert not at.exception
    caption = next(c.value for c in at.caption if c.value.startswith("Peak VRAM per GPU (nvidia-smi)"))
    assert says in caption
    assert ("Your selection is highlighted" in caption) == (says == "Your selection is highlighted")


def test_vllm_configurations_that_fit_are_not_over_100_percent_used() -> None:
    """Under vLLM "fits" is "vllm serve starts"; the share shown must be what vLLM takes on that card,
    not the GPU-agnostic estimate's (2x RTX 3060 12GB read "104% used" among the configurations that fit)."""
    from calculator.report import build_plan

    spec = resolve_model(LLAMA8, offline=True).spec
    w = preset_workload("custom", precision="bf16", context_length=8192, runtime="vllm", gpu_memory_utilization=0.85, vllm_version="0.10",
                        max_num_seqs=64, max_num_batched_tokens=4096, enforce_eager=True)
    plan = build_plan(spec, w)
    fitting = [c for c in plan.ranking if c.fits]
    assert any(c.gpu.id == "rtx-3060-12gb" and c.count == 2 for c in fitting)
    assert all(c.utilisation <= 1.0 and c.per_gpu_required_bytes <= c.gpu.usable_bytes for c in fitting)
    assert all(abs(c.utilisation - 0.85) < 0.05 for c in fitting)  # eager: no graphs outside the 0.85 share


@pytest.mark.parametrize("trainer", ["trl-sft", "torchtune"])
def test_a_precision_mode_cell_is_the_number_its_own_view_shows(trainer: str) -> None:
    """Each cell of the table equals the headline of the view it stands for, from whichever view it is read.
    Before, the trainer's mode-specific settings of the view leaked into the other cells: from TRL's QLoRA view
    the FP16 · LoRA cell read 20,413,791,334 B (19.0 GiB) where the LoRA view said 35,342,425,088 B (32.9 GiB);
    torchtune's full preset (8-bit paged AdamW stepped in backward) was missing from the Full cell of its other views."""
    from calculator import report
    from ui.state import MAIN_PARAMS, main_workload, read_params, reconcile_main

    spec = resolve_model("bosonai/higgs-audio-v2-generation-3B-base", offline=True).spec
    cells = {"inference": "fp16", "lora": "fp16", "qlora": "int4", "full": "fp16"}
    views = {}
    for mode, precision in cells.items():
        values, _ = reconcile_main(read_params(MAIN_PARAMS, {"mode": mode, "precision": precision, "trainer": trainer})[0])
        w = main_workload(values)
        views[mode] = (estimate(spec, w).total_bytes, {row["precision"]: row for row in report.precision_mode_table(spec, w)})
    for view, (_, table) in views.items():
        for mode, precision in cells.items():
            assert table[precision][mode] == views[mode][0], (view, mode)


def test_compare_similar_model_buttons_are_told_apart(fresh_streamlit_caches: None) -> None:
    """Five buttons in a row show ~20 characters each: "Add meta-llama/Llama-…" four times said nothing."""
    at = AppTest.from_file("../pages/1_Compare.py", default_timeout=120)
    at.query_params["models"] = f"{LLAMA8},Qwen/Qwen2.5-7B"
    at.run()
    assert not at.exception
    buttons = [b for b in at.button if b.key and b.key.startswith("compare.add.")]
    assert len(buttons) >= 3
    assert len({b.label[:20] for b in buttons}) == len(buttons), [b.label for b in buttons]
    for b in buttons:
        model_id = b.key.removeprefix("compare.add.")
        assert b.label == "+ " + model_id.split("/")[-1] and model_id in b.help
    buttons[0].click().run()
    assert buttons[0].key.removeprefix("compare.add.") in at.query_params["models"]


@pytest.mark.parametrize(("params", "listed", "not_listed"), [
    # Before: every trainer setting was listed for an inference trace ("gradient checkpointing on, fp32 weights (autocast) on, ...").
    ({"mode": "inference"}, None, "gradient checkpointing"),
    ({"mode": "lora", "trainer": "torchtune", "optimizer": "sgd", "precision": "bf16"}, "optimizer sgd", "LoRA rank"),
    ({"mode": "inference", "cache": "static", "gen": "128"}, "generate cache static", "optimizer"),
])
def test_verification_lists_only_settings_that_apply(fresh_streamlit_caches: None, params: dict[str, str], listed: str | None,
                                                     not_listed: str) -> None:
    at = AppTest.from_file("../pages/3_Verification.py", default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception
    caption = " ".join(c.value for c in at.caption if c.value.startswith("Also from the main page"))
    assert (listed in caption) if listed else not caption, caption
    assert not_listed not in caption


def test_vllm_view_has_no_transformers_only_notes() -> None:
    """gpt-oss under vLLM said "transformers has no SDPA attention ... runs eager" and "transformers ... dequantizes
    MXFP4 to bf16": neither is vLLM's path, and neither changes vLLM's number (20,136,122,056 B either way; 19,812,183,069
    before gpt-oss's own 1,024 capture-size override and the per-graph CUDA-graph driver cost, 19,425,076,936 before the
    V1 non-torch base and the persistent MoE workspace were sized from the 0.19.0 logs and code)."""
    spec = resolve_model("openai/gpt-oss-20b", offline=True).spec
    vllm = estimate(spec, preset_workload("custom", precision="int4", context_length=16384, batch_size=4, runtime="vllm"))
    hf = estimate(spec, preset_workload("custom", precision="int4", context_length=16384, batch_size=4))
    assert vllm.total_bytes == 20_136_122_056
    assert not any(n.startswith("transformers") for n in vllm.notes), vllm.notes
    assert any("no SDPA attention" in n for n in hf.notes) and any("MXFP4" in n for n in hf.notes)


@pytest.mark.parametrize(("mode", "runtime", "counted"), [("inference", "transformers", True), ("lora", "transformers", False),
                                                         ("inference", "vllm", False)])
def test_audio_codec_switch_is_live_only_where_the_codec_is_counted(fresh_streamlit_caches: None, mode: str, runtime: str, counted: bool) -> None:
    """The switch stood ticked on a LoRA view whose breakdown has no codec row (the estimate counts it for transformers inference only)."""
    at = _calculator(mode=mode, runtime=runtime)
    assert not at.exception
    box = at.checkbox(key="main.codec")
    assert box.value is True and box.disabled is (not counted)
    codec_row = any("Audio codec" in str(row) for row in at.dataframe[0].value["Component"]) if at.dataframe else False
    assert codec_row is counted


def test_gpus_page_does_not_send_the_reader_to_itself(fresh_streamlit_caches: None) -> None:
    """The GPUs & prices page said "see the GPUs & prices page for dates" right above its own dates."""
    at = AppTest.from_file("../pages/2_GPUs_and_prices.py", default_timeout=120).run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Bundled price snapshot (per-provider list prices)") for c in captions)
    assert not any("see the GPUs & prices page" in c for c in captions)
    assert any(c.startswith("Bundled snapshot: dated prices up to") for c in captions)


def test_trainer_problem_is_said_once(fresh_streamlit_caches: None) -> None:
    """TRL's fused LM head on higgs-audio's two heads stood twice on the page: the red box and, word for word, an info line."""
    at = _calculator(mode="lora")
    assert not at.exception
    problem = [e.value for e in at.error if "fails at its first step" in e.value]
    assert len(problem) == 1
    assert not any(problem[0] in c.value for c in at.caption)


def test_stack_note_describes_only_what_the_view_counts() -> None:
    """A LoRA view on transformers-4.35 said "a decode step holds the previous cache and the new one (KV cache counted for
    context and context - 1 positions)": training has no KV cache, and its number does not change with the stack."""
    spec = resolve_model(LLAMA8, offline=True).spec
    lora_old = estimate(spec, preset_workload("trl-sft", mode="lora", stack="transformers-4.35"))
    lora_new = estimate(spec, preset_workload("trl-sft", mode="lora"))
    assert lora_old.total_bytes == lora_new.total_bytes
    note = next(n for n in lora_old.notes if n.startswith("Stack:"))
    assert "decode step holds" not in note and "changes nothing" in note
    infer = estimate(spec, preset_workload("custom", stack="transformers-4.35"))
    assert any("decode step holds the previous cache" in n for n in infer.notes)


def test_counted_from_metric_fits_its_column(fresh_streamlit_caches: None) -> None:
    """ "config arithmetic" showed as "config arithme…" in the quarter-width metric; the full wording now leads its caption."""
    at = _calculator(model="openai/gpt-oss-20b")
    assert not at.exception
    value = next(m.value for m in at.metric if m.label == "Counted from")
    assert value == "config"
    assert any(c.value.startswith("config arithmetic · ") for c in at.caption)
    seed = _calculator()
    # "catalog (exact)" was cut to "catalog (ex…" at 1280 px: one word, the wording leads the caption.
    assert next(m.value for m in seed.metric if m.label == "Counted from") == "catalog"
    assert any(c.value.startswith("catalog (exact) · ") for c in seed.caption)
