"""Fit the engine's allocator reserve and CUDA-context constants to what a GPU measured.

    python benchmarks/gpu_fit.py [--csv benchmarks/results/gpu_measured.csv]            # report only
    python benchmarks/gpu_fit.py --apply                                                 # rewrite the constants

Input: the rows `benchmarks/gpu_campaign.py` wrote (measured.csv's columns; one row per case and
instrument, status in `notes`). Only cases that ran to the end (`status=ok`) are used.

- Allocator reserve, separately for inference and training (they churn differently): with `a` the
  peak allocated and `r` the peak reserved of each case, the least-squares fraction through the
  origin `f = sum(a (r - a)) / sum(a^2)` (the engine's form, `reserve = f x allocated`), and the
  affine fit `r - a = c + s x a` reported beside it, so a constant part (the allocator's 2 MiB /
  20 MiB block rounding, cuBLAS workspaces) shows up as an intercept rather than hiding in `f`.
- Memory outside the allocator (what the engine's `CUDA_CONTEXT_BYTES` stands for at the peak:
  the device memory of the process minus `torch.cuda.memory_reserved()`): the median over cases,
  rounded up to a MiB, and the affine fit against the allocated peak (kernels loaded lazily grow
  it with the model's variety of ops, not its size, so a slope near zero means "a constant").
  The context alone (measured before any tensor) is reported for comparison.

`--apply` replaces the three assignments in `calculator/estimate.py` (`CUDA_CONTEXT_BYTES`,
`RESERVED_FRACTION_INFERENCE`, `RESERVED_FRACTION_TRAINING`) with the fitted values, each with a
comment citing the measurement (GPU, stack, date, cases); the published-figure comments above them
stay as history. It refuses when fewer than `MIN_CASES` cases of a kind were measured: no
constant changes without measurements. After applying, rerun `python benchmarks/validation.py`
and the tests that pin the constants (tests/test_memory.py, tests/test_properties.py).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_campaign import CSV_NAME, DEFAULT_OUT, parse_notes, read_rows  # noqa: E402

from calculator.units import GiB, MiB  # noqa: E402

ESTIMATE_PY = ROOT / "calculator" / "estimate.py"
MIN_CASES = 3  # per kind (inference, training) before --apply changes a constant


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """`y = intercept + slope x`, from `n` points."""

    intercept: float
    slope: float
    n: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Fit:
    reserve_fraction: dict[str, float]  # "inference" | "training" -> f
    reserve_line: dict[str, Line]
    cases: dict[str, int]  # kind -> cases used
    outside_bytes: int | None  # median, rounded up to a MiB
    outside_line: Line | None
    context_bytes: int | None  # median of the context alone
    gpu: str
    framework: str
    when: str


def through_origin(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y = f x."""
    den = sum(x * x for x, _ in points)
    return sum(x * y for x, y in points) / den if den else 0.0


