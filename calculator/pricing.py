"""Hourly GPU prices: the bundled snapshot, the "current" price rule, user rates and live prices.

`calculator/data/gpus/prices.csv` holds one row per (provider, GPU, instance shape) offer from
several snapshots (SkyPilot catalogs v7 and v8, dated provider pages, blog posts); `SOURCES.md`
next to it says where every row comes from. The same provider often appears several times for
one GPU, so `current_prices` keeps one price per provider, GPU and shape:

1. SkyPilot v7 rows are dropped for a (provider, GPU) that has any newer row (v8 or dated).
2. For each shape, the best tier wins: `high`-confidence dated rows (latest `as_of` first), then
   SkyPilot v8 rows, then other dated rows (latest first), then v7. Within the tier's latest
   date the lowest price wins (regions and hosts of one provider differ).

Three generic ids name offers whose source does not state the form factor (`a100-40gb`,
`a100-80gb`, `h100-80gb`). Memory is the same for both forms, so they are priced as the PCIe
card, the slower of the two (a conservative throughput estimate; no NVLink assumed).

Live prices (`fetch_live_prices`) come from dstack's `gpuhunt` catalog when it is installed and
reachable; otherwise the bundled snapshot is returned with a note saying so and how old it is.
gpuhunt (MPL-2.0, depends only on requests + typing-extensions) publishes provider catalogs as
zipped CSVs on S3 (`GPUHUNT_CATALOG_URL`); only that download is used (no provider SDKs, no API
keys, no online providers). Its `urlopen` calls have no timeout, so the fetch runs in a worker
thread that is abandoned after `timeout` seconds. This is the only function here that touches
the network, and it imports gpuhunt inside the function.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import io
import json
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .bounds import MAX_HEADROOM_FRACTION
from .errors import InvalidWorkloadError
from .gpus import GPU, interconnect_note, load_gpus, precision_support

DATA_PACKAGE = "calculator.data"
PRICES_FILE = "gpus/prices.csv"

# Generic ids in prices.csv (SOURCES.md, "Columns": the source does not state PCIe or SXM) and
# the gpus.csv row they are priced as: the PCIe card, the slower form (lower bandwidth, bridge
# NVLink at most), so throughput and interconnect notes never overstate what was rented.
GENERIC_GPU_IDS: dict[str, str] = {
    "a100-40gb": "a100-40gb-pcie",
    "a100-80gb": "a100-80gb-pcie",
    "h100-80gb": "h100-pcie",
}
# Both forms each generic id could be, for display ("A100 80GB, PCIe or SXM").
GENERIC_GPU_VARIANTS: dict[str, tuple[str, str]] = {
    "a100-40gb": ("a100-40gb-pcie", "a100-40gb-sxm"),
    "a100-80gb": ("a100-80gb-pcie", "a100-80gb-sxm"),
    "h100-80gb": ("h100-pcie", "h100-sxm"),
}

USER_PROVIDER = "Your rate"
PriceSource = Literal["live", "bundled", "cache"]
# How long a live fetch is reused before asking again. Provider list prices change weekly at
# most (SOURCES.md: Lambda's v7 -> v8 change spans months); gpuhunt itself reloads every 15 min
# (gpuhunt 0.1.34 `RELOAD_INTERVAL`) because it also serves spot offers, which we do not use.
LIVE_CACHE_MAX_AGE_S = 6 * 3600
CACHE_ENV = "VRAM_CALC_CACHE"
CACHE_FILE = "live_prices.json"
CACHE_FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceRow:
    """One priced offer, as in prices.csv. `gpu_id` may be generic (see GENERIC_GPU_IDS)."""

    provider: str
    gpu_id: str
    gpu: str = ""
    gpus_per_instance: int = 1
    usd_per_gpu_hour: float
    as_of: str = ""  # ISO date, YYYY-MM or YYYY; empty for undated catalog rows
    source: str = ""
    instance: str = ""
    instance_usd_hour: float | None = None
    pricing: str = "on-demand"
    snapshot: str = ""  # "SkyPilot catalog v8 (undated snapshot)" etc.
    confidence: str = "medium"
    notes: str = ""

    @property
    def snapshot_version(self) -> str:
        """'v7' or 'v8' for SkyPilot catalog rows, '' for dated rows."""
        for version in ("v7", "v8"):
            if f" {version} " in f" {self.snapshot} ":
                return version
        return ""

    @property
    def resolved_gpu_id(self) -> str:
        return GENERIC_GPU_IDS.get(self.gpu_id, self.gpu_id)

    @property
    def form_factor_stated(self) -> bool:
        return self.gpu_id not in GENERIC_GPU_IDS


def _date_key(as_of: str) -> tuple[int, int, int]:
    """'2026-09-25' -> (2026, 9, 25); '2026-03' -> (2026, 3, 0); '2026' -> (2026, 0, 0); '' -> (0, 0, 0)."""
    parts = [int(p) for p in as_of.strip().split("-") if p.isdigit()][:3] if as_of else []
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def _opt_float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def parse_prices_csv(text: str) -> tuple[PriceRow, ...]:
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        rows.append(
            PriceRow(
                provider=raw["provider"],
                gpu_id=raw["gpu_id"],
                gpu=raw.get("gpu", ""),
                gpus_per_instance=int(raw["gpus_per_instance"]),
                usd_per_gpu_hour=float(raw["usd_per_gpu_hour"]),
                as_of=raw.get("as_of", "") or "",
                source=raw.get("source", "") or "",
                instance=raw.get("instance", "") or "",
                instance_usd_hour=_opt_float(raw.get("instance_usd_hour")),
                pricing=raw.get("pricing", "") or "",
                snapshot=raw.get("snapshot", "") or "",
                confidence=raw.get("confidence", "") or "medium",
                notes=raw.get("notes", "") or "",
            )
        )
    return tuple(rows)


@cache
def load_prices() -> tuple[PriceRow, ...]:
    """Every row of the bundled prices.csv (235 rows), read once per process."""
    text = resources.files(DATA_PACKAGE).joinpath(PRICES_FILE).read_text(encoding="utf-8")
    return parse_prices_csv(text)


def bundled_as_of(rows: Iterable[PriceRow] | None = None) -> str:
    """The latest `as_of` date in the rows (the bundled snapshot by default), e.g. '2026-11-16'."""
    dated = [r.as_of for r in (load_prices() if rows is None else rows) if r.as_of]
    return max(dated, key=_date_key) if dated else ""


# --------------------------------------------------------------------------------------------
# Current price per provider, GPU and shape
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceQuote:
    """The current price of one provider for one GPU in one instance shape."""

    provider: str
    gpu_id: str  # resolved to a gpus.csv id
    listed_gpu_id: str  # as in the price row (may be generic)
    gpus_per_instance: int
    usd_per_gpu_hour: float
    as_of: str
    basis: str  # which tier of the current-price rule chose it
    confidence: str
    pricing: str
    instance: str = ""
    source: str = ""
    note: str = ""


def _tier(row: PriceRow) -> int:
    version = row.snapshot_version
    if row.as_of and not version and row.confidence == "high":
        return 0
    if version == "v8":
        return 1
    if row.as_of and not version:
        return 2
    return 3  # v7, or undated rows of unknown origin


_BASIS = {0: "latest dated list price (high confidence)", 1: "SkyPilot catalog v8 (undated)", 2: "latest dated price", 3: "SkyPilot catalog v7 (older)"}


def current_prices(rows: Iterable[PriceRow] | None = None) -> tuple[PriceQuote, ...]:
    """One quote per (provider, GPU, shape), chosen by the rule in the module docstring."""
    rows = load_prices() if rows is None else rows
    groups: dict[tuple[str, str], list[PriceRow]] = defaultdict(list)
    for row in rows:
        if row.usd_per_gpu_hour > 0 and math.isfinite(row.usd_per_gpu_hour):
            groups[(row.provider, row.resolved_gpu_id)].append(row)
    quotes = []
    for (provider, gpu_id), group in groups.items():
        if any(_tier(r) < 3 for r in group):
            group = [r for r in group if _tier(r) < 3]
        by_shape: dict[int, list[PriceRow]] = defaultdict(list)
        for row in group:
            by_shape[row.gpus_per_instance].append(row)
        for shape, shape_rows in by_shape.items():
            best_tier = min(_tier(r) for r in shape_rows)
            tier_rows = [r for r in shape_rows if _tier(r) == best_tier]
            latest = max(_date_key(r.as_of) for r in tier_rows)
            tier_rows = [r for r in tier_rows if _date_key(r.as_of) == latest]
            best = min(tier_rows, key=lambda r: (r.usd_per_gpu_hour, not r.form_factor_stated))
            notes = []
            if not best.form_factor_stated:
                pcie, sxm = GENERIC_GPU_VARIANTS[best.gpu_id]
                notes.append(f"form factor not stated by the source; counted as {pcie} (could be {sxm})")
            if best.confidence == "low":
                notes.append("low confidence: " + (best.notes or best.pricing))
            quotes.append(
                PriceQuote(
                    provider=provider,
                    gpu_id=gpu_id,
                    listed_gpu_id=best.gpu_id,
                    gpus_per_instance=shape,
                    usd_per_gpu_hour=best.usd_per_gpu_hour,
                    as_of=best.as_of or (f"undated ({best.snapshot_version} snapshot)" if best.snapshot_version else "undated"),
                    basis=_BASIS[best_tier] if best.provider != USER_PROVIDER else "your rate",
                    confidence=best.confidence,
                    pricing=best.pricing,
                    instance=best.instance,
                    source=best.source,
                    note="; ".join(notes),
                )
            )
    quotes.sort(key=lambda q: (q.gpu_id, q.usd_per_gpu_hour, q.provider, q.gpus_per_instance))
    return tuple(quotes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    """What `count` GPUs cost at one provider: the best shape for that count."""

    provider: str
    gpu_id: str
    count: int
    usd_per_gpu_hour: float  # effective: total / count
    total_usd_per_hour: float
    quote: PriceQuote
    note: str = ""


def offer_for_count(quotes: Sequence[PriceQuote], count: int) -> Offer | None:
    """The cheapest way to get `count` GPUs from one provider's quotes (all one GPU kind).

    A listed shape of exactly `count` GPUs wins (it is the real offer). Otherwise a shape of k
    GPUs costs price x max(count, k): smaller shapes are assumed to scale at their per-GPU rate
    (providers such as RunPod rent 1-8 GPUs per machine while catalogs list a few sizes), a
    bigger shape is paid whole; the cheaper total wins.
    """
    exact = [q for q in quotes if q.gpus_per_instance == count]
    candidates = exact or list(quotes)
    if not candidates:
        return None
    quote = min(candidates, key=lambda q: (q.usd_per_gpu_hour * max(count, q.gpus_per_instance), q.gpus_per_instance))
    total = quote.usd_per_gpu_hour * max(count, quote.gpus_per_instance)
    note = ""
    if quote.gpus_per_instance > count:
        note = f"sold as {quote.gpus_per_instance}-GPU {quote.instance or 'instances'}: you pay for {quote.gpus_per_instance}"
    elif quote.gpus_per_instance < count:
        note = f"scaled from a {quote.gpus_per_instance}-GPU listing at the same per-GPU rate"
    return Offer(
        provider=quote.provider, gpu_id=quote.gpu_id, count=count, usd_per_gpu_hour=total / count,
        total_usd_per_hour=total, quote=quote, note=note,
    )


@dataclass(frozen=True, slots=True)
class PriceBook:
    """Current quotes indexed by GPU, with per-count offers memoized (the ranking reads it per rerun)."""

    quotes: tuple[PriceQuote, ...]
    by_gpu: Mapping[str, Mapping[str, tuple[PriceQuote, ...]]] = field(repr=False)
    _offers: dict[tuple[str, int], tuple[Offer, ...]] = field(default_factory=dict, repr=False, compare=False)

    def offers(self, gpu_id: str, count: int) -> tuple[Offer, ...]:
        """One offer per provider for `count` GPUs, cheapest total first."""
        key = (gpu_id, count)
        cached = self._offers.get(key)
        if cached is None:
            found = (offer_for_count(q, count) for q in self.by_gpu.get(gpu_id, {}).values())
            cached = tuple(sorted((o for o in found if o is not None), key=lambda o: (o.total_usd_per_hour, o.provider)))
            self._offers[key] = cached
        return cached

    @property
    def gpu_ids(self) -> frozenset[str]:
        return frozenset(self.by_gpu)


def price_book(rows: Iterable[PriceRow] | None = None) -> PriceBook:
    """Build a `PriceBook` from price rows (the bundled ones by default; that one is cached)."""
    if rows is None:
        return bundled_price_book()
    return _build_book(current_prices(rows))


@cache
def bundled_price_book() -> PriceBook:
    return _build_book(current_prices(load_prices()))


def _build_book(quotes: tuple[PriceQuote, ...]) -> PriceBook:
    nested: dict[str, dict[str, list[PriceQuote]]] = defaultdict(lambda: defaultdict(list))
    for quote in quotes:
        nested[quote.gpu_id][quote.provider].append(quote)
    by_gpu = {gpu: {prov: tuple(qs) for prov, qs in provs.items()} for gpu, provs in nested.items()}
    return PriceBook(quotes=quotes, by_gpu=by_gpu)


# --------------------------------------------------------------------------------------------
# User rates and data checks
# --------------------------------------------------------------------------------------------


def apply_price_overrides(
    prices: Iterable[PriceRow] | None,
    overrides: Mapping[str, float],
    *,
    provider: str = USER_PROVIDER,
    replace_others: bool = False,
    as_of: str | None = None,
    gpus: Sequence[GPU] | None = None,
) -> tuple[PriceRow, ...]:
    """Add the user's own (negotiated) $/GPU-hour per GPU id as a provider named `provider`.

    With `replace_others=True` the other providers' rows for those GPUs are dropped, so the
    ranking uses only your rate for them. Unknown GPU ids and non-positive prices raise
    `InvalidWorkloadError`. Returns new rows; the input is not changed.
    """
    rows = list(load_prices() if prices is None else prices)
    known = {g.id for g in (load_gpus() if gpus is None else gpus)} | set(GENERIC_GPU_IDS)
    stamp = as_of or date.today().isoformat()
    added = []
    for gpu_id, usd in overrides.items():
        if gpu_id not in known:
            raise InvalidWorkloadError(f"Your rate names GPU {gpu_id!r}, which is not in the GPU table. Known ids: {', '.join(sorted(known))}.")
        if isinstance(usd, bool) or not isinstance(usd, int | float) or not math.isfinite(usd) or usd <= 0:
            raise InvalidWorkloadError(f"Your rate for {gpu_id} must be a positive number of USD per GPU-hour; got {usd!r}.")
        added.append(
            PriceRow(
                provider=provider, gpu_id=gpu_id, gpu=gpu_id, gpus_per_instance=1, usd_per_gpu_hour=float(usd), as_of=stamp,
                source="entered by you", pricing="negotiated (your rate)", confidence="high",
            )
        )
    if replace_others:
        replaced = {GENERIC_GPU_IDS.get(g, g) for g in overrides}
        rows = [r for r in rows if r.resolved_gpu_id not in replaced]
    return tuple(rows) + tuple(added)


def data_issues(gpus: Sequence[GPU] | None = None, prices: Iterable[PriceRow] | None = None) -> list[str]:
    """Problems in the tables, as sentences the app can show; nothing is dropped silently.

    Reports price rows naming a GPU that the GPU table lacks (they are not ranked), GPUs with no
    price (ranked after priced ones), GPUs whose usable memory is estimated, and rows priced
    under a generic id.
    """
    gpus = load_gpus() if gpus is None else gpus
    rows = list(load_prices() if prices is None else prices)
    known = {g.id for g in gpus}
    issues: list[str] = []
    orphans: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.resolved_gpu_id not in known:
            orphans[row.gpu_id].add(row.provider)
    for gpu_id in sorted(orphans):
        count = sum(1 for r in rows if r.gpu_id == gpu_id)
        issues.append(
            f"{count} price row(s) name GPU {gpu_id!r} ({', '.join(sorted(orphans[gpu_id]))}), which the GPU table lacks: "
            "they are not ranked. Add the GPU (with_extra_gpus) to rank them."
        )
    priced = {r.resolved_gpu_id for r in rows}
    for gpu in gpus:
        if gpu.id not in priced:
            issues.append(f"No price for {gpu.name} ({gpu.id}): it is ranked after the priced GPUs. Enter your rate to rank it by cost.")
    for gpu in gpus:
        if gpu.usable_is_estimate:
            issues.append(f"{gpu.name} ({gpu.id}): {gpu.usable_note}.")
    generic = [r for r in rows if not r.form_factor_stated]
    if generic:
        ids = ", ".join(sorted({r.gpu_id for r in generic}))
        issues.append(f"{len(generic)} price row(s) do not state the form factor ({ids}); they are priced as the PCIe card.")
    return issues


# --------------------------------------------------------------------------------------------
# Live prices (optional gpuhunt) with an on-disk cache and the bundled fallback
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceSnapshot:
    """Price rows and where they came from, for the app's "prices as of ..." line."""

    rows: tuple[PriceRow, ...]
    source: PriceSource
    fetched_at: datetime | None  # when live rows were fetched (UTC); None for the bundled snapshot
    note: str
    unmapped_gpus: tuple[str, ...] = ()


