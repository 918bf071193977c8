"""vLLM's start-up memory budget, term by term, as each supported vLLM version computes it.

At start-up a vLLM worker (one per GPU; tensor parallelism runs one per rank) does this, and the
KV cache gets whatever is left (V1: `Worker.determine_available_memory`,
`vllm/v1/worker/gpu_worker.py`; V0: `Worker.determine_num_available_blocks`,
`vllm/worker/worker.py`):

1. snapshot the device (`MemorySnapshot`) once the CUDA context exists (0.10.2 and V0: before
   NCCL is set up; 0.19+: after it, `VllmVersion.nccl_in_budget`); the budget is
   `requested = gpu_memory_utilization x total`, and start-up fails at once when less than that
   is free ("Free memory on device ... is less than desired GPU memory utilization");
2. load the weights (this rank's shard);
3. profile: one forward of `max_num_batched_tokens` dummy tokens split over
   `min(max_num_seqs, tokens)` requests, then the sampler over those requests' logits
   (`GPUModelRunner.profile_run` / `_dummy_sampler_run`); the PyTorch peak increase is the
   activation term, the growth of memory outside PyTorch since the snapshot (NCCL, custom
   all-reduce, loaded kernels) is the non-torch term (`memory_profiling`, `vllm/utils/mem_utils.py`);
4. from 0.20 on, capture sample CUDA graphs and subtract their estimated pool
   (`profile_cudagraph_memory`, on by default: `VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1` in
   `vllm/envs.py`); earlier versions capture graphs after the KV cache is allocated, so the pool
   comes out of the `1 - gpu_memory_utilization` headroom instead;
5. KV = requested - weights - activation peak - non-torch (- graphs), cut into blocks of
   `block_size` (16) tokens; start-up fails when that cannot hold one request of `max_model_len`
   tokens (`check_enough_kv_cache_memory`: `vllm/v1/core/kv_cache_utils.py` in 0.10.2,
   `vllm/v1/core/kv_cache_planning.py` in 0.33.0).

Each term is sized here from the model's config, per GPU, for the version picked
(`VLLM_VERSIONS`). Sources were read in the released wheels (`pip download vllm==X --no-deps`):
0.33.0 (current, 2026-11), 0.32.0, 0.19.0, 0.10.2 and 0.7.3 (the last V0-default release); the file and
function behind each number are named where it is used. Scored against start-up logs in
`benchmarks/vllm_validation.py` (report: `benchmarks/results/vllm_validation.md`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import memory
from .errors import InvalidWorkloadError
from .units import BITS_PER_ELEMENT, GiB, MiB

if TYPE_CHECKING:
    from .quantization import WeightFormat
    from .spec import ModelSpec
    from .workload import Workload


@dataclass(frozen=True, slots=True, kw_only=True)
class VllmVersion:
    """What changes between vLLM releases in the start-up budget."""

    name: str
    released: str
    engine: str  # "v1" (vllm/v1/worker/gpu_worker.py) or "v0" (vllm/worker/worker.py)
    # Bytes alive per (profiled request x vocabulary) element at the sampler's peak.
    sampler_bytes_per_logit: int
    # CUDA-graph pool estimated and subtracted before the KV cache (else taken from the headroom).
    cudagraphs_in_budget: bool
    # Capture-size grid: "8+16" = [1, 2, 4] + range(8, 256, 8) + range(256, max + 1, 16) (0.11+,
    # `VllmConfig._set_cudagraph_sizes`, vllm/config/vllm.py); "8" = [1, 2, 4] + range(8, max + 1, 8)
    # (0.10.2 vllm/config/__init__.py; V0 0.7.3 vllm/config.py, see `capture_sizes`).
    capture_grid: str
    # Decode-only FULL graphs captured next to the PIECEWISE ones (cudagraph_mode
    # FULL_AND_PIECEWISE, the default since 0.11: vllm/config/compilation.py).
    full_and_piecewise: bool
    source: str
    # V1 workers all run `_dummy_sampler_run` (vllm/v1/worker/gpu_worker.py, every TP rank is the
    # last PP rank); V0 samples on the driver worker only (`Sampler` output is gathered to rank 0,
    # vllm/worker/model_runner.py `execute_model`: `if not self.is_driver_worker: return []`).
    sampler_on_every_rank: bool = True
    # NCCL / custom all-reduce buffers inside the profiled non-torch term (the device snapshot is
    # taken before the distributed setup: 0.10.2 `Worker.init_device`, V0 `Worker.init_device`), or
    # outside the budget (0.19+: "Initialize the distributed environment BEFORE taking memory
    # snapshot", v1/worker/gpu_worker.py), where they must fit next to the CUDA context.
    nccl_in_budget: bool = False
    # The NCCL the wheel's torch pin ships connects its channels lazily, at the first collective of
    # each size class (NCCL >= 2.22: `NCCL_RUNTIME_CONNECT=1` by default), which is the profile's
    # forward: those buffers land in the profiled non-torch term whatever the snapshot order.
    nccl_lazy_connect: bool = True
    # Non-torch growth during the profile at TP=1 on a datacenter card (kernels, cuBLASLt / attention
    # workspaces loaded by the first forward): `NON_TORCH_TP1_BYTES_V0` or `NON_TORCH_TP1_BYTES_V1`.
    non_torch_tp1_bytes: int = 0
    # The sampler's Triton top-k/top-p keeps one fp32 scratch row per SM over the vocabulary in a
    # module cache (`_TRITON_BUFFER_CACHE`, `apply_top_k_top_p_triton`,
    # vllm/v1/sample/ops/topk_topp_triton.py, 0.19.0 and 0.33.0), allocated during the dummy sampler run.
    sampler_scratch_rows: int = 0
    # Fused-MoE workspaces come from the worker's persistent `WorkspaceManager`
    # (vllm/v1/worker/workspace.py, `current_workspace_manager().get_simultaneous` in
    # `FusedMoEModularKernel._allocate_buffers`, 0.19.0 and 0.33.0): the profile forward grows it
    # and it stays allocated while the sampler runs.
    moe_workspace_persists: bool = False
    # Per-architecture capture-size overrides (`MAX_CAPTURE_SIZE_BY_ARCHITECTURE`), read in 0.19.0
    # and 0.33.0 (0.32 sits between them).
    capture_size_overrides: bool = False
    # Default largest capture size on datacenter Blackwell (compute capability 10.x): 0.33.0's
    # `VllmConfig._set_cudagraph_sizes` (vllm/config/vllm.py) uses "1024 if
    # current_platform.is_device_capability_family(100) else 512"; 0.19.0 caps at 512 everywhere.
    # 0.32 was not read: kept at 512.
    blackwell_capture_max: int = 512


# `torch.sort` of a (rows x vocab) fp32 tensor on CUDA (ATen's segmented radix sort,
# aten/src/ATen/native/cuda/Sort.cpp via cub): the sorted values (4 B) and int64 indices (8 B) it
# returns, the int64 iota of input indices it sorts as values (8 B), and cub's double buffer of
# keys and values (4 + 8 B): 32 B per element while it runs.
SORT_BYTES_PER_ELEMENT = 4 + 8 + 8 + 4 + 8

# Non-torch growth at TP=1 on an 80 GB datacenter card. V0: 0.16 GiB (Llama-3.2-11B-Vision on an
# H100, vllm-project/vllm PR #12126; Llama-2-7B on an H100, kubernetes-sigs/
# gateway-api-inference-extension PR #550). V1 0.19.0: 0.25 GiB for Llama-3.1-8B on an H100 SXM
# (jgchn/llm-d-planner accuracy logs, the `fit` rows of benchmarks/data/vllm_startup_logs.csv;
# 0.24-0.27 GiB over 20 other models there, 0.46 for Granite). The V1 figure is assumed for
# 0.10, 0.32 and 0.33 (same `memory_profiling` code; no log found).
NON_TORCH_TP1_BYTES_V0 = 160 * MiB
NON_TORCH_TP1_BYTES_V1 = 256 * MiB
# `num_compute_units` is the GPU's SM count; 132 (H100 SXM) is used for every card (A100 108,
# RTX 4090 128: +-20 MiB on a 128K vocabulary at 1,024 profiled requests).
TRITON_SAMPLER_SCRATCH_ROWS = 132

VLLM_VERSIONS: dict[str, VllmVersion] = {
    "0.33": VllmVersion(
        name="0.33", released="2026-11", engine="v1", blackwell_capture_max=1024,
        # `_dummy_sampler_run` (vllm/v1/worker/gpu_model_runner.py) samples with top-k and top-p set:
        # the model-dtype logits (2 B), the sampler's fp32 copy (4 B, `Sampler.forward`,
        # vllm/v1/sample/sampler.py), then the warm-up of `forward_native` (topk_topp_sampler.py):
        # Triton top-k/top-p in place (one fp32 scratch row block), fp32 probabilities (4 B) and the
        # exponential noise `q` (4 B, `random_sample`): 2 + 4 + 4 + 4 = 14 B. No full-vocabulary sort.
        sampler_bytes_per_logit=14,
        cudagraphs_in_budget=True, capture_grid="8+16", full_and_piecewise=True,
        source="vllm 0.33.0: v1/worker/gpu_worker.py determine_available_memory, utils/mem_utils.py memory_profiling",
        non_torch_tp1_bytes=NON_TORCH_TP1_BYTES_V1, sampler_scratch_rows=TRITON_SAMPLER_SCRATCH_ROWS, moe_workspace_persists=True,
        capture_size_overrides=True,
    ),
    "0.32": VllmVersion(
        name="0.32", released="2026-10", engine="v1",
        # Same sampler, profiler and capture code as 0.33 (diffed: mem_utils.py identical,
        # determine_available_memory differs only in the encoder CUDA-graph condition).
        sampler_bytes_per_logit=14,
        cudagraphs_in_budget=True, capture_grid="8+16", full_and_piecewise=True,
        source="vllm 0.32.0: v1/worker/gpu_worker.py determine_available_memory, utils/mem_utils.py memory_profiling",
        non_torch_tp1_bytes=NON_TORCH_TP1_BYTES_V1, sampler_scratch_rows=TRITON_SAMPLER_SCRATCH_ROWS, moe_workspace_persists=True,
        capture_size_overrides=True,
    ),
    "0.19": VllmVersion(
        name="0.19", released="2026-04", engine="v1",
        # 0.19.0 samples with `forward_native` by default (FlashInfer opt-in: VLLM_USE_FLASHINFER_SAMPLER
        # unset -> None) and its Triton top-k/top-p for >= 8 rows (topk_topp_sampler.py): 14 B as 0.33.
        # CUDA graphs are profiled but not subtracted: VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS
        # defaults to "0" in 0.19.0's envs.py ("1" in 0.20.2 and later).
        sampler_bytes_per_logit=14,
        cudagraphs_in_budget=False, capture_grid="8+16", full_and_piecewise=True,
        source="vllm 0.19.0: envs.py, v1/worker/gpu_worker.py, v1/sample/ops/topk_topp_sampler.py, config/vllm.py",
        non_torch_tp1_bytes=NON_TORCH_TP1_BYTES_V1, sampler_scratch_rows=TRITON_SAMPLER_SCRATCH_ROWS, moe_workspace_persists=True,
        capture_size_overrides=True,
    ),
    "0.10": VllmVersion(
        name="0.10", released="2025-09", engine="v1",
        # 0.10.2 without FlashInfer (not a dependency of the wheel: `forward_native`) sorts the
        # whole vocabulary (`apply_top_k_top_p`, vllm/v1/sample/ops/topk_topp_sampler.py). At the
        # sort: model-dtype logits 2 + the sampler's fp32 copy 4 + `SORT_BYTES_PER_ELEMENT` 32.
        sampler_bytes_per_logit=2 + 4 + SORT_BYTES_PER_ELEMENT,
        cudagraphs_in_budget=False, capture_grid="8", full_and_piecewise=False,
        source="vllm 0.10.2: v1/worker/gpu_worker.py determine_available_memory, utils/__init__.py memory_profiling",
        nccl_in_budget=True, non_torch_tp1_bytes=NON_TORCH_TP1_BYTES_V1,
    ),
    "0.7": VllmVersion(
        name="0.7", released="2025-02", engine="v0",
        # V0 `Sampler.forward` (vllm/model_executor/layers/sampler.py, profiled with top_p=0.99 and
        # top_k=vocab-1 by `ModelRunner.profile_run`): model-dtype logits 2, fp32 copy 4, then
        # `_apply_top_k_top_p` sorts them: + `SORT_BYTES_PER_ELEMENT` 32 = 38 B. (After the sort it
        # holds less: values 4 + indices 8 + masks 2 + softmax 4 + cumsum 4 + output 4 = 26 + 6.)
        # Three V0 logs measure 38.2-39.2 B per element (benchmarks/results/vllm_validation.md).
        sampler_bytes_per_logit=2 + 4 + SORT_BYTES_PER_ELEMENT,
        cudagraphs_in_budget=False, capture_grid="8", full_and_piecewise=False,
        source="vllm 0.7.3: worker/worker.py determine_num_available_blocks, worker/model_runner.py profile_run",
        sampler_on_every_rank=False,
        # torch 2.5.1 (0.7.3's pin) ships NCCL 2.21.5, which connects every channel at init.
        nccl_in_budget=True, nccl_lazy_connect=False, non_torch_tp1_bytes=NON_TORCH_TP1_BYTES_V0,
    ),
}
CURRENT_VLLM_VERSION = "0.33"


# `CacheConfig.block_size` default on CUDA (vllm/config/cache.py, all versions above).
VLLM_BLOCK_SIZE = 16

# The model types vLLM runs with its MLA backends, caching the latent (kv_lora_rank + qk_rope_head_dim
# per token and layer, no heads): `ModelArchConfigConvertorBase.is_deepseek_mla`,
# vllm/transformers_utils/model_arch_config_convertor.py (vLLM main, stored commit 00bb6f5; 0.10.2 had
# the same test in `ModelConfig.is_deepseek_mla` with a shorter list), true when kv_lora_rank is set.
# Other models with latent attention run their own attention module: vLLM's MiniCPM3
# (vllm/model_executor/models/minicpm3.py, `MiniCPM3Attention`) expands K/V per head and pads V to the
# q/k head size, so its cache is 2 x heads x qk_head_dim per token, like any multi-head layer.
VLLM_MLA_MODEL_TYPES = frozenset({
    "axk1", "deepseek_v2", "deepseek_v3", "deepseek_v32", "deepseek_v4", "deepseek_mtp", "k3_dspark", "glm_moe_dsa",
    "glm4_moe_lite", "glm4_moe_lite_mtp", "kimi_k2", "kimi_linear", "longcat_flash", "longcat_flash_ngram", "longcat_next",
    "pangu_ultra_moe", "pangu_ultra_moe_mtp", "bailing_hybrid", "bailing_hybrid_mtp", "bailing_hybrid_v3_mtp",
})


def caches_latent(spec: ModelSpec) -> bool:
    """Whether vLLM keeps this model's MLA latent in its KV cache (`VLLM_MLA_MODEL_TYPES`), not K and V per head."""
    return memory.is_mla(spec) and spec.model_type in VLLM_MLA_MODEL_TYPES and spec.kv_lora_rank > 0
