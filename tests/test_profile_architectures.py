"""Architectures the trace harness could not run before issue 9 (calculator/verify/_harness.py,
profile_trace.py, routing.py), each as a tiny 2-layer copy of transformers' default config: the
direct trace runs, the profile is made, and the profile's estimate agrees with the trace at a
point off the fit points.

- modernbert: `nn.init.trunc_normal_`'s rejection loop read `.item()` at build time;
- whisper: the encoder takes log-mel `input_features`, not `input_ids`;
- jetmoe: the router counts experts with a float one-hot `.tolist()`;
- minimax: the model refuses any cache but its own `MiniMaxCache`.
"""

from __future__ import annotations

import dataclasses

import pytest

from calculator.workload import Workload

pytestmark = pytest.mark.trace

pytest.importorskip("torch")
pytest.importorskip("transformers")

from calculator.estimate import estimate  # noqa: E402
from calculator.profile import make_profile  # noqa: E402
from calculator.spec import model_spec_from_config  # noqa: E402
from calculator.verify import trace_workload  # noqa: E402
from calculator.verify.compare import as_on_gpu, cut_config  # noqa: E402

SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512}
TINY = {
    "modernbert": {**SMALL, "vocab_size": 50368},  # default vocabularies: their pad ids lie near the end
    "whisper": {"d_model": 64, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "encoder_attention_heads": 4, "decoder_attention_heads": 4,
                "num_mel_bins": 16, "max_source_positions": 64, "max_target_positions": 64},
    "jetmoe": {"hidden_size": 64, "intermediate_size": 128, "num_key_value_heads": 2, "kv_channels": 16, "num_local_experts": 4,
               "num_experts_per_tok": 2, "vocab_size": 512},
    "minimax": {**SMALL, "head_dim": 16, "block_size": 32, "num_local_experts": 4, "num_experts_per_tok": 2},
}


def _tiny(name: str) -> dict:
    from transformers import AutoConfig

    return as_on_gpu(cut_config(AutoConfig.for_model(name, **TINY[name]).to_dict(), 2), "full")[0]


@pytest.mark.parametrize("name", sorted(TINY))
def test_profile_of_a_formerly_untraceable_architecture_matches_its_trace(name: str) -> None:
    cfg = _tiny(name)
    spec = model_spec_from_config(name, cfg)
    profile = make_profile(cfg, modes=("inference",), check_point=None, points=((1, 64), (2, 64), (1, 128), (2, 96)))
    w = Workload(mode="inference", precision="bf16", context_length=80, generated_tokens=4, batch_size=3, speech_codec=False)
    traced = trace_workload(cfg, w, model_id=name).peak_bytes
    estimated = estimate(dataclasses.replace(spec, profile=profile), w).torch_allocated_bytes
    assert traced > 0
    assert abs(estimated - traced) / traced < 0.05, (name, estimated, traced)


def test_jetmoe_training_step_traces_with_known_expert_counts() -> None:
    cfg = _tiny("jetmoe")
    r = trace_workload(cfg, Workload(mode="full", precision="bf16", context_length=64, batch_size=2), model_id="jetmoe")
    assert r.peak_bytes > 0 and any("balanced routing" in n for n in r.notes)


def test_fake_module_to_keeps_tied_parameters_and_builds_deepseek_v4():
    """`.to()` on a module with fake parameters (torch 2.13 `Module._apply` would swap_tensors and
    refuse: a fake parameter carries a weakref) replaces them, tied weights stay tied, and a model
    whose __init__ calls `.to()` (DeepSeek-V4's RMSNorm) builds under the trace's patches."""
    import torch
    from torch import nn
    from torch._subclasses.fake_tensor import FakeTensorMode

    from calculator.verify import _harness

    with FakeTensorMode(), _harness._transformers_patches():
        a, b = nn.Linear(4, 4), nn.Linear(4, 4)
        b.weight = a.weight
        m = nn.Sequential(a, b).to(torch.bfloat16)
        assert m[0].weight is m[1].weight
        assert m[0].weight.dtype == torch.bfloat16


