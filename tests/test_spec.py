"""ModelSpec from real config.json files: parameter counts and the shapes the formulas use.

Each count is checked against the exact count of the real checkpoint (safetensors total_size / 2
for 16-bit checkpoints, cited in calculator/data/models/SOURCES.md) and, below, against
transformers' own model built on the meta device from the same config.
"""

from __future__ import annotations

import pytest

from calculator.catalog import catalog_config, catalog_entries, find_catalog_entry
from calculator.errors import MalformedConfigError, UnsupportedArchitectureError
from calculator.spec import model_spec_from_config


def spec_of(model_id: str):
    entry = find_catalog_entry(model_id)
    assert entry is not None, model_id
    return model_spec_from_config(entry.model_id, catalog_config(entry))


@pytest.mark.parametrize(
    ("model_id", "params"),
    [
        # total_size 16,060,522,496 B of bf16 = 8,030,261,248 parameters.
        ("meta-llama/Llama-3.1-8B", 8_030_261_248),
        # total_size 13,476,839,424 B of fp16.
        ("meta-llama/Llama-2-7b-hf", 6_738_415_616),
        # Qwen2.5-7B-Instruct index total_size 15,231,233,024 B (q/k/v biases included).
        ("Qwen/Qwen2.5-7B", 7_615_616_512),
        # Qwen3-8B: total_size 16,381,470,720 B / 2 (q_norm, k_norm per layer).
        ("Qwen/Qwen3-8B", 8_190_735_360),
        # Qwen3-30B-A3B MoE: 16-shard index total_size 61,064,245,248 B / 2.
        ("Qwen/Qwen3-30B-A3B", 30_532_122_624),
        # 30-shard Llama-3.1-70B index total_size 141,107,412,992 B / 2.
        ("meta-llama/Llama-3.1-70B", 70_553_706_496),
        # Mixtral index total_size 93,405,585,408 B / 2.
        ("mistralai/Mixtral-8x7B-v0.1", 46_702_792_704),
        # Original HiggsAudioModel per-module dump: embed 394,002,432 + 28 dual-FFN layers
        # 4,932,845,568 + norm 3,072 + text & audio LM heads 419,217,408 + codebooks 25,214,976.
        ("bosonai/higgs-audio-v2-generation-3B-base", 5_771_283_456),
        # BertModel: embeddings (30522 + 512 + 2) x 768 + LayerNorm 1,536; 12 layers x 7,087,872; pooler 590,592.
        ("google-bert/bert-base-uncased", 109_482_240),
    ],
)
def test_parameter_count_matches_checkpoint(model_id, params):
    assert spec_of(model_id).config_num_params == params


def test_llama_31_8b_shapes():
    spec = spec_of("meta-llama/Llama-3.1-8B")
    assert (spec.num_hidden_layers, spec.num_attention_heads, spec.num_key_value_heads, spec.head_dim) == (32, 32, 8, 128)
    assert spec.layer_types == ("full",) * 32
    assert not spec.tie_word_embeddings


def test_qwen3_explicit_head_dim():
    # Qwen3-8B: hidden 4096 / 32 heads = 128, and the config states head_dim 128 explicitly.
    spec = spec_of("Qwen/Qwen3-8B")
    assert spec.head_dim == 128 and spec.num_key_value_heads == 8


def test_gpt_oss_hybrid_sliding_layers_and_mxfp4():
    spec = spec_of("openai/gpt-oss-20b")
    assert spec.layer_types.count("sliding") == 12 and spec.layer_types.count("full") == 12
    assert spec.sliding_window == 128
    assert spec.num_experts == 32 and spec.num_experts_per_tok == 4
    assert spec.quantization is not None and spec.quantization.method == "mxfp4"
    # Model card: "21B parameters with 3.6B active"; OpenAI counts active parameters without the
    # embedding table (Mistral and Qwen count it; `active_params` follows them).
    assert 20.5e9 < spec.config_num_params < 21.5e9
    assert 3.55e9 < spec.active_params - spec.embedding_params < 3.65e9


