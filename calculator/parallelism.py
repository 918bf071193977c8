"""Per-GPU share of each memory component when one job spans several GPUs.

- Inference, tensor parallelism (Megatron-LM, Shoeybi et al. 2019, arXiv:1909.08053, sec. 3;
  vLLM's `ColumnParallelLinear` / `RowParallelLinear` / `VocabParallelEmbedding`): linear weights,
  embeddings and the LM head are split N ways, norms are replicated; attention heads and K/V
  heads are split, and when N exceeds the K/V heads each GPU keeps one replicated K/V head;
  the MLA latent cache has no head dimension and is replicated.
- Training, ZeRO (Rajbhandari et al. 2020, arXiv:1910.02054, sec. 5 and Table 1): stage 1 shards
  optimizer states (and fp32 master weights), stage 2 also gradients, stage 3 also parameters.
  PyTorch FSDP full sharding (`fully_shard`) equals stage 3. Stage 3 all-gathers one layer's
  parameters before use and prefetches the next, so two layers are unsharded at a time.
  Data-parallel batch size is per GPU (micro-batch), so activations do not shrink.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .memory import is_mla
from .spec import ModelSpec

if TYPE_CHECKING:
    from .estimate import Breakdown


def resolve_parallelism(mode_is_training: bool, parallelism: str, num_gpus: int) -> str:
    """'auto' -> tensor parallel for inference, FSDP full sharding for training; 'none' on 1 GPU."""
    if num_gpus == 1:
        return "none"
    if parallelism != "auto":
        return parallelism
    return "fsdp" if mode_is_training else "tp"


def kv_heads_per_gpu(spec: ModelSpec, num_gpus: int) -> int:
    """K/V heads each GPU holds under tensor parallelism (replicated when fewer heads than GPUs)."""
    return max(1, -(-spec.num_key_value_heads // num_gpus))


def shard_inference(b: Breakdown, spec: ModelSpec, *, num_gpus: int, replicated_weight_bytes: int) -> Breakdown:
    """Per-GPU breakdown under N-way tensor parallelism."""
    n = num_gpus
    if n == 1:
        return b
    sharded_weights = -(-(b.weights_bytes - replicated_weight_bytes) // n) + replicated_weight_bytes
    if is_mla(spec):
        kv = b.kv_cache_bytes
    else:
        kv = b.kv_cache_bytes * kv_heads_per_gpu(spec, n) // max(spec.num_key_value_heads, 1)
    return replace(
        b,
        weights_bytes=sharded_weights,
        kv_cache_bytes=kv,
        activations_bytes=-(-b.activations_bytes // n),
        logits_bytes=-(-b.logits_bytes // n),
    )


def shard_training(b: Breakdown, *, strategy: str, num_gpus: int, layer_param_bytes: int) -> Breakdown:
    """Per-GPU breakdown under DDP / ZeRO-1/2/3 / FSDP with N GPUs."""
    n = num_gpus
    if n == 1 or strategy in ("none", "ddp"):
        return b
    def shard(x: int) -> int:
        return -(-x // n)
    stage = {"zero1": 1, "zero2": 2, "zero3": 3, "fsdp": 3}[strategy]
    out = replace(b, optimizer_bytes=shard(b.optimizer_bytes), master_weights_bytes=shard(b.master_weights_bytes))
    if stage >= 2:
        out = replace(out, gradients_bytes=shard(b.gradients_bytes))
    if stage >= 3:
        out = replace(out, weights_bytes=shard(b.weights_bytes) + 2 * layer_param_bytes)
    return out
