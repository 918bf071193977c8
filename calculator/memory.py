"""Memory components, one pure function per term, each in bytes for one model replica.

Sources, cited per function:
- K/V cache layout: the attention code of transformers (`DynamicCache`, sliding-window layers),
  DeepSeek-V2 paper (arXiv:2405.04434) sec. 2.1 for the MLA latent cache.
- Training activations: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
  Transformer Models" (arXiv:2205.05198) sec. 4.1 counts the tensors each op saves for backward;
  we apply the same method to the ops transformers' Llama-family code runs (RMSNorm upcast to fp32,
  SwiGLU MLP, SDPA/flash attention saving q, k, v, output and log-sum-exp), which differ from
  the GPT-3 block of the paper (34·s·b·h + 5·a·s²·b). The tensor-by-tensor derivation is in
  `layer_saved_bytes_per_token`; FakeTensor traces of transformers 5.24 check it (tests/benchmarks).
- Loss buffers: transformers `ForCausalLMLoss` upcasts logits to fp32; at the start of backward
  three fp32 batch x seq x vocab tensors are live (../shared/TRACE-NOTES.md, traced).
- Optimizer states: ZeRO paper (Rajbhandari et al. 2020, arXiv:1910.02054) sec. 3.1 for mixed
  precision Adam (2 + 2 + 12 bytes per parameter), PyTorch `torch.optim.AdamW` (states in the
  parameter dtype; the `foreach` step allocates one more parameter-sized temporary), Dettmers et
  al. 2022 (arXiv:2110.02861) for 8-bit Adam, Shazeer & Stern 2018 (arXiv:1804.04235) for
  Adafactor's factored second moment.
- LoRA: Hu et al. 2021 (arXiv:2106.09685): r x (d_in + d_out) parameters per adapted matrix;
  peft keeps adapters in fp32 by default (`autocast_adapter_dtype=True`) and casts each adapted
  layer's input to fp32, which it saves for backward (traced, TRACE-NOTES).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .quantization import WeightFormat, is_quantized_module, linear_weight_bytes
from .spec import LinearGroup, ModelSpec
from .units import BITS_PER_ELEMENT, bytes_for_bits


@dataclass(frozen=True, slots=True)
class ActivationCost:
    """What one of transformers' activation functions (`transformers.activations.ACT2FN`) costs per
    element of its I-wide input, in tensors of the compute dtype.

    `saves_input` / `saves_output`: autograd keeps the input (GELU, SiLU: their backward needs x) or
    the output (ReLU, tanh, sigmoid: `threshold_backward` / `tanh_backward` read the result);
    `extra_saved`: other I-wide intermediates it saves, which Python-formula activations create op
    by op; `inference_peak`: I-wide tensors alive at once under no_grad, input and output included.
    E.g. `gelu_new` (NewGELUActivation) is `0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))`:
    pow saves x, tanh its output, the last product both factors (0.5x and 1 + tanh): x + 3 more;
    without grad, x, 0.5x and two temporaries of the chain are alive: 4. Built-in kernels (F.gelu,
    F.silu) save x alone and hold x + output.
    Measured with saved-tensor hooks and a storage tracker on transformers 5.24 / torch 2.13
    (`python benchmarks/activation_costs.py`, benchmarks/results/activation_costs.txt).
    """

    saves_input: bool
    saves_output: bool
    extra_saved: int
    inference_peak: int


ACTIVATIONS: dict[str, ActivationCost] = {
    "gelu": ActivationCost(True, False, 0, 2),
    "gelu_10": ActivationCost(True, False, 1, 3),
    "gelu_accurate": ActivationCost(True, False, 3, 4),
    "gelu_fast": ActivationCost(True, False, 6, 5),
    "gelu_new": ActivationCost(True, False, 3, 4),
    "gelu_python": ActivationCost(False, False, 3, 4),
    "gelu_python_tanh": ActivationCost(True, False, 3, 4),
    "gelu_pytorch_tanh": ActivationCost(True, False, 0, 2),
    "hardswish": ActivationCost(True, False, 0, 2),
    "laplace": ActivationCost(False, False, 1, 4),
    "leaky_relu": ActivationCost(True, False, 0, 2),
    "linear": ActivationCost(False, False, 0, 1),
    "mish": ActivationCost(True, False, 0, 2),
    "quick_gelu": ActivationCost(True, False, 1, 3),
    "relu": ActivationCost(False, True, 0, 2),
    "relu2": ActivationCost(False, False, 1, 3),
    "relu6": ActivationCost(True, False, 0, 2),
    "sigmoid": ActivationCost(False, True, 0, 2),
    "silu": ActivationCost(True, False, 0, 2),
    "sqrtsoftplus": ActivationCost(True, True, 0, 3),
    "swish": ActivationCost(True, False, 0, 2),
    "tanh": ActivationCost(False, True, 0, 2),
    "xielu": ActivationCost(True, False, 3, 5),
}
# An activation not in the table is costed as a built-in kernel that saves its input.
_DEFAULT_ACTIVATION = ActivationCost(True, False, 0, 2)


def activation_cost(name: str) -> ActivationCost:
    return ACTIVATIONS.get(name, _DEFAULT_ACTIVATION)


def mlp_saved_elements(spec: ModelSpec, *, frozen: bool) -> int:
    """I-wide c-byte tensors a dense MLP saves for backward per token (the down projection's input
    included only when its weight trains). Plain fc -> act -> fc: the activation's own saved
    tensors; its output is the down projection's input, saved once (the same storage when the
    activation keeps its output). Gated act(gate) x up: the activation's tensors, and the product
    saves act(gate) and up; the down projection saves the product."""
    a = activation_cost(spec.hidden_act)
    own = int(a.saves_input) + a.extra_saved
    if spec.gated_mlp and fused_gate_up(spec):
        # gate and up are views of one 2I output, which the saved gate and up keep alive whole.
        return 2 + a.extra_saved + 1 + (0 if frozen else 1)
    if spec.gated_mlp:
        return own + 2 + (0 if frozen else 1)
    return own + (1 if (a.saves_output or not frozen) else 0)


def mlp_inference_elements(spec: ModelSpec) -> int:
    """I-wide tensors alive at once in a dense MLP under no_grad, per token: the activation's peak
    (input and output included); gated, also act(gate), up and their product once the gate is freed.
    E.g. GPT-2's gelu_new: 4 (the c_fc output, 0.5x and two temporaries of the formula); SwiGLU: 3."""
    peak = activation_cost(spec.hidden_act).inference_peak
    if spec.gated_mlp and fused_gate_up(spec):
        # Phi-3's `gate, up = gate_up_proj(x).chunk(2)`: the 2I output stays alive through act and product.
        return max(peak + 1, 4)
    return max(peak, 3) if spec.gated_mlp else peak


def fused_gate_up(spec: ModelSpec) -> bool:
    """Whether the dense MLP computes gate and up with one linear (Phi-3, GLM `gate_up_proj`)."""
    return any(g.role == "mlp" and g.is_nn_linear and g.name.endswith("gate_up_proj") for g in spec.linears)


def moe_layer_split(spec: ModelSpec) -> tuple[int, int]:
    """(dense, MoE) decoder layers. Mixed models run a dense MLP in some layers (DeepSeek-V3's
    `first_k_dense_replace` = 3, Qwen2-MoE's `mlp_only_layers`; the builders count `num_moe_layers`
    from the config), so a per-layer term is taken per kind: a DeepSeek-V3 copy cut to 2 layers
    has no MoE layer at all."""
    moe = min(spec.num_moe_layers, spec.num_hidden_layers) if spec.is_moe else 0
    return spec.num_hidden_layers - moe, moe


def is_mla(spec: ModelSpec) -> bool:
    """Multi-head latent attention layers (DeepSeek-V2/V3 family, `spec._deepseek`)."""
    return bool(spec.layer_types) and spec.layer_types[0] == "mla"


# PyTorch's memory-efficient SDPA kernels (mem_eff_attention/kernels/cutlassF.h `dispatch_cutlassF_{bf16,f16}_sm80`,
# pytorch/pytorch main for torch 2.13): the kernels for head sizes up to 128 have kMaxK == kKeysPerBlock and keep the
# output in registers (`kSingleValueIteration`); above 128 the kernel (kKeysPerBlock 128, kMaxK 65536) accumulates in
# an fp32 `output_accum` [B, M, heads, Kv] that attention.cu `_efficient_attention_forward` allocates for its run
# (`kNeedsOutputAccumulatorBuffer`, kernel_forward.h: 16-bit output only). calculator/verify/_sdpa.py traces the same.
MEM_EFFICIENT_REGISTER_OUTPUT_MAX_HEAD_DIM = 128


def mla_sdpa_accumulator_bytes_per_token(spec: ModelSpec, compute_bytes: int) -> int:
    """The fp32 output accumulator the GPU's memory-efficient SDPA kernel holds while it runs, per
    token: 4 x heads x v_head_dim when the query/key head size differs from the value's (flash
    needs them equal, sdp_utils.cpp `check_head_dim_size_flash`; memory-efficient only q = k,
    `check_head_dim_size_mem_efficient`), the output is 16-bit and the larger head size exceeds
    `MEM_EFFICIENT_REGISTER_OUTPUT_MAX_HEAD_DIM`. DeepSeek-V3 (192 / 128, 128 heads): 65,536 B."""
    qk, v = spec.head_dim, spec.v_head_dim or spec.head_dim
    if qk == v or compute_bytes >= 4 or max(qk, v) <= MEM_EFFICIENT_REGISTER_OUTPUT_MAX_HEAD_DIM:
        return 0
    return 4 * spec.num_attention_heads * v


def mla_prefill_attention_bytes_per_token(spec: ModelSpec, compute_bytes: int) -> int:
    """What is alive per token while an MLA layer's SDPA runs without grad (the prefill peak of a
    DeepSeek-V3 layer), from transformers 5.24 `models/deepseek_v3/modeling_deepseek_v3.py`
    `DeepseekV3Attention.forward` / `expand_kv` (c bytes; H heads, qk = nope + rope, v = v_head_dim):
    - the hidden states the model and the decoder loop hold: `inputs_embeds`, the layer input /
      residual and the normed input (3ch);
    - `q_b_proj` (or `q_proj`) output, cH x qk, kept by the `q_pass` view; the rotated `q_rot`
      (RoPE's `torch.cat`, cH x rope); `query_states = torch.cat((q_pass, q_rot))`, cH x qk;
    - `kv_b_proj` output, cH x (nope + v), kept by the `k_nope` and `value_states` views; the
      `key_states = new_empty(...)` that k_nope and the broadcast k_rot are copied into, cH x qk;
    - `compressed_kv` (the `kv_a_proj_with_mqa` output, c x (kv_lora + rope)), still referenced; the
      normalized latent and the rotated rope key went into the cache (counted with the KV cache);
    - SDPA's output cH x v (no logsumexp without grad, attention.cpp `should_compute_logsumexp`)
      and the larger of what comes next: on the GPU's memory-efficient kernel its fp32 accumulator
      while it runs (`mla_sdpa_accumulator_bytes_per_token`), then o_proj's output ch, computed
      while all of the above are still the forward's locals.
    The q_a / kv_a latents and their norms are freed before SDPA. Traced (DeepSeek-V3 defaults cut
    to 2 layers, bf16, 3 x 1,532 prompt tokens): 371,840 B/token at the kernel, the peak's tensors
    one by one; a small copy with heads of 48 / 32 (no accumulator) peaks at o_proj."""
    c = compute_bytes
    heads = spec.num_attention_heads
    qk, rope = spec.head_dim, spec.qk_rope_head_dim
    v = spec.v_head_dim or qk
    nope = qk - rope
    per_head = 3 * qk + rope + (nope + v) + v
    return (3 * c * spec.hidden_size + c * heads * per_head + c * (spec.kv_lora_rank + rope)
            + max(mla_sdpa_accumulator_bytes_per_token(spec, c), c * spec.hidden_size))


