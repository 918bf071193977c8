"""Cached loaders: the Hub lookup, the price book, and the numbers one view needs.

`st.cache_data` wraps I/O (`resolve_model`, live prices) and the per-view computations. These
caches are shared by every session of the server, so each key holds everything that determines
the answer: the lookup is keyed by the typed reference and a fingerprint of the token (a hash,
never the token itself), the views by `spec_key` (model id, revision, resolved commit, source and a
hash of the whole spec and its config) plus the workload. Errors are not cached, so a failed lookup
is retried on the next rerun. The Hugging Face token is read here, passed to the library and never
shown or logged.

Tests mock at this boundary: patch `ui.loaders.resolve_model` to raise a `CalculatorError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from calculator import advisor, report
from calculator.errors import InvalidWorkloadError
from calculator.facts import ModelFacts
from calculator.gpus import GPU, load_gpus, with_extra_gpus
from calculator.pricing import PriceBook, apply_price_overrides, bundled_price_book, fetch_live_prices, load_prices, price_book
from calculator.resolve import ResolvedModel, resolve_model
from calculator.spec import ModelSpec
from calculator.workload import Workload

HUB_TTL_S = 3600  # a model's config and counts rarely change; an hour keeps the Hub quiet
LIVE_PRICES_TTL_S = 3600


def hf_token() -> str | None:
    """HF_TOKEN from the environment, else from `.streamlit/secrets.toml`; None when neither exists."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        value = st.secrets.get("HF_TOKEN")
    except Exception:  # no secrets.toml (FileNotFoundError / StreamlitSecretNotFoundError) or a broken one: no token
        return None
    return str(value) if value else None


def resolve_for_app(ref: str, *, token: str | None) -> ResolvedModel:
    """`resolve_model` for a web page: never reads a local directory named by the user."""
    return resolve_model(ref.strip(), token=token, allow_local=False)


@st.cache_data(ttl=HUB_TTL_S, max_entries=256, show_spinner=False)
def _resolve_cached(ref: str, token_id: str | None) -> ResolvedModel:
    # `token_id` only keys the cache: a different token (or none) never gets another token's result.
    return resolve_for_app(ref, token=hf_token())


def resolve(ref: str) -> ResolvedModel:
    """The model for `ref` (catalog first, then the Hub), cached for an hour. Raises CalculatorError."""
    from calculator.hub import token_fingerprint

    return _resolve_cached(ref.strip(), token_fingerprint(hf_token()))


def spec_key(resolved: ResolvedModel) -> str:
    """What identifies a spec for the caches below (the spec itself holds a dict): model id,
    revision and resolved commit, source, and a SHA-256 of every spec field (exact counts, shapes,
    layer types, quantization) and of the config it was read from. Two revisions of one repo, or one
    repo seen through two tokens, never share an entry unless their configs and counts are equal."""
    s = resolved.spec
    digest = hashlib.sha256(repr(s).encode())  # every field but raw_config (repr=False)
    digest.update(json.dumps(s.raw_config, sort_keys=True, default=str).encode())
    return f"{s.model_id}@{resolved.revision or ''}:{resolved.sha or ''}|{resolved.source}|{digest.hexdigest()[:32]}"


@st.cache_data(ttl=HUB_TTL_S, max_entries=256, show_spinner=False)
def _hub_facts(repo_id: str, sha: str | None, token_id: str | None) -> ModelFacts | None:
    # Keyed by the commit the estimate was read at and the token's fingerprint (a gated repo's facts
    # are read with the token); None (Hub unreachable) is cached too, so a dead Hub costs one timeout.
    from calculator.hub import fetch_model_facts

    return fetch_model_facts(repo_id, revision=sha, token=hf_token())


