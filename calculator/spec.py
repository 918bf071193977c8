"""What the memory model needs to know about a model, read from its `config.json` as data.

`model_spec_from_config` turns a Hugging Face config dict into a frozen `ModelSpec`: the shapes
that drive every memory term (layers, heads, head_dim, KV layout per layer, experts) and an
inventory of the model's linear layers, so weights, quantization and LoRA adapters are counted
module by module, the way `accelerate estimate-memory` counts a meta-device model, but without
importing torch or running any repository code.

Parameter counts derived here are checked in tests against the exact counts of real checkpoints
(safetensors metadata), e.g. Llama-3.1-8B = 8,030,261,248.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any, Literal

from .bounds import MAX_PARAMS, MAX_POSITIONS, PLAUSIBLE_PARAMS, check_dimension, check_json_shape, is_whole_number, short_repr
from .errors import CalculatorError, MalformedConfigError, UnsupportedArchitectureError

AttentionKind = Literal["full", "sliding", "mla"]
ModuleRole = Literal["attention", "mlp", "expert", "router", "head", "other"]
ParamSource = Literal["safetensors", "catalog", "config", "inventory"]
# Which path described the architecture: the hand-written formulas of this module, or the
# meta-device inventory of transformers' own class (calculator/inventory.py).
CountedBy = Literal["analytic", "inventory"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LinearGroup:
    """`count` identical linear weights, e.g. `q_proj` in each of 32 layers.

    `active_count` is how many of them one token passes through (MoE: layers x experts per
    token); it equals `count` for dense modules. `is_nn_linear` is False for experts stored as
    fused 3-D parameters (transformers 5 MoE blocks). `lora_all_linear` is peft's own answer to
    whether `target_modules="all-linear"` adapts the group (None: decided by `role`), and
    `lora_rank_factor` the rank multiple peft gives it (2 for a fused gate_up projection:
    peft 0.21 utils/transformers_weight_conversion.py `_MOE_FUSED_TARGETS` + rank_pattern).
    """

    name: str
    in_features: int
    out_features: int
    count: int
    role: ModuleRole
    bias: bool = False
    active_count: int = -1
    is_nn_linear: bool = True
    lora_all_linear: bool | None = None
    lora_rank_factor: int = 1

    def __post_init__(self) -> None:
        if self.active_count < 0:
            object.__setattr__(self, "active_count", self.count)

    @property
    def weight_params(self) -> int:
        return self.count * self.in_features * self.out_features

    @property
    def bias_params(self) -> int:
        return self.count * self.out_features if self.bias else 0

    @property
    def num_params(self) -> int:
        return self.weight_params + self.bias_params

    @property
    def active_params(self) -> int:
        return self.active_count * (self.in_features * self.out_features + (self.out_features if self.bias else 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantizationConfig:
    """A checkpoint's `quantization_config`, reduced to what changes its size in memory."""

    method: Literal["gptq", "awq", "bnb-4bit", "bnb-int8", "fp8", "mxfp4", "compressed-tensors"]
    bits: int
    group_size: int = 128
    double_quant: bool = False
    desc_act: bool = False
    modules_not_converted: tuple[str, ...] = ()
    block_size: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """Architecture facts of one model, all counts in elements (not bytes)."""

    model_id: str
    model_type: str
    architecture: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    # Per decoder layer that holds a KV cache: "full", "sliding" (keeps `sliding_window` tokens) or
    # "mla" (DeepSeek latent cache). Encoder-only models have none.
    layer_types: tuple[AttentionKind, ...]
    sliding_window: int | None = None
    kv_lora_rank: int = 0
    q_lora_rank: int = 0  # MLA's query latent (q_a_proj -> q_a_layernorm -> q_b_proj); 0: one q_proj
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    num_moe_layers: int = 0
    num_shared_experts: int = 0
    # Bytes per element of the routing weights that scale the experts' outputs, when the router runs in fp32 apart from
    # the model's dtype (transformers 5.24 `DeepseekV3TopkRouter`: an fp32 weight, `F.linear(hidden.type(float32),
    # weight.type(float32))`); 0: the compute dtype.
    router_bytes: int = 0
    is_encoder_decoder: bool = False
    is_causal_lm: bool = True
    num_encoder_layers: int = 0
    tie_word_embeddings: bool = False
    # transformers has no SDPA path for some architectures (gpt-oss's attention sinks): "sdpa"
    # then falls back to eager attention, which materializes the seq x seq scores.
    supports_sdpa: bool = True
    checkpoint_dtype: str = "bf16"
    # The dense MLP as transformers builds it: `hidden_act` is the ACT2FN key its MLP applies (what
    # autograd saves depends on it, memory.ACTIVATIONS); `gated_mlp` act(gate) x up -> down (SwiGLU,
    # GeGLU) or a plain fc -> act -> fc; `layer_norm` when the layers' norms are torch's
    # nn.LayerNorm (a fused kernel saving its c-byte input) rather than an RMSNorm upcast to fp32.
    hidden_act: str = "silu"
    gated_mlp: bool = True
    layer_norm: bool = False
    # Logit soft-capping (`cap * tanh(x / cap)`, Gemma 2's config keys): on the final logits before
    # the loss, and on the attention scores (eager attention).
    final_logit_softcapping: float | None = None
    attn_logit_softcapping: float | None = None
    # DualFFN (higgs-audio): every layer has a text FFN and an audio FFN; tokens are routed between
    # them by a mask of audio placeholder ids (Workload.audio_token_share says how many).
    dual_ffn: bool = False
    linears: tuple[LinearGroup, ...] = ()
    embedding_params: int = 0
    # Norms, biases outside linears, attention sinks, codebooks: kept in the compute dtype.
    other_params: int = 0
    # Parameters of towers the text tokens never pass through (vision / audio encoders, the projector
    # feeding their features in; `calculator.inventory` tower != "text"). Part of `num_params` (weights),
    # but a text-token training step gives them no gradient, and torch 2.13 AdamW keeps no state for a
    # parameter whose `.grad` is None (torch/optim/adamw.py `_init_group` skips it).
    untouched_tower_params: int = 0
    # Buffers (`nn.Module.register_buffer`): no gradient, no optimizer state, but resident with the
    # weights. `buffer_elements` are floating buffers made in the model's dtype, which follow the
    # compute dtype (I-BERT's `weight_integer` copies of every linear and embedding: 76,038,352 bytes in
    # bf16 against 77,207,040 of parameters, IBertConfig() cut to 2 layers); `fixed_buffer_bytes` are
    # the ones in a dtype of their own (int64 `position_ids`, fp32 RoPE `inv_freq`). From the
    # inventory (`model.named_buffers()` on the meta model); 0 for the analytic families.
    buffer_elements: int = 0
    fixed_buffer_bytes: int = 0
    quantization: QuantizationConfig | None = None
    # Exact counts from the checkpoint (safetensors metadata or the catalog), when known.
    exact_num_params: int | None = None
    exact_weight_bytes: int | None = None
    param_source: ParamSource = "config"
    counted_by: CountedBy = "analytic"
    notes: tuple[str, ...] = ()
    raw_config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # A `calculator.profile.MemoryProfile` (trace-fitted activations / KV / state) for architectures
    # outside the analytic families; `estimate` uses it in place of the activation formulas.
    profile: Any = field(default=None, compare=False, repr=False)

    @property
    def config_num_params(self) -> int:
        """Parameters by config arithmetic (what `from_config` on the meta device would count)."""
        return sum(g.num_params for g in self.linears) + self.embedding_params + self.other_params

    @property
    def num_params(self) -> int:
        """Total parameters: the checkpoint's exact count when known, else config arithmetic."""
        return self.exact_num_params if self.exact_num_params is not None else self.config_num_params

    @property
    def text_trained_params(self) -> int:
        """Parameters a full fine-tune on text tokens gives a gradient (all but the untouched towers)."""
        return max(self.num_params - self.untouched_tower_params, 0)

    @property
    def active_params(self) -> int:
        """Parameters one token uses, counted as model cards do (embedding table included):
        routed experts per token + shared experts + everything dense (Mixtral: 12.9B of 46.7B)."""
        return sum(g.active_params for g in self.linears) + self.other_params + self.embedding_params

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def num_kv_layers(self) -> int:
        return len(self.layer_types)

    def with_exact_counts(self, *, num_params: int | None, weight_bytes: int | None, source: ParamSource) -> ModelSpec:
        return replace(self, exact_num_params=num_params, exact_weight_bytes=weight_bytes, param_source=source)


