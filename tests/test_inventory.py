"""The meta-device inventory of transformers' own model, and the analytic ModelSpec it checks.

Every number here is transformers 5.24 / peft 0.21 building the model, read back; the analytic
formulas of calculator/spec.py must agree with it. The full sweep over every config class of
transformers is benchmarks/architecture_sweep.py; this file keeps a fast, representative subset.
"""

from __future__ import annotations

import pytest

from calculator import memory
from calculator.catalog import catalog_config, catalog_entries, find_catalog_entry
from calculator.spec import model_spec_from_config

pytestmark = pytest.mark.trace
pytest.importorskip("torch")
pytest.importorskip("transformers")

from calculator import inventory  # noqa: E402 - after the importorskips: the module itself needs neither

# Layer keys shrunk for speed: every count is linear in the number of layers, so a 2-layer copy
# checks the same formulas (DeepSeek-V3 keeps 4: one MoE layer after its 3 dense ones).
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers")
# transformers' HiggsAudioV2 port has no text LM head and 1,024 (not 1,026) codes per codebook;
# the catalog (and the analytic formula) count the original checkpoint (calculator/data/models/SOURCES.md).
_PORT_DIFFERS = {"bosonai/higgs-audio-v2-generation-3B-base"}


def _shrunk(config: dict) -> dict:
    out = dict(config)
    layers = 4 if "first_k_dense_replace" in out else 2
    for key in _LAYER_KEYS:
        if isinstance(out.get(key), int) and out[key] > layers:
            out[key] = layers
    if isinstance(out.get("layer_types"), list):
        out["layer_types"] = out["layer_types"][:layers]
    return out


def _role_totals(spec) -> dict[str, int]:
    totals: dict[str, int] = {}
    for g in spec.linears:
        totals[g.role] = totals.get(g.role, 0) + g.num_params
    return totals


# One catalog config per analytic family (the sweep covers all of them:
# benchmarks/architecture_sweep.py): llama (tied), qwen2 (q/k/v bias), qwen3 (q/k norm),
# mixtral / qwen3_moe / deepseek_v3 / gpt_oss (fused experts, MLA, sinks), bert, opt, gpt-j, gpt_bigcode.
REPRESENTATIVE = (
    "meta-llama/Llama-3.2-3B", "Qwen/Qwen2.5-0.5B", "Qwen/Qwen3-4B", "mistralai/Mixtral-8x7B-v0.1", "Qwen/Qwen3-30B-A3B",
    "deepseek-ai/DeepSeek-V3", "openai/gpt-oss-20b", "google-bert/bert-base-uncased", "facebook/opt-350m",
    "EleutherAI/gpt-j-6b", "bigcode/octocoder",
)


def test_representative_subset_is_in_the_catalog():
    assert set(REPRESENTATIVE) <= set(catalog_entries()) - _PORT_DIFFERS


@pytest.mark.parametrize("model_id", REPRESENTATIVE)
def test_catalog_inventory_agrees_with_analytic_spec(model_id):
    config = _shrunk(catalog_config(find_catalog_entry(model_id)))
    config.pop("quantization_config", None)
    analytic = model_spec_from_config(model_id, config, use_inventory=False)
    inv = inventory.build_inventory(config, model_id=model_id)
    counted = inventory.model_spec_from_inventory(inv, model_id=model_id, config=config)
    # DeepSeek-V3's router score-correction bias (n_experts per MoE layer) is a buffer in
    # transformers and a tensor in the checkpoint, which the analytic count follows.
    extra = analytic.num_moe_layers * analytic.num_experts if analytic.model_type == "deepseek_v3" else 0
    assert analytic.config_num_params == inv.num_params + extra
    assert counted.config_num_params == inv.num_params
    # Linear groups: the same weights in each role (quantization and LoRA act on these).
    a, c = _role_totals(analytic), _role_totals(counted)
    if analytic.is_causal_lm:  # the output embedding (BertModel's pooler is no output head for peft)
        assert a.get("head", 0) == c.get("head", 0)
        assert analytic.tie_word_embeddings == counted.tie_word_embeddings
    assert a.get("expert", 0) == c.get("expert", 0)
    assert sum(a.values()) == sum(c.values())
    assert analytic.supports_sdpa == counted.supports_sdpa