def model_facts(resolved: ResolvedModel) -> ModelFacts | None:
    """Task, model type, downloads, likes, ... of the resolved model: from the Hub for a model read
    from the Hub, else (or when the Hub does not answer) the catalog's dated copy."""
    from calculator.facts import catalog_model_facts
    from calculator.hub import token_fingerprint

    if resolved.source == "hub":
        live = _hub_facts(resolved.spec.model_id, resolved.sha, token_fingerprint(hf_token()))
        if live is not None:
            return live
    return catalog_model_facts(resolved.spec.model_id)


# --------------------------------------------------------------------------------------------
# Prices: bundled, live, plus the user's rates and GPUs (kept in session state by the GPUs page)
# --------------------------------------------------------------------------------------------

RATES_KEY = "shared.rates"  # "gpu_id:usd,gpu_id:usd": your negotiated $/GPU-hour (also a URL param)
EXTRA_GPUS_KEY = "shared.extra_gpus"  # list of gpus.csv-style rows you added (session only)
LIVE_KEY = "shared.live"  # use live prices (gpuhunt) instead of the bundled snapshot


def parse_rates(text: str, *, known: Sequence[str] | None = None) -> tuple[dict[str, float], list[str]]:
    """'h100-sxm:2.1,rtx-4090:0.35' -> {gpu_id: usd}, with notes for the parts that were ignored."""
    ids = set(known) if known is not None else {g.id for g in load_gpus()}
    rates: dict[str, float] = {}
    notes = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        gpu_id, _, usd = part.partition(":")
        try:
            value = float(usd)
        except ValueError:
            value = float("nan")
        if gpu_id.strip() not in ids:
            notes.append(f"Your rate for {gpu_id.strip()[:40]!r} ignored: no GPU with that id.")
        elif not (0 < value < 1000):
            notes.append(f"Your rate {part[:40]!r} ignored: the price must be a number of USD per GPU-hour above 0 and below 1,000.")
        else:
            rates[gpu_id.strip()] = value
    return rates, notes


def format_rates(rates: Mapping[str, float]) -> str:
    return ",".join(f"{k}:{v:g}" for k, v in sorted(rates.items()))


def load_shared_from_url() -> list[str]:
    """Take your rates (`rates=gpu:usd,...`) and the live-price switch (`live=1`) from the URL the
    first time a page of this session sees them; return notes about ignored parts."""
    notes: list[str] = []
    if RATES_KEY not in st.session_state:
        raw = st.query_params.get("rates", "")
        known = [g.id for g in load_gpus()] + [str(r.get("id")) for r in st.session_state.get(EXTRA_GPUS_KEY) or ()]
        rates, notes = parse_rates(raw[:2000], known=known)
        notes = [f"URL parameter rates: {n}" for n in notes]
        st.session_state[RATES_KEY] = format_rates(rates)
    if LIVE_KEY not in st.session_state:
        st.session_state[LIVE_KEY] = st.query_params.get("live", "0") in ("1", "true", "yes", "on")
    return notes


def shared_url_params() -> dict[str, str]:
    """The URL parameters of the session-wide price settings (empty when they are the defaults)."""
    out = {}
    if st.session_state.get(RATES_KEY):
        out["rates"] = st.session_state[RATES_KEY]
    if st.session_state.get(LIVE_KEY):
        out["live"] = "1"
    return out


@st.cache_data(ttl=LIVE_PRICES_TTL_S, show_spinner=False)
def live_snapshot() -> Any:
    """Live prices (gpuhunt) or the bundled snapshot with a note saying why; never raises."""
    return fetch_live_prices(timeout=10.0)


@dataclass(frozen=True, slots=True)
class PriceSetup:
    gpus: tuple[GPU, ...]
    book: PriceBook
    key: str  # identifies this setup in cache keys
    note: str  # where the prices come from
    issues: tuple[str, ...]  # user rates that were ignored


def _extra_key(extra: Sequence[Mapping[str, Any]]) -> tuple:
    return tuple(tuple(sorted((str(k), str(v)) for k, v in row.items())) for row in extra)