def line(points: Sequence[tuple[float, float]]) -> Line | None:
    """Least-squares y = c + s x; None with fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return Line(intercept=my - slope * mx, slope=slope, n=n)


def _kind(row: Mapping[str, str]) -> str:
    return "training" if row["mode"] in ("lora", "full-finetune") else "inference"


def fit_rows(rows: Sequence[Mapping[str, str]]) -> Fit:
    """The fit of every `status=ok` case in `rows` (see the module docstring)."""
    by_case: dict[str, dict[str, int]] = {}
    kind_of: dict[str, str] = {}
    meta = {"gpu": "", "framework": "", "when": ""}
    for row in rows:
        notes = parse_notes(row.get("notes", ""))
        if notes.get("status") != "ok" or not row.get("measured_value"):
            continue
        case = notes.get("case") or row["id"].partition(":")[0]
        instrument = row["id"].rpartition(":")[2]
        by_case.setdefault(case, {})[instrument] = int(row["measured_value"])
        kind_of[case] = _kind(row)
        meta = {"gpu": row.get("gpu", ""), "framework": row.get("framework", ""), "when": row.get("source", "").rpartition(", ")[2]}
    reserve_pts: dict[str, list[tuple[float, float]]] = {"inference": [], "training": []}
    outside_pts: list[tuple[float, float]] = []
    contexts: list[int] = []
    for case, m in by_case.items():
        if "allocated" in m and "reserved" in m:
            reserve_pts[kind_of[case]].append((m["allocated"], m["reserved"] - m["allocated"]))
        if "outside" in m and "allocated" in m:
            outside_pts.append((m["allocated"], m["outside"]))
        if "context" in m:
            contexts.append(m["context"])
    outside = [y for _, y in outside_pts]
    return Fit(
        reserve_fraction={k: through_origin(p) for k, p in reserve_pts.items() if p},
        reserve_line={k: ln for k, p in reserve_pts.items() if (ln := line(p)) is not None},
        cases={k: len(p) for k, p in reserve_pts.items()},
        outside_bytes=-(-int(statistics.median(outside)) // MiB) * MiB if outside else None,
        outside_line=line(outside_pts),
        context_bytes=int(statistics.median(contexts)) if contexts else None,
        **meta,
    )


def render_fit(fit: Fit) -> str:
    lines = ["# Allocator reserve and CUDA context, fitted to the GPU campaign", ""]
    if not any(fit.cases.values()):
        return "\n".join([*lines, "No case ran to the end (status=ok): nothing to fit.", ""])
    lines += [f"GPU: {fit.gpu or '?'}; {fit.framework or '?'}; {fit.when or '?'}.", "",
              "| quantity | cases | engine form (fitted) | affine fit |", "|---|---|---|---|"]
    for kind in ("inference", "training"):
        if kind not in fit.reserve_fraction:
            continue
        ln = fit.reserve_line.get(kind)
        affine = f"{ln.intercept / MiB:+.0f} MiB + {ln.slope:.4f} x allocated" if ln else "n/a (one size)"
        lines.append(f"| reserve, {kind} (reserved - allocated) | {fit.cases[kind]} | {fit.reserve_fraction[kind]:.4f} x allocated | {affine} |")
    if fit.outside_bytes is not None:
        ln = fit.outside_line
        affine = f"{ln.intercept / MiB:.0f} MiB + {ln.slope * GiB / MiB:.1f} MiB per GiB allocated" if ln else "n/a"
        lines.append(f"| outside the allocator at the peak (device - reserved) | {ln.n if ln else 1} | {fit.outside_bytes / MiB:.0f} MiB (median) | {affine} |")
    if fit.context_bytes is not None:
        lines.append(f"| CUDA context alone, before any tensor | - | {fit.context_bytes / MiB:.0f} MiB (median) | - |")
    lines += ["", "`python benchmarks/gpu_fit.py --apply` writes the engine-form values into calculator/estimate.py.", ""]
    return "\n".join(lines)


_ASSIGNMENTS = ("CUDA_CONTEXT_BYTES", "RESERVED_FRACTION_INFERENCE", "RESERVED_FRACTION_TRAINING")


def apply_fit(fit: Fit, source: str, *, csv_name: str = f"benchmarks/results/{CSV_NAME}") -> str:
    """`source` (calculator/estimate.py's text) with the three constants replaced by `fit`'s values.
    Raises ValueError when the measurements are too few or an assignment is not found."""
    short = [k for k in ("inference", "training") if fit.cases.get(k, 0) < MIN_CASES]
    if short or fit.outside_bytes is None:
        raise ValueError(f"too few measured cases to change the constants (need {MIN_CASES} of each kind; missing: "
                         f"{', '.join(short) or 'device memory'})")
    cite = f"{csv_name} ({fit.gpu}; {fit.framework.partition(';')[0]}; {fit.when})"
    values = {
        "CUDA_CONTEXT_BYTES": (f"{fit.outside_bytes // MiB} * MiB",
                               f"median device - reserved at the peak, {fit.outside_line.n if fit.outside_line else 1} cases"),
        "RESERVED_FRACTION_INFERENCE": (f"{max(fit.reserve_fraction['inference'], 0.0):.4f}", f"{fit.cases['inference']} inference cases"),
        "RESERVED_FRACTION_TRAINING": (f"{max(fit.reserve_fraction['training'], 0.0):.4f}", f"{fit.cases['training']} training cases"),
    }
    out = source
    for name in _ASSIGNMENTS:
        value, detail = values[name]
        pattern = re.compile(rf"^(?:# Measured [^\n]*\n(?:#   [^\n]*\n)*)?{name} = [^\n]*$", re.MULTILINE)
        if not pattern.search(out):
            raise ValueError(f"{name} = ... not found in calculator/estimate.py")
        comment = textwrap.wrap(f"Measured ({detail}), fitted by benchmarks/gpu_fit.py from {cite}.", width=100,
                                initial_indent="# ", subsequent_indent="#   ", break_on_hyphens=False)
        block = "\n".join([*comment, f"{name} = {value}"])
        out = pattern.sub(lambda _m, b=block: b, out, count=1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_OUT / CSV_NAME)
    parser.add_argument("--apply", action="store_true", help="rewrite the constants in calculator/estimate.py")
    args = parser.parse_args(argv)
    if not args.csv.exists():
        print(f"gpu_fit: {args.csv} does not exist; run benchmarks/gpu_campaign.py on a GPU first. Nothing changed.", file=sys.stderr)
        return 1
    fit = fit_rows(read_rows(args.csv))
    print(render_fit(fit), end="")
    if args.apply:
        try:
            ESTIMATE_PY.write_text(apply_fit(fit, ESTIMATE_PY.read_text(encoding="utf-8")), encoding="utf-8")
        except ValueError as e:
            print(f"gpu_fit: {e}. Nothing changed.", file=sys.stderr)
            return 1
        print(f"gpu_fit: wrote the fitted constants into {ESTIMATE_PY.relative_to(ROOT)}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