# gpuhunt's offline providers (gpuhunt 0.1.34 `OFFLINE_PROVIDERS`) and their display names here.
GPUHUNT_PROVIDERS: dict[str, str] = {
    "aws": "AWS",
    "azure": "Azure",
    "verda": "Verda (DataCrunch)",
    "gcp": "GCP",
    "lambdalabs": "Lambda",
    "nebius": "Nebius",
    "oci": "OCI",
    "runpod": "RunPod",
    "cloudrift": "CloudRift",
}
# gpuhunt GPU names (gpuhunt 0.1.34 `KNOWN_NVIDIA_GPUS` / `KNOWN_AMD_GPUS` /
# `KNOWN_INTEL_ACCELERATORS`) -> gpus.csv id, keyed by (name, memory GiB) where a name has
# several sizes. gpuhunt's "H100" and "A100" do not say PCIe or SXM: generic ids.
GPUHUNT_NAMES: dict[tuple[str, int | None], str] = {
    ("T4", None): "t4",
    ("V100", 16): "v100-16gb",
    ("V100", 32): "v100-32gb",
    ("A10", None): "a10",
    ("A10G", None): "a10g",
    ("A40", None): "a40",
    ("A100", 40): "a100-40gb",
    ("A100", 80): "a100-80gb",
    ("H100", 80): "h100-80gb",
    ("H100NVL", None): "h100-nvl",
    ("H200", None): "h200",
    ("H200NVL", None): "h200",
    ("B200", None): "b200",
    ("GB200", None): "gb200",
    ("L4", None): "l4",
    ("L40", None): "l40",
    ("L40S", None): "l40s",
    ("A4000", None): "rtx-a4000",
    ("A5000", None): "rtx-a5000",
    ("A6000", None): "rtx-a6000",
    ("RTX6000Ada", None): "rtx-6000-ada",
    ("RTXPRO6000", None): "rtx-pro-6000-blackwell",
    ("RTX3060", 12): "rtx-3060-12gb",
    ("RTX3090", None): "rtx-3090",
    ("RTX3090Ti", None): "rtx-3090-ti",
    ("RTX4060Ti", 16): "rtx-4060-ti-16gb",
    ("RTX4070TiSUPER", None): "rtx-4070-ti-super",
    ("RTX4080", None): "rtx-4080",
    ("RTX4090", None): "rtx-4090",
    ("RTX5080", None): "rtx-5080",
    ("RTX5090", None): "rtx-5090",
    ("MI250", None): "mi250",
    ("MI300X", None): "mi300x",
    ("MI325X", None): "mi325x",
    ("MI355X", None): "mi355x",
    ("Gaudi2", None): "gaudi2",
    ("Gaudi3", None): "gaudi3",
}


