"""TRL SFTTrainer's step, traced, against the estimate for the "trl-sft" trainer preset.

    python benchmarks/trainer_traces.py            # 4 catalog models x 8 settings, full depth (~20-40 min on 2 busy cores)
    python benchmarks/trainer_traces.py --quick    # 2-layer copies (~10 min on 2 busy cores)
    python benchmarks/trainer_traces.py --defaults-only   # full depth, TRL's defaults only (LoRA and full; ~5 min)

Each row is TRL 1.16's defaults (`calculator.trainers.PRESETS["trl-sft"]`: model loaded in fp32,
non-reentrant gradient checkpointing, fused LM-head loss `loss_type="nll"`), for LoRA and for full
fine-tuning, then with one axis changed: loaded in bf16 (`model_init_kwargs={"dtype": "bfloat16"}`),
checkpointing off, or transformers' full logits instead of the fused head.
The trace (`calculator.verify`, FakeTensor on CPU) runs transformers' model, peft's adapters and
TRL's own `add_fused_lm_head` / `ChunkedLogProbFunction` with `AdamW(fused=True)` (SFTTrainer's
`adamw_torch_fused`) under `torch.autocast(bf16)` (SFTTrainer's `bf16=True`): one warm-up step and
one measured step, as `Trainer.training_step` + `optimizer.step()` + `zero_grad` run them. Two
GPU-only pieces are replaced by what they do on CUDA: TRL's Triton fold works on its tile in place,
and `_addmm_fp32` accumulates in fp32 without upcasting its operands (see `_harness.py`).
Writes `benchmarks/results/trainer_traces.md` and `.csv`.

Error % = (estimate torch_allocated - trace peak) / trace peak.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calculator.estimate import estimate
from calculator.resolve import resolve_catalog
from calculator.trainers import preset_workload
from calculator.units import GiB
from calculator.verify.compare import sized_down_spec
from calculator.verify.trace import trace_workload

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.2-3B", "Qwen/Qwen3-4B", "meta-llama/Llama-3.1-8B")
CONTEXT, BATCH = 2048, 4  # 8,192 tokens per step: two of TRL's 4,096-token chunks


def settings() -> list[tuple[str, dict]]:
    """TRL's defaults, then each axis changed alone: bf16 loading, checkpointing off, full logits."""
    rows = []
    for mode in ("lora", "full"):
        base = {"mode": mode}
        rows.append((f"{mode} TRL defaults (fp32 load, ckpt on, fused head)", base))
        rows.append((f"{mode} bf16 load", base | {"master_weights": False}))
        rows.append((f"{mode} checkpointing off", base | {"gradient_checkpointing": False}))
        rows.append((f"{mode} full logits", base | {"loss_impl": "full"}))
    return rows


def run(quick: bool, defaults_only: bool = False, budget_s: float | None = None, skip: frozenset = frozenset()) -> list[dict]:
    """Rows setting by setting; with `budget_s`, no new row starts once the budget is spent (the rows run are
    kept and the report says how many of the grid's rows they are). `skip`: settings not run."""
    out = []
    began = time.monotonic()
    models = {}
    for model_id in MODELS:
        spec = resolve_catalog(model_id).spec
        models[model_id] = sized_down_spec(spec, 2) if quick else (spec, dict(spec.raw_config))
    # Setting by setting over the models, smallest model first: a budget that runs out leaves every
    # setting it reached traced on several models rather than one model complete.
    for label, kw in settings():
        for model_id, (spec, config) in models.items():
            if (defaults_only and "TRL defaults" not in label) or label in skip:
                continue
            if budget_s is not None and time.monotonic() - began > budget_s:
                print(f"budget of {budget_s:g} s spent: {model_id} {label} not run", flush=True)
                continue
            w = preset_workload("trl-sft", precision="bf16", context_length=CONTEXT, batch_size=BATCH, **kw)
            started = time.monotonic()
            r = trace_workload(config, w, model_id=model_id)
            est = estimate(spec, w)
            err = 100 * (est.torch_allocated_bytes - r.peak_bytes) / r.peak_bytes
            out.append({
                "model": model_id, "setting": label, "layers": spec.num_hidden_layers,
                "estimate_gib": round(est.torch_allocated_bytes / GiB, 3), "trace_gib": round(r.peak_bytes / GiB, 3), "trace_bytes": r.peak_bytes,
                "error_pct": round(err, 2), "engine_peak": est.peak_phase, "trace_peak": r.peak_phase,
                "seconds": round(time.monotonic() - started, 1),
            })
            print(f"{model_id:<28} {label:<42} est {out[-1]['estimate_gib']:8.2f}  trace {out[-1]['trace_gib']:8.2f}  {err:+6.2f}%", flush=True)
    return out