def test_deepseek_v3_mla_and_moe():
    spec = spec_of("deepseek-ai/DeepSeek-V3")
    assert spec.layer_types == ("mla",) * 61
    assert (spec.kv_lora_rank, spec.qk_rope_head_dim) == (512, 64)
    # 61 layers, first 3 dense: 58 MoE layers of 256 routed + 1 shared expert.
    assert spec.num_moe_layers == 58 and spec.num_shared_experts == 1
    # Model card: 671B main-model parameters, 37B activated per token.
    assert 670e9 < spec.config_num_params < 672e9
    assert 36e9 < spec.active_params < 38.5e9
    assert spec.quantization is not None and spec.quantization.block_size == (128, 128)


def test_mixtral_active_parameters():
    spec = spec_of("mistralai/Mixtral-8x7B-v0.1")
    # Mistral AI: 46.7B total, 12.9B used per token (2 of 8 experts).
    assert 12.8e9 < spec.active_params < 13.0e9


def test_bert_is_encoder_without_kv_cache():
    spec = spec_of("google-bert/bert-base-uncased")
    assert not spec.is_causal_lm and spec.layer_types == ()
    assert spec.checkpoint_dtype == "fp32"


def test_gptq_checkpoint_quantization_read():
    spec = spec_of("kaitchup/Mistral-7B-v0.1-gptq-2bit")
    q = spec.quantization
    assert q is not None and (q.method, q.bits, q.group_size) == ("gptq", 2, 128)
    assert spec.layer_types == ("sliding",) * 32 and spec.sliding_window == 4096


def test_t5_encoder_decoder_from_transformers_defaults():
    # transformers' T5Config() defaults are t5-small's config (its docstring says so):
    # d_model 512, d_kv 64, d_ff 2048, 6+6 layers, 8 heads, vocab 32128, tied embeddings.
    config = {"model_type": "t5", "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": 6, "num_heads": 8,
              "vocab_size": 32128, "relative_attention_num_buckets": 32, "feed_forward_proj": "relu", "tie_word_embeddings": True}
    spec = model_spec_from_config("google-t5/t5-small", config)
    # t5-small T5ForConditionalGeneration: 60,506,624 parameters.
    assert spec.config_num_params == 60_506_624
    assert spec.is_encoder_decoder and spec.num_encoder_layers == 6


def test_nested_text_config_is_read():
    llama = catalog_config(find_catalog_entry("meta-llama/Llama-3.2-3B"))
    wrapped = {"model_type": "llava", "text_config": llama, "vision_config": {"hidden_size": 1024}}
    # The analytic formulas count the language model and say the towers are not counted (with
    # torch + transformers the whole model is counted from LlavaForConditionalGeneration:
    # tests/test_inventory.py).
    spec = model_spec_from_config("org/vlm", wrapped, use_inventory=False)
    assert spec.config_num_params == spec_of("meta-llama/Llama-3.2-3B").config_num_params
    assert any("vision" in n for n in spec.notes)


def test_unknown_architecture_fails_closed():
    # Without the inventory fallback the analytic path refuses a family it has no formula for...
    with pytest.raises(UnsupportedArchitectureError, match="not supported"):
        model_spec_from_config("org/x", {"model_type": "mamba", "hidden_size": 768}, use_inventory=False)
    # ...and a model_type transformers does not ship is refused by both (remote code never runs).
    with pytest.raises(UnsupportedArchitectureError, match="trust_remote_code"):
        model_spec_from_config("org/x", {"model_type": "my_custom_arch", "hidden_size": 768, "auto_map": {"AutoModel": "m.M"}})


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "vocab_size": 32000},
        {"model_type": "llama", "hidden_size": "big", "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 8, "vocab_size": 8},
        {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 4,
         "intermediate_size": 8, "vocab_size": 8},
        {"hidden_size": 64},
        [1, 2, 3],
    ],
)
def test_malformed_configs_name_what_is_wrong(config):
    with pytest.raises(MalformedConfigError):
        model_spec_from_config("org/bad", config)