def gpuhunt_gpu_id(name: str | None, memory_gib: float | None) -> str | None:
    """Our id for a gpuhunt GPU name and per-GPU memory, or None when we have no such GPU."""
    if not name:
        return None
    if memory_gib is not None:
        exact = GPUHUNT_NAMES.get((name, round(memory_gib)))
        if exact:
            return exact
    return GPUHUNT_NAMES.get((name, None))


def rows_from_gpuhunt(items: Iterable[Any], *, fetched_at: datetime, version: str = "") -> tuple[tuple[PriceRow, ...], tuple[str, ...]]:
    """On-demand gpuhunt `CatalogItem`s -> price rows, plus the GPU names we could not map."""
    rows: list[PriceRow] = []
    unmapped: set[str] = set()
    stamp = fetched_at.date().isoformat()
    for item in items:
        count = int(getattr(item, "gpu_count", 0) or 0)
        price = float(getattr(item, "price", 0) or 0)
        if count <= 0 or price <= 0 or getattr(item, "spot", False):
            continue
        name = getattr(item, "gpu_name", None)
        gpu_id = gpuhunt_gpu_id(name, getattr(item, "gpu_memory", None))
        if gpu_id is None:
            unmapped.add(f"{name} {getattr(item, 'gpu_memory', '')}GB".strip())
            continue
        provider_key = str(getattr(item, "provider", ""))
        rows.append(
            PriceRow(
                provider=GPUHUNT_PROVIDERS.get(provider_key.lower(), provider_key),
                gpu_id=gpu_id,
                gpu=str(name),
                gpus_per_instance=count,
                usd_per_gpu_hour=price / count,
                as_of=stamp,
                source=f"gpuhunt {version} live catalog ({provider_key}, {getattr(item, 'location', '')})".replace("  ", " "),
                instance=str(getattr(item, "instance_name", "")),
                instance_usd_hour=price,
                pricing="on-demand (live catalog)",
                confidence="high",
            )
        )
    return tuple(rows), tuple(sorted(unmapped))