# --------------------------------------------------------------------------------------------
# Config reading helpers
# --------------------------------------------------------------------------------------------

# Nested text configs of multimodal / composite models (read as the language model).
_NESTED_TEXT_KEYS = ("text_config", "llm_config", "language_config", "thinker_config")

@cache
def _architecture_data() -> Mapping[str, Any]:
    """calculator/data/architectures.json: per model_type facts read from transformers' own config
    and model classes (generated by benchmarks/architecture_data.py, versions recorded inside)."""
    text = resources.files("calculator.data").joinpath("architectures.json").read_text(encoding="utf-8")
    return json.loads(text)


def architecture_facts(model_type: str) -> Mapping[str, Any]:
    """What transformers says about `model_type` (empty when it does not ship it)."""
    return _architecture_data()["model_types"].get(str(model_type), {})


# torch_dtype / dtype strings to our precision names.
_DTYPE_NAMES = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
}


def _get(cfg: Mapping[str, Any], *keys: str, default: Any = ..., model_id: str = "") -> Any:
    for key in keys:
        value = cfg.get(key)
        if value is not None:
            return value
    if default is ...:
        names = " / ".join(f"`{k}`" for k in keys)
        raise MalformedConfigError(
            f"config.json of {model_id or 'this model'} has no {names}; every "
            f"{cfg.get('model_type', 'model')} config needs it. Check the file or pass a local copy."
        )
    return default


def _int(cfg: Mapping[str, Any], *keys: str, default: Any = ..., model_id: str = "") -> int:
    """The first of `keys` the config sets, as a non-negative integer within its bound
    (`calculator.bounds.DIMENSION_BOUNDS`); `default` when none is set. NaN, 1e999, strings, lists
    and values above the bound are a MalformedConfigError that names the field."""
    key = next((k for k in keys if cfg.get(k) is not None), None)
    if key is None:
        return _get(cfg, *keys, default=default, model_id=model_id)
    value = cfg[key]
    where = f"config.json of {model_id or 'this model'}"
    if not is_whole_number(value) or value < 0:
        raise MalformedConfigError(f"{where}: `{key}` should be a non-negative integer, got {short_repr(value)}.")
    return check_dimension(key, int(value), where=where)


def checkpoint_dtype(cfg: Mapping[str, Any]) -> str:
    raw = cfg.get("dtype") or cfg.get("torch_dtype")
    if isinstance(raw, str):
        return _DTYPE_NAMES.get(raw.replace("torch.", ""), "bf16")
    return "fp32" if raw is None and cfg.get("model_type") in {"bert", "roberta", "t5", "gpt2", "opt", "gptj", "gpt_neox"} else "bf16"


def parse_quantization_config(cfg: Mapping[str, Any]) -> QuantizationConfig | None:
    """Read `quantization_config` of a pre-quantized checkpoint (GPTQ, AWQ, bnb, fp8, MXFP4)."""
    q = cfg.get("quantization_config")
    if q is None:
        return None
    if not isinstance(q, Mapping):
        raise MalformedConfigError(f"quantization_config in config.json is a JSON {type(q).__name__}, not an object: the checkpoint's config is broken.")
    method = str(q.get("quant_method", "")).lower()[:40]
    skip = _quant_skip_list(q)
    if method == "gptq":
        return QuantizationConfig(
            method="gptq",
            bits=_quant_int(q, "bits", default=4, low=1, high=16),
            group_size=_quant_int(q, "group_size", default=128, low=-1, high=MAX_QUANT_GROUP),
            desc_act=bool(q.get("desc_act", False)),
            modules_not_converted=skip,
        )
    if method == "awq":
        return QuantizationConfig(
            method="awq", bits=_quant_int(q, "bits", "w_bit", default=4, low=1, high=16),
            group_size=_quant_int(q, "group_size", "q_group_size", default=128, low=-1, high=MAX_QUANT_GROUP),
            modules_not_converted=skip,
        )
    if method == "bitsandbytes":
        if q.get("load_in_4bit"):
            return QuantizationConfig(
                method="bnb-4bit", bits=4, group_size=64,
                double_quant=bool(q.get("bnb_4bit_use_double_quant", False)), modules_not_converted=skip,
            )
        return QuantizationConfig(method="bnb-int8", bits=8, modules_not_converted=skip)
    if method in {"fp8", "fbgemm_fp8"}:
        block = q.get("weight_block_size")
        if block and not (isinstance(block, list) and len(block) == 2 and all(is_whole_number(b) and 1 <= b <= MAX_QUANT_GROUP for b in block)):
            raise MalformedConfigError(f"quantization_config: `weight_block_size` should be two positive whole numbers, got {short_repr(block)}.")
        return QuantizationConfig(
            method="fp8", bits=8, modules_not_converted=skip,
            block_size=(int(block[0]), int(block[1])) if block else None,
        )
    if method == "mxfp4":
        return QuantizationConfig(method="mxfp4", bits=4, group_size=32, modules_not_converted=skip)
    raise UnsupportedArchitectureError(
        f"quantization method {method or '(none given)'!r} in quantization_config is not supported "
        "yet (supported: gptq, awq, bitsandbytes, fp8, mxfp4). Use the unquantized base model id "
        "and pick the precision instead."
    )


# A quantization group or block spans at most one row of the widest weight (bounds.MAX_HIDDEN).
MAX_QUANT_GROUP = 131_072


def _quant_int(q: Mapping[str, Any], *keys: str, default: int, low: int, high: int) -> int:
    """A whole number of `quantization_config` within [low, high] (0 is never a group size)."""
    key = next((k for k in keys if q.get(k) is not None), None)
    if key is None:
        return default
    value = q[key]
    if not is_whole_number(value) or not low <= value <= high or value == 0:
        raise MalformedConfigError(
            f"quantization_config: `{key}` should be a whole number from {low} to {high:,} (not 0), got {short_repr(value)}."
        )
    return int(value)


