"""Live level: run the workload on the local CUDA GPU with random weights and measure it.

`run_live(spec, workload, ...)` starts `python -m calculator.verify.live_worker` in a subprocess
(its own session, so a timeout kills it and every child it made), sends it the config and the
workload as JSON on stdin, and reads one result line back. The worker builds the model with
`from_config` on the GPU (random weights: nothing is downloaded, `trust_remote_code` is never
used), runs what the trace runs (generate-style prefill + decode, or a warm-up training step then
a measured one) and reports

- `torch.cuda.max_memory_allocated()` (the engine's `torch_allocated_bytes`),
- `torch.cuda.max_memory_reserved()` (+ the allocator reserve),
- NVML's memory of this process and of the device (+ the CUDA context: what nvidia-smi shows),
  when `pynvml` (nvidia-ml-py) is importable.
- the CUDA context alone (device used right after the context is made, before any tensor, minus
  just before), the device memory of the process at the measuring point and
  `torch.cuda.memory_reserved()` there (their difference: what lives outside the caching
  allocator), through NVML or else `nvidia-smi`; and the stack's versions (torch, CUDA, driver,
  transformers, peft).

`benchmarks/gpu_campaign.py` runs a whole plan of such cases through `run_live`.

Guards, in order: the workload must be one a plain transformers run can do (no quantized weights,
no vLLM, one GPU); torch must be importable and see a CUDA device ("no CUDA GPU here; use
--trace" otherwise); the estimate must fit the device's free memory (checked in this process
through NVML or an injected `mem_get_info`, and again in the worker with
`torch.cuda.mem_get_info()` before anything is allocated). An out-of-memory error in the worker
is a result (`fits=False`), not a crash.

Several GPUs are not measured. The way to do it would be `torchrun --nproc-per-node N` with each
rank wrapping every decoder layer and then the model in FSDP2's `fully_shard`
(`torch.distributed.fsdp.fully_shard`) for zero3/fsdp, or `DistributedDataParallel` for ddp, and
reporting each rank's `max_memory_allocated`; that is a distributed runtime of its own, so the live
level refuses multi-GPU workloads and the trace/estimate cover them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import CalculatorError
from ..estimate import Estimate
from ..spec import ModelSpec
from ..units import format_bytes
from ..workload import Workload
from .compare import VerificationError, error_pct

WORKER_MODULE = "calculator.verify.live_worker"
RESULT_MARKER = "@@live-result@@ "  # the worker's result line starts with this; anything else it prints is ignored


class NoGPUError(VerificationError):
    """No CUDA device (or no torch) in this environment."""


class LiveUnsupportedError(VerificationError):
    """The workload is not one the live runner can execute."""


class InsufficientMemoryError(VerificationError):
    """The estimate does not fit the GPU's free memory, so the run is refused before it starts."""


