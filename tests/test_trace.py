"""Trace level: real transformers architectures on fake tensors, recorded by torch's MemTracker.

Catalog configs are cut to 2 decoder layers (same family structure, widths and vocabulary), so
every trace allocates nothing and runs in about a second on CPU. The expected integers are
derived by hand in the comments and, where the spec reader covers them, from `ModelSpec` of the
same cut-down config.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from calculator.catalog import catalog_config, find_catalog_entry
from calculator.spec import model_spec_from_config
from calculator.workload import Workload

pytestmark = pytest.mark.trace

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from calculator.verify import (  # noqa: E402  (after the skips: needs torch at call time only)
    TraceUnsupportedError,
    trace_available,
    trace_summary_rows,
    trace_workload,
)


def cut(model_id: str, layers: int = 2) -> dict:
    cfg = catalog_config(find_catalog_entry(model_id))
    cfg["num_hidden_layers"] = layers
    if isinstance(cfg.get("layer_types"), list):
        cfg["layer_types"] = cfg["layer_types"][:layers]
    return cfg


LLAMA = "meta-llama/Llama-3.2-3B"
# Llama-3.2-3B cut to 2 layers: h=3072, 24 heads, 8 KV heads x head_dim 128, MLP 8192, vocab 128,256, tied.
#   embedding 128,256 x 3072                                  = 394,002,432
#   per layer: q,o 2 x 3072 x 3072 + k,v 2 x 3072 x 1024
#              + gate,up,down 3 x 3072 x 8192 + 2 norms x 3072 = 100,669,440
#   2 layers + final norm 3072                                = 201,341,952
LLAMA_2L_PARAMS = 595_344_384


def test_import_is_light_and_trace_is_available() -> None:
    code = "import sys, calculator.verify; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert trace_available() == (True, "")


def test_llama_prefill_holds_weights_and_kv_cache() -> None:
    cfg = cut(LLAMA)
    spec = model_spec_from_config(LLAMA, cfg)
    assert spec.config_num_params == LLAMA_2L_PARAMS
    r = trace_workload(cfg, Workload(mode="inference", precision="bf16", context_length=512, batch_size=2), model_id=LLAMA)
    assert r.num_params == LLAMA_2L_PARAMS
    assert r.peak_by_category["parameters"] == LLAMA_2L_PARAMS * 2  # bf16
    # KV cache after the prefill: 2 (K,V) x 2 layers x 8 kv heads x 128 x 512 tokens x batch 2 x 2 bytes.
    kv = 2 * 2 * 8 * 128 * 512 * 2 * 2
    assert r.kv_cache_bytes == kv == 8_388_608
    # What stays: weights, the RoPE buffers (inv_freq and original_inv_freq, 64 fp32 each), the token ids (2 x 512 int64), and
    # in activations the cache plus the next token ids (2 x int64). Logits (logits_to_keep=1) are gone.
    assert r.resident_by_category == {
        "parameters": LLAMA_2L_PARAMS * 2, "buffers": 2 * 64 * 4, "gradients": 0, "optimizer": 0,
        "activations": kv + 2 * 8, "temporaries": 0, "inputs": 2 * 512 * 8,
    }
    assert set(r.phase_peaks) == {"prefill"} and r.peak_phase == "prefill"
    # The prefill peak holds the growing cache plus one layer's transients on top.
    assert r.peak_bytes > sum(r.resident_by_category.values())
    assert r.peak_bytes == sum(r.peak_by_category.values())


def test_llama_decode_grows_the_cache_to_context_minus_one() -> None:
    w = Workload(mode="inference", precision="bf16", context_length=512, generated_tokens=8)
    r = trace_workload(cut(LLAMA), w, model_id=LLAMA)
    # generate() feeds back all but the last token: the cache ends at 511 positions.
    assert r.kv_cache_bytes == 2 * 2 * 8 * 128 * 511 * 2 == 4_186_112
    assert set(r.phase_peaks) == {"prefill", "decode"}
    # Decode: weights + full cache + one token's activations and the vocab-wide fp32 next-token logits.
    assert r.phase_peaks["decode"] > LLAMA_2L_PARAMS * 2 + r.kv_cache_bytes
    assert r.phase_peaks["decode"] < r.phase_peaks["prefill"]


def test_full_finetune_adamw_states_and_gradients_are_exact() -> None:
    model_id = "Qwen/Qwen3-8B"
    cfg = cut(model_id)
    spec = model_spec_from_config(model_id, cfg)
    n = spec.config_num_params
    r = trace_workload(cfg, Workload(mode="full", precision="bf16", context_length=128), model_id=model_id)
    assert r.num_params == r.trainable_params == n
    res = r.resident_by_category
    assert res["parameters"] == res["gradients"] == n * 2
    # AdamW: exp_avg + exp_avg_sq in the parameter dtype (2 x n x 2 bytes), plus one fp32 `step`
    # scalar per parameter tensor. Qwen3 tensors: 2 layers x (q,k,v,o,gate,up,down + 2 norms +
    # q_norm,k_norm = 11) + embedding + final norm + untied lm_head = 25.
    assert res["optimizer"] == 2 * n * 2 + 25 * 4
    assert set(r.phase_peaks) == {"forward", "backward", "optimizer"}
    # foreach AdamW peaks at weights + grads + 2 states + one temporary of the parameter size.
    assert r.phase_peaks["optimizer"] >= 5 * n * 2
    assert r.max_by_category["optimizer"] >= 3 * n * 2


def test_lora_adapters_match_r_times_in_plus_out() -> None:
    cfg = cut(LLAMA)
    spec = model_spec_from_config(LLAMA, cfg)
    rank = 8
    r = trace_workload(cfg, Workload(mode="lora", precision="bf16", context_length=128, lora_rank=rank), model_id=LLAMA)
    # all-linear: every nn.Linear except the output head gets A (r x in) and B (out x r).
    # Per layer at r=8: q,o 2 x 8(3072+3072) + k,v 2 x 8(3072+1024) + gate,up,down 3 x 8(3072+8192)
    # = 98,304 + 65,536 + 270,336 = 434,176; 2 layers = 868,352.
    adapters = sum(rank * (g.in_features + g.out_features) * g.count for g in spec.linears if g.is_nn_linear and g.role != "head")
    assert adapters == 868_352
    assert r.trainable_params == adapters
    res = r.resident_by_category
    assert res["parameters"] == LLAMA_2L_PARAMS * 2 + adapters * 4  # frozen bf16 base, fp32 adapters (peft autocast)
    assert res["gradients"] == adapters * 4
    # 7 adapted linears x 2 layers x (A, B) = 28 tensors, each with an fp32 step scalar.
    assert res["optimizer"] == 2 * adapters * 4 + 28 * 4


def test_lora_qv_with_bf16_adapters() -> None:
    w = Workload(mode="lora", precision="bf16", context_length=128, lora_rank=16, lora_targets="qv", adapter_precision="bf16")
    r = trace_workload(cut(LLAMA), w, model_id=LLAMA)
    # q: 16 x (3072 + 3072), v: 16 x (3072 + 1024), 2 layers = 327,680, stored in bf16.
    assert r.trainable_params == 327_680
    assert r.resident_by_category["parameters"] == (LLAMA_2L_PARAMS + 327_680) * 2


def test_mixtral_fused_experts_and_attention_lora() -> None:
    model_id = "mistralai/Mixtral-8x7B-v0.1"
    cfg = cut(model_id)
    spec = model_spec_from_config(model_id, cfg)
    r = trace_workload(cfg, Workload(mode="inference", precision="bf16", context_length=256), model_id=model_id)
    assert r.num_params == spec.config_num_params == 3_164_688_384
    assert r.resident_by_category["parameters"] == spec.config_num_params * 2
    # 2 (K,V) x 2 layers x 8 kv heads x 128 x 256 tokens x 2 bytes.
    assert r.kv_cache_bytes == 2 * 2 * 8 * 128 * 256 * 2
    lora = trace_workload(cfg, Workload(mode="lora", precision="bf16", context_length=64, lora_targets="attention"), model_id=model_id)
    # q,o: 16 x (4096 + 4096); k,v: 16 x (4096 + 1024); 2 layers = 851,968.
    assert lora.trainable_params == 851_968


def test_gpt_oss_traces_with_eager_attention_and_no_mxfp4() -> None:
    model_id = "openai/gpt-oss-20b"
    cfg = cut(model_id)
    spec = model_spec_from_config(model_id, cfg)
    r = trace_workload(cfg, Workload(mode="inference", precision="bf16", context_length=128), model_id=model_id)
    assert r.num_params == spec.config_num_params
    assert any("eager" in n for n in r.notes) and any("quantization_config" in n for n in r.notes)
    # Layer 0 slides over 128 tokens, layer 1 is full; at 128 tokens both hold all of them:
    # 2 (K,V) x 2 layers x 8 kv heads x 64 head_dim x 128 tokens x 2 bytes.
    assert r.kv_cache_bytes == 2 * 2 * 8 * 64 * 128 * 2


def test_bert_encoder_is_one_forward() -> None:
    model_id = "google-bert/bert-base-uncased"
    cfg = cut(model_id)
    spec = model_spec_from_config(model_id, cfg)
    r = trace_workload(cfg, Workload(mode="inference", precision="fp32", context_length=128, batch_size=4), model_id=model_id)
    # BertModel with pooler, 2 layers: embeddings (30,522 + 512 + 2) x 768 + LayerNorm 2 x 768
    # + 2 x 7,087,872 per layer + pooler 768 x 768 + 768 = 38,603,520.
    assert r.num_params == spec.config_num_params == 38_603_520
    assert r.resident_by_category["parameters"] == 38_603_520 * 4
    assert set(r.phase_peaks) == {"forward"} and r.kv_cache_bytes == 0


def test_full_size_llama_inference_traces_in_seconds() -> None:
    cfg = catalog_config(find_catalog_entry(LLAMA))
    r = trace_workload(cfg, Workload(mode="inference", precision="bf16", context_length=1024), model_id=LLAMA, max_seconds=60)
    assert r.num_params == 3_212_749_824  # catalog: config arithmetic, as PEFT logs it
    assert r.peak_by_category["parameters"] == 3_212_749_824 * 2
    # 2 (K,V) x 28 layers x 8 kv heads x 128 x 1024 tokens x 2 bytes = 112 MiB.
    assert r.kv_cache_bytes == 117_440_512
    rows = trace_summary_rows(r)
    assert rows[-1]["category"] == "total" and rows[-1]["at_peak_bytes"] == r.peak_bytes
    assert sum(row["at_peak_bytes"] for row in rows[:-1]) == r.peak_bytes


@pytest.mark.parametrize(
    ("model_id", "workload", "words"),
    [
        (LLAMA, Workload(mode="qlora", precision="int4"), "quantized kernels"),
        (LLAMA, Workload(mode="inference", precision="int8"), "quantized kernels"),
        (LLAMA, Workload(mode="full", precision="bf16", optimizer="adamw-8bit"), "8-bit AdamW"),
        (LLAMA, Workload(mode="inference", precision="bf16", runtime="vllm"), "vLLM"),
        ("google-bert/bert-base-uncased", Workload(mode="full", precision="fp32"), "encoder"),
    ],
)
def test_untraceable_workloads_say_why(model_id: str, workload: Workload, words: str) -> None:
    with pytest.raises(TraceUnsupportedError, match=words):
        trace_workload(cut(model_id), workload, model_id=model_id)


def _default_cut(model_type: str) -> dict:
    import warnings

    from transformers import AutoConfig

    from calculator.verify.compare import cut_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cut_config(AutoConfig.for_model(model_type).to_dict(), 2)


def test_lora_all_linear_leaves_out_routers_that_return_a_tuple() -> None:
    """PhimoeTopKRouter (transformers 5.24) is an nn.Linear whose forward returns (logits, weights,
    experts); peft's LoRA wrapper adds its output to that and crashed ('tuple' object has no
    attribute 'dtype'). The router is left out; peft all-linear then adapts attention only on
    PhimoeConfig() (hidden 4096, 32 heads, 8 KV heads x 128; the experts are fused 3-D parameters):
    q,o 16 x (4096 + 4096), k,v 16 x (4096 + 1024), 2 layers = 851,968."""
    r = trace_workload(_default_cut("phimoe"), Workload(mode="lora", precision="bf16", context_length=64), model_id="phimoe")
    assert r.trainable_params == 851_968
    assert any("forward returns a tuple" in n and "mlp.router" in n for n in r.notes)


def test_hybrid_copy_whose_kept_layers_are_all_linear_attention_generates() -> None:
    """GraniteMoeHybridConfig() cut to 2 layers keeps two Mamba layers and no attention layer;
    transformers 5.24's `Cache.get_seq_length` reads the length from the first attention layer and
    raised ValueError. The harness's cache answers with the tokens it has seen; the model's state
    (conv + SSM per layer) does not grow, so the prefill and decode peaks differ by activations only."""
    r = trace_workload(_default_cut("granitemoehybrid"), Workload(mode="inference", precision="bf16", context_length=128, generated_tokens=4),
                       model_id="granitemoehybrid")
    assert set(r.phase_peaks) == {"prefill", "decode"} and r.peak_bytes > 0


def test_vision_language_default_config_traces_the_class_its_auto_mapping_builds() -> None:
    """LlavaConfig() names no architectures and LLaVA has no AutoModelForCausalLM class; the trace
    builds LlavaForConditionalGeneration, as the inventory and the profile do, so its parameters
    (vision tower and projector included) are the inventory's count of the same config."""
    cfg = _default_cut("llava")
    r = trace_workload(cfg, Workload(mode="inference", precision="bf16", context_length=64, generated_tokens=2), model_id="llava")
    assert any("LlavaForConditionalGeneration" in n for n in r.notes)
    assert r.num_params == model_spec_from_config("llava", cfg).config_num_params


