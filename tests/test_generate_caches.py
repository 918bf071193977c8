"""`generate` with a static or a quantized cache: golden numbers derived by hand, the phases they
change, the refusals transformers would make, the CLI / URL / page inputs, and a FakeTensor trace
of 2-layer copies (transformers 5.24 StaticCache and QuantizedCache(backend="fp8")).

Llama-3.1-8B, used throughout: 32 layers, 8 KV heads x head_dim 128, 32 query heads, hidden 4096,
bf16 (c = 2). One token adds e = 2 x 8 x 128 = 2,048 cached values per layer: 4,096 B per layer,
131,072 B over the 32 layers.
"""

from __future__ import annotations

import json

import pytest

from calculator import memory
from calculator.cli import main as cli_main
from calculator.errors import InvalidWorkloadError
from calculator.estimate import estimate
from calculator.resolve import resolve_catalog
from calculator.units import GiB
from calculator.workload import Workload

L8 = "meta-llama/Llama-3.1-8B"


@pytest.fixture(scope="module")
def llama():
    return resolve_catalog(L8).spec


def gen(cache: str = "dynamic", **kw) -> Workload:
    return Workload(precision="bf16", cache_implementation=cache, **{"context_length": 8192, "generated_tokens": 512, **kw})


# --- static cache ----------------------------------------------------------------------------


def test_static_cache_length_is_max_length_minus_one() -> None:
    assert memory.static_cache_len(8192, 512) == 8191  # generate: max_length - 1 (the last token is never fed back)
    assert memory.static_cache_len(4096, 0) == 4096  # one forward: a cache of the context


def test_static_cache_terms(llama) -> None:
    # 4 sequences x 8,191 tokens x 131,072 B = 4,294,443,008 B (4.0 GiB - 512 KiB)
    assert memory.kv_cache_bytes(llama, batch_size=4, seq_len=memory.static_cache_len(8192, 512), kv_bits=16) == 4_294_443_008
    # SDPA: the prefill mask is skipped (empty cache, padding only on unwritten slots) and GQA needs no repeat: nothing extra.
    assert memory.static_prefill_extra_bytes(llama, batch_size=1, prompt_len=1024, cache_len=2048, compute_bytes=2, attention="sdpa") == 0
    # Eager, 1,024 queries against 2,048 keys instead of 1,024 (1,024 extra keys):
    #   scores/softmax/probs 1 x 1,024 x 32 heads x 1,024 x (2c + 4 = 8 B) = 268,435,456
    #   K/V repeated to 32 heads over the extra keys 1,024 x 2 x 2 B x 4,096 = 16,777,216
    #   additive mask 1,024 x 1,024 x 2 B = 2,097,152                                  -> 287,309,824
    assert memory.static_prefill_extra_bytes(llama, batch_size=1, prompt_len=1024, cache_len=2048, compute_bytes=2,
                                             attention="eager") == 354_418_688
    assert memory.static_decode_mask_bytes(batch_size=4, cache_len=8191) == 65_528  # 2 bool masks of 4 x 8,191


def test_gpt_fast_mask_is_the_square_of_the_rounded_length() -> None:
    assert memory.gpt_fast_causal_mask_bytes(131_072) == 16 * GiB  # the 16 GiB of bool at 131,072 tokens
    assert memory.gpt_fast_causal_mask_bytes(1001) == 1008 * 1008  # find_multiple(1001, 8) = 1008


def test_static_prefill_holds_the_whole_cache(llama) -> None:
    dynamic = estimate(llama, gen(generated_tokens=7168))  # 1,024-token prompt
    static = estimate(llama, gen("static", generated_tokens=7168))
    # Prefill: 8,191 preallocated tokens instead of the prompt's 1,024: 7,167 x 131,072 = 939,393,024 B more.
    assert static.phases["prefill"] - dynamic.phases["prefill"] == 939_393_024
    # Decode: one token less than the dynamic cache's 8,192 (-131,072) plus the decoding mask (+2 x 8,191).
    assert static.phases["decode"] - dynamic.phases["decode"] == -131_072 + 16_382
    assert static.peak_phase == "prefill" and dynamic.peak_phase == "decode"
    assert any("preallocates 8,191 tokens" in n and "gpt-fast" in n for n in static.notes)


# --- quantized cache -------------------------------------------------------------------------


