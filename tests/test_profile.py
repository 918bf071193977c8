"""Trace profiles (calculator.profile): fitted per-layer terms that reproduce a direct trace.

The fit uses four (batch, tokens) points; these tests check the profile at points it never saw,
against `trace_workload` of the same sized-down config (both on fake tensors, so nothing is
allocated). Keys and serialisation are checked without torch.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from calculator.catalog import catalog_config, find_catalog_entry
from calculator.profile import (
    ComponentFit,
    MemoryProfile,
    Terms,
    choose_depths,
    config_hash,
    default_settings,
    profile_key,
)

QWEN = "Qwen/Qwen2.5-0.5B"


def test_import_profile_imports_no_torch() -> None:
    code = "import sys, calculator, calculator.profile, calculator.estimate; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_key_changes_with_config_settings_and_versions() -> None:
    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2}
    v = {"torch": "2.13.0", "transformers": "5.24.0", "peft": "0.21.2"}
    s = default_settings()
    base = profile_key(cfg, s, v)
    assert profile_key({**cfg, "hidden_size": 128}, s, v) != base
    assert profile_key(cfg, s, {**v, "transformers": "5.25.0"}) != base
    assert profile_key(cfg, s, {**v, "torch": "2.14.0"}) != base
    assert profile_key(cfg, default_settings(attention="eager"), v) != base
    # Provenance fields do not change the architecture, hence not the key.
    assert profile_key({**cfg, "transformers_version": "4.0", "_name_or_path": "x"}, s, v) == base
    # Shipped profiles are found without versions (no torch to ask).
    assert profile_key(cfg, s, None) == base.rsplit("-", 1)[0]
    assert config_hash(cfg) == config_hash(dict(reversed(list(cfg.items()))))


def test_depths_separate_every_layer_kind() -> None:
    assert choose_depths(["a"] * 28) == (2, 3)  # a 1-layer copy's only layer is also its last
    assert choose_depths(["a", "a"]) == (1, 2)
    # Jamba's period: Mamba dense / Mamba MoE alternate, attention at layer 4.
    jamba = ["m", "mm", "m", "mm", "A", "mm", "m", "mm"] * 4
    assert choose_depths(jamba) == (2, 3, 4, 5)


def test_json_round_trip_and_scaling() -> None:
    fit = ComponentFit(base=Terms(const=10, per_seq=2), per_kind=(("a", Terms(per_token=3.0)), ("w", Terms(per_token=1.0))))
    p = MemoryProfile(model_type="x", config_hash="h", settings=default_settings(), versions={"torch": "2.13.0"},
                      kinds=(("a", 3), ("w", 2)), windows=(("w", 100),), fits={"inference/prefill/kv": fit})
    again = MemoryProfile.from_json(json.loads(json.dumps(p.to_json())))
    assert again == dataclasses.replace(p, seconds=0.0)
    # 10 + 2 x 2 + 3 layers x 3 B x 2 x 500 + 2 sliding layers x 1 B x 2 x min(500, 100) = 9,414
    assert p.phase_bytes("inference", batch=2, tokens=500)["prefill"]["kv_cache"] == 9_414


@pytest.mark.trace
def test_profile_of_2_layer_copy_matches_direct_trace_off_the_fit_points() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from calculator.estimate import estimate
    from calculator.profile import FIT_POINTS, make_profile
    from calculator.spec import model_spec_from_config
    from calculator.verify import trace_workload
    from calculator.verify.compare import cut_config
    from calculator.workload import Workload

    cfg = cut_config(catalog_config(find_catalog_entry(QWEN)), 2)
    profile = make_profile(cfg, modes=("inference", "lora"), check_point=None)
    assert profile.kinds[0][1] == 2 and profile.traced_depths == (1, 2)
    spec = dataclasses.replace(model_spec_from_config(QWEN, cfg), profile=profile)
    for w in (
        Workload(mode="inference", precision="bf16", context_length=1500, generated_tokens=4, batch_size=3),
        Workload(mode="lora", precision="bf16", context_length=1500, batch_size=3),
    ):
        assert (w.batch_size, w.context_length) not in FIT_POINTS
        measured = trace_workload(cfg, w, model_id=QWEN)
        est = estimate(spec, w)
        assert any("trace profile" in n for n in est.notes)
        # Within 0.5% of the trace's tensor peak (the weights come from the spec, the rest from the profile).
        assert est.torch_allocated_bytes == pytest.approx(measured.peak_bytes, rel=0.005), w.mode


@pytest.mark.trace
def test_mamba2_state_is_the_cache_class_size_and_does_not_grow() -> None:
    """Mamba2's per-layer state, read from transformers' cache, against a hand derivation.

    transformers 5.24 `cache_utils.LinearAttentionLayer.lazy_initialization` allocates
    conv_states[0] = zeros(batch, conv_dim, conv_kernel) in the conv input's dtype and
    recurrent_states[0] = zeros_like(final SSM state); `modeling_mamba2.Mamba2Mixer` sets
    conv_dim = intermediate + 2 x n_groups x state_size, and its reference chunked scan
    (`torch_chunk_scan`, hidden_states.float()) returns the final state in fp32.
    Mamba2Config() defaults: hidden 4096, expand 2 (intermediate 8192), 128 heads x head_dim 64,
    state_size 128, n_groups 8, conv_kernel 4. Per sequence and layer, in bf16:
      conv  = (8192 + 2 x 8 x 128) x 4 x 2 B   =    81,920
      ssm   = 128 x 64 x 128 x 4 B             = 4,194,304
      total                                     = 4,276,224
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import Mamba2Config

    from calculator.verify.compare import cut_config
    from calculator.verify.profile_trace import run_points

    cfg = cut_config(Mamba2Config().to_dict(), 2)
    results, _, kinds = run_points(cfg, mode="inference", points=[(2, 24)], generated=3)
    assert len(kinds) == 2 and all("linear_attention" in k for k in kinds)
    for r in results:
        # Same bytes after the prompt and after decoding: the state does not grow with the context.
        assert r.kv_by_layer["prefill"] == r.kv_by_layer["decode"] == (4_276_224 * r.batch,) * 2


