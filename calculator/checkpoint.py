"""Read a model repository's files as untrusted data: `config.json`, safetensors headers and
`model.safetensors.index.json`.

Pure functions over bytes (plus capped local reads), shared by local folders (`calculator.resolve`)
and the Hub (`calculator.hub`), so both reject the same impossible input with the same one-line
error, and nothing is read beyond the caps in `calculator.bounds`.

The safetensors format (huggingface/safetensors, docs "Format"): 8 bytes little-endian unsigned
header length N, then N bytes of JSON: `{"__metadata__": {str: str}, name: {"dtype": str, "shape":
[int, ...], "data_offsets": [begin, end]}, ...}`. The index that transformers writes for sharded
checkpoints: `{"metadata": {"total_size": bytes}, "weight_map": {tensor name: shard file name}}`.
Weights are never read.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from .bounds import (
    MAX_CHECKPOINT_BYTES,
    MAX_CONFIG_BYTES,
    MAX_HEADER_BYTES,
    MAX_INDEX_BYTES,
    MAX_PARAMS,
    MAX_SHARDS,
    MAX_TENSOR_DIMS,
    check_json_shape,
    short_repr,
)
from .errors import MalformedConfigError
from .units import SAFETENSORS_DTYPE_BITS

# Shard file names an index may name: relative, no "..", ending in .safetensors (transformers writes
# "model-00001-of-00004.safetensors"; some repos keep shards in a subfolder).
_SHARD_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}\.safetensors")


def parse_config(raw: bytes, *, where: str) -> dict[str, Any]:
    """A `config.json` as a dict: at most MAX_CONFIG_BYTES, UTF-8 JSON, an object, nested at most
    MAX_CONFIG_DEPTH levels. `where` names it in the error ("config.json of org/name@rev")."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise MalformedConfigError(f"{where} is larger than {MAX_CONFIG_BYTES // 2**20} MiB: no real model config is; try another model.")
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise MalformedConfigError(f"{where} is not UTF-8 text ({err.reason}): the repository's config is broken; try another one.") from err
    except json.JSONDecodeError as err:
        raise MalformedConfigError(
            f"{where} is not valid JSON ({err.msg}, line {err.lineno} column {err.colno}): "
            "the repository's config is broken; try another revision or model."
        ) from err
    except RecursionError as err:
        raise MalformedConfigError(f"{where} is nested too deeply to be a model config.") from err
    if not isinstance(config, dict):
        raise MalformedConfigError(f"{where} is a JSON {type(config).__name__}, not an object: this is not a transformers model config.")
    check_json_shape(config, what=where)
    return config


def read_capped(path: Path, cap: int, *, what: str) -> bytes:
    """The bytes of a local file, refusing one larger than `cap` without reading it whole."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(cap + 1)
    except OSError as exc:
        raise MalformedConfigError(f"{what} could not be read ({exc.strerror or 'I/O error'}).") from exc
    if len(raw) > cap:
        raise MalformedConfigError(f"{what} is larger than {cap // 2**20} MiB: no real model file of its kind is.")
    return raw


def header_length(first8: bytes, *, what: str) -> int:
    """The header length from the first 8 bytes of a safetensors file, within MAX_HEADER_BYTES."""
    if len(first8) < 8:
        raise MalformedConfigError(f"{what} is not a safetensors file: it is shorter than the 8-byte header length.")
    (length,) = struct.unpack("<Q", first8[:8])
    if not 2 <= length <= MAX_HEADER_BYTES:
        raise MalformedConfigError(
            f"{what} is not a readable safetensors file: its header claims {length:,} bytes "
            f"(accepted: 2 to {MAX_HEADER_BYTES:,}, huggingface_hub's limit)."
        )
    return length


def parse_header(raw: bytes, *, what: str) -> dict[str, int]:
    """Parameters per safetensors dtype from one header's JSON bytes. Refuses unknown dtypes, shapes
    that are not lists of positive integers (zero or negative dimensions), more than
    MAX_TENSOR_DIMS dimensions, and totals above MAX_PARAMS."""
    header = _load_json(raw, what=f"the header of {what}")
    if not isinstance(header, dict):
        raise MalformedConfigError(f"The header of {what} is a JSON {type(header).__name__}, not an object: not a safetensors file.")
    counts: dict[str, int] = {}
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise MalformedConfigError(f"{what}: tensor {short_repr(name)} has no dtype/shape entry (got {short_repr(info)}).")
        dtype, shape = info.get("dtype"), info.get("shape")
        if not isinstance(dtype, str) or dtype.upper() not in SAFETENSORS_DTYPE_BITS:
            raise MalformedConfigError(f"{what}: tensor {short_repr(name)} has dtype {short_repr(dtype)}, not a safetensors dtype.")
        if not isinstance(shape, list) or len(shape) > MAX_TENSOR_DIMS or not all(type(d) is int and 0 < d <= MAX_PARAMS for d in shape):
            raise MalformedConfigError(
                f"{what}: tensor {short_repr(name)} has shape {short_repr(shape)}; a shape is a list of at most "
                f"{MAX_TENSOR_DIMS} positive whole numbers."
            )
        n = 1
        for dim in shape:
            n *= dim
            if n > MAX_PARAMS:
                break
        total += n
        if total > MAX_PARAMS:
            raise MalformedConfigError(f"{what} holds more than {MAX_PARAMS:.0e} parameters: no real checkpoint does.")
        counts[dtype] = counts.get(dtype, 0) + n
    return counts


def read_local_header(path: Path) -> dict[str, int]:
    """`parse_header` of a local safetensors file, reading only its header."""
    what = path.name
    try:
        with path.open("rb") as fh:
            length = header_length(fh.read(8), what=what)
            raw = fh.read(length)
    except OSError as exc:
        raise MalformedConfigError(f"{what} could not be read ({exc.strerror or 'I/O error'}).") from exc
    if len(raw) != length:
        raise MalformedConfigError(f"{what} is cut short: its header claims {length:,} bytes, the file has {len(raw):,}.")
    return parse_header(raw, what=what)


def parse_index(raw: bytes, *, what: str) -> tuple[list[str], int | None]:
    """(shard file names in first-seen order, metadata.total_size or None) of an index file.

    Refuses a non-object, a weight_map that is not {str: shard name}, more than MAX_SHARDS shards,
    a shard name that is not a relative `.safetensors` path, and a total_size that is not a whole
    number of bytes in (0, MAX_CHECKPOINT_BYTES]."""
    if len(raw) > MAX_INDEX_BYTES:
        raise MalformedConfigError(f"{what} is larger than {MAX_INDEX_BYTES // 2**20} MiB: no real index is.")
    index = _load_json(raw, what=what)
    if not isinstance(index, dict):
        raise MalformedConfigError(f"{what} is a JSON {type(index).__name__}, not an object: not a safetensors index.")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise MalformedConfigError(f"{what} has no weight_map object (tensor name -> shard file).")
    shards: dict[str, None] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not _SHARD_NAME_RE.fullmatch(shard) or ".." in shard or "//" in shard:
            raise MalformedConfigError(f"{what}: tensor {short_repr(name)} maps to {short_repr(shard)}, not a .safetensors file in the repository.")
        shards.setdefault(shard, None)
        if len(shards) > MAX_SHARDS:
            raise MalformedConfigError(f"{what} names more than {MAX_SHARDS:,} shards: no real checkpoint has that many.")
    metadata = index.get("metadata")
    total = metadata.get("total_size") if isinstance(metadata, dict) else None
    if total is not None:
        total = checked_total_size(total, what=what)
    return list(shards), total


def checked_total_size(total: Any, *, what: str) -> int:
    """An index's `metadata.total_size` as bytes, refusing zero, negatives, fractions and absurd sizes."""
    if isinstance(total, float) and total.is_integer():
        total = int(total)
    if type(total) is not int or not 0 < total <= MAX_CHECKPOINT_BYTES:
        raise MalformedConfigError(
            f"{what}: metadata.total_size is {short_repr(total)}; it should be the checkpoint's size in bytes, "
            f"a whole number from 1 to {MAX_CHECKPOINT_BYTES:.0e}."
        )
    return total


def checked_counts(counts: dict[str, int], *, what: str) -> dict[str, int]:
    """Per-dtype counts summed over shards, refusing an empty or absurd total."""
    total = sum(counts.values())
    if total <= 0:
        raise MalformedConfigError(f"{what} holds no parameters: not a model checkpoint.")
    if total > MAX_PARAMS:
        raise MalformedConfigError(f"{what} holds more than {MAX_PARAMS:.0e} parameters: no real checkpoint does.")
    return counts


def _load_json(raw: bytes, *, what: str) -> Any:
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise MalformedConfigError(f"{what} is not UTF-8 text.") from exc
    except ValueError as exc:
        raise MalformedConfigError(f"{what} is not valid JSON ({short_repr(str(exc), 80)}).") from exc
    except RecursionError as exc:
        raise MalformedConfigError(f"{what} is nested too deeply to be a real file.") from exc