def cache_dir() -> Path:
    """`$VRAM_CALC_CACHE`, else ~/.cache/vram-calculator."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "vram-calculator"


def _read_cache(path: Path) -> tuple[tuple[PriceRow, ...], datetime, tuple[str, ...]] | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != CACHE_FORMAT:
            return None
        rows = tuple(PriceRow(**row) for row in raw["rows"])
        fetched_at = datetime.fromisoformat(raw["fetched_at"])
        return rows, fetched_at, tuple(raw.get("unmapped_gpus", ()))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or corrupt cache: treated as no cache


def _write_cache(path: Path, rows: Sequence[PriceRow], fetched_at: datetime, unmapped: Sequence[str]) -> None:
    payload = {"format": CACHE_FORMAT, "fetched_at": fetched_at.isoformat(), "rows": [asdict(r) for r in rows], "unmapped_gpus": list(unmapped)}
    with contextlib.suppress(OSError):  # a read-only home must not break pricing
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".live_prices.", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
        os.replace(tmp, path)


def _gpuhunt_fetch(timeout: float) -> tuple[list[Any], str]:
    """Download gpuhunt's offline-provider catalogs; raise on any failure or after `timeout` s."""
    import concurrent.futures

    import gpuhunt  # optional dependency; ImportError is handled by the caller

    try:
        version = importlib.metadata.version("gpuhunt")
    except importlib.metadata.PackageNotFoundError:  # vendored or stubbed copy
        version = ""

    def work() -> list[Any]:
        catalog = gpuhunt.Catalog(balance_resources=False, auto_reload=False)
        catalog.load()
        return list(catalog.query(provider=list(GPUHUNT_PROVIDERS), spot=False))

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpuhunt")
    try:
        return executor.submit(work).result(timeout=timeout), version
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def fetch_live_prices(
    *,
    timeout: float = 10.0,
    max_age_s: float = LIVE_CACHE_MAX_AGE_S,
    force: bool = False,
    cache_path: Path | None = None,
    now: datetime | None = None,
) -> PriceSnapshot:
    """Live on-demand prices from gpuhunt, merged over the bundled rows; never raises.

    Order: a cache younger than `max_age_s` (unless `force`); a live fetch (cached to disk);
    on failure a stale cache; else the bundled snapshot. The note says which and how old.
    Live rows are dated today with `high` confidence, so `current_prices` prefers them over the
    bundled rows of the same provider; bundled providers gpuhunt lacks keep their dated prices.
    """
    now = now or datetime.now(UTC)
    path = cache_path or cache_dir() / CACHE_FILE
    bundled = load_prices()
    cached = _read_cache(path)
    if cached and not force and 0 <= (now - cached[1]).total_seconds() < max_age_s:
        rows, fetched_at, unmapped = cached
        return PriceSnapshot(
            rows=rows + bundled, source="cache", fetched_at=fetched_at, unmapped_gpus=unmapped,
            note=f"Live prices fetched {fetched_at:%Y-%m-%d %H:%M} UTC (cached), with the bundled snapshot for other providers.",
        )
    try:
        items, version = _gpuhunt_fetch(timeout)
        live_rows, unmapped = rows_from_gpuhunt(items, fetched_at=now, version=version)
        if not live_rows:
            raise ValueError("the live catalog had no on-demand GPU offers we could map")
    except ImportError:
        reason = "live prices need the optional package gpuhunt, which is not installed"
    except Exception as exc:  # network, timeout, bad catalog: all fall back, with the reason shown
        kind = "timed out" if isinstance(exc, TimeoutError) else f"failed ({type(exc).__name__}: {exc})"
        reason = f"the live price fetch {kind}"
    else:
        _write_cache(path, live_rows, now, unmapped)
        return PriceSnapshot(
            rows=live_rows + bundled, source="live", fetched_at=now, unmapped_gpus=unmapped,
            note=f"Live prices fetched {now:%Y-%m-%d %H:%M} UTC from gpuhunt, with the bundled snapshot for other providers.",
        )
    if cached:
        rows, fetched_at, unmapped = cached
        return PriceSnapshot(
            rows=rows + bundled, source="cache", fetched_at=fetched_at, unmapped_gpus=unmapped,
            note=f"{reason[0].upper()}{reason[1:]}; showing live prices cached {fetched_at:%Y-%m-%d %H:%M} UTC.",
        )
    return PriceSnapshot(
        rows=bundled, source="bundled", fetched_at=None,
        note=f"{reason[0].upper()}{reason[1:]}; showing the bundled price snapshot dated up to {bundled_as_of(bundled)}.",
    )


