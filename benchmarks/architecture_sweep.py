"""Architecture sweep: every config class of transformers that builds from its defaults, plus every
bundled real config: is it answered, and are its parameters right?

    python benchmarks/architecture_sweep.py                 # all ~820 config classes, ~30-60 min on 2 cores
    python benchmarks/architecture_sweep.py --only llama,phi,bart   # a few model types
    python benchmarks/architecture_sweep.py --real-only     # the bundled real configs only

For each config: the truth is transformers' own model built on the meta device
(`calculator.inventory.build_meta_model`, the class transformers' auto mappings pick, never remote
code), its parameters counted with `sum(p.numel())`. Then the calculator's own path
(`model_spec_from_config`: analytic formula, else the transformers inventory) and the analytic
formula alone are asked for the same config. Parameters are "within 0.5%" when
|spec - meta| / meta <= 0.5%.

Columns are functions: `COLUMNS` maps a column group to a function of the row context returning
a dict of values; add a function (e.g. estimate vs trace per mode) and a line there to add columns.
Writes benchmarks/results/architecture_sweep.csv (one row per config) and
benchmarks/results/architecture_sweep.md (summary per kind + the rows that miss).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calculator.catalog import catalog_config, catalog_entries
from calculator.errors import CalculatorError
from calculator.spec import _ANALYTIC_BY_DESIGN

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED_CONFIGS = ROOT.parent / "shared" / "model-configs"
TOLERANCE = 0.005
ROW_SECONDS = 120
TARGET_KINDS = ("decoder", "encoder", "encoder-decoder", "vision-language")


@dataclass
class Row:
    """One config under test and what the columns computed for it (shared between columns)."""

    name: str
    source: str  # "transformers default" | "catalog" | "shared real config"
    config: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)


class RowTimeout(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise RowTimeout


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"


# --------------------------------------------------------------------------------------------
# Columns (each: Row -> dict of column values)
# --------------------------------------------------------------------------------------------


def col_meta(row: Row) -> dict[str, Any]:
    """Kind of model and transformers' own parameter count on the meta device (the truth)."""
    from calculator import inventory

    hf_cfg = inventory.hf_config(row.config, model_id=row.name)
    cls, generative = inventory.model_class(hf_cfg)
    started = time.monotonic()
    model = inventory.build_meta_model(row.config, model_id=row.name)
    row.cache["meta_params"] = sum(p.numel() for p in model.parameters())
    return {"kind": _kind(hf_cfg, generative), "class": cls.__name__, "meta_params": row.cache["meta_params"],
            "build_s": round(time.monotonic() - started, 2)}


def col_answered(row: Row) -> dict[str, Any]:
    """What the calculator answers (analytic formula, else the transformers inventory)."""
    from calculator.spec import model_spec_from_config

    started = time.monotonic()
    try:
        spec = model_spec_from_config(row.name, row.config)
    except CalculatorError as e:
        return {"answered": False, "counted_by": "", "spec_params": "", "param_delta": "", "refusal": str(e)[:200]}
    delta = spec.config_num_params / row.cache["meta_params"] - 1 if row.cache.get("meta_params") else None
    return {"answered": True, "counted_by": spec.counted_by, "spec_params": spec.config_num_params,
            "param_delta": round(delta, 6) if delta is not None else "", "refusal": "",
            "answer_s": round(time.monotonic() - started, 2)}


def col_analytic(row: Row) -> dict[str, Any]:
    """The analytic formula alone (the torch-free fast path), where it claims the family."""
    from calculator.spec import model_spec_from_config

    try:
        spec = model_spec_from_config(row.name, row.config, use_inventory=False)
    except CalculatorError:
        return {"analytic_params": "", "analytic_delta": ""}
    delta = spec.config_num_params / row.cache["meta_params"] - 1 if row.cache.get("meta_params") else None
    return {"analytic_params": spec.config_num_params, "analytic_delta": round(delta, 6) if delta is not None else ""}


COLUMNS: dict[str, Callable[[Row], dict[str, Any]]] = {
    "meta": col_meta,
    "answered": col_answered,
    "analytic": col_analytic,
}


