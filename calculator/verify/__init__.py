"""Verification of the memory model against real code: the only package that imports torch.

Importing `calculator.verify` is light; torch, transformers and peft are imported only when a trace
or a live run happens. Use `trace_available()` to check first.

- `run_verification(spec, workload, level="trace"|"live")`: estimate vs measurement per component
  (`compare`), the function behind `python -m calculator verify` and the Verification page.
- `trace_workload(config, workload)`: the FakeTensor trace on CPU (`trace`, `_harness`).
- `live.run_live(...)`: the same workload on the local CUDA GPU in a subprocess (`live`, `live_worker`).
"""

from .compare import (
    GROUPS,
    VerificationError,
    comparison_rows,
    comparison_table,
    cut_config,
    engine_groups,
    error_pct,
    run_verification,
    trace_groups,
    verification_text,
)
from .trace import (
    CATEGORIES,
    TraceResult,
    TraceUnsupportedError,
    trace_available,
    trace_summary_rows,
    trace_workload,
)

__all__ = [
    "CATEGORIES",
    "GROUPS",
    "TraceResult",
    "TraceUnsupportedError",
    "VerificationError",
    "comparison_rows",
    "comparison_table",
    "cut_config",
    "engine_groups",
    "error_pct",
    "run_verification",
    "trace_available",
    "trace_groups",
    "trace_summary_rows",
    "trace_workload",
    "verification_text",
]