def replace_rows(snapshot: PriceSnapshot, rows: Iterable[PriceRow]) -> PriceSnapshot:
    """The same snapshot with other rows (e.g. after `apply_price_overrides`)."""
    return replace(snapshot, rows=tuple(rows))


# --------------------------------------------------------------------------------------------
# Ranking GPU configurations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GPUConfiguration:
    """`count` GPUs of one kind for a job: does it fit, and what does it cost per hour."""

    gpu: GPU
    count: int
    total_vram_bytes: int  # usable bytes x count
    per_gpu_required_bytes: int  # engine peak x (1 + headroom) + runtime reserve
    fits: bool
    reason: str  # why it does not fit, or notes (interconnect, estimates) when it does
    utilisation: float  # per_gpu_required_bytes / usable bytes
    precision_ok: bool
    precision_note: str
    tensor_parallel_ok: bool = True
    cheapest_provider: str | None = None
    usd_per_gpu_hour: float | None = None  # effective, at the cheapest provider
    total_usd_per_hour: float | None = None
    price_range: tuple[float, float] | None = None  # effective $/GPU-hour across providers
    providers_count: int = 0
    price_as_of: str = ""
    price_confidence: str = ""
    price_note: str = ""
    instance: str = ""

    @property
    def priced(self) -> bool:
        return self.total_usd_per_hour is not None


