"""Properties of the memory model over random workloads (Hypothesis)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from calculator import memory
from calculator.estimate import estimate
from calculator.resolve import resolve_catalog
from calculator.workload import Workload

MODELS = ["meta-llama/Llama-3.1-8B", "Qwen/Qwen3-30B-A3B", "openai/gpt-oss-20b", "deepseek-ai/DeepSeek-V3",
          "bosonai/higgs-audio-v2-generation-3B-base", "google-bert/bert-base-uncased", "mistralai/Mixtral-8x7B-v0.1"]
SPECS = {m: resolve_catalog(m).spec for m in MODELS}

@st.composite
def workloads(draw) -> Workload:
    mode = draw(st.sampled_from(["inference", "lora", "qlora", "full"]))
    return Workload(
        mode=mode,
        precision="int4" if mode == "qlora" else "bf16",
        context_length=draw(st.integers(1, 65_536)),
        batch_size=draw(st.integers(1, 64)),
        gradient_checkpointing=draw(st.booleans()),
        attention=draw(st.sampled_from(["sdpa", "eager"])),
        optimizer=draw(st.sampled_from(["adamw", "adamw-8bit", "adafactor", "sgd"])),
    )


@settings(max_examples=150, deadline=None)
@given(model=st.sampled_from(MODELS), w=workloads(), extra_tokens=st.integers(0, 10_000), extra_batch=st.integers(0, 16))
def test_more_context_or_batch_never_lowers_memory(model, w, extra_tokens, extra_batch):
    spec = SPECS[model]
    base = estimate(spec, w).total_bytes
    assert estimate(spec, replace(w, context_length=w.context_length + extra_tokens)).total_bytes >= base
    assert estimate(spec, replace(w, batch_size=w.batch_size + extra_batch)).total_bytes >= base


@settings(max_examples=100, deadline=None)
@given(model=st.sampled_from(["meta-llama/Llama-3.1-8B", "deepseek-ai/DeepSeek-V3", "Qwen/Qwen3-30B-A3B"]),
       batch=st.integers(1, 256), tokens=st.integers(1, 200_000), bits=st.sampled_from([4, 8, 16, 32]))
def test_kv_cache_is_linear_in_batch_times_tokens(model, batch, tokens, bits):
    spec = SPECS[model]
    per_token = memory.kv_cache_bytes_per_token(spec, bits)
    assert memory.kv_cache_bytes(spec, batch_size=batch, seq_len=tokens, kv_bits=bits) == batch * tokens * per_token


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(MODELS), context=st.integers(1, 32_768))
def test_lower_precision_never_needs_more(model, context):
    spec = SPECS[model]
    if spec.quantization is not None:
        return  # pre-quantized checkpoints keep their stored format whatever is picked
    totals = [estimate(spec, Workload(precision=p, context_length=context)).breakdown.weights_bytes for p in ("int4", "int8", "bf16", "fp32")]
    assert totals[0] < totals[1] < totals[2] < totals[3]


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(MODELS), gpus=st.sampled_from([2, 4, 8]), context=st.integers(128, 32_768))
def test_more_gpus_never_raise_per_gpu_memory(model, gpus, context):
    spec = SPECS[model]
    for mode in ("inference", "full"):
        w = Workload(mode=mode, precision="bf16", context_length=context)
        assert estimate(spec, replace(w, num_gpus=gpus)).total_bytes <= estimate(spec, w).total_bytes
