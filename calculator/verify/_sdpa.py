"""SDPA during a trace as a GPU runs it when query/key and value head sizes differ (imported only by `_harness`).

Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2, GLM-MoE-DSA, LongCat-Flash, ...) calls SDPA with
a query/key head size of nope + rope (DeepSeek-V3: 128 + 64 = 192) and a value head size of 128.
On CPU, torch 2.13's SDPA then has no fused kernel and takes its math path
(`_scaled_dot_product_attention_math`), which materialises [batch, heads, q_len, kv_len] scores and
probabilities and saves them for backward. A GPU does not:

- PyTorch's CUDA kernel selection (aten/src/ATen/native/transformers/cuda/sdp_utils.cpp,
  `select_sdp_backend`: cuDNN / flash / memory-efficient / math in priority order):
  `check_head_dim_size_flash` requires q, k and v to have the same last dimension (<= 256), so flash
  is out; `check_head_dim_size_mem_efficient` only requires q and k to match and both sizes to be
  multiples of `minimum_gemm_alignment` (8 for fp16/bf16, 4 for fp32 on sm80+), so the
  memory-efficient kernel runs. (cuDNN, first on sm90/sm100 with cuDNN > 9.15, also takes
  192/128 but only for [batch, seq, heads, dim]-strided inputs, `check_cudnn_layout`; the
  DeepSeek query is a contiguous torch.cat in [batch, heads, seq, dim]. It too keeps only the output
  and fp32 softmax statistics.)
- The memory-efficient kernel keeps the output and an fp32 logsumexp [batch, heads, ceil(q_len/32)*32]
  for backward (torch/_meta_registrations.py `meta__scaled_dot_product_efficient_attention`, the shapes
  the CUDA kernel allocates in attention.cu `_efficient_attention_forward`).

So, during a trace, `torch.nn.functional.scaled_dot_product_attention` is replaced by `scaled_dot_product_attention`
below. With equal head sizes, or inputs the memory-efficient kernel would refuse, it calls torch's own
function unchanged. Otherwise it runs `aten._scaled_dot_product_efficient_attention` itself: the op
has a meta kernel, so it runs on fake CPU tensors, and it is the op torchtitan's selective-checkpoint
save list names (`_harness._selective_op_context`). Its backward is `_MemEfficientAttention.backward`,
which allocates what `_efficient_attention_backward` (aten/src/ATen/native/transformers/cuda/attention_backward.cu)
allocates on CUDA: the contiguous grad_out copy it makes when needed, dq/dk/dv, the fp32 `delta`
[batch, heads, q_len] and the kernel's fp32 `workspace` (`AttentionBackwardKernel::Params::workspace_size`,
mem_eff_attention/kernel_backward.h). The forward also holds the kernel's fp32 output accumulator
while it runs when the head size exceeds the kernel's keys per block (`kNeedsOutputAccumulatorBuffer`,
mem_eff_attention/kernel_forward.h).

CUDA sources read from pytorch/pytorch (main, for torch 2.13: the CPU wheel ships no CUDA sources); the
kernel tables are those of the sm80 kernels (A100, and H100/H200, which run the sm80 build) assuming the
first kernel that fits the head size also fits in shared memory (227 KB on H100, 163 KB on A100).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch

_ORIGINAL_SDPA = torch.nn.functional.scaled_dot_product_attention
_HALF = (torch.float16, torch.bfloat16)

# mem_eff_attention/kernels/cutlassF.h `dispatch_cutlassF_{bf16,f16}_sm80`: AttentionKernel<scalar, Sm80, aligned,
# kQueriesPerBlock, kKeysPerBlock, kMaxK>; the first with kMaxK >= max(head sizes) runs (attention.cu, `launchKernel`).
# (kKeysPerBlock, kMaxK) of each, in dispatch order.
_FORWARD_HALF = ((64, 64), (128, 128), (128, 65536))
# mem_eff_attention/kernels/cutlassB.h `dispatch_cutlassB_{bf16,f16}_sm80` / `dispatch_cutlassB_f32_sm80`:
# AttentionBackwardKernel<Sm80, scalar, aligned, dropout, preload, kBlockSizeI, kBlockSizeJ, kMaxK>, in dispatch order
# (the `seqaligned` and dropout variants have the same block sizes). The cc 8.6/8.9-only 128x64_k96 kernel is left out.
_BACKWARD_HALF = ((64, 64, 32), (64, 64, 64), (128, 128, 128), (64, 64, 128), (128, 64, 65536), (64, 64, 65536))
_BACKWARD_F32 = ((64, 64, 32), (64, 64, 64), (128, 64, 128), (64, 64, 128), (128, 64, 65536), (64, 64, 65536))


def _gemm_alignment(dtype: torch.dtype) -> int:
    """sdp_utils.cpp `minimum_gemm_alignment` on sm80+: max(4, 128 bits / bits per element)."""
    return 8 if dtype in _HALF else 4


def runs_mem_efficient(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: Any, is_causal: bool, enable_gqa: bool) -> bool:
    """Whether a GPU would run these inputs in the memory-efficient kernel where CPU SDPA takes its math path:
    dense 4-D inputs whose q/k head size differs from v's (else flash or CPU flash run, untouched here) and
    that pass the memory-efficient checks of sdp_utils.cpp `can_use_mem_efficient_attention`
    (`check_head_dim_size_mem_efficient`, `check_last_dim_stride_equals_1_dense`,
    `check_batch_size_and_num_heads_dense` with GQA support, the dtypes of sm80+)."""
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in (q, k, v)):
        return False
    if q.size(-1) == v.size(-1) or q.size(-1) != k.size(-1):
        return False
    if q.dtype not in (*_HALF, torch.float32) or not (q.dtype == k.dtype == v.dtype):
        return False
    align = _gemm_alignment(q.dtype)
    if q.size(-1) % align or v.size(-1) % align:
        return False
    if any(t.stride(-1) != 1 for t in (q, k, v)) or q.size(0) != k.size(0) or k.size(0) != v.size(0):
        return False
    if k.size(1) != v.size(1) or (q.size(1) != k.size(1) and not (enable_gqa and q.size(1) % k.size(1) == 0)):
        return False
    # torch raises on a mask with is_causal, or a mask that is not a tensor: let it
    return attn_mask is None or (isinstance(attn_mask, torch.Tensor) and not is_causal)


def _attn_bias(mask: torch.Tensor | None, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor | None:
    """The additive bias the CUDA path hands the kernel (aten/src/ATen/native/transformers/attention.cpp):
    a boolean mask becomes a q-dtype tensor of its shape (`convert_boolean_attn_mask`: zeros_like +
    masked_fill_ of logical_not), padded to 8 elements when its strides are not aligned, then
    expanded to [batch, heads, q_len, kv_len] (`preprocess_mask`, a view)."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        bias = torch.zeros_like(mask, dtype=q.dtype)
        bias.masked_fill_(mask.logical_not(), float("-inf"))
        mask = bias
    aligned = mask.stride(-1) == 1 and all(mask.stride(i) % 8 == 0 for i in range(mask.dim() - 1))
    if not aligned:
        last = mask.size(-1)
        mask = torch.nn.functional.pad(mask, (0, 8 - last % 8))[..., :last]
    return mask.expand(q.size(0), q.size(1), q.size(2), k.size(2))