# torch.cuda.mem_get_info's total is below nvidia-smi's memory.total: the driver keeps some.
# H100 80GB: nvidia-smi 81,559 MiB, vLLM logs total_gpu_memory 79.22 GiB = 81,121 MiB (438 MiB
# less; vllm-project/vllm PR #10511); RTX 3090: 24,576 MiB vs 23.58 GiB = 24,146 MiB (430 MiB;
# vllm-project/vllm PR #14447). 434 MiB is their mean (each is +-5 MiB from the log's rounding).
CUDA_TOTAL_RESERVED_BYTES = 434 * MiB
# Device memory in use before the worker's snapshot: the CUDA context and PyTorch's init (not in
# vLLM's budget, but it must be free: the snapshot's free memory must cover the budget). Same
# assumption as the transformers path (`estimate.CUDA_CONTEXT_BYTES`).
CUDA_CONTEXT_BYTES = 500 * MiB
# Non-torch memory at TP=1 on consumer cards: 8 GB cards log 0.03 and 0.04 GiB under V0
# (vllm-project/vllm #13882, #12529); a 24 GB card 0.02 GiB under V1. Datacenter cards:
# `VllmVersion.non_torch_tp1_bytes`.
NON_TORCH_TP1_BYTES_CONSUMER = 40 * MiB
# Tensor parallelism adds NCCL channel buffers, vLLM's custom all-reduce IPC buffers and (0.11+ on
# Hopper) torch symmetric-memory all-reduce buffers, all allocated outside PyTorch's caching
# allocator. Each rank keeps buffers per channel for its ring/tree neighbours (and NVLS buffers on
# NVSwitch systems), so the amount per rank depends on the link, barely on the number of ranks.
# Two parts, because NCCL >= 2.22 connects lazily (`VllmVersion.nccl_lazy_connect`):
# - set up with the communicators in `init_distributed_environment` ("init"): before 0.19's
#   snapshot it is outside the budget, before 0.10.2's and V0's snapshot inside it;
# - connected at the first large collective, i.e. the profile's forward ("lazy"): always in the
#   profiled non-torch term.
# NVLink / NVSwitch (H100 SXM, vLLM 0.19.0 with NCCL 2.27.5, Llama-3.1-8B, jgchn/llm-d-planner
# logs): the worker's init snapshot holds 0.51 GiB at TP=1 and 1.51 / 1.53 GiB at TP=2 / 4 (init
# = 1.00 / 1.02 GiB); the profile's non-torch increase is 0.25 / 2.07 / 2.13 GiB at TP=1 / 2 / 4
# (lazy = 1.82 / 1.88 GiB). TP=8 is assumed as TP=4 (no log).
NCCL_INIT_BYTES_NVLINK = 1024 * MiB
NCCL_LAZY_BYTES_NVLINK: dict[int, int] = {2: 1864 * MiB, 4: 1925 * MiB}
# NCCL 2.21 (V0, eager connect): everything at init. Llama-3-8B on an H100 grew from 1.79 GiB
# non-torch at TP=1 to 3.58 GiB at TP=2 (vllm-project/vllm PR #10511, vLLM 0.6.5; its TP=1 figure
# also counted the allocator's cache, fixed by PR #11809, but the +1.79 GiB is the TP term).
NCCL_EAGER_BYTES_NVLINK = 1833 * MiB
# PCIe consumer cards run few channels and no NVLS: 2x RTX 4090 logged 0.25 GiB at TP=2 under V0
# (vllm-project/vllm#13061), 0.21 GiB above the consumer TP=1 figure. With lazy connect the same
# total is assumed to arrive during the profile (no PCIe log of a lazy-connect NCCL was found).
NCCL_BYTES_PCIE = 215 * MiB
# CUDA graphs. `GPUModelRunner.capture_model` (vllm/v1/worker/gpu_model_runner.py, 0.19.0 and
# 0.33.0) captures every size, largest first, into one global graph pool
# (`CUDAGraphWrapper.graph_pool = current_platform.get_global_graph_pool()`,
# vllm/compilation/cuda_graph.py), and logs the drop of free device memory over the whole capture
# ("Graph capturing finished in N secs, took X GiB"). So the term is
# (a) the pool: the largest transient a single capture needs. Outputs are weak references
#     (`entry.output = weak_ref_tensors(output)`), so later, smaller captures reuse the blocks of
#     the first one. PIECEWISE and FULL graphs overlay each other in that pool ("FULL and PIECEWISE
#     graphs share the global pool at runtime ... Take the max", `profile_cudagraph_memory`). A
#     PIECEWISE graph holds the forward's buffers at its size; a FULL decode graph on FA3 also holds
#     FlashAttention's split-KV scratch (`fa3_split_bytes`);
# (b) per captured graph, what the driver keeps for the instantiated graph. vLLM's own estimate
#     floors it at "at least 1 MiB per graph for driver overhead" (`profile_cudagraph_memory`). It
#     grows with the kernels captured, i.e. with the layers. A PIECEWISE size is one graph per piece
#     between attention layers (`PiecewiseBackend`, vllm/compilation/piecewise_backend.py); a FULL
#     size is one graph over all of them. The logged per-graph costs are alike for both modes
#     (DEBUG "Estimated PIECEWISE / FULL CUDA graph memory: ... per-graph").
# Read from Llama-3.1-8B on an H100 SXM under 0.19.0 (jgchn/llm-d-planner accuracy logs, 102
# graphs each): the pool is FA3's 258 MiB, and the capture took 0.91 / 0.65 / 0.51 GiB at 32 / 16 /
# 8 layers per rank (TP=1, and PP=2 / 4, `tp1pp2dp1` / `tp1pp4dp1` logs), i.e. 6.61 / 4.00 / 2.59
# MiB per graph. A least-squares line through those three: 1,316 KiB per graph + 171 KiB per
# layer. The TP=1 run is a `fit` row of benchmarks/data/vllm_startup_logs.csv; the PP runs are not rows.
CUDAGRAPH_BYTES_PER_GRAPH = 1316 * 1024
CUDAGRAPH_BYTES_PER_LAYER_PER_GRAPH = 171 * 1024
# A fused-MoE layer launches more kernels than a dense MLP: the router GEMM, top-k, the
# `moe_align_block_size` sort, two grouped expert GEMMs and the weighted sum
# (`FusedMoEModularKernel`, fused_moe/modular_kernel.py) for gate_up / act / down. Read from
# Mixtral-8x7B at TP=2 (a `fit` row): 0.93 GiB over 102 graphs and 32 MoE layers past its 129 MiB
# FA3 pool, i.e. 217 KiB per layer per graph against the dense 171. Qwen3-30B-A3B (48 MoE layers,
# held out) gives 221.
CUDAGRAPH_BYTES_PER_MOE_LAYER_PER_GRAPH = 46 * 1024
# `AttentionConfig.flash_attn_max_num_splits_for_cuda_graph` (vllm/config/attention.py, 0.19.0 and
# 0.33.0): with FULL graphs on FA3 the FlashAttention metadata builder fixes the split-KV count at
# 32 "so that large enough intermediate buffers are pre-allocated during capture"
# (`FlashAttentionMetadataBuilder.__init__`, v1/attention/backends/flash_attn.py; the same in
# mla/flashattn_mla.py). The NOTE there: "intermediate buffers of size [num_splits, num_heads,
# num_tokens, head_size] are allocated", fp32 (`out_accum`, and `softmax_lse_accum` without the
# head size).
FA3_MAX_NUM_SPLITS_FOR_CUDA_GRAPH = 32
# Per-architecture capture-size overrides vLLM applies itself (`MODELS_CONFIG_MAP` ->
# `verify_and_update_config`, vllm/model_executor/models/config.py, 0.19.0 and 0.33.0):
# `GptOssForCausalLMConfig` raises max_cudagraph_capture_size to 1024 "for performance" (unless the
# user set the capture sizes). The 0.19.0 gpt-oss-20b log prints "PIECEWISE=83 (largest=1024)".
MAX_CAPTURE_SIZE_BY_ARCHITECTURE: dict[str, int] = {"GptOssForCausalLM": 1024}