def _quant_skip_list(q: Mapping[str, Any]) -> tuple[str, ...]:
    skip = q.get("modules_to_not_convert") or q.get("llm_int8_skip_modules") or ()
    if isinstance(skip, str):
        skip = [skip]
    if not isinstance(skip, list | tuple) or not all(isinstance(name, str) for name in skip):
        raise MalformedConfigError(f"quantization_config: `modules_to_not_convert` should be a list of module names, got {short_repr(skip)}.")
    return tuple(skip)


def _max_positions(cfg: Mapping[str, Any], default: int, model_id: str) -> int:
    """Longest context the model is configured for: `max_position_embeddings`, or the rope-scaled
    length original x factor when the config carries rope scaling (llama3, yarn, linear, dynamic)
    and states a smaller maximum (e.g. transformers' HiggsAudioV2Config default 2,048 with a llama3
    rope of factor 32 over 1,024)."""
    stated = _int(cfg, "max_position_embeddings", "n_positions", default=default, model_id=model_id)
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    if isinstance(rope, Mapping):
        factor = rope.get("factor")
        original = rope.get("original_max_position_embeddings")
        if isinstance(factor, int | float) and not isinstance(factor, bool) and math.isfinite(factor) and is_whole_number(original) and factor > 1:
            scaled = min(int(original * factor), MAX_POSITIONS.limit + 1)
            return max(stated, check_dimension("max_position_embeddings", scaled, where=f"config.json of {model_id}: rope_scaling"))
    return stated


def _text_config(cfg: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[str]]:
    notes: list[str] = []
    for key in _NESTED_TEXT_KEYS:
        nested = cfg.get(key)
        if isinstance(nested, Mapping) and nested:
            merged = dict(nested)
            for inherit in ("tie_word_embeddings", "torch_dtype", "dtype", "quantization_config"):
                if inherit not in merged and inherit in cfg:
                    merged[inherit] = cfg[inherit]
            if cfg.get("vision_config") is not None or cfg.get("audio_config") is not None:
                notes.append(
                    f"Memory is modelled for the language model in `{key}`; vision/audio towers "
                    "are counted only through the checkpoint's exact parameter count."
                )
            return merged, notes
    return cfg, notes


# --------------------------------------------------------------------------------------------
# Family builders
# --------------------------------------------------------------------------------------------

# Types whose q_norm / k_norm are per head_dim (added to the norm count separately).
_QK_NORM_TYPES = frozenset({"qwen3", "qwen3_moe", "gemma3_text", "gemma3", "olmo2"})

_LLAMA_LIKE = {
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "gemma", "gemma2",
    "gemma3_text", "gemma3", "phi3", "olmo", "olmo2", "granite", "smollm3", "gpt_oss", "higgs_audio_v2",
    "higgs_audio", "cohere", "starcoder2", "stablelm", "internlm2", "yi", "glm", "exaone", "ministral",
    "mistral3", "llama4_text", "helium", "hunyuan_v1_dense",
}


# Config keys naming the MLP's activation, one per config class (transformers 5.24: `ACT2FN[config.
# hidden_activation]` in Gemma2/3, `hidden_act` in Llama/Gemma/NeoX/BERT, `activation_function` in
# GPT-2/GPT-J/OPT/BigCode, `dense_act_fn` in T5).
_ACTIVATION_KEYS = ("hidden_activation", "hidden_act", "activation_function", "dense_act_fn")


def mlp_activation(cfg: Mapping[str, Any], default: str = "silu") -> str:
    """The activation transformers' MLP applies for this config: the config's own key, else the
    config class's constructor default (architectures.json `defaults`)."""
    facts = architecture_facts(str(cfg.get("model_type", ""))).get("defaults", {})
    for source in (cfg, facts):
        for key in _ACTIVATION_KEYS:
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return default


