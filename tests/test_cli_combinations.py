"""The CLI with the flags of issues 11-13 together (trainer presets, vLLM engine flags, generate
caches, stacks): a combination that contradicts itself or names a flag that would change nothing is
one `error:` line and exit status 2, and the JSON carries every input needed to rerun the estimate.

In-process (`calculator.cli.main`) and offline: the refusals come before the model is resolved.
"""

from __future__ import annotations

import json

import pytest

from calculator.cli import main
from calculator.workload import Workload

SEED = "bosonai/higgs-audio-v2-generation-3B-base"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        # Two spellings of one setting with two values: before, the vLLM spelling won silently.
        (["--runtime", "vllm", "--max-model-len", "2048", "--context", "4096"], "--max-model-len 2048 and --context 4096"),
        (["--runtime", "vllm", "--tensor-parallel-size", "2", "--gpus", "4"], "--tensor-parallel-size 2 and --gpus 4"),
        (["--runtime", "vllm", "--kv-cache-dtype", "fp8", "--kv-precision", "int4"], "--kv-cache-dtype fp8 and --kv-precision int4"),
        (["--runtime", "vllm", "--kv-cache-dtype", "auto", "--kv-precision", "int4"], "--kv-cache-dtype auto and --kv-precision int4"),
        # vLLM engine flags on the transformers runtime: before, ignored with exit status 0.
        (["--enforce-eager"], "--enforce-eager is a vLLM flag"),
        (["--max-num-seqs", "8", "--vllm-version", "0.10"], "--vllm-version, --max-num-seqs are vLLM flags"),
        (["--gpu-memory-utilization", "0.5"], "--gpu-memory-utilization is a vLLM flag"),
        # A trainer preset for inference: before, ignored with exit status 0.
        (["--trainer", "unsloth"], "--trainer unsloth sets up a training loop"),
        # Contradictions the engine already refused: still one line.
        (["--mode", "lora", "--runtime", "vllm"], "vLLM is an inference server"),
        (["--cache", "static", "--runtime", "vllm"], "cache_implementation='static'"),
        (["--mode", "lora", "--cache", "quantized"], "cache_implementation='quantized'"),
        (["--cache", "quantized", "--kv-precision", "bf16"], "QuantizedCache"),
        (["--runtime", "vllm", "--vllm-version", "0.99"], "vLLM version '0.99' is not modelled"),
        (["--runtime", "vllm", "--max-num-seqs", "0"], "max_num_seqs"),
        (["--generated", "5000", "--context", "4096"], "generated tokens"),
        (["--audio-share", "2"], "audio token share"),
        (["--mode", "lora", "--checkpoint-every", "0"], "checkpoint every"),
    ],
)
def test_bad_combination_is_one_error_line(capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    assert main(["estimate", SEED, "--offline", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [
    ["--runtime", "vllm", "--max-model-len", "4096", "--context", "4096", "--tensor-parallel-size", "1", "--kv-cache-dtype", "fp8",
     "--kv-precision", "fp8"],  # two spellings that agree are fine
    ["--trainer", "custom"],  # custom = exactly the settings given: nothing to refuse for inference
])
def test_agreeing_spellings_are_accepted(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert main(["estimate", SEED, "--offline", "--json", *args]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("args", [
    ["--runtime", "vllm", "--vllm-version", "0.10", "--max-num-seqs", "64", "--max-num-batched-tokens", "4096", "--enforce-eager",
     "--gpu-memory-utilization", "0.85", "--max-model-len", "8192", "--kv-cache-dtype", "fp8", "--provider", "runpod", "--headroom", "0.1"],
    ["--mode", "lora", "--trainer", "torchtune", "--precision", "bf16", "--optimizer", "adamw-8bit", "--packing", "padded",
     "--sample-lengths", "512,1024", "--stack", "transformers-4.35", "--audio-share", "0.25"],
    ["--cache", "quantized", "--kv-precision", "int8", "--context", "8192", "--generated", "512", "--precision", "bf16"],
])
def test_json_inputs_rebuild_the_same_workload(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert main(["estimate", SEED, "--offline", "--json", *args]) == 0
    data = json.loads(capsys.readouterr().out)
    inputs = dict(data["inputs"])
    headroom, providers = inputs.pop("headroom_fraction"), inputs.pop("providers")
    rebuilt = Workload(**{k: tuple(v) if isinstance(v, list) else v for k, v in inputs.items()})
    # The same estimate again from the JSON alone (the CLI re-run with these inputs gives the same bytes).
    from calculator.report import build_plan, estimate_to_dict, provider_price_book
    from calculator.resolve import resolve_model

    prices = provider_price_book(tuple(providers)) if providers else None
    again = estimate_to_dict(build_plan(resolve_model(data["model"], offline=True).spec, rebuilt, headroom_fraction=headroom, prices=prices))
    assert again["total_bytes"] == data["total_bytes"]
    assert again["inputs"] == {k: v for k, v in data["inputs"].items() if k not in ("headroom_fraction", "providers")}
    assert again["cheapest_fit"] == data["cheapest_fit"]
    if "--vllm-version" in args:
        assert (inputs["vllm_version"], inputs["max_num_seqs"], inputs["max_num_batched_tokens"], inputs["enforce_eager"],
                inputs["gpu_memory_utilization"], inputs["kv_cache_precision"], inputs["context_length"]) == ("0.10", 64, 4096, True, 0.85, "fp8", 8192)
        assert providers == ["runpod"] and headroom == 0.1
    if "--trainer" in args:
        assert (inputs["trainer"], inputs["optimizer"], inputs["stack"], inputs["sample_lengths"]) == ("torchtune", "adamw-8bit", "transformers-4.35",
                                                                                                     [512, 1024])