def test_recurrent_gemma_state_is_sized_as_state_not_activations() -> None:
    """RecurrentGemma keeps its recurrent layers' state in its own modules, not in the Cache
    (transformers 5.24 models/recurrent_gemma/modeling_recurrent_gemma.py): per recurrent layer
    `RecurrentGemmaRecurrentBlock.conv1d_state` = the last conv1d_width - 1 positions of x_branch
    (batch x lru_width x 3, bf16) and `RecurrentGemmaRglru.recurrent_states` (batch x lru_width,
    fp32, "always computed in full precision"). RecurrentGemmaConfig() defaults: lru_width 2560,
    conv1d_width 4, block types recurrent, recurrent, attention (window 2048). Per sequence:
      prefill: 2560 x 3 x 2 B + 2560 x 4 B = 15,360 + 10,240 = 25,600
      decode:  conv1d_state = conv_state[:, :, 1:], a view that keeps the (2560 x 4) bf16 window
               alive: 20,480 + 10,240 = 30,720
    The attention layer's K/V stays the cache's: 64 prompt tokens x 10 kv heads x 256 x 2 (K, V) x 2 B
    = 655,360 per sequence."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import RecurrentGemmaConfig

    from calculator.profile import sized_down_config
    from calculator.verify.profile_trace import run_points

    cfg = sized_down_config(RecurrentGemmaConfig().to_dict(), 3)
    results, _, kinds = run_points(cfg, mode="inference", points=[(1, 64), (2, 64)], generated=4)
    assert [k.split("|")[1] for k in kinds] == ["linear_attention", "linear_attention", "sliding_attention"]
    for r in results:
        assert r.kv_by_layer["prefill"][:2] == (25_600 * r.batch,) * 2
        assert r.kv_by_layer["decode"][:2] == (30_720 * r.batch,) * 2
        # K/V of the sliding layer, plus the few bytes of bookkeeping tensors the layer keeps
        # (`cache_layer_bytes` counts every tensor a cache layer holds: an int64 position counter, 8 B).
        assert 0 <= r.kv_by_layer["prefill"][2] - 64 * 10 * 256 * 2 * 2 * r.batch <= 64


def _synthetic_profile() -> MemoryProfile:
    """A hand-written profile: 3 layers of one kind.
    inference prefill: KV 100 B per token per layer; activations 1,000 B + 50 B per sequence (the
    per-sequence part is the logits); decode: the same KV, 10 B of activations; LoRA backward: 10 B/token per layer, 7 B/token outside the layers."""
    return MemoryProfile(
        model_type="synthetic", config_hash="h", settings=default_settings(), versions={}, kinds=(("k", 3),),
        fits={
            "inference/prefill/kv": ComponentFit(per_kind=(("k", Terms(per_token=100.0)),)),
            "inference/prefill/activations": ComponentFit(base=Terms(const=1000.0, per_seq=50.0)),
            "inference/decode/kv": ComponentFit(per_kind=(("k", Terms(per_token=100.0)),)),
            "inference/decode/activations": ComponentFit(base=Terms(const=10.0)),
            "lora/backward/activations": ComponentFit(base=Terms(per_token=7.0), per_kind=(("k", Terms(per_token=10.0)),)),
        },
        traced_depths=(2, 3),
    )


def test_estimate_takes_activations_kv_and_logits_from_the_profile() -> None:
    from calculator.estimate import estimate
    from calculator.spec import model_spec_from_config
    from calculator.verify.compare import analytic_vs_profile
    from calculator.workload import Workload

    spec = model_spec_from_config(QWEN, catalog_config(find_catalog_entry(QWEN)))
    with_profile = dataclasses.replace(spec, profile=_synthetic_profile())
    w = Workload(mode="inference", precision="bf16", context_length=1000, batch_size=2)
    b = estimate(with_profile, w).breakdown
    analytic = estimate(spec, w).breakdown
    # KV 3 layers x 100 B x 2 x 1,000 = 600,000; logits 2 x 50 = 100; activations 1,000.
    assert (b.kv_cache_bytes, b.logits_bytes, b.activations_bytes) == (600_000, 100, 1_000)
    assert b.weights_bytes == analytic.weights_bytes  # weights stay the spec's
    # LoRA: "backward" = logits 7 x 2 x 1,000 = 14,000 (outside the layers), activations 3 x 10 x 2,000 = 60,000;
    # adapters and weights from the spec; the analytic optimizer step is kept as a phase.
    lw = Workload(mode="lora", precision="bf16", context_length=1000, batch_size=2)
    est, plain = estimate(with_profile, lw), estimate(spec, lw)
    assert est.phases["optimizer step"] == plain.phases["optimizer step"]
    # The analytic backward is weights + adapters + activations + loss; the profile swaps the last two.
    pb = plain.breakdown
    assert plain.peak_phase == "backward"
    assert est.phases["backward"] == pb.weights_bytes + pb.adapters_bytes + 14_000 + 60_000
    rows = analytic_vs_profile(spec, w, _synthetic_profile())["rows"]
    assert rows[-1]["component"].startswith("total") and rows[-1]["profile_bytes"] == b.torch_allocated_bytes


def test_full_fine_tune_takes_each_backward_piece_of_the_profile() -> None:
    """Full fine-tune with a profile: one estimate phase per profiled backward piece (loss, LM head,
    decoder layers, input embedding), each with the spec's weights and optimizer states; the measured
    input-embedding phase replaces the analytic tied-embedding one. Qwen2.5-0.5B ties its embedding."""
    from calculator.estimate import estimate
    from calculator.profile import TIED_EMBEDDING_PHASE, TRAINING_PHASE_LABELS
    from calculator.spec import model_spec_from_config
    from calculator.workload import Workload

    spec = model_spec_from_config(QWEN, catalog_config(find_catalog_entry(QWEN)))
    assert spec.tie_word_embeddings
    # Per phase, bytes outside the layers per token (the loss buffers), and a constant (the embedding's gradient sum).
    pieces = {"backward": (9.0, 0.0), "backward_head": (2.0, 5e6), "backward_layers": (1.0, 1e6), "backward_embedding": (0.0, 3e9)}
    fits = {f"full/{name}/activations": ComponentFit(base=Terms(const=const, per_token=per_token)) for name, (per_token, const) in pieces.items()}
    profile = dataclasses.replace(_synthetic_profile(), fits=fits)
    w = Workload(mode="full", precision="bf16", context_length=1000, batch_size=2)
    plain, est = estimate(spec, w), estimate(dataclasses.replace(spec, profile=profile), w)
    assert TIED_EMBEDDING_PHASE in plain.phases and TIED_EMBEDDING_PHASE not in est.phases
    assert est.phases["optimizer step"] == plain.phases["optimizer step"]
    held = plain.breakdown.weights_bytes + plain.breakdown.optimizer_bytes  # weights + AdamW states, from the spec
    for name, (per_token, const) in pieces.items():
        # e.g. the loss: 9 B x 2 x 1,000 tokens = 18,000 B over the weights and states.
        assert est.phases[TRAINING_PHASE_LABELS[name]] == held + int(const + per_token * 2_000), name
    assert est.peak_phase == "backward (input embedding)"


@pytest.mark.trace
def test_encoder_decoder_cache_holds_cross_attention_kv_of_the_encoder_tokens() -> None:
    """BART's decoder cache (transformers 5.24: EncoderDecoderCache of a self-attention and a
    cross-attention DynamicCache, modeling_bart.py) against a hand derivation.

    BartConfig() defaults: d_model 1024, 16 decoder heads (head_dim 64). Per decoder layer and
    sequence, in bf16, with 40 encoder tokens and t decoder tokens:
      cross K/V = 2 x 16 x 64 x 40 x 2 B = 163,840   (computed once, by the first decoder step)
      self K/V  = 2 x 16 x 64 x t  x 2 B =   4,096 t
    Batch 2: after the first step (t = 1) 2 x 167,936 = 335,872; after one more (t = 2) 344,064.
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import BartConfig

    from calculator.profile import sized_down_config
    from calculator.verify.profile_trace import run_points

    cfg = sized_down_config(BartConfig().to_dict(), 2)
    assert (cfg["encoder_layers"], cfg["decoder_layers"]) == (2, 2)
    (r,), _, kinds = run_points(cfg, mode="inference", points=[(2, 40)], generated=2)
    assert len(kinds) == 2
    assert r.kv_by_layer["prefill"] == (335_872, 335_872)
    assert r.kv_by_layer["decode"] == (344_064, 344_064)
    assert r.phases["encode"]["activations"] > 0  # the encoder's own forward is a phase


