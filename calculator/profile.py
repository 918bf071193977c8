"""Per-layer memory profile of any architecture, fitted from traces of sized-down copies.

The analytic engine (`memory`, `estimate`) knows the families written in `spec.py`. For every other
architecture transformers ships, a profile measures what the formulas would predict: the model is
cut to a few decoder layers (one or two of each layer kind, every width kept), traced on fake
tensors (`calculator.verify`: FakeTensorMode + torch's MemTracker, nothing allocated) at a few
(batch, length) points for inference (prefill, decode), LoRA and full training, and per phase and
component the bytes are fitted as

    bytes = base(B, S) + sum over layer kinds k of  n_k x term_k(B, S)
    term(B, S) = const + per_seq x B + per_token x B x S + per_token2 x B x S^2

(B batch, S tokens: the prompt in prefill and training, the cache length in decode; S^2 only
matters where attention is eager). Memory of a step is a sum of tensors alive at one moment, each
sized by these products, so the fit is exact while the peak stays at the same place. Where an
inference forward peaks before the first layer (the attention masks) at some points and in the
layers at others, the two moments are fitted apart, with a batch-free S^2 term (`_split_phases`),
and the phase is the larger. A point held
out of the fit checks it (`check_error_pct`: the fourth point when the first three fit a linear
model, else a fifth). The fit is then evaluated at the full depth (n_k
of the whole model), batch and context.

Components: "kv" is what transformers' cache holds (K/V, or the conv + recurrent state of
Mamba-like layers, which does not grow with S), fitted per layer kind from each cache layer;
"activations" is everything else the forward/backward allocates (activations, temporaries,
inputs, logits, loss buffers); "gradients" the gradients alive at the backward peak. Weights,
optimizer states and adapters are not profiled: they come from the spec.

This module is light (no torch). Making a profile (`make_profile`) imports torch through
`calculator.verify.profile_trace`; profiles are cached on disk as JSON keyed by the config, the
settings and the torch / transformers / peft versions, and profiles shipped with the package
(`calculator/data/profiles/`) are used without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import CalculatorError

PROFILE_FORMAT = 1
# (batch, tokens) points of the fit: four, the number of terms per kind. Fake tensors cost the same
# time at any size, so the points sit where users run (1k-4k tokens), not at toy sizes. When the
# first three fit a linear model that predicts the fourth (`_fit_mode`), the fourth is the held-out
# check and CHECK_POINT is not traced.
FIT_POINTS: tuple[tuple[int, int], ...] = ((1, 1024), (1, 2048), (2, 2048), (1, 4096))
CHECK_POINT: tuple[int, int] = (2, 3072)  # held out of the fit
GENERATED_TOKENS = 4  # decode steps traced per point (steps 1 and 3; the cache grown in between)
MAX_TRACE_DEPTH = 12  # deepest sized-down copy tried to separate the layer kinds
DEFAULT_SECONDS = 300.0
MODES: tuple[str, ...] = ("inference", "lora", "full")
PHASES: dict[str, tuple[str, ...]] = {"inference": ("prefill", "decode"), "lora": ("backward",), "full": ("backward",)}
ENCODER_PHASES: tuple[str, ...] = ("forward",)
MOMENT = ":"  # "backward:large": the backward phase fitted again at a larger batch (`_large_points`)
# Keys that do not change the architecture or what a trace allocates (provenance, special token
# ids, the checkpoint dtype: the profile is traced in its own `settings` precision).
_IGNORED_KEYS = frozenset({"_name_or_path", "transformers_version", "_commit_hash", "use_cache", "bos_token_id", "eos_token_id",
                           "pad_token_id", "torch_dtype", "dtype"})
PROFILES_DIR = Path(__file__).parent / "data" / "profiles"
INSTALL_HINT = "pip install -r requirements-dev.txt (torch, transformers, peft)"


class ProfileUnavailableError(CalculatorError):
    """No profile can be had here: none shipped for this config, and torch + transformers are missing."""


# --------------------------------------------------------------------------------------------
# The profile
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Terms:
    """const + per_seq x B + per_token x B x S + per_token2 x B x S^2 (+ tokens2 x S^2), in bytes.

    `tokens2` is an S^2 that does not grow with the batch: a mask computed from positions alone
    (ModernBERT's sliding-window distances, `calculator.verify.profile_trace.PRE_LAYERS`) or index
    scores (DeepSeek sparse attention's indexer). The moments of a split phase and the phases with
    an S^2 term fit it, on a fifth point (`_fifth_fit_point`); it is 0, and not written, elsewhere."""

    const: float = 0.0
    per_seq: float = 0.0
    per_token: float = 0.0
    per_token2: float = 0.0
    tokens2: float = 0.0

    def at(self, batch: int, tokens: int) -> float:
        value = self.const + batch * (self.per_seq + tokens * (self.per_token + tokens * self.per_token2))
        return value + self.tokens2 * tokens * tokens if self.tokens2 else value


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentFit:
    """One component of one phase: a depth-independent part and a part per layer of each kind."""

    base: Terms = field(default_factory=Terms)
    per_kind: tuple[tuple[str, Terms], ...] = ()

    def layers_at(self, batch: int, tokens: int, counts: Mapping[str, int], windows: Mapping[str, int] | None = None) -> float:
        total = 0.0
        for kind, terms in self.per_kind:
            s = min(tokens, windows[kind]) if windows and windows.get(kind) else tokens
            total += counts.get(kind, 0) * terms.at(batch, s)
        return total

    def at(self, batch: int, tokens: int, counts: Mapping[str, int], windows: Mapping[str, int] | None = None) -> float:
        return self.base.at(batch, tokens) + self.layers_at(batch, tokens, counts, windows)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryProfile:
    """Fitted per-layer memory terms of one architecture (see the module docstring)."""

    model_type: str
    config_hash: str
    settings: Mapping[str, Any]
    versions: Mapping[str, str]
    kinds: tuple[tuple[str, int], ...]  # layer kind -> layers of that kind in the full model
    windows: tuple[tuple[str, int], ...] = ()  # sliding-window kinds: cache positions kept
    fits: Mapping[str, ComponentFit] = field(default_factory=dict)  # "mode/phase/component"
    traced_depths: tuple[int, ...] = ()
    points: tuple[tuple[int, int], ...] = FIT_POINTS
    check_error_pct: Mapping[str, float] = field(default_factory=dict)  # "mode/phase" -> % of the phase peak
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    source: str = ""  # "" when made or cached here, else the shipped file (not serialised)

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(sorted({key.split("/")[0] for key in self.fits}))

    @property
    def num_layers(self) -> int:
        return sum(n for _, n in self.kinds)

    def fit(self, mode: str, phase: str, component: str) -> ComponentFit | None:
        return self.fits.get(f"{mode}/{phase}/{component}")

    def phase_bytes(self, mode: str, *, batch: int, tokens: int, context: int | None = None,
                    counts: Mapping[str, int] | None = None) -> dict[str, dict[str, int]]:
        """Per phase of `mode`, the profiled components in bytes at the full depth (or `counts`):
        kv_cache, activations, logits (the depth-independent, per-sequence part in inference;
        the depth-independent part, i.e. head and loss, in training), gradients."""
        counts = dict(self.kinds) if counts is None else counts
        windows = dict(self.windows)
        phases = sorted({key.split("/")[1] for key in self.fits if key.startswith(f"{mode}/")})
        out: dict[str, dict[str, int]] = {}
        for phase in phases:
            if MOMENT in phase:
                continue
            # A phase fitted at the shortened points and again at a larger batch (`_large_points`):
            # each fit follows the moment that peaks in its own range; the phase's peak is the larger.
            both = [self._phase_components(mode, p, batch=batch, tokens=tokens, context=context, counts=counts, windows=windows)
                    for p in phases if p.split(MOMENT)[0] == phase]
            out[phase] = max(both, key=lambda comp: sum(comp.values()))
        return out

    def _phase_components(self, mode: str, phase: str, *, batch: int, tokens: int, context: int | None, counts: Mapping[str, int],
                          windows: Mapping[str, int]) -> dict[str, int]:
        """One fitted phase's components (see `phase_bytes`)."""
        s = context if (phase.startswith("decode") and context is not None) else tokens
        act = self.fit(mode, phase, "activations") or ComponentFit()
        kv = self.fit(mode, phase, "kv")
        grads = self.fit(mode, phase, "gradients")
        comp: dict[str, int] = {}
        comp["kv_cache"] = max(round(kv.at(batch, s, counts, windows)), 0) if kv else 0
        if mode == "inference":
            logits = max(act.base.per_seq * batch, 0.0)
            total_act = act.at(batch, s, counts)
            comp["logits"] = round(logits)
            comp["activations"] = max(round(total_act - logits), 0)
        else:
            comp["logits"] = max(round(act.base.at(batch, s)), 0)
            comp["activations"] = max(round(act.layers_at(batch, s, counts)), 0)
        comp["gradients"] = max(round(grads.at(batch, s, counts)), 0) if grads else 0
        return comp

    def to_json(self) -> dict[str, Any]:
        def terms(t: Terms) -> list[float]:
            return [t.const, t.per_seq, t.per_token, t.per_token2, *([t.tokens2] if t.tokens2 else [])]

        return {
            "format": PROFILE_FORMAT,
            "model_type": self.model_type,
            "config_hash": self.config_hash,
            "settings": dict(self.settings),
            "versions": dict(self.versions),
            "kinds": [list(k) for k in self.kinds],
            "windows": [list(w) for w in self.windows],
            "fits": {key: {"base": terms(f.base), "per_kind": [[k, terms(t)] for k, t in f.per_kind]} for key, f in self.fits.items()},
            "traced_depths": list(self.traced_depths),
            "points": [list(p) for p in self.points],
            "check_error_pct": dict(self.check_error_pct),
            "seconds": round(self.seconds, 1),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MemoryProfile:
        if not isinstance(data, Mapping) or data.get("format") != PROFILE_FORMAT:
            raise ProfileUnavailableError("profile file has another format version; it will be made again.")

        def terms(v: Sequence[Any]) -> Terms:
            return Terms(*(float(x) for x in v))

        fits = {
            str(key): ComponentFit(base=terms(f["base"]), per_kind=tuple((str(k), terms(t)) for k, t in f["per_kind"]))
            for key, f in data["fits"].items()
        }
        return cls(
            model_type=str(data["model_type"]),
            config_hash=str(data["config_hash"]),
            settings=dict(data["settings"]),
            versions=dict(data["versions"]),
            kinds=tuple((str(k), int(n)) for k, n in data["kinds"]),
            windows=tuple((str(k), int(n)) for k, n in data.get("windows", [])),
            fits=fits,
            traced_depths=tuple(int(d) for d in data.get("traced_depths", [])),
            points=tuple((int(b), int(s)) for b, s in data.get("points", FIT_POINTS)),
            check_error_pct={str(k): float(v) for k, v in data.get("check_error_pct", {}).items()},
            seconds=float(data.get("seconds", 0.0)),
            notes=tuple(str(n) for n in data.get("notes", [])),
        )


# --------------------------------------------------------------------------------------------
# Keys and the on-disk cache
# --------------------------------------------------------------------------------------------


def default_settings(*, precision: str = "bf16", attention: str = "sdpa", lora_rank: int = 16, lora_targets: str = "all-linear",
                     adapter_precision: str = "fp32") -> dict[str, Any]:
    """What a profile was traced with. bf16 and fp16 allocate alike; fp32 doubles most tensors."""
    return {"precision": "bf16" if precision == "fp16" else precision, "attention": "eager" if attention == "eager" else "sdpa",
            "lora_rank": lora_rank, "lora_targets": lora_targets, "adapter_precision": adapter_precision}


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the config as canonical JSON, provenance fields dropped. Keys a config.json leaves
    out take its model type's class defaults where the inventories ship them
    (`inventory.with_shipped_defaults`), so the diff-only file save_pretrained writes and the full
    dict find the same profile."""
    from .inventory import with_shipped_defaults

    clean = {k: v for k, v in with_shipped_defaults(config).items() if k not in _IGNORED_KEYS}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()


def profile_key(config: Mapping[str, Any], settings: Mapping[str, Any], versions: Mapping[str, str] | None) -> str:
    """File name stem: config hash, settings hash and (for the local cache) the library versions.
    Shipped profiles are looked up without versions (no torch to ask), so their stem has none."""
    settings_part = hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode()).hexdigest()[:8]
    stem = f"{config_hash(config)[:20]}-{settings_part}"
    if versions:
        v = "-".join(f"{k}{versions[k]}" for k in sorted(versions))
        stem += "-" + hashlib.sha256(v.encode()).hexdigest()[:8]
    return stem


def cache_dir() -> Path:
    """`$VRAM_CALCULATOR_CACHE/profiles`, else `~/.cache/vram-calculator/profiles`."""
    root = os.environ.get("VRAM_CALCULATOR_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "vram-calculator"
    return base / "profiles"


def _read(path: Path) -> MemoryProfile | None:
    try:
        return MemoryProfile.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, ProfileUnavailableError):
        return None


def shipped_profile(config: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> MemoryProfile | None:
    """The profile shipped in `calculator/data/profiles/` for this config and settings, if any."""
    from dataclasses import replace

    name = f"{profile_key(config, settings or default_settings(), None)}.json"
    hit = _read(PROFILES_DIR / name)
    return replace(hit, source=f"calculator/data/profiles/{name}") if hit is not None else None


def cached_profile(config: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> MemoryProfile | None:
    """A profile already made for this config, settings and library versions: the local cache,
    then the shipped ones. Never traces; needs no torch."""
    settings = settings or default_settings()
    versions = _installed_versions()
    if versions:
        hit = _read(cache_dir() / f"{profile_key(config, settings, versions)}.json")
        if hit is not None:
            return hit
    return shipped_profile(config, settings)


def _installed_versions() -> dict[str, str] | None:
    """torch / transformers / peft versions from package metadata (no import); None if torch is missing."""
    from importlib import metadata

    out = {}
    for name in ("torch", "transformers", "peft"):
        try:
            out[name] = metadata.version(name).split("+")[0]
        except metadata.PackageNotFoundError:
            if name != "peft":
                return None
            out[name] = ""
    return out


def profile_available() -> tuple[bool, str]:
    """Whether a profile can be made here (torch, transformers, peft and MemTracker importable)."""
    from .verify.trace import trace_available

    return trace_available()


def get_profile(config: Mapping[str, Any], settings: Mapping[str, Any] | None = None, *, max_seconds: float = DEFAULT_SECONDS,
                on_progress: Callable[[str], None] | None = None, write_cache: bool = True) -> MemoryProfile:
    """The profile for `config`: cached or shipped, else made now (torch needed) and cached."""
    settings = settings or default_settings()
    hit = cached_profile(config, settings)
    if hit is not None:
        return hit
    ok, _ = profile_available()
    if not ok:
        raise ProfileUnavailableError(
            f"model_type {config.get('model_type')!r} is outside the analytic families and no profile of it ships with the "
            f"calculator; a profile is traced from transformers' own model code and needs torch + transformers: {INSTALL_HINT}."
        )
    profile = make_profile(config, settings, max_seconds=max_seconds, on_progress=on_progress)
    if write_cache:
        save_profile(profile, cache_dir() / f"{profile_key(config, settings, dict(profile.versions))}.json")
    return profile


def save_profile(profile: MemoryProfile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(profile.to_json(), separators=(",", ":"), sort_keys=True) + "\n")  # compact: shipped files stay small
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# Making a profile (torch)
# --------------------------------------------------------------------------------------------


def _rank(rows: Sequence[Sequence[int]]) -> int:
    """Rank of a small integer matrix (exact, with fractions)."""
    m = [[Fraction(x) for x in row] for row in rows]
    rank, cols = 0, len(m[0]) if m else 0
    for c in range(cols):
        pivot = next((r for r in range(rank, len(m)) if m[r][c] != 0), None)
        if pivot is None:
            continue
        m[rank], m[pivot] = m[pivot], m[rank]
        for r in range(len(m)):
            if r != rank and m[r][c] != 0:
                f = m[r][c] / m[rank][c]
                m[r] = [a - f * b for a, b in zip(m[r], m[rank], strict=True)]
        rank += 1
    return rank


def choose_depths(kinds: Sequence[str], max_depth: int = MAX_TRACE_DEPTH) -> tuple[int, ...]:
    """Prefix depths whose kind counts separate every kind from the depth-independent part:
    the shortest prefixes that raise the rank of [1, n_1, ..., n_K] to K + 1."""
    order = list(dict.fromkeys(kinds))
    want = len(order) + 1
    rows: list[list[int]] = []
    depths: list[int] = []
    # A 1-layer copy is not a deeper model's first layer: its only layer is also the last, and the
    # prefill peak moves there (traced: Llama-3.2-3B prefill 279 MB at 1 layer, 304 MB at 2, 3 and 4
    # layers, 1 x 4096 tokens). Start at 2 layers when the model has 3 or more.
    first = 2 if len(kinds) >= 3 else 1
    for d in range(first, min(max_depth, len(kinds)) + 1):
        prefix = kinds[:d]
        row = [1] + [prefix.count(k) for k in order]
        if _rank([*rows, row]) > len(rows):
            rows.append(row)
            depths.append(d)
        if len(rows) == want:
            break
    return tuple(depths)


# Layer-count keys `verify.compare.cut_config` does not cut: GPT-2/GPT-J's n_layer, MPT's n_layers
# (MptConfig maps num_hidden_layers to it; uncut, its profile traced 24 layers twice), encoder-decoder
# stacks (BART/Marian/Whisper: encoder_layers/decoder_layers; T5: num_layers/num_decoder_layers).
_EXTRA_DEPTH_KEYS = ("n_layer", "n_layers", "encoder_layers", "decoder_layers", "num_layers", "num_decoder_layers")


def sized_down_config(config: Mapping[str, Any], depth: int) -> dict[str, Any]:
    """`config` with its first `depth` layers (every width kept). Encoder-decoder models keep
    `depth` encoder and `depth` decoder layers, so one "layer" of the profile is one of each."""
    from .verify.compare import cut_config

    cfg = cut_config(config, depth)
    for key in _EXTRA_DEPTH_KEYS:
        if isinstance(cfg.get(key), int) and not isinstance(cfg.get(key), bool) and cfg[key] > depth:
            cfg[key] = depth
    return cfg


def _features(batch: int, tokens: int, cols: Sequence[str]) -> list[float]:
    values = {"const": 1.0, "per_seq": float(batch), "per_token": float(batch * tokens), "per_token2": float(batch * tokens * tokens),
              "tokens2": float(tokens * tokens)}
    return [values[c] for c in cols]


def _lstsq(rows: list[list[float]], ys: list[float]) -> list[float]:
    import numpy as np

    a = np.asarray(rows, dtype=float)
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    x, *_ = np.linalg.lstsq(a / scale, np.asarray(ys, dtype=float), rcond=1e-10)
    return [float(v) for v in x / scale]


_COLS = ("const", "per_seq", "per_token", "per_token2")
_SPLIT_COLS = (*_COLS, "tokens2")  # a quadratic phase on five points (`_fifth_fit_point`)
_KV_COLS = ("per_seq", "per_token")


def _fit_component(obs: list[tuple[dict[str, int], int, int, float]], order: Sequence[str], cols: Sequence[str] = _COLS) -> ComponentFit:
    """Least squares over observations (kind counts, batch, tokens, bytes) in the terms `cols`
    (the others are 0)."""
    rows, ys = [], []
    for counts, b, s, y in obs:
        f = _features(b, s, cols)
        row = list(f)
        for k in order:
            row += [counts.get(k, 0) * v for v in f]
        rows.append(row)
        ys.append(y)
    x = _lstsq(rows, ys)
    n = len(cols)

    def terms(values: Sequence[float]) -> Terms:
        return Terms(**dict(zip(cols, values, strict=True)))

    base = terms(x[:n])
    per_kind = tuple((k, terms(x[n * (i + 1): n * (i + 2)])) for i, k in enumerate(order))
    return ComponentFit(base=base, per_kind=per_kind)


def _fit_kv(obs: list[tuple[str, int, int, float]], order: Sequence[str], windows: Mapping[str, int]) -> ComponentFit:
    """Per kind, bytes of one cache layer = per_seq x B + per_token x B x S (S capped at the window)."""
    per_kind = []
    for k in order:
        rows, ys = [], []
        for kind, b, s, y in obs:
            if kind == k:
                s_eff = min(s, windows[k]) if windows.get(k) else s
                rows.append(_features(b, s_eff, _KV_COLS))
                ys.append(y)
        if rows:
            x = _lstsq(rows, ys)
            per_kind.append((k, Terms(per_seq=x[0], per_token=x[1])))
    return ComponentFit(per_kind=tuple(per_kind))


# A fit is taken as linear (no S^2 term) when the three-point linear fit predicts the fourth point
# to this fraction of that phase's peak. Eager attention's [B, heads, S, S] scores are tens of % of
# the peak at 4,096 tokens; one boolean [B, S, S] mask is 16 MiB (0.5% of a 3 GiB peak). Smaller
# misses are a moving peak (the max of two linear terms), which neither fit follows: llama's
# default prefill missed the fifth point by 0.012% with the quadratic fit (profile_speed_before.txt).
# An S^2 term under 0.1% of the peak at 4,096 tokens stays under ~1% at 32k.
LINEAR_TOLERANCE = 1e-3


def _observations(mode: str, runs: Sequence[tuple[dict[str, int], tuple[str, ...], Any]], keep: Sequence[tuple[int, int]]
                  ) -> tuple[dict[str, list], dict[str, list], dict[str, list]]:
    """Per phase, the (kind counts, batch, tokens, bytes) observations of activations, gradients and (per layer) the cache."""
    act: dict[str, list] = {}
    grad: dict[str, list] = {}
    kv: dict[str, list] = {}
    keep = [tuple(p) for p in keep]
    for counts, kinds, r in runs:
        if (r.batch, r.length) not in keep:
            continue
        for phase, comp in r.phases.items():
            s = r.context if phase == "decode" else r.length
            act.setdefault(phase, []).append((counts, r.batch, s, float(comp["activations"])))
            if mode != "inference":
                grad.setdefault(phase, []).append((counts, r.batch, s, float(comp["gradients"])))
        for phase, per_layer in r.kv_by_layer.items():
            s = r.context if phase == "decode" else r.length
            for kind, y in zip(kinds, per_layer, strict=False):
                kv.setdefault(phase, []).append((kind, r.batch, s, float(y)))
    return act, grad, kv


def _phase_fits(mode: str, phase: str, obs: tuple[dict[str, list], dict[str, list], dict[str, list]], order: Sequence[str],
                windows: Mapping[str, int], cols: Sequence[str]) -> dict[str, ComponentFit]:
    act, grad, kv = obs
    out = {}
    if phase in act:
        out[f"{mode}/{phase}/activations"] = _fit_component(act[phase], order, cols)
    if phase in grad:
        out[f"{mode}/{phase}/gradients"] = _fit_component(grad[phase], order, cols)
    if phase in kv:
        out[f"{mode}/{phase}/kv"] = _fit_kv(kv[phase], order, windows)
    return out


def _check(mode: str, phase: str, fits: Mapping[str, ComponentFit], counts: Mapping[str, int], r: Any, windows: Mapping[str, int]) -> float:
    """(predicted - measured) / the phase's peak, in %, of one point result. A phase also fitted at
    a larger batch is predicted as `MemoryProfile.phase_bytes` does: the larger of its fits."""
    comp = r.phases[phase]
    s = r.context if phase == "decode" else r.length
    measured = comp["activations"] + sum(r.kv_by_layer.get(phase, ())) + comp["gradients"]
    predicted = max(sum(f.at(r.batch, s, counts, windows) for name in ("activations", "kv", "gradients")
                        if (f := fits.get(f"{mode}/{p}/{name}")) is not None) for p in (phase, f"{phase}{MOMENT}large"))
    return (predicted - measured) / max(comp["peak"], 1) * 100.0


def _fit_mode(mode: str, runs: Sequence[tuple[dict[str, int], tuple[str, ...], Any]], order: Sequence[str], windows: Mapping[str, int],
              points: Sequence[tuple[int, int]], fifth: Sequence[tuple[dict[str, int], tuple[str, ...], Any]] = (),
              five_point: frozenset[str] = frozenset()) -> tuple[dict[str, ComponentFit], dict[str, float], set[str]]:
    """The fits of one mode's phases, the held-out checks of the linear ones, and the quadratic phases.

    With four points the four terms per kind are determined exactly (the quadratic fit). Per phase,
    the three linear terms are first fitted on the first three points and the fourth is predicted:
    within `LINEAR_TOLERANCE` of the phase's peak, the phase is linear (per_token2 = 0, refitted on
    all four points) and the fourth point was its held-out check, so no fifth point is needed for
    it. Otherwise the phase gets the quadratic fit on all four (and no check here), or, for the
    phases in `five_point` (those a first call found quadratic, see `make_profile`), the quadratic
    fit with the batch-free S^2 too (`_SPLIT_COLS`) on the four and the `fifth` point's runs."""
    phases = sorted({p for _, _, r in runs for p in r.phases})
    everything = _observations(mode, runs, points)
    if len(points) < 4:
        return {k: v for p in phases for k, v in _phase_fits(mode, p, everything, order, windows, _COLS).items()}, {}, set(phases)
    first = _observations(mode, runs, points[:3])
    fourth = [(counts, r) for counts, _, r in runs if (r.batch, r.length) == tuple(points[3])]
    fits: dict[str, ComponentFit] = {}
    checks: dict[str, float] = {}
    quadratic: set[str] = set()
    for phase in phases:
        trial = _phase_fits(mode, phase, first, order, windows, _COLS[:3])
        errors = [_check(mode, phase, trial, counts, r, windows) for counts, r in fourth if phase in r.phases]
        if errors and all(abs(e) <= LINEAR_TOLERANCE * 100.0 for e in errors):
            fits.update(_phase_fits(mode, phase, everything, order, windows, _COLS[:3]))
            checks[f"{mode}/{phase}"] = round(max(errors, key=abs), 3)
        elif phase in five_point and fifth:
            five = [*points, *{(r.batch, r.length) for _, _, r in fifth}]
            fits.update(_phase_fits(mode, phase, _observations(mode, [*runs, *fifth], five), order, windows, _SPLIT_COLS))
            quadratic.add(phase)
        else:
            fits.update(_phase_fits(mode, phase, everything, order, windows, _COLS))
            quadratic.add(phase)
    return fits, checks, quadratic


def _moving_phases(runs: Sequence[tuple[dict[str, int], tuple[str, ...], Any]]) -> tuple[str, ...]:
    """The phases (`profile_trace.SPLIT_PHASES`) whose peak is before the first decoder layer at some
    points and in the layers at others (`PointResult.moments`). Where the peak stays at one of the two,
    the phase's peak is that moment's at every point and the phase is fitted whole, as before the
    moments were recorded."""
    from .verify.profile_trace import LAYERS, PRE_LAYERS, SPLIT_PHASES

    out = []
    for phase in SPLIT_PHASES:
        before_layers = set()
        for _, _, r in runs:
            pre, layers = r.moments.get(f"{phase}{MOMENT}{PRE_LAYERS}"), r.moments.get(f"{phase}{MOMENT}{LAYERS}")
            if pre is not None and layers is not None:
                before_layers.add(pre["peak"] > layers["peak"])
        if len(before_layers) > 1:
            out.append(phase)
    return tuple(out)


def _split_phases(runs: Sequence[tuple[dict[str, int], tuple[str, ...], Any]], split: Sequence[str]
                  ) -> list[tuple[dict[str, int], tuple[str, ...], Any]]:
    """`runs` with each phase of `split` replaced by its two moments: the layers' under the phase's
    own name (with the cache), the one before the layers as "phase:pre_layers". Each is one moment
    whose bytes follow the fit's terms; `MemoryProfile.phase_bytes` takes the larger."""
    from dataclasses import replace

    from .verify.profile_trace import LAYERS, PRE_LAYERS

    out = []
    for counts, kinds, r in runs:
        phases = dict(r.phases)
        for phase in split:
            pre, layers = r.moments.get(f"{phase}{MOMENT}{PRE_LAYERS}"), r.moments.get(f"{phase}{MOMENT}{LAYERS}")
            if phase in phases and pre is not None and layers is not None:
                phases[phase] = layers
                phases[f"{phase}{MOMENT}{PRE_LAYERS}"] = pre
        out.append((counts, kinds, replace(r, phases=phases)))
    return out


def _fifth_fit_point(points: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The fifth point of a quadratic phase's fit: the largest batch at the longest length (2 x 4,096
    with `FIT_POINTS`). The S^2 of a mask made from positions alone does not grow with the batch, the
    scores of eager attention do; with the four points, of which only one is at another batch, the
    two cannot be told apart. None when the five leave the five terms undetermined."""
    fifth = (max(b for b, _ in points), max(s for _, s in points))
    if fifth in points or _rank([[round(v) for v in _features(b, s, _SPLIT_COLS)] for b, s in [*points, fifth]]) < len(_SPLIT_COLS):
        return None
    return fifth


def _short(kind: str) -> str:
    """A readable kind label: layer class and cache type."""
    parts = kind.split("|")
    return f"{parts[0]} ({parts[1]})" if len(parts) > 1 and parts[1] else parts[0]


def make_profile(config: Mapping[str, Any], settings: Mapping[str, Any] | None = None, *, max_seconds: float = DEFAULT_SECONDS,
                 modes: Sequence[str] = MODES, points: Sequence[tuple[int, int]] = FIT_POINTS,
                 check_point: tuple[int, int] | None = CHECK_POINT, max_depth: int = MAX_TRACE_DEPTH,
                 on_progress: Callable[[str], None] | None = None) -> MemoryProfile:
    """Trace sized-down copies of `config` and fit its profile (needs torch, transformers, peft).

    Bounded: at most `max_depth` layers per copy and `max_seconds` in all (`TraceUnsupportedError`
    past the deadline). Modes a model cannot run (training an encoder) are left out with a note."""
    from .verify.profile_trace import layer_kinds, run_points, versions
    from .verify.trace import TraceUnsupportedError

    started = time.monotonic()
    deadline = started + max_seconds
    settings = dict(settings or default_settings())
    notes: list[str] = []
    if settings["lora_targets"] not in ("all-linear", "qv"):
        # Which modules are "attention" or "mlp" is a name convention per family; the trace only
        # spells out peft's own shorthand and the LoRA paper's q/v.
        notes.append(f"LoRA targets {settings['lora_targets']!r} were traced as 'all-linear' (an upper bound).")
        settings["lora_targets"] = "all-linear"
    full_kinds = layer_kinds(config)
    order = list(dict.fromkeys(full_kinds))
    depths = choose_depths(full_kinds, max_depth)
    if not depths:
        # Vision-only and codec models (ResNet, SAM, EnCodec...) have no num_hidden_layers stack of
        # token positions: the profile's terms are per layer and per token, so there is nothing to fit.
        raise TraceUnsupportedError(
            f"{config.get('model_type', 'this model')}: no stack of decoder layers over token positions was found "
            "(num_hidden_layers), so a per-layer, per-token profile cannot be fitted.")
    windows: dict[str, int] = {}
    points, check_point, scale, large_points = _fit_in_time(config, depths, points, check_point, max_seconds, modes)
    if scale < 1:
        notes.append(f"Traced at 1/{round(1 / scale)} of the usual lengths (up to {max(s for _, s in points):,} tokens): within the "
                     f"model's positions and {max_seconds:g} s (reference kernels that run token by token on CPU are slow).")
    if large_points:
        notes.append(f"Training was traced again at {large_points[0][0] // points[0][0]} x the batch, back at the usual tokens per step "
                     "(a training peak can move from the end of backward to the loss or a layer's backward as the tokens grow).")
    fits: dict[str, ComponentFit] = {}
    checks: dict[str, float] = {}
    traced_kinds: set[str] = set()
    traced: dict[int, int] = {}  # asked depth -> layers the traced copy had
    lora = {"rank": settings["lora_rank"], "targets": settings["lora_targets"], "adapter_precision": settings["adapter_precision"]}

    def trace(mode: str, pts: Sequence[tuple[int, int]]) -> list[tuple[dict[str, int], tuple[str, ...], Any]]:
        """(kind counts, kinds, point result) of every depth's copy at `pts`."""
        out = []
        for depth in depths:
            cut = sized_down_config(config, depth)
            if on_progress:
                on_progress(f"{mode}: tracing a {depth}-layer copy at {len(pts)} sizes")
            results, run_notes, kinds = run_points(
                cut, mode=mode, points=pts, generated=GENERATED_TOKENS, precision=settings["precision"],
                attention=settings["attention"], lora=lora, deadline=deadline,
            )
            notes.extend(n for n in run_notes if n not in notes)
            traced_kinds.update(kinds)
            if len(kinds) != depth:
                # The copy kept more layers than asked (a layer-count key cut_config does not know):
                # the label says what was traced, and equal depths cannot separate the layers.
                note = f"A {depth}-layer copy was asked for and transformers built {len(kinds)} layers."
                notes.extend([note] if note not in notes else [])
            traced.setdefault(depth, len(kinds))
            counts = {k: kinds.count(k) for k in order}
            for r in results:
                for kind, window in zip(kinds, r.windows, strict=False):
                    if window:
                        windows[kind] = window
            out += [(counts, kinds, r) for r in results]
        return out

    for mode in modes:
        try:
            runs = trace(mode, points)
            # A forward whose peak moves between the masks before the layers and the layers themselves
            # is fitted as the two moments (`_split_phases`).
            split = _moving_phases(runs)
            runs = _split_phases(runs, split)
            mode_fits, linear_checks, quadratic = _fit_mode(mode, runs, order, windows, points)
            # A phase with an S^2 term (a split phase's moments included) is fitted again on five points,
            # with the batch-free S^2: its S^2 may be part scores that grow with the batch, part masks or
            # index scores made from positions alone (ModernBERT's sliding-window distances; DeepSeek
            # sparse attention's indexer: a 2-layer DeepSeek-V3.2 prefill fitted on the four points
            # missed 3 x 1,536 by +19.9%). With one point at batch 2 the two cannot be told apart.
            fifth_point = _fifth_fit_point(points) if quadratic else None
            if fifth_point:
                fifth = _split_phases(trace(mode, [fifth_point]), split)
                mode_fits, linear_checks, quadratic = _fit_mode(mode, runs, order, windows, points, fifth, frozenset(quadratic))
            if split:
                notes.append(f"The {' and '.join(split)} peak is before the first layer (embeddings, attention masks) at some points and in the "
                             "layers at others: each moment was fitted on its own" +
                             (f", with a fifth point ({fifth_point[0]} x {fifth_point[1]:,} tokens)." if fifth_point else "."))
            # Phases linear in B x S were checked at the fourth point; the others at a fifth, if asked.
            held_out = _split_phases(trace(mode, [check_point]), split) if quadratic and check_point is not None else []
        except TraceUnsupportedError as e:
            if mode == "inference" or time.monotonic() > deadline:
                raise
            notes.append(f"{mode} was not profiled: {e}")
            continue
        fits.update(mode_fits)
        checks.update(linear_checks)
        if mode != "inference" and large_points:
            try:
                large_runs = trace(mode, large_points)
                large_fits, large_checks, _ = _fit_mode(mode, large_runs, order, windows, large_points)
            except TraceUnsupportedError as e:
                notes.append(f"{mode} was not traced at the larger batch ({e}); the fit of the shorter points stands alone.")
            else:
                fits = _with_large(mode, fits, large_fits, runs, large_runs)
                checks.update({f"{k}{MOMENT}large": v for k, v in large_checks.items()})
        for counts, _, r in held_out:
            for phase in quadratic & set(r.phases):
                if r.phases[phase]["peak"]:
                    err = round(_check(mode, phase, fits, counts, r, windows), 3)
                    key = f"{mode}/{phase}"
                    checks[key] = err if abs(err) >= abs(checks.get(key, 0.0)) else checks[key]
    missing = [k for k in order if k not in traced_kinds]
    if missing:
        notes.append(f"{len(missing)} layer kind(s) were not reached within {max_depth} traced layers; they take the mean of the traced kinds.")
    hf_type = str(config.get("model_type", ""))
    return MemoryProfile(
        model_type=hf_type,
        config_hash=config_hash(config),
        settings=settings,
        versions=versions(),
        kinds=tuple((k, full_kinds.count(k)) for k in order),
        windows=tuple(windows.items()),
        fits=_fill_missing(fits, missing),
        traced_depths=tuple(traced.get(d, d) for d in depths),
        points=tuple(points),
        check_error_pct=checks,
        seconds=time.monotonic() - started,
        notes=tuple(notes),
    )


def _mixed(phase: str, runs: Sequence[tuple[dict[str, int], tuple[str, ...], Any]]) -> bool:
    """Whether the points of one depth peaked at different moments of `phase`: the gradients alive at
    a training peak are parameter-sized, the same at every (B, S) while the peak stays at one moment
    (a 2-layer trocr's backward_layers peaked with 51 MB of gradients alive at 8 x 112 tokens, the end
    of backward, and with 4 KB at 16 x 224, inside the last layer's backward)."""
    seen: dict[tuple, set[int]] = {}
    for counts, _, r in runs:
        if r.phases.get(phase, {}).get("peak"):
            seen.setdefault(tuple(sorted(counts.items())), set()).add(r.phases[phase]["gradients"])
    return any(len(v) > 1 for v in seen.values())


def _with_large(mode: str, fits: Mapping[str, ComponentFit], large_fits: Mapping[str, ComponentFit],
                runs: Sequence[tuple[dict[str, int], tuple[str, ...], Any]], large_runs: Sequence[tuple[dict[str, int], tuple[str, ...], Any]]
                ) -> dict[str, ComponentFit]:
    """The training fits of `mode` with the large-batch set's: per phase, both fits (the phase's peak is
    the larger, `MemoryProfile.phase_bytes`), which holds while each follows one moment: exact in its
    own range, below the peak elsewhere. A set whose points peaked at two moments (`_mixed`) follows
    neither (a 2-layer trocr's large-batch backward_layers fit, through two points of each moment:
    547 MB at 1 x 112 tokens, where the trace and the shortened points' fit have 360 MB): when the
    other set's points all peaked at one moment, only that set's fit is kept."""
    out = {k: v for k, v in fits.items() if not k.startswith(f"{mode}/")}
    for phase in sorted({k.split("/")[1] for k in [*fits, *large_fits] if k.startswith(f"{mode}/")}):
        small = {k: v for k, v in fits.items() if k.startswith(f"{mode}/{phase}/")}
        large = {k: v for k, v in large_fits.items() if k.startswith(f"{mode}/{phase}/")}
        small_mixed, large_mixed = _mixed(phase, runs), _mixed(phase, large_runs)
        keep_small = bool(small) and not (small_mixed and not large_mixed and large)
        keep_large = bool(large) and not (large_mixed and not small_mixed and keep_small)
        out.update(small if keep_small else {})
        # Alone, the large set's fit takes the phase's own name.
        out.update(({_large_key(k): v for k, v in large.items()} if keep_small else large) if keep_large else {})
    return out


def _large_key(key: str) -> str:
    """"full/backward/activations" -> "full/backward:large/activations"."""
    mode, phase, component = key.split("/")
    return f"{mode}/{phase}{MOMENT}large/{component}"


def _fit_in_time(config: Mapping[str, Any], depths: Sequence[int], points: Sequence[tuple[int, int]], check: tuple[int, int] | None,
                 max_seconds: float, modes: Sequence[str]
                 ) -> tuple[list[tuple[int, int]], tuple[int, int] | None, float, list[tuple[int, int]]]:
    """Shorter points for models whose trace time grows with tokens (Mamba's reference selective
    scan loops over the sequence: 2 layers x 256 tokens took 27 s on one CPU core). Two probe points
    give CPU seconds per token; the lengths are halved until the plan fits half the time budget.

    Also the large-batch points of training (`_large_points`): [] unless the lengths were shortened
    and the time budget leaves room for them."""
    from .verify.profile_trace import run_points

    probe, _, _ = run_points(sized_down_config(config, depths[0]), mode="inference", points=[(1, 32), (1, 96)], generated=1,
                             deadline=time.monotonic() + max_seconds)  # prefill only: the per-token cost
    per_token = max((probe[1].seconds - probe[0].seconds) / 64, 0.0) / max(depths[0], 1)
    weight = sum({"inference": 1.0}.get(m, 3.0) for m in modes)  # a training step costs ~3 forwards
    layers = sum(depths)
    tokens = sum(b * s for b, s in [*points, *([check] if check else [])])
    scale = 1.0
    while scale > 1 / 64 and per_token * weight * layers * tokens * scale > max_seconds / 2:
        scale /= 2
    # Models with learned or ALiBi positions cannot run past them (MPT's ALiBi bias is built for
    # max_seq_len and fails to broadcast; GPT-2 has 1,024 position embeddings).
    limit = _position_limit(config)
    longest = max(s for _, s in [*points, *([check] if check else [])])
    # The decode steps extend the cache past the prompt (MPT's ALiBi bias is built for max_seq_len
    # positions and failed to broadcast at 2,048 + 3). The longest point goes to the last multiple
    # of 64 that leaves room for them (2,048 positions: 1,984), not to half of it: a workload just
    # under the limit then stays inside the fitted range.
    if limit and longest * scale + GENERATED_TOKENS > limit:
        scale = min(scale, max((limit - GENERATED_TOKENS) // 64 * 64, 16) / longest)
    if scale == 1.0:
        return list(points), check, 1.0, []

    def shrink(p: tuple[int, int]) -> tuple[int, int]:
        return p[0], max(int(p[1] * scale) // 16 * 16, 8)

    shrunk = [shrink(p) for p in points]
    large = _large_points(shrunk, scale) if any(m != "inference" for m in modes) else []
    training = sum(3.0 for m in modes if m != "inference")
    planned = per_token * layers * (weight * tokens * scale + training * sum(b * s for b, s in large))
    return shrunk, (shrink(check) if check else None), scale, (large if planned <= max_seconds / 2 else [])


# Training phases traced a second time at this many times the batch when the lengths were shortened.
LARGE_BATCH_MIN = 4


def _large_points(points: Sequence[tuple[int, int]], scale: float) -> list[tuple[int, int]]:
    """The fit points at a larger batch, for training when the lengths were shortened (positions or
    time). A training phase's peak is the largest of several moments, each linear in B and B x S:
    with few tokens the end of backward (every gradient alive, plus the embedding's backward
    temporaries: 186 MB constant in a 2-layer openai-gpt), with more a moment sized by the tokens
    (the loss buffers, a layer's backward). The usual points (1k-4k tokens, `FIT_POINTS`) sit in the
    second regime for most models; shortened ones (openai-gpt: 112-448 tokens) can straddle the two,
    and a fit through both follows neither (falcon full -7.6%, trocr full -6.0% vs trace at 3 x 3/4
    of the positions). The batch is raised by the power of two nearest 1/scale, so B x S is back at
    the usual tokens, and at least `LARGE_BATCH_MIN` times, so the large set starts at the tokens
    where the small one (s, 2s, 2 x 2s, 4s) ends. Each set is fitted on its own and the profile takes
    the larger of the two (`MemoryProfile.phase_bytes`)."""
    import math

    factor = max(LARGE_BATCH_MIN, 2 ** round(math.log2(1 / scale)))
    return [(b * factor, s) for b, s in points]


def _position_limit(config: Mapping[str, Any]) -> int:
    """The longest sequence the config's positions allow (0: no stated limit)."""
    text = next((config[k] for k in ("text_config", "llm_config", "language_config", "thinker_config") if isinstance(config.get(k), Mapping)), config)
    values = [text.get(k) for k in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")]
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    return min(ints) if ints else 0


def _fill_missing(fits: dict[str, ComponentFit], missing: Sequence[str]) -> dict[str, ComponentFit]:
    """Kinds never traced get the mean per-layer terms of the traced ones."""
    if not missing:
        return fits
    out = {}
    for key, f in fits.items():
        traced = [t for k, t in f.per_kind if k not in missing]
        if not traced:
            out[key] = f
            continue
        mean = Terms(*(sum(getattr(t, a) for t in traced) / len(traced) for a in _SPLIT_COLS))
        out[key] = ComponentFit(base=f.base, per_kind=tuple((k, mean if k in missing else t) for k, t in f.per_kind))
    return out


def kind_labels(profile: MemoryProfile) -> list[str]:
    """"3 x MambaBlock (linear_attention)"-style labels of the full model's layer kinds."""
    return [f"{n} x {_short(k)}" for k, n in profile.kinds]


# --------------------------------------------------------------------------------------------
# Using a profile in the estimate
# --------------------------------------------------------------------------------------------


def settings_for(workload: Any) -> dict[str, Any]:
    """The profile settings a workload needs (what changes the traced activations)."""
    precision = workload.precision if workload.precision in ("fp32", "bf16", "fp16") else "bf16"
    return default_settings(precision=precision, attention=workload.attention, lora_rank=workload.lora_rank,
                            lora_targets=workload.lora_targets, adapter_precision=workload.adapter_precision)


# Workload settings a profile does not trace (it traces the plain loop: `Workload()`'s defaults).
# Training: the memory savers and trainer options; inference: cache layouts other than DynamicCache.
_TRAINING_UNTRACED = ("gradient_checkpointing", "master_weights", "loss_impl", "compile_loss", "compile_layers", "trained_token_fraction", "checkpoint_every",
                      "checkpoint_policy", "oft_block_size", "vera_rank",
                      "activation_offload", "optimizer_in_backward", "norm_kernel", "mlp_kernel", "packing", "sample_lengths", "peft_method",
                      "keep_logits")
_INFERENCE_UNTRACED = ("cache_implementation",)


def untraced_settings(workload: Any) -> dict[str, Any]:
    """The workload's settings that differ from what a profile traces, with the traced value."""
    from .workload import Workload

    plain = Workload()
    names = _TRAINING_UNTRACED if workload.is_training else _INFERENCE_UNTRACED
    return {n: getattr(plain, n) for n in names if hasattr(plain, n) and getattr(workload, n) != getattr(plain, n)}


def plain_workload(workload: Any) -> Any:
    """`workload` with the settings a profile does not trace set back to the plain loop."""
    from dataclasses import replace

    return replace(workload, **untraced_settings(workload))


def _kv_scale(workload: Any, traced_precision: str) -> float:
    from .units import BITS_PER_ELEMENT

    traced = BITS_PER_ELEMENT[traced_precision]
    wanted = BITS_PER_ELEMENT[workload.kv_cache_precision] if workload.kv_cache_precision else (traced if workload.precision not in ("fp32",) else 32)
    return wanted / traced


def overlay_phases(profile: MemoryProfile, spec: Any, workload: Any, phases: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The analytic phases with the profiled components put in: KV cache / state, activations and
    logits (and, in full training, the gradients alive during backward) come from the profile;
    weights, optimizer states, master weights and adapters stay as the spec gives them.

    Inference keeps the analytic phase names (prefill/decode, or forward for encoders). Training
    replaces the analytic "backward" by the profile's backward peaks (`TRAINING_PHASE_LABELS`: the
    loss, the LM head, the decoder layers, the input embedding; the last replaces the analytic
    tied-embedding phase) and keeps the analytic "optimizer step"."""
    from dataclasses import replace

    shipped = f" shipped with the calculator ({profile.source})" if profile.source else ""
    notes: list[str] = [f"Activations, KV cache / state and logits from a trace profile{shipped} of {profile.model_type} "
                        f"({', '.join(kind_labels(profile))}; traced at depths {', '.join(map(str, profile.traced_depths))})."]
    mode = "lora" if workload.mode in ("lora", "qlora") else workload.mode
    if mode not in profile.modes:
        notes.append(f"The profile has no {mode} traces; the analytic formulas are used for it.")
        return dict(phases), tuple(notes)
    wanted = settings_for(workload)
    traced = dict(profile.settings)
    differs = [k for k in ("precision", "attention", "lora_rank", "lora_targets", "adapter_precision") if wanted.get(k) != traced.get(k)
               and (mode != "inference" or k in ("precision", "attention")) and (mode == "lora" or not k.startswith(("lora", "adapter")))]
    act_scale = 1.0
    if differs:
        notes.append("The profile was traced with " + ", ".join(f"{k}={traced.get(k)}" for k in differs) +
                     " (this workload: " + ", ".join(f"{k}={wanted.get(k)}" for k in differs) + "); its activations are used as traced.")
        if "precision" in differs:
            from .units import BITS_PER_ELEMENT

            act_scale = BITS_PER_ELEMENT[wanted["precision"]] / BITS_PER_ELEMENT[traced["precision"]]
    untraced = untraced_settings(workload)
    if untraced:
        notes.append("The trace profile covers the plain loop (" + ", ".join(f"{k}={v!r}" for k, v in untraced.items()) +
                     "); with this workload's settings the analytic formulas are used for activations.")
        return dict(phases), tuple(notes)
    b = workload.batch_size
    measured = profile.phase_bytes(mode, batch=b, tokens=workload.prompt_tokens if mode == "inference" else workload.context_length,
                                   context=workload.context_length)
    kv_scale = _kv_scale(workload, traced["precision"])
    out = dict(phases)

    def with_profile(base: Any, comp: Mapping[str, int], *, grads: bool) -> Any:
        extra = {"gradients_bytes": int(comp["gradients"] * act_scale)} if grads else {}
        return replace(base, kv_cache_bytes=int(comp["kv_cache"] * kv_scale), activations_bytes=int(comp["activations"] * act_scale),
                       logits_bytes=int(comp["logits"] * act_scale), **extra)

    if mode == "inference":
        if not out:
            return out, tuple(notes)
        template = replace(next(iter(out.values())), kv_cache_bytes=0, activations_bytes=0, logits_bytes=0)
        # The profile's phases are what the model runs (a Mamba model generates: prefill and decode,
        # where the formulas, seeing no KV layers, would size one encoder forward).
        if measured:
            out = {name: with_profile(out.get(name, template), comp, grads=False) for name, comp in measured.items()}
        if getattr(spec, "is_encoder_decoder", False):
            notes.append(f"Encoder-decoder: cross-attention K/V of the {workload.prompt_tokens:,} encoder tokens and the encoder output are "
                         f"measured; the decoder's self-attention K/V is measured at {GENERATED_TOKENS} generated tokens.")
        return out, tuple(notes)
    backward = out.pop("backward", None)
    out.pop("layer recompute", None)
    if backward is None:
        return dict(phases), tuple(notes)
    if "backward_embedding" in measured:
        out.pop(TIED_EMBEDDING_PHASE, None)  # measured: the input embedding's backward
    for name, label in TRAINING_PHASE_LABELS.items():
        if name in measured:
            out[label] = with_profile(backward, measured[name], grads=mode == "full")
    return out, tuple(notes)


# The profile's training phases (`verify.profile_trace.TRAINING_BACKWARD_PHASES`) by the estimate's
# phase label. Profiles made before the LM head and embedding were cut out of the backward have
# only "backward" and "backward_layers".
TRAINING_PHASE_LABELS: dict[str, str] = {"backward": "backward", "backward_head": "backward (LM head)", "backward_layers": "backward layers",
                                         "backward_embedding": "backward (input embedding)"}
TIED_EMBEDDING_PHASE = "backward end (tied embedding)"  # the analytic phase (estimate._training_phases)


NO_PROFILE_NOTE = (
    "This architecture is counted from transformers' inventory, but its activations, KV cache / state and logits come from the "
    "analytic formulas of a Llama-like decoder: a guess for it. A trace profile measures them from transformers' own code "
    f"(`python -m calculator profile <model>`, or the app's first view of the model; needs torch + transformers: {INSTALL_HINT})."
)


def with_cached_profile(spec: Any) -> Any:
    """`spec` with the profile already made for its config (local cache or shipped), if any; never traces."""
    from dataclasses import replace

    if getattr(spec, "profile", None) is not None or not spec.raw_config:
        return spec
    hit = cached_profile(spec.raw_config)
    return replace(spec, profile=hit) if hit is not None else spec


def with_profile(spec: Any, workload: Any = None, *, max_seconds: float = DEFAULT_SECONDS,
                 on_progress: Callable[[str], None] | None = None) -> Any:
    """`spec` with its profile for `workload`'s settings: cached, shipped, or traced now (torch)."""
    from dataclasses import replace

    settings = settings_for(workload) if workload is not None else default_settings()
    current = getattr(spec, "profile", None)
    if current is not None and dict(current.settings) == settings:
        return spec
    return replace(spec, profile=get_profile(spec.raw_config, settings, max_seconds=max_seconds, on_progress=on_progress))


def counted_from(spec: Any) -> str:
    """Which path the numbers came from, for the "Counted from" line."""
    source = getattr(spec, "param_source", "config")
    parts = ["transformers inventory" if source == "inventory" else "analytic formulas"]
    if source == "inventory" and any(n.startswith("Counted from the inventory shipped") for n in getattr(spec, "notes", ())):
        parts[0] += " (shipped)"
    profile = getattr(spec, "profile", None)
    if profile is not None:
        parts.append("trace profile (shipped)" if profile.source else "trace profile")
    return " + ".join(parts)
