"""One command that measures the engine on a real GPU, sized to the short window a GPU machine gives.

    python benchmarks/gpu_campaign.py --dry-run                 # the plan, expected durations, budget check
    python benchmarks/gpu_campaign.py --budget 540 --out DIR    # measure (needs a CUDA GPU)
    python benchmarks/gpu_campaign.py --budget 180 --out DIR --resume OLD/gpu_measured.csv

The device command a GPU session should run (the device tool's `run`, `timeout_s=600`; results
come back from $OUT, so copy them into benchmarks/results/ afterwards):

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_campaign.py --budget 540 --out "$OUT"

Each case of `PLAN` builds its model from the bundled `config.json` (`calculator/data/models/`)
with random weights directly on the GPU (`from_config` under `torch.device("cuda")`: nothing is
downloaded, no repository code runs), cut to fewer decoder layers where the case says so, and runs
its workload through the project's live runner (`calculator.verify.live.run_live` ->
`live_worker`): each case in its own subprocess (a clean peak, nothing leaks into the next case),
killed at its timeout, refused before it starts when the estimate exceeds the free memory, and an
out-of-memory error recorded as a result. Per case it records `torch.cuda.max_memory_allocated`,
`max_memory_reserved`, the device memory of the process (NVML per process when pynvml reports
it, else device used minus used before the process made its context, through NVML or
`nvidia-smi`), the CUDA context alone (measured before any tensor), the memory outside the
caching allocator at the peak, the stack's versions and the GPU's name, next to the engine's
estimate of the same numbers and the error.

Cases are ordered most informative first (one per question the constants in
`calculator/estimate.py` leave open), so a window cut short still answers the main questions.
Results are appended and flushed case by case to `gpu_measured.csv` (the columns of
`../shared/validation/measured.csv`, one row per case and instrument, bytes exactly; the status,
the estimate and the error in `notes`) and `gpu_campaign.jsonl` (every field the worker returned).
Before each case the script checks the remaining budget against the case's expected duration and
skips what would not finish, so it stops cleanly before `--budget` seconds. At the end it fits the
allocator reserve and the context (`benchmarks/gpu_fit.py`) and writes `gpu_fit.md`.

After a GPU session: copy `gpu_measured.csv`, `gpu_campaign.jsonl` and `gpu_fit.md` into
`benchmarks/results/`, then `python benchmarks/gpu_fit.py --apply` rewrites the reserve fractions
and the context constant in `calculator/estimate.py` from the measurements (citing them), and
`python benchmarks/validation.py` scores the rows in a "measured on GPU" section.

Exit status: 0 done (also when cases were skipped, timed out or ran out of memory: those are
results), 1 the plan does not fit the budget (dry run), 3 no CUDA GPU (or no torch) here.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # gpu_fit

from calculator.catalog import catalog_config, find_catalog_entry  # noqa: E402
from calculator.estimate import Estimate, estimate  # noqa: E402
from calculator.spec import ModelSpec, model_spec_from_config  # noqa: E402
from calculator.units import GiB  # noqa: E402
from calculator.verify.compare import VerificationError, cut_config, error_pct  # noqa: E402
from calculator.verify.live import (  # noqa: E402
    InsufficientMemoryError,
    LiveResult,
    LiveTimeoutError,
    LiveUnsupportedError,
    NoGPUError,
    check_live_supported,
    cuda_available,
    run_live,
)
from calculator.workload import Workload  # noqa: E402

DEFAULT_BUDGET_S = 540.0  # the device tool's 10-minute command limit, less a minute for start-up and the fit
DEFAULT_OUT = ROOT / "benchmarks" / "results"
CSV_NAME = "gpu_measured.csv"
JSONL_NAME = "gpu_campaign.jsonl"
PLAN_NAME = "gpu_campaign_plan.txt"
FIT_NAME = "gpu_fit.md"
PLAN_MARGIN = 0.85  # the whole plan's expected time must fit this share of the budget (durations are guesses until measured)
EXIT_NO_GPU = 3

# The header of ../shared/validation/measured.csv (tests check the two are equal when the file is there).
COLUMNS: tuple[str, ...] = (
    "id", "source_group", "model_id", "params_b", "mode", "mode_detail", "weight_dtype", "quantization", "batch_size",
    "prompt_len", "gen_len", "seq_len_total", "seq_len_note", "optimizer", "grad_checkpointing", "attention_impl",
    "peft_config", "framework", "gpu", "num_gpus", "measured_value", "unit_as_stated", "unit_interpretation", "value_gib",
    "measured_what", "source", "quote", "notes", "confidence",
)
# Instrument suffix of a row id -> what `measured_what` says.
INSTRUMENTS: dict[str, str] = {
    "allocated": "torch.cuda.max_memory_allocated",
    "reserved": "torch.cuda.max_memory_reserved",
    "device": "device memory of the process at the peak (see notes: instrument)",
    "context": "CUDA context alone: device used after context creation minus before, no tensor yet",
    "outside": "device memory of the process minus torch.cuda.memory_reserved at the peak (context, kernels, handles)",
    "status": "nothing measured (see notes: status)",
}


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One measurement: a catalog model (optionally cut to `layers` decoder layers) and a workload."""

    id: str
    group: str
    model: str
    workload: Workload
    layers: int | None = None  # None: the whole model
    options: tuple[tuple[str, str], ...] = ()  # worker settings outside Workload (adamw_impl)
    needs: str = ""  # a module the case needs (bitsandbytes); skipped, and recorded, when it is not importable
    optional: bool = False  # run only if time is left: not counted in the plan's budget check, ordered last
    why: str = ""