def test_app_attaches_a_cached_profile_to_inventory_specs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from calculator.profile import counted_from
    from calculator.resolve import ResolvedModel
    from calculator.spec import model_spec_from_config
    from calculator.workload import Workload
    from ui import profile_view

    spec = model_spec_from_config(QWEN, catalog_config(find_catalog_entry(QWEN)))
    monkeypatch.setattr(profile_view, "cached_profile", lambda config, settings: _synthetic_profile())
    w = Workload()
    analytic = ResolvedModel(spec=spec, source="catalog", detail="")
    assert profile_view.with_profile(analytic, w) is analytic  # the formulas know qwen2: no profile
    inventory = ResolvedModel(spec=dataclasses.replace(spec, counted_by="inventory", param_source="inventory"), source="hub", detail="")
    got = profile_view.with_profile(inventory, w)
    assert got.spec.profile == _synthetic_profile()
    assert counted_from(got.spec) == "transformers inventory + trace profile"
    assert counted_from(spec) == "analytic formulas"


def test_verification_page_shows_analytic_vs_shipped_profile() -> None:
    """Llama-3.2-3B ships a profile (calculator/data/profiles/): the expander's table is the
    comparison `analytic_vs_profile` computes, without tracing anything."""
    pytest.importorskip("torch")  # the page asks for the tracing stack before anything else
    from streamlit.testing.v1 import AppTest

    from calculator.profile import settings_for, shipped_profile
    from calculator.resolve import resolve_model
    from calculator.verify.compare import analytic_vs_profile
    from calculator.workload import Workload

    llama = "meta-llama/Llama-3.2-3B"
    w = Workload(mode="lora", precision="bf16", context_length=2048, batch_size=2)
    spec = resolve_model(llama, offline=True).spec
    profile = shipped_profile(spec.raw_config, settings_for(w))
    assert profile is not None
    at = AppTest.from_file("../pages/3_Verification.py", default_timeout=120)
    for k, v in {"model": llama, "mode": "lora", "precision": "bf16", "context": "2048", "batch": "2"}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception
    at.toggle(key="verify.profile_toggle").set_value(True).run()
    assert not at.exception
    table = at.dataframe[0].value
    total = table.iloc[-1]
    assert total["Component"] == "total (torch allocated)"
    # The page's workload carries the main page's other defaults; the columns are that workload's
    # two estimates, and the difference is theirs.
    a, p = total["Analytic (GiB)"], total["Trace profile (GiB)"]
    assert total["Difference %"] == pytest.approx((a - p) / p * 100, abs=0.1)
    assert abs(a - p) / p < 0.15
    assert any("held-out check" in c.value for c in at.caption)
    rows = analytic_vs_profile(spec, w, profile)["rows"]  # the same function, at this test's workload
    assert rows[-1]["difference_pct"] is not None