KV_CACHE_DTYPES: tuple[str, ...] = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")

# The lowest CUDA compute capability each quantization method's kernels run on: vLLM refuses to
# start below it (`vllm/config/vllm.py` `_get_quantization_config`: "The quantization method {q} is
# not supported for the current GPU. Minimum capability: {n}. Current capability: {m}."), keyed by
# `WeightFormat.name`. Read in vllm-project/vllm: `Mxfp4Config.get_min_capability` returns 80
# (model_executor/layers/quantization/mxfp4.py; MXFP4 MoE runs through Marlin, Triton or FlashInfer
# kernels, none below Ampere); `AWQConfig.get_min_capability` returns 75 ("The AWQ kernel only
# supports Turing or newer GPUs", quantization/awq.py).
MIN_CAPABILITY: dict[str, int] = {"mxfp4": 80, "awq": 75}
# The first release with each method (older ones stop at "Unknown quantization method"): MXFP4 came
# with gpt-oss in 0.10.1 (vllm-project/vllm PR #22259; reports of the capability-80 refusal on SM75
# start with it, vllm-project/vllm#22288 and #23203).
QUANT_SINCE: dict[str, tuple[int, ...]] = {"mxfp4": (0, 10, 1)}


def version_problem(fmt_name: str, version: VllmVersion) -> str:
    """Why vLLM `version` cannot load `fmt_name` weights at all ('' when it can). A version row is
    its last patch release (`VllmVersion.source`: 0.10 is 0.10.2, 0.7 is 0.7.3)."""
    since = QUANT_SINCE.get(fmt_name)
    if since is None:
        return ""
    have = tuple(int(x) for x in version.name.split("."))
    if have[:2] >= since[:2]:  # a row is its minor's last patch, at or past `since`
        return ""
    return f"vLLM {version.name} has no {fmt_name} quantization (added in {'.'.join(map(str, since))}): pick a newer vLLM version"


