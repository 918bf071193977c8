"""Data types and unit conversion.

Inside the library every memory quantity is an `int` of bytes. Conversion to GB (10^9) or GiB
(2^30) happens only for display, through the helpers here, and the unit is always printed.
"""

from __future__ import annotations

from typing import Literal

Precision = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")

# Bits per element of each storage type. fp8 (e4m3/e5m2) and int8 are one byte; int4 is a nibble.
BITS_PER_ELEMENT: dict[str, int] = {
    "fp32": 32,
    "bf16": 16,
    "fp16": 16,
    "fp8": 8,
    "int8": 8,
    "int4": 4,
}

# safetensors dtype names (huggingface_hub `SafetensorsFileMetadata.parameter_count` keys) to bits.
SAFETENSORS_DTYPE_BITS: dict[str, int] = {
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F32": 32,
    "I32": 32,
    "U32": 32,
    "F16": 16,
    "BF16": 16,
    "I16": 16,
    "U16": 16,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "I8": 8,
    "U8": 8,
    "BOOL": 8,
    "F4": 4,
}

GB = 10**9
GiB = 2**30
MiB = 2**20


def bytes_for_bits(num_elements: int, bits: int) -> int:
    """Bytes to store `num_elements` values of `bits` bits each, rounded up (never `bits // 8`)."""
    return -(-num_elements * bits // 8)


def bytes_per_element(precision: str) -> float:
    """Bytes per element of a precision, for display only (int4 is 0.5)."""
    return BITS_PER_ELEMENT[precision] / 8


def to_gib(num_bytes: int) -> float:
    return num_bytes / GiB


def to_gb(num_bytes: int) -> float:
    return num_bytes / GB


def format_bytes(num_bytes: int, unit: Literal["GiB", "GB"] = "GiB", digits: int = 1) -> str:
    """`format_bytes(16_060_522_496)` -> '15.0 GiB'. Small values switch to MiB/MB."""
    base, small, small_name = (GiB, MiB, "MiB") if unit == "GiB" else (GB, 10**6, "MB")
    if abs(num_bytes) < base:
        return f"{num_bytes / small:,.0f} {small_name}"
    return f"{num_bytes / base:,.{digits}f} {unit}"


def format_count(num: int) -> str:
    """Parameter counts as people say them: 5.77B, 494M, 110M."""
    if num >= 10**12:
        return f"{num / 10**12:.2f}T"
    if num >= 10**9:
        return f"{num / 10**9:.2f}B"
    if num >= 10**6:
        return f"{num / 10**6:.0f}M"
    return f"{num:,}"
