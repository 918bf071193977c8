"""Every memory formula pinned to a hand-derived value, with the derivation beside it."""

from __future__ import annotations

import pytest

from calculator import memory
from calculator.estimate import CUDA_CONTEXT_BYTES, estimate
from calculator.quantization import WeightFormat, linear_weight_bytes, weight_format
from calculator.resolve import resolve_catalog
from calculator.workload import Workload

GiB = 2**30


def spec(model_id):
    return resolve_catalog(model_id).spec


# --- weights ---------------------------------------------------------------------------------


def test_llama_31_8b_bf16_weights_exact():
    # model.safetensors.index.json total_size: 8,030,261,248 params x 2 bytes.
    s = spec("meta-llama/Llama-3.1-8B")
    assert memory.weight_bytes(s, weight_format(s, Workload(precision="bf16"))) == 16_060_522_496


def test_llama_31_8b_fp32_weights_from_inventory():
    s = spec("meta-llama/Llama-3.1-8B")
    assert memory.weight_bytes(s, weight_format(s, Workload(precision="fp32"))) == 8_030_261_248 * 4


def test_llama_31_8b_nf4_weights():
    s = spec("meta-llama/Llama-3.1-8B")
    fmt = weight_format(s, Workload(precision="int4"))
    assert fmt.name == "bnb-nf4" and not fmt.double_quant
    # Quantized: every q/k/v/o/gate/up/down matrix: 4 bits + one fp32 absmax per 64 weights.
    # Linear weights in the 32 layers: 32 x (4096x4096 x2 + 4096x1024 x2 + 3 x 4096x14336) = 6,979,321,856.
    quantized = 6_979_321_856
    per_matrix_sizes = [(4096, 4096, 2), (4096, 1024, 2), (4096, 14336, 3)]
    payload = sum(32 * k * (i * o // 2 + 4 * (i * o // 64)) for i, o, k in per_matrix_sizes)
    assert payload == quantized // 2 + 4 * quantized // 64
    # Kept in bf16: embed_tokens and lm_head (128256 x 4096 each) and 65 RMSNorms of 4096.
    kept = (2 * 128256 * 4096 + 65 * 4096) * 2
    assert memory.weight_bytes(s, fmt) == payload + kept


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        # 4096 x 4096 = 16,777,216 weights.
        # NF4: 8,388,608 B payload + 262,144 blocks x 4 B absmax.
        (WeightFormat(name="bnb-nf4", bits=4, compute_precision="bf16"), 8_388_608 + 1_048_576),
        # NF4 + double quant: 262,144 int8 absmax + 1,024 fp32 second-level scales + 4 B offset.
        (WeightFormat(name="bnb-nf4", bits=4, compute_precision="bf16", double_quant=True), 8_388_608 + 262_144 + 4_096 + 4),
        # LLM.int8: 16,777,216 int8 + 4,096 rows x 4 B scale.
        (WeightFormat(name="bnb-int8", bits=8, compute_precision="fp16"), 16_777_216 + 16_384),
        # GPTQ 4-bit g128: qweight 8,388,608 + qzeros 32 groups x 4096 x 4 bit + scales 32 x 4096 x 2 + g_idx 4096 x 4.
        (WeightFormat(name="gptq", bits=4, compute_precision="fp16", group_size=128), 8_388_608 + 65_536 + 262_144 + 16_384),
        # AWQ: same without g_idx.
        (WeightFormat(name="awq", bits=4, compute_precision="fp16", group_size=128), 8_388_608 + 65_536 + 262_144),
        # MXFP4: 4 bits + one E8M0 byte per 32 weights.
        (WeightFormat(name="mxfp4", bits=4, compute_precision="bf16"), 8_388_608 + 524_288),
        # fp8 with DeepSeek 128x128 block scales: 32 x 32 blocks x 4 B.
        (WeightFormat(name="fp8-block", bits=8, compute_precision="bf16", block_size=(128, 128)), 16_777_216 + 4_096),
    ],
)
def test_linear_weight_bytes(fmt, expected):
    assert linear_weight_bytes(4096, 4096, fmt) == expected