def tensor_parallel_problem(count: int, num_attention_heads: int | None, num_key_value_heads: int | None) -> str:
    """Why `count`-way tensor parallelism cannot split this model ('' when it can).

    vLLM's rule (`vllm/config` verify_with_parallel_config and the KV-head replication in
    `vllm/model_executor/layers/linear.py` QKVParallelLinear): attention heads must divide by
    the TP size; KV heads must divide by it, or the TP size must be a multiple of the KV heads
    (each KV head is then replicated on tp/kv GPUs, costing extra KV memory the engine counts).
    """
    if count <= 1:
        return ""
    if num_attention_heads is not None and num_attention_heads % count:
        return f"{num_attention_heads} attention heads do not split evenly over {count} GPUs (tensor parallel needs heads % GPUs == 0)."
    if num_key_value_heads is not None and num_key_value_heads % count and count % num_key_value_heads:
        return (
            f"{num_key_value_heads} KV heads cannot be split or replicated evenly over {count} GPUs "
            "(tensor parallel needs KV heads % GPUs == 0 or GPUs % KV heads == 0)."
        )
    return ""


def required_per_gpu_bytes(peak_bytes: int, *, headroom_fraction: float = 0.0, runtime_reserve_bytes: int = 0) -> int:
    """Engine peak x (1 + headroom) + reserve, rounded up to a whole byte."""
    return math.ceil(peak_bytes * (1 + headroom_fraction)) + runtime_reserve_bytes