def rescore(path: Path, quick: bool) -> list[dict]:
    """The rows of an earlier run (its CSV) with the current engine's estimate: the trace depends only
    on the libraries, so a change to the engine needs no new trace. Rows without `trace_bytes` use
    `trace_gib` (rounded to 0.001 GiB: at most 0.05% on these sizes)."""
    labels = dict(settings())
    out = []
    for row in csv.DictReader(path.open()):
        spec = resolve_catalog(row["model"]).spec
        if quick:
            spec, _ = sized_down_spec(spec, 2)
        w = preset_workload("trl-sft", precision="bf16", context_length=CONTEXT, batch_size=BATCH, **labels[row["setting"]])
        est = estimate(spec, w)
        trace = int(row.get("trace_bytes") or round(float(row["trace_gib"]) * GiB))
        err = 100 * (est.torch_allocated_bytes - trace) / trace
        out.append(row | {"estimate_gib": round(est.torch_allocated_bytes / GiB, 3), "trace_gib": round(trace / GiB, 3), "trace_bytes": trace,
                          "error_pct": round(err, 2),
                          "engine_peak": est.peak_phase})
    return out


def render(rows: list[dict], quick: bool, planned: int | None = None, rescored: bool = False) -> str:
    import torch
    import transformers
    import trl

    errs = [abs(r["error_pct"]) for r in rows]
    lines = [
        f"# TRL SFTTrainer step: estimate vs trace{' (2-layer copies)' if quick else ''}",
        "",
        f"Generated by `python benchmarks/trainer_traces.py{' --quick' if quick else ''}` (torch {torch.__version__}, transformers "
        f"{transformers.__version__}, trl {trl.__version__}); context {CONTEXT:,} x batch {BATCH}, bf16 autocast. "
        "Error = (estimate - trace) / trace on PyTorch-allocated bytes."
        + (" Estimates re-scored with the current engine against the stored traces (`--rescore`)." if rescored else ""),
        "",
        (f"Rows run: {len(rows)} of the {planned} planned (the CPU budget ran out; the rest were not traced). " if planned and planned > len(rows) else "")
        + f"Rows: {len(rows)}. |error| median **{statistics.median(errs):.2f}%**, worst **{max(errs):.2f}%**; "
        f"within 3%: {sum(e <= 3 for e in errs)} of {len(rows)}."
        + ("" if any("TRL defaults" in r["setting"] for r in rows) else " TRL's defaults rows (LoRA and full) are in trainer_traces-defaults.md."),
        "",
        "| model | setting | estimate GiB | trace GiB | error | peak (engine / trace) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['setting']} | {r['estimate_gib']:.2f} | {r['trace_gib']:.2f} | {r['error_pct']:+.2f}% | "
                     f"{r['engine_peak']} / {r['trace_peak']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2-layer copies of the models")
    parser.add_argument("--defaults-only", action="store_true", help="only TRL's defaults (LoRA and full), at full depth in minutes")
    parser.add_argument("--budget-s", type=float, default=None, help="start no new row after this many seconds (partial results are written)")
    parser.add_argument("--skip-defaults", action="store_true", help="skip TRL's defaults rows (already in trainer_traces-defaults.md)")
    parser.add_argument("--rescore", action="store_true", help="re-estimate the rows of the existing CSV with the current engine (no new traces)")
    parser.add_argument("--planned", type=int, default=None, help="with --rescore: how many rows the run had planned")
    args = parser.parse_args(argv)
    skip = frozenset(label for label, _ in settings() if "TRL defaults" in label) if args.skip_defaults else frozenset()
    planned = len(MODELS) * (2 if args.defaults_only else len(settings()) - len(skip))
    stem = "trainer_traces-quick" if args.quick else ("trainer_traces-defaults" if args.defaults_only else "trainer_traces")
    if args.rescore:
        rows = rescore(RESULTS / f"{stem}.csv", args.quick)
        planned = args.planned or len(rows)
    else:
        rows = run(args.quick, args.defaults_only, args.budget_s, skip)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(render(rows, args.quick, planned, rescored=args.rescore))
    with (RESULTS / f"{stem}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