def mla_decode_expansion_bytes(spec: ModelSpec, *, batch_size: int, keys: int, compute_bytes: int) -> int:
    """What an MLA layer expands from its latent cache at each decoding step over `keys` cached positions
    (transformers 5.24 `DeepseekV3Attention.forward`: `cache.update` returns the whole latent, which `expand_kv` runs
    through kv_b_proj, cH x (nope + v) per position, and copies into `key_states`, cH x qk): batch x keys x
    cH x (nope + v + qk). Traced (DeepSeek-V3 defaults cut to 2 layers, 3 x 1,535 keys at the last step): the decode
    peak's two largest tensors, 528 MB of its 540 MB above the weights."""
    if not is_mla(spec):
        return 0
    qk = spec.head_dim
    v = spec.v_head_dim or qk
    nope = qk - spec.qk_rope_head_dim
    return batch_size * keys * compute_bytes * spec.num_attention_heads * (nope + v + qk)


def mla_saved_attention_bytes_per_token(spec: ModelSpec, compute_bytes: int, *, frozen: bool) -> int:
    """What an MLA layer's attention saves for backward per token beyond the layer norm and the
    attention input (transformers 5.24 `DeepseekV3Attention`, SDPA as the GPU runs it):
    - SDPA (`aten._scaled_dot_product_efficient_attention`, derivatives.yaml: query, key, value,
      output, logsumexp; flash saves the same where the head sizes are equal): the concatenated
      query cH x qk, the `key_states` copy cH x qk, the value, a view of the `kv_b_proj` output,
      which keeps all of it alive (cH x (nope + v)), the output cH x v (also o_proj's input: the
      kernel writes [batch, seq, heads, v], so `reshape(...).contiguous()` is a view), and the fp32
      logsumexp [batch, heads, ceil(seq / 32) x 32] (~4H);
    - `q_a_layernorm` and `kv_a_layernorm` (RMSNorm on the latents, `DeepseekV3RMSNorm`): each its
      fp32 upcast (4r) and 1/rms (4), and the c-byte normalized tensor its weight multiplies when
      that weight trains;
    - full fine-tuning: `q_b_proj` and `kv_b_proj` save their inputs, the normed latents (c x
      (q_lora + kv_lora)); LoRA's adapter inputs are counted with the other adapters.
    RoPE saves only cos / sin (not per head). Traced (DeepSeek-V3 defaults cut to 2 layers, bf16,
    3 x 1,536, full): 197,120 B/token for SDPA's tensors, 16,392 for the latent norms and inputs."""
    c = compute_bytes
    heads = spec.num_attention_heads
    qk = spec.head_dim
    v = spec.v_head_dim or qk
    nope = qk - spec.qk_rope_head_dim
    total = c * heads * (2 * qk + (nope + v) + v) + 4 * heads
    for rank in (spec.q_lora_rank, spec.kv_lora_rank):
        if rank:
            total += 4 * rank + 4 + (0 if frozen else 2 * c * rank)
    return total
_QK_NORM_FAMILIES = frozenset({"qwen3", "qwen3_moe", "gemma3_text", "gemma3", "olmo2"})
_SANDWICH_NORM_FAMILIES = frozenset({"gemma2", "gemma3_text", "gemma3"})

# Adapter targets by name, as peft's `target_modules` would be written for each family.
_ATTENTION_NAMES = frozenset({"q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj", "query", "key", "value", "attention.output.dense",
                              "out_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "encoder.q", "encoder.k",
                              "encoder.v", "encoder.o", "decoder.q", "decoder.k", "decoder.v", "decoder.o"})
# Attention output projections: their input is the attention output (saved by SDPA / flash already).
_ATTENTION_OUTPUT_NAMES = frozenset({"o_proj", "out_proj", "attention.output.dense", "encoder.o", "decoder.o", "dense"})
_QV_NAMES = frozenset({"q_proj", "v_proj", "query", "value", "q_b_proj", "kv_b_proj", "encoder.q", "encoder.v", "decoder.q", "decoder.v"})


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def weight_bytes(spec: ModelSpec, fmt: WeightFormat) -> int:
    """All parameters as stored on the GPU.

    Quantizable linears take `linear_weight_bytes` of the format (payload + scales/zeros);
    embeddings, norms, biases and the LM head stay in the compute dtype. When the checkpoint's
    exact byte size is known and nothing is converted, that exact figure is used (the checkpoint
    holds the persistent buffers too). Parameters the exact count has beyond config arithmetic (e.g.
    a vision tower) are added in the compute dtype, and so are the model's floating buffers
    (`ModelSpec.buffer_elements`; the others at their own size).
    """
    if spec.exact_weight_bytes is not None and not fmt.is_quantized and fmt.compute_bytes * 8 == BITS_PER_ELEMENT.get(spec.checkpoint_dtype, 16):
        return spec.exact_weight_bytes
    c = fmt.compute_bytes
    total = 0
    for group in spec.linears:
        if is_quantized_module(group, fmt):
            total += group.count * linear_weight_bytes(group.in_features, group.out_features, fmt)
        else:
            total += group.weight_params * c
        total += group.bias_params * c
    total += (spec.embedding_params + spec.other_params) * c
    if spec.exact_num_params is not None and spec.exact_num_params > spec.config_num_params:
        total += (spec.exact_num_params - spec.config_num_params) * c
    return total + spec.buffer_elements * c + spec.fixed_buffer_bytes


def kbit_upcast_bytes(spec: ModelSpec, fmt: WeightFormat) -> int:
    """Bytes peft's k-bit preparation adds to the weights of a bitsandbytes 8-bit base.

    `peft.prepare_model_for_kbit_training` (peft 0.21.2, peft/utils/other.py) casts every fp16/bf16
    parameter that is not a quantized `Params4bit` to fp32; LLM.int8 weights are int8 and stay.
    So the embeddings, norms, biases, the LM head and any linear bitsandbytes leaves unconverted
    go from 2 to 4 bytes each. Zero when the compute dtype is already fp32.
    """
    if fmt.compute_bytes >= 4:
        return 0
    kept = sum(g.bias_params + (0 if is_quantized_module(g, fmt) else g.weight_params) for g in spec.linears)
    kept += spec.embedding_params + spec.other_params
    if spec.exact_num_params is not None and spec.exact_num_params > spec.config_num_params:
        kept += spec.exact_num_params - spec.config_num_params
    return kept * (4 - fmt.compute_bytes)


def largest_linear_params(spec: ModelSpec) -> int:
    """Elements of the largest single weight matrix (dequantization and optimizer temporaries)."""
    return max((g.in_features * g.out_features for g in spec.linears), default=0)


# ---------------------------------------------------------------------------------------------
# KV cache
# ---------------------------------------------------------------------------------------------


def kv_cache_bytes_per_token(spec: ModelSpec, kv_bits: int) -> int:
    """Cache bytes one token adds in full-attention layers (sliding layers add the same until
    their window fills): K and V = 2 x kv_heads x head_dim per layer; an MLA layer keeps the
    latent kv_lora_rank + qk_rope_head_dim once, no factor 2 (DeepSeek-V2 paper, sec. 2.1;
    transformers' DeepseekV3Attention caches the compressed latent too)."""
    per_layer = 0
    for kind in spec.layer_types:
        if kind == "mla":
            per_layer += spec.kv_lora_rank + spec.qk_rope_head_dim
        else:
            per_layer += 2 * spec.num_key_value_heads * spec.head_dim
    return bytes_for_bits(per_layer, kv_bits)


def kv_cache_bytes(spec: ModelSpec, *, batch_size: int, seq_len: int, kv_bits: int, encoder_len: int = 0) -> int:
    """K/V cache for `batch_size` sequences of `seq_len` tokens.

    2 x layers x kv_heads x head_dim x tokens x bytes (e.g. Llama-3.1-8B in bf16: 2 x 32 x 8 x 128
    x 2 B = 131,072 B per token). Sliding-window layers hold at most `sliding_window` tokens
    (transformers `DynamicSlidingWindowLayer`); MLA layers hold the latent. Encoder-decoder models
    also cache the cross-attention K/V of the `encoder_len` encoder tokens in every decoder layer.
    """
    elements = 0
    for kind in spec.layer_types:
        tokens = min(seq_len, spec.sliding_window) if kind == "sliding" and spec.sliding_window else seq_len
        if kind == "mla":
            elements += (spec.kv_lora_rank + spec.qk_rope_head_dim) * tokens
        else:
            elements += 2 * spec.num_key_value_heads * spec.head_dim * tokens
    if spec.is_encoder_decoder:
        elements += len(spec.layer_types) * 2 * spec.num_key_value_heads * spec.head_dim * encoder_len
    return bytes_for_bits(elements * batch_size, kv_bits)


# ---------------------------------------------------------------------------------------------
# Inference activations (no autograd: only transients of the layer being computed)
# ---------------------------------------------------------------------------------------------


def eager_score_bytes(spec: ModelSpec, compute_bytes: int) -> int:
    """Bytes alive per attention score element in eager attention without grad: the c-byte masked
    scores, and `softmax(scores, dtype=torch.float32)`'s fp32 cast of them and its fp32 output
    (transformers `eager_attention_forward`: c + 8; traced on 2-layer Llama / Gemma 2 copies at
    3 x 1,536, the peak sits at that softmax); gpt-oss appends its sink column and keeps the
    softmax in bf16, so logits, shifted logits and probabilities: 3c (traced,
    benchmarks/results/calibration-notes.md item 3)."""
    return 3 * compute_bytes if spec.model_type == "gpt_oss" else compute_bytes + 8


def eager_saved_score_bytes(spec: ModelSpec, compute_bytes: int) -> int:
    """Bytes eager attention saves for backward per score element: the fp32 softmax output and the
    c-byte probabilities the value matmul saves (c + 4); gpt-oss's bf16 softmax and probabilities: 2c."""
    return 2 * compute_bytes if spec.model_type == "gpt_oss" else compute_bytes + 4


def audio_positions(audio_token_share: float, seq_len: int) -> int:
    """Audio positions of a DualFFN sequence of `seq_len`: the share, rounded to the nearest (the
    trace builds its prompt with the same count, calculator/verify/inputs.py)."""
    return min(seq_len, max(0, round(audio_token_share * seq_len)))