def test_precision_ordering_for_weights():
    s = spec("meta-llama/Llama-3.1-8B")
    sizes = [memory.weight_bytes(s, weight_format(s, Workload(precision=p))) for p in ("int4", "int8", "bf16", "fp32")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def test_gpt_oss_mxfp4_quantizes_only_experts():
    s = spec("openai/gpt-oss-20b")
    fmt = weight_format(s, Workload(precision="bf16"))
    assert fmt.name == "mxfp4" and fmt.from_checkpoint
    experts = [g for g in s.linears if g.role == "expert"]
    expert_elems = sum(g.weight_params for g in experts)
    others = s.config_num_params - expert_elems
    # Experts: 4.25 bits per weight; everything else (attention, router, embeddings, lm_head, biases) in bf16.
    assert memory.weight_bytes(s, fmt) == expert_elems // 2 + expert_elems // 32 + 2 * others
    # The published checkpoint is 12.8 GiB-ish ("fits in 16 GB"): check the order of magnitude.
    assert 12 * GiB < memory.weight_bytes(s, fmt) < 14 * GiB


# --- KV cache --------------------------------------------------------------------------------


def test_kv_cache_llama_31_8b_per_token():
    # 2 (K,V) x 32 layers x 8 KV heads x 128 head_dim x 2 bytes = 131,072 B per token.
    assert memory.kv_cache_bytes_per_token(spec("meta-llama/Llama-3.1-8B"), 16) == 131_072
    assert memory.kv_cache_bytes(spec("meta-llama/Llama-3.1-8B"), batch_size=3, seq_len=1000, kv_bits=16) == 3 * 1000 * 131_072


def test_kv_cache_qwen25_7b_gqa():
    # 2 x 28 layers x 4 KV heads x 128 x 2 bytes = 57,344 B per token.
    assert memory.kv_cache_bytes_per_token(spec("Qwen/Qwen2.5-7B"), 16) == 57_344


def test_kv_cache_sliding_window_layers_stop_growing():
    s = spec("openai/gpt-oss-20b")
    # Per layer and token: 2 x 8 KV heads x 64 x 2 B = 2,048 B. 12 full layers keep 4096 tokens,
    # 12 sliding layers keep their 128-token window.
    assert memory.kv_cache_bytes(s, batch_size=1, seq_len=4096, kv_bits=16) == 12 * 2048 * 4096 + 12 * 2048 * 128


def test_kv_cache_mla_latent():
    # DeepSeek-V3: (kv_lora_rank 512 + rope 64) x 61 layers x 2 B, no factor 2 for K and V.
    assert memory.kv_cache_bytes_per_token(spec("deepseek-ai/DeepSeek-V3"), 16) == 576 * 61 * 2


def test_kv_cache_fp8_and_int4_halve_and_quarter():
    s = spec("meta-llama/Llama-3.1-8B")
    assert memory.kv_cache_bytes_per_token(s, 8) == 65_536
    assert memory.kv_cache_bytes_per_token(s, 4) == 32_768


# --- activations and loss --------------------------------------------------------------------


def test_training_layer_activations_llama_32_3b():
    # h = 3072, q = 24 x 128 = 3072, kv = 8 x 128 = 1024, I = 8192, bf16:
    # 2 RMSNorms (4h fp32 + 2h + 4 B) + q,k,v,out saved by SDPA (2(q + 2kv) + 2q) + lse (4 x 24)
    # + SwiGLU (3 x 2I) + linear inputs (2h attention, 2h MLP, 2I down; o_proj's input is the SDPA
    # output's storage, already counted)
    # = 16h + 4q + 4kv + 8I + 96 + 8 = 49,152 + 12,288 + 4,096 + 65,536 + 104 = 131,176 B per token.
    s = spec("meta-llama/Llama-3.2-3B")
    assert memory.layer_saved_bytes_per_token(s, compute_bytes=2, seq_len=4096, attention="sdpa", adapters=None) == 131_176


def test_lora_layer_saves_less_than_full():
    s = spec("meta-llama/Llama-3.2-3B")
    plan = memory.AdapterPlan(names=frozenset({"q_proj", "v_proj"}), rank=8, adapter_bytes=2)
    lora = memory.layer_saved_bytes_per_token(s, compute_bytes=2, seq_len=4096, attention="sdpa", adapters=plan)
    # Frozen base: norms keep 4h + 4 each (no 2h), no linear inputs except the shared q/v input
    # (2h), lora_A outputs 2 x 8 x 2 B; SDPA 2(q + 2kv) + 2q + 96; SwiGLU saves 3 x 2I.
    expected = 2 * (4 * 3072 + 4) + 2 * 3072 + 2 * 2 * 8 + (2 * (3072 + 2048) + 2 * 3072 + 96) + 3 * 2 * 8192
    assert lora == expected


def test_eager_attention_adds_seq_by_seq():
    s = spec("meta-llama/Llama-3.2-3B")
    sdpa = memory.layer_saved_bytes_per_token(s, compute_bytes=2, seq_len=1024, attention="sdpa", adapters=None)
    eager = memory.layer_saved_bytes_per_token(s, compute_bytes=2, seq_len=1024, attention="eager", adapters=None)
    # Eager saves the fp32 softmax and the bf16 probabilities per head and key (24 x 1024 x 6 B),
    # q and K/V repeated to all heads (2 x 3q) and its own output copy for o_proj (2q); SDPA saves
    # q, k, v (2(q + 2kv)), its output (2q, shared with o_proj) and the log-sum-exp (96).
    assert eager - sdpa == 24 * 1024 * 6 + 2 * (3 * 3072) + 2 * 3072 - (2 * (3072 + 2048) + 2 * 3072 + 96)


def test_loss_buffers_fp32_logits():
    # 3 fp32 tensors of batch x seq x vocab at the start of backward: 12 x 2 x 4096 x 128,256.
    s = spec("meta-llama/Llama-3.2-3B")
    assert memory.loss_buffer_bytes(s, batch_size=2, seq_len=4096, compute_bytes=2, keep_logits=False) == 12 * 8192 * 128_256
    assert memory.loss_buffer_bytes(s, batch_size=2, seq_len=4096, compute_bytes=2, keep_logits=True) == 14 * 8192 * 128_256


def test_gradient_checkpointing_keeps_layer_inputs_only():
    s = spec("meta-llama/Llama-3.2-3B")
    full = memory.training_activation_bytes(s, batch_size=1, seq_len=1000, compute_bytes=2, attention="sdpa", adapters=None, gradient_checkpointing=False)
    ckpt = memory.training_activation_bytes(s, batch_size=1, seq_len=1000, compute_bytes=2, attention="sdpa", adapters=None, gradient_checkpointing=True)
    head = 4 * 3072 + 4 + 2 * 3072 + 2 * 3072  # final norm + LM head input per token
    assert full == 1000 * (28 * 131_176 + head)
    # 28 layer inputs of 2h; the layer recomputed during backward is a phase of its own.
    assert ckpt == 1000 * (28 * 2 * 3072 + head)
    recompute = memory.recompute_activation_bytes(s, batch_size=1, seq_len=1000, compute_bytes=2, attention="sdpa", adapters=None)
    assert recompute == 1000 * 131_176


# --- optimizer and adapters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "state_bytes", "expected"),
    [
        ("adamw", 2, 4 * 1_000_000),  # two bf16 moments
        ("adamw", 4, 8 * 1_000_000),  # two fp32 moments (ZeRO paper's 12 bytes = 4 master + 8 states)
        ("adamw-8bit", 2, 2 * (1_000_000 + 4 * 3_907)),  # two uint8 states + fp32 absmax per 256 (3,907 blocks)
        ("sgd", 2, 2 * 1_000_000),
    ],
)
def test_optimizer_states(optimizer, state_bytes, expected):
    assert memory.optimizer_state_bytes(optimizer=optimizer, trainable_params=1_000_000, state_bytes=state_bytes) == expected