def test_cli_profile_shows_the_shipped_profile(capsys: pytest.CaptureFixture[str]) -> None:
    from calculator.cli import main

    assert main(["profile", "meta-llama/Llama-3.2-3B", "--offline"]) == 0
    out = capsys.readouterr().out
    assert "28 x LlamaDecoderLayer (full_attention)" in out and "held-out point inference/prefill" in out


def test_traced_depths_say_what_was_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy that keeps more layers than asked (GPT-J's `n_layer` was once left uncut, so both
    "2" and "3" were 28-layer traces) is labelled with the layers transformers built."""
    pytest.importorskip("torch")
    from calculator import profile
    from calculator.verify import profile_trace
    from calculator.verify.profile_trace import PointResult

    monkeypatch.setattr(profile_trace, "layer_kinds", lambda cfg: ("L",) * 28)
    monkeypatch.setattr(profile_trace, "versions", lambda: {})

    def fake_run_points(cfg, *, mode, points, **_):
        kinds = ("L",) * 28  # the cut did not take
        return [PointResult(batch=b, length=s, context=s, phases={"forward": {"activations": 100 * b * s, "gradients": 0, "peak": 1}},
                            seconds=0.01) for b, s in points], [], kinds

    monkeypatch.setattr(profile_trace, "run_points", fake_run_points)
    made = profile.make_profile({"model_type": "gptj", "n_layer": 28}, modes=("inference",))
    assert made.traced_depths == (28, 28)
    assert any("2-layer copy was asked for and transformers built 28 layers" in n for n in made.notes)


def _fake_forward(monkeypatch: pytest.MonkeyPatch, pre, layers) -> None:
    """`run_points` of an encoder whose forward peaks before the first layer at pre(b, s, n) and in
    the layers at layers(b, s, n) bytes (kinds: four "L"; weights 10^9 B at both moments)."""
    from calculator.verify import profile_trace
    from calculator.verify.profile_trace import LAYERS, PRE_LAYERS, PointResult

    monkeypatch.setattr(profile_trace, "layer_kinds", lambda cfg: ("L",) * 4)
    monkeypatch.setattr(profile_trace, "versions", lambda: {})

    def fake_run_points(cfg, *, mode, points, **_):
        n = cfg["num_hidden_layers"]

        def at(y: int) -> dict:
            return {"activations": y, "gradients": 0, "peak": y + 10**9}

        out = []
        for b, s in points:
            moments = {f"forward:{PRE_LAYERS}": at(pre(b, s, n)), f"forward:{LAYERS}": at(layers(b, s, n))}
            out.append(PointResult(batch=b, length=s, context=s, phases={"forward": at(max(pre(b, s, n), layers(b, s, n)))},
                                   moments=moments, seconds=0.01))
        return out, [], ("L",) * n

    monkeypatch.setattr(profile_trace, "run_points", fake_run_points)


def test_forward_whose_peak_moves_from_the_mask_to_the_layers_is_fitted_as_two_moments(monkeypatch: pytest.MonkeyPatch) -> None:
    """ModernBERT's sliding-window mask (16 x S^2 B of int64 distances, whatever the batch) is the
    forward's peak at batch 1 and long prompts, the layers at larger batches. Each moment is fitted
    on its own (with a batch-free S^2 term and a fifth point) and the phase is the larger: exact at
    1 x 3,072 (mask) and 3 x 1,536 (layers), at the full depth, off the fit points."""
    pytest.importorskip("torch")
    from calculator import profile

    def pre(b: int, s: int, n: int) -> int:  # embeddings and the positions-only mask: no layers
        return 10_000 + 1_000 * b * s + 16 * s * s

    def layers(b: int, s: int, n: int) -> int:  # per layer B x S, and the boolean [1, 1, S, S] mask kept
        return n * 10_000 * b * s + s * s

    _fake_forward(monkeypatch, pre, layers)
    made = profile.make_profile({"model_type": "enc", "num_hidden_layers": 4}, modes=("inference",), check_point=None)
    assert "inference/forward:pre_layers/activations" in made.fits and any("each moment was fitted on its own" in n for n in made.notes)
    for b, s in ((1, 3072), (3, 1536)):
        got = made.phase_bytes("inference", batch=b, tokens=s)["forward"]
        assert sum(got.values()) == pytest.approx(max(pre(b, s, 4), layers(b, s, 4)), rel=1e-6), (b, s)
    again = MemoryProfile.from_json(json.loads(json.dumps(made.to_json())))
    assert again.phase_bytes("inference", batch=1, tokens=3072) == made.phase_bytes("inference", batch=1, tokens=3072)


def test_forward_whose_peak_stays_in_the_layers_gives_the_same_profile_as_before_moments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the peak is in the layers at every point, the moments change nothing: the profile is the
    one made from the whole phase alone, to the byte (profiles made before the moments stay valid)."""
    pytest.importorskip("torch")
    from calculator import profile

    def pre(b: int, s: int, n: int) -> int:
        return 1_000 * b * s

    def layers(b: int, s: int, n: int) -> int:
        return n * 10_000 * b * s + 7 * b * s * s

    _fake_forward(monkeypatch, pre, layers)
    cfg = {"model_type": "enc", "num_hidden_layers": 4}
    with_moments = profile.make_profile(cfg, modes=("inference",), check_point=None).to_json()
    from calculator.verify import profile_trace

    traced = profile_trace.run_points
    monkeypatch.setattr(profile_trace, "run_points", lambda *a, **k: ([dataclasses.replace(r, moments={}) for r in traced(*a, **k)[0]],
                                                                      *traced(*a, **k)[1:]))
    without = profile.make_profile(cfg, modes=("inference",), check_point=None).to_json()
    with_moments.pop("seconds"), without.pop("seconds")
    assert json.dumps(with_moments, sort_keys=True) == json.dumps(without, sort_keys=True)
    assert "inference/forward:pre_layers/activations" not in with_moments["fits"]


