"""vLLM serving: the card a workload needs, what a GPU configuration holds, and "will it start".

vLLM does not grow memory with load. At start-up each worker loads its weights, profiles a dummy
batch, (from 0.20) estimates its CUDA graphs, then gives every byte left under
`gpu_memory_utilization x total` to a paged K/V cache of 16-token blocks; the terms, per vLLM
version and per TP rank, are in `calculator.vllm`. This module turns them into the estimate's
breakdown (the card size a workload needs), the capacity of a ranked GPU configuration, and,
when `vllm serve` would not start, the smallest flag change that makes it start, as the command
line to run.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import vllm as engine
from .errors import InvalidWorkloadError
from .units import BITS_PER_ELEMENT, GiB

if TYPE_CHECKING:
    from .estimate import Breakdown
    from .quantization import WeightFormat
    from .spec import ModelSpec
    from .workload import Workload

VLLM_BLOCK_SIZE = engine.VLLM_BLOCK_SIZE
GPU_COUNTS: tuple[int, ...] = (1, 2, 4, 8)


def _blocks(tokens: int) -> int:
    return -(-tokens // VLLM_BLOCK_SIZE)


def _kv_bits(w: Workload, fmt: WeightFormat) -> int:
    return 8 if w.kv_cache_precision in ("fp8", "int8") else BITS_PER_ELEMENT[fmt.compute_precision]


def _terms(spec: ModelSpec, w: Workload, fmt: WeightFormat, *, gpu_total_bytes: int, gpu_name: str = "", nvlink: bool = True) -> dict[str, int]:
    """Per-GPU start-up terms of `w` (settings resolved for a card of `gpu_total_bytes`)."""
    s = engine.resolved_settings(engine.VllmSettings.from_workload(w), gpu_total_bytes=gpu_total_bytes, gpu_name=gpu_name)
    version = engine.vllm_version(s.version)
    c = fmt.compute_bytes
    graphs = engine.cudagraph_bytes(spec, s, compute_bytes=c)
    per_block = engine.kv_bytes_per_block(spec, s, kv_bits=_kv_bits(w, fmt))
    per_request = engine.kv_blocks_per_request(spec, s)
    return {
        "weights": engine.sharded_weight_bytes(spec, fmt, s.tensor_parallel_size),
        "activations": engine.activation_peak_bytes(spec, s, compute_bytes=c),
        "non_torch": engine.non_torch_bytes(s, nvlink=nvlink),
        "nccl_out": 0 if version.nccl_in_budget else engine.nccl_bytes(s, nvlink=nvlink),
        "graphs_in": graphs if version.cudagraphs_in_budget else 0,
        "graphs_out": 0 if version.cudagraphs_in_budget else graphs,
        "kv": math.ceil(w.batch_size * per_request) * per_block,
    }


def _card_for(t: dict[str, int], util: float) -> tuple[int, int]:
    """(cuda total needed, in-budget bytes): the budget must hold the in-budget terms and the
    headroom the CUDA context (+ graphs captured after the KV cache, before 0.20)."""
    in_budget = t["weights"] + t["activations"] + t["non_torch"] + t["graphs_in"] + t["kv"]
    outside = engine.CUDA_CONTEXT_BYTES + t["graphs_out"] + t["nccl_out"]
    card = math.ceil(in_budget / util)
    if util < 1.0:
        card = max(card, math.ceil(outside / (1.0 - util)))
    else:
        card += outside
    return card, in_budget


def vllm_breakdown(spec: ModelSpec, w: Workload, fmt: WeightFormat, weights: int) -> Breakdown:
    """Per-GPU (already per TP rank) weights + profiled activation peak + the K/V blocks
    `batch_size` requests of `context_length` tokens need. The vLLM defaults that depend on the
    card (max_num_batched_tokens / max_num_seqs) are those of a card below 70 GiB unless the
    workload needs a larger one."""
    from .estimate import Breakdown

    del weights  # the rank's shard is computed by the engine model
    t = _terms(spec, w, fmt, gpu_total_bytes=0)
    card, _ = _card_for(t, w.gpu_memory_utilization)
    if card >= 70 * GiB:
        t = _terms(spec, w, fmt, gpu_total_bytes=card)
    return Breakdown(weights_bytes=t["weights"], kv_cache_bytes=t["kv"], activations_bytes=t["activations"])


def vllm_overhead(b: Breakdown, w: Workload, spec: ModelSpec, fmt: WeightFormat) -> Breakdown:
    """Non-torch memory, CUDA graphs, the CUDA context and the driver's reserve, then the share
    of the card vLLM leaves unused, so the total is the card (nvidia-smi total) this workload needs."""
    t = _terms(spec, w, fmt, gpu_total_bytes=0)
    card, _ = _card_for(t, w.gpu_memory_utilization)
    if card >= 70 * GiB:
        t = _terms(spec, w, fmt, gpu_total_bytes=card)
        card, _ = _card_for(t, w.gpu_memory_utilization)
    context = t["non_torch"] + t["nccl_out"] + t["graphs_in"] + t["graphs_out"] + engine.CUDA_CONTEXT_BYTES + engine.CUDA_TOTAL_RESERVED_BYTES
    nvidia_smi_card = card + engine.CUDA_TOTAL_RESERVED_BYTES
    left = nvidia_smi_card - b.torch_allocated_bytes - context
    return replace(b, cuda_context_bytes=context, allocator_reserve_bytes=max(left, 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class StartupFix:
    """One flag change that makes `vllm serve` start on a configuration."""

    kind: str  # gpu_memory_utilization | enforce_eager | kv_cache_fp8 | max_model_len | tensor_parallel | combined
    description: str
    workload: Workload
    command: str
    kv_tokens: int
    max_concurrency: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingCapacity:
    """What a GPU (or N of them, tensor parallel) holds under vLLM, and whether it starts."""

    gpu_bytes: int
    budget_bytes: int
    fixed_bytes: int
    kv_pool_bytes: int
    kv_bytes_per_sequence: int
    max_concurrent_sequences: int
    max_context_at_batch: int
    starts: bool = True
    reason: str = ""
    kv_tokens: int = 0
    max_concurrency: float = 0.0
    command: str = ""
    fix: StartupFix | None = None
    budget: engine.VllmBudget | None = None

    @property
    def fits(self) -> bool:
        return self.kv_pool_bytes > 0 and self.max_concurrent_sequences >= 1


def vllm_capacity(
    spec: ModelSpec, w: Workload, *, gpu_bytes: int, gpu_name: str = "", nvlink: bool = True, datacenter: bool = True,
    advise: bool = True, compute_capability: int | None = None,
) -> ServingCapacity:
    """K/V pool, concurrency and the start-up answer on `w.num_gpus` GPUs of `gpu_bytes` each
    (nvidia-smi total). Sequences = KV blocks // blocks per request of `context_length`;
    context = KV blocks / batch in whole blocks. `fix` is the smallest flag change when it does
    not start (`startup_fix`)."""
    b = engine.vllm_budget(spec, w, gpu_usable_bytes=gpu_bytes, gpu_name=gpu_name, nvlink=nvlink, datacenter=datacenter,
                           compute_capability=compute_capability)
    # A GPU too old for the weights' kernels has no flag that makes it start: no fix is offered.
    from .quantization import weight_format

    fmt_name = weight_format(spec, w).name
    advise = advise and not (engine.capability_problem(fmt_name, compute_capability)
                             or engine.version_problem(fmt_name, engine.vllm_version(w.vllm_version)))
    per_block = b.kv_bytes_per_block
    per_request = engine.kv_blocks_per_request(spec, b.settings)
    per_seq = math.ceil(per_request) * per_block
    pool = b.available_kv_bytes
    max_seqs = int(b.num_blocks // per_request) if per_request else 0
    max_ctx = (max(pool, 0) // w.batch_size // per_block) * VLLM_BLOCK_SIZE if per_block else 0
    fix = startup_fix(spec, w, gpu_bytes=gpu_bytes, gpu_name=gpu_name, nvlink=nvlink, datacenter=datacenter) if advise and not b.starts else None
    return ServingCapacity(
        gpu_bytes=gpu_bytes, budget_bytes=b.requested_bytes, fixed_bytes=b.non_kv_bytes, kv_pool_bytes=pool,
        kv_bytes_per_sequence=per_seq, max_concurrent_sequences=max_seqs, max_context_at_batch=max_ctx,
        starts=b.starts, reason=b.reason, kv_tokens=b.kv_tokens, max_concurrency=b.max_concurrency,
        command=serve_command(spec, w), fix=fix, budget=b,
    )


def serve_command(spec: ModelSpec, w: Workload) -> str:
    """`vllm serve MODEL ...` with the flags of `w` that differ from vLLM's defaults."""
    s = engine.VllmSettings.from_workload(w)
    return engine.vllm_serve_command(spec.model_id, s)


