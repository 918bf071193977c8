"""Verification of the memory model against real code: the only package that imports torch.

Importing `calculator.verify` is light; torch, transformers and peft are imported only when a trace
runs (`trace_workload`). Use `trace_available()` to check first.
"""

from .trace import (
    CATEGORIES,
    TraceResult,
    TraceUnsupportedError,
    trace_available,
    trace_summary_rows,
    trace_workload,
)

__all__ = ["CATEGORIES", "TraceResult", "TraceUnsupportedError", "trace_available", "trace_summary_rows", "trace_workload"]
