"""SGLang's start-up memory budget, as SGLang 0.5.23 (the current release, 2026-10) computes it.

Read in the released wheel (`pip download sglang==0.5.23 --no-deps`):

- `_handle_gpu_memory_settings` (sglang/srt/arg_groups/memory_hook.py) picks, by the GPU's
  nvidia-smi `memory.total` (`get_device_memory_capacity`, MiB), the `--chunked-prefill-size` and
  the decode CUDA-graph `max_bs` (`GPU_TIERS`), then, when `--mem-fraction-static` is not given,
  `mem_fraction_static = round((gpu_mem - reserved) / gpu_mem, 3)` with `reserved` (MiB) = 512 +
  max(chunked_prefill_size, 2048) x 1.5 + tp / 8 x 1024 + the graph reserve (`reserve_for_graph_mb`:
  decode max_bs x 2, plus 8 per prefill capture size, or 1536 with an MLA backend), at least
  10,240 MiB on GPUs above 60 GiB;
- the KV pool (`KVCacheConfigurator._profile_available_bytes`, sglang/srt/mem_cache/
  kv_cache_configurator.py) is the free memory after the weights load minus
  `pre_model_load_memory x (1 - mem_fraction_static)`, where `pre_model_load_memory` is the free
  memory after the parallel (NCCL) setup and before the weights (`measure_pre_model_load_memory`,
  sglang/srt/distributed/bootstrap.py); it fails to start when that is <= 0 ("Loaded weights leave
  no GPU memory for the KV cache"). The pool holds `max_total_num_tokens = pool // cell_size`
  tokens (one token's K and V over this rank's layers). Requests longer than the pool are cut to
  it, so SGLang starts whenever the pool is positive.
- The radix cache (prefix sharing, on unless `--disable-radix-cache`) lives inside that pool: it
  changes how many requests share tokens, not the memory.

Activations and CUDA graphs run in the `1 - mem_fraction_static` share left outside the pool;
`headroom_ok` says whether this calculator's own sizing of them (vLLM's per-rank forward over
`chunked_prefill_size` tokens, `calculator.vllm`) fits there, else the first long prefill may OOM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import memory
from . import vllm as vllm_engine
from .units import BITS_PER_ELEMENT, GiB, MiB

if TYPE_CHECKING:
    from .spec import ModelSpec
    from .workload import Workload

SGLANG_VERSION = "0.5.23"

# (upper bound of nvidia-smi total in MiB, chunked_prefill_size, decode max_bs at TP < 4, at TP >= 4)
# from `_handle_gpu_memory_settings`: T4/4080; A10/4090/5090; A100-40GB/L40; H100/A100-80GB;
# H20/H200; B200/MI300.
GPU_TIERS: tuple[tuple[float, int, int, int], ...] = (
    (20 * 1024, 2048, 8, 8),
    (35 * 1024, 4096, 48, 160),
    (60 * 1024, 4096, 32, 160),
    (90 * 1024, 8192, 256, 512),
    (160 * 1024, 8192, 256, 512),
    (math.inf, 16384, 512, 512),
)


def gpu_defaults(gpu_mem_mib: float, tp: int) -> tuple[int, int]:
    """(chunked_prefill_size, decode CUDA-graph max_bs) SGLang picks for this GPU and TP size."""
    for bound, chunk, bs_small, bs_large in GPU_TIERS:
        if gpu_mem_mib < bound:
            return chunk, bs_small if tp < 4 else bs_large
    raise AssertionError("unreachable")


def decode_graph_sizes(max_bs: int) -> tuple[int, ...]:
    """`generate_decode_cuda_graph_batch_sizes` (sglang/srt/arg_groups/cuda_graph_hook.py), no
    speculative decoding: [1, 2, 4, 8, 12] + range(16, 257, 8) + range(272, 512, 16) +
    range(512, max_bs + 1, 32), up to max_bs."""
    grid = [1, 2, 4, 8, 12, *range(16, 257, 8), *range(272, 512, 16), *range(512, max_bs + 1, 32)]
    return tuple(n for n in grid if n <= max_bs)


def prefill_graph_sizes(max_tokens: int) -> tuple[int, ...]:
    """`generate_prefill_cuda_graph_batch_sizes`: token buckets up to the chunked prefill size
    (the breakable prefill graphs are on by default on CUDA, `default_prefill_backend`)."""
    grid = [*range(4, 33, 4), *range(48, 257, 16), *range(288, 513, 32), *range(576, 1025, 64),
            *range(1280, 4097, 256), *range(4608, max_tokens + 1, 512)]
    return tuple(n for n in grid if n <= max_tokens)


def default_mem_fraction_static(gpu_mem_mib: float, *, tp: int, chunked_prefill_size: int, decode_max_bs: int, mla: bool) -> float:
    """`mem_fraction_static` when the flag is not given (the formula in the module docstring)."""
    prefill_max = min(8192, chunked_prefill_size) if mla else chunked_prefill_size
    graphs = decode_max_bs * 2 + (1536 if mla else len(prefill_graph_sizes(prefill_max)) * 8)
    reserved = 512 + max(chunked_prefill_size, 2048) * 1.5 + tp / 8 * 1024 + graphs
    if gpu_mem_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((gpu_mem_mib - reserved) / gpu_mem_mib, 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class SglangBudget:
    """One GPU's start-up budget under SGLang (per TP rank)."""

    mem_fraction_static: float
    chunked_prefill_size: int
    decode_max_bs: int
    pre_model_load_bytes: int
    weights_bytes: int
    kv_pool_bytes: int
    cell_size_bytes: int
    max_total_num_tokens: int
    max_concurrency: float  # requests of the full context at once
    headroom_bytes: int  # left outside the static share for activations and graphs
    activation_estimate_bytes: int
    headroom_ok: bool
    starts: bool
    reason: str
    command: str