def test_quadratic_phase_with_a_batch_free_s2_is_fitted_on_five_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """An S^2 that is part scores (grows with the batch) and part a mask or index made from positions
    alone (DeepSeek sparse attention's indexer) cannot be split by four points with one at batch 2: the
    quadratic phase is fitted again with the batch-free S^2 on a fifth point, exact at 3 x 1,536."""
    pytest.importorskip("torch")
    from calculator import profile

    def pre(b: int, s: int, n: int) -> int:
        return 1_000 * b * s

    def layers(b: int, s: int, n: int) -> int:
        return n * 10_000 * b * s + 7 * b * s * s + 40 * s * s

    _fake_forward(monkeypatch, pre, layers)
    made = profile.make_profile({"model_type": "enc", "num_hidden_layers": 4}, modes=("inference",), check_point=None)
    got = made.phase_bytes("inference", batch=3, tokens=1536)["forward"]
    assert sum(got.values()) == pytest.approx(layers(3, 1536, 4), rel=1e-6)
    assert made.fits["inference/forward/activations"].base.tokens2 == pytest.approx(40, rel=1e-6)


def _points(fn) -> list:
    """Point results of two depths (1 and 2 layers of kind "a") whose prefill activations are fn(b, s, n)."""
    from types import SimpleNamespace

    from calculator.profile import FIT_POINTS

    runs = []
    for n in (1, 2):
        for b, s in FIT_POINTS:
            y = fn(b, s, n)
            r = SimpleNamespace(batch=b, length=s, context=s, kv_by_layer={},
                                phases={"prefill": {"activations": y, "gradients": 0, "peak": y + 10**9}})
            runs.append(({"a": n}, ("a",) * n, r))
    return runs


