"""Bounds on everything read from outside: config dimensions, file sizes, ids, and the Hub deadline.

A Hub repository's `config.json`, safetensors headers and index are untrusted input. One number
(`"num_hidden_layers": 1000000000`) must not drive the process to gigabytes or give a confident
nonsense answer, so every dimension is bounded by what real models have, with room to spare (a
bound is 4-64x the largest public model's value, so a real model never hits one), and every read
is size-capped before it is parsed. The error names the field, the bound and why it is there.

Reference points (config.json of each model on the Hub):
- layers: Llama-3.1-405B 126, Nemotron-4-340B 96, DeepSeek-V3 61 (+1 MTP);
- hidden size: Nemotron-4-340B 18,432, Llama-3.1-405B 16,384;
- intermediate size: Nemotron-4-340B 73,728, Llama-3.1-405B 53,248;
- attention heads: Llama-3.1-405B / DeepSeek-V3 128; head_dim: Gemma 2 256;
- experts: Kimi-K2 384, DeepSeek-V3 256, Qwen3-235B-A22B 128;
- vocabulary: Gemma 3 262,144, mT5 250,112;
- positions: Llama-4-Scout 10,485,760, Qwen2.5-7B-Instruct-1M 1,010,000;
- parameters: the largest open checkpoints are ~1-2 trillion (Kimi-K2 1.03T, Switch-C 1.6T).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import MalformedConfigError


@dataclass(frozen=True, slots=True)
class Bound:
    """The largest value accepted for one config dimension, and why."""

    limit: int
    why: str


# --- config dimensions ---------------------------------------------------------------------------

MAX_LAYERS = Bound(2_048, "16x the deepest public LLM (Llama-3.1-405B, 126 layers)")
MAX_HIDDEN = Bound(131_072, "7x the widest public LLM (Nemotron-4-340B, hidden 18,432)")
MAX_INTERMEDIATE = Bound(1_048_576, "14x the widest public MLP (Nemotron-4-340B, 73,728)")
MAX_HEADS = Bound(4_096, "32x the most attention heads of a public LLM (128)")
MAX_HEAD_DIM = Bound(8_192, "32x the widest public head (Gemma 2, head_dim 256)")
MAX_EXPERTS = Bound(16_384, "42x the most experts of a public MoE (Kimi-K2, 384)")
MAX_VOCAB = Bound(4_194_304, "16x the largest public vocabulary (Gemma 3, 262,144)")
MAX_POSITIONS = Bound(268_435_456, "25x the longest public context (Llama-4-Scout, 10,485,760 tokens)")
# Anything else `_int` reads (LoRA ranks of MLA, codebooks, buckets, group sizes...): int32, what
# torch uses for a tensor dimension in most kernels, so no real config field is above it.
# The transformers-inventory path (calculator/inventory.py) constructs every layer of every stack
# on the meta device: ~12 s of imports plus ~30 ms a layer here (a 2,048-layer config took 73 s on
# this 2-core machine, 256 layers 14 s). So that path takes at most 512 layers in all stacks
# together (encoder + decoder + towers), 4x the deepest public LLM, which keeps a lookup inside
# the Hub deadline's order of magnitude.
MAX_INVENTORY_LAYERS = Bound(512, "4x the deepest public LLM (126 layers); counting with transformers builds every layer")
# Config keys that count the layers of one stack (summed over nested configs for the bound above).
LAYER_STACK_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "num_decoder_layers", "num_encoder_layers",
                    "encoder_layers", "decoder_layers", "depth")
MAX_OTHER = Bound(2**31 - 1, "the int32 range of a tensor dimension")

# config.json key -> its bound. Keys not listed get MAX_OTHER.
DIMENSION_BOUNDS: dict[str, Bound] = {
    # Layer counts under every name transformers' configs use (BART/Whisper encoder_layers and
    # decoder_layers, DistilBERT n_layers, ViT-style depth): the inventory path builds each layer.
    **dict.fromkeys(("num_hidden_layers", "n_layer", "n_layers", "num_layers", "num_decoder_layers", "num_encoder_layers",
                     "encoder_layers", "decoder_layers", "depth", "max_window_layers", "first_k_dense_replace",
                     "num_nextn_predict_layers", "decoder_sparse_step", "moe_layer_freq"), MAX_LAYERS),
    **dict.fromkeys(("hidden_size", "n_embd", "d_model", "dim", "embed_dim", "word_embed_proj_dim", "kv_lora_rank", "q_lora_rank"),
                    MAX_HIDDEN),
    **dict.fromkeys(("intermediate_size", "n_inner", "ffn_dim", "d_ff", "encoder_ffn_dim", "decoder_ffn_dim", "ffn_hidden_size",
                     "moe_intermediate_size", "shared_expert_intermediate_size"), MAX_INTERMEDIATE),
    **dict.fromkeys(("num_attention_heads", "n_head", "n_heads", "num_heads", "num_key_value_heads", "num_kv_heads",
                     "encoder_attention_heads", "decoder_attention_heads"), MAX_HEADS),
    **dict.fromkeys(("head_dim", "d_kv", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"), MAX_HEAD_DIM),
    **dict.fromkeys(("num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok", "experts_per_token",
                     "n_shared_experts"), MAX_EXPERTS),
    **dict.fromkeys(("vocab_size", "codebook_size", "type_vocab_size", "relative_attention_num_buckets"), MAX_VOCAB),
    **dict.fromkeys(("max_position_embeddings", "n_positions", "sliding_window", "original_max_position_embeddings"), MAX_POSITIONS),
}

# A model's parameters by config arithmetic or by its checkpoint: 100 trillion is 60x the largest
# open checkpoint (Switch-C, 1.6T) and 200 TB of bf16 weights; above it the input is not a model.
MAX_PARAMS = 10**14
# Above this the count is accepted but flagged: more than any public model has.
PLAUSIBLE_PARAMS = 2_500_000_000_000
# A checkpoint's bytes: MAX_PARAMS at 8 bytes (F64), the widest safetensors dtype.
MAX_CHECKPOINT_BYTES = 8 * MAX_PARAMS
# One tensor's dimensions in a safetensors header (the format allows up to 2^64; no real tensor
# has more than 8 dimensions or a dimension above the vocabulary / position bounds).
MAX_TENSOR_DIMS = 8

# --- sizes of what is read -----------------------------------------------------------------------

# config.json: the largest real ones carry id2label tables (ImageNet-21k: ~1 MB); 8 MiB is 8x that.
MAX_CONFIG_BYTES = 8 * 2**20
# Nesting: real configs nest 3-4 levels (text_config.rope_scaling.{...}); 64 is far beyond, and well
# below Python's recursion limit, which a 200k-deep JSON document would otherwise hit.
MAX_CONFIG_DEPTH = 64
# JSON values in one config (id2label of ImageNet-21k: ~44k); a million is 20x that.
MAX_CONFIG_NODES = 1_000_000
# model.safetensors.index.json: DeepSeek-V3's (91k tensors) is ~9 MB; 64 MiB is 7x that.
MAX_INDEX_BYTES = 64 * 2**20
# One safetensors header: huggingface_hub 2.4 `constants.SAFETENSORS_MAX_HEADER_LENGTH` (25 MB).
MAX_HEADER_BYTES = 25_000_000
# Shards of one checkpoint: the most of a public model is ~200 (Llama-3.1-405B: 191); 4,096 is 20x.
MAX_SHARDS = 4_096
# All headers of one checkpoint together: 256 MiB (DeepSeek-V3's 163 headers total ~15 MB).
MAX_TOTAL_HEADER_BYTES = 256 * 2**20

# --- what the user types -------------------------------------------------------------------------

# A model reference: a Hub id (96 + 1 + 96) with "@" and a 255-character revision, or a pasted URL
# (~30 more), or a local folder path; 1,024 characters covers all three.
MAX_MODEL_REF_CHARS = 1_024
# --headroom: the extra fraction on top of the peak when ranking GPUs; 10 = +1,000%.
MAX_HEADROOM_FRACTION = 10.0

# --- time ----------------------------------------------------------------------------------------

# One deadline on a whole Hub lookup (model_info + config.json + index + every safetensors header),
# in seconds; past it the lookup falls back to the on-disk cache with a note.
HUB_DEADLINE_S = 30.0


def bound_for(key: str) -> Bound:
    return DIMENSION_BOUNDS.get(key, MAX_OTHER)


def check_dimension(key: str, value: int, *, where: str) -> int:
    """`value` if within the bound of config key `key`, else MalformedConfigError naming the bound."""
    bound = bound_for(key)
    if value > bound.limit:
        raise MalformedConfigError(
            f"{where}: `{key}` = {value:,} is above the largest value accepted ({bound.limit:,}: {bound.why}); "
            "this is not a real model's config."
        )
    return value


def short_repr(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters (a hostile value may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_whole_number(value: Any) -> bool:
    """An int, or a finite float with no fraction (JSON writes 4096 as 4096.0 sometimes); not bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def check_json_shape(value: Any, *, what: str, max_depth: int = MAX_CONFIG_DEPTH, max_nodes: int = MAX_CONFIG_NODES) -> None:
    """Refuse a parsed JSON value nested deeper than `max_depth` or holding more than `max_nodes`
    values, without recursion (the check itself must not hit the recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise MalformedConfigError(f"{what} holds more than {max_nodes:,} values: no model config is that large.")
        if depth > max_depth:
            raise MalformedConfigError(f"{what} is nested more than {max_depth} levels deep: no model config is.")
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