def _kind(hf_cfg: Any, generative: bool) -> str:
    """decoder / encoder / encoder-decoder / vision-language / other, from transformers' auto mappings."""
    from transformers.models.auto import modeling_auto as ma

    def has(mapping_name: str) -> bool:
        mapping = getattr(ma, mapping_name, None)
        try:
            return mapping is not None and type(hf_cfg) in mapping
        except Exception:
            return False

    if has("MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING") or has("MODEL_FOR_VISION_2_SEQ_MAPPING"):
        return "vision-language"
    if getattr(hf_cfg, "is_encoder_decoder", False) and (has("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING") or has("MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING")):
        return "encoder-decoder"
    if generative and has("MODEL_FOR_CAUSAL_LM_MAPPING"):
        return "decoder"
    if has("MODEL_FOR_MASKED_LM_MAPPING") or has("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING") or has("MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING"):
        return "encoder"
    return "other"


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def default_rows(only: set[str] | None) -> list[Row]:
    from transformers import CONFIG_MAPPING, AutoConfig

    rows = []
    for model_type in sorted(CONFIG_MAPPING.keys()):
        if only and model_type not in only:
            continue
        # The default config as transformers writes it to config.json (every key present).
        try:
            config = AutoConfig.for_model(model_type).to_dict()
        except Exception as e:
            row = Row(name=model_type, source="transformers default", config={"model_type": model_type})
            row.values.update({"buildable": False, "meta_error": _short(e)})
            rows.append(row)
            continue
        config["model_type"] = model_type
        rows.append(Row(name=model_type, source="transformers default", config=config))
    return rows


def real_rows(only: set[str] | None) -> list[Row]:
    rows = []
    seen = set()
    for model_id, entry in sorted(catalog_entries().items()):
        cfg = dict(catalog_config(entry))
        if only and cfg.get("model_type") not in only:
            continue
        seen.add(model_id.replace("/", "__"))
        rows.append(Row(name=model_id, source="catalog", config=cfg))
    if SHARED_CONFIGS.is_dir():
        for path in sorted(SHARED_CONFIGS.glob("*/config.json")):
            if path.parent.name in seen:
                continue
            cfg = json.loads(path.read_text(encoding="utf-8"))
            if only and cfg.get("model_type") not in only:
                continue
            rows.append(Row(name=path.parent.name.replace("__", "/"), source="shared real config", config=cfg))
    return rows


def run_row(row: Row) -> None:
    if row.values.get("buildable") is False:
        return
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(ROW_SECONDS)
    try:
        for group, column in COLUMNS.items():
            try:
                with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    row.values.update(column(row))
            except RowTimeout:
                raise
            except Exception as e:
                row.values[f"{group}_error"] = _short(e)
                if group == "meta":  # not buildable from its defaults: no truth to compare with
                    row.values["buildable"] = False
                    return
        row.values["buildable"] = True
    except RowTimeout:
        row.values["timeout"] = True
        row.values.setdefault("buildable", "meta_params" in row.values)
    finally:
        signal.alarm(0)


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _within(v: Any) -> bool:
    return isinstance(v, int | float) and abs(v) <= TOLERANCE