def _starts(spec: ModelSpec, w: Workload, gpu_bytes: int, gpu_name: str, nvlink: bool, datacenter: bool = True) -> engine.VllmBudget:
    return engine.vllm_budget(spec, w, gpu_usable_bytes=gpu_bytes, gpu_name=gpu_name, nvlink=nvlink, datacenter=datacenter)


# The highest --gpu-memory-utilization the fix proposes: above it the allocator's fragmentation and
# kernels loaded after start-up have too little room (vLLM's own advice, the
# `check_enough_kv_cache_memory` error, is to raise it; 0.95 is this calculator's ceiling).
MAX_SUGGESTED_UTILIZATION = 0.95


def _lowest_utilization_that_starts(
    spec: ModelSpec, w: Workload, gpu_bytes: int, gpu_name: str, nvlink: bool, datacenter: bool,
) -> float | None:
    """The lowest --gpu-memory-utilization (in steps of 0.01, above the current one, at most
    `MAX_SUGGESTED_UTILIZATION`) at which it starts; None when none does. Binary search: starting
    is monotone in the budget until the headroom check fails, which the top value tests."""
    low = math.floor(w.gpu_memory_utilization * 100) + 1
    high = round(MAX_SUGGESTED_UTILIZATION * 100)
    if low > high:
        return None

    def ok(pct: int) -> bool:
        return _starts(spec, replace(w, gpu_memory_utilization=pct / 100), gpu_bytes, gpu_name, nvlink, datacenter).starts

    if not ok(high):
        return None
    while low < high:
        mid = (low + high) // 2
        if ok(mid):
            high = mid
        else:
            low = mid + 1
    return low / 100