def test_lora_parameter_count_llama_32_3b_mlp_r10():
    # PEFT method comparison: LoRA r=10 on gate/up/down of Llama-3.2-3B = 9,461,760 trainable.
    # 28 layers x 10 x ((3072 + 8192) x 2 + (8192 + 3072)) = 28 x 10 x 33,792.
    s = spec("meta-llama/Llama-3.2-3B")
    plan = memory.AdapterPlan(names=frozenset({"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}), rank=10, adapter_bytes=4)
    assert memory.lora_params(s, plan) == 9_461_760


def test_all_linear_lora_skips_lm_head_but_adapts_fused_experts():
    # peft 0.21 on transformers 5 adapts fused experts and the router too (traced).
    s = spec("mistralai/Mixtral-8x7B-v0.1")
    names = memory.lora_target_names(s, "all-linear")
    assert "lm_head" not in names
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "experts.gate_up_proj", "experts.down_proj", "router"} <= names
    assert "experts.gate_up_proj" not in memory.lora_target_names(s, "attention")


# --- whole estimates -------------------------------------------------------------------------


def test_inference_estimate_adds_up():
    s = spec("meta-llama/Llama-3.1-8B")
    est = estimate(s, Workload(precision="bf16", context_length=8192, batch_size=1))
    b = est.breakdown
    assert b.weights_bytes == 16_060_522_496
    assert est.peak_phase in ("prefill", "decode")
    assert b.total_bytes == b.torch_allocated_bytes + b.allocator_reserve_bytes + b.cuda_context_bytes
    assert b.cuda_context_bytes == CUDA_CONTEXT_BYTES
    assert sum(b.as_dict().values()) == b.total_bytes


def test_full_finetune_pure_bf16_vs_master_weights():
    s = spec("meta-llama/Llama-3.2-3B")
    p = s.num_params
    pure = estimate(s, Workload(mode="full", precision="bf16", context_length=16, batch_size=1))
    mixed = estimate(s, Workload(mode="full", precision="bf16", context_length=16, batch_size=1, master_weights=True))
    # Tiny batch: the optimizer step is the peak. Pure bf16: weights 2P + grads 2P + 2 moments 4P
    # + foreach temporary 2P = 10P. ZeRO-paper mixed precision: 2P + 2P + master 4P + moments 8P + temp 4P.
    assert pure.peak_phase == "optimizer step" and pure.torch_allocated_bytes == 10 * p
    assert mixed.torch_allocated_bytes == 20 * p


def test_qlora_uses_double_quantized_nf4():
    s = spec("meta-llama/Llama-3.1-8B")
    est = estimate(s, Workload(mode="qlora", precision="int4"))
    assert est.weight_format.name == "bnb-nf4" and est.weight_format.double_quant
    # The NF4 base itself; a custom loop adds peft's fp32 upcast of the unquantized parameters on top (test_kbit_prepare.py).
    assert memory.weight_bytes(s, est.weight_format) < 6 * GiB


def test_tensor_parallel_splits_weights_and_kv():
    s = spec("meta-llama/Llama-3.1-70B")
    one = estimate(s, Workload(precision="bf16", context_length=8192))
    four = estimate(s, Workload(precision="bf16", context_length=8192, num_gpus=4))
    assert four.parallelism == "tp"
    # 8 KV heads over 4 GPUs: 2 heads each, a quarter of the cache.
    assert four.breakdown.kv_cache_bytes == one.breakdown.kv_cache_bytes // 4
    norms = s.other_params * 2
    assert four.breakdown.weights_bytes == -(-(one.breakdown.weights_bytes - norms) // 4) + norms


def test_zero3_shards_everything_but_activations():
    s = spec("meta-llama/Llama-3.1-8B")
    one = estimate(s, Workload(mode="full", precision="bf16", context_length=2048, num_gpus=1))
    eight = estimate(s, Workload(mode="full", precision="bf16", context_length=2048, num_gpus=8, parallelism="zero3"))
    assert eight.total_bytes < one.total_bytes / 3


def test_gpt_oss_sdpa_request_falls_back_to_eager():
    # transformers 5.24: GptOssPreTrainedModel._supports_sdpa = False, so prefill builds
    # 64 heads x 4096 x 4096 scores per layer (logits, shifted logits and bf16 softmax with the
    # sink column: 3c = 6 B each) plus the repeated K/V and a 4096 x 4096 bf16 mask.
    s = spec("openai/gpt-oss-20b")
    sdpa = estimate(s, Workload(precision="bf16", context_length=4096))
    flash = estimate(s, Workload(precision="bf16", context_length=4096, attention="flash"))
    assert any("no SDPA" in n for n in sdpa.notes)
    scores = 4096 * 64 * 4096 * 6 + 4096 * 2 * 2 * 64 * 64 + 4096 * 4096 * 2
    assert sdpa.breakdown.activations_bytes >= scores > flash.breakdown.activations_bytes


def test_bnb_in_transformers_leaves_fused_experts_unquantized():
    # transformers 5.24 `replace_with_bnb_linear` converts nn.Linear/Conv1D only; Qwen3-30B-A3B's
    # experts are fused 3-D parameters (48 layers x 128 experts x 3 x 2048 x 768 = 28,991,029,248
    # weights) and stay bf16, so "int4" keeps them at 2 bytes each.
    s = spec("Qwen/Qwen3-30B-A3B")
    fmt = weight_format(s, Workload(precision="int4"))
    experts = sum(g.weight_params for g in s.linears if not g.is_nn_linear)
    assert experts == 48 * 128 * 3 * 2048 * 768
    assert not fmt.quantizes_fused_experts
    assert memory.weight_bytes(s, fmt) > 2 * experts
    vllm = weight_format(s, Workload(precision="int4", runtime="vllm"))
    assert memory.weight_bytes(s, vllm) < experts
    assert any("fused 3-D" in n for n in estimate(s, Workload(precision="int4")).notes)


def test_kv_cache_multi_query_octocoder():
    # GPTBigCode with multi_query: one K/V head of 128 for 48 query heads.
    # 2 x 40 layers x 1 x 128 x 2 B = 20,480 B per token (a 48-head MHA cache would be 48x that).
    s = spec("bigcode/octocoder")
    assert s.num_key_value_heads == 1
    assert memory.kv_cache_bytes_per_token(s, 16) == 20_480
