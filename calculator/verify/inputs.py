"""The token inputs a traced step feeds the model, built from what the workload states.

Text models get `input_ids` of the requested length. A model that routes tokens on placeholder ids
(higgs-audio's DualFFN: `audio_token_id` positions take the audio FFN, the rest the text FFN)
gets a prompt in which `Workload.audio_token_share` of the positions are audio placeholders, with
the audio codes behind them (`audio_input_ids`, one frame of `num_codebooks` codes per position)
when its forward takes them, as its processor builds them for reference audio (voice cloning) or
training audio. The ids carry real values for `routing.ValueShadow`, so the routing masks have the
stated sizes.

Which models are "audio-routed" is read from the config and the model's forward signature, not a
name: a config with integer `audio_token_id`, `num_codebooks` and `codebook_size`, and a forward
with an `audio_input_ids` parameter. Such a model generates audio frames: transformers'
`HiggsAudioV2ForConditionalGeneration.prepare_inputs_for_generation` (5.24) passes only the last
frame's `audio_input_ids` in decoding (no `input_ids`, so no routing mask: every layer takes the
audio path), and `_sample` picks one code per codebook from the audio head's
num_codebooks x codebook_size logits.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from ..memory import audio_positions
from ..spec import ModelSpec
from ..workload import Workload
from . import routing


@dataclass(frozen=True, slots=True)
class AudioRouting:
    audio_token_id: int
    other_routed_ids: tuple[int, ...]  # ids the model also routes to the audio FFN (audio_delay_token_id)
    num_codebooks: int
    codebook_size: int
    takes_audio_codes: bool  # forward(audio_input_ids=..., audio_input_ids_mask=...)


def audio_routing(model: Any) -> AudioRouting | None:
    """How `model` routes audio tokens, or None for a text model (see the module docstring)."""
    cfg = getattr(model, "config", None)
    vals = {k: getattr(cfg, k, None) for k in ("audio_token_id", "num_codebooks", "codebook_size")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vals.values()):
        return None
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}
    delay = getattr(cfg, "audio_delay_token_id", None)
    return AudioRouting(
        audio_token_id=vals["audio_token_id"],
        other_routed_ids=(delay,) if isinstance(delay, int) else (),
        num_codebooks=vals["num_codebooks"],
        codebook_size=vals["codebook_size"],
        takes_audio_codes="audio_input_ids" in params,
    )


def _seeded(real: torch.Tensor) -> torch.Tensor:
    """A fake tensor of `real`'s shape and dtype whose value the active ValueShadow knows."""
    fake = torch.empty(real.shape, dtype=real.dtype)
    shadow = routing.active()
    if shadow is not None:
        shadow.set_value(fake, real)
    return fake


def _real(fn: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():
        return fn(*args, **kwargs)


def token_inputs(model: Any, spec: ModelSpec, w: Workload, batch: int, tokens: int, *, notes: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Model inputs for `batch` sequences of `tokens` positions (a prompt or a training sequence)."""
    vocab = spec.vocab_size
    gen = torch.Generator().manual_seed(0)
    real_ids = _real(torch.randint, 0, vocab, (batch, tokens), generator=gen)
    ar = audio_routing(model)
    if ar is None:
        return {"input_ids": _seeded(real_ids)}
    n_audio = audio_positions(w.audio_token_share, tokens)
    routed = (ar.audio_token_id, *ar.other_routed_ids)

    def place(ids: torch.Tensor) -> torch.Tensor:
        ids = ids.clone()
        for rid in routed:  # random text ids never hit a routed id by chance
            ids[ids == rid] = 0
        if n_audio:
            ids[:, tokens - n_audio:] = ar.audio_token_id
        return ids

    real_ids = _real(place, real_ids)
    inputs = {"input_ids": _seeded(real_ids)}
    if n_audio and ar.takes_audio_codes:
        codes = _real(torch.randint, 0, ar.codebook_size, (batch, n_audio, ar.num_codebooks), generator=gen)
        inputs["audio_input_ids"] = _seeded(codes)
        inputs["audio_input_ids_mask"] = _seeded(_real(torch.ones, batch, n_audio, dtype=torch.bool))
    if notes is not None:
        notes.append(
            f"DualFFN routing: {n_audio:,} of {tokens:,} positions per sequence are audio tokens (audio_token_share "
            f"{w.audio_token_share:g}) and take the audio FFN; the rest take the text FFN."
        )
    return inputs


def next_step_inputs(model: Any, next_logits: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
    """The next decode step's inputs from the fp32 logits of the last position (greedy)."""
    ar = audio_routing(model)
    if ar is not None and ar.takes_audio_codes and next_logits.shape[-1] == ar.num_codebooks * ar.codebook_size:
        codes = next_logits.reshape(batch, ar.num_codebooks, ar.codebook_size).argmax(-1)
        return {"audio_input_ids": codes[:, None, :]}
    return {"input_ids": next_logits.argmax(-1, keepdim=True)}


def training_labels(model: Any, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Labels for one training step: the token ids (causal-LM loss, shifted inside the model) and,
    for an audio-routed model fed audio codes, the codes as `audio_labels` (its per-codebook loss)."""
    labels = {"labels": inputs["input_ids"].clone()}
    ar = audio_routing(model)
    if ar is not None and "audio_input_ids" in inputs:
        labels["audio_labels"] = inputs["audio_input_ids"].clone()
    return labels
