"""`run_verification` at the trace level: the mapping of engine components to trace categories,
sized-down runs, pre-quantized checkpoints, and the `verify` CLI built on it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from calculator.catalog import catalog_config, find_catalog_entry
from calculator.estimate import estimate
from calculator.resolve import resolve_model
from calculator.spec import model_spec_from_config
from calculator.verify import GROUPS, VerificationError, cut_config, engine_groups, error_pct, run_verification
from calculator.workload import Workload

LLAMA = "meta-llama/Llama-3.2-3B"


def test_error_pct_sign_and_zero() -> None:
    assert error_pct(110, 100) == pytest.approx(10.0)  # positive: the engine over-estimates
    assert error_pct(90, 100) == pytest.approx(-10.0)
    assert error_pct(5, 0) is None


def test_cut_config_keeps_the_layer_pattern() -> None:
    cfg = catalog_config(find_catalog_entry("openai/gpt-oss-20b"))
    cut = cut_config(cfg, 2)
    assert cut["num_hidden_layers"] == 2 and cut["layer_types"] == cfg["layer_types"][:2]
    assert cfg["num_hidden_layers"] == 24  # the original is untouched
    with pytest.raises(VerificationError):
        cut_config(cfg, 0)


# transformers 5.24 default configs whose class validators rejected a 2-layer copy before the cut
# followed the per-layer fields (profile_sweep.csv, "not answered: MalformedConfigError"), and gpt2,
# whose depth key is `n_layer` (GPT2Config.attribute_map).
@pytest.mark.parametrize(
    ("model_type", "field"),
    [
        ("axk2", "mlp_layer_types"),  # one entry per layer
        ("mistral_large4_text", "kv_source_layers"),
        ("zamba", "layers_block_type"),
        ("gemma3n_text", "intermediate_size"),  # a per-layer list of widths
        ("gemma4_text", "per_layer_config"),  # dict keyed by layer index ('05')
        ("dory", "n_input_layers"),  # n_input + n_recurrent + n_output layers == num_hidden_layers
        ("gpt2", "n_layer"),
    ],
)
def test_cut_config_cuts_every_per_layer_field(model_type: str, field: str) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.AutoConfig.for_model(model_type).to_dict()
    cut = cut_config(cfg, 2)
    transformers.CONFIG_MAPPING[model_type].from_dict(cut)  # the class's own validators accept it
    key = "num_hidden_layers" if "num_hidden_layers" in cfg else "n_layer"
    depth = cfg[key]
    assert cut[key] == 2 and cut[field] != cfg[field]
    if model_type == "dory":  # the first 2 layers are input layers
        assert (cut["n_input_layers"], cut["n_recurrent_layers"], cut["n_output_layers"]) == (2, 0, 0)
    for key, value in cfg.items():  # no list keeps one entry per layer of the full depth
        if isinstance(value, list) and len(value) == depth:
            assert len(cut[key]) == 2, key


def test_engine_groups_split_lora_adapters_back() -> None:
    spec = resolve_model(LLAMA, offline=True).spec
    est = estimate(spec, Workload(mode="lora", precision="bf16", context_length=1024))
    g = engine_groups(est)
    adapter = est.trainable_params * 4  # fp32 adapters
    b = est.breakdown
    assert est.peak_phase == "backward"  # the loss's backward: no adapter gradient exists yet
    assert g["weights"] == b.weights_bytes + adapter
    assert g["gradients"] == 0
    assert g["optimizer"] == b.adapters_bytes - adapter == 2 * adapter  # two fp32 AdamW states
    assert g["activations"] == b.kv_cache_bytes + b.activations_bytes + b.logits_bytes
    assert sum(g.values()) == b.torch_allocated_bytes


def test_levels_are_checked() -> None:
    spec = resolve_model(LLAMA, offline=True).spec
    with pytest.raises(VerificationError, match="'trace' or 'live'"):
        run_verification(spec, Workload(), level="gpu")  # type: ignore[arg-type]


@pytest.mark.trace
class TestTrace:
    @pytest.fixture(autouse=True)
    def _needs_torch(self) -> None:
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
        pytest.importorskip("peft")

    def test_sized_down_llama_lora(self) -> None:
        spec = resolve_model(LLAMA, offline=True).spec
        w = Workload(mode="lora", precision="bf16", context_length=512, batch_size=2)
        data = run_verification(spec, w, level="trace", timeout=120, layers=2)
        json.dumps(data)
        assert data["layers"] == 2 and data["full_layers"] == 28
        # the estimate shown is the cut model's, the full one rides along
        cut_spec = model_spec_from_config(LLAMA, cut_config(spec.raw_config, 2))
        assert data["estimate"]["torch_allocated_bytes"] == estimate(cut_spec, w).torch_allocated_bytes
        assert data["full_estimate"]["torch_allocated_bytes"] == estimate(spec, w).torch_allocated_bytes
        tr = data["trace"]
        assert sum(tr["groups"].values()) == tr["peak_bytes"] == data["total"]["measured_bytes"]
        rows = {r["component"]: r for r in data["comparison"]}
        assert set(rows) <= set(GROUPS)
        # The frozen base and the fp32 adapters are exact: both sides count the same tensors.
        assert rows["weights"]["error_pct"] == pytest.approx(0.0, abs=0.01)
        assert rows["optimizer"]["error_pct"] == pytest.approx(0.0, abs=0.01)
        assert abs(data["total"]["error_pct"]) < 15
        assert [p["phase"] for p in data["phases"]] == ["backward", "optimizer step"]

    def test_pre_quantized_checkpoint_is_estimated_unquantized(self) -> None:
        spec = resolve_model("openai/gpt-oss-20b", offline=True).spec
        assert spec.quantization is not None
        w = Workload(precision="bf16", context_length=256, attention="eager")
        data = run_verification(spec, w, level="trace", timeout=120, layers=2)
        assert any("pre-quantized (mxfp4" in n for n in data["notes"])
        rows = {r["component"]: r for r in data["comparison"]}
        assert abs(rows["weights"]["error_pct"]) < 1  # bf16 experts on both sides, not mxfp4 vs bf16

    def test_cli_verify_json_and_text(self) -> None:
        args = [sys.executable, "-m", "calculator", "verify", LLAMA, "--offline", "--precision", "bf16", "--context", "128"]
        out = subprocess.run([*args, "--json"], capture_output=True, text=True, check=True, timeout=300)
        data = json.loads(out.stdout)
        assert data["level"] == "trace" and data["trace"]["peak_bytes"] > 0
        text = subprocess.run(args, capture_output=True, text=True, check=True, timeout=300).stdout
        assert "estimate vs trace" in text and "total (torch allocated)" in text


def test_a_trainer_that_cannot_start_is_not_traced_the_run_that_starts_is() -> None:
    """Verification of the seed model + LoRA under TRL's default raised AttributeError ('NoneType' object has no attribute
    'weight') out of trl's fused head (higgs-audio has no single lm_head): the page showed a stack trace. The trace now
    runs what the estimate sizes, HF Trainer with the same settings, and says so."""
    pytest.importorskip("torch")
    from calculator.trainers import preset_workload

    spec = resolve_model("bosonai/higgs-audio-v2-generation-3B-base").spec
    w = preset_workload("trl-sft", mode="lora", context_length=128)
    data = run_verification(spec, w, level="trace", layers=2, timeout=300)
    assert data["trace"]["peak_bytes"] > 0
    assert any("TRL SFTTrainer fails at its first step" in n and "The measurement runs that loop too." in n for n in data["notes"])
    assert data["workload"]["trainer"] == "hf-trainer" and data["workload"]["loss_impl"] == "full"
