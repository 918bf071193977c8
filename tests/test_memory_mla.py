"""Multi-head latent attention terms of calculator/memory.py against a hand derivation from
transformers 5.24 `models/deepseek_v3/modeling_deepseek_v3.py` (`DeepseekV3Attention`) with SDPA as
the GPU's memory-efficient kernel (calculator/verify/_sdpa.py), and against the trace of a small copy."""

from __future__ import annotations

import dataclasses

import pytest

from calculator import memory
from calculator.spec import model_spec_from_config

# DeepSeek-V3 defaults (transformers 5.24 `DeepseekV3Config()`): hidden 7168, 128 heads, q/k 128 + 64, v 128,
# q_lora 1536, kv_lora 512, dense intermediate 18432, first_k_dense_replace 3.
H, HEADS, NOPE, ROPE, V, Q_LORA, KV_LORA, INTER = 7168, 128, 128, 64, 128, 1536, 512, 18432
QK = NOPE + ROPE


def _deepseek_v3(layers: int = 2) -> dict:
    return {"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], "hidden_size": H, "num_hidden_layers": layers,
            "num_attention_heads": HEADS, "num_key_value_heads": HEADS, "vocab_size": 129280, "intermediate_size": INTER,
            "moe_intermediate_size": 2048, "q_lora_rank": Q_LORA, "kv_lora_rank": KV_LORA, "qk_nope_head_dim": NOPE,
            "qk_rope_head_dim": ROPE, "v_head_dim": V, "n_routed_experts": 256, "num_experts_per_tok": 8, "n_shared_experts": 1,
            "first_k_dense_replace": 3, "max_position_embeddings": 163840, "torch_dtype": "bfloat16"}


def test_deepseek_v3_prefill_attention_per_token() -> None:
    """At SDPA (bf16, no grad): inputs_embeds + residual + normed input (3 x 2h), q_b_proj output (2 x H x 192), rotated
    q_rot (2 x H x 64), the concatenated query (2 x H x 192), kv_b_proj output (2 x H x 256), key_states (2 x H x 192),
    compressed_kv (2 x 576), the output (2 x H x 128) and the kernel's fp32 accumulator (4 x H x 128; 192 > 128), which
    is larger than o_proj's output (2h) that comes after it."""
    spec = model_spec_from_config("deepseek-v3-2l", _deepseek_v3())
    hand = 3 * 2 * H + 2 * HEADS * (QK + ROPE + QK + (NOPE + V) + QK + V) + 2 * (KV_LORA + ROPE) + 4 * HEADS * V
    assert hand == 371_840  # the traced peak's tensors, one by one (DeepSeek-V3 defaults cut to 2 layers, 3 x 1,532 tokens)
    assert memory.mla_prefill_attention_bytes_per_token(spec, 2) == hand
    assert memory.mla_sdpa_accumulator_bytes_per_token(spec, 2) == 4 * HEADS * V
    assert memory.mla_sdpa_accumulator_bytes_per_token(spec, 4) == 0  # fp32 output: the kernel accumulates in it
    # Two dense layers (first_k_dense_replace 3): the MLP moment c(4h + 3I) is smaller than the attention one.
    assert memory.prefill_transient_bytes(spec, batch_size=3, seq_len=1532, compute_bytes=2, attention="sdpa") == 3 * 1532 * hand