def test_grouped_storage() -> None:
    assert memory.grouped_quantized_bytes(64, nbits=4, compute_bytes=2) == 36  # 32 B packed + bf16 scale and zero
    assert memory.grouped_quantized_bytes(65, nbits=4, compute_bytes=2) == 41  # 33 B packed + 2 groups x 4 B
    assert memory.grouped_quantized_bytes(64, nbits=8, compute_bytes=2) == 68


def test_quantized_cache_resident_bytes(llama) -> None:
    kw = {"batch_size": 1, "seq_len": 8192, "compute_bytes": 2}
    # int4, 512 generated: residual min(127, 511) = 127 tokens in bf16, 8,065 quantized. Per layer:
    #   packed 2,048 x 8,065 / 2 = 8,258,560; scales + zeros 258,080 groups x 4 B = 1,032,320; residual 2,048 x 127 x 2 = 520,192
    #   = 9,811,072 B; x 32 layers = 313,954,304 B (vs 1,073,741,824 B in bf16: 29%)
    assert memory.quantized_cache_bytes(llama, generated_tokens=512, kv_cache_precision=None, **kw) == 313_954_304
    assert memory.quantized_cache_bytes(llama, generated_tokens=512, kv_cache_precision="int4", **kw) == 313_954_304
    # No decoding step yet: no residual; 8,388,608 packed + 1,048,576 scales = 9,437,184 per layer, x 32
    assert memory.quantized_cache_bytes(llama, generated_tokens=1, kv_cache_precision="int4", **kw) == 301_989_888
    # fp8 backend: one byte per value and two fp32 scales per layer: 32 x (16,777,216 + 8)
    assert memory.quantized_cache_bytes(llama, generated_tokens=512, kv_cache_precision="fp8", **kw) == 536_871_168


def test_quantized_cache_transients(llama) -> None:
    kw = {"batch_size": 1, "seq_len": 8192, "compute_bytes": 2}
    # One layer over 8,192 tokens, E = 16,777,216 values. int4: dequantized + concatenated K/V in bf16 (2 x E x 2 B) and a
    # re-quantized copy at a flush (8,388,608 + 262,144 x 4) = 67,108,864 + 9,437,184
    assert memory.quantized_cache_decode_transient_bytes(llama, kv_cache_precision="int4", **kw) == 76_546_048
    # fp8: old fp8 K/V (E x 1 B) + returned bf16 K (E/2 x 2 B) + V's fp32 copy and product (E/2 x 8 B) = 6E
    assert memory.quantized_cache_decode_transient_bytes(llama, kv_cache_precision="fp8", **kw) == 6 * 16_777_216
    # Prefill: the layer's bf16 K/V (4,096 B/token, fp8 +8,192) sit beside attention's 49,152 B/token, well under the
    # MLP's 118,784 B/token that sets the layer's peak: nothing extra.
    assert memory.quantized_cache_prefill_transient_bytes(llama, batch_size=1, prompt_len=8192, kv_cache_precision="fp8", compute_bytes=2) == 0


def test_quantized_decode_phase(llama) -> None:
    dynamic = estimate(llama, gen())
    quantized = estimate(llama, gen("quantized"))
    # decode: the bf16 cache (8,192 x 131,072 = 1,073,741,824) becomes 313,954,304, plus the 76,546,048 B layer transient
    assert quantized.phases["decode"] == dynamic.phases["decode"] - 1_073_741_824 + 313_954_304 + 76_546_048
    assert any("keeps those blocks reserved" in n for n in quantized.notes)


@pytest.mark.parametrize(
    ("model", "workload", "match"),
    [
        ("mistralai/Mistral-7B-v0.1", gen("quantized"), "only models whose layers are all full attention"),
        ("google-bert/bert-base-uncased", Workload(precision="fp32", context_length=128, cache_implementation="quantized"), "decoder-only"),
    ],
)
def test_quantized_cache_refused_where_transformers_refuses(model, workload, match) -> None:
    with pytest.raises(InvalidWorkloadError, match=match):
        estimate(resolve_catalog(model).spec, workload)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "lora", "cache_implementation": "static"}, "training keeps no cache"),
        ({"runtime": "vllm", "cache_implementation": "static"}, "vLLM pages its own"),
        ({"cache_implementation": "quantized", "kv_cache_precision": "fp16"}, "int4 .* int8 .* or fp8"),
        ({"cache_implementation": "paged"}, "cache implementation must be one of dynamic, static, quantized"),
    ],
)
def test_workload_validation(kwargs, match) -> None:
    with pytest.raises(InvalidWorkloadError, match=match):
        Workload(precision="bf16", **kwargs)