def test_every_catalog_entry_parses():
    for model_id, entry in catalog_entries().items():
        spec = model_spec_from_config(model_id, catalog_config(entry))
        assert spec.config_num_params > 0
        if entry.num_params is not None:
            assert spec.config_num_params == entry.num_params, model_id


@pytest.mark.trace
@pytest.mark.parametrize("model_id", sorted(catalog_entries()))
def test_counts_equal_transformers_meta_model(model_id):
    """The same config built by transformers on the meta device has the same parameter count
    (higgs-audio differs by design: transformers' port drops the text LM head the checkpoint has;
    bert's catalog architecture adds the MLM head on top of BertModel)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if model_id in ("bosonai/higgs-audio-v2-generation-3B-base", "google-bert/bert-base-uncased"):
        pytest.skip("architecture differs from the checkpoint's module set by design (see docstring)")
    config = dict(catalog_config(find_catalog_entry(model_id)))
    config.pop("quantization_config", None)
    hf_config = transformers.CONFIG_MAPPING[config["model_type"]].from_dict(config)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config)
    hf_count = sum(p.numel() for p in model.parameters())
    spec = spec_of(model_id)
    # DeepSeek-V3's router score-correction bias is a buffer in transformers, a tensor in the checkpoint.
    extra = spec.num_moe_layers * spec.num_experts if spec.model_type == "deepseek_v3" else 0
    assert spec.config_num_params == hf_count + extra


def test_rope_scaled_maximum_context():
    # Reconstructed higgs-audio config: max_position_embeddings 2048 but a llama3 rope of factor 32
    # over 1024 original positions -> 32,768 tokens; Llama-3.1-8B states 131,072 itself.
    assert spec_of("bosonai/higgs-audio-v2-generation-3B-base").max_position_embeddings == 32_768
    assert spec_of("meta-llama/Llama-3.1-8B").max_position_embeddings == 131_072


# google/gemma-3-12b-it's text_config as a dict literal in a public trainer (search index file
# 57742741743, "unsloth_fixed" copy of the checkpoint's config; transformers_version 4.51.3).
GEMMA3_12B_TEXT = {
    "attention_bias": False, "attention_dropout": 0.0, "attn_logit_softcapping": None, "cache_implementation": "hybrid",
    "final_logit_softcapping": None, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 3840,
    "initializer_range": 0.02, "intermediate_size": 15360, "max_position_embeddings": 131072, "model_type": "gemma3_text",
    "num_attention_heads": 16, "num_hidden_layers": 48, "num_key_value_heads": 8, "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "rope_theta": 1000000, "sliding_window": 1024, "sliding_window_pattern": 6, "torch_dtype": "bfloat16", "use_cache": True,
    "vocab_size": 262208,
}


def test_gemma3_hybrid_sliding_pattern():
    spec = model_spec_from_config("google/gemma-3-12b-it", {"model_type": "gemma3", "text_config": GEMMA3_12B_TEXT,
                                                             "vision_config": {"hidden_size": 1152}})
    # Every 6th layer is global: 8 full and 40 sliding (1024-token window) of 48.
    assert spec.layer_types.count("full") == 8 and spec.layer_types.count("sliding") == 40
    assert spec.layer_types[5] == "full" and spec.layer_types[0] == "sliding"
    assert spec.head_dim == 256 and spec.tie_word_embeddings
    # KV per token at 32k: full layers 32,768 tokens, sliding layers 1,024 (2 x 8 heads x 256 x 2 B per layer-token).
    from calculator import memory

    per_layer_token = 2 * 8 * 256 * 2
    assert memory.kv_cache_bytes(spec, batch_size=1, seq_len=32_768, kv_bits=16) == per_layer_token * (8 * 32_768 + 40 * 1_024)


@pytest.mark.trace
def test_gemma3_text_count_equals_transformers():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**GEMMA3_12B_TEXT))
    assert model_spec_from_config("google/gemma-3-12b-it", GEMMA3_12B_TEXT).config_num_params == sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------
# Mechanisms read from transformers' own classes (calculator/data/architectures.json)
# --------------------------------------------------------------------------------------------

# HuggingFaceTB/SmolLM3-3B's shape (transformers 5.24 SmolLM3Config defaults) without
# `tie_word_embeddings`: the config class's default (True) applies, as in transformers.
SMOLLM3_NO_TIE_KEY = {
    "model_type": "smollm3", "hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
    "num_key_value_heads": 4, "intermediate_size": 11008, "vocab_size": 128256, "max_position_embeddings": 32768,
}


def test_missing_tie_key_takes_the_config_class_default():
    spec = model_spec_from_config("HuggingFaceTB/SmolLM3-3B", SMOLLM3_NO_TIE_KEY, use_inventory=False)
    assert spec.tie_word_embeddings and not any(g.role == "head" for g in spec.linears)
    # Per layer: q, o 2048^2 + k, v 512 x 2048 = 10,485,760; MLP 3 x 2048 x 11008 = 67,633,152;
    # 2 RMSNorms 4,096 -> 78,123,008 x 36 = 2,812,428,288; + embedding 128256 x 2048 = 262,668,288
    # (shared with the LM head) + final norm 2,048.
    assert spec.config_num_params == 3_075_098_624


# transformers 5.24 Starcoder2Config() defaults (bigcode/starcoder2-3b's shape).
STARCODER2_DEFAULTS = {
    "model_type": "starcoder2", "hidden_size": 3072, "num_hidden_layers": 30, "num_attention_heads": 24,
    "num_key_value_heads": 2, "intermediate_size": 12288, "vocab_size": 49152, "use_bias": True,
}


def test_starcoder2_has_a_plain_two_matrix_mlp_with_biases():
    spec = model_spec_from_config("bigcode/starcoder2-3b", STARCODER2_DEFAULTS, use_inventory=False)
    mlp = [g for g in spec.linears if g.role == "mlp"]
    assert [g.name for g in mlp] == ["mlp.c_fc", "mlp.c_proj"] and all(g.bias for g in mlp)
    # Per layer: q, o 3072^2 + 3072 and k, v 256 x 3072 + 256 -> 20,453,888; c_fc 3072 x 12288 + 12288
    # and c_proj 12288 x 3072 + 3072 -> 75,512,832; 2 LayerNorms (weight + bias) 12,288 ->
    # 95,979,008 x 30 = 2,879,370,240; + tied embedding 49152 x 3072 = 150,994,944 + final LayerNorm 6,144.
    assert spec.config_num_params == 3_030_371_328


def test_eager_attention_where_transformers_has_no_sdpa():
    from calculator.estimate import EAGER_FALLBACK_NOTE, estimate
    from calculator.workload import Workload

    gemma2 = {"model_type": "gemma2", "hidden_size": 2304, "num_hidden_layers": 26, "num_attention_heads": 8,
              "num_key_value_heads": 4, "head_dim": 256, "intermediate_size": 9216, "vocab_size": 256000}
    assert not model_spec_from_config("google/gemma-2-2b", gemma2, use_inventory=False).supports_sdpa
    assert spec_of("meta-llama/Llama-3.2-3B").supports_sdpa and not spec_of("openai/gpt-oss-20b").supports_sdpa
    est = estimate(model_spec_from_config("google/gemma-2-2b", gemma2, use_inventory=False), Workload(mode="lora"))
    assert EAGER_FALLBACK_NOTE in est.notes


def test_lora_all_linear_adapts_fused_experts_where_peft_does():
    from calculator import memory

    mixtral = spec_of("mistralai/Mixtral-8x7B-v0.1")
    plan = memory.AdapterPlan(names=memory.lora_target_names(mixtral, "all-linear"), rank=8, adapter_bytes=4)
    # peft 0.21 on transformers 5.24's MixtralForCausalLM, per layer and unit rank: q, o r(4096 + 4096)
    # x 2, k, v r(4096 + 1024) x 2 = 26,624; router gate r(4096 + 8) = 4,104; fused experts, one
    # adapter per expert: gate_up at rank 2r, 8 x 2 x (4096 + 28672) = 524,288; down 8 x (14336 + 4096)
    # = 147,456 -> 702,472 x 32 layers x r 8.
    assert memory.lora_params(mixtral, plan) == 702_472 * 32 * 8
    # Qwen2-MoE is not in peft's v4->v5 conversion table: its fused experts stay unadapted.
    qwen2_moe = {"model_type": "qwen2_moe", "hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16,
                 "num_key_value_heads": 16, "intermediate_size": 5632, "moe_intermediate_size": 1408,
                 "shared_expert_intermediate_size": 5632, "num_experts": 60, "num_experts_per_tok": 4, "vocab_size": 151936}
    spec = model_spec_from_config("Qwen/Qwen1.5-MoE-A2.7B", qwen2_moe, use_inventory=False)
    names = memory.lora_target_names(spec, "all-linear")
    assert not any(g.name in names for g in spec.linears if g.role == "expert" or g.name == "router")
    assert {"shared_expert.gate_proj", "shared_expert_gate"} <= names  # nn.Linear modules: adapted


def test_without_torch_the_nested_model_is_named_as_typed(monkeypatch):
    from calculator import inventory

    monkeypatch.setattr(inventory, "transformers_available", lambda: False)
    with pytest.raises(UnsupportedArchitectureError) as err:
        # 3 text layers: not the default MllamaConfig, whose inventory ships (calculator/data/inventories/).
        model_spec_from_config("meta-llama/Llama-3.2-11B-Vision",
                               {"model_type": "mllama", "text_config": {"model_type": "mllama_text_model", "num_hidden_layers": 3}})
    message = str(err.value)
    assert "\n" not in message and "'mllama'" in message and "'mllama_text_model'" in message
    assert "pip install -r requirements-dev.txt" in message


def test_lora_on_fused_experts_saves_a_merged_stack_per_layer():
    from calculator import memory

    mixtral = spec_of("mistralai/Mixtral-8x7B-v0.1")
    plan = memory.AdapterPlan(names=memory.lora_target_names(mixtral, "all-linear"), rank=8, adapter_bytes=2)
    total, per_layer, grad = memory.lora_merged_expert_bytes(mixtral, plan, param_bytes=2)
    # peft folds W + B·A into each adapted expert stack per forward and the expert matmuls save it:
    # 8 experts x (28672 x 4096 gate_up + 4096 x 14336 down) x 2 B per layer, x 32 layers; backward
    # first materializes the down stack's gradient, 8 x 4096 x 14336 x 2 B (FakeTensor trace of a
    # 1-layer copy: 2,895,520,040 B activations, 960,497,664 B temporaries at the peak).
    assert per_layer == 8 * (28672 * 4096 + 4096 * 14336) * 2 == 2_818_572_288
    assert total == 32 * per_layer and grad == 8 * 4096 * 14336 * 2
    # Not adapted, nothing saved: Qwen2-MoE experts (peft leaves them), and "attention" targets.
    attn = memory.AdapterPlan(names=memory.lora_target_names(mixtral, "attention"), rank=8, adapter_bytes=2)
    assert memory.lora_merged_expert_bytes(mixtral, attn, param_bytes=2) == (0, 0, 0)


def test_without_torch_towers_are_flagged_not_silently_dropped(monkeypatch):
    from calculator import inventory

    monkeypatch.setattr(inventory, "transformers_available", lambda: False)
    llama = catalog_config(find_catalog_entry("meta-llama/Llama-3.2-3B"))
    spec = model_spec_from_config("org/vlm", {"model_type": "llava", "text_config": llama, "vision_config": {"model_type": "clip_vision_model"}})
    assert spec.counted_by == "analytic" and spec.config_num_params == spec_of("meta-llama/Llama-3.2-3B").config_num_params
    assert any("towers" in n and "requirements-dev.txt" in n for n in spec.notes)
    # A family whose formula was measured >0.5% off transformers (architectures.json analytic_delta) says so too.
    electra = {"model_type": "electra", "hidden_size": 256, "num_hidden_layers": 12, "num_attention_heads": 4,
               "intermediate_size": 1024, "vocab_size": 30522, "embedding_size": 128}
    assert any("differs from transformers' class" in n for n in model_spec_from_config("google/electra-small-discriminator", electra).notes)
