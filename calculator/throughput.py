"""Rough token throughput and $ per million tokens: estimates, labelled with their assumptions.

Two rooflines, no measurement:

- Decode (one new token per sequence per step) is memory-bandwidth bound at small batch: each
  step streams the active weights once for the whole batch, plus every sequence's KV cache.
  step time = bytes read per GPU / (peak bandwidth x efficiency); under tensor parallelism each
  of n GPUs reads 1/n of the weights and KV (all-reduce time is ignored, so multi-GPU numbers
  are optimistic, more so over PCIe). At large batch the step becomes compute bound; the step
  time is the larger of the two.
- Prefill (the prompt) is compute bound: 2 FLOPs per active parameter per token (Kaplan et al.
  2020, "Scaling Laws for Neural Language Models", C_forward ~ 2N; attention score FLOPs are
  ignored, which understates long prompts) over peak dense 16-bit FLOPs x MFU.

The functions take plain numbers (bytes, parameter counts, tokens) so they do not depend on
the memory engine's internals; `estimate_configuration` applies them to a ranked
`GPUConfiguration` and prices the output tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InvalidWorkloadError
from .pricing import GPUConfiguration

# Share of peak DRAM bandwidth that batch-1 decode achieves ("model bandwidth utilisation").
# - vllm 0.60: lower end of the 60-85 % that tuned serving stacks reach (open-source-ai.tech
#   glossary "model bandwidth utilization": vLLM/TensorRT-LLM "commonly 70 to 85 percent", real
#   systems "around 60 to 85 percent"), and what the Qwen2.5 speed benchmark implies for vLLM
#   0.6.3 on an A100 80GB: Qwen2.5-7B-Instruct BF16 at 84.28 tokens/s x ~14.2 GB read per token
#   = 1.20 TB/s of 2.039 TB/s = 0.59 (QwenLM/Qwen2.5 docs/source/benchmark/speed_benchmark.rst
#   @010c37c3). A 2026 study ("Memory-Bound but Not Bandwidth-Limited", 44 batch-1 runs of 7-8B
#   models) finds the fraction falls on faster GPUs, so H100/B200 numbers are upper bounds.
# - transformers 0.30: the Hugging Face `generate` loop at batch 1 is dominated by Python and
#   kernel-launch overhead. Fit to the same benchmark's transformers 4.46 row for
#   Qwen2.5-7B-Instruct BF16 (40.38 tokens/s -> 0.28); its 14B row (24.74 tokens/s) implies 0.34.
#   Medium confidence; tests pin both rows within 15 %.
DECODE_BANDWIDTH_EFFICIENCY: dict[str, float] = {"vllm": 0.60, "transformers": 0.30}

# Model FLOPs utilisation of prefill. Pope et al. 2022 ("Efficiently Scaling Transformer
# Inference", arXiv 2211.05102, abstract) reach 76 % MFU in large-batch prefill of PaLM 540B on
# hand-tuned TPU v4; GPU serving stacks on short prompts reach less. 0.5 is a middle estimate
# (assumption, low confidence); pass `mfu=` to change it.
PREFILL_MFU = 0.50

# MFU of the batched decode matmuls when the batch is large enough to be compute bound; same
# source and caveat as PREFILL_MFU.
DECODE_MFU = 0.50

SECONDS_PER_HOUR = 3600
TOKENS_PER_MILLION = 1_000_000


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise InvalidWorkloadError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number; got {value!r}.")


def decode_bytes_per_step(*, active_weight_bytes: int, kv_bytes_per_token: int, context_tokens: int, batch_size: int = 1) -> int:
    """Bytes one decode step reads (all GPUs together): active weights once + each sequence's KV.

    `context_tokens` is the length the KV cache has at this step; for the average over a
    generation of g tokens after a prompt of p, use p + g / 2.
    """
    return active_weight_bytes + kv_bytes_per_token * context_tokens * batch_size


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeEstimate:
    """Decode speed estimate. Per-sequence tokens/s is what one user sees; aggregate is per replica."""

    per_sequence_tokens_per_s: float
    aggregate_tokens_per_s: float
    step_seconds: float
    bytes_per_step_per_gpu: int
    bound: str  # "memory" or "compute"
    efficiency: float
    assumptions: str


def decode_tokens_per_s(
    *,
    active_weight_bytes: int,
    kv_bytes_per_token: int,
    context_tokens: int,
    bandwidth_bytes_per_s: int,
    batch_size: int = 1,
    num_gpus: int = 1,
    runtime: str = "vllm",
    efficiency: float | None = None,
    active_params: int | None = None,
    peak_flops_per_s: float | None = None,
    mfu: float = DECODE_MFU,
) -> DecodeEstimate:
    """Decode tokens/s: bandwidth bound, and compute bound when `active_params` and FLOPs are given.

    memory time  = decode_bytes_per_step / num_gpus / (bandwidth x efficiency)
    compute time = 2 x active_params x batch / num_gpus / (peak FLOPs x mfu)
    step = max of the two; per sequence 1 / step tokens/s, aggregate batch / step.
    """
    if efficiency is None:
        if runtime not in DECODE_BANDWIDTH_EFFICIENCY:
            raise InvalidWorkloadError(f"runtime must be one of {', '.join(DECODE_BANDWIDTH_EFFICIENCY)}; got {runtime!r}.")
        efficiency = DECODE_BANDWIDTH_EFFICIENCY[runtime]
    for name, value in (("active weight bytes", active_weight_bytes), ("KV bytes per token", kv_bytes_per_token), ("context tokens", context_tokens)):
        _positive(name, value, allow_zero=True)
    for name, value in (("bandwidth", bandwidth_bytes_per_s), ("batch size", batch_size), ("number of GPUs", num_gpus), ("efficiency", efficiency)):
        _positive(name, value)
    total_bytes = decode_bytes_per_step(
        active_weight_bytes=active_weight_bytes, kv_bytes_per_token=kv_bytes_per_token, context_tokens=context_tokens, batch_size=batch_size
    )
    per_gpu_bytes = math.ceil(total_bytes / num_gpus)
    memory_s = per_gpu_bytes / (bandwidth_bytes_per_s * efficiency)
    compute_s = 0.0
    if active_params and peak_flops_per_s:
        compute_s = 2 * active_params * batch_size / num_gpus / (peak_flops_per_s * mfu)
    step = max(memory_s, compute_s)
    if step <= 0:
        raise InvalidWorkloadError("decode reads no bytes and does no FLOPs; give the model's active weight bytes.")
    bound = "compute" if compute_s > memory_s else "memory"
    label = runtime if efficiency == DECODE_BANDWIDTH_EFFICIENCY.get(runtime) else "custom"
    assumptions = f"estimate: {bound}-bound roofline at {efficiency:.0%} of peak bandwidth ({label})"
    if num_gpus > 1:
        assumptions += f", {num_gpus}-way tensor parallel with communication ignored"
    return DecodeEstimate(
        per_sequence_tokens_per_s=1 / step,
        aggregate_tokens_per_s=batch_size / step,
        step_seconds=step,
        bytes_per_step_per_gpu=per_gpu_bytes,
        bound=bound,
        efficiency=efficiency,
        assumptions=assumptions,
    )


def prefill_tokens_per_s(*, active_params: int, peak_flops_per_s: float, num_gpus: int = 1, mfu: float = PREFILL_MFU) -> float:
    """Prompt tokens/s: peak FLOPs x num_gpus x mfu / (2 x active_params)."""
    _positive("active parameters", active_params)
    _positive("peak FLOPs", peak_flops_per_s)
    _positive("number of GPUs", num_gpus)
    _positive("MFU", mfu)
    return peak_flops_per_s * num_gpus * mfu / (2 * active_params)


def usd_per_million_tokens(total_usd_per_hour: float, tokens_per_s: float) -> float:
    """$ per 1M tokens at a steady `tokens_per_s`: usd/hour / (tokens/s x 3600) x 1e6."""
    _positive("price per hour", total_usd_per_hour, allow_zero=True)
    _positive("tokens per second", tokens_per_s)
    return total_usd_per_hour / (tokens_per_s * SECONDS_PER_HOUR) * TOKENS_PER_MILLION


@dataclass(frozen=True, slots=True, kw_only=True)
class ThroughputEstimate:
    """Speed and output-token cost of one GPU configuration (estimates; see `assumptions`)."""

    decode: DecodeEstimate
    prefill_tokens_per_s: float | None
    usd_per_million_output_tokens: float | None  # at the aggregate decode rate and the cheapest price
    assumptions: str


def estimate_configuration(
    config: GPUConfiguration,
    *,
    active_weight_bytes: int,
    kv_bytes_per_token: int,
    active_params: int,
    context_tokens: int,
    batch_size: int = 1,
    precision: str = "bf16",
    runtime: str = "vllm",
) -> ThroughputEstimate:
    """Decode and prefill speed of `config`, and $ per 1M output tokens at its cheapest price."""
    gpu = config.gpu
    flops = gpu.flops_per_s(precision)
    decode = decode_tokens_per_s(
        active_weight_bytes=active_weight_bytes,
        kv_bytes_per_token=kv_bytes_per_token,
        context_tokens=context_tokens,
        bandwidth_bytes_per_s=gpu.memory_bandwidth_bytes_per_s,
        batch_size=batch_size,
        num_gpus=config.count,
        runtime=runtime,
        active_params=active_params,
        peak_flops_per_s=flops,
    )
    prefill = prefill_tokens_per_s(active_params=active_params, peak_flops_per_s=flops, num_gpus=config.count) if flops else None
    cost = usd_per_million_tokens(config.total_usd_per_hour, decode.aggregate_tokens_per_s) if config.total_usd_per_hour is not None else None
    assumptions = decode.assumptions + f"; prefill at {PREFILL_MFU:.0%} MFU of peak dense {precision} FLOPs (2 FLOPs per active parameter per token)"
    if not config.precision_ok:
        assumptions += f"; {config.precision_note}"
    return ThroughputEstimate(decode=decode, prefill_tokens_per_s=prefill, usd_per_million_output_tokens=cost, assumptions=assumptions)
