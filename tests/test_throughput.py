"""Throughput estimates: formulas pinned to hand-derived numbers, and a check against the
published Qwen2.5 speed benchmark (QwenLM/Qwen2.5 docs/source/benchmark/speed_benchmark.rst
@010c37c3: A100 80GB, batch 1, 2048 generated tokens after an input of 1 token)."""

from __future__ import annotations

import pytest

from calculator.errors import InvalidWorkloadError
from calculator.gpus import get_gpu
from calculator.pricing import rank_configurations
from calculator.throughput import (
    DECODE_BANDWIDTH_EFFICIENCY,
    decode_bytes_per_step,
    decode_tokens_per_s,
    estimate_configuration,
    prefill_tokens_per_s,
    usd_per_million_tokens,
)

# Qwen2.5-7B-Instruct (config: hidden 3584, 28 layers, 28 heads, 4 KV heads, head_dim 128,
# intermediate 18944, vocab 152064, untied embeddings, q/k/v biases):
#   per layer: q 3584*3584+3584 + k,v 2*(3584*512+512) + o 3584*3584 + mlp 3*3584*18944 + 2 norms*3584
#            = 12,848,640 + 3,671,040 + 12,845,056 + 203,685,888 + 7,168 = 233,057,792
#   total = 28 * 233,057,792 + 2 * 152064*3584 (embed + lm_head) + 3584 (final norm) = 7,615,616,512
#   active per token = total - embedding table (544,997,376) + one embedding row (3584) = 7,070,622,720
QWEN7_ACTIVE_PARAMS = 7_070_622_720
QWEN7_ACTIVE_BYTES = 2 * QWEN7_ACTIVE_PARAMS  # bf16 = 14,141,245,440
QWEN7_KV_PER_TOKEN = 28 * 2 * 4 * 128 * 2  # layers x (K,V) x kv heads x head_dim x 2 bytes = 57,344
# Qwen2.5-14B-Instruct (hidden 5120, 48 layers, 40 heads, 8 KV heads, intermediate 13824):
#   per layer = 26,219,520 + 2*5,243,904 + 26,214,400 + 212,336,640 + 10,240 = 275,268,608
#   total = 48 * 275,268,608 + 2 * 152064*5120 + 5120 = 14,770,033,664
#   active = 14,770,033,664 - 778,567,680 + 5120 = 13,991,471,104
QWEN14_ACTIVE_BYTES = 2 * 13_991_471_104
QWEN14_KV_PER_TOKEN = 48 * 2 * 8 * 128 * 2  # 196,608
# Average KV length over the benchmark's generation: 1 input token + 2048 generated / 2.
AVG_CONTEXT = 1 + 2048 // 2
A100_80GB = get_gpu("a100-80gb-sxm")  # the benchmark says "A100 80GB"; SXM: 2,039 GB/s
TOLERANCE = 0.15  # the efficiencies are 1-2 significant figures; 15 % covers PCIe vs SXM too


def test_decode_bytes_per_step():
    # 1e9 weight bytes + 1000 B/token x 100 tokens x 4 sequences = 1,000,400,000
    assert decode_bytes_per_step(active_weight_bytes=10**9, kv_bytes_per_token=1000, context_tokens=100, batch_size=4) == 1_000_400_000


def test_decode_is_bandwidth_over_bytes_times_efficiency():
    est = decode_tokens_per_s(active_weight_bytes=10**9, kv_bytes_per_token=0, context_tokens=0, bandwidth_bytes_per_s=10**12, efficiency=0.5)
    # 1e12 B/s x 0.5 / 1e9 B per token = 500 tokens/s
    assert est.per_sequence_tokens_per_s == pytest.approx(500)
    assert est.aggregate_tokens_per_s == pytest.approx(500) and est.bound == "memory"
    assert "estimate" in est.assumptions


def test_batching_shares_the_weight_read():
    # batch 8 reads weights once + 8 KV caches: 1e9 + 8 x 1e6 x 10 = 1.08e9 B per step
    est = decode_tokens_per_s(
        active_weight_bytes=10**9, kv_bytes_per_token=10**6, context_tokens=10, batch_size=8, bandwidth_bytes_per_s=10**12, efficiency=1.0
    )
    assert est.step_seconds == pytest.approx(1.08e-3)
    assert est.per_sequence_tokens_per_s == pytest.approx(1 / 1.08e-3)
    assert est.aggregate_tokens_per_s == pytest.approx(8 / 1.08e-3)


def test_tensor_parallel_splits_the_bytes():
    one = decode_tokens_per_s(active_weight_bytes=8 * 10**9, kv_bytes_per_token=0, context_tokens=0, bandwidth_bytes_per_s=10**12, efficiency=1.0)
    four = decode_tokens_per_s(active_weight_bytes=8 * 10**9, kv_bytes_per_token=0, context_tokens=0, bandwidth_bytes_per_s=10**12, efficiency=1.0, num_gpus=4)
    # 8e9 B / 4 GPUs = 2e9 B per GPU per step -> 500 tokens/s vs 125 tokens/s
    assert one.per_sequence_tokens_per_s == pytest.approx(125)
    assert four.per_sequence_tokens_per_s == pytest.approx(500)
    assert "communication ignored" in four.assumptions