def test_unknown_family_is_counted_from_transformers():
    # phi has no analytic formula; transformers' PhiForCausalLM (defaults: 24 layers, h 2048,
    # I 8192, vocab 51200, untied, biases everywhere, one LayerNorm per parallel attention/MLP
    # layer) is counted exactly: per layer 4 x (2048^2 + 2048) attention + 2048 x 8192 + 8192 +
    # 8192 x 2048 + 2048 MLP + 2 x 2048 norm = 50,354,176; x 24 + embed 104,857,600 + final LN
    # 4,096 + lm_head 2048 x 51200 + 51200 = 1,418,270,720.
    spec = model_spec_from_config("microsoft/phi-1_5-like", {"model_type": "phi"})
    assert spec.counted_by == "inventory" and spec.param_source == "inventory"
    assert spec.architecture == "PhiForCausalLM"
    assert spec.config_num_params == 24 * 50_354_176 + 104_857_600 + 4_096 + 2048 * 51200 + 51200 == 1_418_270_720
    assert spec.num_hidden_layers == 24 and len(spec.layer_types) == 24
    assert any("transformers" in n and "meta device" in n for n in spec.notes)


def test_inventory_names_the_model_the_user_typed():
    # mllama's language model is nested (text_config); the full model is built, towers included.
    spec = model_spec_from_config("meta-llama/Llama-3.2-11B-Vision-like", {"model_type": "mllama"})
    assert spec.architecture == "MllamaForConditionalGeneration"
    inv = inventory.build_inventory({"model_type": "mllama"})
    towers = inv.params_by_tower()
    assert towers["vision"] > 0 and towers["text"] > towers["vision"]
    assert sum(towers.values()) == inv.num_params == spec.config_num_params


def test_buffers_are_counted_with_the_weights():
    """I-BERT keeps an integer copy of every quantized weight as a buffer (transformers 5.24
    `QuantLinear` / `QuantEmbedding`: `weight_integer` like the weight, `fc_scaling_factor` and
    `bias_integer` per output), made in the model's dtype. IBertConfig() cut to 2 layers (h 768, I 3072):
      embeddings (30,522 + 512 + 2) x 768                          = 23,835,648
      linears 2 x (4 x 768^2 + 2 x 768 x 3072)                     = 14,155,776
      scaling + bias per output 2 x 2 x (4 x 768 + 3072 + 768)     =     27,648
      activation ranges, scaling factors, LayerNorm shifts (scalars) =        104
    = 38,019,176 elements, 76,038,352 bytes in bf16, plus int64 position_ids 512 x 8 = 4,096: the
    trace's MemTracker "buffers" (76,042,448). The sweep read the estimate -40.9% off without them."""
    spec = model_spec_from_config("ibert", {"model_type": "ibert", "num_hidden_layers": 2})
    assert (spec.buffer_elements, spec.fixed_buffer_bytes) == (38_019_176, 4_096)
    from calculator.quantization import weight_format
    from calculator.workload import Workload

    fmt = weight_format(spec, Workload(mode="inference", precision="bf16"))
    assert memory.weight_bytes(spec, fmt) == spec.num_params * 2 + 76_042_448


def test_encoder_decoder_builds_whole_model():
    spec = model_spec_from_config("facebook/bart-like", {"model_type": "bart"})
    assert spec.architecture == "BartForConditionalGeneration" and spec.is_encoder_decoder


def test_inventory_round_trips_through_json():
    inv = inventory.build_inventory({"model_type": "mixtral", "num_hidden_layers": 1})
    again = inventory.ModelInventory.from_json(inventory.ModelInventory.to_json(inv))
    assert again == inv