# --- inputs: CLI, URL, page ------------------------------------------------------------------


def test_cli_cache_option(capsys) -> None:
    assert cli_main(["estimate", L8, "--offline", "--precision", "bf16", "--context", "8192", "--generated", "512", "--cache", "quantized",
                     "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["workload"]["cache_implementation"] == "quantized"
    assert data["total_bytes"] == estimate(resolve_catalog(L8).spec, gen("quantized")).total_bytes
    with pytest.raises(SystemExit):
        cli_main(["estimate", L8, "--cache", "paged"])


def test_url_param_and_reconcile() -> None:
    from ui.state import MAIN_PARAMS, main_workload, read_params, reconcile_main

    values, notes = read_params(MAIN_PARAMS, {"cache": "static", "precision": "bf16"})
    assert values["cache"] == "static" and not notes
    assert main_workload(reconcile_main(values)[0]).cache_implementation == "static"
    values, notes = read_params(MAIN_PARAMS, {"cache": "paged"})
    assert values["cache"] == "dynamic" and "cache=" in notes[0]
    fixed, notes = reconcile_main({**read_params(MAIN_PARAMS, {"cache": "quantized", "mode": "lora", "precision": "bf16"})[0]})
    assert fixed["cache"] == "dynamic" and "set to dynamic" in notes[-1]
    fixed, notes = reconcile_main({**read_params(MAIN_PARAMS, {"cache": "quantized", "kv_dtype": "fp16"})[0]})
    assert fixed["kv_dtype"] == "int4" and "int4" in notes[-1]
    # generated tokens: part of the context, clamped to it; training ignores them
    fixed, notes = reconcile_main(read_params(MAIN_PARAMS, {"gen": "9000", "context": "4096", "cache": "static"})[0])
    assert main_workload(fixed).generated_tokens == 4095 and "using 4,095" in notes[0]
    fixed, _ = reconcile_main(read_params(MAIN_PARAMS, {"gen": "512", "mode": "lora", "precision": "bf16"})[0])
    assert main_workload(fixed).generated_tokens == 0


def test_main_page_cache_widget(fresh_streamlit_caches) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params.update({"cache": "quantized", "precision": "bf16", "gen": "3000"})
    at.run()
    assert not at.exception
    assert at.selectbox(key="main.cache").value == "quantized" and at.number_input(key="main.gen").value == 3000
    assert at.query_params["cache"] == "quantized" and at.query_params["gen"] == "3000"


# --- the trace -------------------------------------------------------------------------------


@pytest.mark.trace
@pytest.mark.parametrize(
    ("model", "workload"),
    [
        # prompt 64 of 1,024: the static prefill holds the 1,023-token cache; eager sees all of its keys.
        ("meta-llama/Llama-3.2-3B", Workload(precision="bf16", context_length=1024, generated_tokens=960, batch_size=2,
                                             cache_implementation="static", attention="eager")),
        ("Qwen/Qwen3-8B", Workload(precision="bf16", context_length=1024, generated_tokens=64, batch_size=2,
                                   cache_implementation="quantized", kv_cache_precision="fp8")),
    ],
    ids=["llama-static-eager", "qwen3-quantized-fp8"],
)
def test_trace_of_a_two_layer_copy(model, workload) -> None:
    # Traced (2-layer cuts, transformers 5.24): llama static eager prefill +0.20% / decode -1.83% (eager decode, the
    # same with the dynamic cache); qwen3 fp8 prefill +0.07% / decode +0.16%. 1% on the peak, 2% per phase.
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from calculator.verify import run_verification
    from calculator.verify.compare import sized_down_spec

    small, _ = sized_down_spec(resolve_catalog(model).spec, 2)
    data = run_verification(small, workload, level="trace", timeout=300)
    assert abs(data["total"]["error_pct"]) < 1.0
    assert {p["phase"] for p in data["phases"]} == {"prefill", "decode"}
    assert all(abs(p["error_pct"]) < 2.0 for p in data["phases"])
