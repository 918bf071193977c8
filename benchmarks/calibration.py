"""Calibration: the engine's estimate vs the FakeTensor trace of the real model, over a grid.

    python benchmarks/calibration.py            # full grid, ~5-10 min on 2 CPU cores
    python benchmarks/calibration.py --quick    # 2-layer versions, ~1 min

Every row runs `calculator.verify.run_verification(level="trace")` on a catalog model at full
depth (real layer count, real widths; fake tensors allocate nothing, so only the number of ops
costs time) and records the error of the engine per component group and in total. Writes
`benchmarks/results/calibration.md` and `.csv` (or `calibration-quick.*`).

Error % = (estimate - trace) / trace x 100: positive means the engine over-estimates. The trace
counts tensor storage only (no allocator rounding, CUDA context or workspaces), so it is compared
with the engine's `torch_allocated_bytes`, not with its device total.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calculator.errors import CalculatorError
from calculator.resolve import resolve_model
from calculator.units import GiB
from calculator.verify import GROUPS, run_verification
from calculator.workload import Workload

RESULTS = Path(__file__).resolve().parent / "results"

LLAMA3B = "meta-llama/Llama-3.2-3B"
LLAMA8B = "meta-llama/Llama-3.1-8B"
QWEN3 = "Qwen/Qwen3-8B"
QWEN25 = "Qwen/Qwen2.5-7B"
MIXTRAL = "mistralai/Mixtral-8x7B-v0.1"
GPTOSS = "openai/gpt-oss-20b"
BERT = "google-bert/bert-base-uncased"


@dataclass(frozen=True)
class Case:
    model_id: str
    workload: Workload
    label: str


def _w(**kw: Any) -> Workload:
    return Workload(precision=kw.pop("precision", "bf16"), **kw)


def grid() -> list[Case]:
    """Inference (prefill-only and generate), LoRA and full fine-tuning; short (1-2k) and long
    (4-8k) contexts; batch 1 and 8. gpt-oss runs eager attention because transformers has no SDPA
    path for its attention sinks (the trace falls back to eager; the engine is told the same)."""
    c: list[Case] = []

    def add(model: str, label: str, **kw: Any) -> None:
        c.append(Case(model, _w(**kw), label))

    for m in (LLAMA3B, LLAMA8B, QWEN3, QWEN25):
        add(m, "prefill 1k b1", mode="inference", context_length=1024)
        add(m, "generate 8k (+512) b8", mode="inference", context_length=8192, generated_tokens=512, batch_size=8)
        add(m, "lora all-linear 1k b1", mode="lora", context_length=1024)
        add(m, "lora all-linear 4k b8", mode="lora", context_length=4096, batch_size=8)
        add(m, "full adamw 2k b1", mode="full", context_length=2048)
        add(m, "full adamw 8k b8", mode="full", context_length=8192, batch_size=8)
    add(LLAMA8B, "lora bf16 adapters + grad ckpt 8k b8", mode="lora", context_length=8192, batch_size=8, adapter_precision="bf16",
        gradient_checkpointing=True)
    add(LLAMA3B, "full adamw master fp32 2k b1", mode="full", context_length=2048, master_weights=True)
    add(QWEN3, "lora attention 2k b8", mode="lora", context_length=2048, batch_size=8, lora_targets="attention")
    add(MIXTRAL, "generate 2k (+256) b1", mode="inference", context_length=2048, generated_tokens=256)
    add(MIXTRAL, "generate 8k (+512) b8", mode="inference", context_length=8192, generated_tokens=512, batch_size=8)
    add(MIXTRAL, "lora attention 2k b1", mode="lora", context_length=2048, lora_targets="attention")
    add(MIXTRAL, "lora attention 4k b8", mode="lora", context_length=4096, batch_size=8, lora_targets="attention")
    add(GPTOSS, "generate 2k (+256) b1 eager", mode="inference", context_length=2048, generated_tokens=256, attention="eager")
    add(GPTOSS, "generate 8k (+512) b8 eager", mode="inference", context_length=8192, generated_tokens=512, batch_size=8, attention="eager")
    add(BERT, "forward 512 b1", mode="inference", context_length=512, precision="fp16")
    add(BERT, "forward 512 b8", mode="inference", context_length=512, batch_size=8, precision="fp16")
    return c


def run_case(case: Case, *, layers: int | None, timeout: float) -> dict[str, Any]:
    spec = resolve_model(case.model_id, offline=True).spec
    started = time.monotonic()
    row: dict[str, Any] = {"model": case.model_id, "workload": case.label, "mode": case.workload.mode}
    try:
        data = run_verification(spec, case.workload, level="trace", timeout=timeout, layers=layers)
    except CalculatorError as e:
        row.update(error=str(e), seconds=round(time.monotonic() - started, 1))
        return row
    row.update(
        layers=data["layers"],
        estimate_bytes=data["total"]["estimate_bytes"],
        trace_bytes=data["total"]["measured_bytes"],
        total_error_pct=data["total"]["error_pct"],
        engine_peak=data["estimate"]["peak_phase"],
        trace_peak=data["trace"]["peak_phase"],
        seconds=round(time.monotonic() - started, 1),
        notes=" | ".join(data["notes"] + [n for n in data["trace"]["notes"] if not n.startswith(("AdamW with foreach", "LoRA r="))]),
    )
    by = {r["component"]: r for r in data["comparison"]}
    for g in GROUPS:
        r = by.get(g)
        row[f"{g}_estimate_bytes"] = r["estimate_bytes"] if r else 0
        row[f"{g}_trace_bytes"] = r["measured_bytes"] if r else 0
        row[f"{g}_error_pct"] = r["error_pct"] if r else None
    return row


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f}%"


def _gib(v: int) -> str:
    return f"{v / GiB:,.2f}"


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median and worst |total error| per mode, and per component group."""
    out = []
    for mode in ("inference", "lora", "full", "all"):
        sel = [r for r in rows if "error" not in r and (mode == "all" or r["mode"] == mode)]
        if not sel:
            continue
        entry: dict[str, Any] = {"mode": mode, "rows": len(sel)}
        for key in ("total", *GROUPS):
            errs = [r[f"{key}_error_pct"] for r in sel if r.get(f"{key}_error_pct") is not None]
            if errs:
                worst = max(errs, key=abs)
                entry[f"{key}_median_abs"] = statistics.median(abs(e) for e in errs)
                entry[f"{key}_worst"] = worst
        out.append(entry)
    return out


