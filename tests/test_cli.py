"""The CLI contract: `python -m calculator estimate MODEL ... --json`, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "VRAM_CALC_CACHE": str(ROOT / ".pytest_cache" / "cli-cache")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "calculator", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def test_higgs_audio_offline_json():
    out = run_cli("estimate", "bosonai/higgs-audio-v2-generation-3B-base", "--json", "--offline")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["model"] == "bosonai/higgs-audio-v2-generation-3B-base"
    assert round(data["params"] / 1e9, 1) == 5.8  # "about 5.8B parameters"
    for key in ("total_bytes", "torch_allocated_bytes", "breakdown", "gpu_ranking"):
        assert key in data
    assert data["total_bytes"] == sum(data["breakdown"].values())
    assert data["torch_allocated_bytes"] < data["total_bytes"]
    assert data["gpu_ranking"] and data["gpu_ranking"][0]["fits"]


def test_fp16_ranking_prices_and_fit():
    data = json.loads(run_cli("estimate", "bosonai/higgs-audio-v2-generation-3B-base", "--precision", "fp16", "--json", "--offline").stdout)
    fitting = [c for c in data["gpu_ranking"] if c["fits"]]
    prices = [c["total_usd_per_hour"] for c in fitting if c["total_usd_per_hour"] is not None]
    assert prices == sorted(prices)
    assert data["cheapest_fit"]["usable_bytes_per_gpu"] >= data["total_bytes"]


def test_text_report_mentions_peak_and_units():
    out = run_cli("estimate", "meta-llama/Llama-3.1-8B", "--precision", "bf16", "--offline")
    assert out.returncode == 0
    assert "GiB" in out.stdout and "peak VRAM" in out.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["estimate", "no-such-org/no-such-model", "--offline"], "could not be reached"),
        (["estimate", "bosonai/higgs-audio-v2-generation-3B-base", "--context", "0"], "context length"),
        (["estimate", "bosonai/higgs-audio-v2-generation-3B-base", "--batch", "abc"], "whole number"),
        (["estimate", "bosonai/higgs-audio-v2-generation-3B-base", "--mode", "qlora", "--precision", "bf16"], "QLoRA"),
        (["estimate", "bosonai/higgs-audio-v2-generation-3B-base", "--mode", "full", "--precision", "int4"], "Full fine-tuning"),
        (["estimate", "../../etc/passwd"], "error"),
        (["estimate", "bosonai/higgs-audio-v2-generation-3B-base", "--headroom", "nan"], "finite"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(args, needle):
    out = run_cli(*args)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in out.stderr


def test_local_directory_with_config(tmp_path):
    src = ROOT / "calculator" / "data" / "models" / "meta-llama__Llama-3.2-3B" / "config.json"
    (tmp_path / "config.json").write_text(src.read_text())
    data = json.loads(run_cli("estimate", str(tmp_path), "--json").stdout)
    assert data["params"] == 3_212_749_824


def test_catalog_lists_default_model():
    out = run_cli("catalog")
    assert "bosonai/higgs-audio-v2-generation-3B-base" in out.stdout


def test_provider_filter_limits_the_ranking():
    data = json.loads(run_cli("estimate", "bosonai/higgs-audio-v2-generation-3B-base", "--provider", "spheron", "--json").stdout)
    providers = {c["provider"] for c in data["gpu_ranking"] if c["provider"]}
    assert providers and all(p.startswith("Spheron") for p in providers)


def test_web_resolution_never_reads_local_folders(tmp_path):
    from calculator.errors import CalculatorError
    from calculator.resolve import resolve_model

    src = ROOT / "calculator" / "data" / "models" / "meta-llama__Llama-3.2-3B" / "config.json"
    (tmp_path / "config.json").write_text(src.read_text())
    assert resolve_model(str(tmp_path)).source == "local"
    with pytest.raises(CalculatorError):
        resolve_model(str(tmp_path), allow_local=False, offline=True)


def test_vllm_ranking_reports_capacity():
    data = json.loads(run_cli("estimate", "meta-llama/Llama-3.1-8B", "--precision", "bf16", "--runtime", "vllm", "--context", "8192", "--json").stdout)
    fit = data["cheapest_fit"]
    assert fit["vllm_max_concurrent_sequences"] >= 1
    # One 8,192-token sequence needs 512 blocks x 16 tokens x 131,072 B = 1 GiB of K/V.
    assert fit["vllm_kv_pool_bytes"] // 2**30 == fit["vllm_max_concurrent_sequences"]
    assert data["breakdown_labels"]["allocator_reserve"].startswith("Left free")


def test_oft_and_vera_flags_reach_the_estimate_and_its_json():
    # OFT block 32 on all-linear Llama-3.2-3B: 28 layers x 26,624 inputs x 31 / 2 (tests/test_trainers.py derives it).
    out = run_cli("estimate", "meta-llama/Llama-3.2-3B", "--mode", "lora", "--precision", "bf16", "--peft-method", "oft",
                  "--oft-block-size", "32", "--json", "--offline")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["trainable_params"] == 28 * 412_672
    assert data["trainer"]["peft_method"] == "oft" and data["trainer"]["oft_block_size"] == 32 and data["trainer"]["vera_rank"] is None
    vera = json.loads(run_cli("estimate", "meta-llama/Llama-3.2-3B", "--mode", "lora", "--precision", "bf16", "--peft-method", "vera",
                              "--vera-rank", "64", "--json", "--offline").stdout)
    assert vera["trainer"]["vera_rank"] == 64 and vera["inputs"]["vera_rank"] == 64
    # A size for a method not chosen would change nothing: refused in one line.
    bad = run_cli("estimate", "meta-llama/Llama-3.2-3B", "--mode", "lora", "--vera-rank", "64", "--offline")
    assert bad.returncode != 0 and "--peft-method vera" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_checkpoint_policy_flag():
    args = ("estimate", "meta-llama/Llama-3.2-3B", "--mode", "full", "--precision", "bf16", "--context", "1024", "--json", "--offline")
    full = json.loads(run_cli(*args, "--grad-checkpointing").stdout)
    sac = json.loads(run_cli(*args, "--grad-checkpointing", "--checkpoint-policy", "selective-op").stdout)
    assert sac["trainer"]["checkpoint_policy"] == "selective-op" and full["trainer"]["checkpoint_policy"] == "full"
    # Each checkpointed layer keeps more (tests/test_trainers.py derives how much); the peak cannot fall.
    assert sac["total_bytes"] >= full["total_bytes"] and any("Selective op checkpointing" in n for n in sac["notes"])
