"""Estimate vs measurement: the three levels side by side, per component, with error %.

`run_verification(spec, workload, level=...)` is what `python -m calculator verify` and the
Verification page call. It returns one JSON-able dict holding

- `estimate`: the engine's per-component bytes at its peak phase (`calculator.estimate`);
- `trace` (level "trace"): the FakeTensor trace of the real transformers model on CPU, or
  `live` (level "live"): `torch.cuda.max_memory_allocated` / `max_memory_reserved` and NVML's
  view of the same workload run on the local GPU with random weights;
- `comparison`: one row per component group, estimate vs measured bytes and the error;
- `total`: the engine's `torch_allocated_bytes` vs the measured peak of tensor storage.

Error % is (estimate - measured) / measured x 100: positive means the engine over-estimates.

Component mapping (engine `Breakdown` field -> trace category of torch's MemTracker):

| group       | engine                                                   | trace                                   |
| ----------- | -------------------------------------------------------- | --------------------------------------- |
| weights     | weights + master_weights + LoRA adapter parameters       | parameters + buffers                    |
| activations | kv_cache + activations + logits (loss buffers)           | activations + temporaries + inputs      |
| gradients   | gradients + LoRA adapter gradients                       | gradients                               |
| optimizer   | optimizer (states + the step's temporary) + adapter states | optimizer                             |

Why these groups: the engine splits by what a user can change (KV cache, logits, activations),
MemTracker splits by how a tensor was made. The KV cache, the logits, the loss buffers and the
saved activations are all made by the forward pass, so MemTracker files them together as
activations (the cache is made inside the attention modules; logits in the LM head) and the
ops' scratch as temporaries; the token ids we feed are "inputs". Buffers (RoPE `inv_freq`) are a
few KiB and belong with the weights. The engine's `adapters` component holds LoRA weights,
gradients and optimizer states together; we split it back (parameters x bytes each for the
weights and the gradients, the rest to the optimizer) so each lands next to its trace category.
With fp32 master weights the trace's parameters are the fp32 masters and the bf16 copies made by
autocast show up as activations/temporaries, while the engine counts bf16 weights + fp32 masters;
the weights row then differs by design and the total is what to read.

The comparison is made at each side's own peak moment (the engine's peak phase, MemTracker's
global peak). `phases` compares the peak of each phase where both sides have one.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from typing import Any, Literal

from ..errors import CalculatorError
from ..estimate import Estimate, estimate
from ..spec import ModelSpec, model_spec_from_config
from ..workload import Workload

Level = Literal["trace", "live"]
GROUPS: tuple[str, ...] = ("weights", "activations", "gradients", "optimizer")
TRACE_GROUPS: dict[str, tuple[str, ...]] = {
    "weights": ("parameters", "buffers"),
    "activations": ("activations", "temporaries", "inputs"),
    "gradients": ("gradients",),
    "optimizer": ("optimizer",),
}
# engine phase name -> trace phase name
PHASE_NAMES: dict[str, str] = {"prefill": "prefill", "decode": "decode", "forward": "forward", "backward": "backward", "optimizer step": "optimizer"}
_NESTED_CONFIG_KEYS = ("text_config", "llm_config", "language_config", "thinker_config")


class VerificationError(CalculatorError):
    """The verification could not run (missing stack, bad level, a run that failed)."""


def error_pct(estimate_bytes: int, measured_bytes: int) -> float | None:
    """(estimate - measured) / measured in percent; None when nothing was measured."""
    if measured_bytes <= 0:
        return None
    return (estimate_bytes - measured_bytes) / measured_bytes * 100.0


def _depth_key(d: Mapping[str, Any]) -> str | None:
    """The key holding the layer count: `num_hidden_layers`, or the key the config class maps that
    name to (transformers' `PretrainedConfig.attribute_map`: GPT-2/GPT-J `n_layer`, MPT `n_layers`,
    T5 `num_layers`, BART `encoder_layers`); else the first of `_DEPTH_NAMES` the config has."""
    if _is_count(d.get("num_hidden_layers")):
        return "num_hidden_layers"
    try:
        from transformers import CONFIG_MAPPING

        mapped = getattr(CONFIG_MAPPING[d["model_type"]], "attribute_map", {}).get("num_hidden_layers")
    except (ImportError, KeyError, TypeError):
        mapped = None
    if mapped and _is_count(d.get(mapped)):
        return mapped
    return next((k for k in _DEPTH_NAMES if _is_count(d.get(k))), None)


# Layer-count names of configs whose class has no `num_hidden_layers` attribute_map entry (LongCat-Flash
# `num_layers`, its num_hidden_layers a property) or where transformers is not installed.
_DEPTH_NAMES = ("n_layer", "n_layers", "num_layers")


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _fixed_length_keys(d: Mapping[str, Any]) -> frozenset[str]:
    """Keys whose config class, built with its defaults, holds a sequence of a length other than its
    layer count: a fixed shape, not one entry per layer. Mamba2 / FalconH1 / GraniteMoeHybrid
    `time_step_limit = (0.0, inf)`, FalconH1's `mlp_multipliers` (gate, down: [1.0, 1.0], set in
    `__post_init__`), transformers 5.24; per-layer lists (`layer_types`) have the default depth's
    length there. A 2-layer copy's pair is then not cut to one entry when the copy is cut to the
    1 layer a profile also traces (the classes refused it, or indexed past it)."""
    model_type = d.get("model_type")
    return _fixed_length_keys_of(model_type) if isinstance(model_type, str) else frozenset()


@functools.cache
def _fixed_length_keys_of(model_type: str) -> frozenset[str]:
    try:
        from transformers import CONFIG_MAPPING

        default = CONFIG_MAPPING[model_type]().to_dict()
    except Exception:  # a class that does not build with its defaults: nothing is known to be fixed
        return frozenset()
    key = _depth_key(default)
    depth = default.get(key) if key else None
    return frozenset(k for k, v in default.items() if isinstance(v, list | tuple) and v and len(v) != depth)


def _cut_layers(d: dict[str, Any], layers: int) -> None:
    """Cut one config dict to its first `layers` layers, with everything that is counted per layer
    cut to match (transformers 5.24's config validators reject a mismatch):
    - every top-level list with one entry per layer (`layer_types`, `mlp_layer_types`,
      `layers_block_type`, `no_rope_layers`, `kv_source_layers`, per-layer `intermediate_size`,
      `num_attention_heads_per_layer`, ...): its first `layers` entries;
    - lists of layer indices (a key naming layers, shorter than the layer count:
      `mlp_only_layers`, `attn_layer_indices`, ...): the indices below `layers`;
    - `per_layer_config` (a dict keyed by layer index, '05'): the keys below `layers`;
    - integer parts that sum to the layer count (dory: n_input + n_recurrent + n_output layers):
      the first `layers` layers, taken in the parts' order;
    - backbone `out_features` / `out_indices` naming a stage past the cut: the last stage of the copy."""
    key = _depth_key(d)
    if key is None or d[key] <= layers:
        return
    n = d[key]
    d[key] = layers
    parts = [k for k, v in d.items() if k != key and _is_count(v) and k.endswith("_layers") and k.startswith(("n_", "num_"))]
    if len(parts) > 1 and sum(d[k] for k in parts) == n:
        left = layers
        for k in parts:
            d[k], left = min(d[k], left), left - min(d[k], left)
    fixed = _fixed_length_keys(d)
    for k, v in list(d.items()):
        if isinstance(v, list) and len(v) == n and k not in fixed:
            d[k] = v[:layers]
        elif (isinstance(v, list) and v and all(_is_count(i) and 0 <= i < n for i in v)
              and "layer" in k):
            d[k] = [i for i in v if i < layers]
    if isinstance(d.get("per_layer_config"), dict):
        d["per_layer_config"] = {k: v for k, v in d["per_layer_config"].items() if str(k).isdigit() and int(k) < layers}
    stages = d.get("out_indices"), d.get("out_features")
    if any(isinstance(s, list) for s in stages):
        beyond = [i for i in stages[0] or [] if _is_count(i) and i > layers]
        beyond += [f for f in stages[1] or [] if isinstance(f, str) and f.startswith("stage") and f[5:].isdigit() and int(f[5:]) > layers]
        if beyond:
            d["out_indices"] = [layers] if isinstance(stages[0], list) else None
            d["out_features"] = [f"stage{layers}"] if isinstance(stages[1], list) else None


def cut_config(config: Mapping[str, Any], layers: int) -> dict[str, Any]:
    """A copy of `config` with only the first `layers` decoder layers (same widths, vocabulary and
    per-layer pattern; see `_cut_layers` for what is cut with the count). Used for sized-down
    traces: per-layer bytes (weights, KV cache, saved activations, their gradients and optimizer
    states) scale with the layer count; the embeddings, the LM head, the logits and the loss
    buffers do not."""
    if layers < 1:
        raise VerificationError(f"a sized-down trace needs at least 1 layer; got {layers}.")
    cfg = copy.deepcopy(dict(config))
    _cut_layers(cfg, layers)
    for key in _NESTED_CONFIG_KEYS:
        if isinstance(cfg.get(key), dict):
            _cut_layers(cfg[key], layers)
    return cfg


# Attention-dropout keys of the configs (GPT-2 / BigCode `attn_pdrop`, Llama-style `attention_dropout`,
# BERT `attention_probs_dropout_prob`).
ATTENTION_DROPOUT_KEYS = ("attn_pdrop", "attention_dropout", "attention_probs_dropout_prob")


def as_on_gpu(cfg: Mapping[str, Any], mode: str) -> tuple[dict[str, Any], str]:
    """The config traced for `mode`, and a note when it differs from the default. In training with
    attention dropout > 0, CPU SDPA leaves its flash kernel for the math path and materializes the
    [batch, heads, seq, seq] probabilities, mask and their gradients (../shared/TRACE-NOTES.md); a
    GPU's flash and memory-efficient kernels apply dropout inside the kernel and save no mask. The
    trace is made with that dropout at 0 so it measures what the GPU runs (the estimate's subject);
    hidden-state dropout stays."""
    if mode == "inference":
        return dict(cfg), ""
    hot = [k for k in ATTENTION_DROPOUT_KEYS if isinstance(cfg.get(k), int | float) and cfg[k] > 0]
    if not hot:
        return dict(cfg), ""
    return {**cfg, **dict.fromkeys(hot, 0.0)}, f"{', '.join(f'{k}={cfg[k]}' for k in hot)} set to 0 (GPU SDPA kernels)"


def sized_down_spec(spec: ModelSpec, layers: int) -> tuple[ModelSpec, dict[str, Any]]:
    """The spec and config of `spec` cut to `layers` decoder layers (parameter counts from the
    config arithmetic: the checkpoint's exact counts describe the full model)."""
    cfg = cut_config(spec.raw_config, layers)
    return model_spec_from_config(spec.model_id, cfg), cfg


def engine_groups(est: Estimate) -> dict[str, int]:
    """The engine's peak breakdown in the comparison groups (see the module docstring)."""
    b = est.breakdown
    adapter_params_bytes = 0
    if est.workload.mode in ("lora", "qlora") and est.trainable_params:
        adapter_params_bytes = est.trainable_params * (4 if est.workload.adapter_precision == "fp32" else 2)
    # The PEFT "backward" phase is the loss's backward, before any adapter gradient exists (estimate._training_phases).
    has_grads = est.peak_phase != "backward"
    adapter_grads = adapter_params_bytes if has_grads and b.adapters_bytes >= 2 * adapter_params_bytes else 0
    adapter_states = max(b.adapters_bytes - adapter_params_bytes - adapter_grads, 0)
    return {
        "weights": b.weights_bytes + b.master_weights_bytes + min(adapter_params_bytes, b.adapters_bytes),
        "activations": b.kv_cache_bytes + b.activations_bytes + b.logits_bytes,
        "gradients": b.gradients_bytes + adapter_grads,
        "optimizer": b.optimizer_bytes + adapter_states,
    }


def trace_groups(categories: Mapping[str, int]) -> dict[str, int]:
    return {group: sum(int(categories.get(c, 0)) for c in cats) for group, cats in TRACE_GROUPS.items()}


def comparison_rows(estimated: Mapping[str, int], measured: Mapping[str, int]) -> list[dict[str, Any]]:
    """One row per group: estimate, measured, difference and error % (None where nothing was measured)."""
    rows = []
    for group in GROUPS:
        e, m = int(estimated.get(group, 0)), int(measured.get(group, 0))
        if not (e or m):
            continue
        rows.append({"component": group, "estimate_bytes": e, "measured_bytes": m, "difference_bytes": e - m, "error_pct": error_pct(e, m)})
    return rows


def estimate_section(est: Estimate) -> dict[str, Any]:
    b = est.breakdown
    return {
        "peak_phase": est.peak_phase,
        "components": b.as_dict(),
        "groups": engine_groups(est),
        "torch_allocated_bytes": b.torch_allocated_bytes,
        "torch_reserved_bytes": b.torch_reserved_bytes,
        "total_bytes": b.total_bytes,
        "phases": dict(est.phases),
        "trainable_params": est.trainable_params,
        "num_params": est.spec.num_params,
    }


def _workload_dict(w: Workload) -> dict[str, Any]:
    d = asdict(w)
    d["notes"] = list(d["notes"])
    return d


def workload_from_dict(d: Mapping[str, Any]) -> Workload:
    """Inverse of the `workload` section (what the live worker receives)."""
    data = dict(d)
    data["notes"] = tuple(data.get("notes", ()))
    return Workload(**data)


# torch indexes tensor elements with int64 (c10 `numel()` is int64_t): a larger tensor overflows.
_MAX_TENSOR_ELEMENTS = 2**63 - 1


def _largest_tensor_elements(spec: ModelSpec, w: Workload) -> int:
    """Elements of the largest tensor a trace builds: logits (tokens x vocab), MLP activations
    (tokens x intermediate) or eager attention scores (batch x heads x context^2)."""
    tokens = w.batch_size * w.context_length
    widest = max(spec.vocab_size, spec.intermediate_size, spec.hidden_size)
    return max(tokens * widest, w.batch_size * spec.num_attention_heads * w.context_length**2)


def run_verification(
    spec: ModelSpec,
    workload: Workload,
    *,
    level: Level = "trace",
    timeout: float = 600.0,
    layers: int | None = None,
    live_runner: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Estimate `workload` on `spec` and measure it at `level` ("trace": FakeTensor trace on CPU;
    "live": the local CUDA GPU), returning the JSON-able comparison described in the module docstring.

    `layers` sizes the model down to its first N decoder layers for both the estimate and the
    measurement (a quick check of the per-layer formulas; the full-model estimate is reported
    alongside as `full_estimate`). `timeout` bounds the run in seconds. `live_runner` replaces
    `live.run_live` (tests).

    Raises `TraceUnsupportedError` (the workload cannot be traced), `VerificationError` (torch
    missing, no GPU, a run that timed out or failed), and the engine's own `CalculatorError`s.
    """
    if level not in ("trace", "live"):
        raise VerificationError(f"verification level must be 'trace' or 'live'; got {level!r}.")
    if timeout <= 0:
        raise VerificationError(f"timeout must be a positive number of seconds; got {timeout!r}.")
    if level == "trace" and _largest_tensor_elements(spec, workload) > _MAX_TENSOR_ELEMENTS:
        raise VerificationError(
            f"context {workload.context_length:,} x batch {workload.batch_size:,} gives tensors of more than 2^63 elements "
            "(logits or attention scores), which no tensor library can index: trace a shorter context or a smaller batch."
        )
    full_est = estimate(spec, workload)
    run_spec, run_config = spec, dict(spec.raw_config)
    notes: list[str] = []
    # A trainer that cannot start on the model (TRL's fused head on higgs-audio's two heads) is not run: its
    # trace raised AttributeError ('NoneType' object has no attribute 'weight') out of trl's `_fused_forward`.
    # The estimate sizes the run that starts (trainers.runnable_workload); the measurement runs that one too.
    from ..trainers import runnable_workload

    workload, trainer_problem = runnable_workload(spec, workload)
    if trainer_problem:
        notes.append(f"{trainer_problem} The measurement runs that loop too.")
    if layers is not None and layers < spec.num_hidden_layers:
        run_spec, run_config = sized_down_spec(spec, layers)
        notes.append(
            f"Sized down to {layers} of {spec.num_hidden_layers} decoder layers (estimate and measurement both): per-layer weights, "
            "KV cache, activations, gradients and optimizer states scale with the layer count; embeddings, LM head, logits and "
            "loss buffers do not. Read the error %, not the absolute bytes."
        )
    if spec.quantization is not None and level == "trace":
        # The trace drops quantization_config and runs the architecture in the workload's dtype, while the engine counts
        # a pre-quantized checkpoint in its stored format. Estimate the same unquantized architecture so the rows compare.
        run_config = {k: v for k, v in run_config.items() if k != "quantization_config"}
        for key in _NESTED_CONFIG_KEYS:
            if isinstance(run_config.get(key), dict):
                run_config[key] = {k: v for k, v in run_config[key].items() if k != "quantization_config"}
        run_spec = model_spec_from_config(spec.model_id, run_config)
        notes.append(
            f"The checkpoint is pre-quantized ({spec.quantization.method}, {spec.quantization.bits}-bit); the trace runs its architecture "
            f"unquantized in {workload.precision}, "
            "so the estimate shown is for that unquantized run (full_estimate is the quantized one)."
        )
    est = estimate(run_spec, workload) if run_spec is not spec else full_est
    if est.breakdown.speech_codec_bytes or "audio decode" in est.phases:
        # The trace and the live run build the language model only, not the TTS stack's audio codec.
        est = estimate(run_spec, replace(workload, speech_codec=False))
        notes.append(f"The audio codec ({full_est.breakdown.speech_codec_bytes / 2**30:.2f} GiB) and its waveform decode are part of the "
                     "estimate but not of the measured model; the comparison uses the estimate without them.")
    data: dict[str, Any] = {
        "model": spec.model_id,
        "level": level,
        "layers": run_spec.num_hidden_layers,
        "full_layers": spec.num_hidden_layers,
        "workload": _workload_dict(workload),
        "estimate": estimate_section(est),
    }
    if run_spec is not spec:
        data["full_estimate"] = estimate_section(full_est)
    if level == "trace":
        from .trace import trace_workload

        tr = trace_workload(run_config, workload, model_id=spec.model_id, max_seconds=timeout)
        measured = trace_groups(tr.peak_by_category)
        data["trace"] = {
            "peak_bytes": tr.peak_bytes,
            "peak_phase": tr.peak_phase,
            "categories": dict(tr.peak_by_category),
            "max_by_category": dict(tr.max_by_category),
            "resident_by_category": dict(tr.resident_by_category),
            "groups": measured,
            "phases": dict(tr.phase_peaks),
            "kv_cache_bytes": tr.kv_cache_bytes,
            "num_params": tr.num_params,
            "trainable_params": tr.trainable_params,
            "seconds": round(tr.seconds, 2),
            "notes": list(tr.notes),
        }
        data["comparison"] = comparison_rows(engine_groups(est), measured)
        allocated = est.torch_allocated_bytes
        data["total"] = {"estimate_bytes": allocated, "measured_bytes": tr.peak_bytes, "error_pct": error_pct(allocated, tr.peak_bytes)}
        data["phases"] = [
            {"phase": name, "estimate_bytes": value, "measured_bytes": tr.phase_peaks[PHASE_NAMES[name]],
             "error_pct": error_pct(value, tr.phase_peaks[PHASE_NAMES[name]])}
            for name, value in est.phases.items()
            if PHASE_NAMES.get(name) in tr.phase_peaks
        ]
    else:
        from . import live

        runner = live_runner or live.run_live
        result = runner(run_spec, workload, config=run_config, estimate_bytes=est.total_bytes, timeout=timeout)
        data["live"] = result.as_dict()
        data["comparison"] = live.live_comparison_rows(est, result)
        allocated = result.max_allocated_bytes if result.fits else 0
        data["total"] = {"estimate_bytes": est.torch_allocated_bytes, "measured_bytes": allocated, "error_pct": error_pct(est.torch_allocated_bytes, allocated)}
        if not result.fits:
            notes.append(f"The run did not fit on {result.device_name}: {result.message}")
    data["notes"] = notes
    return data


def verification_text(data: Mapping[str, Any]) -> str:
    """The comparison as a short text table (the CLI's report without --json)."""
    from ..units import format_bytes

    measured = "trace" if data["level"] == "trace" else "live"
    lines = [
        f"{data['model']}: estimate vs {measured} ({data['layers']} of {data['full_layers']} layers), "
        f"{data['workload']['mode']} {data['workload']['precision']}, context {data['workload']['context_length']:,}, batch {data['workload']['batch_size']}",
        f"  {'component':<30} {'estimate':>12} {'measured':>12} {'error':>9}",
    ]
    for row in [*data["comparison"], {"component": "total (torch allocated)", **data["total"]}]:
        err = "n/a" if row["error_pct"] is None else f"{row['error_pct']:+.1f}%"
        e, m = format_bytes(row["estimate_bytes"], "GiB", 2), format_bytes(row["measured_bytes"], "GiB", 2)
        lines.append(f"  {row['component']:<30} {e:>12} {m:>12} {err:>9}")
    for note in [*data.get("notes", []), *data.get(measured, {}).get("notes", [])]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def comparison_table(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The comparison as display rows (GiB to 3 decimals, error % to 1): one per group, then the total."""
    from ..units import GiB

    measured = "Trace" if data["level"] == "trace" else "Live GPU"
    rows = []
    for row in [*data["comparison"], {"component": "total (torch allocated)", **data["total"]}]:
        err = row["error_pct"]
        rows.append(
            {
                "Component": row["component"],
                "Estimate (GiB)": round(row["estimate_bytes"] / GiB, 3),
                f"{measured} (GiB)": round(row["measured_bytes"] / GiB, 3),
                "Error %": None if err is None else round(err, 1),
            }
        )
    return rows


def analytic_vs_profile(spec: ModelSpec, workload: Workload, profile: Any) -> dict[str, Any]:
    """The analytic estimate next to the same estimate with a trace profile's activations, KV cache
    / state and logits (`calculator.profile`), at the full depth: one row per engine component,
    then the PyTorch-allocated total. Difference % is (analytic - profile) / profile."""
    from dataclasses import replace

    from ..estimate import COMPONENT_LABELS
    from ..profile import plain_workload, untraced_settings

    untraced = untraced_settings(workload)
    workload = plain_workload(workload)  # the profile traces the plain loop: compare both there
    analytic = estimate(replace(spec, profile=None), workload)
    profiled = estimate(replace(spec, profile=profile), workload)
    a, p = analytic.breakdown.as_dict(), profiled.breakdown.as_dict()
    rows = [
        {"component": COMPONENT_LABELS.get(name, name), "analytic_bytes": a[name], "profile_bytes": p[name], "difference_pct": error_pct(a[name], p[name])}
        for name in a
        if name not in ("allocator_reserve", "cuda_context") and (a[name] or p[name])
    ]
    total = {"component": "total (torch allocated)", "analytic_bytes": analytic.torch_allocated_bytes, "profile_bytes": profiled.torch_allocated_bytes,
             "difference_pct": error_pct(analytic.torch_allocated_bytes, profiled.torch_allocated_bytes)}
    return {"rows": [*rows, total], "analytic_phase": analytic.peak_phase, "profile_phase": profiled.peak_phase,
            "check_error_pct": dict(profile.check_error_pct), "traced_depths": list(profile.traced_depths), "untraced": untraced}
