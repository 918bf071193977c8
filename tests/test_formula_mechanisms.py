"""The analytic formulas read what transformers builds: activation, MLP shape, norm kind, fused
projections, logit soft-capping. Each term pinned to a hand derivation on a real or default
config; the trace-marked tests check the same terms against a FakeTensor trace of a small copy
(benchmarks/formula_sweep.py does it for every analytic family at full width)."""

from __future__ import annotations

import pytest

from calculator import memory
from calculator.estimate import estimate
from calculator.resolve import resolve_catalog
from calculator.spec import mlp_activation, model_spec_from_config
from calculator.workload import Workload


def default_spec(model_type: str, **overrides):
    """transformers 5.24's default config of `model_type` (GPT2Config() is gpt2 small, Phi3Config()
    Phi-3-mini, Gemma2Config() gemma-2-2b, Starcoder2Config() starcoder2-3b)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.AutoConfig.for_model(model_type).to_dict()
    cfg.update(overrides)
    return model_spec_from_config(model_type, cfg, use_inventory=False), cfg


# --- the activation's saved tensors -------------------------------------------------------------


def test_activation_table_gelu_new_keeps_its_formula_intermediates():
    # NewGELUActivation: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))): pow saves x, tanh
    # its output, the last product 0.5x and (1 + tanh); without grad x, 0.5x and two temporaries.
    assert memory.ACTIVATIONS["gelu_new"] == memory.ActivationCost(True, False, 3, 4)
    # Built-in kernels: F.gelu / F.silu save their input, ReLU its output; x and output alive.
    assert memory.ACTIVATIONS["gelu_pytorch_tanh"] == memory.ACTIVATIONS["silu"] == memory.ActivationCost(True, False, 0, 2)
    assert memory.ACTIVATIONS["relu"] == memory.ActivationCost(False, True, 0, 2)
    assert memory.activation_cost("not-an-activation") == memory.ActivationCost(True, False, 0, 2)


def test_gpt2_layer_saved_bytes_with_gelu_new():
    s, _ = default_spec("gpt2")
    assert (s.hidden_act, s.gated_mlp, s.layer_norm) == ("gelu_new", False, True)
    # h 768, I 3072, 12 heads, bf16, full fine-tune, SDPA:
    # 2 LayerNorms (2h input + 8 B mean/rstd) = 3,088; SDPA q, k, v (views of c_attn's 3h output)
    # + output + lse = 2 x 2304 + 2 x 768 + 4 x 12 = 6,192; gelu_new 4 x 2I = 24,576 (x, tanh(.),
    # 0.5x, 1 + tanh(.)); linear inputs: c_attn 2h, c_fc 2h, c_proj (MLP) its input 2I = 9,216;
    # resid_pdrop 0.1: two 1-byte masks (CUDA native_dropout) 2h = 1,536.
    expected = 3_088 + 6_192 + 24_576 + 9_216 + 1_536
    assert memory.layer_saved_bytes_per_token(s, compute_bytes=2, seq_len=1024, attention="sdpa", adapters=None) == expected == 44_608


def test_gelu_new_inference_mlp_holds_four_intermediate_tensors():
    s, _ = default_spec("gpt2")
    # Plain MLP prefill per token: hidden states 4 x 2h + gelu_new's 4 x 2I (vs 2 x 2I for a kernel).
    assert memory.prefill_transient_bytes(s, batch_size=1, seq_len=100, compute_bytes=2, attention="sdpa") == 100 * (8 * 768 + 8 * 3072)
    gelu = model_spec_from_config("gpt2", {**s.raw_config, "activation_function": "gelu"}, use_inventory=False)
    assert memory.prefill_transient_bytes(gelu, batch_size=1, seq_len=100, compute_bytes=2, attention="sdpa") == 100 * (8 * 768 + 4 * 3072)


def test_gpt_j_reads_its_activation_from_the_catalog_config():
    s = resolve_catalog("EleutherAI/gpt-j-6b").spec
    assert s.hidden_act == "gelu_new" and not s.gated_mlp and s.layer_norm
    # MLP saves 4 x 2I in LoRA (frozen fc_out saves no input of its own beyond the adapter's copy).
    assert memory.mlp_saved_elements(s, frozen=True) == 4 and memory.mlp_saved_elements(s, frozen=False) == 5


def test_relu_mlp_saves_its_output_once():
    s = resolve_catalog("facebook/opt-350m").spec
    assert s.hidden_act == "relu"
    # ReLU keeps its output for threshold_backward; fc2 saves the same storage: one I-wide tensor.
    assert memory.mlp_saved_elements(s, frozen=True) == memory.mlp_saved_elements(s, frozen=False) == 1


def test_activation_key_is_the_one_the_config_class_uses():
    assert mlp_activation({"model_type": "gemma2", "hidden_activation": "gelu_pytorch_tanh"}) == "gelu_pytorch_tanh"
    assert mlp_activation({"model_type": "gpt2"}) == "gelu_new"  # GPT2Config's default (architectures.json)
    assert mlp_activation({"model_type": "llama", "hidden_act": "silu"}) == "silu"


# --- MLP shape and norm kind from the class ------------------------------------------------------


def test_starcoder2_plain_mlp_and_layer_norm():
    s, _ = default_spec("starcoder2")
    assert (s.hidden_act, s.gated_mlp, s.layer_norm) == ("gelu_pytorch_tanh", False, True)
    h, inter = 3072, 12288
    # Prefill per token: the MLP's 4 x 2h + (c_fc output, activation) 2 x 2I.
    assert memory.prefill_transient_bytes(s, batch_size=1, seq_len=10, compute_bytes=2, attention="sdpa") == 10 * (8 * h + 4 * inter)
    # Training MLP: activation input 2I (+ c_proj's input 2I when it trains), no gate/up products.
    assert memory.mlp_saved_elements(s, frozen=True) == 1 and memory.mlp_saved_elements(s, frozen=False) == 2


def test_stablelm_layer_norm_with_gated_mlp():
    s, _ = default_spec("stablelm")
    assert s.layer_norm and s.gated_mlp and s.hidden_act == "silu"
    # nn.LayerNorm saves its c-byte input and mean/rstd: 2h + 8 per norm, no fp32 upcast.
    lora = memory.AdapterPlan(names=frozenset(), rank=8, adapter_bytes=2)
    saved = memory.layer_saved_bytes_per_token(s, compute_bytes=2, seq_len=512, attention="sdpa", adapters=lora)
    h, inter, q, kv, heads = 2560, 6912, 2560, 2560, 32
    assert saved == 2 * (2 * h + 8) + (2 * (q + 2 * kv) + 2 * q + 4 * heads) + 3 * 2 * inter


# --- fused projections ---------------------------------------------------------------------------


def test_phi3_fused_qkv_and_gate_up_are_one_adapter_each():
    s, _ = default_spec("phi3")
    names = {g.name for g in s.linears}
    assert {"qkv_proj", "mlp.gate_up_proj", "mlp.down_proj", "o_proj"} <= names and "q_proj" not in names
    plan = memory.AdapterPlan(names=memory.lora_target_names(s, "all-linear"), rank=16, adapter_bytes=4)
    # Per layer r x (in + out): qkv 3072 + 9216, o 3072 + 3072, gate_up 3072 + 16384, down 8192 + 3072.
    per_layer = 16 * ((3072 + 9216) + (3072 + 3072) + (3072 + 16384) + (8192 + 3072))
    assert memory.lora_params(s, plan) == s.num_hidden_layers * per_layer
    # Prefill: gate and up are views of one 2I output, alive through act and product: 4 x I.
    assert memory.mlp_inference_elements(s) == 4


def test_gpt2_c_attn_is_one_fused_group():
    s, _ = default_spec("gpt2")
    (qkv,) = [g for g in s.linears if g.role == "attention" and g.out_features > 768]
    assert (qkv.name, qkv.in_features, qkv.out_features) == ("qkv_proj", 768, 3 * 768)


# --- logit soft-capping --------------------------------------------------------------------------


def test_gemma2_final_softcap_keeps_tanh_output_in_the_loss():
    s, _ = default_spec("gemma2")
    assert s.final_logit_softcapping == 30.0 and s.attn_logit_softcapping == 50.0
    # 3 fp32 tensors (12 B) + tanh's bf16 output (2 B) per logit at the start of backward.
    assert memory.loss_buffer_bytes(s, batch_size=2, seq_len=100, compute_bytes=2, keep_logits=False) == 200 * 256_000 * 14


def test_gemma2_attention_softcap_saves_tanh_scores_in_eager():
    s, cfg = default_spec("gemma2")
    plain = model_spec_from_config("gemma2", {**cfg, "attn_logit_softcapping": None}, use_inventory=False)
    args = {"compute_bytes": 2, "seq_len": 1024, "attention": "eager", "adapters": None}
    # tanh(scores / 50) keeps its bf16 output: 8 heads x 1024 keys x 2 B per token.
    assert memory.layer_saved_bytes_per_token(s, **args) - memory.layer_saved_bytes_per_token(plain, **args) == 8 * 1024 * 2


# --- against a trace (small copies: the same terms, fewer elements) ----------------------------------


def _trace_error(model_type: str, mode: str, **overrides) -> float:
    pytest.importorskip("torch")
    from calculator.verify import trace_available, trace_workload

    ok, why = trace_available()
    if not ok:
        pytest.skip(why)
    s, cfg = default_spec(model_type, **overrides)
    w = Workload(mode=mode, precision="bf16", context_length=256, batch_size=2, **({"generated_tokens": 2} if mode == "inference" else {}))
    measured = trace_workload(cfg, w, model_id=model_type, max_seconds=120).peak_bytes
    return (estimate(s, w).torch_allocated_bytes - measured) / measured


@pytest.mark.trace
@pytest.mark.parametrize("mode", ["inference", "full"])
def test_gpt2_gelu_new_small_copy_matches_trace(mode):
    # 2 layers, 256 wide; attention dropout off: CPU SDPA would take its math path (GPU kernels do not).
    err = _trace_error("gpt2", mode, n_layer=2, n_embd=256, n_head=4, vocab_size=8000, n_positions=512, attn_pdrop=0.0)
    assert abs(err) < 0.05, err


@pytest.mark.trace
def test_gemma2_softcapping_small_copy_matches_trace():
    err = _trace_error("gemma2", "lora", num_hidden_layers=2, hidden_size=256, intermediate_size=1024, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=64, vocab_size=32000, layer_types=["sliding_attention", "full_attention"])
    assert abs(err) < 0.05, err


@pytest.mark.trace
def test_activation_table_matches_transformers():
    pytest.importorskip("torch")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "activation_costs.py"
    mod_spec = importlib.util.spec_from_file_location("activation_costs", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    for name in ("gelu", "gelu_new", "gelu_pytorch_tanh", "silu", "relu", "quick_gelu"):
        assert memory.ActivationCost(*module.measure(name)) == memory.ACTIVATIONS[name], name


# --- MoE experts and eager attention transients ---------------------------------------------------


def test_narrow_experts_peak_after_the_down_projection():
    s, _ = default_spec("qwen3_moe")
    h, inter, experts, top_k = 2048, 768, 128, 8
    assert max(h + 4 * inter, 4 * h) == 4 * h
    # Per pair max(h + 4I = 5,120, 4h = 8,192): the gathered input, the down output, its weighted
    # copy and the un-permuted copy outlive the gate_up output (grouped_mm_experts_forward).
    per_token = 4 * 2 * h + experts * (2 + 4) + top_k * 2 * 4 * h
    assert memory.prefill_transient_bytes(s, batch_size=1, seq_len=10, compute_bytes=2, attention="sdpa") == 10 * per_token
    mixtral = resolve_catalog("mistralai/Mixtral-8x7B-v0.1").spec
    # Wide experts (I 14,336): the gate_up side is larger, 278,576 B/token as before.
    assert memory.prefill_transient_bytes(mixtral, batch_size=1, seq_len=1, compute_bytes=2, attention="sdpa") == 278_576


def test_eager_prefill_peaks_at_the_softmax_not_on_top_of_the_mlp():
    s, _ = default_spec("gemma2")
    # gemma-2-2b: h 2304, 8 heads x 256 (q 2048), 4 K/V heads; 3 x 1,536 tokens, bf16:
    # 3 x 2h + 2q + 8 x 1,536 x (2 + 8) + repeat_kv 2 x 2q = 13,824 + 4,096 + 122,880 + 8,192
    # = 148,992 per token (traced: the same tensors at the peak), and a full + a sliding mask.
    tokens = 3 * 1536
    expected = tokens * 148_992 + 2 * 3 * 1536 * 1536 * 2
    assert memory.eager_attention_transient_bytes(s, batch_size=3, seq_len=1536, compute_bytes=2) == expected
    assert memory.prefill_transient_bytes(s, batch_size=3, seq_len=1536, compute_bytes=2, attention="eager") == expected
