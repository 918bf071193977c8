"""The Compare page's pure parts: which catalog models are "similar", and the comparison rows."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from calculator.catalog import catalog_model_ids, find_catalog_entry
from calculator.errors import CalculatorError
from calculator.estimate import Estimate
from calculator.pricing import GPUConfiguration
from calculator.resolve import resolve_catalog
from calculator.spec import ModelSpec

# Setting strings on the Compare page: "precision/mode", e.g. "int4/qlora".
DEFAULT_SETTINGS: tuple[str, ...] = ("fp16/inference", "int8/inference", "int4/inference", "fp16/lora", "int4/qlora", "bf16/full")
SETTING_CHOICES: tuple[str, ...] = tuple(
    f"{p}/{m}"
    for p in ("fp32", "bf16", "fp16", "fp8", "int8", "int4")
    for m in ("inference", "lora", "qlora", "full")
    if not (m == "qlora" and p not in ("int8", "int4")) and not (m == "full" and p in ("fp8", "int8", "int4"))
)


def setting_problem(value: str) -> str:
    return "" if value in SETTING_CHOICES else f"{value!r} is not precision/mode (e.g. int4/qlora)"


def family(spec: ModelSpec) -> str:
    """The model family as a person would say it: the config's model_type, or the repo's name stem."""
    return spec.model_type or spec.model_id.split("/")[-1].split("-")[0].lower()


def similar_models(spec: ModelSpec, candidates: Sequence[ModelSpec], *, limit: int = 5, exclude: Sequence[str] = (),
                   task_of: Callable[[str], str | None] | None = None) -> list[ModelSpec]:
    """Catalog models like `spec`: the same family first, then the same task (`task_of(model_id)`,
    e.g. the catalog's pipeline task), then the closest in parameter count (distance =
    |log(params ratio)|, so 2x larger and 2x smaller are equally far)."""
    skip = {spec.model_id.lower(), *(e.lower() for e in exclude)}
    base = max(spec.num_params, 1)
    task = task_of(spec.model_id) if task_of else None

    def key(c: ModelSpec) -> tuple[int, int, float, str]:
        same_task = task is not None and task_of is not None and task_of(c.model_id) == task
        return (0 if family(c) == family(spec) else 1, 0 if same_task else 1, abs(math.log(max(c.num_params, 1) / base)), c.model_id.lower())

    return sorted((c for c in candidates if c.model_id.lower() not in skip), key=key)[:limit]


@cache
def catalog_specs() -> tuple[ModelSpec, ...]:
    """Every bundled catalog model's spec (read once per process: the catalog ships with the code and
    is the same for every user). A catalog entry that does not resolve is left out."""
    specs = []
    for model_id in catalog_model_ids():
        try:
            found = resolve_catalog(model_id)
        except CalculatorError:
            continue
        if found is not None:
            specs.append(found.spec)
    return tuple(specs)


@lru_cache(maxsize=1024)  # bounded: the id of any Hub model a visitor types is asked too
def catalog_task(model_id: str) -> str | None:
    """The catalog's task of a model ("text-generation", "text-to-speech", ...); None outside the catalog.
    Cached per id (bundled data): ranking the catalog asks it for every candidate on every rerun."""
    entry = find_catalog_entry(model_id)
    return entry.task if entry else None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompareRow:
    label: str
    estimate: Estimate
    cheapest: GPUConfiguration | None
