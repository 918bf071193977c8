"""torch.compile'd decoder layers (torchtune compile=True): the min-cut partition's saved set,
pinned to a hand derivation and to a compiled trace of a real transformers layer."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from calculator import memory
from calculator.cli import build_parser, workload_from_args
from calculator.estimate import estimate
from calculator.resolve import resolve_catalog
from calculator.workload import Workload

LLAMA = resolve_catalog("meta-llama/Llama-3.2-3B-Instruct").spec  # h 3072, q 3072, kv 1024, I 8192, 24 heads, 28 layers
QWEN = resolve_catalog("Qwen/Qwen2.5-0.5B-Instruct").spec  # h 896, q 896, kv 128, I 4864, 14 heads
ROOT = Path(__file__).resolve().parents[1]


def test_compiled_layer_saved_set_by_hand():
    # layer input + o_proj output + two normalized linear inputs (4ch), 1/rms x2 (8), SDPA q, k, v,
    # output (c(2q + 2kv)), fp32 log-sum-exp per head (4·heads), gate, up, act(gate)·up (3cI).
    c = 2
    assert memory.compiled_layer_saved_bytes_per_token(LLAMA, compute_bytes=c) == (
        4 * c * 3072 + 8 + c * (2 * 3072 + 2 * 1024) + 4 * 24 + 3 * c * 8192) == 90_216
    assert memory.compiled_layer_saved_bytes_per_token(QWEN, compute_bytes=c) == (
        4 * c * 896 + 8 + c * (2 * 896 + 2 * 128) + 4 * 14 + 3 * c * 4864) == 40_512
    # Eager saves more: the norms' fp32 upcasts, SiLU's input and output, the residual's recomputed operands.
    eager = memory.layer_saved_bytes_per_token(LLAMA, compute_bytes=c, seq_len=4096, attention="sdpa", adapters=None)
    assert eager == 131_176 and 90_216 / eager == pytest.approx(0.688, abs=1e-3)


def test_compiled_layer_untraced_shapes_are_not_sized():
    # LayerNorm / plain MLP (BERT, OPT), MoE (Mixtral), MLA (DeepSeek-V3): no trace backs a number.
    for model_id in ("google-bert/bert-base-uncased", "facebook/opt-350m", "mistralai/Mixtral-8x7B-v0.1", "deepseek-ai/DeepSeek-V3"):
        assert memory.compiled_layer_saved_bytes_per_token(resolve_catalog(model_id).spec, compute_bytes=2) is None


def test_estimate_swaps_each_layers_saved_set():
    w = Workload(mode="full", precision="bf16", batch_size=2, context_length=4096)
    eager, compiled = estimate(LLAMA, w), estimate(LLAMA, dataclasses.replace(w, compile_layers=True))
    per_token = 131_176 - 90_216
    assert eager.torch_allocated_bytes - compiled.torch_allocated_bytes == 28 * 8192 * per_token
    assert any("torch.compile of the layers (torchtune compile=True)" in n for n in compiled.notes)
    # LoRA (frozen base) is not traced: sized as eager, and the note says so.
    lora = Workload(mode="lora", precision="bf16", batch_size=2, context_length=4096)
    lc = estimate(LLAMA, dataclasses.replace(lora, compile_layers=True))
    assert lc.torch_allocated_bytes == estimate(LLAMA, lora).torch_allocated_bytes
    assert any("sized as eager" in n for n in lc.notes)
    # With every layer checkpointed the layers keep only their inputs: compiling them changes nothing there.
    ac = dataclasses.replace(w, gradient_checkpointing=True)
    assert estimate(LLAMA, dataclasses.replace(ac, compile_layers=True)).torch_allocated_bytes == estimate(LLAMA, ac).torch_allocated_bytes


def test_cli_compile_layers_flag():
    args = build_parser().parse_args(["estimate", "meta-llama/Llama-3.2-3B-Instruct", "--mode", "full", "--compile-layers"])
    assert workload_from_args(args).compile_layers is True


def test_compiled_layer_matches_a_compiled_trace():
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location("compile_layer_trace", ROOT / "benchmarks" / "compile_layer_trace.py")
    trace = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trace)
    model, _ = trace.build_layer("Qwen/Qwen2.5-0.5B-Instruct")
    layer = model.model.layers[0]
    batch, seq = 1, 32
    x, pos, cos_sin = trace.layer_inputs(model, batch, seq)
    eager = sum(b for _, _, b, shared in trace.eager_saved(layer, x, pos, cos_sin)["tensors"] if not shared)
    comp = trace.compiled_saved(layer, x.detach().clone().requires_grad_(True), pos, cos_sin)
    compiled = sum(b for _, _, b, shared in comp["hooked"] if not shared)
    tokens = batch * seq
    assert compiled == tokens * memory.compiled_layer_saved_bytes_per_token(QWEN, compute_bytes=2)
    assert eager == tokens * memory.layer_saved_bytes_per_token(QWEN, compute_bytes=2, seq_len=seq, attention="sdpa", adapters=None)


def test_compile_link_sizes_the_compiled_layers_on_the_main_page():
    # The torch.compile switch is an input like every other: `compile=true` in a link reproduces the
    # compiled estimate (layers and loss), and it is what the page's metric shows.
    from streamlit.testing.v1 import AppTest

    from ui.state import MAIN_PARAMS, main_workload, reconcile_main

    model = "meta-llama/Llama-3.2-3B-Instruct"
    peaks = {}
    for flag in ("false", "true"):
        at = AppTest.from_file("../app.py", default_timeout=60)
        at.query_params.update(model=model, mode="full", precision="bf16", trainer="torchtune", compile=flag)
        at.run()
        assert not at.exception
        values, _ = reconcile_main({p.name: at.session_state[f"main.{p.name}"] for p in MAIN_PARAMS})
        w = main_workload(values)
        assert w.compile_layers is w.compile_loss is (flag == "true")
        peaks[flag] = estimate(LLAMA, w).total_bytes
        assert at.session_state["main.compile"] is (flag == "true")
    assert peaks["true"] < peaks["false"]