def _positive(value: Any) -> float | None:
    """A config number that switches a feature on when positive (None / 0 / false: off)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


def _torch_layer_norm(model_type: str, default: bool = False) -> bool:
    """Whether the decoder layers' norms are torch's nn.LayerNorm (architectures.json `norm_class`)."""
    cls = architecture_facts(model_type).get("norm_class")
    return default if cls is None else cls == "LayerNorm"


def _qkv_linears(model_type: str, *, h: int, q_dim: int, kv_dim: int, layers: int, bias: bool,
                 names: tuple[str, str, str] = ("q_proj", "k_proj", "v_proj")) -> list[LinearGroup]:
    """The q/k/v projections as transformers builds them: one fused `qkv_proj` (h -> q + 2 kv) where
    its attention block has two linear weights (architectures.json `attention_linears`: GPT-2
    c_attn, GPT-NeoX query_key_value, Phi-3 qkv_proj), else three. Parameters are the same; LoRA
    places one adapter on the fused one (r x (h + q + 2kv)) and it saves one copy of its input."""
    if architecture_facts(model_type).get("attention_linears") == 2:
        return [LinearGroup(name="qkv_proj", in_features=h, out_features=q_dim + 2 * kv_dim, count=layers, role="attention", bias=bias)]
    return [LinearGroup(name=names[0], in_features=h, out_features=q_dim, count=layers, role="attention", bias=bias),
            LinearGroup(name=names[1], in_features=h, out_features=kv_dim, count=layers, role="attention", bias=bias),
            LinearGroup(name=names[2], in_features=h, out_features=kv_dim, count=layers, role="attention", bias=bias)]


def _layer_types(cfg: Mapping[str, Any], num_layers: int) -> tuple[AttentionKind, ...]:
    """Which layers keep a full cache and which a sliding window.

    Explicit `layer_types` (Gemma 2/3, gpt-oss, Qwen3 hybrids) wins; otherwise Mistral-style
    `sliding_window` applies to every layer, Qwen2-style `use_sliding_window` to layers from
    `max_window_layers` on (transformers `Qwen2Config`).
    """
    window = cfg.get("sliding_window")
    explicit = cfg.get("layer_types")
    if isinstance(explicit, list) and len(explicit) == num_layers:
        return tuple("sliding" if "sliding" in str(t) else "full" for t in explicit)
    if not window:
        return ("full",) * num_layers
    if cfg.get("model_type") in {"qwen2", "qwen3", "qwen2_moe", "qwen3_moe"}:
        if not cfg.get("use_sliding_window", False):
            return ("full",) * num_layers
        first_sliding = _int(cfg, "max_window_layers", default=num_layers, model_id=str(cfg.get("_name_or_path", "")))
        return tuple("sliding" if i >= first_sliding else "full" for i in range(num_layers))
    if cfg.get("model_type") == "gemma2":
        return tuple("sliding" if i % 2 == 0 else "full" for i in range(num_layers))
    pattern = cfg.get("sliding_window_pattern") or cfg.get("_sliding_window_pattern")
    if isinstance(pattern, int) and pattern > 0:
        # Gemma 3: every `pattern`-th layer is global (transformers Gemma3TextConfig.layer_types).
        return tuple("sliding" if (i + 1) % pattern else "full" for i in range(num_layers))
    return ("sliding",) * num_layers


def _layer_types_from_names(names: Any, num_layers: int, cfg: Mapping[str, Any]) -> tuple[AttentionKind, ...]:
    """KV-cache layers of any architecture from transformers' per-layer type names.

    `layer_types` (or jamba's `layers_block_type`) names each layer: attention kinds keep a cache
    ("full_attention", "attention", "global" -> full; "sliding_attention", "chunked_attention" ->
    sliding); recurrent kinds ("mamba", "linear_attention", "conv", "recurrent") keep a fixed-size
    state instead, sized elsewhere, and no K/V. Without names: no attention heads -> no cache, else
    the rules of `_layer_types`.
    """
    if isinstance(names, list | tuple) and names:
        kinds: list[AttentionKind] = []
        for raw in names:
            t = str(raw).lower()
            if "sliding" in t or "chunk" in t or t == "local":
                kinds.append("sliding")
            elif t in ("full_attention", "attention", "full", "global", "global_attention", "hybrid", "self_attention"):
                kinds.append("full")
        return tuple(kinds)
    if not cfg.get("num_attention_heads"):
        return ()
    return _layer_types(cfg, num_layers)


def _llama_like(model_id: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """Decoder-only transformers of the Llama family (RMSNorm, rotary, gated MLP), incl. MoE."""
    model_type = cfg["model_type"]
    h = _int(cfg, "hidden_size", model_id=model_id)
    layers = _int(cfg, "num_hidden_layers", model_id=model_id)
    heads = _int(cfg, "num_attention_heads", model_id=model_id)
    kv_heads = _int(cfg, "num_key_value_heads", default=heads, model_id=model_id)
    head_dim = _int(cfg, "head_dim", default=h // heads if heads else 0, model_id=model_id)
    inter = _int(cfg, "intermediate_size", model_id=model_id)
    vocab = _int(cfg, "vocab_size", model_id=model_id)
    if not (h and layers and heads and vocab):
        raise MalformedConfigError(f"config.json of {model_id}: hidden_size, num_hidden_layers, num_attention_heads and vocab_size must be positive.")
    if heads % max(kv_heads, 1):
        raise MalformedConfigError(
            f"config.json of {model_id}: num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv_heads})."
        )
    # Qwen2 has q/k/v biases without saying so in the config (transformers Qwen2Attention).
    facts = architecture_facts(model_type)
    # Starcoder2-style `use_bias` puts a bias on every projection (transformers Starcoder2Attention/MLP).
    use_bias = bool(cfg.get("use_bias", False))
    qkv_bias = bool(cfg.get("attention_bias", model_type in {"qwen2", "qwen2_moe"})) or use_bias
    o_bias = (bool(cfg.get("attention_bias", False)) and model_type in {"gpt_oss", "llama", "granite", "olmo"}) or use_bias
    mlp_bias = bool(cfg.get("mlp_bias", False)) or use_bias
    # The MLP's shape as transformers builds it (architectures.json `mlp_matrices`: weight elements
    # in units of hidden x intermediate): 3 = gated gate/up/down (SwiGLU), 2 = plain c_fc/c_proj.
    gated_mlp = facts.get("mlp_matrices") != 2
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    linears: list[LinearGroup] = [
        *_qkv_linears(model_type, h=h, q_dim=q_dim, kv_dim=kv_dim, layers=layers, bias=qkv_bias),
        LinearGroup(name="o_proj", in_features=q_dim, out_features=h, count=layers, role="attention", bias=o_bias),
    ]
    # Phi-3 / GLM fuse gate and up into one linear (architectures.json: 2 MLP linears holding 3 matrices).
    fused_gate_up = gated_mlp and facts.get("mlp_linears") == 2
    norms_per_layer = 2
    if model_type in {"gemma2", "gemma3_text", "gemma3"}:
        norms_per_layer = 4  # pre/post attention and pre/post feed-forward norms
    # Norm elements per hidden unit as transformers builds them (architectures.json): LayerNorm
    # with bias 2 per norm (Starcoder2, StableLM), OLMo's non-parametric LayerNorm 0.
    final_norm = int(facts.get("final_norm_params", 1))
    if "norm_params_per_layer" in facts and model_type not in _QK_NORM_TYPES | _ANALYTIC_BY_DESIGN:
        norms_per_layer = int(facts["norm_params_per_layer"])
    other = layers * norms_per_layer * h + final_norm * h  # + final norm
    if model_type in _QK_NORM_TYPES:
        other += layers * 2 * head_dim  # q_norm and k_norm (per head_dim)
    if model_type == "gpt_oss":
        other += layers * heads  # attention sinks, one per head

    # Mixture of experts: which layers are MoE and their expert shape.
    num_experts = _int(cfg, "num_local_experts", "num_experts", "n_routed_experts", default=0, model_id=model_id)
    top_k = _int(cfg, "num_experts_per_tok", "experts_per_token", default=0, model_id=model_id)
    moe_inter = _int(cfg, "moe_intermediate_size", default=inter, model_id=model_id) if num_experts else 0
    shared_experts = 0
    moe_layers = 0
    if num_experts:
        sparse_step = int(cfg.get("decoder_sparse_step", 1) or 1)
        mlp_only = set(cfg.get("mlp_only_layers") or [])
        moe_layers = sum(1 for i in range(layers) if i not in mlp_only and (i + 1) % sparse_step == 0)
        expert_bias = model_type == "gpt_oss"
        linears += [
            LinearGroup(name="experts.gate_up_proj", in_features=h, out_features=2 * moe_inter, count=moe_layers * num_experts,
                        active_count=moe_layers * top_k, role="expert", bias=expert_bias, is_nn_linear=False),
            LinearGroup(name="experts.down_proj", in_features=moe_inter, out_features=h, count=moe_layers * num_experts,
                        active_count=moe_layers * top_k, role="expert", bias=expert_bias, is_nn_linear=False),
            LinearGroup(name="router", in_features=h, out_features=num_experts, count=moe_layers, role="router",
                        bias=model_type == "gpt_oss"),
        ]
        if model_type == "qwen2_moe":
            shared_inter = _int(cfg, "shared_expert_intermediate_size", model_id=model_id)
            shared_experts = 1
            linears += [
                LinearGroup(name="shared_expert.gate_proj", in_features=h, out_features=shared_inter, count=moe_layers, role="mlp"),
                LinearGroup(name="shared_expert.up_proj", in_features=h, out_features=shared_inter, count=moe_layers, role="mlp"),
                LinearGroup(name="shared_expert.down_proj", in_features=shared_inter, out_features=h, count=moe_layers, role="mlp"),
                LinearGroup(name="shared_expert_gate", in_features=h, out_features=1, count=moe_layers, role="router"),
            ]
    dense_layers = layers - moe_layers
    ffn_copies = 2 if model_type in {"higgs_audio_v2", "higgs_audio"} else 1  # DualFFN: text + audio MLP
    if dense_layers:
        for copy in range(ffn_copies):
            prefix = "" if copy == 0 else "audio_"
            if not gated_mlp:
                linears += [
                    LinearGroup(name=f"{prefix}mlp.c_fc", in_features=h, out_features=inter, count=dense_layers, role="mlp", bias=mlp_bias),
                    LinearGroup(name=f"{prefix}mlp.c_proj", in_features=inter, out_features=h, count=dense_layers, role="mlp", bias=mlp_bias),
                ]
                continue
            if fused_gate_up:
                linears.append(LinearGroup(name=f"{prefix}mlp.gate_up_proj", in_features=h, out_features=2 * inter, count=dense_layers,
                                           role="mlp", bias=mlp_bias))
            else:
                linears += [
                    LinearGroup(name=f"{prefix}mlp.gate_proj", in_features=h, out_features=inter, count=dense_layers, role="mlp", bias=mlp_bias),
                    LinearGroup(name=f"{prefix}mlp.up_proj", in_features=h, out_features=inter, count=dense_layers, role="mlp", bias=mlp_bias),
                ]
            linears.append(LinearGroup(name=f"{prefix}mlp.down_proj", in_features=inter, out_features=h, count=dense_layers, role="mlp",
                                       bias=mlp_bias))
    if ffn_copies == 2:
        other += layers * 2 * h  # the audio FFN's own pre/post norms

    tie = bool(cfg.get("tie_word_embeddings", facts.get("tie_word_embeddings", False)))
    embedding = vocab * h
    notes: list[str] = []
    if model_type in {"higgs_audio_v2", "higgs_audio"}:
        codebooks = _int(cfg, "num_codebooks", default=8, model_id=model_id)
        codebook_size = _int(cfg, "codebook_size", default=1024, model_id=model_id)
        # Audio codebook embeddings (codebook_size + stream BOS/EOS per codebook) and audio LM head.
        embedding += codebooks * (codebook_size + 2) * h
        linears.append(LinearGroup(name="audio_lm_head", in_features=h, out_features=codebooks * (codebook_size + 2), count=1, role="head"))
        notes.append("DualFFN: every layer holds a text MLP and an audio MLP; a token uses one of them "
                     "(audio_token_share sets how many prompt tokens are audio; generated tokens are audio).")
    if not tie:
        linears.append(LinearGroup(name="lm_head", in_features=h, out_features=vocab, count=1, role="head"))

    window = cfg.get("sliding_window")
    return ModelSpec(
        model_id=model_id,
        model_type=model_type,
        architecture=(cfg.get("architectures") or [model_type])[0],
        hidden_size=h,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=inter,
        vocab_size=vocab,
        max_position_embeddings=_max_positions(cfg, 4096, model_id),
        layer_types=_layer_types(cfg, layers),
        sliding_window=int(window) if window else None,
        num_experts=num_experts,
        num_experts_per_tok=top_k,
        moe_intermediate_size=moe_inter,
        num_moe_layers=moe_layers,
        num_shared_experts=shared_experts,
        tie_word_embeddings=tie,
        # transformers runs eager attention where the class has no SDPA path (gpt-oss, gemma2):
        # read from a default build (architectures.json `supports_sdpa`).
        supports_sdpa=bool(facts.get("supports_sdpa", True)),
        checkpoint_dtype=checkpoint_dtype(cfg),
        hidden_act=mlp_activation(cfg),
        gated_mlp=gated_mlp,
        final_logit_softcapping=_positive(cfg.get("final_logit_softcapping")),
        attn_logit_softcapping=_positive(cfg.get("attn_logit_softcapping")),
        layer_norm=_torch_layer_norm(model_type),
        dual_ffn=ffn_copies == 2,
        linears=tuple(linears),
        embedding_params=embedding,
        other_params=other,
        notes=tuple(notes),
    )


def _deepseek(model_id: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """DeepSeek-V2/V3: multi-head latent attention (MLA) and fine-grained MoE with shared experts.

    MLA projections (DeepSeek-V2 paper, arXiv:2405.04434, section 2.1): q is down-projected to
    `q_lora_rank` then up to heads x (qk_nope + qk_rope); KV is compressed to `kv_lora_rank` plus a
    shared rotary key of `qk_rope_head_dim`, which is all the cache keeps per token and layer.
    """
    h = _int(cfg, "hidden_size", model_id=model_id)
    layers = _int(cfg, "num_hidden_layers", model_id=model_id)
    heads = _int(cfg, "num_attention_heads", model_id=model_id)
    vocab = _int(cfg, "vocab_size", model_id=model_id)
    inter = _int(cfg, "intermediate_size", model_id=model_id)
    q_lora = _int(cfg, "q_lora_rank", default=0, model_id=model_id)
    kv_lora = _int(cfg, "kv_lora_rank", model_id=model_id)
    nope = _int(cfg, "qk_nope_head_dim", model_id=model_id)
    rope = _int(cfg, "qk_rope_head_dim", model_id=model_id)
    v_dim = _int(cfg, "v_head_dim", model_id=model_id)
    n_experts = _int(cfg, "n_routed_experts", default=0, model_id=model_id)
    top_k = _int(cfg, "num_experts_per_tok", default=0, model_id=model_id)
    moe_inter = _int(cfg, "moe_intermediate_size", default=inter, model_id=model_id)
    n_shared = _int(cfg, "n_shared_experts", default=0, model_id=model_id)
    first_dense = _int(cfg, "first_k_dense_replace", default=0, model_id=model_id)
    freq = _int(cfg, "moe_layer_freq", default=1, model_id=model_id) or 1
    moe_layers = sum(1 for i in range(layers) if n_experts and i >= first_dense and i % freq == 0)
    dense_layers = layers - moe_layers
    qk_head = nope + rope
    linears: list[LinearGroup] = []
    if q_lora:
        linears += [
            LinearGroup(name="q_a_proj", in_features=h, out_features=q_lora, count=layers, role="attention"),
            LinearGroup(name="q_b_proj", in_features=q_lora, out_features=heads * qk_head, count=layers, role="attention"),
        ]
    else:
        linears.append(LinearGroup(name="q_proj", in_features=h, out_features=heads * qk_head, count=layers, role="attention"))
    linears += [
        LinearGroup(name="kv_a_proj_with_mqa", in_features=h, out_features=kv_lora + rope, count=layers, role="attention"),
        LinearGroup(name="kv_b_proj", in_features=kv_lora, out_features=heads * (nope + v_dim), count=layers, role="attention"),
        LinearGroup(name="o_proj", in_features=heads * v_dim, out_features=h, count=layers, role="attention"),
        LinearGroup(name="mlp.gate_proj", in_features=h, out_features=inter, count=dense_layers, role="mlp"),
        LinearGroup(name="mlp.up_proj", in_features=h, out_features=inter, count=dense_layers, role="mlp"),
        LinearGroup(name="mlp.down_proj", in_features=inter, out_features=h, count=dense_layers, role="mlp"),
    ]
    if moe_layers:
        linears += [
            LinearGroup(name="experts.gate_up_proj", in_features=h, out_features=2 * moe_inter, count=moe_layers * n_experts,
                        active_count=moe_layers * top_k, role="expert", is_nn_linear=False),
            LinearGroup(name="experts.down_proj", in_features=moe_inter, out_features=h, count=moe_layers * n_experts,
                        active_count=moe_layers * top_k, role="expert", is_nn_linear=False),
            LinearGroup(name="router", in_features=h, out_features=n_experts, count=moe_layers, role="router"),
        ]
        if n_shared:
            shared = n_shared * moe_inter
            linears += [
                LinearGroup(name="shared_experts.gate_proj", in_features=h, out_features=shared, count=moe_layers, role="mlp"),
                LinearGroup(name="shared_experts.up_proj", in_features=h, out_features=shared, count=moe_layers, role="mlp"),
                LinearGroup(name="shared_experts.down_proj", in_features=shared, out_features=h, count=moe_layers, role="mlp"),
            ]
    tie = bool(cfg.get("tie_word_embeddings", architecture_facts(cfg["model_type"]).get("tie_word_embeddings", False)))
    if not tie:
        linears.append(LinearGroup(name="lm_head", in_features=h, out_features=vocab, count=1, role="head"))
    # Norms: input + post-attention (h each), q_a_layernorm (q_lora), kv_a_layernorm (kv_lora); final
    # norm; router score-correction bias (n_experts per MoE layer, V3).
    other = layers * (2 * h + q_lora + kv_lora) + h + moe_layers * n_experts
    notes = []
    mtp = _int(cfg, "num_nextn_predict_layers", default=0, model_id=model_id)
    if mtp:
        notes.append(f"The checkpoint also ships {mtp} multi-token-prediction layer(s), which transformers does not load.")
    return ModelSpec(
        model_id=model_id, model_type=cfg["model_type"], architecture=(cfg.get("architectures") or ["DeepseekV3"])[0],
        hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        head_dim=qk_head, intermediate_size=inter, vocab_size=vocab,
        max_position_embeddings=_max_positions(cfg, 4096, model_id),
        layer_types=("mla",) * layers, kv_lora_rank=kv_lora, q_lora_rank=q_lora, qk_rope_head_dim=rope, v_head_dim=v_dim,
        num_experts=n_experts, num_experts_per_tok=top_k, moe_intermediate_size=moe_inter,
        num_moe_layers=moe_layers, num_shared_experts=n_shared, tie_word_embeddings=tie,
        # DeepseekV2/V3TopkRouter (transformers 5.24): fp32 weight and logits, so fp32 routing weights.
        router_bytes=4 if moe_layers else 0,
        checkpoint_dtype=checkpoint_dtype(cfg), linears=tuple(linears), embedding_params=vocab * h,
        other_params=other, notes=tuple(notes),
    )


def _bert(model_id: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """BERT/RoBERTa encoders (`BertModel` with pooler, as `AutoModel` loads it).

    bert-base-uncased: 109,482,240 parameters (checked against `BertModel(config)` in tests).
    """
    h = _int(cfg, "hidden_size", model_id=model_id)
    layers = _int(cfg, "num_hidden_layers", model_id=model_id)
    heads = _int(cfg, "num_attention_heads", model_id=model_id)
    inter = _int(cfg, "intermediate_size", model_id=model_id)
    vocab = _int(cfg, "vocab_size", model_id=model_id)
    max_pos = _int(cfg, "max_position_embeddings", default=512, model_id=model_id)
    type_vocab = _int(cfg, "type_vocab_size", default=2, model_id=model_id)
    linears = (
        LinearGroup(name="query", in_features=h, out_features=h, count=layers, role="attention", bias=True),
        LinearGroup(name="key", in_features=h, out_features=h, count=layers, role="attention", bias=True),
        LinearGroup(name="value", in_features=h, out_features=h, count=layers, role="attention", bias=True),
        LinearGroup(name="attention.output.dense", in_features=h, out_features=h, count=layers, role="attention", bias=True),
        LinearGroup(name="intermediate.dense", in_features=h, out_features=inter, count=layers, role="mlp", bias=True),
        LinearGroup(name="output.dense", in_features=inter, out_features=h, count=layers, role="mlp", bias=True),
        LinearGroup(name="pooler.dense", in_features=h, out_features=h, count=1, role="head", bias=True),
    )
    # LayerNorm weight+bias: 2 per layer + embeddings LayerNorm.
    other = layers * 2 * 2 * h + 2 * h
    return ModelSpec(
        model_id=model_id, model_type=cfg["model_type"], architecture=(cfg.get("architectures") or ["BertModel"])[0],
        hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        head_dim=h // heads, intermediate_size=inter, vocab_size=vocab, max_position_embeddings=max_pos,
        layer_types=(), is_causal_lm=False, tie_word_embeddings=True, checkpoint_dtype=checkpoint_dtype(cfg),
        hidden_act=mlp_activation(cfg, "gelu"), gated_mlp=False, layer_norm=True,
        linears=linears, embedding_params=(vocab + max_pos + type_vocab) * h, other_params=other,
        notes=("Encoder-only: no KV cache and no generation; inference is one forward pass.",),
    )


def _t5(model_id: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """T5-style encoder-decoder (relative position buckets, no biases, gated-gelu in v1.1)."""
    d = _int(cfg, "d_model", model_id=model_id)
    d_kv = _int(cfg, "d_kv", model_id=model_id)
    heads = _int(cfg, "num_heads", model_id=model_id)
    d_ff = _int(cfg, "d_ff", model_id=model_id)
    enc_layers = _int(cfg, "num_layers", model_id=model_id)
    dec_layers = _int(cfg, "num_decoder_layers", default=enc_layers, model_id=model_id)
    vocab = _int(cfg, "vocab_size", model_id=model_id)
    buckets = _int(cfg, "relative_attention_num_buckets", default=32, model_id=model_id)
    gated = "gated" in str(cfg.get("feed_forward_proj", "relu"))
    inner = heads * d_kv
    linears = [
        # Encoder self-attention + FFN.
        LinearGroup(name="encoder.q", in_features=d, out_features=inner, count=enc_layers, role="attention"),
        LinearGroup(name="encoder.k", in_features=d, out_features=inner, count=enc_layers, role="attention"),
        LinearGroup(name="encoder.v", in_features=d, out_features=inner, count=enc_layers, role="attention"),
        LinearGroup(name="encoder.o", in_features=inner, out_features=d, count=enc_layers, role="attention"),
        # Decoder self-attention and cross-attention (2 attention blocks per layer).
        LinearGroup(name="decoder.q", in_features=d, out_features=inner, count=2 * dec_layers, role="attention"),
        LinearGroup(name="decoder.k", in_features=d, out_features=inner, count=2 * dec_layers, role="attention"),
        LinearGroup(name="decoder.v", in_features=d, out_features=inner, count=2 * dec_layers, role="attention"),
        LinearGroup(name="decoder.o", in_features=inner, out_features=d, count=2 * dec_layers, role="attention"),
        LinearGroup(name="wi", in_features=d, out_features=d_ff, count=(enc_layers + dec_layers) * (2 if gated else 1), role="mlp"),
        LinearGroup(name="wo", in_features=d_ff, out_features=d, count=enc_layers + dec_layers, role="mlp"),
    ]
    tie = bool(cfg.get("tie_word_embeddings", architecture_facts(cfg["model_type"]).get("tie_word_embeddings", True)))
    if not tie:
        linears.append(LinearGroup(name="lm_head", in_features=d, out_features=vocab, count=1, role="head"))
    # Layer norms (weight only): 2 per encoder layer, 3 per decoder layer, 2 final; relative
    # attention bias tables in the first layer of each stack.
    other = (2 * enc_layers + 3 * dec_layers + 2) * d + 2 * buckets * heads
    return ModelSpec(
        model_id=model_id, model_type=cfg["model_type"], architecture=(cfg.get("architectures") or ["T5"])[0],
        hidden_size=d, num_hidden_layers=dec_layers, num_attention_heads=heads, num_key_value_heads=heads,
        head_dim=d_kv, intermediate_size=d_ff * (2 if gated else 1), vocab_size=vocab,
        max_position_embeddings=_int(cfg, "n_positions", default=512, model_id=model_id),
        # Decoder self-attention caches; cross-attention caches the encoder output once per layer
        # (counted by the KV formula through `num_encoder_layers`).
        layer_types=("full",) * dec_layers, is_encoder_decoder=True, num_encoder_layers=enc_layers,
        tie_word_embeddings=tie, checkpoint_dtype=checkpoint_dtype(cfg), linears=tuple(linears),
        embedding_params=vocab * d, other_params=other,
        notes=("Encoder-decoder: the decoder caches self-attention K/V and the encoder's cross-attention K/V.",),
    )


def _gpt_classic(model_id: str, cfg: Mapping[str, Any]) -> ModelSpec:
    """GPT-2, GPT-BigCode (StarCoder/octocoder, multi-query), GPT-J, GPT-NeoX, OPT: LayerNorm with
    bias, plain (non-gated) GELU/ReLU MLP, learned or rotary positions."""
    mt = cfg["model_type"]
    h = _int(cfg, "n_embd", "hidden_size", "d_model", model_id=model_id)
    layers = _int(cfg, "n_layer", "num_hidden_layers", model_id=model_id)
    heads = _int(cfg, "n_head", "num_attention_heads", model_id=model_id)
    inter = _int(cfg, "n_inner", "intermediate_size", "ffn_dim", default=4 * h, model_id=model_id)
    vocab = _int(cfg, "vocab_size", model_id=model_id)
    max_pos = _int(cfg, "n_positions", "max_position_embeddings", default=2048, model_id=model_id)
    head_dim = h // heads
    kv_heads = 1 if (mt == "gpt_bigcode" and cfg.get("multi_query", True)) else heads
    kv_dim = kv_heads * head_dim
    bias = mt != "gptj"  # GPT-J attention projections have no bias; its MLP does
    linears = [
        *_qkv_linears(mt, h=h, q_dim=h, kv_dim=kv_dim, layers=layers, bias=bias),
        LinearGroup(name="out_proj", in_features=h, out_features=h, count=layers, role="attention", bias=bias),
        LinearGroup(name="fc_in", in_features=h, out_features=inter, count=layers, role="mlp", bias=True),
        LinearGroup(name="fc_out", in_features=inter, out_features=h, count=layers, role="mlp", bias=True),
    ]
    # LayerNorm (weight+bias): GPT-J has one per layer (parallel attention/MLP), others two; + final.
    norms = 1 if mt == "gptj" else 2
    other = layers * norms * 2 * h + 2 * h
    embedding = vocab * h
    if mt in {"gpt2", "gpt_bigcode"}:
        embedding += max_pos * h  # learned absolute positions
    if mt == "opt":
        proj = _int(cfg, "word_embed_proj_dim", default=h, model_id=model_id)
        embedding = vocab * proj + (max_pos + 2) * h  # OPT offsets learned positions by 2
        if proj != h:
            linears += [
                LinearGroup(name="project_in", in_features=proj, out_features=h, count=1, role="other"),
                LinearGroup(name="project_out", in_features=h, out_features=proj, count=1, role="other"),
            ]
            other -= 2 * h  # opt-350m applies no final LayerNorm (do_layer_norm_before=False)
    tie = bool(cfg.get("tie_word_embeddings", architecture_facts(mt).get("tie_word_embeddings", mt != "gptj")))
    if not tie:
        linears.append(LinearGroup(name="lm_head", in_features=h, out_features=vocab, count=1, role="head", bias=mt == "gptj"))
    return ModelSpec(
        model_id=model_id, model_type=mt, architecture=(cfg.get("architectures") or [mt])[0],
        hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        head_dim=head_dim, intermediate_size=inter, vocab_size=vocab, max_position_embeddings=max_pos,
        layer_types=("full",) * layers, tie_word_embeddings=tie, checkpoint_dtype=checkpoint_dtype(cfg),
        hidden_act=mlp_activation(cfg, "gelu_new"), gated_mlp=False, layer_norm=True,
        linears=tuple(linears), embedding_params=embedding, other_params=other,
    )


_BUILDERS = {
    **dict.fromkeys(_LLAMA_LIKE, _llama_like),
    **dict.fromkeys({"deepseek_v2", "deepseek_v3", "kimi_k2"}, _deepseek),
    **dict.fromkeys({"bert", "roberta", "xlm-roberta", "camembert", "electra"}, _bert),
    **dict.fromkeys({"t5", "mt5", "umt5"}, _t5),
    **dict.fromkeys({"gpt2", "gpt_bigcode", "gptj", "gpt_neox", "opt"}, _gpt_classic),
}

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(_BUILDERS))


def model_spec_from_config(model_id: str, config: Mapping[str, Any], *, use_inventory: bool = True) -> ModelSpec:
    """Build a `ModelSpec` from a parsed `config.json`. Never imports or runs repository code.

    The analytic builders of this module answer the families they know, instantly. Any other
    `model_type` is counted from transformers' own class on the meta device
    (`calculator.inventory`, needs torch + transformers, or an inventory shipped for that config)
    unless `use_inventory=False`. Raises `UnsupportedArchitectureError` when neither path knows the
    architecture (fail closed: a wrong formula would give a confident wrong number) and
    `MalformedConfigError` when a required field is missing or not a number.
    """
    if not isinstance(config, Mapping):
        raise MalformedConfigError(f"config.json of {model_id} is not a JSON object.")
    check_json_shape(config, what=f"config.json of {model_id}")
    _check_field_types(config, model_id)
    top_type = config.get("model_type")
    text_cfg, notes = _text_config(config)
    model_type = text_cfg.get("model_type") or top_type
    if not model_type:
        raise MalformedConfigError(f"config.json of {model_id} has no `model_type`, so its architecture cannot be read.")
    if model_type == "gemma3" and "text_config" not in config:
        model_type = "gemma3_text"
    builder = _BUILDERS.get(str(model_type))
    if builder is None and use_inventory:
        from .inventory import spec_from_inventory
        from .profile import with_cached_profile  # a trace profile made before or shipped (calculator/profile.py)

        return with_cached_profile(_check_totals(spec_from_inventory(model_id, config), dims=False))
    defer = _inventory_counts_better(config, str(model_type)) if builder is not None and use_inventory else None
    if defer is not None:
        from .inventory import spec_from_inventory
        from .profile import with_cached_profile

        try:  # without torch, only an inventory shipped for this config answers; else it raises, caught here
            return with_cached_profile(_check_totals(spec_from_inventory(model_id, config), dims=False))
        except UnsupportedArchitectureError:
            pass  # transformers cannot build it (or is not installed): the analytic answer stands, with the note below
        notes.append(defer)
    if builder is None:
        raise UnsupportedArchitectureError(
            f"{model_id}: model_type {model_type!r} is not supported yet, so its memory cannot be "
            f"modelled reliably. Supported families: {', '.join(SUPPORTED_MODEL_TYPES)}. "
            "Pick a model of a supported family or open an issue with its config.json."
        )
    cfg = dict(text_cfg)
    cfg["model_type"] = model_type
    if "architectures" not in cfg and config.get("architectures"):
        cfg["architectures"] = config["architectures"]
    if cfg is not config:
        _check_field_types(cfg, model_id)
    try:
        spec = builder(model_id, cfg)
        quant = parse_quantization_config(config) or parse_quantization_config(text_cfg)
    except CalculatorError:
        raise
    except (TypeError, ValueError, ArithmeticError, KeyError, IndexError, AttributeError) as exc:
        # A field combination the checks above let through (e.g. a zero divisor): still one line.
        raise MalformedConfigError(f"config.json of {model_id} has a field with an impossible value or type ({short_repr(str(exc), 80)}).") from exc
    spec = replace(_with_transformers_facts(spec), quantization=quant, notes=spec.notes + tuple(notes), raw_config=config)
    return _check_totals(spec)


# Analytic on purpose although transformers' class differs: the formula counts the original
# checkpoint (HiggsAudioModel), whose text LM head and 1,026-code codebooks transformers' port lacks.
_ANALYTIC_BY_DESIGN = frozenset({"higgs_audio_v2", "higgs_audio"})
# Nested configs of towers that the analytic formulas do not count.
_TOWER_KEYS = ("vision_config", "audio_config", "visual", "vision_tower_config", "speech_config", "audio_encoder_config")
# Nested configs that are not a model component: any other `*_config` sub-config (a vision or
# audio encoder, a projector, a detection backbone) is a part the analytic formulas do not count.
_NOT_TOWER_KEYS = frozenset({*_NESTED_TEXT_KEYS, "quantization_config", "generation_config", "rope_config", "compression_config"})
# Parameters the analytic formula may differ from transformers' class by before the class is used.
INVENTORY_TOLERANCE = 0.005


def _inventory_counts_better(config: Mapping[str, Any], model_type: str) -> str | None:
    """Why transformers' own class should count this config instead of the analytic formula
    (None when the formula is exact): a vision/audio tower or projector next to the language
    model, or a formula that `benchmarks/architecture_data.py` measured to differ from
    transformers' default build by more than 0.5% (architectures.json `analytic_delta`)."""
    if any(isinstance(v, Mapping) and v and (k in _TOWER_KEYS or (k.endswith("_config") and k not in _NOT_TOWER_KEYS))
           for k, v in config.items()):
        return ("This model has vision/audio towers and a projector that the analytic formulas do not count; with torch + "
                "transformers installed (pip install -r requirements-dev.txt) they are counted from transformers' own class.")
    delta = architecture_facts(model_type).get("analytic_delta")
    if isinstance(delta, int | float) and abs(delta) > INVENTORY_TOLERANCE and model_type not in _ANALYTIC_BY_DESIGN:
        return (f"The analytic formula for {model_type} differs from transformers' class by {delta:+.1%} of the parameters at "
                "its default config; install torch + transformers (pip install -r requirements-dev.txt) for the exact count.")
    return None


def _with_transformers_facts(spec: ModelSpec) -> ModelSpec:
    """Apply what transformers / peft do for this model_type (calculator/data/architectures.json):
    the attention implementation it really runs, and what peft's `all-linear` adapts in an MoE
    block: peft 0.21 adds transformers 5's fused experts and the router, with a doubled rank for
    the fused gate_up projection, only for the model types in its v4->v5 conversion table
    (Mixtral, Qwen3-MoE, DeepSeek-V3: yes; Qwen2-MoE, gpt-oss: no)."""
    facts = architecture_facts(spec.model_type)
    if not facts:
        return spec
    changes: dict[str, Any] = {}
    if "supports_sdpa" in facts and facts["supports_sdpa"] != spec.supports_sdpa:
        changes["supports_sdpa"] = bool(facts["supports_sdpa"])
    if "lora_experts" in facts:
        linears = []
        for g in spec.linears:
            if g.role == "expert":
                factor = int(facts.get("gate_up_rank_factor", 1)) if "gate_up" in g.name else 1
                g = replace(g, lora_all_linear=bool(facts["lora_experts"]), lora_rank_factor=factor)
            elif g.role == "router" and g.out_features == spec.num_experts:  # not Qwen2-MoE's nn.Linear shared_expert_gate
                g = replace(g, lora_all_linear=bool(facts.get("lora_router", True)))
            linears.append(g)
        changes["linears"] = tuple(linears)
    return replace(spec, **changes) if changes else spec


# Config fields read directly by the builders (not through `_int`), with the JSON types a real
# config uses for them; anything else is a MalformedConfigError naming the field.
_FIELD_KINDS: dict[str, str] = {
    "model_type": "str",
    "architectures": "str-list",
    "layer_types": "str-list",
    "mlp_only_layers": "int-list",
    "sliding_window": "int",
    "max_window_layers": "int",
    "decoder_sparse_step": "int",
    "sliding_window_pattern": "int",
    "_sliding_window_pattern": "int",
    "rope_scaling": "object",
    "rope_parameters": "object",
    "quantization_config": "object",
    **dict.fromkeys(_NESTED_TEXT_KEYS, "object"),
}


def _check_field_types(cfg: Mapping[str, Any], model_id: str) -> None:
    for key, kind in _FIELD_KINDS.items():
        value = cfg.get(key)
        if value is None or (kind == "int" and value is False):  # `"sliding_window": false` = no window
            continue
        ok = {
            "str": lambda v: isinstance(v, str) and len(v) <= 200,
            "str-list": lambda v: isinstance(v, list) and all(isinstance(x, str) and len(x) <= 200 for x in v),
            "int-list": lambda v: isinstance(v, list) and all(is_whole_number(x) for x in v),
            "int": lambda v: is_whole_number(v) and v >= 0,
            "object": lambda v: isinstance(v, Mapping),
        }[kind](value)
        if not ok:
            expected = {"str": "a short string", "str-list": "a list of strings", "int-list": "a list of whole numbers",
                        "int": "a non-negative whole number", "object": "a JSON object"}[kind]
            raise MalformedConfigError(f"config.json of {model_id}: `{key}` should be {expected}, got {short_repr(value)}.")
        if kind == "int":
            check_dimension(key, int(value), where=f"config.json of {model_id}")
        if kind == "object" and key in ("rope_scaling", "rope_parameters"):
            factor = value.get("factor")
            if factor is not None and not (isinstance(factor, int | float) and not isinstance(factor, bool) and math.isfinite(factor) and factor > 0):
                raise MalformedConfigError(f"config.json of {model_id}: `{key}.factor` should be a positive number, got {short_repr(factor)}.")


def _check_totals(spec: ModelSpec, *, dims: bool = True) -> ModelSpec:
    """Refuse a config whose parameter count no checkpoint could have, or with a zero dimension
    every model has; flag an implausible one. (`dims=False` for a transformers inventory: a Mamba
    has no attention heads, and its counts are transformers' own.)"""
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "head_dim") if dims else ():
        if getattr(spec, name) <= 0:
            raise MalformedConfigError(f"config.json of {spec.model_id}: {name} must be positive, got {getattr(spec, name)}.")
    total = spec.config_num_params
    if total > MAX_PARAMS:
        raise MalformedConfigError(
            f"config.json of {spec.model_id} implies {total:.3g} parameters, above the {MAX_PARAMS:.0e} accepted "
            "(60x the largest open checkpoint): this is not a real model's config."
        )
    if total > PLAUSIBLE_PARAMS:
        return replace(spec, notes=(*spec.notes, f"By its config this model has {total:.3g} parameters, more than any public model (~1.6T): check the config."))
    return spec