# Where the bundled prices come from; the GPUs & prices page states the dates itself, so it shows the
# note without the pointer to itself (`BUNDLED_PRICES_POINTER`).
BUNDLED_PRICES_POINTER = "; see the GPUs & prices page for dates"
BUNDLED_PRICES_NOTE = f"Bundled price snapshot (per-provider list prices{BUNDLED_PRICES_POINTER})."


@st.cache_resource(max_entries=32, show_spinner=False)
def _price_setup(rates_text: str, extra: tuple, live: bool) -> PriceSetup:
    issues: list[str] = []
    gpus = load_gpus()
    if extra:
        try:
            gpus = with_extra_gpus([dict(row) for row in extra])
        except InvalidWorkloadError as exc:
            issues.append(f"Your added GPUs were ignored: {exc}")
    snapshot = live_snapshot() if live else None
    rows = snapshot.rows if snapshot is not None else load_prices()
    note = snapshot.note if snapshot is not None else BUNDLED_PRICES_NOTE
    rates, rate_notes = parse_rates(rates_text, known=[g.id for g in gpus])
    issues += rate_notes
    if rates:
        rows = apply_price_overrides(rows, rates, gpus=gpus)
        note += f" Your rates for {len(rates)} GPU(s) are included."
    book = bundled_price_book() if snapshot is None and not rates else price_book(rows)
    return PriceSetup(gpus=gpus, book=book, key=f"{rates_text}|{hash(extra)}|{live}", note=note, issues=tuple(issues))


def price_setup() -> PriceSetup:
    """The GPUs and prices every page ranks with, from this session's rates, GPUs and live toggle."""
    return _price_setup(
        st.session_state.get(RATES_KEY, "") or "",
        _extra_key(st.session_state.get(EXTRA_GPUS_KEY) or ()),
        bool(st.session_state.get(LIVE_KEY, False)),
    )


# --------------------------------------------------------------------------------------------
# Per-view computations (pure library calls, cached by key)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class View:
    plan: report.Plan
    table: list[dict[str, Any]]
    sweep: list[tuple[int, int]]
    export: dict[str, Any]


@st.cache_data(max_entries=512, show_spinner=False)
def _view(spec_id: str, workload_key: str, headroom_pct: int, prices_key: str, _spec: ModelSpec, _w: Workload, _prices: PriceSetup) -> View:
    plan = report.build_plan(_spec, _w, headroom_fraction=headroom_pct / 100, prices=_prices.book, gpus=_prices.gpus)
    table = report.precision_mode_table(_spec, _w)
    sweep = report.context_sweep(_spec, _w, max_tokens=max(_spec.max_position_embeddings, _w.context_length))
    return View(plan=plan, table=table, sweep=sweep, export=report.estimate_to_dict(plan))


def view(resolved: ResolvedModel, w: Workload, *, headroom_pct: int, prices: PriceSetup) -> View:
    """Plan, precision x mode table, context sweep and export dict for one model and workload."""
    return _view(spec_key(resolved), repr(w), headroom_pct, prices.key, resolved.spec, w, prices)


@st.cache_data(max_entries=256, show_spinner=False)
def _fit(spec_id: str, workload_key: str, usable_bytes: int, count: int, headroom_pct: int, _spec: ModelSpec, _w: Workload) -> tuple[list, list]:
    h = headroom_pct / 100
    on = advisor.on_gpus(_w, count)
    limits = advisor.fit_limits(_spec, _w, usable_bytes=usable_bytes, num_gpus=count, headroom_fraction=h)
    changes = advisor.suggest_changes(_spec, on, usable_bytes=usable_bytes, headroom_fraction=h)
    return limits, changes


def fit_on_gpu(resolved: ResolvedModel, w: Workload, gpu: GPU, count: int, *, headroom_pct: int) -> tuple[list[advisor.FitLimits], list[advisor.Change]]:
    """The reverse question for `count` x `gpu`: limits per precision x mode, and changes that make `w` fit."""
    return _fit(spec_key(resolved), repr(w), gpu.usable_bytes, count, headroom_pct, resolved.spec, w)