def prefill_transient_bytes(
    spec: ModelSpec, *, batch_size: int, seq_len: int, compute_bytes: int, attention: str, audio_token_share: float | None = None
) -> int:
    """Peak of the temporaries one layer creates while processing `seq_len` new tokens.

    Per token (c = compute bytes; h hidden, I intermediate, q = heads x head_dim):
    - hidden states referenced at once: the model's `inputs_embeds`, the layer input held by the
      decoder loop, the residual and the normed input (4ch; traced: 11,562 B/token measured vs
      2ch = 12,288 predicted for the two not counted before);
    - gated MLP: act(gate), up, and their product alive together (3cI; the gate output is freed
      once activated) -> c(4h + 3I); plain GELU MLPs c(4h + 2I);
    - MoE: transformers 5 runs experts with `grouped_mm`: every token is replicated top_k times and
      for all pairs the gathered input (h), gate_up output (2I), act(gate) (I) and product (I) are
      alive, or, where the experts are narrow (Qwen3-MoE: I = 768 < 3h/4), the 4 h-wide copies
      after the down projection -> 4ch + experts x (c + 4) router logits + top_k x c max(h + 4I, 4h)
      (Mixtral: 278,576 B/token, traced 279 KB);
    - attention: hidden states + q and output (4ch + 2cq); eager also materializes the
      heads x seq scores (`eager_score_bytes` each) and K/V repeated to all heads;
    - RMSNorm: residual + fp32 upcast + fp32 square/product (ch + 12h).
    The largest, times tokens, plus the eager attention mask (batch x seq x seq).

    DualFFN (`spec.dual_ffn`, higgs-audio) with `audio_token_share` s given (a prompt routed by its
    audio mask; None: one FFN for every token, as in decoding, where transformers passes no mask):
    the text FFN runs on the text tokens, then the audio FFN on the audio tokens
    (`HiggsAudioV2DecoderLayer`, transformers 5.24), so the 3cI of the gated MLP exist for the
    larger group only: c(4h + 3I) becomes 4ch per token + 3cI per token of max(text, audio); the
    audio embeddings the model scattered into the prompt stay referenced through the layer loop
    (`audio_embeds` in `HiggsAudioV2Model.forward`): + ch per audio token. Traced on a 2-layer copy
    at 1,020 prompt tokens, shares 0 / 0.25 / 0.5 / 0.75 / 1: the formula is within 1 KB per token.
    """
    c = compute_bytes
    h = spec.hidden_size
    q = spec.num_attention_heads * spec.head_dim
    tokens = batch_size * seq_len
    dense_layers, moe_layers = moe_layer_split(spec)
    mlps = []
    if moe_layers:
        # Per token-expert pair the larger of: gathered input + gate_up output + act + product
        # (h + 4I), and after the down projection the gathered input, the down output, the
        # routing-weighted copy and its un-permuted copy (`weighted_out[inv_perm]` while the
        # others are still referenced, transformers 5.24 integrations/moe.py `grouped_mm_experts_forward`):
        # 2ch + 2wh, the last two in the routing weights' dtype (`proj_out * sample_weights_g`
        # promotes: fp32 under DeepSeek's fp32 router, `spec.router_bytes`; traced on Sarvam-MLA's MoE
        # layer, 3 x 1,532 tokens: two bf16 and two fp32 [tokens x top_k, h] tensors at the peak).
        w = spec.router_bytes or c
        pair = max(c * (h + 4 * spec.moe_intermediate_size), 2 * c * h + 2 * w * h)
        mlp = 4 * c * h + spec.num_experts * (c + 4) + spec.num_experts_per_tok * pair
        if spec.num_shared_experts:
            mlp += 3 * c * spec.num_shared_experts * spec.moe_intermediate_size
        mlps.append(mlp)
    if dense_layers or not mlps:
        mlps.append(c * (4 * h + mlp_inference_elements(spec) * spec.intermediate_size))
    mlp = max(mlps)
    attn = mla_prefill_attention_bytes_per_token(spec, c) if is_mla(spec) else c * (4 * h + 2 * q)
    norm = c * h + 12 * h
    per_token = max(mlp, attn, norm)
    total = tokens * per_token
    if spec.dual_ffn and audio_token_share is not None and not moe_layers:
        n_audio = audio_positions(audio_token_share, seq_len)
        routed = batch_size * max(n_audio, seq_len - n_audio)
        mlp_total = tokens * 4 * c * h + routed * mlp_inference_elements(spec) * c * spec.intermediate_size
        total = max(mlp_total, tokens * attn, tokens * norm) + batch_size * n_audio * c * h
    if attention == "eager":
        total = max(total, eager_attention_transient_bytes(spec, batch_size=batch_size, seq_len=seq_len, compute_bytes=c))
    return total


def eager_attention_transient_bytes(spec: ModelSpec, *, batch_size: int, seq_len: int, compute_bytes: int) -> int:
    """What is alive at eager attention's softmax over `seq_len` new tokens (no grad), a moment of
    its own: the MLP's transients do not exist then. Per token: the hidden states the loop holds
    (`inputs_embeds`, residual, normed input: 3ch), the rotated queries (cq), heads x seq scores at
    `eager_score_bytes` each, and K/V repeated to every head (`repeat_kv`, 2cq) where heads share
    K/V (GQA; with as many K/V heads as heads it returns its input). Plus one additive mask of
    batch x seq x seq per kind of layer (transformers builds a full and a sliding mask when both
    kinds exist). Traced (2-layer copies, 3 x 1,536): Llama-2-7B dims 527,360 B/token, Gemma-2-2B
    155,136 B/token, both as summed here from the live tensors at the peak."""
    c = compute_bytes
    heads = spec.num_attention_heads
    q = heads * spec.head_dim
    repeated = 2 * c * q if spec.num_key_value_heads and heads // spec.num_key_value_heads > 1 else 0
    per_token = 3 * c * spec.hidden_size + c * q + heads * seq_len * eager_score_bytes(spec, c) + repeated
    masks = max(len({k for k in spec.layer_types if k in ("full", "sliding")}), 1)
    return batch_size * seq_len * per_token + masks * batch_size * seq_len * seq_len * c


def generation_logits_bytes(spec: ModelSpec, *, batch_size: int, compute_bytes: int) -> int:
    """Logits of the last position only (`generate` passes `logits_to_keep=1`): the LM head output
    (c bytes), its fp32 copy, and the fp32 scores of the logits processors: batch x vocab x (c+8)."""
    if not spec.is_causal_lm:
        return 0
    return batch_size * spec.vocab_size * (compute_bytes + 8)


# ---------------------------------------------------------------------------------------------
# Training activations (tensors saved for backward)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterPlan:
    """Which linears get LoRA adapters, their rank, and the adapter dtype size."""

    names: frozenset[str]
    rank: int
    adapter_bytes: int
    input_copy_bytes: int = 0  # > 0: each adapter saves its own copy of its input in this many bytes (autocast)

    def adapts(self, group: LinearGroup) -> bool:
        return group.name in self.names


# peft 0.21 `utils/transformers_weight_conversion.py` `_convert_peft_config_moe`, run by `get_peft_model` for the model
# types transformers 5.24 re-maps to the "qwen2_moe" pattern (`transformers/conversion_mapping.py`
# `_MODEL_TO_CONVERSION_PATTERN`; those of the analytic builders here): every target whose leaf name is a v4 expert
# projection (`_MOE_TARGET_MODULE_MAPPING["qwen2_moe"]`: gate_proj, up_proj, down_proj) becomes a target *parameter* of
# the fused experts (gate_up_proj, down_proj) and leaves `target_modules`, "all-linear" resolved to leaf names first. So
# nn.Linear modules of those names, the dense MLP (DeepSeek-V3's first_k_dense_replace layers) and the shared experts,
# get no adapter. Traced: DeepSeek-V3 defaults cut to 2 (dense) layers, all-linear r=16: 3,180,544 trainable parameters,
# the attention projections' only.
PEFT_MOE_REMAPPED_MODEL_TYPES = frozenset({"deepseek_v2", "deepseek_v3", "qwen3_moe"})
PEFT_MOE_REMAPPED_LEAVES = frozenset({"gate_proj", "up_proj", "down_proj"})


def lora_target_names(spec: ModelSpec, targets: str) -> frozenset[str]:
    """Module names peft adapts for `targets`.

    "all-linear" is peft's shorthand: every linear layer except the output layer. With
    transformers 5's fused 3-D expert parameters, peft 0.21 also adapts the experts (one adapter
    per expert, through parameter targeting) and the router: traced on Mixtral (calculator/verify).
    "attention" adapts the attention projections, "attention+mlp" those and the dense (or MoE
    shared-expert) MLP but not the routed experts or the router, "mlp" the feed-forward ones and
    the experts, "qv" only query and value (the LoRA paper's setting). For the model types of
    `PEFT_MOE_REMAPPED_MODEL_TYPES`, nn.Linear gate/up/down projections are never adapted.
    """
    names = set()
    remapped = spec.model_type in PEFT_MOE_REMAPPED_MODEL_TYPES
    for g in spec.linears:
        if remapped and g.is_nn_linear and g.lora_all_linear is None and g.name.rsplit(".", 1)[-1] in PEFT_MOE_REMAPPED_LEAVES:
            continue
        if targets == "all-linear" and g.lora_all_linear is not None:
            # peft's own resolution, read from the meta-device model (calculator/inventory.py).
            if g.lora_all_linear:
                names.add(g.name)
            continue
        if g.role == "head":
            continue
        wanted = {
            "all-linear": g.role in ("attention", "mlp", "other", "expert", "router"),
            "attention": g.name in _ATTENTION_NAMES,
            "attention+mlp": g.name in _ATTENTION_NAMES or g.role == "mlp",
            "mlp": g.role in ("mlp", "expert"),
            "qv": g.name in _QV_NAMES,
        }[targets]
        if wanted:
            names.add(g.name)
    return frozenset(names)