def sglang_budget(
    spec: ModelSpec, w: Workload, *, gpu_usable_bytes: int, nvlink: bool = True, datacenter: bool = True,
    mem_fraction_static: float | None = None, chunked_prefill_size: int | None = None, cuda_graph_max_bs: int | None = None,
) -> SglangBudget:
    """SGLang's budget for `w` (context `context_length`, TP `num_gpus`, fp8 KV when
    `kv_cache_precision` is fp8) on GPUs whose nvidia-smi total is `gpu_usable_bytes`."""
    from .quantization import weight_format

    tp = w.num_gpus
    gpu_mem_mib = gpu_usable_bytes / MiB
    chunk_default, bs_default = gpu_defaults(gpu_mem_mib, tp)
    chunk = chunked_prefill_size or chunk_default
    max_bs = cuda_graph_max_bs or bs_default
    mla = memory.is_mla(spec)
    mfs = mem_fraction_static if mem_fraction_static is not None else default_mem_fraction_static(
        gpu_mem_mib, tp=tp, chunked_prefill_size=chunk, decode_max_bs=max_bs, mla=mla)
    fmt = weight_format(spec, w)
    weights = vllm_engine.sharded_weight_bytes(spec, fmt, tp)
    total = vllm_engine.cuda_total_bytes(gpu_usable_bytes)
    settings = vllm_engine.VllmSettings(tensor_parallel_size=tp, max_model_len=w.context_length)
    # What the distributed setup allocates before `pre_model_load_memory` is measured; with a
    # lazy-connect NCCL (>= 2.22, which SGLang 0.5.23's torch pin ships) the channel buffers come
    # later, at the first collectives, out of the 1 - mem_fraction_static share.
    del datacenter  # the kernels loaded at the first forward also come out of that share
    nccl = vllm_engine.nccl_init_bytes(settings, nvlink=nvlink)
    pre = total - vllm_engine.CUDA_CONTEXT_BYTES - nccl
    pool = int(pre - weights - pre * (1 - mfs))
    kv_bits = 8 if w.kv_cache_precision in ("fp8", "int8") else BITS_PER_ELEMENT[fmt.compute_precision]
    heads = max(1, -(-spec.num_key_value_heads // tp))
    per_token = sum(spec.kv_lora_rank + spec.qk_rope_head_dim if k == "mla" else 2 * heads * spec.head_dim for k in spec.layer_types)
    cell = -(-per_token * kv_bits // 8)
    tokens = max(pool, 0) // cell if cell else 0
    headroom = int(pre * (1 - mfs))
    act = vllm_engine.forward_activation_bytes(spec, tokens=chunk, compute_bytes=fmt.compute_bytes, tp=tp)
    reason = ""
    if pool <= 0:
        reason = (f"the weights ({weights / GiB:.2f} GiB) leave no memory for the KV cache under mem_fraction_static {mfs:.3f} "
                  f"({pre * mfs / GiB:.2f} GiB static)")
    command = f"python -m sglang.launch_server --model-path {spec.model_id} --context-length {w.context_length}"
    if tp > 1:
        command += f" --tp {tp}"
    if mem_fraction_static is not None:
        command += f" --mem-fraction-static {mem_fraction_static:g}"
    if w.kv_cache_precision in ("fp8", "int8"):
        command += " --kv-cache-dtype fp8_e4m3"
    if chunked_prefill_size:
        command += f" --chunked-prefill-size {chunked_prefill_size}"
    if cuda_graph_max_bs:
        command += f" --cuda-graph-max-bs-decode {cuda_graph_max_bs}"
    return SglangBudget(
        mem_fraction_static=mfs, chunked_prefill_size=chunk, decode_max_bs=max_bs, pre_model_load_bytes=pre,
        weights_bytes=weights, kv_pool_bytes=pool, cell_size_bytes=cell, max_total_num_tokens=tokens,
        max_concurrency=tokens / w.context_length if w.context_length else 0.0, headroom_bytes=headroom,
        activation_estimate_bytes=act, headroom_ok=act <= headroom, starts=not reason, reason=reason, command=command,
    )
