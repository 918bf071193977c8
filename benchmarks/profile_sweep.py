"""Estimate vs trace per mode (inference, LoRA, full) over transformers' config classes, 2-layer copies.

    python benchmarks/profile_sweep.py [--budget-minutes 40] [--types TYPE ...]

A companion to benchmarks/architecture_sweep.py (answered vs refused, parameters): for each
model_type (transformers' default config, cut to 2 decoder layers) it makes a trace profile
(`calculator.profile`, fitted at four (batch, tokens) points) and compares, at a workload that is
not a fit point (batch 3 x 1,536 tokens; inference generates 4 tokens), the estimate with a direct
FakeTensor trace of the same copy (`calculator.verify.trace_workload`):

- "profile": the estimate with the profile (the path for architectures outside the analytic
  families: weights/optimizer/adapters from the spec, activations/KV/logits from the profile);
- "analytic": the estimate without it (the analytic formulas; for inventory specs the Llama-like
  guess the estimate warns about).

Error % = (estimate - trace) / trace of PyTorch-allocated bytes. Bounded: a total time budget
and 300 s per profile; types that do not build, do not trace, or run out of time are rows with
the reason. Writes benchmarks/results/profile_sweep.csv and .md (p50 / p90 of |error| per mode).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calculator.estimate import estimate  # noqa: E402
from calculator.profile import make_profile  # noqa: E402
from calculator.spec import model_spec_from_config  # noqa: E402
from calculator.verify import trace_workload  # noqa: E402
from calculator.verify.compare import cut_config  # noqa: E402
from calculator.workload import Workload  # noqa: E402

# Issue 9's refused / wrong list first, then analytic families' defaults (a check of the formulas too).
TYPES = (
    "phi", "phimoe", "falcon", "bloom", "mpt", "cohere2", "glm4", "nemotron", "olmoe", "granitemoe", "ernie4_5", "ernie4_5_moe",
    "exaone4", "seed_oss", "smollm3", "starcoder2", "mamba2", "falcon_h1", "lfm2", "qwen3_next", "granitemoehybrid", "jamba", "mamba",
    "llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "mixtral", "gemma2", "gemma3_text", "phi3", "gpt_neox", "gpt2", "gptj", "olmo2",
    "modernbert", "deberta-v2",
)
CSV_OUT = ROOT / "benchmarks" / "results" / "profile_sweep.csv"
MD_OUT = ROOT / "benchmarks" / "results" / "profile_sweep.md"
FIELDS = ("model_type", "mode", "counted_by", "trace_bytes", "profile_bytes", "profile_err_pct", "analytic_bytes", "analytic_err_pct",
          "profile_seconds", "status")


def workloads() -> dict[str, Workload]:
    return {
        "inference": Workload(mode="inference", precision="bf16", context_length=1536, generated_tokens=4, batch_size=3),
        "lora": Workload(mode="lora", precision="bf16", context_length=1536, batch_size=3),
        "full": Workload(mode="full", precision="bf16", context_length=1536, batch_size=3),
    }


def sweep_type(mt: str, deadline: float) -> list[dict]:
    from transformers import AutoConfig

    rows: list[dict] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = cut_config(AutoConfig.for_model(mt).to_dict(), 2)
    spec = model_spec_from_config(mt, cfg)
    modes = ("inference",) if (not spec.is_causal_lm or spec.is_encoder_decoder) else ("inference", "lora", "full")
    seconds = max(min(300.0, deadline - time.monotonic()), 1.0)
    profile = make_profile(cfg, modes=modes, check_point=None, max_seconds=seconds)
    pspec = dataclasses.replace(spec, profile=profile)
    plain = dataclasses.replace(spec, profile=None)
    for mode in modes:
        w = workloads()[mode]
        base = {"model_type": mt, "mode": mode, "counted_by": spec.counted_by, "profile_seconds": round(profile.seconds, 1)}
        if mode not in profile.modes:
            rows.append({**base, "status": "not profiled: " + "; ".join(n for n in profile.notes if mode in n)[:200]})
            continue
        try:
            tr = trace_workload(cfg, w, model_id=mt, max_seconds=max(deadline - time.monotonic(), 1.0))
        except Exception as e:  # a row with the reason, not the end of the sweep
            rows.append({**base, "status": f"trace failed: {type(e).__name__}: {str(e)[:160]}"})
            continue
        p = estimate(pspec, w).torch_allocated_bytes
        a = estimate(plain, w).torch_allocated_bytes
        rows.append({**base, "trace_bytes": tr.peak_bytes, "profile_bytes": p, "profile_err_pct": round((p - tr.peak_bytes) / tr.peak_bytes * 100, 2),
                     "analytic_bytes": a, "analytic_err_pct": round((a - tr.peak_bytes) / tr.peak_bytes * 100, 2), "status": "ok"})
    return rows


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def summary(rows: list[dict]) -> str:
    lines = [
        "# Estimate vs trace per mode (2-layer copies of transformers' default configs)",
        "",
        "Made by `python benchmarks/profile_sweep.py` (torch 2.13 CPU, transformers 5.24, peft 0.21). Workload: bf16, batch 3 x 1,536 "
        "tokens (not a fit point; inference generates 4 tokens), SDPA, LoRA r=16 all-linear with fp32 adapters, AdamW. "
        "Error = (estimate - trace) / trace of PyTorch-allocated bytes; |error| quantiles. \"profile\": the estimate with a trace "
        "profile (the path for architectures outside the analytic families); \"formulas alone\": the analytic formulas (for "
        "inventory specs, the Llama-like guess the estimate warns about).",
        "",
        "| mode | models | profile p50 | profile p90 | within 5% (profile) | formulas alone p50 | formulas alone p90 | within 5% (formulas) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("inference", "lora", "full"):
        ok = [r for r in rows if r["mode"] == mode and r["status"] == "ok"]
        if not ok:
            continue
        prof = [abs(r["profile_err_pct"]) for r in ok]
        ana = [abs(r["analytic_err_pct"]) for r in ok]
        within = sum(1 for v in prof if v <= 5)
        ana_cells = f"{_quantile(ana, 0.5):.2f}% | {_quantile(ana, 0.9):.2f}% | {sum(1 for v in ana if v <= 5)}/{len(ana)}"
        lines.append(f"| {mode} | {len(ok)} | {_quantile(prof, 0.5):.2f}% | {_quantile(prof, 0.9):.2f}% | {within}/{len(ok)} | {ana_cells} |")
    failed = [r for r in rows if r["status"] != "ok"]
    lines += ["", "## Per model", "", "| model_type | mode | counted by | trace GiB | profile err | analytic err | profile s | status |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gib = f"{r['trace_bytes'] / 2**30:.3f}" if r.get("trace_bytes") else ""
        pe = f"{r['profile_err_pct']:+.2f}%" if r.get("profile_err_pct") is not None and r.get("status") == "ok" else ""
        ae = f"{r['analytic_err_pct']:+.2f}%" if r.get("analytic_err_pct") is not None and r.get("status") == "ok" else ""
        lines.append(f"| {r['model_type']} | {r['mode']} | {r.get('counted_by', '')} | {gib} | {pe} | {ae} | {r.get('profile_seconds', '')} | "
                     f"{str(r['status'])[:120]} |")
    lines.append(f"\n{len(failed)} row(s) not compared (reason in the status column).")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=40.0)
    parser.add_argument("--types", nargs="*", default=list(TYPES))
    parser.add_argument("--append", action="store_true", help="keep the rows already in the CSV and skip their model types")
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget_minutes * 60
    rows: list[dict] = []
    if args.append and CSV_OUT.exists():
        with CSV_OUT.open() as f:
            for r in csv.DictReader(f):
                if r["status"].startswith("not run"):
                    continue
                for k in ("trace_bytes", "profile_bytes", "analytic_bytes"):
                    r[k] = int(r[k]) if r.get(k) else None
                for k in ("profile_err_pct", "analytic_err_pct"):
                    r[k] = float(r[k]) if r.get(k) else None
                rows.append(r)
    done = {r["model_type"] for r in rows}
    for mt in [t for t in args.types if t not in done]:
        if time.monotonic() > deadline:
            rows.append({"model_type": mt, "mode": "", "status": "not run: sweep time budget spent"})
            continue
        try:
            new = sweep_type(mt, deadline)
        except Exception as e:
            new = [{"model_type": mt, "mode": "", "status": f"{type(e).__name__}: {str(e)[:160]}"}]
        rows += new
        for r in new:
            print({k: r.get(k) for k in ("model_type", "mode", "profile_err_pct", "analytic_err_pct", "status")}, flush=True)
        with CSV_OUT.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        MD_OUT.write_text(summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