def test_linear_phase_is_checked_at_the_fourth_point_and_quadratic_one_is_fitted_exactly() -> None:
    """Bytes linear in B x S: the 3-point linear fit predicts the fourth point exactly, so it is the
    held-out check (0%) and per_token2 is 0. Eager attention's B x S^2 scores: the prediction misses,
    and the phase gets the exact 4-term fit (no check of its own here)."""
    from calculator.profile import _fit_mode

    linear = _points(lambda b, s, n: 5_000 + 7 * b + n * (300 * b * s + 11))
    fits, checks, quadratic = _fit_mode("inference", linear, ["a"], {}, [(1, 1024), (1, 2048), (2, 2048), (1, 4096)])
    assert quadratic == set() and checks == {"inference/prefill": 0.0}
    f = fits["inference/prefill/activations"]
    assert f.per_kind[0][1].per_token2 == 0.0
    assert round(f.at(3, 1536, {"a": 40})) == 5_000 + 21 + 40 * (300 * 3 * 1536 + 11)

    eager = _points(lambda b, s, n: 5_000 + n * (300 * b * s + 2 * b * s * s))
    fits, checks, quadratic = _fit_mode("inference", eager, ["a"], {}, [(1, 1024), (1, 2048), (2, 2048), (1, 4096)])
    assert quadratic == {"prefill"} and checks == {}
    assert fits["inference/prefill/activations"].at(3, 1536, {"a": 40}) == pytest.approx(5_000 + 40 * (300 * 3 * 1536 + 2 * 3 * 1536**2))


