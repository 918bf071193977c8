"""Data-dependent routing under fake tensors (calculator/verify/routing.py, inputs.py).

The seed's model, higgs-audio v2, routes every token to a text or an audio FFN with boolean-mask
indexing (`hidden_states[audio_token_mask]`), which a plain FakeTensor trace cannot size. The
trace now knows the token ids it feeds (`audio_token_share` of the prompt are audio placeholders),
so the masks have real counts; these tests check the counts, and that the trace and the estimate
agree on the share.
"""

from __future__ import annotations

import pytest

from calculator.catalog import catalog_config, find_catalog_entry
from calculator.resolve import resolve_model
from calculator.workload import Workload

pytestmark = pytest.mark.trace

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from torch._subclasses.fake_tensor import DynamicOutputShapeException  # noqa: E402

from calculator.verify import routing, run_verification, trace_workload  # noqa: E402
from calculator.verify.compare import cut_config  # noqa: E402

HIGGS = "bosonai/higgs-audio-v2-generation-3B-base"


def test_value_shadow_sizes_boolean_masks_and_balances_topk() -> None:
    real_ids = torch.tensor([[5] * 3 + [1] * 7, [5] * 6 + [2] * 4])
    with routing.fake_mode(), routing.ValueShadow() as shadow:
        ids = torch.empty(2, 10, dtype=torch.long)
        shadow.set_value(ids, real_ids)
        mask = ids == 5  # 3 + 6 = 9 positions
        x = torch.empty(2, 10, 4)
        assert tuple(x[mask].shape) == (9, 4)
        assert tuple(x[~mask].shape) == (11, 4)
        assert tuple(mask.nonzero().shape) == (9, 2)
        # Router choices from fake logits: 6 tokens x top-2 over 4 experts, balanced -> 3 each.
        _, idx = torch.empty(6, 4).topk(2, dim=-1)
        per_expert = torch.nn.functional.one_hot(idx, 4).sum(dim=(0, 1))
        assert shadow.value(per_expert).tolist() == [3, 3, 3, 3]
        assert shadow.balanced_topk_calls == 1
        # A mask computed from fake floats has no known value: the trace still refuses it.
        with pytest.raises(DynamicOutputShapeException):
            x[x[..., 0] > 0]


def _higgs_2l() -> dict:
    return cut_config(catalog_config(find_catalog_entry(HIGGS)), 2)


def test_higgs_inference_traces_and_agrees_with_the_estimate_per_phase() -> None:
    spec = resolve_model(HIGGS, offline=True).spec
    w = Workload(precision="bf16", context_length=128, generated_tokens=8, audio_token_share=0.5)
    data = run_verification(spec, w, layers=2)
    assert data["layers"] == 2 and data["full_layers"] == 28
    weights = next(r for r in data["comparison"] if r["component"] == "weights")
    # Same modules on both sides (text LM head included); the estimate's audio codebooks carry the
    # original model's 2 stream BOS/EOS rows per codebook, transformers' port does not: 196,608 B.
    assert abs(weights["error_pct"]) < 0.01
    # KV cache: 2 layers x (K + V) x 8 heads x 128 x 127 positions (context - 1) x 2 B = 1,040,384.
    assert data["trace"]["kv_cache_bytes"] == 1_040_384
    for phase in data["phases"]:
        assert abs(phase["error_pct"]) < 0.5, phase
    assert any("60 of 120 positions" in n for n in data["trace"]["notes"])


def test_audio_share_moves_the_prefill_peak_as_the_estimate_says() -> None:
    """Share 0 vs 0.5 on a 120-token prompt (bf16, h 3072, I 8192). With half the tokens audio the
    gated MLP's 3cI exist for 60 tokens instead of 120, and the 60 audio embeddings stay alive:
    60 x 3 x 2 x 8192 - 60 x 2 x 3072 = 2,949,120 - 368,640 = 2,580,480 bytes less."""
    cfg = _higgs_2l()
    peaks = {}
    for share in (0.0, 0.5):
        w = Workload(precision="bf16", context_length=128, generated_tokens=8, audio_token_share=share)
        peaks[share] = trace_workload(cfg, w, model_id=HIGGS).phase_peaks["prefill"]
    assert peaks[0.0] - peaks[0.5] == pytest.approx(2_580_480, rel=0.02)


def test_higgs_lora_step_traces_with_text_and_audio_losses() -> None:
    spec = resolve_model(HIGGS, offline=True).spec
    w = Workload(mode="lora", precision="bf16", context_length=128, audio_token_share=0.5)
    data = run_verification(spec, w, layers=2)
    assert abs(data["total"]["error_pct"]) < 2.0


def test_moe_routing_by_torch_where_traces_with_balanced_experts() -> None:
    """dbrx picks each expert's tokens with `torch.where(expert_mask[e])` (transformers 5.24
    DbrxExperts), which a plain fake trace refused. A tiny dbrx (4 experts, top-2) now traces,
    and the note says the routing was balanced."""
    from transformers import DbrxConfig

    cfg = DbrxConfig(
        d_model=128, n_heads=4, n_layers=1, max_seq_len=256, vocab_size=512,
        attn_config={"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0},  # clip_qkv=None breaks clamp() in 5.24
        ffn_config={"ffn_hidden_size": 256, "moe_num_experts": 4, "moe_top_k": 2},
    ).to_dict()
    r = trace_workload(cfg, Workload(precision="bf16", context_length=32, generated_tokens=2), model_id="tiny-dbrx")
    assert r.peak_bytes > 0 and r.kv_cache_bytes > 0
    assert any("balanced routing" in n for n in r.notes)
