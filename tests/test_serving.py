"""vLLM budgeting: gpu_memory_utilization x card - fixed costs = K/V pool, in 16-token blocks."""

from __future__ import annotations

from calculator import memory
from calculator.estimate import estimate
from calculator.resolve import resolve_catalog
from calculator.serving import VLLM_CUDA_GRAPH_BYTES, VLLM_NON_TORCH_BYTES, vllm_capacity
from calculator.workload import Workload

MiB = 2**20


def test_llama_8b_on_h100_concurrency():
    spec = resolve_catalog("meta-llama/Llama-3.1-8B").spec
    w = Workload(precision="bf16", runtime="vllm", context_length=8192, batch_size=1)
    h100 = 81_559 * MiB  # nvidia-smi total of an H100 80GB
    cap = vllm_capacity(spec, w, gpu_bytes=h100)
    # Fixed: weights 16,060,522,496 B + profiled prefill of 8192 tokens (one layer's transients:
    # 8192 x 2 x (4 x 4096 + 3 x 14336) B) + sampler logits 256 x 128,256 x 4 B + CUDA graphs + context.
    activations = memory.prefill_transient_bytes(spec, batch_size=1, seq_len=8192, compute_bytes=2, attention="flash")
    assert activations == 8192 * 2 * (4 * 4096 + 3 * 14336)
    fixed = 16_060_522_496 + activations + 256 * 128_256 * 4 + VLLM_CUDA_GRAPH_BYTES + VLLM_NON_TORCH_BYTES
    assert cap.fixed_bytes == fixed
    pool = int(0.9 * h100) - fixed
    assert cap.kv_pool_bytes == pool
    # One sequence of 8192 tokens = 512 blocks x 16 tokens x 131,072 B = 1 GiB of K/V.
    assert cap.kv_bytes_per_sequence == 2**30
    assert cap.max_concurrent_sequences == pool // 2**30
    assert cap.max_context_at_batch == (pool // (16 * 131_072)) * 16


def test_vllm_estimate_is_the_card_size_needed():
    spec = resolve_catalog("meta-llama/Llama-3.1-8B").spec
    w = Workload(precision="bf16", runtime="vllm", context_length=4096, batch_size=4, gpu_memory_utilization=0.8)
    est = estimate(spec, w)
    b = est.breakdown
    used = b.torch_allocated_bytes + b.cuda_context_bytes
    # vLLM only uses 80% of the card: the card must be used / 0.8.
    assert b.total_bytes == int(used / 0.8)
    # The K/V part is exactly the blocks 4 sequences of 4096 tokens need.
    assert b.kv_cache_bytes == 4 * 4096 * 131_072


def test_too_small_a_card_does_not_fit():
    spec = resolve_catalog("meta-llama/Llama-3.1-70B").spec
    cap = vllm_capacity(spec, Workload(precision="bf16", runtime="vllm"), gpu_bytes=81_559 * MiB)
    assert not cap.fits and cap.max_concurrent_sequences == 0
