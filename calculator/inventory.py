"""What transformers itself builds for a config: every parameter, read from a meta-device model.

`build_inventory` instantiates the class transformers ships for the config's `model_type` on the
meta device (shapes and dtypes, no storage: a 671B model builds in seconds) and reads its module
tree: parameters grouped by name with the layer index replaced by `*`, which of them are
`nn.Linear` weights or fused 3-D expert parameters, embeddings, norms, buffers, tied weights, the
tower each belongs to (text, vision, audio, projector), the attention implementation transformers
picks by default, and which groups peft's `target_modules="all-linear"` adapts: that last answer
comes from running peft itself on the meta model (peft 0.21 resolves "all-linear" to the
`nn.Linear`/`Conv1D` modules except the output embedding, then, for the MoE model types in
transformers' v4->v5 conversion table, adds the fused experts and the router with a doubled rank
for the fused gate_up projection: peft/utils/transformers_weight_conversion.py).

Only classes transformers ships are built: `auto_map` is dropped and `trust_remote_code` is never
passed. torch, transformers and peft are imported inside the functions, so `import calculator`
stays light; without them, `inventory_for` answers from the inventories shipped under
`calculator/data/inventories/` or says what to install.

`model_spec_from_inventory` turns an inventory into the `ModelSpec` the engine uses, so weights,
quantization, LoRA, gradients and optimizer states are counted for any architecture transformers has.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any, Literal

from .errors import MalformedConfigError, UnsupportedArchitectureError

TensorKind = Literal["linear", "fused_expert", "embedding", "norm", "conv", "bias", "other"]
INSTALL_HINT = "pip install -r requirements-dev.txt"
# How to enable the torch path where only requirements.txt is installed (README, "Deploy on Streamlit Community Cloud").
ENABLE_HINT = f"{INSTALL_HINT}; on Streamlit Community Cloud add torch, transformers and peft to requirements.txt"
INVENTORY_PACKAGE = "calculator.data.inventories"
SCHEMA_VERSION = 1

# Nested sub-configs of composite models and the tower their modules belong to.
_TOWER_OF_SUBCONFIG = {
    "text_config": "text", "llm_config": "text", "language_config": "text", "thinker_config": "text",
    "decoder_config": "text", "vision_config": "vision", "visual_config": "vision", "image_config": "vision",
    "audio_config": "audio", "speech_config": "audio", "encoder_config": "audio",
}
_LAYER_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorGroup:
    """`count` parameters (or buffers) that share a name pattern, e.g. q_proj.weight in 32 layers."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    count: int
    kind: TensorKind
    module_class: str
    tower: str = "text"
    in_features: int = 0
    out_features: int = 0
    experts: int = 0
    has_bias: bool = False
    nn_linear: bool = False  # an nn.Linear / transformers Conv1D module (what bitsandbytes converts)
    lora: bool | None = None  # peft "all-linear" adapts it; None when peft is not installed
    lora_rank_factor: int = 1
    role: str = "other"

    @property
    def numel(self) -> int:
        n = 1
        for dim in self.shape:
            n *= dim
        return n

    @property
    def total(self) -> int:
        return self.numel * self.count


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInventory:
    """The parameters of the model transformers builds for one config (see module docstring)."""

    model_type: str
    text_model_type: str
    class_name: str
    transformers_version: str
    peft_version: str | None
    params: tuple[TensorGroup, ...]
    buffers: tuple[TensorGroup, ...] = ()
    tied: tuple[tuple[str, str], ...] = ()
    num_params: int
    tie_word_embeddings: bool
    supports_sdpa: bool
    attn_implementation: str
    is_encoder_decoder: bool
    is_causal_lm: bool
    dims: Mapping[str, Any] = field(default_factory=dict)
    # Leaf names peft refuses to adapt in this model type (Mamba-based: out_proj, conv1d); all-linear leaves them out.
    lora_refused: tuple[str, ...] = ()
    # Where it was read from: "" when built here, else the shipped file (not serialised).
    source: str = ""

    def params_by_tower(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for g in self.params:
            out[g.tower] = out.get(g.tower, 0) + g.total
        return out

    def params_by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for g in self.params:
            out[g.kind] = out.get(g.kind, 0) + g.total
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "model_type": self.model_type, "text_model_type": self.text_model_type, "class_name": self.class_name,
            "transformers_version": self.transformers_version, "peft_version": self.peft_version,
            "num_params": self.num_params, "tie_word_embeddings": self.tie_word_embeddings,
            "supports_sdpa": self.supports_sdpa, "attn_implementation": self.attn_implementation,
            "is_encoder_decoder": self.is_encoder_decoder, "is_causal_lm": self.is_causal_lm,
            "dims": dict(self.dims), "tied": [list(t) for t in self.tied],
            "params": [_group_json(g) for g in self.params], "buffers": [_group_json(g) for g in self.buffers],
            **({"lora_refused": list(self.lora_refused)} if self.lora_refused else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelInventory:
        if data.get("schema") != SCHEMA_VERSION:
            raise MalformedConfigError(f"inventory schema {data.get('schema')!r} is not {SCHEMA_VERSION}; regenerate it.")
        return cls(
            model_type=data["model_type"], text_model_type=data["text_model_type"], class_name=data["class_name"],
            transformers_version=data["transformers_version"], peft_version=data.get("peft_version"),
            num_params=int(data["num_params"]), tie_word_embeddings=bool(data["tie_word_embeddings"]),
            supports_sdpa=bool(data["supports_sdpa"]), attn_implementation=data["attn_implementation"],
            is_encoder_decoder=bool(data["is_encoder_decoder"]), is_causal_lm=bool(data["is_causal_lm"]),
            dims=dict(data.get("dims") or {}), tied=tuple(tuple(t) for t in data.get("tied") or ()),
            params=tuple(_group_from_json(g) for g in data["params"]),
            buffers=tuple(_group_from_json(g) for g in data.get("buffers") or ()),
            lora_refused=tuple(str(n) for n in data.get("lora_refused") or ()),
        )


_GROUP_DEFAULTS = {"tower": "text", "in_features": 0, "out_features": 0, "experts": 0, "has_bias": False, "nn_linear": False,
                   "lora": None, "lora_rank_factor": 1, "role": "other"}


def _group_json(g: TensorGroup) -> dict[str, Any]:
    """A group as JSON, fields at their dataclass default left out (shipped files stay small)."""
    d = {k: getattr(g, k) for k in TensorGroup.__slots__ if k not in _GROUP_DEFAULTS or getattr(g, k) != _GROUP_DEFAULTS[k]}
    d["shape"] = list(g.shape)
    return d


def _group_from_json(d: Mapping[str, Any]) -> TensorGroup:
    return TensorGroup(**{**d, "shape": tuple(int(x) for x in d["shape"])})


# --------------------------------------------------------------------------------------------
# Availability and shipped inventories
# --------------------------------------------------------------------------------------------


def transformers_available() -> bool:
    """torch and transformers can be imported (checked without importing them)."""
    from importlib.util import find_spec

    return find_spec("torch") is not None and find_spec("transformers") is not None


_KEY_IGNORED = frozenset({"_name_or_path", "transformers_version", "architectures", "auto_map", "torch_dtype", "dtype",
                          "bos_token_id", "eos_token_id", "pad_token_id", "quantization_config", "use_cache"})


def _with_defaults(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """`config` over `defaults`, nested sub-configs merged key by key: what transformers' config class
    does with a config.json (`save_pretrained` writes only the keys that differ from the class
    defaults, `PreTrainedConfig.to_diff_dict`; loading fills the rest from the constructor)."""
    out = {str(k): v for k, v in defaults.items()}
    for key, value in config.items():
        key = str(key)
        base = out.get(key)
        out[key] = _with_defaults(value, base) if isinstance(value, Mapping) and isinstance(base, Mapping) else value
    return out


def _clean(config: Mapping[str, Any]) -> dict[str, Any]:
    # Keys as config.json spells them (a dict in memory may hold id2label's ints).
    return {str(k): _clean_value(v) for k, v in config.items() if k not in _KEY_IGNORED}


def _clean_value(value: Any) -> Any:
    """Values as the config class holds them: transformers 5 writes a non-finite float to
    config.json as {"__float__": "Infinity"} (configuration_utils.py `_FLOAT_TAG_KEY`; Mamba2's
    time_step_limit), and reads it back as the float."""
    if isinstance(value, Mapping):
        if set(value) == {"__float__"}:
            try:
                return float(value["__float__"])
            except (TypeError, ValueError):
                return value
        return _clean(value)
    if isinstance(value, list):
        return [_clean_value(v) for v in value]
    return value


def config_key(config: Mapping[str, Any]) -> str:
    """A stable key of the parts of a config that shape the model (drops ids, dtype, names, at
    every level). Keys the config leaves out take the defaults of its model type's config class
    where those ship with the inventories (index.json "defaults"), so a config.json written with
    only its differences and the full dict of the same model share one key."""
    full = with_shipped_defaults(config)
    blob = json.dumps(_clean(full), sort_keys=True, default=str).encode()
    return f"{config.get('model_type', 'model')}-{hashlib.sha256(blob).hexdigest()[:12]}"


def decode_float_tags(value: Any) -> Any:
    """`value` with transformers' {"__float__": "Infinity"} tags read back as floats (see `_clean_value`)."""
    if isinstance(value, Mapping):
        if set(value) == {"__float__"}:
            return _clean_value(value)
        return {k: decode_float_tags(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_float_tags(v) for v in value]
    return value


def with_shipped_defaults(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """`config` completed with its model type's shipped class defaults (`_with_defaults`), or as it is;
    non-finite floats as the config class holds them (`decode_float_tags`)."""
    defaults = _shipped_defaults().get(str(config.get("model_type")))
    if not defaults:
        return config
    return _with_defaults(decode_float_tags(config), defaults)


@cache
def _shipped_index_json() -> dict[str, Any]:
    """calculator/data/inventories/index.json (made by `python benchmarks/make_inventories.py`), read once; {} if absent."""
    try:
        text = resources.files(INVENTORY_PACKAGE).joinpath("index.json").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, NotADirectoryError):
        return {}
    return json.loads(text)


def _shipped_defaults() -> dict[str, dict[str, Any]]:
    """model_type -> transformers' default config dict, shipped beside the inventories."""
    return _shipped_index_json().get("defaults", {})


def _shipped_index() -> dict[str, dict[str, str]]:
    """config_key -> {"file", "transformers", "peft"} of the inventories shipped with the package."""
    return _shipped_index_json().get("inventories", {})


def _installed_version(name: str) -> str | None:
    """The installed version of a distribution from its metadata (no import), None if absent."""
    from importlib import metadata

    try:
        return metadata.version(name).split("+")[0]
    except metadata.PackageNotFoundError:
        return None


def shipped_inventory(config: Mapping[str, Any]) -> ModelInventory | None:
    """The inventory shipped for exactly this config (same shape-relevant keys), if any.

    Keyed by `config_key` (a config that differs in any shape key misses) and by the transformers
    and peft versions it was counted with: where another transformers or peft is installed, the
    shipped answer may be stale (classes and peft's target rules change between releases), so
    None is returned and the inventory is built from the installed classes instead."""
    entry = _shipped_index().get(config_key(config))
    if entry is None:
        return None
    if transformers_available():
        stale = _installed_version("transformers") != entry.get("transformers") or (_installed_version("peft") or "") != (entry.get("peft") or "")
        if stale:
            return None
    name = entry["file"]
    data = json.loads(resources.files(INVENTORY_PACKAGE).joinpath(name).read_text(encoding="utf-8"))
    inv = ModelInventory.from_json(data)
    return replace(inv, source=f"calculator/data/inventories/{name}")


def inventory_for(config: Mapping[str, Any], *, model_id: str = "") -> ModelInventory:
    """The shipped inventory of this config, else one built from transformers, else a one-line error."""
    shipped = shipped_inventory(config)
    if shipped is not None:
        return shipped
    if not transformers_available():
        raise UnsupportedArchitectureError(
            f"{model_id or 'this model'}: model_type {config.get('model_type')!r} has no analytic formula here and no inventory of "
            f"this config ships with the calculator; counting it from transformers' own model needs torch + transformers ({ENABLE_HINT})."
        )
    return build_inventory(config, model_id=model_id)


# --------------------------------------------------------------------------------------------
# Building the model on the meta device
# --------------------------------------------------------------------------------------------


def hf_config(config: Mapping[str, Any], *, model_id: str = "") -> Any:
    """A transformers config object from the raw dict (no remote code, no quantization)."""
    from .verify._harness import _hf_config
    from .verify.trace import TraceUnsupportedError

    if not isinstance(config, Mapping) or not config.get("model_type"):
        raise MalformedConfigError(f"config.json of {model_id or 'this model'} has no `model_type`, so its architecture cannot be read.")
    try:
        return _hf_config(copy.deepcopy(dict(config)), [])
    except TraceUnsupportedError as e:
        import transformers

        raise UnsupportedArchitectureError(
            f"{model_id or 'this model'}: model_type {config.get('model_type')!r} is neither one of the analytic families "
            f"nor a model transformers {transformers.__version__} ships, and repository code (trust_remote_code) is never run, "
            "so its memory cannot be modelled. Pick a model of a supported family or open an issue with its config.json."
        ) from e
    except Exception as e:  # config classes validate with their own error types (huggingface_hub strict dataclasses)
        reason = " ".join(str(e).split())[:300]
        raise MalformedConfigError(f"config.json of {model_id or 'this model'} is not a valid {config.get('model_type')} config: {reason}") from e


def _mapping_classes(hf_cfg: Any) -> list[tuple[str, type]]:
    """The model classes transformers' auto mappings give this config type, most generative first."""
    from transformers.models.auto import modeling_auto as ma

    seq2seq = ["MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING", "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING"]
    multimodal = ["MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING", "MODEL_FOR_VISION_2_SEQ_MAPPING", "MODEL_FOR_MULTIMODAL_LM_MAPPING"]
    causal = ["MODEL_FOR_CAUSAL_LM_MAPPING"]
    # An encoder-decoder config is built whole (BartForConditionalGeneration, not BartForCausalLM,
    # the decoder alone); a composite config with a vision/audio sub-config as the multimodal model
    # (MllamaForConditionalGeneration, not the text-only MllamaForCausalLM).
    sub = set(getattr(hf_cfg, "sub_configs", {}) or {})
    if getattr(hf_cfg, "is_encoder_decoder", False):
        order = seq2seq + multimodal + causal
    elif sub - {"text_config", "llm_config", "language_config", "decoder_config"}:
        order = multimodal + causal + seq2seq
    else:
        order = causal + multimodal + seq2seq
    order += ["MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING", "MODEL_MAPPING"]
    found = []
    for name in order:
        mapping = getattr(ma, name, None)
        if mapping is None:
            continue
        try:
            found.append((name, mapping[type(hf_cfg)]))
        except (KeyError, ValueError):
            continue
    return found


def model_class(hf_cfg: Any) -> tuple[type, bool]:
    """(class, is_generative) transformers builds for this config; never remote code.

    Encoders that also have a causal-LM head class (BERT's `BertLMHeadModel`) are built as the
    encoder unless the config says `is_decoder`, as transformers itself warns; a class named in
    `architectures` is used when transformers ships it for this config class.
    """
    import transformers

    classes = _mapping_classes(hf_cfg)
    if not classes:
        raise UnsupportedArchitectureError(f"transformers has no model class for model_type {hf_cfg.model_type!r}.")
    by_mapping = dict(classes)
    from transformers.models.auto import modeling_auto as ma

    masked = getattr(ma, "MODEL_FOR_MASKED_LM_MAPPING", {})
    try:
        is_encoder = type(hf_cfg) in masked and not getattr(hf_cfg, "is_decoder", False) and not hf_cfg.is_encoder_decoder
    except Exception:  # lazy mapping lookups may import a missing backend
        is_encoder = False
    for arch in getattr(hf_cfg, "architectures", None) or []:
        cls = getattr(transformers, str(arch), None) if isinstance(arch, str) and arch.isidentifier() else None
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel) and cls.config_class is type(hf_cfg):
            generative = any(cls is c for n, c in classes if n != "MODEL_MAPPING") and not (is_encoder and "MaskedLM" in arch)
            if generative:
                return cls, True
    if is_encoder and "MODEL_MAPPING" in by_mapping:
        return by_mapping["MODEL_MAPPING"], False
    name, cls = classes[0]
    return cls, name != "MODEL_MAPPING"


_TORCH_DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def build_meta_model(config: Mapping[str, Any], *, model_id: str = "", dtype: str = "bf16", attn_implementation: str | None = None) -> Any:
    """The transformers model for `config` on the meta device (no weights allocated)."""
    import warnings

    import torch

    hf_cfg = hf_config(config, model_id=model_id)
    cls, _ = model_class(hf_cfg)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, _TORCH_DTYPE_NAMES[dtype])}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                if hasattr(cls, "from_config"):
                    return cls.from_config(hf_cfg, **kwargs)
                return cls._from_config(hf_cfg, **kwargs)
        except Exception as e:  # a class that does not build from this config: one line for the user
            raise UnsupportedArchitectureError(
                f"{model_id or hf_cfg.model_type}: transformers could not build {cls.__name__} from this config "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})."
            ) from e