@pytest.mark.trace
def test_profile_points_and_decode_stay_within_alibi_positions() -> None:
    """MptConfig() builds its ALiBi bias for max_seq_len = 2,048 positions: a prefill of 2,048 plus
    three decode steps failed to broadcast. The points are shortened until the longest prompt plus
    the generated tokens fits."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import warnings

    from transformers import AutoConfig

    from calculator.profile import GENERATED_TOKENS, make_profile
    from calculator.verify.compare import cut_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = cut_config(AutoConfig.for_model("mpt").to_dict(), 2)
    profile = make_profile(cfg, modes=("inference",), check_point=None)
    assert max(s for _, s in profile.points) + GENERATED_TOKENS <= cfg["max_seq_len"] == 2048
    assert "inference/decode/kv" in profile.fits


@pytest.mark.trace
def test_backward_layers_phase_starts_for_layers_that_return_a_list() -> None:
    """OpenAI-GPT's Block returns a list (transformers 5.24 modeling_openai.py): a module backward
    pre-hook sees no tensor in it and never fired, so the end-of-backward moment (gradients alive)
    and the loss moment fell in one phase and its fit mixed the two (openai-gpt full: -21% vs trace)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import OpenAIGPTConfig

    from calculator.verify.profile_trace import run_points

    cfg = OpenAIGPTConfig(n_embd=64, n_head=2, n_layer=1, n_positions=64, vocab_size=512).to_dict()
    results, _, _ = run_points(cfg, mode="full", points=[(1, 32)])
    layers = results[0].phases["backward_layers"]
    assert layers["peak"] > 0 and layers["gradients"] > 0


