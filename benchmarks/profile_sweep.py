"""Estimate vs trace per mode (inference, LoRA, full) over every buildable config class of transformers and the bundled real configs.

    python benchmarks/profile_sweep.py [--budget-minutes 60] [--names NAME ...] [--fresh]
    python benchmarks/profile_sweep.py --summary-only      # rewrite the .md from the CSV
    python benchmarks/profile_sweep.py --refresh           # redo the estimates of kept profiles with the current code
    python benchmarks/profile_sweep.py --refresh --remake [--names ...]  # make the profiles again too (no trace)

A companion to benchmarks/architecture_sweep.py (answered vs refused, parameters), whose CSV lists
the targets: every config class whose default builds on the meta device and every bundled real
config (calculator/data/models, /work/shared/model-configs). Issue 9's named architectures go
first, then the real configs, then decoders, vision-language, encoder-decoder, encoder and the
other classes. Each config is cut to 2 decoder layers (`verify.compare.cut_config`; every width
kept), a trace profile is made (`calculator.profile.make_profile`) and, at a workload off the fit
points (bf16, batch 3 x 1,536 tokens, or 3/4 of the positions where the model has fewer;
inference generates 4 tokens), the estimate is compared with a direct FakeTensor trace of the
same copy (`calculator.verify.trace_workload`):

- "profile": the estimate with the profile (the path for architectures outside the analytic
  families: weights/optimizer/adapters from the spec, activations/KV/logits from the profile);
- "analytic": the estimate without it (the analytic formulas; for inventory specs the Llama-like
  guess the estimate warns about).

The estimate a user gets takes the analytic path for the analytic families (counted_by
"analytic") and the profile path for the others; the summary reports each path's own error.

Error % = (estimate - trace) / trace of PyTorch-allocated bytes. Resumable: rows are appended to
the CSV as each config finishes and configs already in it are skipped, so the sweep runs in chunks
(`--budget-minutes` per chunk; a config is not started once the budget is spent). Each config has
at most PROFILE_SECONDS for its profile and TRACE_SECONDS per mode for the trace; a config that
fails is a row with the reason. CPU seconds (`time.process_time`) are recorded, so the cost does
not depend on what else shares the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CSV_OUT = ROOT / "benchmarks" / "results" / "profile_sweep.csv"
MD_OUT = ROOT / "benchmarks" / "results" / "profile_sweep.md"
ARCH_CSV = ROOT / "benchmarks" / "results" / "architecture_sweep.csv"
PROFILES = Path.home() / ".cache" / "vram-calculator" / "sweep-profiles"
FIELDS = ("name", "source", "kind", "mode", "counted_by", "trace_bytes", "profile_bytes", "profile_err_pct", "analytic_bytes",
          "analytic_err_pct", "profile_cpu_s", "trace_cpu_s", "context", "status", "code")
PROFILE_SECONDS = 480.0  # wall seconds: the machine is shared, a CPU second can take four
TRACE_SECONDS = 240.0
MODES = ("inference", "lora", "full")
# Issue 9's refused / wrong list first (and the failures of the first sweep), then the real configs.
FIRST = (
    "phi", "phimoe", "falcon", "bloom", "mpt", "cohere2", "glm4", "olmoe", "granitemoe", "ernie4_5", "ernie4_5_moe",
    "exaone4", "seed_oss", "smollm3", "starcoder2", "mamba2", "falcon_h1", "lfm2", "qwen3_next", "granitemoehybrid",
    "llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "mixtral", "gemma2", "gemma3_text", "phi3", "gpt_neox", "gpt2", "gptj", "olmo2",
    "modernbert", "deberta-v2", "bart", "whisper", "marian", "llava", "qwen2_vl",
)
# Mamba with transformers' reference selective scan loops over the tokens on CPU (minutes per
# profile on a shared machine): after the real configs.
SLOW = ("jamba", "mamba", "falcon_mamba")
KIND_ORDER = ("decoder", "vision-language", "encoder-decoder", "encoder", "other")


def code_version() -> str:
    """The commit the figures were made with (a row's `code`: the sweep runs in chunks, across commits)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def targets() -> list[dict[str, str]]:
    """Every buildable row of the architecture sweep, in sweep order."""
    with ARCH_CSV.open() as f:
        rows = [r for r in csv.DictReader(f) if r["buildable"] == "True"]
    first = {n: i for i, n in enumerate(FIRST)}

    def key(r: dict[str, str]) -> tuple:
        if r["name"] in first:
            return (0, first[r["name"]], "")
        if r["source"] != "transformers default":
            return (1, 0, r["name"])
        if r["name"] in SLOW:
            return (1, 1, r["name"])
        return (2 + KIND_ORDER.index(r["kind"]) if r["kind"] in KIND_ORDER else 9, 0, r["name"])

    return sorted(rows, key=key)


def config_of(target: dict[str, str]) -> dict:
    from transformers import AutoConfig

    if target["source"] == "transformers default":
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return AutoConfig.for_model(target["name"]).to_dict()
    from architecture_sweep import real_rows

    for row in real_rows(None):
        if row.name == target["name"]:
            return dict(row.config)
    raise KeyError(target["name"])


def swept_config(target: dict[str, str]) -> tuple[dict, str]:
    """The 2-layer copy that is profiled and traced, and a note when it differs from the config.
    Training is traced with attention dropout 0 (`verify.compare.as_on_gpu`, the same adjustment as
    benchmarks/formula_sweep.py): CPU SDPA with dropout takes its math path and stores seq x seq
    tensors, a GPU's kernels apply dropout inside and do not. Inference runs in eval mode, where
    dropout does nothing, so one config serves every mode."""
    from calculator.verify.compare import as_on_gpu, cut_config

    return as_on_gpu(cut_config(config_of(target), 2), "full")


def workload(mode: str, context: int):
    from calculator.workload import Workload

    if mode == "inference":
        # speech_codec off: the trace is the language model's generate(); a TTS model's audio codec is another
        # model (calculator/speech.py), checked by its own trace (benchmarks/codec_decode_trace.py).
        return Workload(mode="inference", precision="bf16", context_length=context, generated_tokens=4, batch_size=3, speech_codec=False)
    return Workload(mode=mode, precision="bf16", context_length=context, batch_size=3)


def sweep_one(target: dict[str, str]) -> list[dict]:
    from calculator.estimate import estimate
    from calculator.profile import _position_limit, make_profile, save_profile
    from calculator.spec import model_spec_from_config
    from calculator.verify import trace_workload

    name = target["name"]
    base = {"name": name, "source": target["source"], "kind": target["kind"], "code": code_version()}
    try:
        cfg, _ = swept_config(target)
        spec = model_spec_from_config(name, cfg)
    except Exception as e:  # a row with the reason, not the end of the sweep
        return [{**base, "mode": "", "status": f"not answered: {type(e).__name__}: {_one_line(e)}"}]
    modes = ("inference",) if (not spec.is_causal_lm or spec.is_encoder_decoder) else MODES
    limit = _position_limit(cfg)
    context = 1536 if not limit or limit >= 2048 else max(limit * 3 // 4, 8)
    base.update(counted_by=spec.counted_by, context=context)
    c0 = time.process_time()
    try:
        profile = make_profile(cfg, modes=modes, check_point=None, max_seconds=PROFILE_SECONDS)
    except Exception as e:
        return [{**base, "mode": m, "profile_cpu_s": round(time.process_time() - c0, 1),
                 "status": f"profile failed: {type(e).__name__}: {_one_line(e)}"} for m in modes]
    base["profile_cpu_s"] = round(time.process_time() - c0, 1)
    save_profile(profile, profile_path(name))
    pspec = dataclasses.replace(spec, profile=profile)
    plain = dataclasses.replace(spec, profile=None)
    rows = []
    for mode in modes:
        w = workload(mode, context)
        if mode not in profile.modes:
            why = "; ".join(n for n in profile.notes if n.startswith(f"{mode} was not profiled")) or "no fit"
            rows.append({**base, "mode": mode, "status": f"not profiled: {_one_line(why)}"})
            continue
        t0 = time.process_time()
        try:
            tr = trace_workload(cfg, w, model_id=name, max_seconds=TRACE_SECONDS)
        except Exception as e:
            rows.append({**base, "mode": mode, "trace_cpu_s": round(time.process_time() - t0, 1),
                         "status": f"trace failed: {type(e).__name__}: {_one_line(e)}"})
            continue
        p = estimate(pspec, w).torch_allocated_bytes
        a = estimate(plain, w).torch_allocated_bytes
        rows.append({**base, "mode": mode, "trace_bytes": tr.peak_bytes, "profile_bytes": p,
                     "profile_err_pct": round((p - tr.peak_bytes) / tr.peak_bytes * 100, 2), "analytic_bytes": a,
                     "analytic_err_pct": round((a - tr.peak_bytes) / tr.peak_bytes * 100, 2),
                     "trace_cpu_s": round(time.process_time() - t0, 1), "status": "ok"})
    return rows


def profile_path(name: str) -> Path:
    """Where the sweep keeps each config's profile (outside the repo), so `--refresh` can redo the
    estimates with the current formulas without tracing again."""
    return PROFILES / (name.replace("/", "__") + ".json")


def refresh(rows: list[dict], *, kept_only: bool = False, remake: bool = False, names: set[str] | None = None,
            deadline: float | None = None, save: Callable[[], None] | None = None) -> int:
    """Recompute profile_bytes / analytic_bytes of every compared row with the code as it is now (the
    trace bytes stay: the trace harness is the truth), from the profile kept for it. A row whose
    profile was not kept (swept on another machine) has it made again (no trace), or, with
    `kept_only`, keeps its figures; `remake` makes every profile again (after a change in how
    profiles are made). A profile that now fails turns the row's status into the reason. `names`
    limits the configs, `deadline` (time.monotonic) stops before the next config, `save` runs after
    each config so a long refresh keeps what it did. Returns rows redone."""
    import json

    from calculator.estimate import estimate
    from calculator.profile import MemoryProfile, make_profile, save_profile
    from calculator.spec import model_spec_from_config

    by_name = {t["name"]: t for t in targets()}
    code = code_version()
    done = 0
    remade: set[str] = set()
    failed: dict[str, str] = {}
    configs: dict[str, dict] = {}
    specs: dict[str, tuple[Any, Any]] = {}  # name -> (spec, profile), read once for a config's rows

    def config(name: str) -> dict:
        if name not in configs:
            configs[name] = swept_config(by_name[name])[0]
        return configs[name]
    for r in rows:
        name = r["name"]
        if r["status"] != "ok" or name not in by_name or (names is not None and name not in names):
            continue
        path = profile_path(name)
        if not path.exists() and kept_only:
            continue
        if name in failed:
            r.update(profile_bytes="", profile_err_pct=None, status=failed[name])
            continue
        if name not in remade and (remake or not path.exists()):
            if deadline is not None and time.monotonic() > deadline:
                continue
            modes = [m for m in MODES if any(x["name"] == name and x["mode"] == m and x["status"] == "ok" for x in rows)]
            c0 = time.process_time()
            try:
                save_profile(make_profile(config(name), modes=modes, check_point=None, max_seconds=PROFILE_SECONDS), path)
            except Exception as e:  # the reason in the row, not the end of the refresh
                failed[name] = f"profile failed: {type(e).__name__}: {_one_line(e)}"
                r.update(profile_bytes="", profile_err_pct=None, status=failed[name])
                continue
            finally:
                remade.add(name)
            for x in rows:
                if x["name"] == name:
                    x["profile_cpu_s"] = round(time.process_time() - c0, 1)
        if name not in specs:
            specs[name] = (model_spec_from_config(name, config(name)), MemoryProfile.from_json(json.loads(path.read_text())))
        spec, profile = specs[name]
        w = workload(r["mode"], int(r["context"]))
        trace = int(r["trace_bytes"])
        if r["mode"] not in profile.modes:
            r.update(profile_bytes="", profile_err_pct=None, status=f"not profiled: {r['mode']} was not profiled on refresh")
            continue
        p = estimate(dataclasses.replace(spec, profile=profile), w).torch_allocated_bytes
        a = estimate(dataclasses.replace(spec, profile=None), w).torch_allocated_bytes
        r.update(profile_bytes=p, analytic_bytes=a, profile_err_pct=round((p - trace) / trace * 100, 2),
                 analytic_err_pct=round((a - trace) / trace * 100, 2), counted_by=spec.counted_by, code=code)
        done += 1
        if save is not None and name in remade:
            save()
    return done


def _one_line(e: object) -> str:
    return " ".join(str(e).split())[:200]


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def read_rows() -> list[dict]:
    if not CSV_OUT.exists():
        return []
    with CSV_OUT.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("profile_err_pct", "analytic_err_pct"):
            r[k] = float(r[k]) if r.get(k) else None
    return rows


def path_of(r: dict) -> str:
    """The path the estimate takes for this config: the formulas for the analytic families, else the profile."""
    return "analytic" if r["counted_by"] == "analytic" else "profile"


def error_of(r: dict) -> float:
    return r["analytic_err_pct"] if path_of(r) == "analytic" else r["profile_err_pct"]


def _reason(status: str) -> str:
    """A failure's class, for the counts: the stage and the exception type."""
    head = status.split(":")[0]
    words = status.split(":")
    return f"{head}: {words[1].strip()}" if len(words) > 2 else head


def _cells(values: list[float]) -> str:
    if not values:
        return "- | - | -"
    return f"{_quantile(values, 0.5):.2f}% | {_quantile(values, 0.9):.2f}% | {sum(1 for v in values if v <= 5)}/{len(values)}"


def summary(rows: list[dict], all_targets: list[dict[str, str]]) -> str:
    import peft
    import torch
    import transformers

    # Pre-quantized checkpoints (gptq, mxfp4, fp8): the trace runs the unquantized architecture in bf16
    # (it drops quantization_config), the estimate counts the quantized weights: not comparable.
    quantized = {t["name"] for t in all_targets if t["source"] != "transformers default" and _is_quantized(config_of(t))}
    excluded = [r for r in rows if r["name"] in quantized and r["status"] == "ok"]
    rows = [r for r in rows if r["name"] not in quantized]
    done = {r["name"] for r in rows} | quantized
    targets_by_name = {t["name"]: t for t in all_targets}
    by_kind_targets = Counter(t["kind"] if t["source"] == "transformers default" else "real config" for t in all_targets)
    lines = [
        "# Estimate vs trace per mode: every buildable config class of transformers and the bundled real configs",
        "",
        f"Made by `python benchmarks/profile_sweep.py` (torch {torch.__version__}, transformers {transformers.__version__}, "
        f"peft {peft.__version__}), resumable, run in chunks on a shared 2-core machine. Each config is cut to 2 decoder layers "
        "(every width kept); the workload is bf16, batch 3 x 1,536 tokens (3/4 of the positions where the model has fewer; not a "
        "fit point; inference generates 4 tokens), SDPA, LoRA r=16 all-linear with fp32 adapters, AdamW. Error = (estimate - trace) "
        "/ trace of PyTorch-allocated bytes of a FakeTensor trace of the same copy; quantiles of |error|.",
        "",
        "*Path*: the estimate a user gets, the analytic formulas for the families written in `spec.py` (counted_by analytic), "
        "the trace profile for every other architecture. *Profile on every config*: the profile path forced on all of them, "
        "the analytic families included (what the Verification page's \"analytic vs profile\" shows).",
        "",
        "## Coverage",
        "",
        "| configs | targets | swept | profiled | compared (any mode) | failed or not profiled (any mode) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in (*KIND_ORDER, "real config"):
        names = [t["name"] for t in all_targets if (t["kind"] if t["source"] == "transformers default" else "real config") == kind]
        mine = [r for r in rows if r["name"] in set(names)]
        swept = {r["name"] for r in mine}
        profiled = {r["name"] for r in mine if not r["status"].startswith(("profile failed", "not answered"))}
        compared = {r["name"] for r in mine if r["status"] == "ok"}
        failed = {r["name"] for r in mine if r["status"] != "ok"}
        lines.append(f"| {kind} | {by_kind_targets[kind]} | {len(swept)} | {len(profiled)} | {len(compared)} | {len(failed)} |")
    lines.append(f"| all | {len(all_targets)} | {len(done)} | | | |")
    lines += ["", f"{len(all_targets) - len(done)} targets not swept yet (time budget); the CSV lists every row swept.", "",
              "## Error per mode, by path", "",
              "| mode | path | compared | p50 | p90 | within 5% |", "|---|---|---:|---:|---:|---:|"]
    ok = [r for r in rows if r["status"] == "ok"]
    for mode in MODES:
        for path in ("analytic", "profile"):
            vals = [abs(error_of(r)) for r in ok if r["mode"] == mode and path_of(r) == path]
            lines.append(f"| {mode} | {path} | {len(vals)} | {_cells(vals)} |")
        vals = [abs(error_of(r)) for r in ok if r["mode"] == mode]
        lines.append(f"| {mode} | **either (what users get)** | {len(vals)} | {_cells(vals)} |")
    lines += ["", "## Profile on every config vs formulas alone", "",
              "| mode | compared | profile p50 | profile p90 | within 5% | formulas alone p50 | formulas alone p90 | within 5% |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode in MODES:
        sel = [r for r in ok if r["mode"] == mode]
        if sel:
            lines.append(f"| {mode} | {len(sel)} | {_cells([abs(r['profile_err_pct']) for r in sel])} | "
                         f"{_cells([abs(r['analytic_err_pct']) for r in sel])} |")
    zeroed = sorted(n for n in {r["name"] for r in rows if r["mode"] in ("lora", "full")} if n in targets_by_name and swept_config(targets_by_name[n])[1])
    lines += ["", f"Attention dropout set to 0 in training for {len(zeroed)} configs ({', '.join(zeroed) or 'none'}): CPU SDPA "
              "with dropout takes its math path and stores [batch, heads, seq, seq] tensors, a GPU's flash / memory-efficient "
              "kernels apply dropout inside the kernel; the trace measures what a GPU runs (`verify.compare.as_on_gpu`, shared "
              "with benchmarks/formula_sweep.py)."]
    lines += ["", f"Left out of the quantiles: {len(quantized)} pre-quantized real configs ({', '.join(sorted(quantized))}); the trace "
              "drops quantization_config and runs bf16 weights, the estimate counts the quantized ones "
              f"({len(excluded)} rows in the CSV)."]
    failures = Counter(_reason(r["status"]) for r in rows if r["status"] != "ok")
    lines += ["", "## Not compared, by reason", "", "| reason | rows |", "|---|---:|"]
    lines += [f"| {reason} | {n} |" for reason, n in failures.most_common()]
    outliers = sorted((r for r in ok if abs(error_of(r)) > 5), key=lambda r: -abs(error_of(r)))
    lines += ["", "## Outside 5% on the path users get", "", "| config | mode | path | error | profile err | analytic err |", "|---|---|---|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['mode']} | {path_of(r)} | {error_of(r):+.2f}% | {r['profile_err_pct']:+.2f}% | {r['analytic_err_pct']:+.2f}% |"
              for r in outliers]
    cpu = [float(r["profile_cpu_s"]) for r in {r["name"]: r for r in rows if r.get("profile_cpu_s")}.values()]
    if cpu:
        lines += ["", f"Profile CPU seconds per config (2-layer copy, all its modes): median {statistics.median(cpu):.1f} s, "
                      f"p90 {_quantile(cpu, 0.9):.1f} s over {len(cpu)} configs."]
    lines += ["", "Every row, with its status, is in `profile_sweep.csv`."]
    return "\n".join(lines) + "\n"


def _is_quantized(config: dict) -> bool:
    return any(isinstance(c, dict) and "quantization_config" in c for c in (config, *(v for v in config.values() if isinstance(v, dict))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=60.0)
    parser.add_argument("--names", nargs="*", default=None, help="only these configs (model_type or model id)")
    parser.add_argument("--fresh", action="store_true", help="start a new CSV instead of resuming")
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--refresh", action="store_true", help="redo the estimates of kept profiles with the current code, then summarise")
    parser.add_argument("--kept-only", action="store_true", help="with --refresh: leave rows whose profile was not kept here as they are")
    parser.add_argument("--remake", action="store_true", help="with --refresh: make every profile again (after a change in how profiles are made)")
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget_minutes * 60
    all_targets = targets()
    if args.fresh and CSV_OUT.exists():
        CSV_OUT.unlink()
    if args.refresh:
        rows = read_rows()

        def save() -> None:
            with CSV_OUT.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n = refresh(rows, kept_only=args.kept_only, remake=args.remake, names=set(args.names) if args.names else None,
                        deadline=deadline, save=save)
            print(f"refreshed {n} rows", flush=True)
        save()
    if not args.summary_only and not args.refresh:
        done = {r["name"] for r in read_rows()}
        todo = [t for t in all_targets if t["name"] not in done and (args.names is None or t["name"] in args.names)]
        if not CSV_OUT.exists():
            with CSV_OUT.open("w", newline="") as f:
                csv.DictWriter(f, fieldnames=FIELDS).writeheader()
        for t in todo:
            if time.monotonic() > deadline:
                print(f"budget spent; {len(todo) - todo.index(t)} left", flush=True)
                break
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                new = sweep_one(t)
            with CSV_OUT.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore").writerows(new)
            for r in new:
                print({k: r.get(k) for k in ("name", "mode", "profile_err_pct", "analytic_err_pct", "profile_cpu_s", "status")}, flush=True)
    MD_OUT.write_text(summary(read_rows(), all_targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