def _gen(prompt: int, new: int, **kw: Any) -> Workload:
    return Workload(precision="bf16", context_length=prompt + new, generated_tokens=new, **kw)


L8, L3, Q3, MISTRAL, MOE, GPTOSS = (
    "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-3B", "Qwen/Qwen3-8B", "mistralai/Mistral-7B-v0.1", "Qwen/Qwen3-30B-A3B",
    "openai/gpt-oss-20b",
)
_LORA = {"mode": "lora", "precision": "bf16", "lora_rank": 16, "lora_targets": "all-linear"}
_FULL = {"mode": "full", "precision": "bf16"}

# Most informative first. Generated tokens are few (32): the decode peak is weights + the whole
# context's K/V + one token's transients, reached at the last step, so 32 steps show it as well as
# 2,048 would, at a sixtieth of the time.
PLAN: tuple[Case, ...] = (
    Case(id="l8-gen-b1-1k", group="generate", model=L8, workload=_gen(1024, 32),
         why="baseline: context alone, the inference reserve on a plain dense model"),
    Case(id="l3-lora-b4-1k", group="training", model=L3, workload=Workload(**_LORA, batch_size=4, context_length=1024),
         why="the training reserve (activation churn) with LoRA, peft defaults (fp32 adapters)"),
    Case(id="l3-full-bf16-b2-1k", group="training", model=L3, workload=Workload(**_FULL, batch_size=2, context_length=1024),
         why="pure bf16 full fine-tuning, AdamW foreach (the trace's optimizer)"),
    Case(id="l8-gen-b8-8k", group="generate", model=L8, workload=_gen(8192 - 32, 32, batch_size=8),
         why="long context x batch: the KV cache dominates; dynamic-cache growth (torch.cat) transients"),
    Case(id="q3-gen-b8-4k", group="generate", model=Q3, workload=_gen(4096 - 32, 32, batch_size=8),
         why="a second dense architecture (q/k norms, 36 layers)"),
    Case(id="mistral-gen-b1-16k", group="generate", model=MISTRAL, workload=_gen(16384 - 32, 32),
         why="sliding window 4,096: whether the cache stops growing past the window"),
    Case(id="l8-prefill-sdpa-b1-4k", group="attention", model=L8, workload=Workload(precision="bf16", context_length=4096),
         why="prefill only (one forward, logits_to_keep=1) with SDPA"),
    Case(id="l8-prefill-eager-b1-4k", group="attention", model=L8,
         workload=Workload(precision="bf16", context_length=4096, attention="eager"),
         why="the same with eager attention: the seq x seq scores per layer"),
    Case(id="l3-full-amp-b2-1k", group="training", model=L3,
         workload=Workload(**_FULL, master_weights=True, batch_size=2, context_length=1024),
         why="AMP: fp32 master weights and states, bf16 autocast copies"),
    Case(id="moe-gen-b1-2k", group="generate", model=MOE, workload=_gen(2048 - 32, 32),
         why="mixture of experts (128 experts, fused expert weights)"),
    Case(id="l8-gen-b32-2k", group="generate", model=L8, workload=_gen(2048 - 32, 32, batch_size=32),
         why="batch 32: per-token transients and logits scale with the batch"),
    Case(id="l3-lora-gc-b4-1k", group="training", model=L3,
         workload=Workload(**_LORA, batch_size=4, context_length=1024, gradient_checkpointing=True),
         why="gradient checkpointing on: the recompute peak"),
    Case(id="l3-full-fused-b2-1k", group="optimizer", model=L3, workload=Workload(**_FULL, batch_size=2, context_length=1024),
         options=(("adamw_impl", "fused"),), why="fused AdamW: no foreach temporary at the step (the engine sizes foreach)"),
    Case(id="gptoss-gen-b1-2k", group="generate", model=GPTOSS, workload=_gen(2048 - 32, 32),
         why="gpt-oss in bf16 (its MXFP4 quantization_config removed): sinks force eager attention, 128-token windows"),
    Case(id="l8-gen-b1-32k", group="generate", model=L8, workload=_gen(32768 - 32, 32),
         why="very long context at batch 1"),
    Case(id="l8-gen-static-b8-8k", group="cache", model=L8, workload=_gen(8192 - 32, 32, batch_size=8, cache_implementation="static"),
         why="static cache (preallocated at the first forward) beside l8-gen-b8-8k's dynamic one"),
    # The sweep: one model cut to 2..16 layers (l8-gen-b8-8k and a 32-layer training point are the
    # whole model), so the allocator reserve and the memory outside the allocator can be fitted as
    # functions of the allocated peak (benchmarks/gpu_fit.py) instead of constants.
    *(Case(id=f"sweep-gen-l{n}", group="sweep-inference", model=L8, layers=n, workload=_gen(8192 - 32, 32, batch_size=8),
           why="sweep: inference reserve and context vs size") for n in (2, 4, 8, 16)),
    *(Case(id=f"sweep-full-l{n}", group="sweep-training", model=L8, layers=n,
           workload=Workload(**_FULL, batch_size=2, context_length=1024), why="sweep: training reserve vs size") for n in (2, 4, 8, 16)),
    # Run only if time is left (not counted in the budget check).
    Case(id="mistral-gen-b8-2k", group="generate", model=MISTRAL, workload=_gen(2048 - 32, 32, batch_size=8), optional=True,
         why="Mistral inside its window"),
    Case(id="q3-prefill-eager-b1-2k", group="attention", model=Q3, optional=True,
         workload=Workload(precision="bf16", context_length=2048, attention="eager"), why="eager prefill on a second architecture"),
    Case(id="l3-lora-8bit-b4-1k", group="optimizer", model=L3, optional=True,
         workload=Workload(**_LORA, batch_size=4, context_length=1024, optimizer="adamw-8bit"), needs="bitsandbytes",
         why="8-bit AdamW (only when bitsandbytes travels)"),
    Case(id="l3-full-gc-b2-1k", group="training", model=L3, optional=True,
         workload=Workload(**_FULL, batch_size=2, context_length=1024, gradient_checkpointing=True),
         why="full fine-tuning with checkpointing"),
    Case(id="l8-gen-qfp8-b8-8k", group="cache", model=L8, optional=True,
         workload=_gen(8192 - 32, 32, batch_size=8, cache_implementation="quantized", kv_cache_precision="fp8"),
         why="QuantizedCache, fp8 backend (pure torch: no quanto/HQQ needed)"),
    Case(id="sweep-full-l32", group="sweep-training", model=L8, optional=True,
         workload=Workload(**_FULL, batch_size=2, context_length=1024), why="sweep: training reserve, the whole model"),
)