@pytest.mark.trace
def test_training_peak_that_moves_with_the_tokens_is_fitted_at_a_larger_batch_too() -> None:
    """OpenAI-GPT's 512 positions shorten the fit points to 112-448 tokens. A 2-layer copy's
    backward peak is then the end of backward (29 MB of gradients alive, the embedding's backward
    temporaries) up to a few hundred tokens and a moment inside the last layer's backward (4.7 MB
    of gradients) at 8 x 448. The large-batch set (8 x the batch) is fitted on its own and each
    phase takes the larger fit: within 0.5% of a direct trace on both sides (the shortened points
    alone: -2.0% at 3 x 384)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from transformers import OpenAIGPTConfig

    from calculator.profile import make_profile
    from calculator.verify.profile_trace import run_points

    cfg = OpenAIGPTConfig(n_layer=2, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0).to_dict()
    profile = make_profile(cfg, modes=("full",), check_point=None)
    assert max(s for _, s in profile.points) == 448 and "full/backward:large/activations" in profile.fits
    results, _, _ = run_points(cfg, mode="full", points=[(1, 112), (3, 384), (8, 448)])
    assert len({r.phases["backward_layers"]["gradients"] for r in results}) == 2  # the peak moved
    for r in results:
        measured = max(p["activations"] + p["gradients"] for p in r.phases.values())
        fitted = max(sum(c.values()) for c in profile.phase_bytes("full", batch=r.batch, tokens=r.length).values())
        assert fitted == pytest.approx(measured, rel=0.005), (r.batch, r.length)


def test_a_set_whose_points_peaked_at_two_moments_gives_way_to_the_other() -> None:
    """The gradients alive at a training peak are parameter-sized: points of one depth with different
    gradient bytes peaked at different moments, and a fit through them follows neither (trocr's
    large-batch backward_layers fit: 547 MB at 1 x 112 tokens where the trace has 360 MB)."""
    from types import SimpleNamespace

    from calculator.profile import _with_large

    def runs(grads) -> list:
        return [({"a": n}, ("a",) * n, SimpleNamespace(batch=1, length=s, phases={"backward": {"gradients": g * n, "peak": 1, "activations": 0}}))
                for n in (1, 2) for s, g in zip((1, 2, 3, 4), grads, strict=True)]

    small, large = {"full/backward/activations": ComponentFit(base=Terms(const=1))}, {"full/backward/activations": ComponentFit(base=Terms(const=2))}
    clean, mixed = runs((5, 5, 5, 5)), runs((5, 5, 1, 1))
    assert _with_large("full", small, large, clean, clean) == {**small, "full/backward:large/activations": large["full/backward/activations"]}
    assert _with_large("full", small, large, clean, mixed) == small
    assert _with_large("full", small, large, mixed, clean) == large
    assert _with_large("full", small, large, mixed, mixed) == _with_large("full", small, large, clean, clean)
    p = MemoryProfile(model_type="x", config_hash="h", settings=default_settings(), versions={}, kinds=(("a", 1),),
                      fits=_with_large("full", small, large, clean, clean))
    assert p.phase_bytes("full", batch=1, tokens=10) == {"backward": {"kv_cache": 0, "logits": 2, "activations": 0, "gradients": 0}}


def test_cutting_a_2_layer_copy_to_1_layer_keeps_fixed_pairs() -> None:
    """A profile of a 2-layer copy traces 1- and 2-layer copies (`choose_depths`). Mamba2Config()
    (transformers 5.24) defaults `time_step_limit` to the pair (0.0, inf) whatever the depth; cut
    to 1 layer as if it were a per-layer list, it became (0.0,), which Mamba2 indexed past and
    FalconH1 / GraniteMoeHybrid refused; FalconH1's `mlp_multipliers` (gate, down) is a pair its
    `__post_init__` sets. Per-layer lists are still cut."""
    pytest.importorskip("transformers")
    from transformers import FalconH1Config, Mamba2Config, Qwen3NextConfig

    from calculator.profile import sized_down_config
    from calculator.verify.compare import cut_config

    for cls in (Mamba2Config, FalconH1Config):
        one = sized_down_config(cut_config(cls().to_dict(), 2), 1)
        assert one["num_hidden_layers"] == 1 and list(one["time_step_limit"]) == [0.0, float("inf")]
    assert sized_down_config(cut_config(FalconH1Config().to_dict(), 2), 1)["mlp_multipliers"] == [1.0, 1.0]
    assert sized_down_config(cut_config(Qwen3NextConfig().to_dict(), 2), 1)["layer_types"] == ["linear_attention"]
