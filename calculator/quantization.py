"""Bytes of a weight matrix in each storage format, with its scales, zeros and indices.

Each format's layout is taken from the code that stores it, cited per format below. Sizes are
integers of bytes; sub-byte payloads are rounded up per tensor, never `bits // 8`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .spec import LinearGroup, ModelSpec
from .units import bytes_for_bits
from .workload import Workload

FormatName = Literal["fp32", "bf16", "fp16", "bnb-nf4", "bnb-fp4", "bnb-int8", "gptq", "awq", "fp8", "fp8-block", "mxfp4", "hqq"]

# bitsandbytes 4-bit: one absmax per block of 64 weights (QLoRA paper, Dettmers et al. 2023, sec. 3:
# "blocksize of 64 for W"; bitsandbytes `quantize_4bit(blocksize=64)`).
BNB_4BIT_BLOCK = 64
# Double quantization stores the block absmax as 8-bit with one fp32 constant per 256 blocks
# (QLoRA paper, sec. 3 "Double Quantization": 8/64 + 32/(64*256) = 0.127 bits per parameter).
BNB_DQ_BLOCK = 256
# MXFP4: blocks of 32 FP4 (E2M1) elements share one 8-bit E8M0 scale (OCP Microscaling
# Formats (MX) v1.0 spec, sec. 5; transformers `Mxfp4Config` stores `_blocks` and `_scales`).
MXFP4_BLOCK = 32
# HQQ default: group size 64 with fp16 scale and zero per group (hqq `BaseQuantizeConfig(nbits=4,
# group_size=64)`; transformers HqqConfig default).
HQQ_GROUP = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightFormat:
    """How the quantizable linear weights are stored, and the dtype of everything else."""

    name: FormatName
    bits: int
    compute_precision: Literal["fp32", "bf16", "fp16"]
    group_size: int = 128
    double_quant: bool = False
    block_size: tuple[int, int] | None = None
    # Module names kept in the compute dtype besides embeddings, norms and the LM head.
    skip_modules: tuple[str, ...] = ()
    from_checkpoint: bool = False
    # transformers' bitsandbytes integration (`replace_with_bnb_linear`, transformers 5.24) swaps
    # `nn.Linear`/`Conv1D` modules only; MoE experts stored as fused 3-D parameters stay in the
    # compute dtype. vLLM and the pre-quantized formats quantize experts.
    quantizes_fused_experts: bool = True

    @property
    def is_quantized(self) -> bool:
        return self.name not in ("fp32", "bf16", "fp16")

    @property
    def compute_bytes(self) -> int:
        return 4 if self.compute_precision == "fp32" else 2


def linear_weight_bytes(in_features: int, out_features: int, fmt: WeightFormat) -> int:
    """Bytes of one `out_features x in_features` weight matrix stored in `fmt` (bias excluded)."""
    n = in_features * out_features
    if fmt.name in ("fp32", "bf16", "fp16"):
        return n * fmt.compute_bytes
    if fmt.name in ("bnb-nf4", "bnb-fp4"):
        blocks = -(-n // BNB_4BIT_BLOCK)
        if fmt.double_quant:
            # 8-bit absmax per block + fp32 scale per 256 blocks + fp32 offset (bitsandbytes
            # `QuantState.state2`).
            absmax = blocks + 4 * -(-blocks // BNB_DQ_BLOCK) + 4
        else:
            absmax = 4 * blocks
        return bytes_for_bits(n, 4) + absmax
    if fmt.name == "bnb-int8":
        # LLM.int8 (Dettmers et al. 2022): int8 weight `CB` + one fp32 scale per output row `SCB`
        # (bitsandbytes `Int8Params`).
        return n + 4 * out_features
    if fmt.name in ("gptq", "awq"):
        groups = -(-in_features // fmt.group_size)
        packed = bytes_for_bits(n, fmt.bits)  # qweight, int32-packed
        zeros = bytes_for_bits(groups * out_features, fmt.bits)  # qzeros, packed like qweight
        scales = 2 * groups * out_features  # fp16 scales per group and output column
        # GPTQ also keeps `g_idx` (int32 per input channel): AutoGPTQ / gptqmodel `QuantLinear`.
        g_idx = 4 * in_features if fmt.name == "gptq" else 0
        return packed + zeros + scales + g_idx
    if fmt.name == "fp8":
        # Per-output-channel fp32 scale (fbgemm-fp8 / torchao float8 weight-only).
        return n + 4 * out_features
    if fmt.name == "fp8-block":
        # DeepSeek-V3 style: fp32 `weight_scale_inv` per 128 x 128 block.
        rows, cols = fmt.block_size or (128, 128)
        return n + 4 * -(-out_features // rows) * -(-in_features // cols)
    if fmt.name == "mxfp4":
        return bytes_for_bits(n, 4) + -(-n // MXFP4_BLOCK)
    if fmt.name == "hqq":
        groups = -(-n // HQQ_GROUP)
        return bytes_for_bits(n, fmt.bits) + 2 * 2 * groups
    raise AssertionError(f"unknown weight format {fmt.name}")


def is_quantized_module(group: LinearGroup, fmt: WeightFormat) -> bool:
    """Which linear weights a quantizer converts.

    bitsandbytes, GPTQ and AWQ in transformers keep the LM head in the compute dtype
    (`get_keys_to_not_convert` skips the output embedding); embeddings and norms are never
    linear. A checkpoint's own `modules_to_not_convert` is honoured (gpt-oss keeps attention and
    router in bf16 and stores only the experts in MXFP4).
    """
    if not fmt.is_quantized or group.role == "head":
        return False
    if not group.is_nn_linear and not fmt.quantizes_fused_experts:
        return False
    for skip in fmt.skip_modules:
        key = skip.replace("model.layers.*.", "").replace("model.", "")
        if key in ("self_attn", "attn") and group.role == "attention":
            return False
        if key in ("mlp.router", "router") and group.role == "router":
            return False
        if key and key == group.name:
            return False
    return True


def weight_format(spec: ModelSpec, workload: Workload) -> WeightFormat:
    """The storage format of the weights for this model and workload.

    A pre-quantized checkpoint (GPTQ, AWQ, fp8, MXFP4, bnb) is used as stored whatever precision
    is picked; otherwise the precision maps to the usual method (int8 -> LLM.int8, int4 -> NF4,
    fp8 -> per-channel fp8) unless `workload.quant_method` names one.
    """
    compute = "fp32" if workload.precision == "fp32" else ("fp16" if workload.precision == "fp16" else "bf16")
    q = spec.quantization
    if q is not None and workload.quant_method in ("auto", q.method, "bnb-nf4" if q.method == "bnb-4bit" else q.method):
        name: FormatName = {
            "gptq": "gptq", "awq": "awq", "bnb-int8": "bnb-int8", "bnb-4bit": "bnb-nf4", "mxfp4": "mxfp4",
            "fp8": "fp8-block" if q.block_size else "fp8", "compressed-tensors": "gptq",
        }[q.method]
        return WeightFormat(
            name=name, bits=q.bits, compute_precision="bf16" if compute == "fp32" else compute,
            group_size=q.group_size, double_quant=q.double_quant, block_size=q.block_size,
            skip_modules=q.modules_not_converted, from_checkpoint=True,
            quantizes_fused_experts=not (name.startswith("bnb-") and workload.runtime == "transformers"),
        )
    method = workload.quant_method
    if workload.mode == "qlora" and method in ("auto", "none") and workload.precision == "int4":
        method = "bnb-nf4"  # the QLoRA paper's 4-bit NormalFloat; at int8 the base is LLM.int8 (below)
    if workload.precision in ("fp32", "bf16", "fp16"):
        return WeightFormat(name=compute, bits=32 if compute == "fp32" else 16, compute_precision=compute)
    if method in ("auto", "none"):
        method = {"int8": "bnb-int8", "int4": "bnb-nf4", "fp8": "fp8"}[workload.precision]
    bits = {"int8": 8, "int4": 4, "fp8": 8}[workload.precision]
    if method in ("bnb-nf4", "bnb-fp4", "mxfp4") and bits != 4:
        bits = 4
    if method in ("bnb-int8", "fp8"):
        bits = 8
    return WeightFormat(
        name=method, bits=bits, compute_precision=compute, group_size=workload.quant_group_size,
        quantizes_fused_experts=not (method.startswith("bnb-") and workload.runtime == "transformers"),
        double_quant=(workload.double_quant if workload.double_quant is not None else workload.mode == "qlora")
        if method in ("bnb-nf4", "bnb-fp4") else False,
    )