def capability_problem(fmt_name: str, capability: int | None, gpu_name: str = "") -> str:
    """Why vLLM refuses `fmt_name` weights on a GPU of `capability` ('' when it does not, or when
    the capability is unknown)."""
    need = MIN_CAPABILITY.get(fmt_name)
    if need is None or capability is None or capability >= need:
        return ""
    on = f"{gpu_name} (compute capability {capability / 10:.1f})" if gpu_name else f"compute capability {capability / 10:.1f}"
    return f"vLLM refuses {fmt_name} weights on {on}: its {fmt_name} kernels need compute capability {need / 10:.1f} or newer"


def vllm_version(name: str | None) -> VllmVersion:
    """The modelled version of that name ("0.33", "0.33.0" and "v0.33.0" all mean 0.33); the
    current release for None or ""."""
    if not name:
        return VLLM_VERSIONS[CURRENT_VLLM_VERSION]
    text = str(name).strip().lower().removeprefix("v")
    parts = text.split(".")
    key = ".".join(parts[:2])
    if key not in VLLM_VERSIONS:
        known = ", ".join(VLLM_VERSIONS)
        raise InvalidWorkloadError(f"vLLM version {name!r} is not modelled; pick one of {known}.")
    return VLLM_VERSIONS[key]


@dataclass(frozen=True, slots=True, kw_only=True)
class VllmSettings:
    """`vllm serve` flags that shape the start-up budget; None = the version's default for the GPU."""

    version: str = CURRENT_VLLM_VERSION
    max_model_len: int = 4096
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enforce_eager: bool = False
    kv_cache_dtype: str = "auto"
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1

    @classmethod
    def from_workload(cls, w: Workload) -> VllmSettings:
        kv = "fp8" if w.kv_cache_precision in ("fp8", "int8") else "auto"
        return cls(
            version=vllm_version(w.vllm_version).name, max_model_len=w.context_length, max_num_seqs=w.max_num_seqs,
            max_num_batched_tokens=w.max_num_batched_tokens, enforce_eager=w.enforce_eager, kv_cache_dtype=kv,
            gpu_memory_utilization=w.gpu_memory_utilization, tensor_parallel_size=w.num_gpus,
        )


