"""vLLM serving: how vLLM budgets a GPU, and the capacity that budget buys.

vLLM does not grow memory with load. At start-up it (1) loads the weights, (2) profiles a forward
pass of `max_num_batched_tokens` dummy tokens to measure peak activations, (3) captures CUDA
graphs, then (4) gives every byte left under `gpu_memory_utilization x total GPU memory` to a
paged K/V cache of 16-token blocks (vLLM `Worker.determine_available_memory`,
`vllm/v1/worker/gpu_worker.py`; block size 16 is `CacheConfig.block_size`'s default). So the
useful answers are how many sequences of the chosen context fit at once, or how long a context
fits at the chosen concurrency.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import memory
from .units import BITS_PER_ELEMENT, MiB

if TYPE_CHECKING:
    from .estimate import Breakdown
    from .quantization import WeightFormat
    from .spec import ModelSpec
    from .workload import Workload

# vLLM's OpenAI server defaults (`EngineArgs.get_batch_defaults`, vllm/engine/arg_utils.py): a
# chunked-prefill budget of 8192 tokens and 1024 sequences on GPUs with >= 70 GiB other than A100,
# 2048 tokens and 256 sequences elsewhere. The profiling pass uses that budget; we size the larger
# token budget (conservative for small cards) and 256 sequences for the sampler's logits.
VLLM_MAX_NUM_BATCHED_TOKENS = 8192
VLLM_MAX_NUM_SEQS = 256
VLLM_BLOCK_SIZE = 16
# CUDA graph capture pool: vLLM logs "Graph capturing finished in N secs, took 0.3-1.0 GiB" for
# 7-70B models; 512 MiB is an assumption inside that range.
VLLM_CUDA_GRAPH_BYTES = 512 * MiB
# Non-torch memory vLLM measures outside the allocator (CUDA context, NCCL): same assumption as
# the transformers path (`estimate.CUDA_CONTEXT_BYTES`).
VLLM_NON_TORCH_BYTES = 500 * MiB


def _blocks(tokens: int) -> int:
    return -(-tokens // VLLM_BLOCK_SIZE)


def vllm_breakdown(spec: ModelSpec, w: Workload, fmt: WeightFormat, weights: int) -> Breakdown:
    """Weights + profiled activations + sampler logits + the K/V blocks `batch_size` sequences of
    `context_length` tokens need (whole blocks of 16 tokens)."""
    from .estimate import Breakdown

    c = fmt.compute_bytes
    kv_bits = BITS_PER_ELEMENT[w.kv_cache_precision or fmt.compute_precision]
    kv_tokens = _blocks(w.context_length) * VLLM_BLOCK_SIZE
    kv = memory.kv_cache_bytes(spec, batch_size=w.batch_size, seq_len=kv_tokens, kv_bits=kv_bits)
    profile_tokens = VLLM_MAX_NUM_BATCHED_TOKENS
    activations = memory.prefill_transient_bytes(spec, batch_size=1, seq_len=profile_tokens, compute_bytes=c, attention="flash")
    logits = VLLM_MAX_NUM_SEQS * spec.vocab_size * 4
    return Breakdown(weights_bytes=weights, kv_cache_bytes=kv, activations_bytes=activations, logits_bytes=logits)


def vllm_overhead(b: Breakdown, w: Workload) -> Breakdown:
    """CUDA graphs and context, then the share of the card vLLM leaves unused
    ((1 - gpu_memory_utilization) of it), so the total is the card size this workload needs."""
    used = b.torch_allocated_bytes + VLLM_CUDA_GRAPH_BYTES + VLLM_NON_TORCH_BYTES
    card = int(used / w.gpu_memory_utilization)
    return replace(b, cuda_context_bytes=VLLM_CUDA_GRAPH_BYTES + VLLM_NON_TORCH_BYTES, allocator_reserve_bytes=card - used)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingCapacity:
    """What a GPU (or N of them, tensor parallel) holds under vLLM."""

    gpu_bytes: int
    budget_bytes: int
    fixed_bytes: int
    kv_pool_bytes: int
    kv_bytes_per_sequence: int
    max_concurrent_sequences: int
    max_context_at_batch: int

    @property
    def fits(self) -> bool:
        return self.kv_pool_bytes > 0 and self.max_concurrent_sequences >= 1


def vllm_capacity(spec: ModelSpec, w: Workload, *, gpu_bytes: int) -> ServingCapacity:
    """K/V pool and concurrency on a GPU of `gpu_bytes` (per GPU, after tensor parallelism).

    pool = gpu_memory_utilization x gpu_bytes - (weights + activations + logits + graphs +
    non-torch); sequences = pool // per-sequence blocks; context = pool / batch in whole blocks.
    """
    from .estimate import estimate

    est = estimate(spec, replace(w, runtime="vllm"))
    b = est.breakdown
    fixed = b.torch_allocated_bytes - b.kv_cache_bytes + b.cuda_context_bytes
    budget = int(w.gpu_memory_utilization * gpu_bytes)
    pool = budget - fixed
    per_block = est.kv_bytes_per_token * VLLM_BLOCK_SIZE
    if est.num_gpus > 1 and not (spec.layer_types and spec.layer_types[0] == "mla"):
        heads = max(1, -(-spec.num_key_value_heads // est.num_gpus))
        per_block = per_block * heads // max(spec.num_key_value_heads, 1)
    per_seq = _blocks(w.context_length) * per_block
    max_seqs = max(pool, 0) // per_seq if per_seq else 0
    max_ctx = (max(pool, 0) // w.batch_size // per_block) * VLLM_BLOCK_SIZE if per_block else 0
    return ServingCapacity(
        gpu_bytes=gpu_bytes, budget_bytes=budget, fixed_bytes=fixed, kv_pool_bytes=pool,
        kv_bytes_per_sequence=per_seq, max_concurrent_sequences=max_seqs, max_context_at_batch=max_ctx,
    )
