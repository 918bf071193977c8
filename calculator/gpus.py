"""The GPU catalog: what each card can hold and how fast it computes, read from package data.

`calculator/data/gpus/gpus.csv` has one row per GPU (see `SOURCES.md` next to it for every
column, source and caveat). The fit check uses `GPU.usable_bytes`, the `memory.total` that
`nvidia-smi` (or `rocm-smi`) prints before any CUDA context, not the marketed size: an
"80 GB" H100 shows 81,559 MiB, an RTX 4090 24,564 MiB, and ECC on a GDDR6 datacenter card
removes 1/16 (A40: 46,068 MiB).

Inside, memory is an `int` of bytes, bandwidth an `int` of bytes/s and throughput a `float`
of operations/s (dense, no 2:4 sparsity). Conversion to GB/GiB/TFLOPS is for display only.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

from .errors import InvalidWorkloadError
from .units import MiB, Precision

NVLink = Literal["yes", "bridge", "no"]

DATA_PACKAGE = "calculator.data"
GPUS_FILE = "gpus/gpus.csv"

# When `nvidia-smi` was not found for a GPU (GB200, MI250, MI325X, MI355X, Gaudi 2/3, RTX 4080),
# usable memory is estimated as this share of the marketed size read as GiB. The rows that do
# have a readout report 99.48 % (B200: 183,359 / 184,320 MiB) to 99.95 % (RTX 4090: 24,564 /
# 24,576 MiB) of marketed GiB when ECC is off or HBM (gpus.csv, S-NVSMI), so 99 % is a slightly
# conservative estimate. Marked `usable_is_estimate` and reported by `pricing.data_issues()`.
ESTIMATED_USABLE_FRACTION = 0.99

TERA = 10**12
GIGA = 10**9


@dataclass(frozen=True, slots=True, kw_only=True)
class GPU:
    """One GPU model. Throughputs are dense (no sparsity) peak rates per GPU, in operations/s."""

    id: str
    name: str
    vendor: str
    architecture: str
    memory_gb: float  # as marketed (the vendor's "GB", GiB-sized on every card here)
    reported_total_mib: int | None  # nvidia-smi / rocm-smi memory.total; None = not found
    memory_bandwidth_bytes_per_s: int
    # FP16/BF16 tensor rate with FP32 accumulate (what PyTorch fp16/bf16 matmuls use). GeForce
    # cards run FP16-accumulate at 2x this; see `fp16_accumulate_flops_per_s`.
    bf16_flops_per_s: float | None
    fp16_accumulate_flops_per_s: float | None = None
    fp8_flops_per_s: float | None = None
    int8_ops_per_s: float | None = None
    supports_bf16: bool = True
    supports_fp8: bool = False
    nvlink: NVLink = "no"
    interconnect: str = ""
    segment: str = ""
    form_factor: str = ""
    memory_type: str = ""
    tdp_w: int | None = None
    confidence: str = "medium"
    source: str = ""
    notes: str = ""
    reported_total_note: str = ""
    user_added: bool = False
    usable_bytes: int = field(init=False)
    usable_is_estimate: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.reported_total_mib is not None:
            usable, estimate = self.reported_total_mib * MiB, False
        else:
            # Round down to whole MiB, like the readouts it stands in for.
            usable, estimate = math.floor(self.memory_gb * 1024 * ESTIMATED_USABLE_FRACTION) * MiB, True
        object.__setattr__(self, "usable_bytes", usable)
        object.__setattr__(self, "usable_is_estimate", estimate)

    @property
    def is_cuda(self) -> bool:
        return self.vendor.upper().startswith("NVIDIA")

    @property
    def usable_note(self) -> str:
        if self.usable_is_estimate:
            return (
                f"usable memory estimated as {ESTIMATED_USABLE_FRACTION:.0%} of {self.memory_gb:g} GiB "
                "(no nvidia-smi readout found for this GPU)"
            )
        return f"{self.reported_total_mib:,} MiB as reported by nvidia-smi" + (f" ({self.reported_total_note})" if self.reported_total_note else "")

    def flops_per_s(self, precision: str) -> float | None:
        """Peak dense tensor rate used for compute in `precision` (weight-only int8/int4 compute in 16-bit)."""
        if precision == "fp8":
            return self.fp8_flops_per_s or self.bf16_flops_per_s
        if precision == "fp32":
            # No fp32 tensor rate in the table; TF32 is half the 16-bit rate on Ampere+ (NVIDIA A100
            # whitepaper: 156 vs 312 TFLOPS dense), which is what PyTorch uses for fp32 matmuls with TF32 on.
            return self.bf16_flops_per_s / 2 if self.bf16_flops_per_s else None
        return self.bf16_flops_per_s


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _opt_float(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return float(value)


def _opt_int(value: Any) -> int | None:
    number = _opt_float(value)
    return None if number is None else int(number)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"yes", "true", "1", "y"}


def gpu_from_row(row: Mapping[str, Any], *, user_added: bool = False) -> GPU:
    """Build a `GPU` from a row with the `gpus.csv` column names (units: GB, GB/s, TFLOPS, MiB).

    Required: `id`, `name`, `memory_gb`, `memory_bandwidth_gbps`, `fp16_bf16_tflops_dense`.
    Everything else is optional; `reported_total_mib` is estimated when missing.
    """
    gpu_id = str(row.get("id") or "").strip()
    where = f"GPU {gpu_id!r}" if gpu_id else "a GPU row"
    try:
        memory_gb = float(row["memory_gb"])
        bandwidth_gbps = float(row["memory_bandwidth_gbps"])
        bf16_tflops = _opt_float(row.get("fp16_bf16_tflops_dense"))
        reported = _opt_int(row.get("reported_total_mib"))
        fp16_acc = _opt_float(row.get("fp16_tflops_dense_fp16_accumulate"))
        fp8 = _opt_float(row.get("fp8_tflops_dense"))
        int8 = _opt_float(row.get("int8_tops_dense"))
        tdp = _opt_int(row.get("tdp_w"))
    except KeyError as exc:
        raise InvalidWorkloadError(f"{where} needs a value for {exc.args[0]!r} (see gpus.csv for the columns).") from exc
    except (TypeError, ValueError) as exc:
        raise InvalidWorkloadError(f"{where} has a value that is not a number: {exc}.") from exc
    if not gpu_id or not str(row.get("name") or "").strip():
        raise InvalidWorkloadError("Every GPU needs an `id` and a `name`.")
    numbers = {"memory_gb": memory_gb, "memory_bandwidth_gbps": bandwidth_gbps, "fp16_bf16_tflops_dense": bf16_tflops, "reported_total_mib": reported}
    for name, value in numbers.items():
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise InvalidWorkloadError(f"{where}: {name} must be a positive number; got {value!r}.")
    nvlink = str(row.get("nvlink") or "no").strip().lower()
    if nvlink not in ("yes", "bridge", "no"):
        raise InvalidWorkloadError(f"{where}: nvlink must be yes, bridge or no; got {nvlink!r}.")
    return GPU(
        id=gpu_id,
        name=str(row["name"]).strip(),
        vendor=str(row.get("vendor") or "NVIDIA"),
        architecture=str(row.get("architecture") or ""),
        memory_gb=memory_gb,
        reported_total_mib=reported,
        memory_bandwidth_bytes_per_s=round(bandwidth_gbps * GIGA),
        bf16_flops_per_s=bf16_tflops * TERA if bf16_tflops else None,
        fp16_accumulate_flops_per_s=fp16_acc * TERA if fp16_acc else None,
        fp8_flops_per_s=fp8 * TERA if fp8 else None,
        int8_ops_per_s=int8 * TERA if int8 else None,
        supports_bf16=_flag(row.get("supports_bf16", "yes")),
        supports_fp8=_flag(row.get("supports_fp8", "no")),
        nvlink=nvlink,  # type: ignore[arg-type]
        interconnect=str(row.get("interconnect") or ""),
        segment=str(row.get("segment") or ""),
        form_factor=str(row.get("form_factor") or ""),
        memory_type=str(row.get("memory_type") or ""),
        tdp_w=tdp,
        confidence=str(row.get("confidence") or ("user" if user_added else "medium")),
        source=str(row.get("source") or ("added by you" if user_added else "")),
        notes=str(row.get("notes") or ""),
        reported_total_note=str(row.get("reported_total_note") or ""),
        user_added=user_added,
    )


def parse_gpus_csv(text: str) -> tuple[GPU, ...]:
    return tuple(gpu_from_row(row) for row in csv.DictReader(io.StringIO(text)))


@cache
def load_gpus() -> tuple[GPU, ...]:
    """The bundled GPU table (39 rows), read once per process. Immutable, so safe to share."""
    text = resources.files(DATA_PACKAGE).joinpath(GPUS_FILE).read_text(encoding="utf-8")
    return parse_gpus_csv(text)


@cache
def _bundled_index() -> dict[str, GPU]:
    return {gpu.id: gpu for gpu in load_gpus()}


def get_gpu(gpu_id: str, gpus: Sequence[GPU] | None = None) -> GPU:
    """The GPU with this id; raises `InvalidWorkloadError` naming the known ids otherwise."""
    index = _bundled_index() if gpus is None else {g.id: g for g in gpus}
    try:
        return index[gpu_id]
    except KeyError:
        raise InvalidWorkloadError(f"Unknown GPU id {gpu_id!r}. Known ids: {', '.join(sorted(index))}.") from None


def with_extra_gpus(extra: Iterable[Mapping[str, Any]], gpus: Sequence[GPU] | None = None) -> tuple[GPU, ...]:
    """The catalog plus user-added GPUs (rows with the `gpus.csv` column names).

    A row whose `id` is already in the catalog replaces that GPU (e.g. a card with ECC off);
    the result keeps catalog order with new GPUs appended. Bad rows raise `InvalidWorkloadError`.
    """
    base = list(load_gpus() if gpus is None else gpus)
    position = {g.id: i for i, g in enumerate(base)}
    for row in extra:
        gpu = gpu_from_row(row, user_added=True)
        if gpu.id in position:
            base[position[gpu.id]] = gpu
        else:
            position[gpu.id] = len(base)
            base.append(gpu)
    return tuple(base)


# CUDA compute capability (major x 10 + minor) by the catalog's `architecture` column: NVIDIA,
# "CUDA GPUs - Compute Capability" (developer.nvidia.com/cuda-gpus): V100 7.0; T4 7.5; A100 (GA100)
# 8.0; A10/A40/RTX A-series/RTX 30 (GA10x) 8.6; Ada 8.9; Hopper 9.0; B200/GB200 10.0; RTX 50 and
# RTX PRO Blackwell (GB20x) 12.0. First match wins (the chip-named rows before the family).
_COMPUTE_CAPABILITY: tuple[tuple[str, int], ...] = (
    ("Volta", 70), ("Turing", 75), ("Ampere (GA100)", 80), ("Ampere", 86), ("Ada", 89), ("Hopper", 90),
    ("Blackwell (GB20", 120), ("Blackwell", 100),
)


def compute_capability(gpu: GPU) -> int | None:
    """`gpu`'s CUDA compute capability as vLLM compares it (`DeviceCapability.to_int()`: 70 for
    7.0), or None for a non-NVIDIA part or an architecture not in the table."""
    if gpu.vendor != "NVIDIA":
        return None
    return next((cc for prefix, cc in _COMPUTE_CAPABILITY if gpu.architecture.startswith(prefix)), None)


# --------------------------------------------------------------------------------------------
# Precision support
# --------------------------------------------------------------------------------------------


def precision_support(gpu: GPU, precision: Precision | str) -> tuple[bool, str]:
    """Whether `gpu` computes natively in `precision`, and a note saying what happens otherwise.

    `ok=False` never removes a GPU from the ranking; it flags a slow or unsupported path:
    - bf16 needs bf16 tensor cores (Ampere and later, CDNA 2+, Gaudi): V100 and T4 have none,
      and PyTorch then emulates bf16 matmuls far below the fp16 rate.
    - fp8 needs fp8 tensor cores (Ada, Hopper, Blackwell, MI300 series, Gaudi 2/3). Elsewhere
      fp8 checkpoints run weight-only (e.g. vLLM's FP8 Marlin kernels on Ampere) with 16-bit compute.
    - int8/int4 here means weight-only quantization (bitsandbytes, GPTQ, AWQ): weights are
      dequantized to 16-bit for each matmul, so it saves memory, not compute. bitsandbytes and
      most GPTQ/AWQ kernels are CUDA-first, so ok=True on NVIDIA and ok=False (not native) on
      AMD/Intel, where support depends on the ROCm/Gaudi build of each library.
    """
    if precision in ("fp32", "fp16"):
        return True, f"{precision} is supported natively."
    if precision == "bf16":
        if gpu.supports_bf16:
            return True, "bf16 tensor cores."
        return False, f"not native: {gpu.name} ({gpu.architecture}) has no bf16 tensor cores; bf16 is emulated and slow. Use fp16 instead."
    if precision == "fp8":
        if gpu.supports_fp8:
            return True, "fp8 tensor cores."
        return False, (
            f"not native: {gpu.name} ({gpu.architecture}) has no fp8 tensor cores; fp8 weights are "
            "upcast to 16-bit for compute (weight-only, e.g. vLLM FP8 Marlin), so memory is saved but not compute."
        )
    if precision in ("int8", "int4"):
        bits = 8 if precision == "int8" else 4
        if gpu.is_cuda:
            return True, f"{bits}-bit weight-only quantization (bitsandbytes, GPTQ, AWQ) runs on any CUDA GPU; matmuls run in 16-bit after dequantizing."
        return False, (
            f"not native: {bits}-bit weight-only kernels (bitsandbytes, GPTQ, AWQ) are CUDA-first; on "
            f"{gpu.vendor} they depend on the library's ROCm/Gaudi build. Check your stack before renting."
        )
    raise InvalidWorkloadError(f"precision must be one of fp32, bf16, fp16, fp8, int8, int4; got {precision!r}.")


def interconnect_note(gpu: GPU, count: int) -> str:
    """What links `count` GPUs of this kind (empty for one GPU)."""
    if count <= 1:
        return ""
    if gpu.nvlink == "yes":
        return f"NVLink between all {count} GPUs ({gpu.interconnect})." if gpu.interconnect else f"NVLink between all {count} GPUs."
    if gpu.nvlink == "bridge":
        if count == 2:
            return "NVLink bridge pairs the 2 GPUs (if the host has the bridge fitted; many cloud hosts do not)."
        return f"NVLink bridges join pairs only; traffic between the {count // 2} pairs goes over PCIe, so tensor parallel is slow."
    return "PCIe only: tensor parallel over PCIe is slow (every layer all-reduces across the bus)."
