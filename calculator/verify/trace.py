"""Trace-level verification: run the real architecture on fake tensors and record every storage.

`trace_workload(config, workload)` builds the model from its `config.json` with transformers
(never `trust_remote_code`) inside `FakeTensorMode`, so nothing is allocated however large the
model, and runs what the workload runs (prefill + decode, or one training step) under torch's
`MemTracker`. The result is the tensor-storage peak and its split into MemTracker's categories:
the memory a CUDA run would show in `torch.cuda.max_memory_allocated()`, less the allocator's
512-byte rounding, workspaces, CUDA context and fragmentation (those belong to the runtime
overhead the engine adds on top).

This module is light: it imports torch, transformers and peft only when a trace runs
(`calculator.verify._harness` holds that code), so `calculator` stays importable without them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CalculatorError
from ..units import format_bytes
from ..workload import Workload

# MemTracker's categories (torch.distributed._tools.mem_tracker._MemRefType) by readable name, in
# display order. "inputs" are the token ids and labels we hand the model (tracked as "Other").
CATEGORIES: tuple[str, ...] = ("parameters", "buffers", "gradients", "optimizer", "activations", "temporaries", "inputs")

# Versions the harness was written and checked against (see /work/shared/TRACE-NOTES.md). MemTracker
# is a private torch API; other versions may trace but are not promised to.
CHECKED_VERSIONS = {"torch": "2.13.0", "transformers": "5.24.0", "peft": "0.21.2"}
INSTALL_HINT = "install torch==2.13.0 transformers peft: pip install -r requirements-dev.txt"


class TraceUnsupportedError(CalculatorError):
    """The workload cannot be traced on fake tensors (quantized kernels, data-dependent ops, ...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceResult:
    """What one traced run allocated, in bytes of tensor storage (no allocator rounding).

    `peak_by_category` is the split at the moment of the global peak; `max_by_category` is each
    category's own maximum over the measured run (they need not coincide). `resident_by_category`
    is what stays allocated at the end of the measured run (inference: weights + KV cache + last
    logits; training: after `optimizer.step()`, before `zero_grad`). `phase_peaks` holds the peak
    inside each phase: "prefill"/"decode" (or "forward" for encoders) for inference,
    "forward"/"backward"/"optimizer" for training.
    """

    model_id: str
    workload: Workload
    peak_bytes: int
    peak_by_category: dict[str, int]
    max_by_category: dict[str, int]
    phase_peaks: dict[str, int]
    seconds: float
    notes: tuple[str, ...] = ()
    resident_by_category: dict[str, int] = field(default_factory=dict)
    peak_phase: str = ""
    num_params: int = 0  # parameters of the traced module (base + adapters)
    trainable_params: int = 0
    kv_cache_bytes: int = 0  # K/V held by the cache at its longest (inference), from the cache's tensors

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / 2**30


def trace_available() -> tuple[bool, str]:
    """Whether torch, transformers and peft are importable here (checked without importing them)."""
    missing = [name for name in ("torch", "transformers", "peft") if importlib.util.find_spec(name) is None]
    if missing:
        return False, INSTALL_HINT
    if importlib.util.find_spec("torch.distributed._tools.mem_tracker") is None:
        return False, f"this torch has no torch.distributed._tools.mem_tracker; {INSTALL_HINT}"
    return True, ""


def trace_workload(config: Mapping[str, Any], workload: Workload, *, model_id: str = "", max_seconds: float | None = None) -> TraceResult:
    """Trace `workload` on the architecture described by `config` (a parsed `config.json`).

    Raises `TraceUnsupportedError` when the workload cannot run on fake tensors (quantized weights,
    8-bit optimizers, vLLM, encoder-decoder models, encoder training) or takes longer than
    `max_seconds`, and `UnsupportedArchitectureError` / `MalformedConfigError` from the spec reader.
    """
    ok, why = trace_available()
    if not ok:
        raise TraceUnsupportedError(f"Tracing needs torch, transformers and peft: {why}")
    from . import _harness

    return _harness.trace(dict(config), workload, model_id=model_id, max_seconds=max_seconds)


def trace_summary_rows(result: TraceResult) -> list[dict[str, Any]]:
    """Rows for a UI table: one per category, then the total, with bytes and GiB labels."""
    rows = []
    for name in CATEGORIES:
        at_peak = result.peak_by_category.get(name, 0)
        own_max = result.max_by_category.get(name, 0)
        if not (at_peak or own_max or result.resident_by_category.get(name, 0)):
            continue
        rows.append(
            {
                "category": name,
                "at_peak_bytes": at_peak,
                "at_peak": format_bytes(at_peak),
                "own_max_bytes": own_max,
                "own_max": format_bytes(own_max),
                "resident_bytes": result.resident_by_category.get(name, 0),
                "share_of_peak": at_peak / result.peak_bytes if result.peak_bytes else 0.0,
            }
        )
    rows.append(
        {
            "category": "total",
            "at_peak_bytes": result.peak_bytes,
            "at_peak": format_bytes(result.peak_bytes),
            "own_max_bytes": result.peak_bytes,
            "own_max": format_bytes(result.peak_bytes),
            "resident_bytes": sum(result.resident_by_category.values()),
            "share_of_peak": 1.0 if result.peak_bytes else 0.0,
        }
    )
    return rows