class LiveTimeoutError(VerificationError, TimeoutError):
    """The live run took longer than its timeout and was killed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveResult:
    """What one run on the GPU measured, in bytes. `fits=False`: the run hit CUDA out-of-memory."""

    fits: bool
    message: str = ""
    device_name: str = ""
    device_total_bytes: int = 0
    free_before_bytes: int = 0
    after_load_bytes: int = 0  # memory_allocated once the model (and adapters) are built
    max_allocated_bytes: int = 0
    max_reserved_bytes: int = 0
    nvml_process_bytes: int | None = None  # this process on the device (NVML), context included
    nvml_device_used_bytes: int | None = None  # the whole device, every process
    context_bytes: int | None = None  # device used right after the CUDA context was made, minus just before (no tensor yet)
    process_used_bytes: int | None = None  # device used at the measuring point minus before the context: this process
    reserved_at_measure_bytes: int = 0  # torch.cuda.memory_reserved() at the measuring point
    device_used_at_measure_bytes: int | None = None  # total - free (torch.cuda.mem_get_info) there: every process on the device
    memory_instrument: str = ""  # "nvml" or "nvidia-smi": what read the device's used memory ("" = neither)
    versions: dict[str, str] = field(default_factory=dict)  # torch, cuda, driver, transformers, peft, ...
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def check_free_memory(needed_bytes: int, free_bytes: int, total_bytes: int, *, device: str = "the GPU") -> None:
    """Refuse a run whose estimate exceeds the free memory (an OOM mid-run can leave the device busy)."""
    if needed_bytes > free_bytes:
        raise InsufficientMemoryError(
            f"The estimate ({format_bytes(needed_bytes, 'GiB', 2)}) exceeds the free memory of {device} "
            f"({format_bytes(free_bytes, 'GiB', 2)} free of {format_bytes(total_bytes, 'GiB', 2)}), so the live run was not started. "
            "Use a smaller batch or context, LoRA instead of full fine-tuning, or verify with --trace."
        )


def check_live_supported(spec: ModelSpec, w: Workload) -> None:
    if w.num_gpus > 1:
        raise LiveUnsupportedError(
            f"The live level measures one GPU; {w.num_gpus} GPUs ({w.parallelism}) would need torchrun with FSDP2 fully_shard, "
            "which is not implemented. Verify one replica (--gpus 1) or use --trace."
        )
    if w.runtime == "vllm":
        raise LiveUnsupportedError("The live level runs transformers; vLLM pre-allocates its cache from gpu_memory_utilization. Use the transformers runtime.")
    if w.mode == "qlora" or w.precision in ("int8", "int4", "fp8") or spec.quantization is not None:
        raise LiveUnsupportedError(
            "The live level builds random bf16/fp16/fp32 weights with from_config; quantized weights (QLoRA, int8, int4, fp8, "
            "pre-quantized checkpoints) need a real checkpoint. Verify the bf16 equivalent."
        )
    if w.is_training and w.optimizer == "adamw-8bit" and importlib.util.find_spec("bitsandbytes") is None:
        raise LiveUnsupportedError("8-bit AdamW needs bitsandbytes (pip install bitsandbytes); or verify with adamw.")


def cuda_available() -> tuple[bool, str]:
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed; install a CUDA build of torch to measure on a GPU, or use --trace (pip install -r requirements-dev.txt)."
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU here; use the trace level instead (--trace)."
    return True, ""


def _nvml_free() -> tuple[int, int] | None:
    """(free, total) of device 0 through NVML, without creating a CUDA context here; None without pynvml."""
    if importlib.util.find_spec("pynvml") is None:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0))
            return int(info.free), int(info.total)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML missing or failing: the worker checks again with torch.cuda.mem_get_info
        return None


def parse_worker_output(returncode: int, stdout: str, stderr: str = "") -> LiveResult:
    """The worker's result line -> `LiveResult` (fits or out-of-memory), or the error it reported."""
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith(RESULT_MARKER)), None)
    if line is None:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1][:400]
        raise VerificationError(f"The live worker exited with status {returncode} without a result: {tail}")
    try:
        data = json.loads(line[len(RESULT_MARKER):])
    except json.JSONDecodeError as e:
        raise VerificationError(f"The live worker's result could not be read ({e}).") from e
    status = data.pop("status", "error")
    message = str(data.get("message", ""))
    if status == "refused":
        raise InsufficientMemoryError(message)
    if status == "no-gpu":
        raise NoGPUError(message or "no CUDA GPU here; use the trace level instead (--trace).")
    if status == "unsupported":
        raise LiveUnsupportedError(message)
    if status not in ("ok", "oom"):
        raise VerificationError(f"The live run failed: {message}")
    known = {f for f in LiveResult.__dataclass_fields__ if f != "fits"}
    values = {k: v for k, v in data.items() if k in known}
    values["notes"] = tuple(values.get("notes", ()))
    return LiveResult(fits=status == "ok", **values)