def _forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, dropout_p: float,
             is_causal: bool, scale: float | None, compute_log_sumexp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    out, lse, _seed, _offset = torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, bias, compute_log_sumexp, dropout_p, is_causal, scale=scale)
    if q.dtype in _HALF:
        # kernel_forward.h: kNeedsOutputAccumulatorBuffer = !kSingleValueIteration (kMaxK <= kKeysPerBlock) && output
        # is not fp32; attention.cu then allocates `output_accum` fp32 [B, M, heads, Kv] for the kernel's run.
        max_k = max(q.size(-1), v.size(-1))
        keys_per_block, kmax = next(kernel for kernel in _FORWARD_HALF if kernel[1] >= max_k)
        if kmax > keys_per_block:
            accum = torch.empty((q.size(0), q.size(2), q.size(1), v.size(-1)), dtype=torch.float32, device=q.device)
            del accum
    return out, lse


def backward_workspace_bytes(batch: int, heads: int, q_len: int, kv_len: int, head_dim: int, head_dim_v: int,
                             dtype: torch.dtype) -> int:
    """Bytes of `workspace` in `_efficient_attention_backward` (attention_backward.cu): `p.workspace_size()` of
    the kernel it launches (kernel_backward.h, `AttentionBackwardKernel::Params`):
    num_batches x num_heads x align4(gk + gv + gq) fp32 elements, with
      gk = num_splits_key x align(kv_len, kBlockSizeJ) x align(head_dim, kBlockSizeI)    if kNeedsAccumGradK
      gv = num_splits_key x align(kv_len, kBlockSizeJ) x align(head_dim_v, kBlockSizeI)  if kNeedsAccumGradV
      gq = ceil(q_len / kBlockSizeI) x ceil(head_dim / kBlockSizeJ) x sizeof(GradQTempStorage) / 4   (kNeedsAccumGradQ)
    GradQTempStorage is 4 int32 + kBlockSizeI x kBlockSizeJ fp32 (one MatmulGradQ tile); kNeedsAccumGradQ holds on
    sm70+ (kEnableSplitKeys), kNeedsAccumGradK/V when the output is not fp32 and not kept in registers
    (kOutputInRF = 16-bit && kMaxK <= kBlockSizeI). num_splits_key: ceil(kv_len / kBlockSizeJ), 1 when
    batch x heads >= 256 and kv_len <= 2 kBlockSizeJ, capped at 200 // (batch x heads) when gK/gV are staged, at least 1."""
    half = dtype in _HALF
    max_k = max(head_dim, head_dim_v)
    block_i, block_j, kmax = next(kernel for kernel in (_BACKWARD_HALF if half else _BACKWARD_F32) if kernel[2] >= max_k)
    output_in_rf = half and kmax <= block_i
    accum_kv = half and not output_in_rf
    splits = math.ceil(kv_len / block_j)
    if batch * heads >= 256 and kv_len <= 2 * block_j:
        splits = 1
    if accum_kv:
        splits = min(splits, 200 // (batch * heads))
    splits = max(splits, 1)

    def align(x: int, to: int) -> int:
        return math.ceil(x / to) * to

    gk = splits * align(kv_len, block_j) * align(head_dim, block_i) if accum_kv else 0
    gv = splits * align(kv_len, block_j) * align(head_dim_v, block_i) if accum_kv else 0
    gq = math.ceil(q_len / block_i) * math.ceil(head_dim / block_j) * (4 + block_i * block_j)
    return batch * heads * align(gk + gv + gq, 4) * 4


class _MemEfficientAttention(torch.autograd.Function):
    """`aten._scaled_dot_product_efficient_attention` forward (it saves q, k, v, the output and the logsumexp,
    as its derivatives.yaml entry does), and a backward that allocates what the CUDA backward allocates."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                dropout_p: float, is_causal: bool, scale: float | None) -> torch.Tensor:
        out, lse = _forward(q, k, v, bias, dropout_p, is_causal, scale, compute_log_sumexp=True)
        ctx.save_for_backward(q, k, v, bias, out, lse)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, v, _bias, out, _lse = ctx.saved_tensors
        batch, heads, q_len, head_dim = q.shape
        kv_len, head_dim_v = k.size(2), v.size(-1)
        # attention_backward.cu: the kernel works on [B, M, heads, K] views (`.transpose(1, 2)`); `grad_out_.contiguous()`
        # copies only when that view is not contiguous.
        go = grad_out.transpose(1, 2).contiguous()
        # grad_q/k/v = at::empty(query/key/value.sizes()) of those views, returned transposed back.
        dq = torch.empty((batch, q_len, heads, head_dim), dtype=q.dtype, device=q.device).transpose(1, 2)
        dk = torch.empty((batch, kv_len, k.size(1), head_dim), dtype=k.dtype, device=k.device).transpose(1, 2)
        dv = torch.empty((batch, kv_len, v.size(1), head_dim_v), dtype=v.dtype, device=v.device).transpose(1, 2)
        if q.dtype in _HALF:
            # kKernelComputesDelta (16-bit, not sm70): delta = at::empty({B, nH, M}, float)
            delta = torch.empty((batch, heads, q_len), dtype=torch.float32, device=q.device)
        else:
            delta = (go.float() * out.transpose(1, 2).float()).sum(-1).transpose(-2, -1).contiguous()
        workspace = torch.empty(backward_workspace_bytes(batch, heads, q_len, kv_len, head_dim, head_dim_v, q.dtype),
                                dtype=torch.uint8, device=q.device)
        del workspace, delta, go
        return dq, dk, dv, None, None, None, None


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Any = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> torch.Tensor:
    """`torch.nn.functional.scaled_dot_product_attention` with a GPU's memory-efficient kernel where CPU would take
    the math path only because the q/k and v head sizes differ (`runs_mem_efficient`); torch's own otherwise."""
    q, k, v = query, key, value
    if torch.is_autocast_enabled("cpu") and isinstance(q, torch.Tensor) and q.is_floating_point():
        # CPU autocast casts SDPA's inputs to the autocast dtype (lower_precision_fp); the patch runs before
        # the dispatcher, so it casts them itself.
        low = torch.get_autocast_dtype("cpu")
        q, k, v = (t.to(low) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in (q, k, v))
    if not runs_mem_efficient(q, k, v, attn_mask, is_causal, enable_gqa):
        return _ORIGINAL_SDPA(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                              enable_gqa=enable_gqa)
    for seen in _SEEN:
        seen.add((q.size(-1), v.size(-1)))
    bias = _attn_bias(attn_mask, q, k)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return _MemEfficientAttention.apply(q, k, v, bias, dropout_p, is_causal, scale)
    # attention.cpp `should_compute_logsumexp`: no logsumexp without grad.
    out, _lse = _forward(q, k, v, bias, dropout_p, is_causal, scale, compute_log_sumexp=False)
    return out


_SEEN: list[set[tuple[int, int]]] = []  # one set per active `gpu_sdpa_kernels`: the (q/k, v) head sizes substituted


@contextlib.contextmanager
def gpu_sdpa_kernels() -> Iterator[set[tuple[int, int]]]:
    """While active, `torch.nn.functional.scaled_dot_product_attention` is `scaled_dot_product_attention` above;
    yields the set of (q/k head size, v head size) pairs it ran as the memory-efficient kernel.
    transformers 5.24 looks it up at call time (integrations/sdpa_attention.py `sdpa_attention_forward`:
    `torch.nn.functional.scaled_dot_product_attention(...)`; model files call `F.` / `torch.nn.functional.`)."""
    from unittest import mock

    seen: set[tuple[int, int]] = set()
    _SEEN.append(seen)
    try:
        with mock.patch.object(torch.nn.functional, "scaled_dot_product_attention", scaled_dot_product_attention):
            yield seen
    finally:
        _SEEN.remove(seen)


def substitution_note(seen: set[tuple[int, int]]) -> str:
    sizes = ", ".join(f"{qk} vs {v}" for qk, v in sorted(seen))
    return (f"SDPA with query/key head size unlike the value's ({sizes}) traced as a GPU's memory-efficient kernel (output + "
            "fp32 logsumexp saved, CUDA backward workspace counted), not CPU's math path, which keeps [batch, heads, seq, seq] scores.")