@pytest.mark.parametrize("model_type", ["mllama", "qwen3_5"])
def test_composite_config_in_the_causal_lm_mapping_traces_the_multimodal_class(model_type: str) -> None:
    """MllamaConfig() and Qwen3_5Config() have an AutoModelForCausalLM class, but it is the text model
    alone (MllamaForCausalLM, Qwen3_5ForCausalLM: transformers 5.24). The inventory counts the
    multimodal class with its vision tower, and the trace builds that class too: the 2-layer mllama
    copy traced 1,486,934,016 parameters as MllamaForCausalLM against the inventory's 2,354,683,411,
    and the sweep read the estimate as +48.8% off."""
    cfg = _default_cut(model_type)
    r = trace_workload(cfg, Workload(mode="inference", precision="bf16", context_length=64, generated_tokens=2), model_id=model_type)
    assert any("ForConditionalGeneration, the class the inventory counts" in n for n in r.notes)
    assert r.num_params == model_spec_from_config(model_type, cfg).config_num_params


def test_encoder_decoder_inference_traces_generate_with_cross_attention_kv() -> None:
    """BartConfig() cut to 1 encoder + 1 decoder layer (d_model 1024, 16 heads x 64): generate()
    encodes the prompt once and keeps the cross-attention K/V of its tokens in the
    EncoderDecoderCache: 2 (K, V) x 1 layer x 1024 x 120 tokens x 2 B = 491,520, plus the decoder's
    self-attention K/V at the 8th step (start token + 7 generated tokens fed back): 2 x 1024 x 8 x 2 B
    = 32,768 (batch 1)."""
    import warnings

    from transformers import AutoConfig

    from calculator.profile import sized_down_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = sized_down_config(AutoConfig.for_model("bart").to_dict(), 1)
    r = trace_workload(cfg, Workload(mode="inference", precision="bf16", context_length=128, generated_tokens=8), model_id="bart")
    assert r.kv_cache_bytes == 491_520 + 32_768
    assert r.peak_phase in ("encode", "prefill", "decode")