def test_large_batches_become_compute_bound():
    # 1e9 params, batch 1024: compute 2 x 1e9 x 1024 / (1e15 x 0.5) = 4.096 ms;
    # memory (2e9 B weights, no KV) / (1e12 x 1.0) = 2 ms -> compute bound, 1024 / 4.096 ms.
    est = decode_tokens_per_s(
        active_weight_bytes=2 * 10**9, kv_bytes_per_token=0, context_tokens=0, bandwidth_bytes_per_s=10**12, efficiency=1.0,
        batch_size=1024, active_params=10**9, peak_flops_per_s=1e15, mfu=0.5,
    )
    assert est.bound == "compute" and est.step_seconds == pytest.approx(4.096e-3)
    assert est.aggregate_tokens_per_s == pytest.approx(1024 / 4.096e-3)


def test_prefill_is_flops_times_mfu_over_two_flops_per_param():
    # 989e12 FLOP/s x 0.5 / (2 x 7e9) = 35,321.4 tokens/s
    assert prefill_tokens_per_s(active_params=7 * 10**9, peak_flops_per_s=989e12, mfu=0.5) == pytest.approx(35_321.43, rel=1e-6)
    assert prefill_tokens_per_s(active_params=7 * 10**9, peak_flops_per_s=989e12, mfu=0.5, num_gpus=2) == pytest.approx(70_642.86, rel=1e-6)


def test_usd_per_million_tokens():
    # $3.60/hour at 100 tokens/s = 360,000 tokens/hour -> $10 per 1M tokens
    assert usd_per_million_tokens(3.6, 100) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("runtime", "published", "active_bytes", "kv_per_token"),
    [
        ("vllm", 84.28, QWEN7_ACTIVE_BYTES, QWEN7_KV_PER_TOKEN),  # 7B, vLLM 0.6.3
        ("vllm", 46.30, QWEN14_ACTIVE_BYTES, QWEN14_KV_PER_TOKEN),  # 14B, vLLM 0.6.3
        ("transformers", 40.38, QWEN7_ACTIVE_BYTES, QWEN7_KV_PER_TOKEN),  # 7B, transformers 4.46
        ("transformers", 24.74, QWEN14_ACTIVE_BYTES, QWEN14_KV_PER_TOKEN),  # 14B, transformers 4.46
    ],
)
def test_against_the_published_qwen25_speed_benchmark(runtime, published, active_bytes, kv_per_token):
    # e.g. 7B vLLM: (14,141,245,440 + 57,344 x 1025) B = 14,200,023,040 B per token;
    # 0.60 x 2.039e12 / 14.2e9 = 86.2 tokens/s vs 84.28 published (+2 %).
    est = decode_tokens_per_s(
        active_weight_bytes=active_bytes, kv_bytes_per_token=kv_per_token, context_tokens=AVG_CONTEXT,
        bandwidth_bytes_per_s=A100_80GB.memory_bandwidth_bytes_per_s, runtime=runtime,
    )
    assert est.per_sequence_tokens_per_s == pytest.approx(published, rel=TOLERANCE)


def test_efficiencies_are_fractions():
    assert all(0 < e <= 1 for e in DECODE_BANDWIDTH_EFFICIENCY.values())


def test_estimate_for_a_ranked_configuration_prices_output_tokens():
    rank = rank_configurations({1: 16 * 10**9})
    config = next(c for c in rank if c.gpu.id == "rtx-4090" and c.count == 1)
    est = estimate_configuration(
        config, active_weight_bytes=QWEN7_ACTIVE_BYTES, kv_bytes_per_token=QWEN7_KV_PER_TOKEN,
        active_params=QWEN7_ACTIVE_PARAMS, context_tokens=AVG_CONTEXT, batch_size=1,
    )
    # 1,008 GB/s x 0.60 / 14,200,023,040 B = 42.59 tokens/s
    assert est.decode.per_sequence_tokens_per_s == pytest.approx(42.59, rel=1e-3)
    # cheapest bundled RTX 4090 is OpenRelay $0.29/hour: 0.29 / (42.59 x 3600) x 1e6 = $1.891 per 1M
    assert config.total_usd_per_hour == pytest.approx(0.29)
    assert est.usd_per_million_output_tokens == pytest.approx(0.29 / (est.decode.aggregate_tokens_per_s * 3600) * 1e6)
    assert est.usd_per_million_output_tokens == pytest.approx(1.891, rel=1e-3)
    # prefill: 165.2e12 x 0.5 / (2 x 7,070,622,720) = 5,841 tokens/s
    assert est.prefill_tokens_per_s == pytest.approx(5_841.1, rel=1e-3)


def test_unpriced_configuration_has_no_cost():
    config = next(c for c in rank_configurations({1: 10**9}) if c.gpu.id == "t4")
    est = estimate_configuration(config, active_weight_bytes=10**9, kv_bytes_per_token=0, active_params=5 * 10**8, context_tokens=0, precision="fp16")
    assert est.usd_per_million_output_tokens is None and est.decode.per_sequence_tokens_per_s > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bandwidth_bytes_per_s": 0},
        {"batch_size": 0},
        {"efficiency": -0.1},
        {"runtime": "llama.cpp"},
        {"active_weight_bytes": -1},
    ],
)
def test_bad_inputs_raise(kwargs):
    base = {"active_weight_bytes": 10**9, "kv_bytes_per_token": 0, "context_tokens": 0, "bandwidth_bytes_per_s": 10**12}
    with pytest.raises(InvalidWorkloadError):
        decode_tokens_per_s(**{**base, **kwargs})
