"""Live level guards, checked without a GPU: the no-CUDA message, the free-memory refusal, the
timeout kill, and how worker output (a fit, an OOM, a refusal, a crash) becomes a result or an error.

The real worker needs CUDA; these tests replace it with tiny `python -c` commands through
`run_live(worker_command=...)`, and the CUDA check / free-memory query through `is_available=` and
`mem_get_info=`. Nothing here imports torch.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from calculator.errors import CalculatorError
from calculator.estimate import estimate
from calculator.resolve import resolve_model
from calculator.units import GiB
from calculator.verify import run_verification
from calculator.verify.live import (
    RESULT_MARKER,
    InsufficientMemoryError,
    LiveResult,
    LiveTimeoutError,
    LiveUnsupportedError,
    NoGPUError,
    check_free_memory,
    live_comparison_rows,
    parse_worker_output,
    run_live,
)
from calculator.workload import Workload

LLAMA = "meta-llama/Llama-3.2-3B"


@pytest.fixture(scope="module")
def spec():
    return resolve_model(LLAMA, offline=True).spec


def yes() -> tuple[bool, str]:
    return True, ""


def worker_printing(result: dict) -> list[str]:
    """A stand-in worker that reads the request (as the real one does) and prints `result`."""
    line = RESULT_MARKER + json.dumps(result)
    return [sys.executable, "-c", f"import sys, json; json.loads(sys.stdin.read()); print('library chatter'); print({line!r})"]


def test_no_cuda_says_use_trace(spec) -> None:
    with pytest.raises(NoGPUError, match=r"no CUDA GPU here; use the trace level"):
        run_live(spec, Workload(precision="bf16"), estimate_bytes=1, is_available=lambda: (False, "no CUDA GPU here; use the trace level instead (--trace)."))


def test_no_cuda_on_this_machine_through_the_cli_contract(spec) -> None:
    # This machine and CI have no GPU: the default check (torch.cuda.is_available, or torch missing) refuses.
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(CalculatorError, match="no CUDA GPU here; use the trace level"):
        run_verification(spec, Workload(precision="bf16", context_length=128), level="live", timeout=30)


def test_free_memory_refusal_before_the_worker_starts(spec) -> None:
    w = Workload(precision="bf16", context_length=1024)
    needed = estimate(spec, w).total_bytes  # ~6.8 GiB for 3B bf16 weights + context
    never = [sys.executable, "-c", "raise SystemExit('the worker must not start')"]
    with pytest.raises(InsufficientMemoryError, match=r"exceeds the free memory of the GPU \(4\.00 GiB free of 24\.00 GiB\)"):
        run_live(spec, w, estimate_bytes=needed, is_available=yes, mem_get_info=lambda: (4 * GiB, 24 * GiB), worker_command=never)


def test_check_free_memory_boundary() -> None:
    check_free_memory(10, 10, 20)  # exactly fits
    with pytest.raises(InsufficientMemoryError):
        check_free_memory(11, 10, 20)


def test_timeout_kills_the_worker(spec) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = time.monotonic()
    with pytest.raises(LiveTimeoutError, match=r"longer than 1 s and was stopped"):
        run_live(spec, Workload(precision="bf16"), estimate_bytes=1, timeout=1, is_available=yes, mem_get_info=lambda: (80 * GiB, 80 * GiB),
                 worker_command=sleeper)
    assert time.monotonic() - started < 10


def test_timeout_kills_children_of_the_worker_too(spec, tmp_path) -> None:
    # The worker runs in its own session; a timeout kills the whole group, so a grandchild cannot outlive it.
    marker = tmp_path / "survived"
    child = tmp_path / "child.py"
    child.write_text(f"import time\ntime.sleep(3)\nopen({str(marker)!r}, 'w').write('x')\n")
    parent = tmp_path / "parent.py"
    parent.write_text(f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, {str(child)!r}])\ntime.sleep(60)\n")
    with pytest.raises(LiveTimeoutError):
        run_live(spec, Workload(precision="bf16"), estimate_bytes=1, timeout=1, is_available=yes, mem_get_info=lambda: (80 * GiB, 80 * GiB),
                 worker_command=[sys.executable, str(parent)])
    time.sleep(4)
    assert not marker.exists()


def test_oom_is_a_result_not_a_crash(spec) -> None:
    oom = {"status": "oom", "message": "CUDA out of memory: Tried to allocate 2.00 GiB", "device_name": "NVIDIA L4",
           "device_total_bytes": 23 * GiB, "free_before_bytes": 22 * GiB, "after_load_bytes": 6 * GiB, "max_allocated_bytes": 21 * GiB,
           "max_reserved_bytes": 22 * GiB}
    w = Workload(precision="bf16", context_length=1024)
    r = run_live(spec, w, estimate_bytes=1, is_available=yes, mem_get_info=lambda: (22 * GiB, 23 * GiB), worker_command=worker_printing(oom))
    assert r.fits is False and r.device_name == "NVIDIA L4" and "out of memory" in r.message
    rows = live_comparison_rows(estimate(spec, w), r)
    assert [row["component"] for row in rows] == ["weights (after load)"]  # no peak rows from a run that did not finish


def test_ok_result_and_comparison_rows(spec) -> None:
    w = Workload(precision="bf16", context_length=1024)
    est = estimate(spec, w)
    ok = {"status": "ok", "device_name": "NVIDIA H100", "device_total_bytes": 80 * GiB, "free_before_bytes": 79 * GiB,
          "after_load_bytes": est.breakdown.weights_bytes, "max_allocated_bytes": est.torch_allocated_bytes // 2 * 2,
          "max_reserved_bytes": est.breakdown.torch_reserved_bytes, "nvml_process_bytes": None, "nvml_device_used_bytes": 9 * GiB,
          "notes": ["n"]}

    def runner(run_spec, workload, **kwargs):
        return run_live(run_spec, workload, **kwargs, is_available=yes, mem_get_info=lambda: (79 * GiB, 80 * GiB), worker_command=worker_printing(ok))

    data = run_verification(spec, w, level="live", timeout=30, live_runner=runner)
    json.dumps(data)  # JSON-able
    assert data["live"]["fits"] is True and data["live"]["notes"] == ["n"]
    by = {row["component"]: row for row in data["comparison"]}
    assert by["weights (after load)"]["error_pct"] == 0.0
    assert by["torch allocated (peak)"]["measured_bytes"] == ok["max_allocated_bytes"]
    assert "device, this process (NVML)" not in by  # pynvml gave no per-process number
    assert data["total"]["estimate_bytes"] == est.torch_allocated_bytes


@pytest.mark.parametrize(
    ("status", "error"),
    [("refused", InsufficientMemoryError), ("no-gpu", NoGPUError), ("unsupported", LiveUnsupportedError), ("error", CalculatorError)],
)
def test_worker_statuses_become_calculator_errors(status, error) -> None:
    out = RESULT_MARKER + json.dumps({"status": status, "message": "because"})
    with pytest.raises(error, match="because"):
        parse_worker_output(0, "noise\n" + out + "\n")


def test_worker_crash_without_a_result_line() -> None:
    with pytest.raises(CalculatorError, match=r"exited with status 1 without a result: RuntimeError: boom"):
        parse_worker_output(1, "", "Traceback ...\nRuntimeError: boom\n")


def test_live_result_round_trip() -> None:
    r = parse_worker_output(0, RESULT_MARKER + json.dumps({"status": "ok", "max_allocated_bytes": 5, "unknown_field": 1}))
    assert r == LiveResult(fits=True, max_allocated_bytes=5)


@pytest.mark.parametrize(
    ("workload", "match"),
    [
        (Workload(mode="full", precision="bf16", num_gpus=4, parallelism="fsdp"), "torchrun with FSDP2 fully_shard"),
        (Workload(precision="int4"), "quantized weights"),
        (Workload(precision="bf16", runtime="vllm"), "vLLM"),
    ],
)
def test_unsupported_live_workloads(spec, workload, match) -> None:
    with pytest.raises(LiveUnsupportedError, match=match):
        run_live(spec, workload, estimate_bytes=1, is_available=yes)