# --------------------------------------------------------------------------------------------
# Reading the module tree
# --------------------------------------------------------------------------------------------


def _pattern(name: str) -> str:
    return _LAYER_INDEX.sub(".*", name)


def _dtype_name(dtype: Any) -> str:
    text = str(dtype).replace("torch.", "")
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "float64": "fp64"}.get(text, text)


def _towers(model: Any, hf_cfg: Any) -> dict[str, str]:
    """Module path -> tower, from the sub-config each `PreTrainedModel` submodule was built with.
    None for encoder-decoders: their vision/audio encoder is what the input runs through (Pix2Struct's
    `vision_config` encoder), not a tower text tokens skip."""
    if getattr(hf_cfg, "is_encoder_decoder", False):
        return {}
    sub = {}
    for key in getattr(hf_cfg, "sub_configs", {}) or {}:
        value = getattr(hf_cfg, key, None)
        # Only the sub-configs known to be one vision/audio tower: others hold several (pi0's
        # `vlm_config` is a whole PaliGemma, text model included; T5Gemma 2's `encoder` / `decoder`),
        # and a module built with the text config can still sit on the tower's side (Kosmos-2.5's
        # image-to-text projection): those take the name keywords.
        if value is not None and _TOWER_OF_SUBCONFIG.get(key, "text") != "text":
            sub[id(value)] = _TOWER_OF_SUBCONFIG[key]
    towers: dict[str, str] = {}
    for name, module in model.named_modules():
        cfg = getattr(module, "config", None)
        if name and cfg is not None and id(cfg) in sub:
            towers[name] = sub[id(cfg)]
    return towers


