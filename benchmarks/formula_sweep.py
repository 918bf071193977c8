"""The analytic formulas alone vs a FakeTensor trace, for every model type they claim (2-layer copies).

    python benchmarks/formula_sweep.py [--types TYPE ...] [--retrace] [--budget-minutes 30]

A quick companion of benchmarks/profile_sweep.py that makes no trace profile: for each model_type
that `calculator.spec` builds with its hand-written formulas (transformers 5.24's default config,
cut to 2 decoder layers by `calculator.verify.compare.cut_config`), it traces the workload once
per mode (`calculator.verify.trace_workload`) and compares the estimate without a profile. Workload
as in profile_sweep: bf16, batch 3 x 1,536 tokens (inference generates 4 tokens), SDPA (transformers'
own fallback where the class has none), LoRA r=16 all-linear with fp32 adapters, AdamW. Encoders and
encoder-decoders: inference only (what the harness traces for them).

Traces depend only on the libraries, not on the formulas, so they are kept in
benchmarks/results/formula_sweep_traces.csv and reused (`--retrace` redoes them): after a change
to calculator/memory.py the comparison reruns in seconds. Writes benchmarks/results/formula_sweep.md
(error per model and mode, and the estimate's peak phase vs the trace's, per component).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calculator.estimate import estimate  # noqa: E402
from calculator.spec import SUPPORTED_MODEL_TYPES, model_spec_from_config  # noqa: E402
from calculator.verify.compare import as_on_gpu, cut_config, engine_groups, trace_groups  # noqa: E402
from calculator.workload import Workload  # noqa: E402

TRACES = ROOT / "benchmarks" / "results" / "formula_sweep_traces.csv"
MD_OUT = ROOT / "benchmarks" / "results" / "formula_sweep.md"
CSV_OUT = ROOT / "benchmarks" / "results" / "formula_sweep.csv"
# The errors before the formulas were fixed for issue 9 (first run of this script), shown next to the new ones.
BEFORE = ROOT / "benchmarks" / "results" / "formula_sweep-before.csv"
TRACE_FIELDS = ("model_type", "mode", "versions", "peak_bytes", "peak_phase", "groups", "phase_peaks", "seconds", "status")
MODES = ("inference", "lora", "full")


def workloads() -> dict[str, Workload]:
    return {
        "inference": Workload(mode="inference", precision="bf16", context_length=1536, generated_tokens=4, batch_size=3),
        "lora": Workload(mode="lora", precision="bf16", context_length=1536, batch_size=3),
        "full": Workload(mode="full", precision="bf16", context_length=1536, batch_size=3),
    }


def versions() -> str:
    import peft
    import torch
    import transformers

    return f"torch {torch.__version__.split('+')[0]}, transformers {transformers.__version__}, peft {peft.__version__}"


def default_config(mt: str) -> dict | None:
    from transformers import AutoConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return cut_config(AutoConfig.for_model(mt).to_dict(), 2)
        except (ValueError, KeyError):
            return None  # no config class of that name in transformers (higgs_audio, yi, ...)


def analytic_types() -> list[str]:
    out = []
    for mt in SUPPORTED_MODEL_TYPES:
        cfg = default_config(mt)
        if cfg is None:
            continue
        if model_spec_from_config(mt, cfg).counted_by == "analytic":
            out.append(mt)
    return out


def modes_for(spec) -> tuple[str, ...]:
    return ("inference",) if (not spec.is_causal_lm or spec.is_encoder_decoder) else MODES


def load_traces() -> dict[tuple[str, str], dict]:
    if not TRACES.exists():
        return {}
    with TRACES.open() as f:
        return {(r["model_type"], r["mode"]): r for r in csv.DictReader(f)}


def save_traces(rows: dict[tuple[str, str], dict]) -> None:
    with TRACES.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TRACE_FIELDS)
        writer.writeheader()
        writer.writerows(rows[k] for k in sorted(rows))


def run_trace(mt: str, mode: str, cfg: dict, max_seconds: float) -> dict:
    from calculator.verify import trace_workload

    started = time.monotonic()
    base = {"model_type": mt, "mode": mode, "versions": versions()}
    try:
        tr = trace_workload(cfg, workloads()[mode], model_id=mt, max_seconds=max_seconds)
    except Exception as e:  # a row with the reason, not the end of the sweep
        return {**base, "seconds": round(time.monotonic() - started, 1), "status": f"{type(e).__name__}: {str(e)[:160]}"}
    return {**base, "peak_bytes": tr.peak_bytes, "peak_phase": tr.peak_phase, "groups": json.dumps(trace_groups(tr.peak_by_category)),
            "phase_peaks": json.dumps(tr.phase_peaks), "seconds": round(tr.seconds, 1), "status": "ok"}


def compare(mt: str, mode: str, cfg: dict, trace_row: dict) -> dict:
    import dataclasses

    spec = dataclasses.replace(model_spec_from_config(mt, cfg), profile=None)
    est = estimate(spec, workloads()[mode])
    peak = int(trace_row["peak_bytes"])
    note = ""
    if spec.v_head_dim and spec.v_head_dim != spec.head_dim:
        # CPU SDPA would fall back to its math kernel when the q/k head size differs from v's; the trace runs the
        # GPU's memory-efficient kernel there instead (calculator/verify/_sdpa.py).
        note = (f"q/k head {spec.head_dim} != v head {spec.v_head_dim}: SDPA traced as the GPU's memory-efficient kernel "
                "(output + fp32 logsumexp), not CPU's math path")
    return {"model_type": mt, "mode": mode, "trace": peak, "estimate": est.torch_allocated_bytes, "layers": spec.num_hidden_layers,
            "trace_note": note,
            "err": (est.torch_allocated_bytes - peak) / peak * 100, "est_phase": est.peak_phase, "trace_phase": trace_row["peak_phase"],
            "est_groups": engine_groups(est), "trace_groups": json.loads(trace_row["groups"]), "attention": est.workload.attention}


def _q(values: list[float], q: float) -> float:
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def _gib(n: int) -> str:
    return f"{n / 2**30:.3f}"


def before_errors() -> dict[tuple[str, str], float]:
    if not BEFORE.exists():
        return {}
    with BEFORE.open() as f:
        return {(r["model_type"], r["mode"]): float(r["err"]) for r in csv.DictReader(f)}


def summary(rows: list[dict], failed: list[dict], ver: str) -> str:
    before = before_errors()
    lines = [
        "# The analytic formulas alone vs a trace (copies of transformers' default configs cut to 2 layers)",
        "",
        f"Made by `python benchmarks/formula_sweep.py` ({ver}). Every model type `calculator/spec.py` builds with its own "
        "formulas; workload bf16, batch 3 x 1,536 tokens (inference generates 4 tokens), SDPA (eager where transformers has no "
        "SDPA for the class), LoRA r=16 all-linear with fp32 adapters, AdamW. Error = (estimate - trace) / trace of "
        "PyTorch-allocated bytes, no trace profile. `cut_config` cuts the depth key the config class maps "
        "`num_hidden_layers` to (GPT-2, GPT-J, GPT-BigCode `n_layer`) and every per-layer field with it (the layers column).",
        "",
        "| mode | models | p50 abs err | p90 abs err | max abs err | within 5% | before: p50 / p90 / within 5% (same models) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        errs = [abs(r["err"]) for r in rows if r["mode"] == mode]
        old = [abs(before[(r["model_type"], mode)]) for r in rows if r["mode"] == mode and (r["model_type"], mode) in before]
        was = f"{_q(old, 0.5):.2f}% / {_q(old, 0.9):.2f}% / {sum(1 for e in old if e <= 5)}/{len(old)}" if old else ""
        if errs:
            lines.append(f"| {mode} | {len(errs)} | {_q(errs, 0.5):.2f}% | {_q(errs, 0.9):.2f}% | {max(errs):.2f}% | "
                         f"{sum(1 for e in errs if e <= 5)}/{len(errs)} | {was} |")
    lines += ["", "## Per model (GiB; components at each side's own peak: weights / activations / gradients / optimizer / logits)", "",
              "| model_type | layers | mode | attention | trace | estimate | error | before | trace phase | estimate phase | trace act+temp | "
              "estimate act | estimate logits |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tg, eg = r["trace_groups"], r["est_groups"]
        t_act = tg.get("activations", 0) + tg.get("temporaries", 0)
        old = before.get((r["model_type"], r["mode"]))
        attention = r["attention"] + (f" ({r['note']})" if r.get("note") else "")
        lines.append(f"| {r['model_type']} | {r['layers']} | {r['mode']} | {attention} | {_gib(r['trace'])} | {_gib(r['estimate'])} | "
                     f"{r['err']:+.2f}% | {'' if old is None else f'{old:+.2f}%'} | {r['trace_phase']} | {r['est_phase']} | {_gib(t_act)} | "
                     f"{_gib(eg.get('activations', 0))} | {_gib(eg.get('logits', 0))} |")
    if failed:
        lines += ["", "## Not compared", "", "| model_type | mode | why |", "|---|---|---|"]
        lines += [f"| {r['model_type']} | {r['mode']} | {r['status'][:150]} |" for r in failed]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", nargs="*", default=None, help="model types (default: every analytic one)")
    parser.add_argument("--retrace", action="store_true", help="trace again even when a trace is stored")
    parser.add_argument("--budget-minutes", type=float, default=30.0)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget_minutes * 60
    types = args.types or analytic_types()
    traces = load_traces()
    ver = versions()
    rows, failed = [], []
    for mt in types:
        cfg = default_config(mt)
        if cfg is None:
            continue
        spec = model_spec_from_config(mt, cfg)
        for mode in modes_for(spec):
            key = (mt, mode)
            if args.retrace or key not in traces or traces[key]["versions"] != ver:
                if time.monotonic() > deadline:
                    failed.append({"model_type": mt, "mode": mode, "status": "not run: time budget spent"})
                    continue
                traces[key] = run_trace(mt, mode, as_on_gpu(cfg, mode)[0], max(deadline - time.monotonic(), 1.0))
                if not args.no_write:
                    save_traces(traces)
            t = traces[key]
            if t["status"] != "ok":
                failed.append(t)
                continue
            run_cfg, note = as_on_gpu(cfg, mode)
            r = compare(mt, mode, run_cfg, t)
            r["note"] = "; ".join(n for n in (note, r["trace_note"]) if n)
            rows.append(r)
            print(f"{mt:18s} {mode:9s} trace {_gib(r['trace'])} est {_gib(r['estimate'])} {r['err']:+7.2f}%  "
                  f"({r['trace_phase']} / {r['est_phase']})", flush=True)
    if not args.no_write and not args.types:
        MD_OUT.write_text(summary(rows, failed, ver))
        with CSV_OUT.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=("model_type", "mode", "trace", "estimate", "err", "note"), extrasaction="ignore")
            writer.writeheader()
            writer.writerows({**r, "err": round(r["err"], 2)} for r in rows)
    elif args.types:
        print(summary(rows, failed, ver))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