def default_batch_limits(version: VllmVersion, *, max_model_len: int, gpu_total_bytes: int, gpu_name: str) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) `vllm serve` picks when the flags are not given.

    V1 (`EngineArgs.get_batch_defaults`, vllm/engine/arg_utils.py, 0.10.2 and 0.33.0 alike): on
    GPUs with >= 70 GiB other than A100 ("a100" not in the device name, PR #17885) the OpenAI
    server uses 8,192 tokens and 1,024 sequences, elsewhere 2,048 and 256. V0 (0.7.3
    `SchedulerConfig.__post_init__`, vllm/config.py): chunked prefill only past 32K context
    (`EngineArgs._set_default_args_v0`), so max(max_model_len, 2,048) tokens, else 2,048; 256
    sequences (`EngineArgs.max_num_seqs`)."""
    if version.engine == "v0":
        tokens = 2048 if max_model_len > 32768 else max(max_model_len, 2048)
        return tokens, 256
    if gpu_total_bytes >= 70 * GiB and "a100" not in gpu_name.lower():
        return 8192, 1024
    return 2048, 256


def resolved_settings(s: VllmSettings, *, gpu_total_bytes: int, gpu_name: str) -> VllmSettings:
    """`s` with the version's defaults for this GPU filled in (V1 also raises max_num_batched_tokens
    to max_model_len when chunked prefill is off; it is always on in V1, so it is left alone)."""
    version = vllm_version(s.version)
    tokens, seqs = default_batch_limits(version, max_model_len=s.max_model_len, gpu_total_bytes=gpu_total_bytes, gpu_name=gpu_name)
    return replace(
        s,
        version=version.name,
        max_num_batched_tokens=s.max_num_batched_tokens or tokens,
        max_num_seqs=s.max_num_seqs or seqs,
    )


# ---------------------------------------------------------------------------------------------
# The terms
# ---------------------------------------------------------------------------------------------


def profile_requests(s: VllmSettings) -> int:
    """Requests in the profiling batch: `min(max_num_seqs, max_num_batched_tokens)` (V1
    `_dummy_run`; V0 `profile_run` makes `max_num_seqs` sequences); the sampler runs over one row
    of logits per request."""
    assert s.max_num_seqs is not None and s.max_num_batched_tokens is not None
    return min(s.max_num_seqs, s.max_num_batched_tokens)


def forward_activation_bytes(spec: ModelSpec, *, tokens: int, compute_bytes: int, tp: int) -> int:
    """Peak PyTorch bytes of vLLM's forward over `tokens` tokens on one TP rank.

    vLLM's decoder layers (e.g. `LlamaDecoderLayer`, vllm/model_executor/models/llama.py) keep the
    residual and the normed input (2h) and the layer output (h), replicated on every rank; the
    column-parallel projections split over TP: attention holds qkv (q + 2kv) and its output q,
    the MLP holds gate_up (2I) and SiluAndMul's output (I); fused MoE holds its workspaces
    (`moe_workspace_bytes`) and fp32 router logits. The larger block, times tokens. So only the intermediate part shrinks with TP, not the whole.
    """
    c = compute_bytes
    h = spec.hidden_size
    q = spec.num_attention_heads * spec.head_dim
    if caches_latent(spec):
        kv = spec.kv_lora_rank + spec.qk_rope_head_dim
        attn_split = 2 * q + spec.num_attention_heads * (spec.head_dim + spec.v_head_dim)
    else:
        kv = 2 * spec.num_key_value_heads * spec.head_dim
        attn_split = 2 * q + kv
    attn = c * 3 * h + -(-c * attn_split // tp) + c * kv
    if spec.is_moe:
        # The routed experts' workspaces (`moe_workspace_bytes`), the shared experts' gate_up and
        # activation, fp32 router logits.
        shared = 3 * spec.num_shared_experts * spec.moe_intermediate_size
        per_token = c * 3 * h + -(-c * shared // tp) + 4 * spec.num_experts
        return max(tokens * attn, tokens * per_token + moe_workspace_bytes(spec, tokens=tokens, compute_bytes=c, tp=tp))
    mlp = c * 3 * h + -(-c * 3 * spec.intermediate_size // tp)
    return tokens * max(attn, mlp)


def moe_workspace_bytes(spec: ModelSpec, *, tokens: int, compute_bytes: int, tp: int) -> int:
    """The fused-MoE workspaces of one forward over `tokens` tokens on a TP rank (none for dense
    models). `TritonExperts.workspace_shapes` (vllm/model_executor/layers/fused_moe/fused_moe.py
    0.19.0, experts/triton_moe.py 0.33.0): workspace1 (M, top_k, max(N / 2, K)) shared with the
    (M, K) output, and workspace2 (M, top_k, max(N, K)), with N = 2 x moe_intermediate / TP (the
    gate_up shard) and K = hidden; in the activation dtype, each rounded up to 256 B
    (`WorkspaceManager.get_simultaneous`)."""
    if not spec.is_moe:
        return 0
    k = spec.hidden_size
    n = 2 * -(-spec.moe_intermediate_size // tp)
    topk = spec.num_experts_per_tok
    ws1 = max(tokens * topk * max(n // 2, k), tokens * k) * compute_bytes
    ws2 = tokens * topk * max(n, k) * compute_bytes
    return -(-ws1 // 256) * 256 + -(-ws2 // 256) * 256


def sampler_bytes(spec: ModelSpec, *, requests: int, version: VllmVersion) -> int:
    """The sampler's peak over the profiled requests: one row of logits per request over the
    whole vocabulary (gathered on every rank: `LogitsProcessor._gather_logits`), times the
    version's bytes per element (`VllmVersion.sampler_bytes_per_logit`), plus the Triton
    top-k/top-p scratch rows (`VllmVersion.sampler_scratch_rows`). Not divided by TP."""
    scratch = min(requests, version.sampler_scratch_rows) * spec.vocab_size * 4
    return requests * spec.vocab_size * version.sampler_bytes_per_logit + scratch


# `limit_mm_per_prompt`'s default per modality (`MultiModalConfig`, vllm/config/multimodal.py 0.33.0: 999).
MM_LIMIT_PER_PROMPT = 999


@dataclass(frozen=True, slots=True, kw_only=True)
class EncoderProfile:
    """The multimodal encoder run V1's `profile_run` makes before the text dummy run."""

    tokens_per_item: int  # placeholder tokens one image takes in the prompt (max feature size)
    items: int  # images profiled in one batch
    budget: int  # encoder budget in tokens (the log's "Encoder cache will be initialized with a budget of ...")
    patches_per_item: int  # vision-tower tokens per image, before any pooling / merging
    peak_bytes: int  # the vision tower's forward peak over all items
    output_bytes: int  # the embeddings kept in the encoder cache through the text dummy run


