"""CI-speed calibration: the engine's PyTorch-allocated peak vs the trace of 2-layer cuts of real
configs (the full grid is `benchmarks/calibration.py`, results in benchmarks/results/calibration.md).

Tolerance: 10% on the total. On the full-depth grid the median |error| of the total is 1.6%
(inference), 0.6% (LoRA) and 0.0% (full fine-tuning); the worst rows are known engine gaps
written up in calibration.md (MoE prefill transient -11%, gpt-oss eager softmax +25%, gradient
checkpointing +8%), so the cases here avoid eager attention and checkpointing. On these 2-layer
cuts the engine is at +0.9% (Llama LoRA), 0.0% (Qwen2.5 full) and -5.9% (Mixtral prefill: the
MoE transient, a larger share of a 2-layer model). 10% leaves room for that known MoE gap and for
what moves with library versions (which hidden states transformers keeps referenced, RoPE tables),
while a wrong formula that matters (a missing factor 2 on the KV cache, fp32 logits counted as
bf16, the optimizer temporary) moves the total by well over 10%. Per-group checks are exact where
both sides count the same tensors (weights, optimizer states).
"""

from __future__ import annotations

import pytest

from calculator.resolve import resolve_model
from calculator.verify import run_verification
from calculator.workload import Workload

pytestmark = pytest.mark.trace
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

TOTAL_TOLERANCE_PCT = 10.0

CASES = [
    ("meta-llama/Llama-3.2-3B", Workload(mode="lora", precision="bf16", context_length=1024, batch_size=2)),
    ("Qwen/Qwen2.5-7B", Workload(mode="full", precision="bf16", context_length=1024, batch_size=1)),
    ("mistralai/Mixtral-8x7B-v0.1", Workload(mode="inference", precision="bf16", context_length=1024, generated_tokens=64, batch_size=2)),
]


@pytest.mark.parametrize(("model_id", "workload"), CASES, ids=[c[0].split("/")[1] + "-" + c[1].mode for c in CASES])
def test_engine_total_within_tolerance_of_the_trace(model_id: str, workload: Workload) -> None:
    spec = resolve_model(model_id, offline=True).spec
    data = run_verification(spec, workload, level="trace", timeout=300, layers=2)
    err = data["total"]["error_pct"]
    assert abs(err) <= TOTAL_TOLERANCE_PCT, f"{model_id} {workload.mode}: engine {err:+.1f}% vs trace\n{data['comparison']}"
    rows = {r["component"]: r for r in data["comparison"]}
    # Weights and optimizer states are the same tensors on both sides: exact up to buffers (RoPE tables, a few KiB).
    assert abs(rows["weights"]["error_pct"]) < 0.1
    if "optimizer" in rows and rows["optimizer"]["measured_bytes"]:
        assert abs(rows["optimizer"]["error_pct"]) < 0.1