def _peft_trainable(config: dict) -> int:
    """Trainable parameters peft itself creates for all-linear r=8 on the real (meta) model."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = inventory.build_meta_model(config)
    with torch.device("meta"):
        peft_model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear"))
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe", "qwen3_moe", "llama", "gpt_oss"])
def test_lora_all_linear_is_what_peft_adapts(model_type):
    """peft 0.21 adapts transformers 5's fused experts and router for the MoE types in its v4->v5
    conversion table (mixtral, qwen3_moe: fused gate_up at rank 2r), not for qwen2_moe or gpt-oss."""
    config = {"model_type": model_type, "num_hidden_layers": 1}
    spec = inventory.model_spec_from_inventory(inventory.build_inventory(config), model_id=model_type, config=config)
    plan = memory.AdapterPlan(names=memory.lora_target_names(spec, "all-linear"), rank=8, adapter_bytes=4)
    assert memory.lora_params(spec, plan) == _peft_trainable(config)
    experts_adapted = any(g.role == "expert" and plan.adapts(g) for g in spec.linears)
    assert experts_adapted == (model_type in ("mixtral", "qwen3_moe"))
    # The torch-free analytic path knows the same from calculator/data/architectures.json.
    full = inventory.hf_config(config).to_dict()
    analytic = model_spec_from_config(model_type, full, use_inventory=False)
    analytic_plan = memory.AdapterPlan(names=memory.lora_target_names(analytic, "all-linear"), rank=8, adapter_bytes=4)
    assert memory.lora_params(analytic, analytic_plan) == memory.lora_params(spec, plan)


@pytest.mark.parametrize("model_type", ["mamba2", "falcon_h1"])
def test_lora_all_linear_on_mamba_based_models_adapts_what_peft_accepts(model_type):
    """peft 0.21 raises on target_modules="all-linear" for Mamba-based model types: it refuses
    LoRA on out_proj and conv1d (peft/tuners/tuners_utils.py `_check_lora_target_modules_mamba`).
    The estimate counts all-linear as every other linear layer, and a FakeTensor LoRA step that
    passes peft that explicit list trains exactly as many parameters."""
    from calculator.estimate import estimate
    from calculator.verify import trace_workload
    from calculator.workload import Workload

    config = {**inventory.hf_config({"model_type": model_type}).to_dict(), "num_hidden_layers": 2}
    config.pop("layer_types", None)
    spec = model_spec_from_config(model_type, config)
    assert {g.name.rsplit(".", 1)[-1] for g in spec.linears if g.lora_all_linear is False} >= {"out_proj"}
    assert any("refuses LoRA on out_proj" in n for n in spec.notes)
    w = Workload(mode="lora", precision="bf16", context_length=64, batch_size=1, lora_rank=8)
    traced = trace_workload(config, w, model_id=model_type, max_seconds=120)
    assert estimate(spec, w).trainable_params == traced.trainable_params
    if model_type == "mamba2":
        # Only in_proj is adapted: 2 layers x r=8 x (4,096 in + 18,560 out), where in_proj's out is
        # 2 x 8,192 (x and z) + 2 x 8 groups x 128 state (B, C) + 128 heads (dt).
        assert traced.trainable_params == 2 * 8 * (4096 + 2 * 8192 + 2 * 8 * 128 + 128) == 362_496
    assert any("refuses LoRA on out_proj" in n for n in traced.notes)


def test_architecture_data_matches_installed_transformers():
    import json
    from importlib import resources

    import peft
    import transformers

    data = json.loads(resources.files("calculator.data").joinpath("architectures.json").read_text(encoding="utf-8"))
    assert (data["transformers_version"], data["peft_version"]) == (transformers.__version__, peft.__version__), (
        "regenerate calculator/data/architectures.json: python benchmarks/architecture_data.py"
    )


def test_multimodal_config_counts_its_towers():
    llama = catalog_config(find_catalog_entry("meta-llama/Llama-3.2-3B"))
    config = {"model_type": "llava", "text_config": _shrunk(llama), "vision_config": {"model_type": "clip_vision_model"}}
    spec = model_spec_from_config("org/llava-like", config)
    text_only = model_spec_from_config("org/llava-like", config, use_inventory=False)
    assert spec.counted_by == "inventory" and spec.architecture == "LlavaForConditionalGeneration"
    # CLIPVisionConfig defaults are ViT-B/32 at 224 px: class embedding 768, patch conv 3 x 32 x 32 x 768
    # = 2,359,296 (no bias), 50 positions x 768 = 38,400, pre/post LayerNorm 2 x 1,536, 12 layers x
    # (4 x (768^2 + 768) + 768 x 3072 + 3072 + 3072 x 768 + 768 + 2 LayerNorms 3,072 = 7,087,872);
    # the projector maps 768 -> 3072 -> 3072 with biases.
    tower = 768 + 2_359_296 + 38_400 + 2 * 1_536 + 12 * 7_087_872
    projector = 768 * 3072 + 3072 + 3072 * 3072 + 3072
    assert spec.config_num_params - text_only.config_num_params == tower + projector == 87_456_000 + 11_802_624


def test_architecture_sweep_columns_on_two_configs():
    """The sweep (benchmarks/architecture_sweep.py) on two configs: one analytic family, one counted
    from transformers' class; the full run's results are committed under benchmarks/results/."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "architecture_sweep.py"
    module_spec = importlib.util.spec_from_file_location("architecture_sweep", path)
    sweep = importlib.util.module_from_spec(module_spec)
    sys.modules["architecture_sweep"] = sweep  # dataclasses look their module up there
    module_spec.loader.exec_module(sweep)
    llama = _shrunk(catalog_config(find_catalog_entry("meta-llama/Llama-3.2-3B")))
    rows = [sweep.Row(name="llama-2-layer", source="catalog", config=llama),
            sweep.Row(name="phi", source="transformers default", config={"model_type": "phi", "num_hidden_layers": 2})]
    for row in rows:
        sweep.run_row(row)
    assert rows[0].values["answered"] and rows[0].values["counted_by"] == "analytic" and rows[0].values["analytic_delta"] == 0
    assert rows[1].values["kind"] == "decoder" and rows[1].values["counted_by"] == "inventory" and rows[1].values["param_delta"] == 0
    table = sweep.summarize(rows)
    assert "| decoder | 1 | 1 (100%) | 1 (100%) |" in table