def startup_fix(
    spec: ModelSpec, w: Workload, *, gpu_bytes: int, gpu_name: str = "", nvlink: bool = True, datacenter: bool = True,
) -> StartupFix | None:
    """The smallest flag change that makes `vllm serve` start on `w.num_gpus` GPUs of `gpu_bytes`,
    least disruptive first: a higher --gpu-memory-utilization (vLLM's own advice, up to 0.95),
    --enforce-eager (no graphs: slower decode, same answers),
    --kv-cache-dtype fp8 (half the KV bytes), a shorter --max-model-len (the longest that fits),
    a larger --tensor-parallel-size (more GPUs of the same kind); when none alone works, the
    first three together. None when it already starts or nothing makes it start."""
    from .pricing import tensor_parallel_problem

    def attempt(kind: str, description: str, cand: Workload) -> StartupFix | None:
        b = _starts(spec, cand, gpu_bytes, gpu_name, nvlink, datacenter)
        if not b.starts:
            return None
        return StartupFix(kind=kind, description=description, workload=cand, command=serve_command(spec, cand),
                          kv_tokens=b.kv_tokens, max_concurrency=b.max_concurrency)

    base = _starts(spec, w, gpu_bytes, gpu_name, nvlink, datacenter)
    if base.starts:
        return None
    tries: list[tuple[str, str, Workload]] = []
    with contextlib.suppress(InvalidWorkloadError):
        util = _lowest_utilization_that_starts(spec, w, gpu_bytes, gpu_name, nvlink, datacenter)
        if util is not None:
            tries.append(("gpu_memory_utilization", f"raise --gpu-memory-utilization to {util:.2f} (a GPU no other process uses)",
                          replace(w, gpu_memory_utilization=util)))
        if not w.enforce_eager:
            tries.append(("enforce_eager", "add --enforce-eager (no CUDA graphs: slower decode)", replace(w, enforce_eager=True)))
        if w.kv_cache_precision not in ("fp8", "int8") and spec.layer_types:
            tries.append(("kv_cache_fp8", "add --kv-cache-dtype fp8 (half the KV cache bytes)", replace(w, kv_cache_precision="fp8")))
        if base.max_model_len_that_fits >= VLLM_BLOCK_SIZE and base.max_model_len_that_fits < w.context_length:
            n = base.max_model_len_that_fits
            tries.append(("max_model_len", f"lower --max-model-len to {n:,}", replace(w, context_length=n, generated_tokens=min(w.generated_tokens, n - 1))))
        for n in GPU_COUNTS:
            if n > w.num_gpus and not tensor_parallel_problem(n, spec.num_attention_heads, spec.num_key_value_heads):
                tries.append(("tensor_parallel", f"use --tensor-parallel-size {n} ({n} GPUs)", replace(w, num_gpus=n, parallelism="auto")))
    for kind, description, cand in tries:
        found = attempt(kind, description, cand)
        if found is not None:
            return found
    # Together: eager + fp8 KV, then the longest max_model_len that fits with both.
    with contextlib.suppress(InvalidWorkloadError):
        both = replace(w, enforce_eager=True, kv_cache_precision="fp8" if spec.layer_types else w.kv_cache_precision)
        found = attempt("combined", "add --enforce-eager and --kv-cache-dtype fp8", both)
        if found is not None:
            return found
        b = _starts(spec, both, gpu_bytes, gpu_name, nvlink, datacenter)
        n = b.max_model_len_that_fits
        if n >= VLLM_BLOCK_SIZE:
            cand = replace(both, context_length=min(n, w.context_length), generated_tokens=min(w.generated_tokens, min(n, w.context_length) - 1))
            return attempt("combined", f"add --enforce-eager and --kv-cache-dtype fp8, lower --max-model-len to {cand.context_length:,}", cand)
    return None