def _tower_of(name: str, towers: Mapping[str, str], composite: bool) -> str:
    best, tower = -1, None
    for prefix, t in towers.items():
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
            best, tower = len(prefix), t
    if tower is not None:
        return tower
    if not composite:
        return "text"
    low = name.lower()
    if any(k in low for k in ("projector", "connector", "merger", "multi_modal", "mm_proj", "adapter")):
        return "projector"
    if any(k in low for k in ("vision", "visual", "image", "patch", "vit")):
        return "vision"
    if any(k in low for k in ("audio", "speech")):
        return "audio"
    return "text"


def _role(name: str, kind: str, tower: str, out_features: int, num_experts: int, is_head: bool) -> str:
    if is_head:
        return "head"
    if tower != "text":
        return "other"
    if kind == "fused_expert" or re.search(r"\.experts\.\*\.", name):
        return "expert"
    parts = name.lower().split(".")
    leaf = parts[-2] if len(parts) >= 2 else ""
    if num_experts and out_features == num_experts and ("gate" in leaf or "router" in leaf):
        return "router"
    if any(("attn" in p or "attention" in p) for p in parts[:-1]):
        return "attention"
    if any(p in ("mlp", "ffn", "feed_forward", "shared_expert", "shared_experts", "intermediate", "output") or "mlp" in p for p in parts[:-1]):
        return "mlp"
    return "other"


