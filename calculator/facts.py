"""Model facts as a model page shows them: task, model type, downloads, likes, last update, license,
gated, and the commit the numbers were computed from.

Two sources: the Hub's `model_info` answer (`calculator.hub.fetch_model_facts` reads it; this module
only validates what came back, so it stays network-free), and the dated copies in the bundled
catalog (`catalog.json` `facts`), for offline use. Every fact is optional: a fact nobody could
source is left out, never guessed. `as_of` says when the facts were taken.

Everything here comes from outside (a Hub response, a JSON file), so each field is checked and
bounded before it is kept: a wrong type or an absurd value drops that one fact.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Literal

from .units import format_count

FactsSource = Literal["hub", "catalog"]

_MAX_TEXT = 64  # pipeline tags, model types and license ids are short identifiers on the Hub
_TEXT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # "text-to-speech", "higgs_audio_v2", "apache-2.0"
_SHA_RE = re.compile(r"[0-9a-f]{40}")
_MAX_COUNT = 10**12  # downloads and likes: no repository comes near this; larger is a broken answer


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelFacts:
    """What is known about one repository, each fact None when it was not (or could not be) sourced."""

    repo_id: str
    source: FactsSource
    # ISO date (catalog) or date-time (Hub, UTC) when the facts were taken; None for a catalog entry
    # with no dated copy (then only its config.json and the catalog's own task / gated are shown).
    as_of: str | None
    pipeline_tag: str | None = None
    model_type: str | None = None
    downloads: int | None = None  # the Hub's count of the last 30 days
    likes: int | None = None
    last_modified: str | None = None  # ISO date of the repository's last commit
    license: str | None = None
    gated: bool | None = None
    sha: str | None = None  # the commit these facts (and the estimate's config) belong to
    note: str = ""  # where a catalog copy came from

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if len(value) <= _MAX_TEXT and _TEXT_RE.fullmatch(value) else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value < _MAX_COUNT else None


def _day(value: Any) -> str | None:
    """An ISO date from a datetime, a date or an ISO string; None for anything else."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and len(value) <= 40:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).date().isoformat()
        except ValueError:
            return None
    return None


def _sha(value: Any) -> str | None:
    return value if isinstance(value, str) and _SHA_RE.fullmatch(value) else None


def _license(card_data: Any, tags: Any) -> str | None:
    """The model card's `license` field, else a `license:<id>` tag (the Hub adds one per card license)."""
    found = card_data.get("license") if isinstance(card_data, dict) else getattr(card_data, "license", None)
    if isinstance(found, list) and len(found) == 1:
        found = found[0]
    if _text(found):
        return _text(found)
    if isinstance(tags, list):
        for tag in tags[:200]:
            if isinstance(tag, str) and tag.startswith("license:") and _text(tag.removeprefix("license:")):
                return tag.removeprefix("license:")
    return None


def facts_from_model_info(info: Any, *, repo_id: str, as_of: str) -> ModelFacts:
    """The facts of a `huggingface_hub.ModelInfo` (read by attribute; anything malformed is dropped)."""
    config = getattr(info, "config", None)
    gated = getattr(info, "gated", None)
    return ModelFacts(
        repo_id=repo_id,
        source="hub",
        as_of=as_of,
        pipeline_tag=_text(getattr(info, "pipeline_tag", None)),
        model_type=_text(config.get("model_type")) if isinstance(config, dict) else None,
        downloads=_count(getattr(info, "downloads", None)),
        likes=_count(getattr(info, "likes", None)),
        last_modified=_day(getattr(info, "last_modified", None)),
        license=_license(getattr(info, "card_data", None), getattr(info, "tags", None)),
        gated=bool(gated) if isinstance(gated, bool | str) else None,  # False, or "auto" / "manual"
        sha=_sha(getattr(info, "sha", None)),
    )


def facts_from_catalog(repo_id: str, row: dict[str, Any] | None, *, model_type: str | None, gated: bool | None, task: str | None) -> ModelFacts:
    """The catalog's dated copy (`facts` of a catalog.json entry), completed with what the bundled
    config.json (model type) and the catalog entry (task, gated) say. Hub counts (downloads, likes,
    last update) are kept only from a copy that says when it was taken."""
    row = row or {}
    as_of = _day(row.get("as_of"))
    if as_of is None:
        row = {}
    return ModelFacts(
        repo_id=repo_id,
        source="catalog",
        as_of=as_of,
        pipeline_tag=_text(row.get("pipeline_tag")) or _text(task),
        model_type=_text(row.get("model_type")) or _text(model_type),
        downloads=_count(row.get("downloads")),
        likes=_count(row.get("likes")),
        last_modified=_day(row.get("last_modified")),
        license=_text(row.get("license")),
        gated=row["gated"] if isinstance(row.get("gated"), bool) else gated,
        sha=_sha(row.get("sha")),
        note=str(row.get("source", ""))[:300],
    )


@lru_cache(maxsize=1024)  # bounded: any Hub model id a visitor types is looked up here too
def catalog_model_facts(model_id: str) -> ModelFacts | None:
    """The bundled facts of a catalog model (None when the model is not in the catalog). Cached: the
    catalog ships with the code, and ModelFacts is frozen."""
    from .catalog import catalog_config, find_catalog_entry

    entry = find_catalog_entry(model_id)
    if entry is None:
        return None
    model_type = catalog_config(entry).get("model_type")
    return facts_from_catalog(entry.model_id, entry.facts, model_type=model_type if isinstance(model_type, str) else None,
                              gated=entry.gated, task=entry.task)


def compact_count(n: int) -> str:
    """Counts as model pages print them: 678, 161.6K, 2.3M."""
    for size, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(n)


def _long_date(iso_day: str) -> str:
    d = date.fromisoformat(iso_day)
    return f"{d:%b} {d.day}, {d.year}"


def facts_line(facts: ModelFacts, *, num_params: int) -> str:
    """'5.77B params · text-to-speech · higgs_audio_v2 · 161.6K downloads · 678 likes · updated May 31, 2026'."""
    parts = [f"{format_count(num_params)} params"]
    parts += [p for p in (facts.pipeline_tag, facts.model_type) if p]
    if facts.downloads is not None:
        parts.append(f"{compact_count(facts.downloads)} downloads")
    if facts.likes is not None:
        parts.append(f"{compact_count(facts.likes)} likes")
    if facts.last_modified:
        parts.append(f"updated {_long_date(facts.last_modified)}")
    if facts.license:
        parts.append(f"license {facts.license}")
    if facts.gated:
        parts.append("gated")
    return " · ".join(parts)


def facts_provenance(facts: ModelFacts) -> str:
    """When and where the facts were taken, for the line under them."""
    day = _day(facts.as_of)
    rev = f" at commit {facts.sha[:12]}" if facts.sha else ""
    if facts.source == "hub":
        return f"From the Hugging Face Hub (model_info{rev}), read {_long_date(day) if day else 'now'}."
    missing = [name for name, v in (("downloads", facts.downloads), ("likes", facts.likes), ("last update", facts.last_modified),
                                    ("license", facts.license)) if v is None]
    gap = f" Not bundled for this model: {', '.join(missing)}." if missing else ""
    if day is None:
        return f"From the bundled catalog and its config.json (the Hub was not asked).{gap}"
    return f"Bundled copy taken {_long_date(day)}{' (' + facts.note + ')' if facts.note else ''}; the Hub was not asked.{gap}"
