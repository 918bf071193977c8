"""The torch side of `calculator.profile`: trace sized-down copies of a model at a few (batch, length) points.

Imported only when a profile is made (it imports torch). It reuses the FakeTensor + MemTracker
harness of `_harness` (same tracker, same transformers/peft workarounds) with three additions that
a profile needs and a single trace does not:

- the model is built once per (depth, mode) and run at every point, each measured step in its own
  `with tracker:` block (entering re-bases MemTracker's peak);
- the tracker keeps the category split at each phase's own peak (`_ProfileTracker`), not only at
  the global one;
- the cache is read layer by layer from transformers' own cache classes: K/V of attention layers
  and the conv / recurrent states of linear-attention layers (Mamba, Mamba2, GatedDeltaNet, LFM2's
  short conv), which transformers 5.24 keeps in `cache_utils.LinearAttentionLayer.conv_states` /
  `.recurrent_states` (one dict entry per state).

No spec from `calculator.spec` is needed: the vocabulary, the layer kinds and the class to build
come from transformers' config object, so architectures outside the analytic families trace too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    UnsupportedOperatorException,
)

from ..profile import MOMENT
from ..workload import Workload
from . import _harness, routing
from .inputs import next_step_inputs, token_inputs, training_labels
from .trace import CATEGORIES, TraceUnsupportedError

_NOT_WEIGHTS = ("activations", "temporaries", "inputs")


@dataclass(frozen=True, slots=True, kw_only=True)
class PointResult:
    """What one measured run allocated at one (batch, length) point, per phase, in bytes.

    `phases[name]` holds, at that phase's peak: "activations" (activations + temporaries + inputs,
    the cache excluded), "gradients", and the cache ("kv_by_layer": bytes per decoder layer, read
    from the cache object after the phase)."""

    batch: int
    length: int  # prompt (prefill) / training length
    context: int  # decode: cache positions at the last step
    phases: dict[str, dict[str, int]]
    kv_by_layer: dict[str, tuple[int, ...]] = field(default_factory=dict)
    windows: tuple[int, ...] = ()  # per cache layer: positions kept at most (0: all)
    seconds: float = 0.0  # CPU seconds of this point's run
    # "phase:moment" (`calculator.profile.MOMENT`) -> as `phases`, at that moment's own peak (`PRE_LAYERS`, `LAYERS` of `SPLIT_PHASES`)
    moments: dict[str, dict[str, int]] = field(default_factory=dict)


# The moments a forward (an encoder's "forward", a generator's "prefill") is cut into, each with its
# own peak beside the whole phase's (`_ProfileTracker.moment`): before the first decoder layer (the
# embeddings and the attention masks) and from it on (the layers, the head). The whole phase's peak
# is the larger of the two; where it is one at some points and the other at others, the profile
# fits each on its own (`calculator.profile._split_phases`). Traced, 2-layer ModernBERT
# (transformers 5.24): its bidirectional sliding-window mask computes `abs(q_idx - kv_idx)` as two
# int64 [1, 1, S, S] temporaries (masking_utils.py `sliding_window_bidirectional_overlay`), 16 x S^2 B
# whatever the batch: the prefill peak at 1 x 2,048 tokens (70.3 MB), while at 2 x 2,048 it is in
# the layers (99.7 MB), so a fit of the whole followed neither (-30.4% at 3 x 1,536).
PRE_LAYERS = "pre_layers"
LAYERS = "layers"
SPLIT_PHASES: tuple[str, ...] = ("forward", "prefill")


class _ProfileTracker(_harness._PhaseTracker):
    """`_PhaseTracker` that also keeps the category split at each phase's own peak, and the peak and
    split of each moment of the phase (`moment`; recorded as "phase:moment", the phase's own peak
    unchanged)."""

    def __init__(self, deadline: float | None, max_seconds: float | None) -> None:
        super().__init__(deadline, max_seconds)
        self.phase_split: dict[str, dict[str, int]] = {}
        self.moment: str | None = None

    def set_phase(self, phase: str | None) -> None:
        self.moment = None
        super().set_phase(phase)

    def set_moment(self, moment: str | None) -> None:
        self.moment = moment
        self._record()

    def _record(self) -> None:
        before = self.phase_peaks.get(self.phase, -1) if self.phase is not None else None
        super()._record()
        if self.phase is None:
            return
        if self.phase_peaks.get(self.phase, -1) > before:
            self.phase_split[self.phase], _ = self.current()
        if self.moment is not None:
            key = f"{self.phase}{MOMENT}{self.moment}"
            split, total = self.current()
            if total > self.phase_peaks.get(key, -1):
                self.phase_peaks[key] = total
                self.phase_split[key] = split


def hf_config(config: Mapping[str, Any]) -> Any:
    return _harness._hf_config(dict(config), [])


def text_config(hf_cfg: Any) -> Any:
    return hf_cfg.get_text_config(decoder=True)


def model_class(hf_cfg: Any) -> Any:
    """The class transformers builds for this config (`calculator.inventory.model_class`: causal LM,
    conditional generation such as higgs-audio or llava, seq2seq, or the bare encoder)."""
    from ..inventory import model_class as inventory_class

    return inventory_class(hf_cfg)[0]


def is_causal(hf_cfg: Any) -> bool:
    """Whether the model generates (has an LM head) and is not an encoder-decoder."""
    from ..inventory import model_class as inventory_class

    return bool(inventory_class(hf_cfg)[1]) and not getattr(hf_cfg, "is_encoder_decoder", False)


def _decoder_layers(model: nn.Module, num_layers: int) -> nn.ModuleList | None:
    """The ModuleList of decoder layers: the longest ModuleList of `num_layers` entries."""
    best = None
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            size = sum(p.numel() for p in module.parameters())
            if best is None or size > best[0]:
                best = (size, module)
    return best[1] if best else None


def layer_signature(layer: nn.Module, cache_type: str) -> str:
    """A layer kind: its class, the cache layer type transformers gives it, the classes of its
    direct children and its parameter count (Jamba's dense and MoE Mamba layers differ here)."""
    children = ",".join(f"{name}:{type(m).__name__}" for name, m in layer.named_children())
    params = sum(p.numel() for p in layer.parameters())
    return f"{type(layer).__name__}|{cache_type}|{children}|{params}"


def layer_kinds(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The kind of every decoder layer of the full model, built on the meta device (no memory)."""
    hf_cfg = hf_config(config)
    tc = text_config(hf_cfg)
    n = int(getattr(tc, "num_hidden_layers", 0) or 0)
    cache_types = list(getattr(tc, "layer_types", None) or ["full_attention"] * n)
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = _build(model_class(hf_cfg), hf_cfg, torch.bfloat16, "sdpa")
    layers = _decoder_layers(model, n)
    if layers is None:
        return ("layer",) * n
    return tuple(layer_signature(layer, str(cache_types[i]) if i < len(cache_types) else "") for i, layer in enumerate(layers))


def _build(model_cls: Any, hf_cfg: Any, dtype: torch.dtype, attn: str) -> nn.Module:
    return _harness._build(model_cls, hf_cfg, dtype, attn, [])


def _tensor_bytes(value: Any, seen: set[int]) -> int:
    if isinstance(value, torch.Tensor):
        st = value.untyped_storage()
        if id(st) in seen:
            return 0
        seen.add(id(st))
        return st.nbytes()
    if isinstance(value, Mapping):
        return sum(_tensor_bytes(v, seen) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v, seen) for v in value)
    return 0


def cache_layer_bytes(cache: Any) -> tuple[int, ...]:
    """Bytes each layer of a transformers cache holds: every tensor it keeps. That is K/V, the conv /
    recurrent states of linear-attention layers (`cache_utils.LinearAttentionLayer`, transformers
    5.24) and the indexer keys of DeepSeek sparse attention (`DynamicIndexedLayer.indexer_keys`)."""
    out = []
    seen: set[int] = set()
    for layer in getattr(cache, "layers", []):
        out.append(sum(_tensor_bytes(value, seen) for value in vars(layer).values()))
    # A model's own cache class may keep per-layer state beside `layers`, as a list indexed by layer:
    # MiniMaxCache.linear_cache (transformers 5.24 modeling_minimax.py), the lightning-attention
    # layers' [batch, heads, head_dim, head_dim] KV state.
    for value in vars(cache).values():
        if isinstance(value, list) and any(isinstance(v, torch.Tensor) for v in value):
            if len(value) > len(out):
                out.extend([0] * (len(value) - len(out)))
            for i, v in enumerate(value):
                out[i] += _tensor_bytes(v, seen)
    return tuple(out)


def cache_layer_windows(cache: Any) -> tuple[int, ...]:
    """Positions each cache layer keeps at most (0: unbounded). `DynamicSlidingWindowLayer` keeps
    the last `sliding_window - 1` tokens between steps (cache_utils.py, transformers 5.24, `update`)."""
    out = []
    for layer in getattr(cache, "layers", []):
        window = getattr(layer, "sliding_window", None)
        out.append(max(int(window) - 1, 1) if isinstance(window, int) and window > 0 else 0)
    return tuple(out)


def _split(tracker: _ProfileTracker, phase: str, kv: int) -> dict[str, int]:
    split = getattr(tracker, "phase_split", {}).get(phase, {})  # the trace harness's tracker keeps the global split only
    act = sum(int(split.get(c, 0)) for c in _NOT_WEIGHTS)
    return {"activations": max(act - kv, 0), "gradients": int(split.get("gradients", 0)), "peak": tracker.phase_peaks.get(phase, 0)}


def _inputs(model: nn.Module, vocab: int, batch: int, tokens: int) -> dict[str, torch.Tensor]:
    """Token ids with values the value shadow knows (`inputs.token_inputs`; default audio share)."""
    return token_inputs(model, SimpleNamespace(vocab_size=vocab), Workload(), batch, tokens)


def _fake_errors() -> tuple[type[BaseException], ...]:
    return (DynamicOutputShapeException, DataDependentOutputException, UnsupportedOperatorException)


def _with_module_state(per_cache_layer: tuple[int, ...], layers: nn.ModuleList | None, baseline: set[int]) -> tuple[int, ...]:
    """Per decoder layer, the cache layer's bytes plus the state the layer keeps in its own modules
    (`_harness.module_state_tensors`: RecurrentGemma's conv and RG-LRU states)."""
    if layers is None:
        return per_cache_layer
    state = [_harness.module_state_bytes(layer, baseline) for layer in layers]
    if not any(state):
        return per_cache_layer
    n = max(len(per_cache_layer), len(state))
    return tuple((per_cache_layer[i] if i < len(per_cache_layer) else 0) + (state[i] if i < len(state) else 0) for i in range(n))


def _inference_point(model: nn.Module, tracker: _ProfileTracker, vocab: int, causal: bool, batch: int, length: int, generated: int,
                     layers: nn.ModuleList | None = None) -> PointResult:
    """One generate(): prefill `length` tokens, then the last decode step (the cache grown to `length` + `generated` - 2 first)."""

    with torch.no_grad(), tracker:
        if not causal:
            tracker.reset_mod_stats()
            tracker.set_phase("forward")
            tracker.set_moment(PRE_LAYERS if layers is not None else None)
            inputs = _inputs(model, vocab, batch, length)
            tracker.mark_inputs(*inputs.values())
            out = model(**inputs)
            tracker.set_phase(None)
            del out
            return PointResult(batch=batch, length=length, context=length, phases={"forward": _split(tracker, "forward", 0)},
                               moments=_moments(tracker, "forward", 0))
        baseline = {id(t) for _, _, t in _harness.module_state_tensors(model)}
        tracker.set_phase("prefill")
        tracker.set_moment(PRE_LAYERS if layers is not None else None)
        inputs = _inputs(model, vocab, batch, length)
        tracker.mark_inputs(*inputs.values())
        cache = _harness.new_generation_cache(model)

        def greedy_step(step_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            nonlocal cache
            tracker.reset_mod_stats()
            out = model(**step_inputs, cache=cache, use_cache=True, logits_to_keep=1)
            if getattr(out, "cache", None) is not None:  # the one passed, or the model's own (`_harness.new_generation_cache`)
                cache = out.cache
            cache.seen_tokens = getattr(cache, "seen_tokens", 0) + next(iter(step_inputs.values())).shape[1]
            next_logits = out.logits[:, -1, :].to(copy=True, dtype=torch.float32)
            del out
            return next_step_inputs(model, next_logits, batch)

        next_ids = greedy_step(inputs)
        tracker.set_phase(None)
        kv_prefill = _with_module_state(cache_layer_bytes(cache), layers, baseline)
        if generated >= 2:
            # Every decode step allocates the same activations and only the cache grows, so the last
            # step is the largest: the cache is grown (outside the measured phases) to the length it
            # has before the last step and that step alone is run. One forward instead of two per
            # point; the decode fits of llama, phi, gemma2, qwen3_moe, mamba2 agree to the byte
            # with the two-step run (benchmarks/results/profile_speed_*.txt).
            if not _harness.grow_cache(cache, generated - 2):
                for _ in range(generated - 2):  # per-token state that cannot be grown: the skipped steps run
                    next_ids = greedy_step(next_ids)
            tracker.set_phase("decode")
            next_ids = greedy_step(next_ids)
            tracker.set_phase(None)
        kv_decode = _with_module_state(cache_layer_bytes(cache), layers, baseline)
        windows = cache_layer_windows(cache)
        _harness.clear_module_state(model, baseline)  # the next point starts as a fresh generate()
    phases = {"prefill": _split(tracker, "prefill", sum(kv_prefill))}
    kv = {"prefill": kv_prefill}
    if generated >= 2:
        phases["decode"] = _split(tracker, "decode", sum(kv_decode))
        kv["decode"] = kv_decode
    return PointResult(batch=batch, length=length, context=length + max(generated - 1, 0), phases=phases, kv_by_layer=kv, windows=windows,
                       moments=_moments(tracker, "prefill", sum(kv_prefill)))


def _moments(tracker: _ProfileTracker, phase: str, kv: int) -> dict[str, dict[str, int]]:
    """`phase`'s moments as `_split` gives a phase. Before the first layer the cache holds nothing
    (transformers' DynamicCache fills its layers as they run), so only the layers' moment has the
    cache taken out of its activations."""
    out = {}
    for moment, cache in ((PRE_LAYERS, 0), (LAYERS, kv)):
        key = f"{phase}{MOMENT}{moment}"
        if key in tracker.phase_peaks:
            out[key] = _split(tracker, key, cache)
    return out


def _enter_layers(tracker: _ProfileTracker) -> Callable[..., None]:
    """Forward pre-hook of the first decoder layer: the phase's moment before the layers ends."""

    def hook(_module: nn.Module, _args: Any) -> None:
        if tracker.moment == PRE_LAYERS:
            tracker.set_moment(LAYERS)

    return hook


def _seq2seq_point(model: nn.Module, tracker: _ProfileTracker, vocab: int, batch: int, length: int, generated: int) -> PointResult:
    """Encoder-decoder generate(): encode `length` tokens once ("encode"), then decoder steps with an
    `EncoderDecoderCache` (self-attention + cross-attention `DynamicCache`s, as transformers 5.24's
    BartModel builds it, modeling_bart.py): the first step ("prefill") computes every layer's
    cross-attention K/V of the encoder output, the later ones ("decode") reuse it. The encoder
    output stays alive through generation (generate keeps `encoder_outputs` in model_kwargs).
    `kv_by_layer` holds self + cross K/V per decoder layer; the encoder output is an activation."""
    from transformers import EncoderDecoderCache

    cache_cls = _harness.tolerant_cache_class()
    with torch.no_grad(), tracker:
        tracker.reset_mod_stats()
        tracker.set_phase("encode")
        inputs = encoder_inputs(model, vocab, batch, length)
        tracker.mark_inputs(*inputs.values())
        encoder_outputs = model.get_encoder()(**inputs)
        tracker.set_phase(None)
        self_cache, cross_cache = cache_cls(config=model.config), cache_cls(config=model.config)
        cache = EncoderDecoderCache(self_cache, cross_cache)
        start = getattr(model.config, "decoder_start_token_id", None)
        dec = torch.full((batch, 1), int(start) if isinstance(start, int) else 0, dtype=torch.long)

        def step(ids: torch.Tensor, phase: str | None) -> torch.Tensor:
            tracker.reset_mod_stats()
            tracker.set_phase(phase)
            out = model(encoder_outputs=encoder_outputs, decoder_input_ids=ids, cache=cache, use_cache=True)
            self_cache.seen_tokens += ids.shape[1]
            next_logits = out.logits[:, -1, :].to(copy=True, dtype=torch.float32)
            del out
            tracker.set_phase(None)
            return next_logits.argmax(-1, keepdim=True)

        dec = step(dec, "prefill")
        kv_prefill = tuple(a + b for a, b in zip(cache_layer_bytes(self_cache), cache_layer_bytes(cross_cache), strict=False))
        # As in `_inference_point`: the self-attention cache grown to its length before the last
        # step, then that step alone (the cross-attention K/V do not grow).
        if not _harness.grow_cache(self_cache, max(generated - 2, 0)):
            for _ in range(generated - 2):
                dec = step(dec, None)  # unmeasured
        dec = step(dec, "decode")
        kv_decode = tuple(a + b for a, b in zip(cache_layer_bytes(self_cache), cache_layer_bytes(cross_cache), strict=False))
        encode = _split(tracker, "encode", 0)
    phases = {"encode": encode, "prefill": _split(tracker, "prefill", sum(kv_prefill)), "decode": _split(tracker, "decode", sum(kv_decode))}
    return PointResult(batch=batch, length=length, context=length, phases=phases,
                       kv_by_layer={"prefill": kv_prefill, "decode": kv_decode}, windows=cache_layer_windows(self_cache))


def encoder_inputs(model: nn.Module, vocab: int, batch: int, length: int) -> dict[str, torch.Tensor]:
    """What the encoder of a seq2seq model reads: token ids, or for a speech encoder whose
    `main_input_name` is "input_features" (Whisper, transformers 5.24 modeling_whisper.py
    `WhisperEncoder`) log-mel features [batch, num_mel_bins, frames] in the model dtype. Whisper's
    encoder refuses any length but `max_source_positions x conv1.stride x conv2.stride` (3,000 frames,
    30 s: its feature extractor pads every clip to that), so a config with `max_source_positions`
    gets that fixed length whatever `length` says, as a real transcription does; otherwise the
    frames are `length` times the encoder's convolution strides (`length` encoder positions).
    The features are the same bytes the feature extractor hands the model."""
    encoder = model.get_encoder()
    if getattr(encoder, "main_input_name", "input_ids") != "input_features":
        return _inputs(model, vocab, batch, length)
    cfg = model.config
    stride = 1
    for m in encoder.modules():
        if isinstance(m, nn.Conv1d):
            stride *= int(m.stride[0])
    positions = getattr(cfg, "max_source_positions", None)
    frames = (int(positions) if isinstance(positions, int) and positions > 0 else length) * stride
    mel = int(getattr(cfg, "num_mel_bins", 0) or getattr(cfg, "feature_size", 0) or 80)
    dtype = next(encoder.parameters()).dtype
    return {"input_features": torch.zeros(batch, mel, frames, dtype=dtype)}


def targets_label(targets: Any) -> str:
    return targets if isinstance(targets, str) else "+".join(targets)


def _apply_lora(model: nn.Module, rank: int, targets: str, adapter_dtype: str, notes: list[str]) -> nn.Module:
    from unittest import mock

    from peft import LoraConfig, get_peft_model

    wanted = {"all-linear": "all-linear", "qv": ["q_proj", "v_proj"]}.get(targets, "all-linear")

    def make(target: Any) -> nn.Module:
        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=target, bias="none", task_type="CAUSAL_LM",
                         exclude_modules=excluded or None)
        with mock.patch.object(nn.Module, "to", _harness._module_to_on_fakes):
            return get_peft_model(model, cfg, autocast_adapter_dtype=adapter_dtype == "fp32")

    targets, refused = _harness.resolve_lora_targets(model, wanted)
    excluded = _harness.tuple_returning_linears(model)
    if excluded and _harness.tuple_note(excluded) not in notes:
        notes.append(_harness.tuple_note(excluded))
    if refused:
        notes.append(f"peft refuses LoRA on {', '.join(refused)} of this model type; the other {targets_label(wanted)} modules "
                     "were adapted, as an explicit target_modules list does.")
    try:
        peft_model = make(targets)
    except ValueError as e:
        raise TraceUnsupportedError(f"peft could not place LoRA adapters on this architecture: {e}") from e
    dtype = _harness._TORCH_DTYPES[adapter_dtype]
    for name, module in peft_model.named_modules():
        if name.endswith(("lora_A", "lora_B")):
            _harness._recreate_params(module, dtype)
    return peft_model


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a module output: a tensor, or nested in tuples, lists, dicts and ModelOutputs."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


# The backward of one training step, cut where the module that runs next changes what can be the
# peak. Each piece's peak is one moment whose bytes are linear in B x S (the fit's assumption); the
# whole backward's peak is the largest of these moments, and which one it is depends on B x S, so a
# fit of the whole moves with it. Traced, 2-layer recurrent_gemma full fine-tune (vocab 256,000 x
# hidden 2,560, tied): the loss buffers peak at 3.8 MiB per token, the LM head's weight gradient
# (1,250 MiB) at 0.85 MiB per token over it, and the tied embedding's backward holds 3 x 1,250 MiB
# whatever the length; the last of these is the whole backward's peak at 256 tokens, the first at
# 3 x 1,536 (the fit of the whole, through the short lengths a token-by-token scan allows, gave
# -56% there).
# - "backward": the loss and whatever runs before the LM head (soft-capping, the upcast logits);
# - "backward_head": from the LM head's backward (its weight gradient, in full fine-tuning);
# - "backward_layers": from the last decoder layer's backward (saved activations freed layer by
#   layer while the gradients accumulate);
# - "backward_embedding": from the input embedding's backward (full fine-tuning: its dense weight
#   gradient, and with tied weights the sum with the head's, `AccumulateGrad`).
TRAINING_BACKWARD_PHASES: tuple[str, ...] = ("backward", "backward_head", "backward_layers", "backward_embedding")


def _backward_boundaries(model: nn.Module, layers: nn.ModuleList | None) -> list[tuple[nn.Module, str]]:
    """(module, phase) pairs: when backward reaches `module`, the phase becomes `phase` (the model's
    own output / input embeddings, from transformers' `get_output_embeddings` / `get_input_embeddings`)."""

    def own(getter: str) -> nn.Module | None:
        try:
            module = getattr(model, getter)()
        except (AttributeError, NotImplementedError, TypeError):
            return None
        return module if isinstance(module, nn.Module) else None

    head, embedding = own("get_output_embeddings"), own("get_input_embeddings")
    out: list[tuple[nn.Module, str]] = []
    if head is not None and head is not embedding:
        out.append((head, "backward_head"))
    if layers is not None and len(layers):
        out.append((layers[-1], "backward_layers"))
    if embedding is not None:
        out.append((embedding, "backward_embedding"))
    return out


def _training_points(model: nn.Module, tracker: _ProfileTracker, vocab: int, points: Sequence[tuple[int, int]], *, mode: str,
                     lora: Mapping[str, Any], num_layers: int, notes: list[str]) -> list[PointResult]:
    model.train()
    if mode == "lora":
        model = _apply_lora(model, int(lora.get("rank", 16)), str(lora.get("targets", "all-linear")), str(lora.get("adapter_precision", "fp32")), notes)
    params = [p for p in model.parameters() if p.requires_grad]
    tracker.track_external(model)
    layers = _decoder_layers(model, num_layers)
    measuring = {"on": False}

    def enter(phase: str) -> Callable[[Any], None]:
        def hook(_grad: Any) -> None:
            order = TRAINING_BACKWARD_PHASES
            if measuring["on"] and tracker.phase in order and order.index(phase) > order.index(tracker.phase):
                tracker.set_phase(phase)
        return hook

    def hook_outputs(phase: str) -> Callable[..., None]:
        # A hook on the output tensors themselves: a module backward pre-hook only sees tensors at
        # the top level of a tuple, and OpenAI-GPT's Block returns a list (transformers 5.24
        # modeling_openai.py), so the phase never switched and both peaks fell in one phase.
        def forward_hook(_module: nn.Module, _args: Any, output: Any) -> None:
            for t in _tensors(output):
                if t.requires_grad:
                    t.register_hook(enter(phase))
        return forward_hook

    for module, phase in _backward_boundaries(model, layers):
        module.register_forward_hook(hook_outputs(phase))

    def step(b: int, s: int, measured: bool) -> None:
        measuring["on"] = measured
        tracker.reset_mod_stats()
        tracker.set_phase("forward" if measured else None)
        inputs = _inputs(model, vocab, b, s)
        labels = training_labels(model, inputs)
        tracker.mark_inputs(*inputs.values(), *labels.values())
        loss = model(**inputs, **labels, use_cache=False).loss
        tracker.set_phase("backward" if measured else None)
        loss.backward()
        del loss
        tracker.set_phase(None)
        for p in params:  # optimizer.zero_grad(set_to_none=True)
            p.grad = None

    # No warm-up step and no optimizer: the profile fits activations and the gradients alive in
    # backward, which a constant (the optimizer states, sized from the spec) does not move; the
    # optimizer step itself is the analytic phase. One traced step per point instead of a warm-up
    # step plus one per point, each with an AdamW step (fits unchanged: profile_speed_*.txt).
    results = []
    for b, s in points:
        tracker.phase_split.clear()
        tracker.phase_peaks.clear()
        t0 = time.process_time()
        with tracker:
            step(b, s, measured=True)
        reached = [p for p in ("forward", *TRAINING_BACKWARD_PHASES) if p in tracker.phase_peaks]
        results.append(PointResult(batch=b, length=s, context=s, phases={p: _split(tracker, p, 0) for p in reached},
                                   seconds=time.process_time() - t0))
    return results


def run_points(
    config: Mapping[str, Any],
    *,
    mode: str,
    points: Sequence[tuple[int, int]],
    generated: int = 4,
    precision: str = "bf16",
    attention: str = "sdpa",
    lora: Mapping[str, Any] | None = None,
    deadline: float | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[list[PointResult], list[str], tuple[str, ...]]:
    """Trace `config` (already sized down) in `mode` at each (batch, length) point.

    Returns the per-point results, notes, and the kind of each decoder layer of this copy (from the
    built model, so the caller can check the cut kept the layers it asked for)."""
    notes: list[str] = []
    hf_cfg = hf_config(config)
    tc = text_config(hf_cfg)
    vocab = int(getattr(tc, "vocab_size", 0) or getattr(hf_cfg, "vocab_size", 0) or 0)
    if vocab <= 0:
        raise TraceUnsupportedError("the config has no vocab_size, so token inputs cannot be made.")
    causal = is_causal(hf_cfg)
    seq2seq = bool(getattr(hf_cfg, "is_encoder_decoder", False))
    if seq2seq and mode != "inference":
        raise TraceUnsupportedError(f"{hf_cfg.model_type} is an encoder-decoder; its training step is not profiled (inference only).")
    if mode != "inference" and not causal:
        raise TraceUnsupportedError(f"{hf_cfg.model_type} has no causal-LM head in transformers; only inference is profiled.")
    max_seconds = None if deadline is None else max(deadline - time.monotonic(), 0.001)
    tracker = _ProfileTracker(deadline, max_seconds)
    dtype = _harness._TORCH_DTYPES[precision]
    attn = "eager" if attention == "eager" else "sdpa"
    results: list[PointResult] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The harness's fake mode and value shadow: data-dependent routing reads real token ids (routing.py).
        with routing.fake_mode(), routing.ValueShadow(), _harness._transformers_patches():
            model = _build(model_class(hf_cfg), hf_cfg, dtype, attn)
            n = int(getattr(tc, "num_hidden_layers", 0) or 0)
            cache_types = list(getattr(tc, "layer_types", None) or ["full_attention"] * n)
            layers = _decoder_layers(model, n)
            kinds = ("layer",) * n
            if layers is not None:
                kinds = tuple(layer_signature(layer, str(cache_types[i]) if i < len(cache_types) else "") for i, layer in enumerate(layers))
            try:
                if mode == "inference":
                    model.eval()
                    model.requires_grad_(False)
                    tracker.track_external(model)
                    if layers is not None and len(layers):
                        layers[0].register_forward_pre_hook(_enter_layers(tracker))
                    else:
                        layers = None  # no moments without a first layer to cut at
                    for b, s in points:
                        tracker.phase_split.clear()
                        tracker.phase_peaks.clear()
                        t0 = time.process_time()  # CPU seconds: what the plan needs, whatever else shares the machine
                        if seq2seq:
                            r = _seq2seq_point(model, tracker, vocab, b, s, generated)
                        else:
                            r = _inference_point(model, tracker, vocab, causal, b, s, generated, layers)
                        results.append(dataclasses.replace(r, seconds=time.process_time() - t0))
                        if on_progress:
                            on_progress(f"inference b={b} s={s}")
                else:
                    with contextlib.ExitStack():
                        results = _training_points(model, tracker, vocab, points, mode=mode, lora=lora or {}, num_layers=n, notes=notes)
            except _fake_errors() as e:
                raise TraceUnsupportedError(
                    f"{hf_cfg.model_type}: an operation's output shape depends on tensor values ({getattr(e, 'func', e)}), "
                    "which fake tensors cannot evaluate."
                ) from e
            except TraceUnsupportedError:
                raise
            except (AttributeError, TypeError, RuntimeError, ValueError, IndexError, NotImplementedError) as e:
                # The model's or peft's own code failed on this architecture (e.g. peft 0.21's LoRA
                # wrapper on PhiMoE's router, which returns a tuple): one line, not a traceback.
                raise TraceUnsupportedError(f"{hf_cfg.model_type} ({mode}): {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from e
    return results, notes, kinds


def kind_counts(kinds: Sequence[str]) -> dict[str, int]:
    return dict(Counter(kinds))


def versions() -> dict[str, str]:
    import transformers

    try:
        import peft

        peft_version = peft.__version__
    except ImportError:  # pragma: no cover - peft is in requirements-dev
        peft_version = ""
    return {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft_version}


__all__ = ["CATEGORIES", "PointResult", "cache_layer_bytes", "kind_counts", "layer_kinds", "run_points", "versions"]