def _dims(hf_cfg: Any) -> dict[str, Any]:
    """Dimensions of the language model that drive activations and the KV cache."""
    try:
        text = hf_cfg.get_text_config(decoder=True)
    except (TypeError, ValueError, AttributeError):
        text = hf_cfg

    def first(*names: str, default: Any = 0) -> Any:
        for n in names:
            try:
                v = getattr(text, n, None)
            except Exception:  # some configs compute attributes that may fail
                v = None
            if isinstance(v, bool):
                continue
            if isinstance(v, int | float) and v is not None:
                return int(v)
            if isinstance(v, list) and v and all(isinstance(x, int) for x in v):
                return int(v[0])
        return default

    h = first("hidden_size", "d_model", "n_embd", "dim")
    heads = first("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")
    d = {
        "model_type": getattr(text, "model_type", hf_cfg.model_type),
        "hidden_size": h,
        "num_hidden_layers": first("num_hidden_layers", "n_layer", "num_layers", "decoder_layers"),
        "num_attention_heads": heads,
        "num_key_value_heads": first("num_key_value_heads", "num_kv_heads", "n_head_kv", default=heads),
        "head_dim": first("head_dim", "attention_head_dim", "d_kv", default=(h // heads) if heads else 0),
        "intermediate_size": first("intermediate_size", "ffn_dim", "n_inner", "d_ff", "decoder_ffn_dim", default=4 * h),
        "vocab_size": first("vocab_size"),
        "max_position_embeddings": first("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", default=4096),
        "sliding_window": first("sliding_window", "attention_window", default=None),
        "num_experts": first("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"),
        "num_experts_per_tok": first("num_experts_per_tok", "experts_per_token", "moe_k", "top_k"),
        "moe_intermediate_size": first("moe_intermediate_size", "expert_intermediate_size"),
        "num_encoder_layers": first("encoder_layers", "num_encoder_layers") if getattr(hf_cfg, "is_encoder_decoder", False) else 0,
    }
    for key in ("use_sliding_window", "max_window_layers", "sliding_window_pattern"):
        value = getattr(text, key, None)
        if isinstance(value, bool | int):
            d[key] = value
    layer_types = getattr(text, "layer_types", None) or getattr(text, "layers_block_type", None)
    d["layer_types"] = [str(t) for t in layer_types] if isinstance(layer_types, list | tuple) else None
    return d


def build_inventory(config: Mapping[str, Any], *, model_id: str = "", dtype: str = "bf16") -> ModelInventory:
    """Inventory of the model transformers builds for `config` (needs torch + transformers)."""
    import transformers
    from torch import nn

    hf_cfg = hf_config(config, model_id=model_id)
    cls, generative = model_class(hf_cfg)
    model = build_meta_model(config, model_id=model_id, dtype=dtype)
    num_params = sum(p.numel() for p in model.parameters())  # before peft adds its adapters
    dims = _dims(hf_cfg)
    num_experts = int(dims.get("num_experts") or 0)
    composite = bool(getattr(hf_cfg, "sub_configs", None))
    # The model's own config: `build_meta_model` parses the config again, and `_towers` matches the
    # sub-config objects the submodules were built with by identity (with `hf_cfg`'s, nothing matched
    # and the towers came from module-name keywords alone: Video-LLaVA's `video_tower` was text).
    towers = _towers(model, getattr(model, "config", hf_cfg))
    output_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    conv1d = getattr(getattr(transformers, "pytorch_utils", None), "Conv1D", ())

    owners: dict[int, tuple[str, Any, str]] = {}  # id(param) -> (full name, owning module, attribute)
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), (f"{mname}.{pname}" if mname else pname, module, pname))
    seen: dict[int, str] = {}
    tied: list[tuple[str, str]] = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen and seen[id(p)] != name:
            tied.append((name, seen[id(p)]))
        seen.setdefault(id(p), name)

    fused_names: dict[tuple[int, str], Any] = {}
    groups: dict[tuple[str, tuple[int, ...], str], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        _, module, attr = owners[id(p)]
        mname = name[: -len(attr) - 1] if name != attr else ""
        shape = tuple(int(x) for x in p.shape)
        is_linear = isinstance(module, nn.Linear | conv1d) if conv1d else isinstance(module, nn.Linear)
        kind: str
        in_f = out_f = experts = 0
        cname = type(module).__name__
        if is_linear and attr == "weight":
            kind = "linear"
            if isinstance(module, nn.Linear):
                out_f, in_f = shape[0], shape[1]
            else:  # transformers Conv1D stores (in, out)
                in_f, out_f = shape[0], shape[1]
        elif is_linear and attr == "bias":
            kind = "bias"
        elif isinstance(module, nn.Embedding | nn.EmbeddingBag):
            kind = "embedding"
        elif isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.ConvTranspose1d | nn.ConvTranspose2d):
            kind = "conv"
        elif "norm" in cname.lower():
            kind = "norm"
        elif (p.dim() == 2 and attr == "weight" and num_experts and shape[0] == num_experts
              and any(k in cname.lower() for k in ("router", "gate"))):
            # A router kept as a bare weight (transformers 5 `*TopKRouter`): a linear map that is
            # not an nn.Linear (bitsandbytes leaves it alone; peft targets it as a parameter).
            kind = "linear"
            out_f, in_f = shape
        elif p.dim() == 3 and shape[0] > 1 and "expert" in (mname + cname).lower():
            kind = "fused_expert"
            experts = shape[0]
            out_f, in_f = _expert_in_out(shape, int(dims.get("hidden_size") or 0), attr)
            fused_names[(id(module), attr)] = True
        else:
            kind = "other"
        key = (_pattern(name), shape, kind)
        g = groups.setdefault(key, {
            "name": _pattern(name), "shape": shape, "dtype": _dtype_name(p.dtype), "count": 0, "kind": kind,
            "module_class": cname, "tower": _tower_of(name, towers, composite), "in_features": in_f,
            "out_features": out_f, "experts": experts, "is_head": module is output_emb, "module_pattern": _pattern(mname),
            "attr": attr, "module_ids": [], "nn_linear": bool(is_linear),
        })
        g["count"] += 1
        g["module_ids"].append(id(module))

    # Biases of linears and of fused experts (gpt-oss `gate_up_proj_bias`) belong to their weight.
    by_module_pattern = {(g["module_pattern"], g["kind"]): g for g in groups.values()}
    for g in list(groups.values()):
        if g["kind"] in ("bias", "other") and g["attr"] == "bias" and (g["module_pattern"], "linear") in by_module_pattern:
            by_module_pattern[(g["module_pattern"], "linear")]["has_bias"] = True
            g["bias_of_linear"] = True
        elif g["kind"] == "other" and g["attr"].endswith("_bias"):
            base = g["attr"].removesuffix("_bias")
            for w in groups.values():
                if w["kind"] == "fused_expert" and w["module_pattern"] == g["module_pattern"] and w["attr"] == base:
                    w["has_bias"] = True
                    g["kind"] = "bias"
                    g["bias_of_linear"] = True

    lora, peft_version, lora_refused = _peft_all_linear(model)
    params: list[TensorGroup] = []
    for g in groups.values():
        role = _role(g["name"], g["kind"], g["tower"], g["out_features"], num_experts, g["is_head"])
        lora_flag, factor = None, 1
        if lora is not None and g["kind"] in ("linear", "fused_expert"):
            hits = [lora.get((mid, g["attr"] if g["kind"] == "fused_expert" else "weight")) for mid in g["module_ids"]]
            lora_flag = any(h is not None for h in hits)
            factor = max((h for h in hits if h is not None), default=1)
        params.append(TensorGroup(
            name=g["name"], shape=g["shape"], dtype=g["dtype"], count=g["count"],
            kind="bias" if g.get("bias_of_linear") else g["kind"], module_class=g["module_class"], tower=g["tower"],
            in_features=g["in_features"], out_features=g["out_features"], experts=g["experts"],
            has_bias=bool(g.get("has_bias")), nn_linear=g["nn_linear"] and g["kind"] == "linear", lora=lora_flag, lora_rank_factor=factor, role=role,
        ))
    buffers: dict[tuple[str, tuple[int, ...]], dict[str, Any]] = {}
    for name, b in model.named_buffers():
        key = (_pattern(name), tuple(int(x) for x in b.shape))
        entry = buffers.setdefault(key, {"dtype": _dtype_name(b.dtype), "count": 0})
        entry["count"] += 1
    attn = str(getattr(model.config, "_attn_implementation", None) or "eager")
    text_cfg = _text_subconfig(model.config)
    text_attn = str(getattr(text_cfg, "_attn_implementation", None) or attn)
    return ModelInventory(
        model_type=str(config.get("model_type")), text_model_type=str(dims.get("model_type") or config.get("model_type")),
        class_name=cls.__name__, transformers_version=transformers.__version__, peft_version=peft_version,
        params=tuple(params),
        buffers=tuple(TensorGroup(name=n, shape=s, dtype=e["dtype"], count=e["count"], kind="other", module_class="buffer")
                      for (n, s), e in buffers.items()),
        tied=tuple(tied), num_params=num_params,
        tie_word_embeddings=bool(tied) and output_emb is not None and any(a.endswith(_pattern_leaf(output_emb, model)) for a, _ in tied),
        supports_sdpa=text_attn == "sdpa", attn_implementation=text_attn,
        is_encoder_decoder=bool(getattr(hf_cfg, "is_encoder_decoder", False)), is_causal_lm=generative,
        dims=dims, lora_refused=lora_refused,
    )