def rank_configurations(
    per_gpu_bytes: Mapping[int, int],
    *,
    gpus: Sequence[GPU] | None = None,
    prices: PriceBook | Iterable[PriceRow] | None = None,
    precision: str = "fp16",
    num_attention_heads: int | None = None,
    num_key_value_heads: int | None = None,
    headroom_fraction: float = 0.0,
    runtime_reserve_bytes: int = 0,
    gpu_counts: Sequence[int] = (1, 2, 4, 8),
    tensor_parallel: bool = True,
) -> list[GPUConfiguration]:
    """Every (GPU, count) pair, fitting ones first by total $/hour, unpriced after priced.

    `per_gpu_bytes[n]` is the engine's peak memory per GPU with the job split over n GPUs;
    counts missing from it are skipped. A configuration fits when
    `per_gpu_bytes[n] * (1 + headroom_fraction) + runtime_reserve_bytes <= gpu.usable_bytes`
    (equal fits) and, with `tensor_parallel`, n splits the attention and KV heads (see
    `tensor_parallel_problem`). Precision support never excludes a GPU; it sets `precision_ok`.
    Non-fitting configurations follow, closest to fitting first.
    """
    if not math.isfinite(headroom_fraction) or not 0 <= headroom_fraction <= MAX_HEADROOM_FRACTION:
        raise InvalidWorkloadError(f"headroom must be a fraction from 0 to {MAX_HEADROOM_FRACTION:g}; got {headroom_fraction!r}.")
    if runtime_reserve_bytes < 0:
        raise InvalidWorkloadError(f"runtime reserve must be zero or more bytes; got {runtime_reserve_bytes!r}.")
    gpus = load_gpus() if gpus is None else gpus
    book = prices if isinstance(prices, PriceBook) else price_book(prices)
    configs: list[GPUConfiguration] = []
    for count in gpu_counts:
        peak = per_gpu_bytes.get(count)
        if peak is None:
            continue
        if count < 1 or peak < 0:
            raise InvalidWorkloadError(f"per-GPU memory needs a GPU count >= 1 and bytes >= 0; got {count} -> {peak}.")
        required = required_per_gpu_bytes(peak, headroom_fraction=headroom_fraction, runtime_reserve_bytes=runtime_reserve_bytes)
        tp_problem = tensor_parallel_problem(count, num_attention_heads, num_key_value_heads) if tensor_parallel else ""
        for gpu in gpus:
            configs.append(_configuration(gpu, count, required, tp_problem, precision, book))
    configs.sort(key=_rank_key)
    return configs


