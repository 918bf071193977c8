"""TRL's real loss path and peft's other methods, traced on a 2-layer copy, against the estimate.

The full-depth runs on four catalog models are `benchmarks/trainer_traces.py`
(benchmarks/results/trainer_traces.md); these are the fast versions (a 2-layer Llama-3.2-3B, whose
embedding and LM head weigh more than its layers, so the per-layer terms are checked harder)."""

from __future__ import annotations

import importlib.util

import pytest

from calculator.estimate import estimate
from calculator.resolve import resolve_catalog
from calculator.trainers import preset_workload
from calculator.verify.compare import sized_down_spec
from calculator.workload import Workload

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "transformers", "peft", "trl")), reason="tracing stack not installed"
)

SPEC, CONFIG = sized_down_spec(resolve_catalog("meta-llama/Llama-3.2-3B").spec, 2)


def _error(w: Workload) -> tuple[float, object]:
    from calculator.verify.trace import trace_workload

    r = trace_workload(CONFIG, w, model_id="meta-llama/Llama-3.2-3B")
    return 100 * (estimate(SPEC, w).torch_allocated_bytes - r.peak_bytes) / r.peak_bytes, r


@pytest.mark.parametrize(
    "overrides",
    [
        {"mode": "lora"},  # TRL's defaults: fp32 base under bf16 autocast, checkpointing, fused LM head, fused AdamW
        {"mode": "full", "master_weights": False},
    ],
    ids=["lora-trl-defaults", "full-bf16"],
)
def test_trl_sft_step_matches_the_trace(overrides):
    w = preset_workload("trl-sft", precision="bf16", context_length=512, batch_size=2, **overrides)
    err, r = _error(w)
    assert any("fused LM head" in n for n in r.notes)  # TRL's own add_fused_lm_head ran
    assert abs(err) < 3.0, err


def test_peft_ia3_matches_the_trace():
    # DoRA (-0.2%) and prompt tuning (+0.3%) trace the same way (benchmarks/results/trainer_traces.md); IA3 is the fast one.
    w = Workload(mode="lora", precision="bf16", context_length=256, batch_size=2, peft_method="ia3")
    err, r = _error(w)
    assert r.trainable_params == estimate(SPEC, w).trainable_params
    assert abs(err) < 3.0, err


@pytest.mark.parametrize(
    "overrides",
    [
        {"peft_method": "oft"},  # fp32 adapters on a bf16 base: a cast copy of the input per adapter, fp32 rotations
        {"peft_method": "oft", "adapter_precision": "bf16", "oft_block_size": 48},  # views of the shared inputs
        {"peft_method": "vera"},
        {"peft_method": "vera", "lora_targets": "qv", "vera_rank": 64},
    ],
    ids=["oft", "oft-bf16-block48", "vera", "vera-qv-r64"],
)
def test_peft_oft_and_vera_match_the_trace(overrides):
    # Traced at 256 and 512 tokens per sequence (2-layer Llama-3.2-3B): OFT's rotations are the part that does not
    # grow with tokens (13.0 MB per layer in fp32), VeRA's shared projections are buffers (16.8 MB, once).
    w = Workload(mode="lora", precision="bf16", context_length=256, batch_size=2, **overrides)
    err, r = _error(w)
    assert r.trainable_params == estimate(SPEC, w).trainable_params
    assert abs(err) < 3.0, err


@pytest.mark.parametrize("method", ["oft", "vera"])
def test_peft_oft_and_vera_under_trl_defaults_match_the_trace(method):
    # TRL's defaults load the model in fp32 and train under bf16 autocast with checkpointing: autocast casts the
    # OFT rotations (7 bf16 copies per adapter) and VeRA's projection slices, in the one recomputed layer.
    w = preset_workload("trl-sft", mode="lora", precision="bf16", context_length=512, batch_size=2, peft_method=method)
    err, _ = _error(w)
    assert abs(err) < 3.0, err


def test_selective_op_checkpointing_matches_the_trace():
    # torch.utils.checkpoint with create_selective_checkpoint_contexts runs under the FakeTensor trace: the forward peak
    # grows by exactly the kept matmul and attention outputs (2 layers x 512 tokens x 36,960 bytes, full fine-tune).
    from calculator import memory
    from calculator.verify.trace import trace_workload

    base = dict(mode="full", precision="bf16", master_weights=False, context_length=256, batch_size=2, gradient_checkpointing=True)
    peaks = [trace_workload(CONFIG, Workload(checkpoint_policy=p, **base), model_id="meta-llama/Llama-3.2-3B").phase_peaks["forward"]
             for p in ("full", "selective-op")]
    assert peaks[1] - peaks[0] == 2 * 512 * memory.selective_op_saved_bytes_per_token(SPEC, compute_bytes=2, attention="sdpa")
    # LoRA (fp32 adapters, bf16 base) and TRL's defaults (fp32 base under autocast, fused head): the whole peak.
    for w in (Workload(mode="lora", precision="bf16", context_length=512, batch_size=2, gradient_checkpointing=True,
                       checkpoint_policy="selective-op"),
              preset_workload("trl-sft", mode="lora", precision="bf16", context_length=512, batch_size=2, checkpoint_policy="selective-op")):
        err, r = _error(w)
        assert any("selective policy" in n for n in r.notes)
        assert abs(err) < 3.0, (w.trainer, err)