def _text_subconfig(cfg: Any) -> Any:
    try:
        return cfg.get_text_config(decoder=True)
    except (TypeError, ValueError, AttributeError):
        return cfg


def _pattern_leaf(module: Any, model: Any) -> str:
    for name, m in model.named_modules():
        if m is module:
            return f"{name}.weight"
    return "\0"


def _expert_in_out(shape: tuple[int, ...], hidden: int, attr: str) -> tuple[int, int]:
    """(out, in) of one expert of a fused 3-D parameter. transformers 5 stores (E, out, in) for
    most MoE blocks and (E, in, out) for some (gpt-oss); the side equal to hidden_size is the input
    of gate/up projections and the output of the down projection."""
    _, a, b = shape
    down = "down" in attr or "w2" in attr
    if hidden and (a == hidden) != (b == hidden):
        if down:
            return (a, b) if a == hidden else (b, a)
        return (a, b) if b == hidden else (b, a)
    return a, b


def _peft_all_linear(model: Any) -> tuple[dict[tuple[int, str], int] | None, str | None, tuple[str, ...]]:
    """Which (module, parameter) peft 0.21's `target_modules="all-linear"` adapts, with the rank
    factor peft gives it (2 for a fused gate_up projection). Runs peft on the meta model; the
    adapters it creates are meta tensors too. None when peft is not installed or refuses."""
    try:
        import peft
        from peft import LoraConfig, get_peft_model
        from peft.tuners.lora.layer import LoraLayer
    except ImportError:
        return None, None, ()
    import contextlib
    import io
    import warnings

    import torch

    from .verify._harness import resolve_lora_targets, tuple_returning_linears

    base_modules = {id(m): m for m in model.modules()}
    try:
        # Mamba-based model types: peft refuses out_proj / conv1d and so the shorthand itself;
        # the modules it accepts are what an explicit all-linear list adapts (resolve_lora_targets).
        targets, refused = resolve_lora_targets(model, "all-linear")
        with warnings.catch_warnings(), torch.device("meta"), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            # nn.Linear subclasses returning a tuple (PhiMoE's router) are left out, as the traces and a run that
            # works do (`tuple_returning_linears`: peft's wrapper cannot add to a tuple).
            excluded = tuple_returning_linears(model)
            peft_model = get_peft_model(model, LoraConfig(r=1, lora_alpha=1, target_modules=targets, exclude_modules=excluded or None))
    except Exception:  # peft refuses the architecture outright: no all-linear answer
        return {}, peft.__version__, ()
    hits: dict[tuple[int, str], int] = {}
    for module in peft_model.modules():
        if not isinstance(module, LoraLayer) or "default" not in getattr(module, "lora_A", {}):
            continue
        a = module.lora_A["default"]
        base = module.get_base_layer()
        pname = getattr(module, "parameter_name", None) or "weight"
        experts = int(getattr(module, "num_experts", 1) or 1)
        rank_out = int(a.weight.shape[0])  # lora_A output rows: r x experts (x 2 for a fused gate_up); conv adapters too
        factor = max(1, rank_out // max(1, experts))
        if id(base) in base_modules:
            hits[(id(base), pname)] = factor
    return hits, peft.__version__, refused


# --------------------------------------------------------------------------------------------
# Inventory -> ModelSpec
# --------------------------------------------------------------------------------------------


# Bytes per element of torch dtypes as `_dtype_name` writes them (torch `Tensor.element_size()`).
_DTYPE_BYTES = {"fp64": 8, "fp32": 4, "bf16": 2, "fp16": 2, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
                "float8_e4m3fn": 1, "float8_e5m2": 1, "complex64": 8}


def _model_dtype(inv: ModelInventory) -> str:
    """The dtype most parameter elements have."""
    by_dtype: dict[str, int] = {}
    for g in inv.params:
        by_dtype[g.dtype] = by_dtype.get(g.dtype, 0) + g.total
    return max(by_dtype, key=by_dtype.__getitem__) if by_dtype else "bf16"


def _buffer_split(inv: ModelInventory) -> tuple[int, int]:
    """(elements of floating buffers in the model's dtype, bytes of the other buffers). The model's
    dtype is the one most parameter elements have: a buffer made in it (`torch.zeros_like(weight)`,
    or any float buffer a module makes under the default dtype `from_config(dtype=...)` sets) is cast
    with the model; int64 position ids and RoPE frequencies made in fp32 keep their own dtype."""
    model_dtype = _model_dtype(inv)
    elements = sum(g.total for g in inv.buffers if g.dtype == model_dtype)
    fixed = sum(g.total * _DTYPE_BYTES.get(g.dtype, 4) for g in inv.buffers if g.dtype != model_dtype)
    return elements, fixed


def model_spec_from_inventory(inv: ModelInventory, *, model_id: str, config: Mapping[str, Any]) -> Any:
    """The engine's `ModelSpec` for an inventory: linears (with peft's all-linear answer),
    embeddings and every other parameter counted exactly; dimensions from the text config."""
    from .spec import LinearGroup, ModelSpec, _layer_types_from_names, _max_positions, checkpoint_dtype, parse_quantization_config

    d = inv.dims
    layers = int(d.get("num_hidden_layers") or 0)
    top_k = int(d.get("num_experts_per_tok") or 0)
    num_experts = int(d.get("num_experts") or 0)
    linears: list[LinearGroup] = []
    embedding = other = 0
    fused_layers = 0
    for g in inv.params:
        if g.kind == "linear":
            active = g.count
            if g.role == "expert" and num_experts and top_k:
                active = g.count * top_k // num_experts
            linears.append(LinearGroup(
                name=g.name.removesuffix(".weight"), in_features=g.in_features, out_features=g.out_features, count=g.count,
                role=g.role, bias=g.has_bias, active_count=active, is_nn_linear=g.nn_linear, lora_all_linear=g.lora, lora_rank_factor=g.lora_rank_factor,
            ))
        elif g.kind == "fused_expert":
            fused_layers = max(fused_layers, g.count)
            k = top_k or g.experts
            linears.append(LinearGroup(
                name=g.name, in_features=g.in_features, out_features=g.out_features, count=g.count * g.experts,
                active_count=g.count * min(k, g.experts), role="expert", bias=g.has_bias, is_nn_linear=False,
                lora_all_linear=g.lora, lora_rank_factor=g.lora_rank_factor,
            ))
        elif g.kind == "embedding":
            embedding += g.total
        elif g.kind == "bias":
            continue  # counted by its linear's `bias`
        else:
            other += g.total
    # Biases whose linear group was split by shape are rare; keep the total exact.
    counted = sum(x.num_params for x in linears) + embedding + other
    other += inv.num_params - counted
    raw_types = d.get("layer_types")
    layer_types = _layer_types_from_names(raw_types, layers, d) if inv.is_causal_lm or inv.is_encoder_decoder else ()
    towers = {t: n for t, n in inv.params_by_tower().items() if t != "text" and n}
    buffer_elements, fixed_buffer_bytes = _buffer_split(inv)
    if inv.source:
        notes = [f"Counted from the inventory shipped with the calculator ({inv.source}: transformers {inv.transformers_version}'s "
                 f"{inv.class_name} built on the meta device, exact parameter inventory)."]
    else:
        notes = [f"Counted from transformers {inv.transformers_version}'s {inv.class_name} built on the meta device (exact parameter inventory)."]
    if inv.lora_refused:
        notes.append(f"peft {inv.peft_version} refuses LoRA on {', '.join(inv.lora_refused)} of {inv.model_type} models "
                     "(peft/tuners/tuners_utils.py `_check_lora_target_modules_mamba`), so target_modules='all-linear' raises there; "
                     "all-linear is counted as every other linear layer, the explicit list peft accepts.")
    if towers:
        notes.append("Includes " + ", ".join(f"the {t} tower ({n / 1e6:,.1f}M parameters)" if t != "projector" else
                                             f"the projector ({n / 1e6:,.1f}M)" for t, n in sorted(towers.items())) + ".")
    h = int(d.get("hidden_size") or 0)
    heads = int(d.get("num_attention_heads") or 0)
    text_cfg = config
    for key in ("text_config", "llm_config", "language_config", "thinker_config"):
        if isinstance(config.get(key), Mapping):
            text_cfg = {**config[key], **{k: config[k] for k in ("torch_dtype", "dtype") if k in config}}
            break
    window = d.get("sliding_window")
    mla = _mla_dims(text_cfg, linears, heads) if isinstance(text_cfg, Mapping) else {}
    if mla:
        layer_types = tuple("mla" if kind == "full" else kind for kind in layer_types)
    return ModelSpec(
        model_id=model_id, model_type=inv.model_type, architecture=inv.class_name,
        hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=heads if mla else int(d.get("num_key_value_heads") or heads),
        head_dim=mla.pop("head_dim", 0) or int(d.get("head_dim") or 0), **mla,
        intermediate_size=int(d.get("intermediate_size") or 0), vocab_size=int(d.get("vocab_size") or 0),
        max_position_embeddings=_max_positions(text_cfg, int(d.get("max_position_embeddings") or 4096), model_id) if isinstance(text_cfg, Mapping) else 4096,
        layer_types=layer_types, sliding_window=int(window) if window else None,
        num_experts=num_experts if any(x.role == "expert" for x in linears) else 0,
        num_experts_per_tok=top_k if any(x.role == "expert" for x in linears) else 0,
        moe_intermediate_size=int(d.get("moe_intermediate_size") or d.get("intermediate_size") or 0) if num_experts else 0,
        num_moe_layers=fused_layers or (layers if num_experts else 0),
        # A router whose weight the model keeps in fp32 while the rest is not (DeepseekV3TopkRouter and the classes
        # built from it) computes fp32 logits and routing weights.
        router_bytes=4 if any(g.role == "router" and g.dtype == "fp32" for g in inv.params) and _model_dtype(inv) != "fp32" else 0,
        is_encoder_decoder=inv.is_encoder_decoder, is_causal_lm=inv.is_causal_lm,
        num_encoder_layers=int(d.get("num_encoder_layers") or 0),
        tie_word_embeddings=inv.tie_word_embeddings, supports_sdpa=inv.supports_sdpa,
        checkpoint_dtype=checkpoint_dtype(text_cfg if isinstance(text_cfg, Mapping) else config),
        linears=tuple(linears), embedding_params=embedding, other_params=other, untouched_tower_params=sum(towers.values()),
        buffer_elements=buffer_elements, fixed_buffer_bytes=fixed_buffer_bytes,
        quantization=parse_quantization_config(config), param_source="inventory", counted_by="inventory",
        notes=tuple(notes), raw_config=config,
    )


def _mla_dims(cfg: Mapping[str, Any], linears: list[Any], heads: int) -> dict[str, int]:
    """Multi-head latent attention's dimensions when the model has it (DeepSeek-V2 paper, arXiv:2405.04434
    sec. 2.1; transformers 5.24 `DeepseekV3Attention` and the classes built from it: MiniCPM3, Youtu,
    Sarvam-MLA, ...), else {}: the config names `kv_lora_rank`, `qk_nope_head_dim`, `qk_rope_head_dim`
    and `v_head_dim`, and the model has the linear that expands the latent (in: kv_lora_rank, out:
    heads x (nope + v), `kv_b_proj`). Such configs set `head_dim` to the rope part (RoPE's size), while
    the query/key head is nope + rope; the cache holds the latent and the rope key
    (`cache.update(kv_nope, k_rot)`), which layer kind "mla" counts."""
    def dim(key: str) -> int:
        v = cfg.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0

    kv, nope, rope, v = dim("kv_lora_rank"), dim("qk_nope_head_dim"), dim("qk_rope_head_dim"), dim("v_head_dim")
    if not (kv and nope and rope and v and heads):
        return {}
    if not any(g.role == "attention" and g.in_features == kv and g.out_features == heads * (nope + v) for g in linears):
        return {}
    return {"head_dim": nope + rope, "kv_lora_rank": kv, "q_lora_rank": dim("q_lora_rank"), "qk_rope_head_dim": rope, "v_head_dim": v}


def spec_from_inventory(model_id: str, config: Mapping[str, Any]) -> Any:
    """`ModelSpec` of a config the analytic formulas do not know, from its inventory.

    Without torch + transformers and no shipped inventory for this config, one line says what to
    install; it names the model type the user's config has (e.g. `mllama`), and the nested
    language model's type when there is one.
    """
    top = config.get("model_type")
    nested = next((config[k].get("model_type") for k in ("text_config", "llm_config", "language_config", "thinker_config")
                   if isinstance(config.get(k), Mapping) and config[k].get("model_type")), None)
    shipped = shipped_inventory(config)
    if shipped is None and not transformers_available():
        inner = f" (language model {nested!r})" if nested and nested != top else ""
        raise UnsupportedArchitectureError(
            f"{model_id}: model_type {top!r}{inner} has no analytic formula here and no inventory or trace profile of this config "
            f"ships with the calculator; both are made from transformers' own model, which needs torch + transformers ({ENABLE_HINT})."
        )
    if shipped is None:
        _check_dimensions(config, model_id)
    inv = shipped or build_inventory(config, model_id=model_id)
    return model_spec_from_inventory(inv, model_id=model_id, config=config)


def _numbers(config: Mapping[str, Any], depth: int = 0) -> Iterator[tuple[str, int]]:
    """(key, value) of every whole number in the config and its nested configs (4 levels deep),
    which is what the meta build reads its dimensions from; 1e9 as a float counts as 10^9."""
    from .bounds import is_whole_number

    for key, value in config.items():
        if isinstance(value, Mapping) and depth < 4:
            yield from _numbers(value, depth + 1)
        elif is_whole_number(value):
            yield key, int(value)


def _check_dimensions(config: Mapping[str, Any], model_id: str) -> None:
    """Before transformers builds anything: bound every dimension key (calculator/bounds.py; a hostile
    `num_hidden_layers: 10**9` must not reach a constructor), then the layers of all stacks together,
    which the inventory path constructs one by one (MAX_INVENTORY_LAYERS)."""
    from .bounds import DIMENSION_BOUNDS, LAYER_STACK_KEYS, MAX_INVENTORY_LAYERS, check_dimension

    where = f"config.json of {model_id or 'this model'}"
    layers = 0
    for key, value in _numbers(config):
        if key in DIMENSION_BOUNDS:
            check_dimension(key, value, where=where)
        if key in LAYER_STACK_KEYS and value > 0:
            layers += value
    if layers > MAX_INVENTORY_LAYERS.limit:
        raise MalformedConfigError(
            f"{where}: its layer stacks add up to {layers:,} layers, above the {MAX_INVENTORY_LAYERS.limit:,} that an "
            f"architecture outside the built-in formulas is counted with ({MAX_INVENTORY_LAYERS.why})."
        )