def lora_merged_expert_bytes(spec: ModelSpec, plan: AdapterPlan, *, param_bytes: int) -> tuple[int, int, int]:
    """(all layers, one layer, backward temporary) bytes of LoRA on fused 3-D expert parameters.

    peft 0.21 adapts a fused expert stack through a parametrization (`ParamWrapper._activate_lora`):
    each forward folds W + B·A into a new tensor of the whole stack, which the expert matmuls save
    for backward, so every MoE layer keeps one merged copy of its adapted experts until backward;
    backward then materializes the gradient of the first stack it reaches (the down projection,
    applied last). FakeTensor trace of a 1-layer Mixtral-8x7B, LoRA r=8 all-linear, bf16, batch 1 x
    256 (transformers 5.24, peft 0.21): activations 2,895,520,040 B = merged stacks 8 x (28672 x 4096
    + 4096 x 14336) x 2 = 2,818,572,288 + the layer's usual 77 MB; temporaries 960,497,664 B at the
    peak = down stack 8 x 4096 x 14336 x 2 = 939,524,096 + small.
    """
    groups = [g for g in spec.linears if not g.is_nn_linear and g.role == "expert" and plan.adapts(g)]
    if not groups:
        return 0, 0, 0
    layers = max(spec.num_moe_layers, 1)
    total = sum(g.count * g.in_features * g.out_features for g in groups) * param_bytes
    last = [g for g in groups if "down" in g.name or "w2" in g.name] or groups
    grad = max(g.count // layers * g.in_features * g.out_features for g in last) * param_bytes
    return total, total // layers, grad


def lora_params(spec: ModelSpec, plan: AdapterPlan) -> int:
    """LoRA parameters: r x (d_in + d_out) per adapted matrix (Hu et al. 2021, sec. 4)."""
    return sum(g.count * plan.rank * g.lora_rank_factor * (g.in_features + g.out_features) for g in spec.linears if plan.adapts(g))


def stream_readers(spec: ModelSpec) -> tuple[int, int]:
    """(attention, MLP) linears per layer that read the normalized residual stream: q, k, v (or one
    fused qkv) and gate, up (or one fused gate_up / fc). The attention output projection (the last
    attention linear, writing back to the stream) and down_proj read other tensors. Counted from
    the model's own linears; under autocast each reader casts its input separately."""
    layers = max(spec.num_hidden_layers, 1)
    attn, mlp = _stream_reader_groups(spec)
    return max(sum(g.count // layers for g in attn), 1), max(sum(g.count // layers for g in mlp), 1)


def _stream_reader_groups(spec: ModelSpec) -> tuple[list[LinearGroup], list[LinearGroup]]:
    h = spec.hidden_size
    layers = max(spec.num_hidden_layers, 1)
    per_layer = [g for g in spec.linears if g.count % layers == 0 and g.is_nn_linear]
    attn = [g for g in per_layer if g.role == "attention"]
    if attn and attn[-1].out_features == h:
        attn = attn[:-1]
    return [g for g in attn if g.in_features == h], [g for g in per_layer if g.role == "mlp" and g.in_features == h]


def layer_saved_bytes_per_token(
    spec: ModelSpec,
    *,
    compute_bytes: int,
    seq_len: int,
    attention: str,
    adapters: AdapterPlan | None,
    residual_bytes: int | None = None,
    moe_layer: bool | None = None,
) -> int:
    """Bytes one decoder layer saves for backward per token (training, no checkpointing).

    `moe_layer`: a layer with the routed experts (True) or the dense MLP (False); None: the MoE
    layer when the model has any (`moe_layer_split`), else the dense one.

    `adapters=None` is full fine-tuning (every weight trainable); with an `AdapterPlan` the base
    is frozen. Derivation for a Llama-family layer in transformers 5 (c = 2 for bf16):
    - RMSNorm (x2): the fp32 upcast (4h, saved by pow/mul), 1/rms (4 B), and the normalized c-byte
      tensor multiplied by the weight (ch; not saved when the weight is frozen) -> 4h + ch + 4;
    - linear inputs saved for the weight gradient (full FT): attention input ch (shared by q, k, v),
      o_proj input cq, MLP input ch (shared by gate, up), down_proj input cI;
    - SDPA / flash attention saves q, k, v, the output and the fp32 log-sum-exp per head:
      c(q + 2kv) + cq + 4·heads (K/V are not repeated: `enable_gqa` when no mask is given);
      eager saves the fp32 softmax (4) and c-byte probabilities per head and key, with K/V
      repeated to all heads (`repeat_kv`);
    - gated MLP: SiLU saves its input G (cI), the product saves act(G) and up (2cI);
    - LoRA: each adapted linear saves its input cast to the adapter dtype (a separate copy per
      adapter when that is fp32, peft `_cast_input_dtype`) plus the r-wide lora_A output.
    For a Llama-3.2-3B layer (h 3072, q 3072, kv 1024, I 8192, 24 heads) in full bf16 training:
    16h + 6q + 4kv + 8I + 4·heads = 137,312 bytes per token.

    `residual_bytes` = 4 is an fp32 residual stream: fp32 weights under bf16/fp16 autocast (TRL's
    default of loading a model id in fp32). Then RMSNorm's `.to(input_dtype)` is a no-op, so the
    normalized tensor the trainable weight multiplies is fp32 (4h, not ch), and autocast casts
    that fp32 output to c bytes separately for every linear that reads it: autocast's cast cache
    holds only leaf tensors that require grad (parameters; PyTorch `aten/src/ATen/autocast_mode.cpp`
    `cached_cast`: `arg.is_leaf() && arg.requires_grad()`), so q, k and v (gate and up) each save
    their own c-byte copy of the input for their weight gradients (FakeTensor trace of TRL's step on
    a 2-layer Qwen2.5-0.5B, full, checkpointing off: per layer 4 fp32 and 7 c-byte h-wide tensors).
    """
    c = compute_bytes
    h = spec.hidden_size
    heads = spec.num_attention_heads
    q = heads * spec.head_dim
    kv = spec.num_key_value_heads * spec.head_dim
    moe = moe_layer_split(spec)[1] > 0 if moe_layer is None else moe_layer
    inter = spec.moe_intermediate_size if moe else spec.intermediate_size
    frozen = adapters is not None
    layernorm = spec.layer_norm
    per_layer_linears = [g for g in spec.linears if g.role in ("attention", "mlp") and g.count % max(spec.num_hidden_layers, 1) == 0]

    r = residual_bytes or c
    # Norms.
    norm = (c * h + 8) if layernorm else (4 * h + 4 + (0 if frozen else r * h))
    norms = 4 if spec.model_type in _SANDWICH_NORM_FAMILIES else 2
    total = norms * norm
    if spec.model_type in _QK_NORM_FAMILIES:
        total += (4 + (0 if frozen else c)) * (q + kv)

    # Attention core.
    if attention == "eager":
        total += c * (3 * q) + heads * seq_len * eager_saved_score_bytes(spec, c)
        if spec.attn_logit_softcapping:
            # `scores = tanh(scores / cap) * cap` (Gemma2 eager_attention_forward): tanh saves its c-byte output.
            total += heads * seq_len * c
    elif is_mla(spec):
        total += mla_saved_attention_bytes_per_token(spec, c, frozen=frozen)
    else:
        total += c * (q + 2 * kv) + c * q + 4 * heads

    # MLP activations (beyond linear inputs).
    if moe:
        top_k = spec.num_experts_per_tok
        # Per token-expert pair (transformers 5.24 integrations/moe.py `grouped_mm_experts_forward`): the gate_up
        # output and act(gate) (3I) and the down output, which `proj_out * sample_weights_g` saves for the routing
        # weights' gradient (h); when the expert stacks train (full, or LoRA merged into them:
        # `lora_merged_expert_bytes`) the grouped matmuls also save their inputs, the gathered input (h) and the
        # product (I). Traced (2 layers, 3 x 1,536, LoRA all-linear): Sarvam-MLA (experts adapted) 2h + 4I per pair,
        # as full fine-tuning; PhiMoE (experts not adapted) h + 3I.
        experts_train = not frozen or any(adapters.adapts(g) for g in spec.linears if g.role == "expert")
        router_trains = not frozen or any(adapters.adapts(g) for g in spec.linears if g.role == "router")
        expert = c * (h + 3 * inter) + (c * (h + inter) if experts_train else 0)
        total += top_k * expert + 4 * spec.num_experts + c * h
        if frozen and router_trains:
            total += (spec.router_bytes or c) * h  # the router's input, saved for its adapter (fp32 under an fp32 router)
        if spec.num_shared_experts:
            shared = spec.num_shared_experts * inter
            total += 3 * c * shared + (0 if frozen else c * (h + shared))
    else:
        # The activation's saved tensors (ACTIVATIONS) and, gated, act(G) and up; the down
        # projection's input is added with the other linear inputs below.
        total += c * inter * mlp_saved_elements(spec, frozen=True)

    # Inputs saved for weight gradients (full) or adapter inputs (LoRA).
    if not frozen:
        # Attention input (shared by q/k/v) and o_proj's input. With SDPA/flash the kernel returns
        # its output in [batch, seq, heads, head_dim] order, so `transpose(1, 2).contiguous()` is a
        # view and o_proj saves the storage SDPA already saved (traced: 6,141 B/token/layer = cq
        # over-counted before); eager's output is a fresh copy.
        attn_readers, mlp_readers = (1, 1) if r == c else stream_readers(spec)
        total += attn_readers * c * h + (c * q if attention == "eager" else 0)
        if not moe:
            # MLP input (shared by gate/up, or cast per linear), down_proj input (unless the activation already keeps it)
            total += mlp_readers * c * h + c * inter * (mlp_saved_elements(spec, frozen=False) - mlp_saved_elements(spec, frozen=True))
        else:
            total += (spec.router_bytes or c) * h  # router input (the fp32 copy an fp32 router multiplies)
    else:
        seen_inputs: set[int] = set()
        for g in per_layer_linears:
            if not adapters.adapts(g):
                continue
            per_layer = g.count // spec.num_hidden_layers
            if adapters.input_copy_bytes:
                total += per_layer * adapters.input_copy_bytes * g.in_features  # autocast casts the input per adapter
            elif adapters.adapter_bytes > c:
                total += per_layer * adapters.adapter_bytes * g.in_features  # own fp32 copy of the input
            elif g.in_features not in seen_inputs:
                total += c * g.in_features  # the shared input tensor is kept alive
                seen_inputs.add(g.in_features)
            # lora_A output, saved by lora_B: in the compute dtype when autocast runs lora_A.
            total += per_layer * (adapters.input_copy_bytes or adapters.adapter_bytes) * adapters.rank

    # Dropout masks (1 byte per element) where the config trains with dropout (BERT, GPT-2).
    raw = spec.raw_config
    hidden_p = raw.get("hidden_dropout_prob", raw.get("resid_pdrop", 0.0)) or 0.0
    attn_p = raw.get("attention_probs_dropout_prob", raw.get("attn_pdrop", 0.0)) or 0.0
    if hidden_p:
        total += 2 * h
    if attn_p and attention == "eager":
        total += heads * seq_len * (1 + c)
    return total


def compiled_layer_saved_bytes_per_token(spec: ModelSpec, *, compute_bytes: int) -> int | None:
    """Bytes one torch.compile'd decoder layer saves for backward per token (full fine-tuning, the
    compute dtype throughout as torchtune's pure bf16, SDPA), or None where no trace backs it.

    torchtune `compile=True` compiles each decoder layer on its own; inductor partitions forward
    and backward with `min_cut_rematerialization_partition` (torch 2.13
    `torch/_functorch/partitioners.py`), which saves the fewest bytes and recomputes cheap
    pointwise ops in the backward. Traced (`benchmarks/compile_layer_trace.py`: one bf16 layer,
    inductor's decompositions and partitioner with nop compilers, saved-tensor hooks on the compiled
    layer, unique storages) it keeps per token: the layer's c-byte input and the o_proj output
    (the norms' fp32 upcasts and the residual sum are recomputed from them), 1/rms per norm (4 B
    each), the two normalized c-byte linear inputs (attention, MLP), SDPA's q, k (after RoPE), v,
    output (o_proj's input, the same storage) and fp32 log-sum-exp per head, and the MLP's gate
    and up outputs and their activated product (SiLU and its product are recomputed):
    4ch + 8 + c(2q + 2kv) + 4·heads + 3cI. Llama-3.2-3B: 90,216 B (eager 131,176, x0.688);
    Qwen2.5-0.5B: 40,512 (eager 57,408). Only the traced layer shape is sized: RMSNorm, dense
    gated MLP, no QK/sandwich norms, no MLA, no dropout; elsewhere None (not modelled)."""
    if (spec.layer_norm or spec.is_moe or not spec.gated_mlp or fused_gate_up(spec) or spec.model_type in _QK_NORM_FAMILIES
            or spec.model_type in _SANDWICH_NORM_FAMILIES or is_mla(spec)):
        return None
    raw = spec.raw_config
    if raw.get("hidden_dropout_prob", raw.get("resid_pdrop", 0.0)) or raw.get("attention_dropout", 0.0):
        return None
    c = compute_bytes
    h = spec.hidden_size
    heads = spec.num_attention_heads
    q = heads * spec.head_dim
    kv = spec.num_key_value_heads * spec.head_dim
    return 4 * c * h + 8 + c * (2 * q + 2 * kv) + 4 * heads + 3 * c * spec.intermediate_size


def head_saved_bytes_per_token(spec: ModelSpec, *, compute_bytes: int, residual_bytes: int, frozen: bool, head_saves_input: bool) -> int:
    """What the final norm and the LM head save per token (see `training_activation_bytes`): the
    norm's fp32 input and 1/rms, its normalized tensor when its weight trains (residual dtype), and
    the head's c-byte input when a trainable head is an nn.Linear call (`head_saves_input`)."""
    h = spec.hidden_size
    return 4 * h + 4 + (0 if frozen else residual_bytes * h) + (compute_bytes * h if head_saves_input and not frozen else 0)


def training_activation_bytes(
    spec: ModelSpec,
    *,
    batch_size: int,
    seq_len: int,
    compute_bytes: int,
    attention: str,
    adapters: AdapterPlan | None,
    gradient_checkpointing: bool,
    checkpoint_every: int = 1,
    layer_input_bytes: int | None = None,
    extra_per_layer: int = 0,
    head_saves_input: bool = True,
    first_layer_input_grad: bool = True,
    checkpointed_extra_per_layer: int = 0,
) -> int:
    """Saved activations of a whole forward pass, at the start of backward.

    Without checkpointing: every layer's saved tensors (`layer_saved_bytes_per_token`, plus
    `extra_per_layer` bytes per token that a saver or PEFT method adds) plus the final norm and
    the LM head input. With transformers' gradient checkpointing (non-reentrant; Chen et al. 2016,
    arXiv:1604.06174) a checkpointed layer keeps only its input (ch per token, or
    `layer_input_bytes` x h when the residual stream is fp32 under autocast); with
    `checkpoint_every` = k only every k-th layer is checkpointed (`checkpointed_layers`) and the
    others keep everything; a selective policy keeps `checkpointed_extra_per_layer` bytes per token
    more in each checkpointed layer (`selective_op_saved_bytes_per_token`). The layer recomputed
    during backward is `recompute_activation_bytes`.

    After the last layer: the final norm (its fp32 input, 1/rms, and the normalized tensor when its
    weight trains, in the residual dtype) and, when the LM head trains and an nn.Linear applies it
    (`head_saves_input`: full logits or chunked output, not a fused head, which keeps its own copy
    in the loss term), the head's c-byte input. A frozen norm weight or head saves neither (the
    multiply needs only the weight for the input gradient).
    `first_layer_input_grad=False`: the embedding is frozen and nothing makes its output require
    grad (PEFT without gradient checkpointing: TRL 1.16 `sft_trainer.py` and transformers call
    `enable_input_require_grads` only with checkpointing), so the first layer's input norm saves
    nothing (traced: 2-layer Llama-3.2-3B / Qwen2.5-0.5B LoRA steps keep 3 of 4 layer norms' inputs).
    """
    tokens = batch_size * seq_len
    c = compute_bytes
    h = spec.hidden_size
    r = layer_input_bytes or c
    layers = spec.num_hidden_layers + spec.num_encoder_layers
    head_inputs = head_saved_bytes_per_token(spec, compute_bytes=c, residual_bytes=r, frozen=adapters is not None,
                                             head_saves_input=head_saves_input)
    if not first_layer_input_grad and layers:
        head_inputs -= (c * h + 8) if spec.layer_norm else 4 * h + 4
    if gradient_checkpointing:
        kept = checkpointed_layers(layers, checkpoint_every)
        rest = layers - kept
        per_layer = 0
        if rest:
            per_layer = layer_saved_bytes_per_token(spec, compute_bytes=c, seq_len=seq_len, attention=attention, adapters=adapters,
                                                    residual_bytes=r) + extra_per_layer
        return tokens * (kept * (r * h + checkpointed_extra_per_layer) + rest * per_layer + head_inputs)
    moe_layers = moe_layer_split(spec)[1]
    saved = 0
    for count, moe in ((layers - moe_layers, False), (moe_layers, True)):
        if count:
            saved += count * layer_saved_bytes_per_token(spec, compute_bytes=c, seq_len=seq_len, attention=attention, adapters=adapters,
                                                         residual_bytes=r, moe_layer=moe)
    return tokens * (saved + layers * extra_per_layer + head_inputs)


# torchtitan's op-level selective activation checkpointing (`mode = "selective"`,
# `selective_ac_option = "op"`): `_save_list` in torchtitan/models/llama3/infra/parallelize.py at
# commit 81c1243 (aten.mm, SDPA flash / efficient attention, reduce_scatter, max), applied by
# `_custom_policy` with "every second mm" recomputed; torchtitan/distributed/activation_checkpoint.py
# `_apply_op_sac` keeps the same rule at commit cfb9326. torchtune 0.6 (`training/activations.py`,
# commit 6ace7c2) offers only per-layer "selective" (every k-th block) beside "full".


def selective_op_saved_bytes_per_token(spec: ModelSpec, *, compute_bytes: int, attention: str, adapters: AdapterPlan | None = None,
                                       adapter_out_bytes: int = 0) -> int:
    """Bytes per token one decoder layer keeps under torchtitan's op-level selective checkpointing,
    beyond its input (which full checkpointing keeps too).

    The policy sees dispatched aten ops in execution order. An `nn.Linear` without bias on a
    [batch, seq, in] input is one `aten.mm` (`linear` -> `matmul` folds the batch into rows); one
    with a bias is `aten.addmm` (`_flatten_nd_linear`), which is not in the list and is recomputed.
    peft's LoRA runs base, lora_A, lora_B (three mm, adapter outputs in `adapter_out_bytes`). Of the
    layer's mm calls the odd ones (1st, 3rd, ...) keep their output: for a Llama layer q (cq), v
    (c kv), gate (cI) and down (ch), not k, o, up. Flash / efficient SDPA keeps its output (cq) and
    fp32 log-sum-exp (4 x heads); eager attention runs bmm and softmax, none of them kept. Linears
    are taken in the module order of the layer (transformers declares them in execution order);
    fused MoE experts run grouped matmuls, not mm, so only their router counts. Full-FT Llama-3.2-3B
    layer in bf16: 2 x (3072 + 1024 + 8192 + 3072) + 2 x 3072 + 4 x 24 = 36,960 bytes (traced)."""
    c = compute_bytes
    layers = max(spec.num_hidden_layers, 1)
    mm_outputs: list[int] = []
    for g in spec.linears:
        if g.role not in ("attention", "mlp", "router") or not g.is_nn_linear or g.count % layers:
            continue
        for _ in range(g.count // layers):
            if not g.bias_params:
                mm_outputs.append(c * g.out_features)
            if adapters is not None and adapters.adapts(g):
                width = adapters.rank * g.lora_rank_factor
                mm_outputs += [adapter_out_bytes * width, adapter_out_bytes * g.out_features]
    total = sum(size for i, size in enumerate(mm_outputs) if i % 2 == 0)
    if attention != "eager":
        total += c * spec.num_attention_heads * spec.head_dim + 4 * spec.num_attention_heads
    return total


def recompute_activation_bytes(
    spec: ModelSpec, *, batch_size: int, seq_len: int, compute_bytes: int, attention: str, adapters: AdapterPlan | None
) -> int:
    """With gradient checkpointing, one layer's activations recomputed during backward. They exist
    after the loss buffers are freed, so they are a phase of their own, not added to the loss
    (traced: summing them over-counted 8% at 8k x 8, calibration-notes item 5)."""
    per_layer = layer_saved_bytes_per_token(spec, compute_bytes=compute_bytes, seq_len=seq_len, attention=attention, adapters=adapters)
    return batch_size * seq_len * per_layer


def loss_buffer_bytes(spec: ModelSpec, *, batch_size: int, seq_len: int, compute_bytes: int, keep_logits: bool) -> int:
    """Logits and cross-entropy buffers at the start of backward.

    transformers' `ForCausalLMLoss` upcasts logits to fp32; `_log_softmax_backward_data` then has
    the saved log-probabilities, the incoming gradient and its result live at once:
    3 x 4 bytes x batch x seq x vocab (traced, ../shared/TRACE-NOTES.md). A loop that keeps the
    model `outputs` alive (`keep_logits`) adds the c-byte logits; a model that soft-caps its logits
    (Gemma 2) keeps tanh's c-byte output too. Encoders have no LM loss here.
    """
    if not spec.is_causal_lm:
        return 0
    tokens = batch_size * seq_len
    # Final logit soft-capping (Gemma2ForCausalLM.forward: `logits = tanh(logits / cap) * cap` before
    # the loss): tanh saves its c-byte output until backward reaches it (traced, gemma2 2-layer copy).
    softcap = compute_bytes if spec.final_logit_softcapping else 0
    return tokens * spec.vocab_size * (12 + softcap + (compute_bytes if keep_logits else 0))


def loss_forward_bytes(spec: ModelSpec, *, tokens: int, compute_bytes: int) -> int:
    """transformers' causal-LM loss during the forward: the c-byte logits, their fp32 upcast
    (`logits.float()`) and `log_softmax`'s fp32 output (saved for backward) at once: tokens x
    vocab x (c + 8). Less than the backward's three fp32 tensors, but under fp32-weight autocast the
    forward also holds autocast's cache of every weight cast (traced, 2-layer Llama-3.2-3B full
    fine-tune with checkpointing: forward peak 18.1 GiB = master + states + all bf16 casts + this)."""
    if not spec.is_causal_lm:
        return 0
    return tokens * spec.vocab_size * (compute_bytes + 8)


# ---------------------------------------------------------------------------------------------
# Gradients and optimizer
# ---------------------------------------------------------------------------------------------


def optimizer_state_bytes(*, optimizer: str, trainable_params: int, state_bytes: int, factored_elements: int | None = None) -> int:
    """Optimizer states for `trainable_params` parameters.

    - AdamW: first and second moments, 2 x params x state_bytes (state_bytes = parameter bytes in
      PyTorch, 4 with fp32 master weights: ZeRO paper sec. 3.1's 12 bytes = master + 2 states).
    - 8-bit AdamW (bitsandbytes): two uint8 states plus an fp32 absmax per 256-element block for
      each (bitsandbytes `Optimizer8bit`, blockwise; Dettmers et al. 2022).
    - Adafactor (no momentum, transformers default beta1=None): factored second moment, rows +
      columns per matrix (`factored_elements`), full size for vectors (Shazeer & Stern 2018).
    - SGD with momentum: one buffer.
    """
    if optimizer == "adamw":
        return 2 * trainable_params * state_bytes
    if optimizer == "adamw-8bit":
        return 2 * (trainable_params + 4 * -(-trainable_params // 256))
    if optimizer == "adafactor":
        return (factored_elements if factored_elements is not None else trainable_params) * state_bytes
    if optimizer == "sgd":
        return trainable_params * state_bytes
    raise AssertionError(optimizer)


def optimizer_step_temp_bytes(*, optimizer: str, trainable_params: int, param_bytes: int, largest_param: int) -> int:
    """Temporaries of one optimizer step. PyTorch's `foreach` AdamW (the CUDA default) builds one
    parameter-sized list for the update (TRACE-NOTES: weights + grads + 2 states + 1 temporary);
    8-bit AdamW and Adafactor update one parameter at a time; SGD without weight decay is in place."""
    if optimizer == "adamw":
        return trainable_params * param_bytes
    if optimizer in ("adamw-8bit", "adafactor"):
        return 2 * largest_param * 4
    return 0


def adafactor_factored_elements(spec: ModelSpec) -> int:
    """Rows + columns of every weight matrix, plus every vector parameter in full."""
    matrices = sum(g.count * (g.in_features + g.out_features) for g in spec.linears)
    vectors = sum(g.bias_params for g in spec.linears) + spec.other_params
    embed = spec.hidden_size + (spec.embedding_params // max(spec.hidden_size, 1))
    return matrices + vectors + embed


# ---------------------------------------------------------------------------------------------
# Memory savers of the trainer presets (calculator/trainers.py): one term each
# ---------------------------------------------------------------------------------------------

# TRL 1.16.0 fused LM head: `trl/kernels/chunked_logprob.py` TOKEN_CHUNK_SIZE = 4096 and
# `trl/trainer/utils.py` _CHUNKED_LOGPROB_CHUNK_SIZE = 32768 (vocabulary columns per tile).
TRL_TOKEN_CHUNK = 4096
TRL_VOCAB_CHUNK = 32768


def trained_tokens(tokens: int, fraction: float) -> int:
    """Tokens whose label is not -100 (completion-only / assistant-only loss): the fused heads of
    TRL (`hidden_states[mask]` on CUDA) and Liger score only those."""
    return tokens if fraction >= 1 else max(1, math.ceil(tokens * fraction))


def chunked_output_loss_bytes(spec: ModelSpec, *, tokens: int, compute_bytes: int, chunks: int, compiled: bool = False) -> int:
    """torchtune `CEWithChunkedOutputLoss` (v0.6.1 `torchtune/modules/loss/ce_chunked_output_loss.py`,
    `num_output_chunks=8`): the model returns the logits as `chunks` c-byte pieces, each upcast with
    `.float()` and passed to `F.cross_entropy(..., reduction="sum")`.

    Eager, each chunk's cross-entropy saves two fp32 tensors of the chunk's size (traced with
    saved-tensor hooks, torch 2.13: 8 bytes per logit), so at the end of the loss forward every
    c-byte chunk and every saved fp32 pair are alive: tokens x vocab x (c + 8); in backward the
    saved pairs plus one chunk's fp32 gradient and c-byte cast, which is less.
    Compiled (torchtune `compile=True` compiles `compute_cross_entropy`), the min-cut partition
    saves only the c-byte chunk and two fp32 per-row statistics (traced with
    `torch.compile(backend="aot_eager_decomp_partition")`, the partitioner inductor uses), so the
    chunks stay alive into backward, where one chunk's fp32 gradient and c-byte cast are added:
    tokens x vocab x c + tokens/chunks x vocab x (4 + c)."""
    if not spec.is_causal_lm:
        return 0
    v = spec.vocab_size
    per_chunk = -(-tokens // chunks)
    if compiled:
        return tokens * v * compute_bytes + 8 * tokens + per_chunk * v * (4 + compute_bytes)
    forward = tokens * v * (compute_bytes + 8)
    backward = tokens * v * 8 + per_chunk * v * (4 + compute_bytes)
    return max(forward, backward)


def fused_lm_head_loss_bytes(
    spec: ModelSpec, *, tokens: int, trained: int, compute_bytes: int, hidden_bytes: int, head_weight_bytes: int, head_trainable: bool
) -> int:
    """TRL 1.16 `add_fused_lm_head` + `ChunkedLogProbFunction` (`trl/trainer/utils.py`,
    `trl/kernels/chunked_logprob.py`): log-probabilities of the `trained` positions in tiles of
    [4096 tokens x 32768 vocabulary] without the [tokens, vocab] logits.

    Saved for backward: the compacted hidden states `hidden_states[mask]` (trained x h, their
    dtype) and two fp32 per-token vectors (log_z, entropy). Forward transients: seven fp32
    per-token statistics, the c-byte tile, and c-byte casts of a hidden chunk / weight chunk when
    they are not already in the compute dtype (fp32 weights under bf16 autocast). Backward: the
    tile and casts again (two weight-chunk casts at once), the fp32 accumulators `grad_hidden` (trained x h x 4) and, when the head
    is trainable, `grad_weight` (vocab x h x 4), then their casts to the input / weight dtype at
    return. The term is saved + the larger of the two transients."""
    if not spec.is_causal_lm:
        return 0
    h, v, c = spec.hidden_size, spec.vocab_size, compute_bytes
    t_chunk = min(trained, TRL_TOKEN_CHUNK)
    v_chunk = min(v, TRL_VOCAB_CHUNK)
    h_cast = t_chunk * h * c if hidden_bytes != c else 0
    w_cast = v_chunk * h * c if head_weight_bytes != c else 0
    tile = t_chunk * v_chunk * c
    saved = trained * h * hidden_bytes + 2 * 4 * trained
    forward = 7 * 4 * trained + tile + h_cast + w_cast
    # In backward `w_chunk = weight[start:end].to(dtype)` is rebound per vocabulary chunk: the new cast exists
    # before the previous one is released (traced), so two casts are alive when there is more than one chunk.
    backward = tile + h_cast + w_cast * (2 if v > v_chunk else 1) + trained * 4 + trained * h * 4 + (trained * h * hidden_bytes if hidden_bytes != 4 else 0)
    if head_trainable:
        backward += v * h * 4 + (v * h * head_weight_bytes if head_weight_bytes != 4 else 0)
    del tokens  # all positions are projected only off CUDA (the trace); on a GPU only the trained ones
    return saved + max(forward, backward)


def liger_fused_linear_ce_bytes(spec: ModelSpec, *, trained: int, compute_bytes: int, head_weight_bytes: int, head_trainable: bool) -> int:
    """Liger-Kernel v0.8.2 `fused_linear_cross_entropy_forward` (also what Unsloth's fused CE and
    axolotl's `liger_fused_linear_cross_entropy` amount to): the gradients are computed during the
    forward, chunk by chunk of `next_power_of_2(ceil(BT / ceil(V / H)))` tokens, so what stays is
    `grad_input` (BT x h, c bytes), `grad_weight` (V x h in the weight dtype, when trainable), one
    c-byte [chunk x V] logits tile and the fp32 per-token loss. Triton, GPU only: analytic, not traced."""
    if not spec.is_causal_lm:
        return 0
    h, v = spec.hidden_size, spec.vocab_size
    inc = -(-v // h)
    chunk = 1 << max(0, (-(-trained // inc) - 1).bit_length())
    chunk = min(chunk, trained)
    total = trained * h * compute_bytes + chunk * v * compute_bytes + 4 * trained
    if head_trainable:
        total += v * h * head_weight_bytes
    return total


def checkpointed_layers(num_layers: int, every: int) -> int:
    """Decoder layers checkpointed with transformers' `every_n_layers` (5.24 `modeling_utils.py`:
    `layer_index % every_n_layers == 0`): ceil(layers / every)."""
    return -(-num_layers // max(every, 1))


def offloaded_activation_split(*, saved_bytes: int, per_layer_bytes: int, layers: int, head_bytes: int) -> tuple[int, int]:
    """(GPU, host) bytes of saved activations with activation offloading (torchtune
    `OffloadActivations`, which TRL 1.16 `activation_offloading` and transformers' `offload` reuse;
    Unsloth's offloaded checkpointer likewise): each layer's saved tensors move to pinned host
    memory as the forward goes on and come back one layer ahead in backward, so the GPU holds two
    layers' worth (the one in flight and the one prefetched) plus the loss inputs after the last layer."""
    body = max(saved_bytes - head_bytes, 0)
    on_gpu = min(body, 2 * per_layer_bytes) if layers else body
    return on_gpu + head_bytes, body - on_gpu


def optimizer_in_backward_bytes(*, largest_param: int, grad_bytes: int, temp_bytes_per_elem: int) -> int:
    """Step fused into backward (torchtune `optimizer_in_bwd=True`: one optimizer per parameter,
    stepped in a post-accumulate-grad hook, gradient freed at once): no full set of gradients ever
    exists; at most one parameter's gradient and its step temporary are alive."""
    return largest_param * (grad_bytes + temp_bytes_per_elem)


def layer_backward_transient_bytes(spec: ModelSpec, *, tokens: int, compute_bytes: int, residual_bytes: int | None = None) -> int:
    """Gradient buffers alive while a recomputed decoder layer is back-propagated: through the gated
    MLP the gradient of the down projection's input, then of act(gate) and of up, then of gate
    (three c x I tensors at once), plus the incoming residual gradient and RMSNorm's backward
    buffers in the residual stream's dtype (fp32 under autocast with fp32 weights): 3cI + 2.5 x
    r x h per token. The 2.5 is measured, not derived: FakeTensor traces of TRL steps on 2-layer
    Llama-3.2-3B / Qwen2.5-0.5B / Qwen3-4B copies need 3cI + 10h with an fp32 residual and about
    3cI + 5h with a bf16 one (benchmarks/results/trainer_traces-quick.md)."""
    r = residual_bytes or compute_bytes
    inter = spec.moe_intermediate_size * max(spec.num_experts_per_tok, 1) if moe_layer_split(spec)[1] else spec.intermediate_size
    return tokens * (3 * compute_bytes * inter + 5 * r * spec.hidden_size // 2)


def autocast_weight_cast_bytes(spec: ModelSpec, *, compute_bytes: int, layers_kept: int, full_logits: bool, adapter_params: int,
                               first_layer_input_grad: bool = True) -> int:
    """A frozen fp32 base under bf16/fp16 autocast (TRL's default of loading a model id in fp32,
    with LoRA): every linear casts its weight to the compute dtype, and the matmul saves that cast
    copy for the input gradient, so it lives until backward. Per layer that is all its linear
    weights in c bytes, for each layer not checkpointed (`layers_kept`); the LM head's cast too
    when the full logits are computed, and the adapters' own casts (traced with saved-tensor
    hooks on transformers 5.24 + peft 0.21: the bf16 copies of q/k/v/o/gate/up/down are saved).
    `first_layer_input_grad=False` (frozen embedding, no `enable_input_require_grads`): the first
    layer's q/k/v read a tensor that needs no gradient, so their matmuls save no weight copy
    (traced: 2-layer Llama-3.2-3B LoRA, checkpointing off, keeps 3 of 4 q/o casts and 2 of 4 k/v)."""
    layers = max(spec.num_hidden_layers + spec.num_encoder_layers, 1)
    body = sum(g.weight_params for g in spec.linears if g.role != "head")
    if not first_layer_input_grad and layers_kept == layers:
        body -= sum(g.in_features * g.out_features for g in _stream_reader_groups(spec)[0])
    head = spec.vocab_size * spec.hidden_size if spec.is_causal_lm and full_logits else 0
    return compute_bytes * (body * layers_kept // layers + head + adapter_params)


def dora_extra_params(spec: ModelSpec, plan: AdapterPlan) -> int:
    """DoRA's magnitude vector: one value per output feature of each adapted linear (peft
    `DoraLinearLayer.update_layer`, Liu et al. 2024 arXiv:2402.09353)."""
    return sum(g.count * g.out_features for g in spec.linears if plan.adapts(g))


def dora_saved_bytes_per_token(spec: ModelSpec, plan: AdapterPlan, *, compute_bytes: int) -> int:
    """What DoRA saves beyond LoRA, per token, over the whole model: peft 0.21 `DoraLinearLayer.forward`
    multiplies the base output by `mag_norm_scale - 1` (saving the c-byte base output) and the
    adapter output by `mag_norm_scale` (saving the adapter-dtype `lora_result`): (c + a) x out_features
    per adapted linear."""
    return sum(g.count * g.out_features * (compute_bytes + plan.adapter_bytes) for g in spec.linears if plan.adapts(g))


def dora_weight_norm_transient_bytes(spec: ModelSpec, plan: AdapterPlan) -> int:
    """DoRA's per-step weight norm, largest adapted layer (peft `get_lora_weight`, `get_weight_norm`):
    an identity of in x in, the in x out `lora_weight`, the base weight cast to the adapter dtype,
    `scaling * lora_weight` and the sum, all in the adapter dtype: a x (in^2 + 4 x in x out)."""
    a = plan.adapter_bytes
    return max((a * (g.in_features ** 2 + 4 * g.in_features * g.out_features) for g in spec.linears if plan.adapts(g)), default=0)


IA3_DEFAULT_TARGETS = frozenset({"k_proj", "v_proj", "down_proj"})  # peft 0.21 TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING (llama)
IA3_FEEDFORWARD = frozenset({"down_proj"})  # ... _IA3_FEEDFORWARD_MODULES_MAPPING (llama)


def ia3_params(spec: ModelSpec) -> int:
    """IA3 (Liu et al. 2022, arXiv:2205.05638) learned vectors on peft's default targets: out_features
    for k/v (scaling the output), in_features for the feed-forward down projection (scaling the input)."""
    return sum(g.count * (g.in_features if _leaf(g) in IA3_FEEDFORWARD else g.out_features) for g in spec.linears if _leaf(g) in IA3_DEFAULT_TARGETS)


def _leaf(g: LinearGroup) -> str:
    return g.name.rsplit(".", 1)[-1]


def ia3_saved_bytes_per_token(spec: ModelSpec, *, compute_bytes: int) -> int:
    """What IA3 saves per token (peft 0.21 `ia3/layer.py` `Linear.forward`, fp32 vectors): k/v
    multiply the c-byte base output by the vector (saving the output); down_proj multiplies its
    input cast to fp32 by the vector (saving the fp32 input)."""
    total = 0
    for g in spec.linears:
        if _leaf(g) in IA3_FEEDFORWARD:
            total += g.count * 4 * g.in_features
        elif _leaf(g) in IA3_DEFAULT_TARGETS:
            total += g.count * compute_bytes * g.out_features
    return total


def peft_linear_targets(spec: ModelSpec, targets: str) -> frozenset[str]:
    """Module names peft's OFT and VeRA adapt for `targets`: the LoRA choice restricted to
    `nn.Linear` modules. Both tuners wrap only `nn.Linear` / `Conv1D` (peft 0.21.2
    `tuners/oft/model.py` `_create_new_module`, `tuners/vera/model.py` `_get_tuner_layer_class`), and
    "all-linear" is `_maybe_include_all_linear_layers`, which lists linear modules only: fused 3-D
    experts, which LoRA reaches through parameter targeting, get no adapter."""
    nn_linear = {g.name for g in spec.linears if g.is_nn_linear}
    return frozenset(n for n in lora_target_names(spec, targets) if n in nn_linear)


def _adapted(spec: ModelSpec, names: frozenset[str]) -> list[LinearGroup]:
    return [g for g in spec.linears if g.name in names]


def oft_block_size(in_features: int, block_size: int) -> int:
    """The block size peft's OFT uses on a layer with `in_features` inputs: the requested one when it
    divides the input, else the nearest divisor (peft 0.21.2 `tuners/oft/layer.py`
    `OFTLayer.adjust_oft_parameters`, ties to the smaller; the whole input when larger than it)."""
    if in_features % block_size == 0 and block_size <= in_features:
        return block_size
    if block_size >= in_features:
        return in_features
    higher = block_size
    while higher <= in_features and in_features % higher != 0:
        higher += 1
    lower = block_size
    while lower > 1 and in_features % lower != 0:
        lower -= 1
    return lower if block_size - lower <= higher - block_size else higher


def oft_params(spec: ModelSpec, names: frozenset[str], *, block_size: int) -> int:
    """OFT's trainable parameters (Qiu et al. 2023, arXiv:2306.07280; peft 0.21.2 `OFTRotationModule`):
    per adapted linear, in/b blocks, each a skew-symmetric b x b matrix stored as its b(b-1)/2
    upper-triangle entries (`weight` of shape [r, n_elements]): in x (b - 1) / 2 values."""
    total = 0
    for g in _adapted(spec, names):
        b = oft_block_size(g.in_features, block_size)
        total += g.count * (g.in_features // b) * (b * (b - 1) // 2)
    return total


def oft_buffer_bytes(spec: ModelSpec, names: frozenset[str], *, block_size: int) -> int:
    """OFT's index buffers: each `OFTRotationModule` registers `rows` and `cols` =
    `torch.triu_indices(b, b, 1)`, int64, 2 x b(b-1)/2 x 8 bytes (peft 0.21.2 `tuners/oft/layer.py`)."""
    total = 0
    for g in _adapted(spec, names):
        b = oft_block_size(g.in_features, block_size)
        total += g.count * 2 * (b * (b - 1) // 2) * 8
    return total


def oft_saved_bytes_per_token(spec: ModelSpec, names: frozenset[str], *, saved_bytes: int, copies_input: bool, attention: str = "sdpa") -> int:
    """What OFT saves per token over the whole model. peft 0.21.2 `OFTRotationModule.forward` rotates
    the layer input, not the weight: the input cast to the adapter dtype is reshaped to [.., in/b, b]
    and `einsum("...rk,rkc->...rc")` with the rotation blocks runs as a bmm over the block index,
    which saves its operand; the frozen base linear then saves nothing of the rotated input.
    `copies_input` (the input is cast first: fp32 adapters on a bf16/fp16 base, or any base under
    autocast, whose bmm casts it): the bmm saves a permuted contiguous copy of its own, one per
    adapted linear, in x `saved_bytes`. Otherwise (adapters in the input's dtype) it saves a view of
    the layer's input, so each distinct input tensor is kept once: the attention input (shared by
    q, k, v), the MLP input (shared by gate and up), the down projection's input; the attention
    output projection's input is the SDPA output, already saved by attention (eager's is a fresh
    copy). Traced with saved-tensor hooks (peft 0.21.2, torch 2.13): a [96, tokens, 32] fp32 copy
    for a 3,072-wide input; on a 2-layer Llama-3.2-3B with bf16 adapters 2 x (h + h + I) per token."""
    groups = _adapted(spec, names)
    if copies_input:
        return sum(g.count * g.in_features * saved_bytes for g in groups)
    inputs: dict[tuple[str, int, bool], int] = {}
    for g in groups:
        output_proj = g.role == "attention" and (_leaf(g) in _ATTENTION_OUTPUT_NAMES or g.name in _ATTENTION_OUTPUT_NAMES)
        if output_proj and attention != "eager":
            continue
        key = (g.role, g.in_features, output_proj)
        inputs[key] = max(inputs.get(key, 0), g.count)
    return sum(count * width * saved_bytes for (_, width, _), count in inputs.items())


def oft_rotation_saved_bytes(spec: ModelSpec, names: frozenset[str], *, block_size: int, adapter_bytes: int, autocast_bytes: int = 0) -> int:
    """OFT's rotation matrices saved for backward, whole model, independent of tokens. Every forward
    rebuilds each layer's blocks with the Cayley-Neumann series (peft 0.21.2 `_cayley_batch`,
    `use_cayley_neumann=True`, `num_cayley_neumann_terms=5`): R = I + 2Q + 2Q^2 + 2Q^3 + Q^4 from the
    skew matrix Q, with three bmm. Saved: Q, Q^2, Q^3 (by the bmm) and R (by the einsum), each
    [in/b, b, b] = in x b elements, in the adapter dtype: 4 x a x in x b per adapted linear. Under
    autocast (`autocast_bytes` = c: an fp32 base trained under bf16/fp16 autocast) every bmm casts its
    operands and saves the casts: Q four times (twice in Q.Q), Q^2, Q^3 and R: 7 x c x in x b.
    Traced with saved-tensor hooks on one 3,072-wide linear (b = 32): four [96, 32, 32] fp32
    tensors, seven bf16 under autocast."""
    total = 0
    for g in _adapted(spec, names):
        b = oft_block_size(g.in_features, block_size)
        total += g.count * g.in_features * b * (7 * autocast_bytes if autocast_bytes else 4 * adapter_bytes)
    return total


def vera_params(spec: ModelSpec, names: frozenset[str], *, rank: int) -> int:
    """VeRA's trainable vectors (Kopiczko et al. 2024, arXiv:2310.11454; peft 0.21.2
    `tuners/vera/layer.py` `VeraLayer.update_layer`): `vera_lambda_b` (out_features) and
    `vera_lambda_d` (r) per adapted linear."""
    return sum(g.count * (g.out_features + rank) for g in _adapted(spec, names))


def vera_projection_bytes(spec: ModelSpec, names: frozenset[str], *, rank: int, adapter_bytes: int) -> int:
    """VeRA's shared frozen random projections: one `vera_A` [r, max in] and one `vera_B` [max out, r]
    for the whole model, sized by the largest adapted input and output (peft 0.21.2
    `tuners/vera/model.py` `_find_dim`, `_init_vera_A_vera_B`), buffers in the adapter dtype (cast to
    the base dtype on placement, then to fp32 by `autocast_adapter_dtype`, peft `cast_adapter_dtype`).
    Every layer slices them (`vera_A[:, :in]`, a view)."""
    groups = _adapted(spec, names)
    if not groups:
        return 0
    return adapter_bytes * rank * (max(g.in_features for g in groups) + max(g.out_features for g in groups))


def vera_saved_bytes_per_token(spec: ModelSpec, names: frozenset[str], *, rank: int, saved_bytes: int) -> int:
    """What VeRA saves per token over the whole model. peft 0.21.2 `Linear.forward` computes
    `lambda_b * F.linear(lambda_d * F.linear(x, A), B)` on the input cast to the adapter dtype: the
    two products with the trainable vectors save their other operand, the r-wide `x A^T` and the
    out-wide `(...) B^T`; the linears with the frozen A, B save only A and B (no copy of x):
    (r + out) x `saved_bytes` per adapted linear (the adapter dtype; the compute dtype under autocast,
    where F.linear returns it). Traced with saved-tensor hooks: [tokens, 256] and [tokens, 3072] fp32."""
    return sum(g.count * (rank + g.out_features) * saved_bytes for g in _adapted(spec, names))


def vera_autocast_cast_bytes(spec: ModelSpec, names: frozenset[str], *, rank: int, compute_bytes: int) -> int:
    """VeRA under autocast (fp32 base, bf16/fp16 compute): each adapted linear's two F.linear cast its
    slice of the frozen projections to the compute dtype and save the cast for the input gradient
    (autocast caches only casts of leaves that require grad): c x r x (in + out) per adapted linear,
    whole model (traced with saved-tensor hooks: bf16 [3072, 256] and [256, 3072] per layer)."""
    return sum(g.count * compute_bytes * rank * (g.in_features + g.out_features) for g in _adapted(spec, names))


def cpu_offload_split(*, weights: int, optimizer: int, master: int, gradients: int, offload: str, layer_param_bytes: int) -> dict[str, int]:
    """DeepSpeed ZeRO-Offload (`offload_optimizer: cpu`) / FSDP `CPUOffload`: the optimizer states
    and the fp32 master copy live in host RAM and the step runs on the CPU (Ren et al. 2021,
    arXiv:2101.06840), gradients are copied to the host as they are reduced; with
    "optimizer+params" (ZeRO-Infinity / FSDP `offload_params=True`) the parameters too, gathered to the
    GPU about two layers at a time. Returns what stays on the GPU and what host RAM holds."""
    if offload == "none":
        return {"weights": weights, "optimizer": optimizer, "master": master, "gradients": gradients, "host": 0}
    host = optimizer + master + gradients
    gpu_weights = weights
    if offload == "optimizer+params":
        gpu_weights = min(weights, 2 * layer_param_bytes)
        host += weights
    return {"weights": gpu_weights, "optimizer": 0, "master": 0, "gradients": 0, "host": host}


def liger_kernel_savings_per_layer(spec: ModelSpec, *, compute_bytes: int, norm_kernel: str, mlp_kernel: str, frozen: bool) -> int:
    """Bytes per token per layer that Liger's kernels do not save (Liger-Kernel v0.8.2):
    `LigerRMSNormFunction` saves its c-byte input and fp32 1/rms instead of transformers' fp32
    upcast (and, with a trainable weight, the normalized tensor): 4h + (ch) - ch per norm;
    `LigerSiLUMulFunction` saves gate and up and recomputes SiLU in backward: one c x I fewer."""
    if spec.layer_norm or not spec.gated_mlp:
        return 0
    c, h = compute_bytes, spec.hidden_size
    saved = 0
    if norm_kernel == "liger":
        norms = 4 if spec.model_type in _SANDWICH_NORM_FAMILIES else 2
        saved += norms * (4 * h + (0 if frozen else c * h) - c * h)
    if mlp_kernel == "liger" and not spec.is_moe:
        saved += c * spec.intermediate_size
    return max(saved, 0)


# ---------------------------------------------------------------------------------------------
# The cache `generate` builds: static and quantized caches (transformers 5.24)
# ---------------------------------------------------------------------------------------------

# transformers 5.24 `cache_utils.QuantizedLayer.__init__` defaults, which `generate(...,
# cache_implementation="quantized")` keeps unless `cache_config` overrides them: nbits=4,
# q_group_size=64, residual_length=128 (and backend "quanto" in `_prepare_cache_for_generation`).
QUANTIZED_CACHE_GROUP_SIZE = 64
QUANTIZED_CACHE_RESIDUAL_LENGTH = 128
# Layer kinds transformers' QuantizedCache accepts: its __init__ raises unless every layer type is
# "full_attention" (MLA layers are full attention there too).
QUANTIZED_CACHE_LAYER_KINDS = frozenset({"full", "mla"})


def static_cache_len(context_length: int, generated_tokens: int) -> int:
    """Tokens a `StaticCache` preallocates. `generate` sizes it for `max_length - 1` = prompt +
    new tokens - 1 (generation/utils.py: `max_cache_length = generation_config.max_length - 1`,
    then `_prepare_static_cache`; the last token is never fed back); one forward with no generated
    tokens needs a cache of the context. Sliding layers hold min(window, this) (`StaticSlidingWindowLayer`)."""
    return context_length - 1 if generated_tokens else context_length


def _cache_elements_per_token_per_layer(spec: ModelSpec) -> int:
    """Cached elements one token adds to one attention layer (the largest kind): 2 x kv_heads x
    head_dim, or the MLA latent."""
    sizes = [(spec.kv_lora_rank + spec.qk_rope_head_dim) if kind == "mla" else 2 * spec.num_key_value_heads * spec.head_dim
             for kind in spec.layer_types]
    return max(sizes, default=0)


def static_prefill_extra_bytes(spec: ModelSpec, *, batch_size: int, prompt_len: int, cache_len: int, compute_bytes: int, attention: str) -> int:
    """What a static cache adds to the prefill transients of `prefill_transient_bytes(prompt_len)`.

    Each layer's `StaticLayer.update` returns its whole preallocated buffer, so attention sees
    `cache_len` keys for `prompt_len` queries. With SDPA the mask is skipped: `_ignore_causal_mask_sdpa`
    (masking_utils.py) returns True for an empty cache (`q_offset == 0`) whose padding covers only
    the not-yet-written slots, and with no mask `use_gqa_in_sdpa` lets SDPA run GQA without
    `repeat_kv`: nothing extra. Eager attention (`eager_mask`, no skip) materializes scores,
    softmax and probabilities over `cache_len` keys, K/V repeated to every head over `cache_len`,
    and the additive mask batch x prompt x cache_len: the extra over a prompt-long cache.
    transformers 5.24 builds no cache_len x cache_len buffer (`sdpa_mask` makes at most
    [batch, 1, q_len, kv_len]); that one is gpt-fast's (`gpt_fast_causal_mask_bytes`)."""
    if attention != "eager" or cache_len <= prompt_len:
        return 0
    c = compute_bytes
    extra_keys = cache_len - prompt_len
    q = spec.num_attention_heads * spec.head_dim
    scores = batch_size * prompt_len * spec.num_attention_heads * extra_keys * eager_score_bytes(spec, c)
    repeated = batch_size * extra_keys * 2 * c * q
    mask = batch_size * prompt_len * extra_keys * c
    return scores + repeated + mask


def static_decode_mask_bytes(*, batch_size: int, cache_len: int) -> int:
    """The decoding mask with a static cache: `create_causal_mask` refuses the `is_causal` skip for a
    compileable cache at q_len 1, so `sdpa_mask` builds the bool padding mask padded to the cache
    (`prepare_padding_mask`) and its combination with the causal rule: 2 x batch x cache_len bytes."""
    return 2 * batch_size * cache_len


def gpt_fast_causal_mask_bytes(max_seq_len: int) -> int:
    """gpt-fast / torchao-style scripts' static-cache mask: `setup_caches` rounds the length up to a
    multiple of 8 and keeps `torch.tril(torch.ones(L, L, dtype=torch.bool))` (pytorch-labs/gpt-fast
    model.py, commit 8704152): L^2 bytes, 16 GiB at 131,072 tokens."""
    length = -(-max_seq_len // 8) * 8
    return length * length


def quantized_kv_nbits(kv_cache_precision: str | None) -> int | str:
    """The QuantizedCache backend a KV precision means: int4 (and the default) -> 4-bit group-wise
    (quanto or HQQ; transformers' default nbits=4), int8 -> 8-bit (HQQ only: quanto takes 2 or 4
    bits), fp8 -> the per-tensor "fp8" backend (`Fp8QuantizedLayer`)."""
    if kv_cache_precision in (None, "int4"):
        return 4
    if kv_cache_precision == "int8":
        return 8
    if kv_cache_precision == "fp8":
        return "fp8"
    raise ValueError(kv_cache_precision)


def grouped_quantized_bytes(num_elements: int, *, nbits: int, compute_bytes: int, group_size: int = QUANTIZED_CACHE_GROUP_SIZE) -> int:
    """Storage of `num_elements` K/V values quantized group-wise (quanto `quantize_weight`, HQQ
    `Quantizer.quantize`, as `QuantoQuantizedLayer` / `HQQQuantizedLayer._quantize` call them):
    packed nbits per value plus an affine scale and zero-point per group of `group_size`, both in
    the compute dtype (HQQ: `meta["compute_dtype"] = keys.dtype`; quanto's MaxOptimizer keeps the
    tensor's dtype). E.g. 4-bit, bf16, groups of 64: 0.5 + 4/64 = 0.5625 bytes per value."""
    return bytes_for_bits(num_elements, nbits) + -(-num_elements // group_size) * 2 * compute_bytes


def quantized_cache_bytes(spec: ModelSpec, *, batch_size: int, seq_len: int, generated_tokens: int, kv_cache_precision: str | None,
                          compute_bytes: int) -> int:
    """Resident `QuantizedCache` for `seq_len` tokens (cache_utils.py, transformers 5.24).

    Group-wise backends (`QuantizedLayer.update`): the prompt is quantized at once; each decoding
    step appends to a compute-dtype residual window and, when it would reach `residual_length`
    (128), re-quantizes the whole layer and empties it, so the residual holds at most
    min(127, generated - 1) tokens per layer. fp8 (`Fp8QuantizedLayer`): one byte per value and a
    fp32 scale per tensor (K and V of each layer), no residual."""
    layers = len(spec.layer_types)
    per_token = _cache_elements_per_token_per_layer(spec) * batch_size
    nbits = quantized_kv_nbits(kv_cache_precision)
    if nbits == "fp8":
        return layers * (per_token * seq_len + 2 * 4)
    residual = min(QUANTIZED_CACHE_RESIDUAL_LENGTH - 1, max(generated_tokens - 1, 0), seq_len)
    quantized = grouped_quantized_bytes(per_token * (seq_len - residual), nbits=nbits, compute_bytes=compute_bytes)
    return layers * (quantized + per_token * residual * compute_bytes)


def quantized_cache_decode_transient_bytes(spec: ModelSpec, *, batch_size: int, seq_len: int, kv_cache_precision: str | None,
                                           compute_bytes: int) -> int:
    """What one layer's cache update allocates on top of the resident cache during a decoding step.

    Group-wise (`QuantizedLayer.update`): the dequantized K and V (`_dequantize`, compute dtype) and
    the concatenation with the residual and the new token (`torch.cat`) are alive together and
    returned to attention: 2 x layer K/V at the compute dtype; on a flush step the re-quantized
    layer exists while the old one is still referenced (+1 quantized layer). The backends' own
    element-wise scratch inside quantize/dequantize is not counted (quanto and HQQ kernels do not
    run under the FakeTensor trace).
    fp8 (`Fp8QuantizedLayer.update`): the concatenated fp8 K and V replace the old ones, which the
    locals keep alive (+1 byte per value); `_dequantize` is `(q.float() * scale).to(dtype)`, so
    while V is dequantized the fp32 copy and the fp32 product (8 bytes per V value) sit next to the
    returned K (compute dtype): per layer value, 1 + c/2 + 4 bytes."""
    elements = _cache_elements_per_token_per_layer(spec) * batch_size * seq_len
    c = compute_bytes
    nbits = quantized_kv_nbits(kv_cache_precision)
    if nbits == "fp8":
        return elements + elements * c // 2 + 4 * elements
    return 2 * elements * c + grouped_quantized_bytes(elements, nbits=nbits, compute_bytes=c)


def quantized_cache_prefill_transient_bytes(spec: ModelSpec, *, batch_size: int, prompt_len: int, kv_cache_precision: str | None,
                                            compute_bytes: int) -> int:
    """What quantizing the prompt adds to `prefill_transient_bytes`: the K/V of the layer being
    computed in the compute dtype (returned to attention as they are, quantized for the cache),
    plus for fp8 `_quantize`'s fp32 copy and fp32 quotient of V (8 bytes per V value) while K is
    stored. They live during attention, next to its transients (hidden states, q, output: c(4h +
    2q) per token), not next to the MLP's; so only what exceeds the gap between the layer's largest
    transient and attention's counts (FakeTensor trace of a 2-layer Llama-3.2-3B, fp8 backend:
    prefill within 0.2%)."""
    tokens = batch_size * prompt_len
    elements = _cache_elements_per_token_per_layer(spec) * tokens
    cache_part = elements * compute_bytes + (4 * elements if quantized_kv_nbits(kv_cache_precision) == "fp8" else 0)
    c = compute_bytes
    attention_part = tokens * c * (4 * spec.hidden_size + 2 * spec.num_attention_heads * spec.head_dim)
    largest = prefill_transient_bytes(spec, batch_size=batch_size, seq_len=prompt_len, compute_bytes=c, attention="sdpa")
    return max(0, cache_part - (largest - attention_part))