def _vision_tokens_per_item(spec: ModelSpec) -> tuple[int, int] | None:
    """(prompt tokens, tower patches) of one image at the processor's maximum size, where the
    config fixes them: Gemma 3's `mm_tokens_per_image` (pooled from (image_size / patch_size)^2
    patches, `Gemma3ProcessingInfo.get_num_image_tokens` without pan-and-scan, the default), or
    one token per patch for LLaVA-style towers (`LlavaProcessingInfo`, CLS dropped by the default
    feature select strategy). Dynamic-resolution processors (Qwen2-VL, Pixtral, ...) size images from
    processor settings the config does not hold: None."""
    cfg = spec.raw_config
    vision = cfg.get("vision_config") if isinstance(cfg, dict) else None
    if not isinstance(vision, dict):
        return None
    size, patch = vision.get("image_size"), vision.get("patch_size")
    if not (isinstance(size, int) and isinstance(patch, int) and patch > 0 and size >= patch):
        return None
    patches = (size // patch) ** 2
    pooled = cfg.get("mm_tokens_per_image")
    if isinstance(pooled, int) and pooled > 0:
        return pooled, patches
    if cfg.get("model_type") == "llava":
        return patches, patches
    return None


def encoder_profile(spec: ModelSpec, s: VllmSettings, *, compute_bytes: int) -> EncoderProfile | None:
    """The encoder profile of a vision-language model under V1 (None for text-only models, V0,
    and processors whose image size the config does not fix).

    `MultiModalBudget` (vllm/multimodal/encoder_budget.py) and `compute_mm_encoder_budget`
    (vllm/v1/core/encoder_cache_manager.py), alike in 0.19.0 and 0.33.0: budget =
    min(max(max_num_batched_tokens, tokens per item), max(encoder_cache_size =
    max_num_batched_tokens, tokens per item)); items = max(1, min(budget // tokens per item,
    max_num_seqs x max(1, min(limit_mm_per_prompt, max_model_len // tokens per item)))).
    `GPUModelRunner.profile_run` runs `embed_multimodal` on that batch and keeps the outputs in
    `encoder_cache` until the text dummy run and the sampler are done.
    The tower's forward (a ViT layer: residual and normed input 2h, then the larger of
    attention's qkv + output 4h and the MLP's fc1 + activation 2I, per patch; memory-efficient
    attention holds no score matrix; the projections split over TP as vLLM's tower layers are
    column/row parallel) over all items' patches is this calculator's sizing."""
    if vllm_version(s.version).engine != "v1":
        return None
    found = _vision_tokens_per_item(spec)
    if found is None:
        return None
    tokens_per_item, patches = found
    assert s.max_num_batched_tokens is not None and s.max_num_seqs is not None
    budget = max(s.max_num_batched_tokens, tokens_per_item)
    per_prompt = max(1, min(MM_LIMIT_PER_PROMPT, s.max_model_len // tokens_per_item))
    items = max(1, min(budget // tokens_per_item, s.max_num_seqs * per_prompt))
    vision = spec.raw_config["vision_config"]
    hv = int(vision.get("hidden_size", 0) or 0)
    iv = int(vision.get("intermediate_size", 4 * hv) or 0)
    c = compute_bytes
    n = items * patches
    tp = s.tensor_parallel_size
    peak = n * c * (2 * hv + max(-(-4 * hv // tp), -(-2 * iv // tp)))
    output = items * tokens_per_item * spec.hidden_size * c
    return EncoderProfile(tokens_per_item=tokens_per_item, items=items, budget=budget, patches_per_item=patches,
                          peak_bytes=peak, output_bytes=output)


# MoE weight formats whose experts run as one monolithic kernel on some GPUs, outside the
# `WorkspaceManager` (`FusedMoEKernelMonolithicImpl.apply`, fused_moe/modular_kernel.py, calls the
# experts without `_allocate_buffers`; `triton_kernel_moe_forward` allocates its intermediates in
# the call): MXFP4 prefers `OAITritonMxfp4ExpertsMonolithic` ("prefer Monolithic > Modular",
# fused_moe/oracle/mxfp4.py, 0.19.0 and 0.33.0), which runs on compute capability 9.0 up to 11.0
# (`_supports_current_device`, gpt_oss_triton_kernels_moe.py). Below that, MXFP4 goes through
# Marlin, a modular kernel. Keyed by `WeightFormat.name`: (lowest, highest + 1) capability.
MONOLITHIC_MOE_CAPABILITY: dict[str, tuple[int, int]] = {"mxfp4": (90, 110)}


def moe_workspace_kept(version: VllmVersion, fmt_name: str, compute_capability: int | None) -> bool:
    """Whether the profile's fused-MoE workspace stays allocated through the sampler
    (`VllmVersion.moe_workspace_persists`), i.e. the experts are a modular kernel on this GPU."""
    span = MONOLITHIC_MOE_CAPABILITY.get(fmt_name)
    monolithic = span is not None and compute_capability is not None and span[0] <= compute_capability < span[1]
    return version.moe_workspace_persists and not monolithic


def activation_peak_bytes(spec: ModelSpec, s: VllmSettings, *, compute_bytes: int, rank: int = 0,
                          workspace_kept: bool | None = None) -> int:
    """The profile's PyTorch peak increase on TP rank `rank`: the forward's peak, or the sampler's
    with the forward's hidden states still referenced, whichever is larger (they run one after the
    other). Under V0 only rank 0 samples; the others hold their vocabulary shard of the logits.
    Rank 0 binds the KV cache (the engine takes the fewest blocks over the workers). A
    vision-language model's encoder profile (`encoder_profile`) runs before both."""
    version = vllm_version(s.version)
    assert s.max_num_batched_tokens is not None
    tokens = s.max_num_batched_tokens
    tp = s.tensor_parallel_size
    forward = forward_activation_bytes(spec, tokens=tokens, compute_bytes=compute_bytes, tp=tp)
    hidden = tokens * spec.hidden_size * compute_bytes
    # The persistent MoE workspace (`moe_workspace_kept`) is still held while the sampler runs.
    if workspace_kept is None:
        workspace_kept = version.moe_workspace_persists
    kept = moe_workspace_bytes(spec, tokens=tokens, compute_bytes=compute_bytes, tp=tp) if workspace_kept else 0
    if rank and not version.sampler_on_every_rank:
        return forward + profile_requests(s) * -(-spec.vocab_size // tp) * compute_bytes
    text = max(forward, kept + hidden + sampler_bytes(spec, requests=profile_requests(s), version=version))
    # Vision-language models: the encoder runs first; its outputs stay cached through the text run.
    enc = encoder_profile(spec, s, compute_bytes=compute_bytes)
    if enc is None:
        return text
    return max(enc.peak_bytes + enc.output_bytes, enc.output_bytes + text)


def capture_sizes(s: VllmSettings, spec: ModelSpec | None = None, *, compute_capability: int | None = None) -> tuple[int, ...]:
    """Batch sizes vLLM captures CUDA graphs for (none under --enforce-eager).

    V1: the largest is min(2 x max_num_seqs, 512) (`max_cudagraph_capture_size`; 0.10.2
    `SchedulerConfig.cuda_graph_sizes`; 1024 instead of 512 on datacenter Blackwell where the
    version says so, `VllmVersion.blackwell_capture_max`), or the architecture's own override
    (`MAX_CAPTURE_SIZE_BY_ARCHITECTURE`, `VllmVersion.capture_size_overrides`), never more than
    max_num_batched_tokens. V0: up to the first size >= max_num_seqs."""
    if s.enforce_eager:
        return ()
    version = vllm_version(s.version)
    assert s.max_num_seqs is not None and s.max_num_batched_tokens is not None
    override = MAX_CAPTURE_SIZE_BY_ARCHITECTURE.get(spec.architecture) if spec is not None and version.capture_size_overrides else None
    default_max = version.blackwell_capture_max if compute_capability is not None and compute_capability // 10 == 10 else 512
    top = min(override or min(2 * s.max_num_seqs, default_max), s.max_num_batched_tokens)
    if version.engine == "v0":
        # V0 (0.7.3 vllm/config.py, the `not envs.VLLM_USE_V1` branch of the capture-size setup):
        # [1, 2, 4] + multiples of 8 up to the first one >= max_num_seqs (at most 8192).
        top = next((n for n in (1, 2, 4, *range(8, 8193, 8)) if n >= s.max_num_seqs), 8192)
    if version.capture_grid == "8+16":
        grid = [1, 2, 4, *range(8, 256, 8), *range(256, top + 1, 16)]
    else:
        grid = [1, 2, 4, *range(8, top + 1, 8)]
    sizes = sorted({n for n in grid if n <= top} | ({top} if version.capture_grid == "8+16" else set()))
    return tuple(sizes)


def full_capture_sizes(s: VllmSettings, spec: ModelSpec | None = None, *, compute_capability: int | None = None) -> tuple[int, ...]:
    """The FULL decode graphs (cudagraph_mode FULL_AND_PIECEWISE): the capture sizes up to max_num_seqs."""
    if not vllm_version(s.version).full_and_piecewise:
        return ()
    assert s.max_num_seqs is not None
    return tuple(n for n in capture_sizes(s, spec, compute_capability=compute_capability) if n <= s.max_num_seqs)


def cudagraph_count(s: VllmSettings, spec: ModelSpec | None = None, *, compute_capability: int | None = None) -> int:
    """Graphs captured: one PIECEWISE graph per capture size, plus (FULL_AND_PIECEWISE) one FULL
    decode graph per size up to max_num_seqs."""
    cc = compute_capability
    return len(capture_sizes(s, spec, compute_capability=cc)) + len(full_capture_sizes(s, spec, compute_capability=cc))


def fa3_split_bytes(spec: ModelSpec, *, tokens: int, tp: int) -> int:
    """FlashAttention 3's split-KV scratch in a FULL decode graph of `tokens` requests on a TP rank:
    `FA3_MAX_NUM_SPLITS_FOR_CUDA_GRAPH` x tokens x the rank's query heads
    (`ModelConfig.get_num_attention_heads`: heads // TP) x (head size + 1) in fp32: the partial
    outputs and their log-sum-exps. MLA decodes in the latent space (FLASH_ATTN_MLA), so its head
    size is the latent rank."""
    heads = spec.num_attention_heads // tp
    size = spec.kv_lora_rank if caches_latent(spec) else spec.head_dim
    return FA3_MAX_NUM_SPLITS_FOR_CUDA_GRAPH * tokens * heads * (size + 1) * 4


def uses_fa3_splits(s: VllmSettings, *, compute_bytes: int, compute_capability: int | None) -> bool:
    """Whether FULL decode graphs carry FA3's split scratch: FULL graphs are captured, the GPU is
    Hopper (`get_flash_attn_version`, v1/attention/backends/fa_utils.py: FA3 on SM 9.x only), and
    the model runs in fp16 / bf16 (`FlashAttentionBackend.supported_dtypes`; fp32 falls back to
    Triton attention, as the fp32 Llama log prints)."""
    return bool(full_capture_sizes(s)) and compute_capability is not None and compute_capability // 10 == 9 and compute_bytes == 2


def cudagraph_bytes(spec: ModelSpec, s: VllmSettings, *, compute_bytes: int, compute_capability: int | None = None) -> int:
    """The CUDA-graph memory the capture takes: the pool (the largest PIECEWISE capture's forward
    buffers, or the largest FULL decode capture's FA3 split scratch where there is one, whichever
    is larger) plus, per graph, the driver's instantiated graph (`CUDAGRAPH_BYTES_PER_GRAPH` and
    `CUDAGRAPH_BYTES_PER_LAYER_PER_GRAPH` per layer on this rank)."""
    cc = compute_capability
    sizes = capture_sizes(s, spec, compute_capability=cc)
    if not sizes:
        return 0
    tp = s.tensor_parallel_size
    pool = forward_activation_bytes(spec, tokens=sizes[-1], compute_bytes=compute_bytes, tp=tp)
    full = full_capture_sizes(s, spec, compute_capability=cc)
    if full and uses_fa3_splits(s, compute_bytes=compute_bytes, compute_capability=compute_capability):
        pool = max(pool, fa3_split_bytes(spec, tokens=full[-1], tp=tp))
    layers = max(spec.num_hidden_layers, 1)
    moe_layers = (spec.num_moe_layers or layers) if spec.is_moe else 0
    per_graph = CUDAGRAPH_BYTES_PER_GRAPH + layers * CUDAGRAPH_BYTES_PER_LAYER_PER_GRAPH + moe_layers * CUDAGRAPH_BYTES_PER_MOE_LAYER_PER_GRAPH
    return pool + cudagraph_count(s, spec, compute_capability=cc) * per_graph


def nccl_init_bytes(s: VllmSettings, *, nvlink: bool) -> int:
    """Per-rank bytes the distributed setup allocates outside PyTorch before the first collective
    (none at TP=1): communicators, custom all-reduce buffers, and with eager-connect NCCL every channel."""
    if s.tensor_parallel_size <= 1:
        return 0
    if not vllm_version(s.version).nccl_lazy_connect:
        return NCCL_EAGER_BYTES_NVLINK if nvlink else NCCL_BYTES_PCIE
    return NCCL_INIT_BYTES_NVLINK if nvlink else 0


def nccl_lazy_bytes(s: VllmSettings, *, nvlink: bool) -> int:
    """Per-rank NCCL buffers connected at the profile's first large collective (lazy connect)."""
    tp = s.tensor_parallel_size
    if tp <= 1 or not vllm_version(s.version).nccl_lazy_connect:
        return 0
    if not nvlink:
        return NCCL_BYTES_PCIE
    return NCCL_LAZY_BYTES_NVLINK[2 if tp < 4 else 4]


def nccl_bytes(s: VllmSettings, *, nvlink: bool) -> int:
    """All of a rank's NCCL / all-reduce buffers (init + lazy)."""
    return nccl_init_bytes(s, nvlink=nvlink) + nccl_lazy_bytes(s, nvlink=nvlink)


def nccl_outside_budget_bytes(s: VllmSettings, *, nvlink: bool) -> int:
    """NCCL bytes set up before the version's snapshot (0.19+), which must fit next to the CUDA context."""
    return 0 if vllm_version(s.version).nccl_in_budget else nccl_init_bytes(s, nvlink=nvlink)


def non_torch_bytes(s: VllmSettings, *, nvlink: bool, datacenter: bool = True) -> int:
    """Memory outside PyTorch that grows from the snapshot to the end of profiling (vLLM's
    non-torch term): kernels at TP=1 (by GPU class and engine), the NCCL buffers connected during
    the profile, and the init-time NCCL buffers where the version snapshots before the distributed
    setup (`VllmVersion.nccl_in_budget`)."""
    version = vllm_version(s.version)
    base = version.non_torch_tp1_bytes if datacenter else NON_TORCH_TP1_BYTES_CONSUMER
    inside = nccl_lazy_bytes(s, nvlink=nvlink) + (nccl_init_bytes(s, nvlink=nvlink) if version.nccl_in_budget else 0)
    return base + inside


def kv_bytes_per_block(spec: ModelSpec, s: VllmSettings, *, kv_bits: int) -> int:
    """Bytes of one block (block_size tokens) across all of a rank's attention layers: K and V of
    the rank's KV heads (at least one: replicated when TP exceeds the KV heads), or the MLA latent,
    which every rank keeps whole (`AttentionSpec.page_size_bytes`, vllm/v1/kv_cache_interface.py)."""
    heads = max(1, -(-spec.num_key_value_heads // s.tensor_parallel_size))
    per_token = 0
    latent = caches_latent(spec)
    for kind in spec.layer_types:
        if kind == "mla" and latent:
            per_token += spec.kv_lora_rank + spec.qk_rope_head_dim
        else:
            per_token += 2 * heads * spec.head_dim
    return -(-per_token * VLLM_BLOCK_SIZE * kv_bits // 8)


def kv_blocks_per_request(spec: ModelSpec, s: VllmSettings) -> float:
    """Blocks one request of max_model_len tokens takes, in units of a whole-model block.

    Full-attention layers need cdiv(max_model_len, block_size) blocks; a sliding-window layer at
    most cdiv(min(window - 1 + max_num_batched_tokens, max_model_len), block_size) + 1
    (`SlidingWindowSpec.max_admission_blocks_per_request`, vllm/v1/kv_cache_interface.py, 0.33.0;
    the same sum in 0.10.2's `SlidingWindowSpec.max_memory_usage_bytes`).
    Layers are weighted by their share of the block's bytes (the hybrid allocator's groups of equal
    page size draw on one pool, `get_max_concurrency_for_kv_cache_config`, kv_cache_utils.py)."""
    assert s.max_num_batched_tokens is not None
    n = len(spec.layer_types)
    if n == 0:
        return 0.0
    full = -(-s.max_model_len // VLLM_BLOCK_SIZE)
    total = 0.0
    for kind in spec.layer_types:
        if kind == "sliding" and spec.sliding_window and vllm_version(s.version).engine == "v1":
            tokens = min(spec.sliding_window - 1 + s.max_num_batched_tokens, s.max_model_len)
            total += min(-(-tokens // VLLM_BLOCK_SIZE) + 1, full)
        else:
            total += full
    return total / n


@dataclass(frozen=True, slots=True, kw_only=True)
class VllmBudget:
    """One GPU's start-up budget under vLLM (per TP rank), and whether `vllm serve` starts."""

    settings: VllmSettings  # defaults filled in
    gpu_total_bytes: int  # what torch.cuda.mem_get_info reports as total
    requested_bytes: int  # gpu_memory_utilization x total
    weights_bytes: int
    activation_peak_bytes: int
    sampler_bytes: int
    non_torch_bytes: int
    cudagraph_bytes: int
    cudagraphs_in_budget: bool
    nccl_outside_bytes: int  # NCCL buffers set up before the snapshot (0.19+), outside the budget
    available_kv_bytes: int
    kv_bytes_per_block: int
    num_blocks: int
    kv_tokens: int
    max_concurrency: float  # requests of max_model_len at once
    starts: bool
    reason: str  # why it does not start ('' when it does)
    max_model_len_that_fits: int  # the longest max_model_len the KV cache holds (0: none; max_model_len when it starts)
    encoder: EncoderProfile | None = None  # the multimodal encoder profile inside the activation peak (V1 vision-language models)

    @property
    def non_kv_bytes(self) -> int:
        return self.weights_bytes + self.activation_peak_bytes + self.non_torch_bytes + (self.cudagraph_bytes if self.cudagraphs_in_budget else 0)


def sharded_weight_bytes(spec: ModelSpec, fmt: WeightFormat, tp: int) -> int:
    """This rank's weights: linear layers, embeddings and LM head split TP ways
    (`ColumnParallelLinear`, `RowParallelLinear`, `VocabParallelEmbedding`), norms replicated."""
    weights = memory.weight_bytes(spec, fmt)
    if tp <= 1:
        return weights
    replicated = spec.other_params * fmt.compute_bytes
    return -(-(weights - replicated) // tp) + replicated


def cuda_total_bytes(usable_bytes: int) -> int:
    """What torch.cuda.mem_get_info reports as total for a card whose nvidia-smi total is `usable_bytes`."""
    return max(usable_bytes - CUDA_TOTAL_RESERVED_BYTES, 0)


def vllm_budget(
    spec: ModelSpec, w: Workload, *, gpu_usable_bytes: int, gpu_name: str = "", nvlink: bool = True,
    datacenter: bool = True, settings: VllmSettings | None = None, rank: int = 0, compute_capability: int | None = None,
) -> VllmBudget:
    """The start-up budget of `w` (vLLM flags read from it, `VllmSettings.from_workload`) on GPUs
    whose nvidia-smi total is `gpu_usable_bytes`, `w.num_gpus` of them tensor parallel, as TP rank
    `rank` sees it (rank 0, the default, is the one that binds the KV cache). With the GPU's
    `compute_capability`, weights whose kernels need a newer GPU (`MIN_CAPABILITY`) do not start."""
    from .quantization import weight_format

    s0 = settings or VllmSettings.from_workload(w)
    total = cuda_total_bytes(gpu_usable_bytes)
    s = resolved_settings(s0, gpu_total_bytes=total, gpu_name=gpu_name)
    version = vllm_version(s.version)
    fmt = weight_format(spec, w)
    c = fmt.compute_bytes
    tp = s.tensor_parallel_size
    kv_bits = 8 if s.kv_cache_dtype.startswith("fp8") else BITS_PER_ELEMENT[fmt.compute_precision]
    requested = math.ceil(total * s.gpu_memory_utilization)
    weights = sharded_weight_bytes(spec, fmt, tp)
    act = activation_peak_bytes(spec, s, compute_bytes=c, rank=rank,
                                workspace_kept=moe_workspace_kept(version, fmt.name, compute_capability))
    sampler = sampler_bytes(spec, requests=profile_requests(s), version=version)
    non_torch = non_torch_bytes(s, nvlink=nvlink, datacenter=datacenter)
    graphs = cudagraph_bytes(spec, s, compute_bytes=c, compute_capability=compute_capability)
    in_budget = version.cudagraphs_in_budget
    available = requested - weights - act - non_torch - (graphs if in_budget else 0)
    per_block = kv_bytes_per_block(spec, s, kv_bits=kv_bits)
    blocks = max(available, 0) // per_block if per_block else 0
    per_request = kv_blocks_per_request(spec, s)
    # Encoder-only (pooling) models keep no KV cache: the scheduler's max_num_seqs is the limit.
    concurrency = blocks / per_request if per_request else (float(s.max_num_seqs or 0) if not spec.layer_types else 0.0)
    kv_tokens = int(concurrency * s.max_model_len) if per_request else 0
    # The longest max_model_len that fits (for the fix); a binary search, so only when one request does not fit.
    fits_len = _longest_len(spec, s, blocks) if concurrency < 1 else s.max_model_len
    reason = version_problem(fmt.name, version) or capability_problem(fmt.name, compute_capability, gpu_name)
    headroom = total - requested
    before_snapshot = CUDA_CONTEXT_BYTES + nccl_outside_budget_bytes(s, nvlink=nvlink)
    outside = before_snapshot + (0 if in_budget else graphs)
    if reason:
        pass  # the engine's config check refuses before any memory is profiled
    elif total - before_snapshot < requested:
        what = "the CUDA context" if before_snapshot == CUDA_CONTEXT_BYTES else "the CUDA context and NCCL buffers"
        reason = (f"free memory at start-up ({(total - before_snapshot) / GiB:.2f} GiB after {what}) is less than "
                  f"gpu_memory_utilization x total ({requested / GiB:.2f} GiB)")
    elif available <= 0:
        terms = "weights + activations + non-torch" + (" + CUDA graphs" if in_budget else "")
        reason = f"{terms} ({(requested - available) / GiB:.2f} GiB) exceed the {requested / GiB:.2f} GiB budget: no memory for KV cache blocks"
    elif concurrency < 1 and spec.layer_types:
        reason = (f"the KV cache ({available / GiB:.2f} GiB) cannot hold one request of max_model_len {s.max_model_len:,} tokens "
                  f"(longest that fits: {fits_len:,})")
    elif headroom < outside:
        reason = (f"CUDA graphs ({graphs / GiB:.2f} GiB) and the CUDA context (+ NCCL) do not fit in the {headroom / GiB:.2f} GiB left outside "
                  "gpu_memory_utilization: graph capture runs out of memory")
    return VllmBudget(
        settings=s, gpu_total_bytes=total, requested_bytes=requested, weights_bytes=weights, activation_peak_bytes=act,
        sampler_bytes=sampler, non_torch_bytes=non_torch, cudagraph_bytes=graphs, cudagraphs_in_budget=in_budget,
        nccl_outside_bytes=before_snapshot - CUDA_CONTEXT_BYTES,
        available_kv_bytes=available, kv_bytes_per_block=per_block, num_blocks=blocks, kv_tokens=kv_tokens,
        max_concurrency=concurrency, starts=not reason, reason=reason, max_model_len_that_fits=fits_len,
        encoder=encoder_profile(spec, s, compute_bytes=c),
    )


def _longest_len(spec: ModelSpec, s: VllmSettings, blocks: int) -> int:
    """Longest max_model_len (a multiple of the block size) for which one request fits in `blocks`."""
    if blocks <= 0 or not spec.layer_types:
        return 0
    low, high = 0, max(blocks, 1) * VLLM_BLOCK_SIZE
    while high - low > VLLM_BLOCK_SIZE:
        mid = (low + high) // 2 // VLLM_BLOCK_SIZE * VLLM_BLOCK_SIZE
        if mid <= low:
            break
        if kv_blocks_per_request(spec, replace(s, max_model_len=mid)) <= blocks:
            low = mid
        else:
            high = mid
    return low


def vllm_serve_command(model_id: str, s: VllmSettings) -> str:
    """The `vllm serve` command line for these settings (defaults left out)."""
    parts = ["vllm", "serve", model_id, "--max-model-len", str(s.max_model_len)]
    if s.tensor_parallel_size > 1:
        parts += ["--tensor-parallel-size", str(s.tensor_parallel_size)]
    if abs(s.gpu_memory_utilization - 0.9) > 1e-9:
        parts += ["--gpu-memory-utilization", f"{s.gpu_memory_utilization:g}"]
    if s.kv_cache_dtype != "auto":
        parts += ["--kv-cache-dtype", s.kv_cache_dtype]
    if s.max_num_seqs is not None:
        parts += ["--max-num-seqs", str(s.max_num_seqs)]
    if s.max_num_batched_tokens is not None:
        parts += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
    if s.enforce_eager:
        parts.append("--enforce-eager")
    return " ".join(parts)