def summarize(rows: list[Row]) -> str:
    lines = ["# Architecture sweep", "",
             "Every config class of transformers whose default config builds on the meta device, plus the bundled real",
             "configs (`python benchmarks/architecture_sweep.py`). *Answered*: `model_spec_from_config` returns a spec",
             "(analytic formula, else transformers' own class counted on the meta device). *Exact*: its parameters are",
             f"within {TOLERANCE:.1%} of `sum(p.numel())` of transformers' model for the same config. *Analytic*: the",
             "torch-free formula alone, for the families it claims.", ""]
    versions = rows[0].cache.get("versions", "") if rows else ""
    if versions:
        lines += [versions, ""]
    lines += ["| kind | buildable | answered | exact (of answered) | analytic claims | analytic exact |", "|---|---:|---:|---:|---:|---:|"]
    kinds = [*TARGET_KINDS, "other"]
    groups: dict[str, list[Row]] = {k: [] for k in kinds}
    for r in rows:
        if r.values.get("buildable") and r.source == "transformers default":
            groups.setdefault(r.values.get("kind", "other"), []).append(r)
    groups["real configs"] = [r for r in rows if r.source != "transformers default" and r.values.get("buildable")]
    target_total = {"n": 0, "answered": 0, "exact": 0}
    for kind, members in groups.items():
        if not members:
            continue
        answered = [r for r in members if r.values.get("answered")]
        exact = [r for r in answered if _within(r.values.get("param_delta"))]
        claims = [r for r in members if isinstance(r.values.get("analytic_delta"), int | float)]
        a_exact = [r for r in claims if _within(r.values.get("analytic_delta"))]
        if kind in TARGET_KINDS:
            target_total["n"] += len(members)
            target_total["answered"] += len(answered)
            target_total["exact"] += len(exact)
        lines.append(f"| {kind} | {len(members)} | {len(answered)} ({len(answered) / len(members):.0%}) | "
                     f"{len(exact)} ({len(exact) / max(len(answered), 1):.0%}) | {len(claims)} | {len(a_exact)} |")
    n = max(target_total["n"], 1)
    lines += ["", f"Decoder + encoder + encoder-decoder + vision-language classes: {target_total['answered']} of {target_total['n']} answered "
              f"({target_total['answered'] / n:.1%}; target >= 95%), {target_total['exact']} of {target_total['answered']} within "
              f"{TOLERANCE:.1%} ({target_total['exact'] / max(target_total['answered'], 1):.1%}; target >= 98%).", ""]
    unbuildable = [r for r in rows if r.values.get("buildable") is False]
    lines += [f"{len(unbuildable)} config classes do not build from their defaults (sub-configs, classes needing extra inputs); see the CSV.", ""]
    misses = [r for r in rows if r.values.get("buildable") and (not r.values.get("answered") or not _within(r.values.get("param_delta")))]
    if misses:
        lines += ["## Answered wrongly or refused", "", "| config | kind | counted by | delta | why |", "|---|---|---|---:|---|"]
        for r in misses:
            v = r.values
            delta = f"{v['param_delta']:+.2%}" if isinstance(v.get("param_delta"), int | float) else ""
            why = (v.get("refusal") or v.get("answered_error") or ("timeout" if v.get("timeout") else "")).replace("|", "/")[:120]
            if not why and str(r.config.get("model_type")) in _ANALYTIC_BY_DESIGN:
                why = "analytic by design: counts the original checkpoint, which transformers' port differs from"
            lines.append(f"| {r.name} | {v.get('kind', '')} | {v.get('counted_by', '')} | {delta} | {why} |")
        lines.append("")
    wrong_analytic = [r for r in rows if isinstance(r.values.get("analytic_delta"), int | float) and not _within(r.values["analytic_delta"])]
    if wrong_analytic:
        lines += ["## Analytic formula off by more than 0.5% (the calculator then counts from transformers' class)", "",
                  "| config | analytic delta |", "|---|---:|"]
        lines += [f"| {r.name} | {r.values['analytic_delta']:+.2%} |" for r in wrong_analytic]
        lines.append("")
    return "\n".join(lines)


def _parse(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated model types")
    ap.add_argument("--real-only", action="store_true")
    ap.add_argument("--out", default="architecture_sweep")
    ap.add_argument("--redo", help="comma-separated row names: re-run only these rows of the existing CSV, keep the others")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    import peft
    import torch
    import transformers

    versions = f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}."
    rows = real_rows(only) + ([] if args.real_only else default_rows(only))
    RESULTS.mkdir(parents=True, exist_ok=True)
    redo = set(args.redo.split(",")) if args.redo else None
    if redo:  # keep every other row's values as the last full run recorded them
        previous = {r["name"]: r for r in csv.DictReader((RESULTS / f"{args.out}.csv").open(encoding="utf-8"))}
        for row in rows:
            if row.name not in redo and row.name in previous:
                row.values = {k: _parse(v) for k, v in previous[row.name].items() if k not in ("name", "source") and v != ""}
                row.values["_kept"] = True
    fields = ["name", "source", "buildable", "kind", "class", "meta_params", "answered", "counted_by", "spec_params", "param_delta",
              "analytic_params", "analytic_delta", "build_s", "answer_s", "timeout", "refusal", "meta_error", "answered_error", "analytic_error"]
    csv_path = RESULTS / f"{args.out}.csv"
    started = time.monotonic()
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for i, row in enumerate(rows):
            if not row.values.pop("_kept", False):
                run_row(row)
            row.cache["versions"] = versions
            writer.writerow({"name": row.name, "source": row.source, **row.values})
            fh.flush()
            print(f"[{i + 1}/{len(rows)} {time.monotonic() - started:.0f}s] {row.name}: "
                  f"{ {k: row.values.get(k) for k in ('kind', 'answered', 'param_delta', 'analytic_delta')} }", flush=True)
    (RESULTS / f"{args.out}.md").write_text(summarize(rows) + "\n", encoding="utf-8")
    print(f"wrote {csv_path} and {args.out}.md in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