def test_hostile_dimensions_never_reach_a_transformers_constructor():
    from calculator.errors import MalformedConfigError

    with pytest.raises(MalformedConfigError, match="num_hidden_layers"):
        model_spec_from_config("org/evil", {"model_type": "phi", "num_hidden_layers": 10**9})
    with pytest.raises(MalformedConfigError, match="hidden_size"):
        model_spec_from_config("org/evil", {"model_type": "mllama", "text_config": {"hidden_size": 10**8}})


def test_inventory_path_refuses_more_layers_than_it_builds_in_time(monkeypatch):
    """Within the per-stack bound (2,048) but past the inventory path's total (512): refused before
    any layer is built (a 2,048-layer phi config took 73 s to count on this machine)."""
    from calculator.bounds import MAX_INVENTORY_LAYERS
    from calculator.errors import MalformedConfigError

    def never(*args, **kwargs):
        raise AssertionError("built a model past the inventory layer bound")

    monkeypatch.setattr(inventory, "build_inventory", never)
    # BART: 300 encoder + 300 decoder layers, each stack within MAX_LAYERS, 600 in all.
    with pytest.raises(MalformedConfigError, match="600 layers"):
        model_spec_from_config("org/deep", {"model_type": "bart", "encoder_layers": 300, "decoder_layers": 300})
    assert MAX_INVENTORY_LAYERS.limit == 512
