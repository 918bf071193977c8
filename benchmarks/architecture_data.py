"""Generate calculator/data/architectures.json: what transformers' own classes say per model_type.

    python benchmarks/architecture_data.py          # ~1-2 min on 2 CPU cores (meta-device builds)

The torch-free analytic path (calculator/spec.py) reads this file instead of hard-coding family
lists. For every config class of the installed transformers:
- `tie_word_embeddings`: the config class's constructor default (a config.json without the key
  takes it: SmolLM3 and Starcoder2 tie, Llama does not).
For every model_type the analytic formulas claim, also (from a one-layer copy of the default
config, built on the meta device and read by calculator/inventory.py):
- `defaults`: the constructor's bool/str defaults (attention_bias, use_bias, hidden_act, ...);
- `supports_sdpa`: whether transformers runs SDPA by default (gemma2: no, it falls back to eager);
- `mlp_linears`: distinct linear weights of one dense MLP (3: gate/up/down; 2: plain c_fc/c_proj
  as in Starcoder2, or a fused gate_up as in Phi-3) and `mlp_matrices`, its weight elements in
  units of hidden x intermediate (3: gated, 2: plain two-matrix MLP);
- `norm_params_per_layer` / `final_norm_params`: norm parameters in units of hidden_size
  (RMSNorm 1 per norm, LayerNorm with bias 2, OLMo's non-parametric LayerNorm 0);
- `attention_linears`: distinct linear weights of one attention block (4: q/k/v/o; 2: a fused
  qkv projection and the output, as in GPT-2's c_attn, GPT-NeoX's query_key_value, Phi-3's
  qkv_proj: one LoRA adapter and one saved input instead of three);
- `norm_class`: the class of the decoder layers' norms ("LayerNorm" is torch's `nn.LayerNorm`,
  whose fused kernel saves its c-byte input; the RMSNorm classes upcast to fp32 in Python), "" when
  the layers' norms have no parameters;
- `lora_experts` / `lora_router` / `gate_up_rank_factor`: what peft's all-linear adapts in the MoE
  block (peft's v4->v5 conversion table decides; read by running peft on the meta model).
Re-run after upgrading transformers or peft; tests/test_inventory.py checks the file matches.
"""

from __future__ import annotations

import inspect
import json
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parents[1] / "calculator" / "data" / "architectures.json"


def _ctor_defaults(config_cls: type) -> dict[str, Any]:
    try:
        params = inspect.signature(config_cls.__init__).parameters
    except (TypeError, ValueError):
        return {}
    return {k: p.default for k, p in params.items() if isinstance(p.default, bool | str) and not k.startswith("_")}


def one_layer_config(model_type: str) -> dict[str, Any]:
    """The default config of `model_type` with one decoder layer (layer_types cut to match)."""
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(model_type).to_dict()
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(cfg.get(key), int):
            cfg[key] = 1
    if isinstance(cfg.get("layer_types"), list):
        cfg["layer_types"] = cfg["layer_types"][:1]
    for key in ("first_k_dense_replace",):  # keep the one layer an MoE layer
        if key in cfg:
            cfg[key] = 0
    if cfg.get("mlp_only_layers"):
        cfg["mlp_only_layers"] = []
    return cfg


def layer_facts(model_type: str) -> dict[str, Any]:
    from calculator.inventory import build_inventory

    inv = build_inventory(one_layer_config(model_type))
    h = int(inv.dims.get("hidden_size") or 1)
    in_layer = [g for g in inv.params if ".*." in g.name and g.tower == "text"]
    dense_mlp = {g.name for g in in_layer if g.kind == "linear" and g.role == "mlp" and "shared" not in g.name}
    attention = {g.name for g in in_layer if g.kind == "linear" and g.role == "attention"}
    norms = sum(g.numel for g in in_layer if g.kind == "norm" and g.numel % h == 0 and g.numel >= h)
    final = sum(g.numel for g in inv.params if ".*." not in g.name and g.kind == "norm")
    experts = [g for g in inv.params if g.role == "expert"]
    routers = [g for g in inv.params if g.role == "router"]
    inter = int(inv.dims.get("intermediate_size") or 0)
    mlp_weights = sum(g.numel for g in in_layer if g.name in dense_mlp)
    facts: dict[str, Any] = {
        "class": inv.class_name,
        "supports_sdpa": inv.supports_sdpa,
        "mlp_linears": len(dense_mlp) or None,
        "attention_linears": len(attention) or None,
        # weight elements of the dense MLP in units of hidden x intermediate: 3 gated, 2 plain
        "mlp_matrices": round(mlp_weights / (h * inter)) if dense_mlp and inter else None,
        "norm_params_per_layer": norms // h,
        "final_norm_params": final // h,
        "norm_class": min((g.module_class for g in in_layer if g.kind == "norm"), default=""),
    }
    if experts:
        facts["lora_experts"] = any(bool(g.lora) for g in experts)
        facts["lora_router"] = any(bool(g.lora) for g in routers)
        facts["gate_up_rank_factor"] = max((g.lora_rank_factor for g in experts if "gate_up" in g.name), default=1)
    return facts


def main() -> None:
    import peft
    import transformers
    from transformers import CONFIG_MAPPING

    from calculator.spec import SUPPORTED_MODEL_TYPES

    warnings.simplefilter("ignore")
    out: dict[str, Any] = {}
    for model_type in sorted(CONFIG_MAPPING.keys()):
        try:
            config_cls = CONFIG_MAPPING[model_type]
        except Exception:  # a config class whose module fails to import in this install
            continue
        defaults = _ctor_defaults(config_cls)
        entry: dict[str, Any] = {}
        if "tie_word_embeddings" in defaults:
            entry["tie_word_embeddings"] = defaults["tie_word_embeddings"]
        if model_type in SUPPORTED_MODEL_TYPES:
            entry["defaults"] = {k: v for k, v in defaults.items() if k != "tie_word_embeddings"}
            try:
                entry.update(layer_facts(model_type))
            except Exception as e:
                entry["build_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            print(model_type, {k: v for k, v in entry.items() if k != "defaults"}, flush=True)
        if entry:
            out[model_type] = entry
    data = {
        "generated_by": "benchmarks/architecture_data.py",
        "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
        "model_types": out,
    }
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    # Second pass, with the facts above in place: does the analytic formula now count what
    # transformers builds for the default config (two layers, so alternating patterns show)?
    import importlib

    import calculator.spec

    importlib.reload(calculator.spec)
    for model_type in SUPPORTED_MODEL_TYPES:
        entry = out.get(model_type)
        if entry is None or "build_error" in entry:
            continue
        entry["analytic_delta"] = analytic_delta(model_type)
        print(model_type, "analytic vs transformers at defaults:", entry["analytic_delta"], flush=True)
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(out)} model types)")


def analytic_delta(model_type: str) -> float | None:
    """(analytic - transformers) / transformers parameters for a two-layer default config."""
    from calculator.inventory import build_inventory
    from calculator.spec import model_spec_from_config

    cfg = one_layer_config(model_type)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if cfg.get(key) == 1:
            cfg[key] = 2
    if isinstance(cfg.get("layer_types"), list):
        from transformers import AutoConfig

        cfg["layer_types"] = AutoConfig.for_model(model_type).to_dict()["layer_types"][:2]
    try:
        inv = build_inventory(cfg)
        spec = model_spec_from_config(model_type, cfg, use_inventory=False)
    except Exception:
        return None
    return round(spec.config_num_params / inv.num_params - 1, 6)


if __name__ == "__main__":
    main()