def case_config(case: Case) -> dict[str, Any]:
    """The bundled config.json of the case's model, without quantization (random bf16 weights are
    built, so a pre-quantized checkpoint runs as its bf16 architecture), cut to `layers`."""
    entry = find_catalog_entry(case.model)
    if entry is None:
        raise ValueError(f"{case.id}: {case.model} is not in the bundled catalog")
    cfg = catalog_config(entry)
    cfg.pop("quantization_config", None)
    for value in cfg.values():
        if isinstance(value, dict):
            value.pop("quantization_config", None)
    return cut_config(cfg, case.layers) if case.layers else cfg


def case_spec(case: Case) -> tuple[ModelSpec, dict[str, Any]]:
    """The spec the worker builds (config arithmetic: the checkpoint's exact counts describe a
    model the worker does not build) and the config it is sent."""
    cfg = case_config(case)
    return model_spec_from_config(case.model, cfg), cfg


# Expected duration. Guesses until a GPU session records real `seconds` (gpu_campaign.jsonl): a
# subprocess start with torch + transformers + peft imports and CUDA initialisation, building the
# weights on the GPU, the work itself at a quarter of the H200's measured 790 TFLOP/s bf16 matrix
# rate (KINDS.md: eager PyTorch, small kernels), and transformers' per-token Python overhead in
# generate (~0.6 ms per layer per decoding step, plus 5 ms per step; MoE layers 3x).
PROCESS_S = 12.0
BUILD_S_PER_GB = 0.25
EFFECTIVE_FLOPS = 2.0e14
STEP_OVERHEAD_S, LAYER_STEP_S, MOE_LAYER_FACTOR = 5e-3, 0.6e-3, 3.0


