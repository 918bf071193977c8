"""Features of issues 8-13 together, checked where a user would see them contradict each other:
the label on screen against the number under it, the same input through two paths."""

from __future__ import annotations

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
