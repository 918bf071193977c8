"""Downloads: the estimate as JSON (the CLI's `--json` contract) and as a flat CSV. Pure."""

from __future__ import annotations

import csv
import io
import json
from typing import Any


def estimate_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def with_model_identity(data: dict[str, Any], *, source: str, revision: str | None, sha: str | None,
                        facts: dict[str, Any] | None) -> dict[str, Any]:
    """The export of a view plus what names the exact checkpoint: where the model was read, the
    revision asked for, the commit it resolved to (Hub models), and the model facts shown."""
    return {**data, "model_source": source, "model_revision": revision, "model_sha": sha, "model_facts": facts}


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for i, v in enumerate(value, start=1):
            _flatten(f"{prefix}.{i}", v, out)
    elif isinstance(value, list):
        out.append((prefix, "; ".join(map(str, value))))
    else:
        out.append((prefix, "" if value is None else value))


def estimate_csv(data: dict[str, Any], *, ranking_limit: int = 10) -> str:
    """`field,value` rows: model, workload, totals, each breakdown component (bytes), then the
    first `ranking_limit` GPU configurations. Byte fields stay integers (no unit conversion)."""
    trimmed = dict(data)
    trimmed["gpu_ranking"] = list(data.get("gpu_ranking") or [])[:ranking_limit]
    rows: list[tuple[str, Any]] = []
    _flatten("", trimmed, rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["field", "value"])
    writer.writerows(rows)
    return buf.getvalue()