def expected_seconds(case: Case, spec: ModelSpec) -> float:
    w = case.workload
    layers = spec.num_hidden_layers
    weights_gb = spec.num_params * 2 / 1e9
    tokens = w.batch_size * (w.prompt_tokens if not w.is_training else w.context_length)
    attn = 4 * w.batch_size * w.context_length**2 * spec.num_attention_heads * spec.head_dim * layers
    if w.is_training:
        trainable = spec.num_params if w.mode == "full" else spec.num_params // 100
        forward = 2 * spec.active_params * tokens + attn
        work = 2 * (forward * (4 if w.gradient_checkpointing else 3) / EFFECTIVE_FLOPS + trainable * 16 / 2e12 + 1.0)
    else:
        work = (2 * spec.active_params * tokens + attn) / EFFECTIVE_FLOPS
        per_layer = LAYER_STEP_S * (MOE_LAYER_FACTOR if spec.is_moe else 1.0)
        work += w.generated_tokens * (STEP_OVERHEAD_S + layers * per_layer)
    return PROCESS_S + weights_gb * BUILD_S_PER_GB * (2 if w.master_weights else 1) + work


def case_timeout(expected_s: float) -> float:
    """A case is killed after 3x its expected duration (at least a minute): a generous margin for guesses."""
    return max(60.0, 3.0 * expected_s)


def plan_problems(cases: Sequence[Case], budget_s: float) -> list[str]:
    """Why the plan would not run as written: duplicate ids, a case the engine or the live runner
    rejects, an estimate past the H200's memory, an optional case before a required one, or a
    required total over PLAN_MARGIN of the budget."""
    problems = []
    seen: set[str] = set()
    total = 0.0
    for case in cases:
        if case.id in seen:
            problems.append(f"{case.id}: duplicate case id")
        seen.add(case.id)
        try:
            spec, _ = case_spec(case)
            if not case.needs or importlib.util.find_spec(case.needs) is not None:
                check_live_supported(spec, case.workload)  # (a case whose module is missing is skipped and recorded)
            est = estimate(spec, case.workload)
        except Exception as e:  # any rejection is a problem of the plan, reported by id
            problems.append(f"{case.id}: {type(e).__name__}: {e}")
            continue
        if est.total_bytes > 139 * GiB:
            problems.append(f"{case.id}: the estimate ({est.total_bytes / GiB:.1f} GiB) exceeds an H200's ~139 GiB")
        if not case.optional:
            total += expected_seconds(case, spec)
    flags = [c.optional for c in cases]
    if flags != sorted(flags):
        problems.append("optional cases must come after every required one")
    if total > PLAN_MARGIN * budget_s:
        problems.append(f"the plan expects {total:.0f} s, over {PLAN_MARGIN:.0%} of the {budget_s:.0f} s budget")
    return problems