def test_mla_accumulator_only_above_the_register_kernels() -> None:
    """MiniCPM3-like heads (q/k 64 + 32, v 64): the bf16 kernel with kMaxK 128 keeps its output in registers."""
    spec = model_spec_from_config("mla-small", {**_deepseek_v3(), "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64})
    assert memory.mla_sdpa_accumulator_bytes_per_token(spec, 2) == 0
    equal = dataclasses.replace(spec, v_head_dim=spec.head_dim)  # equal head sizes: flash, no accumulator
    assert memory.mla_sdpa_accumulator_bytes_per_token(equal, 2) == 0


def test_deepseek_v3_saved_per_layer_full_and_lora() -> None:
    """Saved for backward per token and dense layer, bf16 (each term a tensor of the traced step):
    RMSNorm x 2: fp32 upcast 4h + 1/rms 4 + the normalized copy the trainable weight multiplies 2h;
    attention input 2h; SDPA: query 2H x 192, key_states 2H x 192, the kv_b_proj output the value view keeps
    2H x 256, the output 2H x 128 (o_proj's input too), fp32 logsumexp 4H; latent norms: 4r + 4 (+ 2r normalized
    and 2r as q_b / kv_b input when trained); dense SwiGLU MLP input 2h and gate, act, up, product 4 x 2I."""
    spec = model_spec_from_config("deepseek-v3-2l", _deepseek_v3())
    sdpa = 2 * HEADS * (QK + QK + (NOPE + V) + V) + 4 * HEADS
    assert sdpa == 197_120
    latent_full = sum(4 * r + 4 + 2 * 2 * r for r in (Q_LORA, KV_LORA))
    latent_frozen = sum(4 * r + 4 for r in (Q_LORA, KV_LORA))
    assert memory.mla_saved_attention_bytes_per_token(spec, 2, frozen=False) == sdpa + latent_full
    assert memory.mla_saved_attention_bytes_per_token(spec, 2, frozen=True) == sdpa + latent_frozen
    full = 2 * (4 * H + 4 + 2 * H) + 2 * H + sdpa + latent_full + 2 * H + 4 * 2 * INTER
    assert full == 475_664
    assert memory.layer_saved_bytes_per_token(spec, compute_bytes=2, seq_len=1536, attention="sdpa", adapters=None) == full


def test_dense_layers_of_a_moe_model_take_the_dense_terms() -> None:
    """DeepSeek-V3's first 3 layers run the dense MLP (`first_k_dense_replace`): a 4-layer copy has 3 dense + 1 MoE layer,
    and its saved activations are 3 dense layers' and 1 MoE layer's, not 4 MoE layers'."""
    spec = model_spec_from_config("deepseek-v3-4l", _deepseek_v3(4))
    assert memory.moe_layer_split(spec) == (3, 1)
    kw = {"compute_bytes": 2, "seq_len": 1024, "attention": "sdpa", "adapters": None}
    dense = memory.layer_saved_bytes_per_token(spec, moe_layer=False, **kw)
    moe = memory.layer_saved_bytes_per_token(spec, moe_layer=True, **kw)
    assert dense != moe
    head = memory.head_saved_bytes_per_token(spec, compute_bytes=2, residual_bytes=2, frozen=False, head_saves_input=True)
    total = memory.training_activation_bytes(spec, batch_size=1, seq_len=1024, compute_bytes=2, attention="sdpa", adapters=None,
                                             gradient_checkpointing=False)
    assert total == 1024 * (3 * dense + moe + head)


@pytest.mark.trace
@pytest.mark.parametrize("mode", ["inference", "full"])
def test_small_mla_estimate_matches_the_trace(mode: str) -> None:
    """A 2-layer DeepSeek-V3 with q/k 48 vs v 32 (tests/test_trace_sdpa.py `_tiny_mla`), both layers dense (the MoE prefill
    transient is a known gap of its own, tests/test_calibration.py), bf16, 2 x 1,024 tokens: the analytic estimate is
    within 2% of the trace."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from test_trace_sdpa import _tiny_mla

    from calculator.estimate import estimate
    from calculator.verify import trace_workload
    from calculator.workload import Workload

    cfg = {**_tiny_mla(), "first_k_dense_replace": 2}
    extra = {"generated_tokens": 2} if mode == "inference" else {}
    w = Workload(mode=mode, precision="bf16", context_length=1024, batch_size=2, **extra)
    traced = trace_workload(cfg, w, model_id="tiny-mla").peak_bytes
    spec = model_spec_from_config("tiny-mla", cfg)
    est = estimate(spec, w).torch_allocated_bytes
    assert abs(est - traced) / traced < 0.02, (est, traced)


def test_peft_moe_remap_leaves_dense_and_shared_mlps_unadapted() -> None:
    """peft 0.21 moves gate_proj / up_proj / down_proj targets of DeepSeek-V3 to the fused experts' parameters
    (`_convert_peft_config_moe`), so all-linear adapts attention, the routed experts and the router, not the dense MLP of
    the first layers or the shared experts (traced: 3,180,544 trainable parameters on the 2-dense-layer copy, r=16)."""
    spec = model_spec_from_config("deepseek-v3-4l", _deepseek_v3(4))
    names = memory.lora_target_names(spec, "all-linear")
    assert names == {"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "experts.gate_up_proj", "experts.down_proj",
                     "router"}
    two = model_spec_from_config("deepseek-v3-2l", _deepseek_v3())
    plan = memory.AdapterPlan(names=memory.lora_target_names(two, "all-linear"), rank=16, adapter_bytes=4)
    assert memory.lora_params(two, plan) == 3_180_544
    # Kimi-K2 (same builder) is not among transformers' re-mapped model types: its dense MLP keeps its adapters.
    kimi = model_spec_from_config("kimi", {**_deepseek_v3(4), "model_type": "kimi_k2"})
    assert "mlp.gate_proj" in memory.lora_target_names(kimi, "all-linear")


def test_inventory_reads_mla_from_the_config_and_the_model() -> None:
    """MiniCPM3 (transformers 5.24 `MiniCPM3Config()` cut to 2 layers) has no analytic builder: its inventory spec takes
    MLA from the config's kv_lora_rank / qk_nope / qk_rope / v_head_dim and the model's kv_b_proj (256 -> 40 x (64 + 64)).
    Its config's `head_dim` (32) is the rope part; the query/key head is 64 + 32. The cache holds the latent and rope key."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import warnings

    from transformers import AutoConfig

    from calculator.verify.compare import cut_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = cut_config(AutoConfig.for_model("minicpm3").to_dict(), 2)
    spec = model_spec_from_config("minicpm3-2l", cfg)
    assert spec.counted_by == "inventory"
    assert (spec.layer_types, spec.head_dim, spec.v_head_dim, spec.kv_lora_rank, spec.q_lora_rank, spec.qk_rope_head_dim) == (
        ("mla", "mla"), 96, 64, 256, 768, 32)
    assert memory.kv_cache_bytes_per_token(spec, 16) == 2 * (256 + 32) * 2
    assert memory.mla_sdpa_accumulator_bytes_per_token(spec, 2) == 0  # 96 / 64 <= 128: the register-output kernel


def test_fp32_routing_weights_make_the_weighted_expert_copies_fp32() -> None:
    """DeepseekV3TopkRouter (transformers 5.24) keeps an fp32 weight and returns fp32 routing weights, so in
    `grouped_mm_experts_forward` the routing-weighted expert output and its un-permuted copy are fp32 (traced on
    Sarvam-MLA's MoE layer): per token-expert pair the gathered input and the down output (2 x 2h) and those two (2 x 4h)."""
    spec = model_spec_from_config("deepseek-v3-4l", _deepseek_v3(4))
    assert spec.router_bytes == 4
    pair = max(2 * (H + 4 * 2048), 2 * 2 * H + 2 * 4 * H)
    mlp = 4 * 2 * H + 256 * (2 + 4) + 8 * pair + 3 * 2 * 2048
    assert mlp == 759_296
    assert memory.prefill_transient_bytes(spec, batch_size=1, seq_len=1024, compute_bytes=2, attention="sdpa") == 1024 * mlp
    bf16_router = dataclasses.replace(spec, router_bytes=0)  # a bf16 router (Mixtral, Qwen3-MoE): 4 x 2h per pair
    assert memory.prefill_transient_bytes(bf16_router, batch_size=1, seq_len=1024, compute_bytes=2, attention="sdpa") == 1024 * (
        mlp - 8 * (pair - 4 * 2 * H))


def test_lora_on_experts_and_router_saves_what_full_saves_per_pair() -> None:
    """With all-linear LoRA on the fused experts and the router (peft 0.21), the grouped matmuls save their inputs (the
    merged stacks train), the gathered input and the product: 2h + 4I per token-expert pair, as in full fine-tuning,
    and the router's fp32 input copy (4h) for its adapter. Without those adapters (attention only): gate_up output,
    act(gate) and the down output the routing mul saves, h + 3I, and no router input."""
    spec = model_spec_from_config("deepseek-v3-4l", _deepseek_v3(4))
    kw = {"compute_bytes": 2, "seq_len": 1024, "attention": "sdpa", "moe_layer": True}
    all_linear = memory.AdapterPlan(names=memory.lora_target_names(spec, "all-linear"), rank=16, adapter_bytes=4)
    no_moe = memory.AdapterPlan(names=all_linear.names - {"experts.gate_up_proj", "experts.down_proj", "router"}, rank=16, adapter_bytes=4)
    with_moe = memory.layer_saved_bytes_per_token(spec, adapters=all_linear, **kw)
    without = memory.layer_saved_bytes_per_token(spec, adapters=no_moe, **kw)
    assert with_moe - without == 8 * 2 * (H + 2048) + 4 * H


def test_mla_decode_expands_the_whole_latent_cache() -> None:
    """Each decoding step runs kv_b_proj over every cached latent and copies key_states: batch x keys x 2H x (128 + 128 +
    192) bytes for DeepSeek-V3, the decode peak of a short prompt with many new tokens (traced, 2 layers, 3 x (136 + 1,400):
    estimate +0.06%). A model without MLA expands nothing."""
    spec = model_spec_from_config("deepseek-v3-2l", _deepseek_v3())
    assert memory.mla_decode_expansion_bytes(spec, batch_size=3, keys=1535, compute_bytes=2) == 3 * 1535 * 2 * HEADS * (NOPE + V + QK)
    from calculator.estimate import estimate
    from calculator.workload import Workload

    w = Workload(mode="inference", precision="bf16", context_length=1536, generated_tokens=1400, batch_size=3, speech_codec=False)
    phases = estimate(spec, w).phases
    assert phases["decode"] > phases["prefill"]
    llama = model_spec_from_config("llama", {"model_type": "llama", "hidden_size": 512, "num_hidden_layers": 2, "num_attention_heads": 8,
                                             "intermediate_size": 1024, "vocab_size": 1000})
    assert memory.mla_decode_expansion_bytes(llama, batch_size=3, keys=1535, compute_bytes=2) == 0