def write_results(rows: list[dict[str, Any]], stem: str, *, layers: int | None, seconds: float, explanation: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    fields = ["model", "workload", "mode", "layers", "estimate_bytes", "trace_bytes", "total_error_pct", "engine_peak", "trace_peak"]
    for g in GROUPS:
        fields += [f"{g}_estimate_bytes", f"{g}_trace_bytes", f"{g}_error_pct"]
    fields += ["seconds", "notes", "error"]
    with (RESULTS / f"{stem}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()})
    lines = [
        f"# Calibration: engine estimate vs FakeTensor trace ({'full depth' if layers is None else f'{layers} layers'})",
        "",
        "Generated by `python benchmarks/calibration.py` (torch 2.13.0 CPU, transformers 5.24.0, peft 0.21.2; "
        f"{len(rows)} rows in {seconds:.0f} s). Error = (estimate - trace) / trace: positive = engine over-estimates. "
        "Total compares the engine's `torch_allocated_bytes` with the trace's peak of tensor storage; groups are defined in "
        "`calculator/verify/compare.py` (weights = parameters + buffers; activations = KV cache + activations + logits/loss "
        "vs MemTracker activations + temporaries + inputs). Sizes in GiB.",
        "",
        "## Summary (|error| median and worst, per mode)",
        "",
        "| mode | rows | total median | total worst | weights worst | activations median | activations worst | gradients worst | optimizer worst |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summary(rows):
        lines.append(
            f"| {s['mode']} | {s['rows']} | {s.get('total_median_abs', 0):.1f}% | {_pct(s.get('total_worst'))} | {_pct(s.get('weights_worst'))} | "
            f"{s.get('activations_median_abs', 0):.1f}% | {_pct(s.get('activations_worst'))} | {_pct(s.get('gradients_worst'))} | "
            f"{_pct(s.get('optimizer_worst'))} |"
        )
    lines += [
        "",
        "## Rows",
        "",
        "| model | workload | estimate | trace | total | weights | activations | gradients | optimizer | peak (engine / trace) | s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['workload']} | | | not traced: {r['error'][:120]} | | | | | | {r['seconds']} |")
            continue
        lines.append(
            f"| {r['model']} | {r['workload']} | {_gib(r['estimate_bytes'])} | {_gib(r['trace_bytes'])} | **{_pct(r['total_error_pct'])}** | "
            + " | ".join(_pct(r[f"{g}_error_pct"]) for g in GROUPS)
            + f" | {r['engine_peak']} / {r['trace_peak']} | {r['seconds']} |"
        )
    lines += ["", explanation.strip(), ""]
    path = RESULTS / f"{stem}.md"
    path.write_text("\n".join(lines))
    return path


EXPLANATION_FILE = RESULTS / "calibration-notes.md"


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a results .csv with numbers parsed back (empty cells dropped)."""
    rows = []
    with path.open() as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if v == "":
                    if k.endswith("_error_pct"):
                        row[k] = None
                    continue
                if k.endswith("_bytes") or k == "layers":
                    row[k] = int(v)
                elif k.endswith("_pct") or k == "seconds":
                    row[k] = float(v)
                else:
                    row[k] = v
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2-layer versions of every model (about a minute)")
    parser.add_argument("--only", default="", help="run only rows whose model or workload contains this text")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per trace (default 300)")
    parser.add_argument("--render", action="store_true", help="rewrite the .md from the existing .csv (after editing calibration-notes.md)")
    args = parser.parse_args(argv)
    layers = 2 if args.quick else None
    if args.render:
        stem = "calibration-quick" if args.quick else "calibration"
        rows = read_csv(RESULTS / f"{stem}.csv")
        path = write_results(rows, stem, layers=layers, seconds=sum(float(r["seconds"]) for r in rows), explanation=EXPLANATION_FILE.read_text())
        print(f"wrote {path}")
        return 0
    cases = [c for c in grid() if args.only.lower() in f"{c.model_id} {c.label}".lower()]
    started = time.monotonic()
    rows = []
    for i, case in enumerate(cases, 1):
        row = run_case(case, layers=layers, timeout=args.timeout)
        rows.append(row)
        status = row.get("error") or f"total {_pct(row['total_error_pct'])}  " + "  ".join(f"{g} {_pct(row[f'{g}_error_pct'])}" for g in GROUPS)
        print(f"[{i}/{len(cases)}] {case.model_id:<32} {case.label:<38} {status}  ({row['seconds']} s)", flush=True)
    elapsed = time.monotonic() - started
    for s in summary(rows):
        print(f"{s['mode']:<10} rows {s['rows']:>2}  total |error| median {s.get('total_median_abs', 0):.1f}%  worst {_pct(s.get('total_worst'))}")
    explanation = EXPLANATION_FILE.read_text() if EXPLANATION_FILE.exists() and not args.only else ""
    stem = "calibration-quick" if args.quick else "calibration"
    if args.only:
        stem += "-partial"
    path = write_results(rows, stem, layers=layers, seconds=elapsed, explanation=explanation)
    print(f"wrote {path} and {path.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