def _configuration(gpu: GPU, count: int, required: int, tp_problem: str, precision: str, book: PriceBook) -> GPUConfiguration:
    usable = gpu.usable_bytes
    fits_memory = required <= usable
    notes: list[str] = []
    if not fits_memory:
        over = required - usable
        notes.append(f"needs {required / 2**30:,.2f} GiB per GPU, {usable / 2**30:,.2f} GiB usable ({over / 2**30:,.2f} GiB over)")
    if tp_problem:
        notes.append(tp_problem)
    if count > 1:
        notes.append(interconnect_note(gpu, count))
    if gpu.usable_is_estimate:
        notes.append(gpu.usable_note)
    ok, precision_note = precision_support(gpu, precision)
    offers = book.offers(gpu.id, count)
    cheapest = offers[0] if offers else None
    per_gpu_prices = [o.usd_per_gpu_hour for o in offers]
    price_notes = [n for n in (cheapest.note, cheapest.quote.note) if n] if cheapest else []
    return GPUConfiguration(
        gpu=gpu,
        count=count,
        total_vram_bytes=usable * count,
        per_gpu_required_bytes=required,
        fits=fits_memory and not tp_problem,
        reason=" ".join(n if n.endswith(".") else n + "." for n in notes if n),
        utilisation=required / usable,
        precision_ok=ok,
        precision_note=precision_note,
        tensor_parallel_ok=not tp_problem,
        cheapest_provider=cheapest.provider if cheapest else None,
        usd_per_gpu_hour=cheapest.usd_per_gpu_hour if cheapest else None,
        total_usd_per_hour=cheapest.total_usd_per_hour if cheapest else None,
        price_range=(min(per_gpu_prices), max(per_gpu_prices)) if offers else None,
        providers_count=len(offers),
        price_as_of=cheapest.quote.as_of if cheapest else "",
        price_confidence=cheapest.quote.confidence if cheapest else "",
        price_note="; ".join(price_notes),
        instance=cheapest.quote.instance if cheapest else "",
    )


def _rank_key(c: GPUConfiguration) -> tuple:
    if c.fits:
        # Priced by total $/hour, then unpriced by GPU count and memory (smallest setup first).
        return (0, 0 if c.priced else 1, c.total_usd_per_hour or 0.0, c.count, c.gpu.usable_bytes, c.gpu.id)
    return (1, 0 if c.tensor_parallel_ok else 1, c.utilisation, c.count, c.gpu.id)


def cheapest_fit(configs: Sequence[GPUConfiguration], *, require_price: bool = True) -> GPUConfiguration | None:
    """The first fitting configuration of a ranked list (priced, unless `require_price=False`)."""
    for c in configs:
        if c.fits and (c.priced or not require_price):
            return c
    return None
