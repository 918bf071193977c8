"""SGLang's start-up budget pinned to SGLang 0.5.23's code (`calculator/sglang.py` names each
function): GPU-tier defaults, CUDA-graph sizes, the default mem_fraction_static, the KV pool."""

from __future__ import annotations

import json

from calculator import sglang as S
from calculator import vllm as V
from calculator.cli import main
from calculator.resolve import resolve_catalog
from calculator.workload import Workload

MiB = 2**20
H100 = 81_559 * MiB
RTX4090 = 24_564 * MiB


def test_gpu_tier_defaults():
    assert S.gpu_defaults(15_360, 1) == (2048, 8)  # T4
    assert S.gpu_defaults(24_564, 1) == (4096, 48)  # RTX 4090
    assert S.gpu_defaults(24_564, 4) == (4096, 160)
    assert S.gpu_defaults(81_559, 2) == (8192, 256)  # H100
    assert S.gpu_defaults(143_771, 8) == (8192, 512)  # H200
    assert S.gpu_defaults(183_359, 1) == (16384, 512)  # B200


def test_cuda_graph_sizes():
    # [1, 2, 4, 8, 12] + range(16, 257, 8): 5 + 31 = 36 sizes to 256; + range(272, 512, 16) + [512]: 52.
    assert len(S.decode_graph_sizes(256)) == 36 and len(S.decode_graph_sizes(512)) == 52
    # Prefill token buckets: 8 + 14 + 8 + 8 + 12 = 50 up to 4096, + 8 of range(4608, 8193, 512) = 58.
    assert len(S.prefill_graph_sizes(4096)) == 50 and len(S.prefill_graph_sizes(8192)) == 58


def test_default_mem_fraction_static():
    # H100: reserved = 512 + 8192 x 1.5 + 1/8 x 1024 + 256 x 2 + 58 x 8 = 13,904 MiB (> the 10,240 floor);
    # (81,559 - 13,904) / 81,559 = 0.8295 -> 0.83.
    assert S.default_mem_fraction_static(81_559, tp=1, chunked_prefill_size=8192, decode_max_bs=256, mla=False) == 0.83
    # RTX 4090: 512 + 6144 + 128 + 96 + 50 x 8 = 7,280 MiB; (24,564 - 7,280) / 24,564 = 0.7036 -> 0.704.
    assert S.default_mem_fraction_static(24_564, tp=1, chunked_prefill_size=4096, decode_max_bs=48, mla=False) == 0.704


def test_kv_pool_is_the_static_share_minus_the_weights():
    spec = resolve_catalog("meta-llama/Llama-3.1-8B").spec
    b = S.sglang_budget(spec, Workload(precision="bf16", context_length=8192), gpu_usable_bytes=H100)
    pre = V.cuda_total_bytes(H100) - V.CUDA_CONTEXT_BYTES
    assert b.pre_model_load_bytes == pre and b.weights_bytes == 16_060_522_496
    assert b.kv_pool_bytes == int(pre - b.weights_bytes - pre * (1 - 0.83))
    # One token: 32 layers x 2 x 8 heads x 128 x 2 B.
    assert b.cell_size_bytes == 131_072 and b.max_total_num_tokens == b.kv_pool_bytes // 131_072
    fp8 = S.sglang_budget(spec, Workload(precision="bf16", context_length=8192, kv_cache_precision="fp8"), gpu_usable_bytes=H100)
    assert fp8.cell_size_bytes == 65_536 and "--kv-cache-dtype fp8_e4m3" in fp8.command
    assert b.starts and b.headroom_ok


def test_too_large_a_model_does_not_start():
    spec = resolve_catalog("meta-llama/Llama-3.1-70B").spec
    b = S.sglang_budget(spec, Workload(precision="bf16"), gpu_usable_bytes=H100)
    assert not b.starts and "no memory for the KV cache" in b.reason
    tp4 = S.sglang_budget(spec, Workload(precision="bf16", num_gpus=4), gpu_usable_bytes=H100)
    assert tp4.starts and "--tp 4" in tp4.command


def test_cli_json_carries_sglangs_answer(capsys):
    assert main(["estimate", "meta-llama/Llama-3.1-8B", "--offline", "--runtime", "vllm", "--precision", "bf16", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["gpu_ranking"]
    assert rows and all(r["sglang"]["command"].startswith("python -m sglang.launch_server") for r in rows)
