"""The bundled catalog: real `config.json` files and exact parameter counts shipped with the
package, so the app's default page and every test work with no network.

Data lives in `calculator/data/models/`: one folder per model with its `config.json`, and
`catalog.json` with exact counts and the source of every file (see `SOURCES.md` there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

DATA_PACKAGE = "calculator.data.models"


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogEntry:
    model_id: str
    dir: str
    task: str
    num_params: int | None
    weight_bytes: int | None
    params_source: str
    config_source: str
    gated: bool = False
    aliases: tuple[str, ...] = ()
    # A dated copy of the model's Hub facts (`calculator.facts`), when one could be sourced.
    facts: dict[str, Any] | None = None


@cache
def catalog_entries() -> dict[str, CatalogEntry]:
    """All catalog entries by model id (case as on the Hub)."""
    raw = json.loads(resources.files(DATA_PACKAGE).joinpath("catalog.json").read_text(encoding="utf-8"))
    entries = {}
    for model_id, row in raw["models"].items():
        entries[model_id] = CatalogEntry(
            model_id=model_id,
            dir=row["dir"],
            task=row.get("task", "text-generation"),
            num_params=row.get("num_params"),
            weight_bytes=row.get("weight_bytes"),
            params_source=row.get("params_source", ""),
            config_source=row.get("config_source", ""),
            gated=bool(row.get("gated", False)),
            aliases=tuple(row.get("aliases", ())),
            facts=row.get("facts") if isinstance(row.get("facts"), dict) else None,
        )
    return entries


def catalog_model_ids() -> list[str]:
    return sorted(catalog_entries(), key=str.lower)


def find_catalog_entry(model_id: str) -> CatalogEntry | None:
    """Look up a model id case-insensitively, also by alias (`bert-base-uncased`)."""
    wanted = model_id.strip().lower()
    for entry in catalog_entries().values():
        if entry.model_id.lower() == wanted or wanted in (a.lower() for a in entry.aliases):
            return entry
    return None


@cache
def _config_text(dir_name: str) -> str:
    return resources.files(DATA_PACKAGE).joinpath(dir_name, "config.json").read_text(encoding="utf-8")


def catalog_config(entry: CatalogEntry) -> dict[str, Any]:
    """A fresh copy of the entry's parsed config.json."""
    return json.loads(_config_text(entry.dir))