def describe(w: Workload) -> str:
    if w.is_training:
        parts = [f"{w.mode} {'AMP fp32 master' if w.master_weights else w.precision}", f"b{w.batch_size} x {w.context_length}",
                 w.optimizer, "GC" if w.gradient_checkpointing else "no GC"]
        if w.mode == "lora":
            parts.append(f"r{w.lora_rank} {w.lora_targets} {w.adapter_precision} adapters")
    elif w.generated_tokens:
        parts = [f"generate {w.prompt_tokens}+{w.generated_tokens}", f"b{w.batch_size}", w.attention]
        if w.cache_implementation != "dynamic":
            parts.append(f"{w.cache_implementation} cache" + (f" {w.kv_cache_precision}" if w.kv_cache_precision else ""))
    else:
        parts = [f"prefill {w.context_length}", f"b{w.batch_size}", w.attention]
    return ", ".join(parts)


def render_plan(cases: Sequence[Case], budget_s: float) -> str:
    lines = [
        f"GPU campaign plan: {len(cases)} cases, budget {budget_s:.0f} s (the required cases must fit {PLAN_MARGIN:.0%} of it; "
        "optional ones, marked *, run only if time is left)",
        "",
        f"{'#':>3}  {'case':<24} {'model':<35} {'workload':<64} {'est GiB':>7} {'exp s':>5} {'cum s':>5}  why",
    ]
    required = cumulative = 0.0
    for i, case in enumerate(cases, 1):
        spec, _ = case_spec(case)
        seconds = expected_seconds(case, spec)
        cumulative += seconds
        required += 0 if case.optional else seconds
        model = case.model + (f" [{case.layers} layers]" if case.layers else "")
        opts = "".join(f", {k}={v}" for k, v in case.options)
        needs = f" (needs {case.needs})" if case.needs else ""
        lines.append(
            f"{i:>2}{'*' if case.optional else ' '}  {case.id:<24} {model:<35} {describe(case.workload) + opts:<64} "
            f"{estimate(spec, case.workload).total_bytes / GiB:>7.1f} {seconds:>5.0f} {cumulative:>5.0f}  {case.why}{needs}"
        )
    problems = plan_problems(cases, budget_s)
    lines += ["", f"Required cases: {required:.0f} s expected of {budget_s:.0f} s ({required / budget_s:.0%}); "
                  f"with the optional ones {cumulative:.0f} s."]
    lines += [f"PROBLEM: {p}" for p in problems] or [
        f"The required cases fit the budget with {budget_s - required:.0f} s to spare; the runner skips any case that "
        "would not finish in what is left, so the command ends before the budget whatever the real durations."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Results: rows with measured.csv's columns
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseOutcome:
    """What happened to one case: `status` ok | oom | refused | timeout | unsupported | error | skipped | budget."""

    case: Case
    status: str
    message: str = ""
    result: LiveResult | None = None
    expected_s: float = 0.0
    seconds: float = 0.0
    estimate_bytes: dict[str, int] = field(default_factory=dict)


def estimate_numbers(est: Estimate) -> dict[str, int]:
    b = est.breakdown
    return {"allocated": b.torch_allocated_bytes, "reserved": b.torch_reserved_bytes, "device": b.total_bytes,
            "context": b.cuda_context_bytes, "outside": b.cuda_context_bytes}


def measured_numbers(r: LiveResult) -> dict[str, tuple[int, str]]:
    """Instrument -> (bytes, how it was read) for what the run measured."""
    out: dict[str, tuple[int, str]] = {"allocated": (r.max_allocated_bytes, "torch"), "reserved": (r.max_reserved_bytes, "torch")}
    if not r.fits:
        return out
    if r.nvml_process_bytes is not None:
        out["device"] = (r.nvml_process_bytes, "nvml per-process")
    elif r.process_used_bytes is not None:
        out["device"] = (r.process_used_bytes, f"{r.memory_instrument} device used minus before the context")
    elif r.device_used_at_measure_bytes is not None:
        out["device"] = (r.device_used_at_measure_bytes, "torch.cuda.mem_get_info total - free (whole device, every process)")
    if r.context_bytes is not None:
        out["context"] = (r.context_bytes, r.memory_instrument)
    if "device" in out:
        out["outside"] = (out["device"][0] - r.reserved_at_measure_bytes, out["device"][1])
    return out


def _clean(text: str) -> str:
    return " ".join(str(text).replace(";", ",").split())[:300]


def _framework(r: LiveResult | None) -> str:
    v = r.versions if r is not None else {}
    if not v:
        return "transformers (live_worker), random weights from config.json"
    parts = [f"transformers {v.get('transformers', '?')}", f"torch {v.get('torch', '?')} (CUDA {v.get('cuda', '?')})"]
    parts += [f"{k} {v[k]}" for k in ("peft", "accelerate", "bitsandbytes") if k in v]
    if "driver" in v:
        parts.append(f"driver {v['driver']}")
    return ", ".join(parts) + "; random weights from config.json (calculator/verify/live_worker.py)"


def outcome_rows(o: CaseOutcome, *, when: str) -> list[dict[str, str]]:
    """The measured.csv-shaped rows of one outcome: one per instrument measured (ok: allocated,
    reserved, device, context, outside; oom: allocated and reserved at the failure), or one
    `status` row with no value for a case that measured nothing."""
    case, w, r = o.case, o.case.workload, o.result
    spec, _ = case_spec(case)
    layers = f"{spec.num_hidden_layers} of {find_spec_layers(case)} layers" if case.layers else f"{spec.num_hidden_layers} layers"
    opts = "".join(f", {k}={v}" for k, v in case.options)
    mode = ("lora" if w.mode == "lora" else "full-finetune") if w.is_training else ("inference-generate" if w.generated_tokens else "other")
    base = {
        "source_group": f"gpu-campaign:{case.group}",
        "model_id": case.model,
        "params_b": f"{spec.num_params / 1e9:.3f}",
        "mode": mode,
        "mode_detail": f"{describe(w)}{opts}; {layers}" + ("" if w.is_training or w.generated_tokens else "; prefill only (logits_to_keep=1)"),
        "weight_dtype": "float32 master + bf16 autocast" if w.master_weights else {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[w.precision],
        "quantization": "none",
        "batch_size": str(w.batch_size),
        "prompt_len": "" if w.is_training else str(w.prompt_tokens),
        "gen_len": "" if w.is_training else str(w.generated_tokens),
        "seq_len_total": str(w.context_length),
        "seq_len_note": "random token ids of exactly this length, no padding" + ("; min_new_tokens = max_new_tokens" if w.generated_tokens else ""),
        "optimizer": _optimizer_text(case) if w.is_training else "n/a",
        "grad_checkpointing": ("yes (non-reentrant)" if w.gradient_checkpointing else "no") if w.is_training else "n/a",
        "attention_impl": w.attention,
        "peft_config": f"LoRA r={w.lora_rank} alpha={2 * w.lora_rank} {w.lora_targets}, {w.adapter_precision} adapters" if w.mode == "lora" else "none",
        "framework": _framework(r),
        "gpu": r.device_name if r is not None and r.device_name else "",
        "num_gpus": "1",
        "unit_as_stated": "bytes",
        "unit_interpretation": "bytes",
        "source": f"benchmarks/gpu_campaign.py case {case.id}, {when}",
        "quote": "n/a (measured by this project)",
    }
    notes = {"status": o.status, "case": case.id, "expected_s": f"{o.expected_s:.0f}", "seconds": f"{o.seconds:.1f}"}
    rows = []
    measured = measured_numbers(r) if r is not None and o.status in ("ok", "oom") else {}
    for instrument, (value, how) in measured.items():
        est = o.estimate_bytes.get(instrument)
        err = error_pct(est, value) if est is not None else None
        row_notes = {**notes, "estimate_bytes": str(est) if est is not None else "", "error_pct": f"{err:+.2f}" if err is not None else "",
                     "instrument": how}
        if o.message:
            row_notes["message"] = _clean(o.message)
        rows.append({**base, "id": f"{case.id}:{instrument}", "measured_value": str(value), "value_gib": f"{value / GiB:.3f}",
                     "measured_what": INSTRUMENTS[instrument], "notes": format_notes(row_notes),
                     "confidence": "high" if o.status == "ok" else "medium"})
    if not rows:
        rows.append({**base, "id": f"{case.id}:status", "measured_value": "", "value_gib": "", "measured_what": INSTRUMENTS["status"],
                     "notes": format_notes({**notes, "message": _clean(o.message)}), "confidence": "n/a"})
    return [{c: row.get(c, "") for c in COLUMNS} for row in rows]


def _optimizer_text(case: Case) -> str:
    if case.workload.optimizer == "adamw-8bit":
        return "AdamW 8-bit (bitsandbytes)"
    impl = dict(case.options).get("adamw_impl", "foreach") if case.workload.optimizer == "adamw" else "foreach"
    return f"{case.workload.optimizer} (torch, {impl})"


def find_spec_layers(case: Case) -> int:
    entry = find_catalog_entry(case.model)
    return model_spec_from_config(case.model, catalog_config(entry)).num_hidden_layers if entry else 0


def format_notes(values: Mapping[str, str]) -> str:
    """`key=value; key=value` (values carry no ';')."""
    return "; ".join(f"{k}={_clean(v)}" for k, v in values.items())


def parse_notes(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            out[key] = value
    return out


class CsvLog:
    """Append rows to a CSV with `COLUMNS`, writing the header to a new file and flushing each row,
    so a run killed mid-way keeps every finished case."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        self._fh = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=list(COLUMNS))
        if new:
            self._writer.writeheader()
            self._fh.flush()

    def write(self, rows: Iterable[Mapping[str, str]]) -> None:
        for row in rows:
            self._writer.writerow(dict(row))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def case_by_id(case_id: str, cases: Sequence[Case] = PLAN) -> Case | None:
    return next((c for c in cases if c.id == case_id), None)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

FINAL_STATUSES = ("ok", "oom", "refused", "unsupported", "skipped")  # --resume does not retry these


def run_case(case: Case, *, timeout: float, expected_s: float, runner: Callable[..., LiveResult], runner_kwargs: Mapping[str, Any]) -> CaseOutcome:
    spec, cfg = case_spec(case)
    est = estimate(spec, case.workload)
    numbers = estimate_numbers(est)
    common = {"case": case, "expected_s": expected_s, "estimate_bytes": numbers}
    if case.needs and importlib.util.find_spec(case.needs) is None:
        return CaseOutcome(**common, status="skipped", message=f"{case.needs} is not importable here")
    started = time.monotonic()
    try:
        result = runner(spec, case.workload, config=cfg, estimate_bytes=est.total_bytes, timeout=timeout, options=dict(case.options),
                        **runner_kwargs)
    except InsufficientMemoryError as e:
        return CaseOutcome(**common, status="refused", message=str(e), seconds=time.monotonic() - started)
    except LiveTimeoutError as e:
        return CaseOutcome(**common, status="timeout", message=str(e), seconds=time.monotonic() - started)
    except LiveUnsupportedError as e:
        return CaseOutcome(**common, status="unsupported", message=str(e), seconds=time.monotonic() - started)
    except NoGPUError:
        raise
    except VerificationError as e:
        return CaseOutcome(**common, status="error", message=str(e), seconds=time.monotonic() - started)
    return CaseOutcome(**common, status="ok" if result.fits else "oom", message=result.message, result=result,
                       seconds=result.seconds or time.monotonic() - started)


def run_campaign(
    cases: Sequence[Case],
    *,
    out_dir: Path,
    budget_s: float,
    runner: Callable[..., LiveResult] = run_live,
    runner_kwargs: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    done: Iterable[str] = (),
    log: Callable[[str], None] = print,
) -> list[CaseOutcome]:
    """Run `cases` in order within `budget_s`, appending each outcome to out_dir's CSV and JSONL as it
    finishes. A case whose expected duration exceeds what is left is recorded as `budget` and not
    started; its timeout is capped at what is left. Case ids in `done` are not run again."""
    start = clock()
    done = set(done)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    csv_log = CsvLog(out_dir / CSV_NAME)
    outcomes = []
    try:
        with (out_dir / JSONL_NAME).open("a", encoding="utf-8") as jsonl:
            for i, case in enumerate(cases, 1):
                if case.id in done:
                    continue
                spec, _ = case_spec(case)
                expected = expected_seconds(case, spec)
                left = budget_s - (clock() - start)
                if expected > left:
                    o = CaseOutcome(case=case, status="budget", expected_s=expected,
                                    message=f"not started: expected {expected:.0f} s, {max(left, 0):.0f} s of the budget left")
                else:
                    o = run_case(case, timeout=min(case_timeout(expected), left), expected_s=expected, runner=runner,
                                 runner_kwargs=runner_kwargs or {})
                outcomes.append(o)
                csv_log.write(outcome_rows(o, when=when))
                jsonl.write(json.dumps({"case": case.id, "status": o.status, "message": o.message, "expected_s": round(expected, 1),
                                        "seconds": round(o.seconds, 1), "estimate": o.estimate_bytes,
                                        "result": o.result.as_dict() if o.result is not None else None}) + "\n")
                jsonl.flush()
                peak = f" allocated {o.result.max_allocated_bytes / GiB:.2f} GiB" if o.result is not None else ""
                log(f"[{clock() - start:6.0f} s] {i:>2}/{len(cases)} {case.id:<24} {o.status:<11}{peak} ({o.seconds:.0f} s, expected {expected:.0f})"
                    + (f": {o.message[:160]}" if o.status not in ("ok",) and o.message else ""))
    finally:
        csv_log.close()
    return outcomes


def resumed_ids(path: Path) -> set[str]:
    """Case ids a previous CSV already settled (any status but timeout, error and budget)."""
    ids = set()
    for row in read_rows(path):
        notes = parse_notes(row.get("notes", ""))
        if notes.get("status") in FINAL_STATUSES and notes.get("case"):
            ids.add(notes["case"])
    return ids


def main(argv: list[str] | None = None, *, is_available: Callable[[], tuple[bool, str]] | None = None,
         runner_kwargs: Mapping[str, Any] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan with expected durations and check it fits the budget")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="wall-clock seconds for all cases (default %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for gpu_measured.csv, gpu_campaign.jsonl, gpu_fit.md")
    parser.add_argument("--only", default="", help="comma-separated case ids to run (default: the whole plan)")
    parser.add_argument("--resume", type=Path, help="a previous gpu_measured.csv: its rows are kept and its settled cases skipped")
    args = parser.parse_args(argv)
    cases: Sequence[Case] = PLAN
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in wanted if case_by_id(s) is None]
        if unknown:
            print(f"gpu_campaign: unknown case id(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        cases = [c for c in PLAN if c.id in wanted]
    if args.dry_run:
        text = render_plan(cases, args.budget)
        print(text, end="")
        return 1 if "PROBLEM:" in text else 0
    ok, why = (is_available or cuda_available)()
    if not ok:
        print(f"gpu_campaign: {why or 'no CUDA GPU here.'} Nothing was measured.", file=sys.stderr)
        return EXIT_NO_GPU
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))  # the worker imports calculator
    done: set[str] = set()
    if args.resume:
        done = resumed_ids(args.resume)
        target = args.out / CSV_NAME
        if args.resume.resolve() != target.resolve():
            CsvLog(target).write(read_rows(args.resume))
    print(f"gpu_campaign: {len(cases)} cases, budget {args.budget:.0f} s, results in {args.out}", flush=True)
    try:
        run_campaign(cases, out_dir=args.out, budget_s=args.budget, runner_kwargs=runner_kwargs, done=done,
                     log=lambda line: print(line, flush=True))
    except NoGPUError as e:
        print(f"gpu_campaign: {e} Stopped.", file=sys.stderr)
        return EXIT_NO_GPU
    from gpu_fit import fit_rows, render_fit

    report = render_fit(fit_rows(read_rows(args.out / CSV_NAME)))
    (args.out / FIT_NAME).write_text(report, encoding="utf-8")
    print(report, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
