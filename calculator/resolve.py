"""Turn what the user typed into a `ModelSpec`: a local directory, a catalog entry, or a Hub repo.

Order: an existing local directory with `config.json`; then the bundled catalog (instant, works
offline); then the Hub through `calculator.hub` (the only networked module). Parameter counts are
exact where the checkpoint says so (safetensors headers or the catalog), else config arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from . import checkpoint
from .bounds import MAX_CONFIG_BYTES, MAX_INDEX_BYTES, MAX_MODEL_REF_CHARS, MAX_SHARDS, PLAUSIBLE_PARAMS
from .catalog import catalog_config, find_catalog_entry
from .errors import CalculatorError, MalformedConfigError, ModelNotFoundError
from .spec import ModelSpec, model_spec_from_config
from .units import SAFETENSORS_DTYPE_BITS, bytes_for_bits

ModelSource = Literal["catalog", "local", "hub", "cache"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedModel:
    spec: ModelSpec
    source: ModelSource
    detail: str  # where the config and the counts came from, for the UI
    # Hub models: the revision asked for and the commit it resolved to (None when unknown).
    revision: str | None = None
    sha: str | None = None


def weight_bytes_from_dtype_counts(counts: dict[str, int]) -> int:
    """Bytes of a checkpoint from its safetensors parameter count per dtype."""
    return sum(bytes_for_bits(n, SAFETENSORS_DTYPE_BITS.get(dtype.upper(), 16)) for dtype, n in counts.items())


def read_safetensors_counts(directory: Path) -> dict[str, int] | None:
    """Parameter count per dtype from the headers of local `*.safetensors` files (8-byte
    little-endian header length, then a JSON header of dtype/shape per tensor: the safetensors
    format spec), validated by `calculator.checkpoint`. Weights are never read."""
    files = sorted(p for p in directory.glob("*.safetensors") if p.is_file())  # not a FIFO or device: reading it could block
    if not files:
        return None
    if len(files) > MAX_SHARDS:
        raise MalformedConfigError(f"{directory} holds more than {MAX_SHARDS:,} safetensors files: no real checkpoint has that many.")
    counts: dict[str, int] = {}
    for path in files:
        for dtype, n in checkpoint.read_local_header(path).items():
            counts[dtype] = counts.get(dtype, 0) + n
    return checkpoint.checked_counts(counts, what=f"the safetensors files in {directory}")
def _spec_with_counts(spec: ModelSpec, counts: dict[str, int] | None, source: Literal["safetensors", "catalog"]) -> ModelSpec:
    if not counts:
        return spec
    counts = checkpoint.checked_counts(counts, what=f"the safetensors checkpoint of {spec.model_id}")
    total = sum(counts.values())
    if total > PLAUSIBLE_PARAMS:
        spec = replace(spec, notes=(*spec.notes, f"The checkpoint holds {total:.3g} parameters, more than any public model (~1.6T): check it."))
    return spec.with_exact_counts(num_params=sum(counts.values()), weight_bytes=weight_bytes_from_dtype_counts(counts), source=source)


def resolve_local(directory: Path) -> ResolvedModel:
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ModelNotFoundError(f"{directory} has no config.json. Point to the folder that holds the model's config.json.")
    config = checkpoint.parse_config(checkpoint.read_capped(config_path, MAX_CONFIG_BYTES, what=str(config_path)), where=str(config_path))
    spec = model_spec_from_config(directory.name, config)
    counts = read_safetensors_counts(directory)
    if counts:
        return ResolvedModel(spec=_spec_with_counts(spec, counts, "safetensors"), source="local", detail=f"{config_path} + safetensors headers")
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        _, total = checkpoint.parse_index(checkpoint.read_capped(index, MAX_INDEX_BYTES, what=str(index)), what=str(index))
        if total is None:
            raise MalformedConfigError(f"{index} has no metadata.total_size.")
        spec = spec.with_exact_counts(num_params=None, weight_bytes=total, source="safetensors")
        return ResolvedModel(spec=spec, source="local", detail=f"{config_path} + index total_size")
    return ResolvedModel(spec=spec, source="local", detail=f"{config_path} (parameters by config arithmetic)")


def _local_dir(ref: str) -> Path | None:
    """The folder `ref` names, if it is one; None for anything else (an unknown `~user`, a name the
    file system refuses). Called only after the length check."""
    try:
        path = Path(ref).expanduser()
        return path if path.is_dir() else None
    except (OSError, RuntimeError, ValueError):
        return None


def resolve_catalog(model_id: str) -> ResolvedModel | None:
    entry = find_catalog_entry(model_id)
    if entry is None:
        return None
    spec = model_spec_from_config(entry.model_id, catalog_config(entry))
    if entry.num_params is not None or entry.weight_bytes is not None:
        spec = spec.with_exact_counts(num_params=entry.num_params, weight_bytes=entry.weight_bytes, source="catalog")
    return ResolvedModel(spec=spec, source="catalog", detail=f"bundled catalog: config {entry.config_source}; parameters: {entry.params_source}")


def resolve_model(ref: str, *, token: str | None = None, offline: bool = False, prefer_hub: bool = False, allow_local: bool = True) -> ResolvedModel:
    """Resolve a model reference: a local directory, a catalog id, or `org/name[@revision]` on the Hub.

    A web page passes `allow_local=False`: a visitor's text must never name a folder on the server.
    """
    ref = (ref or "").strip() if isinstance(ref, str) else ""
    if not ref:
        raise ModelNotFoundError("No model given. Type a Hugging Face model id such as meta-llama/Llama-3.1-8B, or pick one from the catalog.")
    if len(ref) > MAX_MODEL_REF_CHARS or "\0" in ref:
        raise ModelNotFoundError(
            f"A model reference of {len(ref):,} characters is not a model id or folder (at most {MAX_MODEL_REF_CHARS:,}): "
            "type a Hugging Face model id such as meta-llama/Llama-3.1-8B."
        )
    if allow_local and ("/" in ref or ref.startswith((".", "~"))):
        path = _local_dir(ref)
        if path is not None:
            return resolve_local(path)
    direct = resolve_catalog(ref) if "@" not in ref and not prefer_hub else None
    if direct is not None:
        return direct
    from . import hub  # the networked module, loaded only when the catalog does not answer

    repo_id, revision = hub.parse_model_ref(ref)
    # The catalog holds each model's config from its default branch: it answers a bare id at once,
    # and `id@main` when the Hub cannot (offline, unreachable, gated without a token).
    catalog = resolve_catalog(repo_id) if revision in (None, hub.DEFAULT_REVISION) else None
    if catalog is not None and not prefer_hub and revision is None:
        return catalog
    try:
        found = hub.fetch_model(repo_id, revision=revision, token=token or hub.default_token(), offline=offline)
    except CalculatorError as err:
        if catalog is None:
            raise
        if revision is None:
            return catalog
        return replace(catalog, detail=f"{catalog.detail} (the Hub gave no answer for @{revision}: {str(err)[:120]})")
    spec = model_spec_from_config(repo_id, found.config)
    if found.safetensors_param_counts:
        spec = _spec_with_counts(spec, found.safetensors_param_counts, "safetensors")
    origin = "Hugging Face Hub"
    if found.source == "cache":  # the reason first: pages show the start of this line
        origin = f"Cached copy of {found.fetched_at[:10] or 'an earlier lookup'} (Hub not used: {found.stale_reason or 'unreachable'})"
    detail = f"{origin}: config.json" + (
        " + safetensors metadata (exact counts)" if found.safetensors_param_counts else " (no safetensors: parameters by config arithmetic)"
    )
    return ResolvedModel(spec=spec, source="hub" if found.source == "hub" else "cache", detail=detail, revision=revision, sha=found.sha)