def run_worker(command: Sequence[str], request: Mapping[str, Any], *, timeout: float) -> LiveResult:
    """Run the worker `command` with `request` as JSON on stdin; kill its whole session on timeout."""
    proc = subprocess.Popen(
        list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(json.dumps(request), timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session: it and any child it started
        proc.communicate()
        raise LiveTimeoutError(
            f"The live run took longer than {timeout:g} s and was stopped (the GPU memory it held is freed). "
            "Raise --timeout, or use a shorter context or fewer generated tokens."
        ) from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return parse_worker_output(proc.returncode, stdout, stderr)


def run_live(
    spec: ModelSpec,
    workload: Workload,
    *,
    config: Mapping[str, Any] | None = None,
    estimate_bytes: int,
    timeout: float = 600.0,
    worker_command: Sequence[str] | None = None,
    is_available: Callable[[], tuple[bool, str]] | None = None,
    mem_get_info: Callable[[], tuple[int, int]] | None = None,
    options: Mapping[str, Any] | None = None,
) -> LiveResult:
    """Measure `workload` on the local GPU (see the module docstring). `estimate_bytes` is what the
    engine says the run needs on the device; it must fit the free memory. `options` are the
    worker's settings outside `Workload` (`adamw_impl`: "foreach" | "fused"). `worker_command`,
    `is_available` and `mem_get_info` replace the real worker, CUDA check and free-memory query
    (tests)."""
    check_live_supported(spec, workload)
    ok, why = (is_available or cuda_available)()
    if not ok:
        raise NoGPUError(why or "no CUDA GPU here; use the trace level instead (--trace).")
    free_total = mem_get_info() if mem_get_info is not None else _nvml_free()
    if free_total is not None:
        check_free_memory(estimate_bytes, free_total[0], free_total[1])
    request = {
        "model_id": spec.model_id,
        "config": dict(config if config is not None else spec.raw_config),
        "workload": {**asdict(workload), "notes": list(workload.notes)},
        "estimate_bytes": int(estimate_bytes),
        "options": dict(options or {}),
    }
    started = time.monotonic()
    result = run_worker(worker_command or (sys.executable, "-m", WORKER_MODULE), request, timeout=timeout)
    if not result.seconds:
        result = LiveResult(**{**{f: getattr(result, f) for f in LiveResult.__dataclass_fields__}, "seconds": time.monotonic() - started})
    return result


def live_comparison_rows(est: Estimate, result: LiveResult) -> list[dict[str, Any]]:
    """Estimate vs the live run at the levels a GPU exposes: weights after load, the allocated and
    reserved peaks, and the device memory of the process (NVML)."""
    b = est.breakdown
    adapter_params_bytes = 0
    if est.workload.mode in ("lora", "qlora") and est.trainable_params:
        adapter_params_bytes = est.trainable_params * (4 if est.workload.adapter_precision == "fp32" else 2)
    weights = b.weights_bytes + b.master_weights_bytes + adapter_params_bytes
    pairs: list[tuple[str, int, int | None]] = [("weights (after load)", weights, result.after_load_bytes)]
    if result.fits:
        pairs += [
            ("torch allocated (peak)", b.torch_allocated_bytes, result.max_allocated_bytes),
            ("torch reserved (peak)", b.torch_reserved_bytes, result.max_reserved_bytes),
            ("device, this process (NVML)", b.total_bytes, result.nvml_process_bytes),
        ]
    rows = []
    for name, e, m in pairs:
        if m is None:
            continue
        rows.append({"component": name, "estimate_bytes": e, "measured_bytes": m, "difference_bytes": e - m, "error_pct": error_pct(e, m)})
    return rows


__all__ = [
    "CalculatorError",
    "InsufficientMemoryError",
    "LiveResult",
    "LiveTimeoutError",
    "LiveUnsupportedError",
    "NoGPUError",
    "check_free_memory",
    "live_comparison_rows",
    "parse_worker_output",
    "run_live",
    "run_worker",
]