def test_full_fine_tune_profile_of_a_recurrent_model_follows_its_peak_past_the_fit_lengths() -> None:
    """RecurrentGemmaConfig() defaults (vocab 256,000 x hidden 2,560, tied), cut to 2 layers, full
    fine-tune. Its RG-LRU scan runs token by token on CPU, so profiles trace it at short lengths,
    where the backward's peak is the tied embedding's backward (3 x 256,000 x 2,560 x 2 B = 3,750 MiB
    whatever the length); at 3 x 512 tokens it is the loss's (3 fp32 copies of the logits,
    3 x 256,000 x 4 B = 3 MiB per token). A fit of the whole backward followed neither (the sweep's
    row: -56%); the profile cuts the backward where the LM head, the decoder layers and the input
    embedding start (`profile_trace.TRAINING_BACKWARD_PHASES`), one moment per piece."""
    from transformers import RecurrentGemmaConfig

    cfg = as_on_gpu(cut_config(RecurrentGemmaConfig().to_dict(), 2), "full")[0]
    spec = model_spec_from_config("recurrent_gemma", cfg)
    profile = make_profile(cfg, modes=("full",), check_point=None, points=((1, 32), (1, 64), (2, 64), (1, 128)))
    phases = {key.split("/")[1] for key in profile.fits}
    assert {"backward", "backward_head", "backward_layers", "backward_embedding"} <= phases
    w = Workload(mode="full", precision="bf16", context_length=512, batch_size=3)
    traced = trace_workload(cfg, w, model_id="recurrent_gemma")
    est = estimate(dataclasses.replace(spec, profile=profile), w)
    assert traced.peak_phase == est.peak_phase == "backward"
    assert est.torch_allocated_bytes == pytest.approx(traced.peak_bytes, rel=0.01)
    # At the fit lengths the embedding's backward is the larger one: 1 x 128 tokens.
    short = estimate(dataclasses.replace(spec, profile=profile), dataclasses.replace(w, context_length=128, batch_size=1))
    assert short.peak_phase == "backward (input embedding)"


def test_model_without_a_layer_stack_gets_one_clear_line() -> None:
    """ResNet has no num_hidden_layers stack over token positions: the profile says so in one line
    (it raised IndexError from an empty depth list before)."""
    from transformers import AutoConfig

    from calculator.verify.trace import TraceUnsupportedError

    cfg = AutoConfig.for_model("resnet").to_dict()
    with pytest.raises(TraceUnsupportedError, match="no stack of decoder layers"):
        make_profile(cfg, modes=("inference",), check_point=None, max_seconds=60)


def test_modernbert_profile_follows_the_trace_where_the_peak_is_at_the_mask_and_where_it_is_in_the_layers() -> None:
    """ModernBertConfig()'s widths, 2 layers (one global, one sliding-window): the bidirectional
    sliding-window mask (transformers 5.24 masking_utils.py, `abs(q_idx - kv_idx)`: two int64
    [1, 1, S, S] temporaries) is the forward's peak at 1 x 3,072 tokens, the layers at 3 x 1,536. The
    profile fits the two moments apart (`calculator.profile._split_phases`); fitted whole it was
    -30.4% at 3 x 1,536 (profile sweep)."""
    from transformers import AutoConfig

    cfg = as_on_gpu(cut_config(AutoConfig.for_model("modernbert").to_dict(), 2), "full")[0]
    spec = model_spec_from_config("modernbert", cfg)
    profile = make_profile(cfg, modes=("inference",), check_point=None)
    assert "inference/forward:pre_layers/activations" in profile.fits
    for batch, tokens in ((1, 3072), (3, 1536)):
        w = Workload(mode="inference", precision="bf16", context_length=tokens, batch_size=batch, speech_codec=False)
        traced = trace_workload(cfg, w, model_id="modernbert").peak_bytes
        estimated = estimate(dataclasses.replace(spec, profile=profile), w).torch_allocated_bytes
        assert abs(estimated - traced) / traced < 0.01, (batch, tokens, estimated, traced)
