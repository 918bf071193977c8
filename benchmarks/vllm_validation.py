"""Score vLLM's start-up budget (`calculator/vllm.py`) against start-up logs vLLM printed.

    python benchmarks/vllm_validation.py [--csv benchmarks/data/vllm_startup_logs.csv] [--out benchmarks/results]

Each row of the CSV is one start-up log found in vLLM's GitHub issues and pull requests, with the
settings the log or its thread states (model, GPU, TP, vLLM version, gpu_memory_utilization,
max_model_len, ...), the source URL and a verbatim quote of the lines the numbers come from. The
row's settings become a `Workload` with `runtime="vllm"` and the modelled version; the log's
`total_gpu_memory` (when printed) is the card's total, else the GPU catalog's. Per term (weights,
activation peak, non-torch, KV available) the script prints the estimate, the log, the signed
error (relative, and absolute in GiB since logs round to 0.01 GiB), then median / p90 / worst of
the absolute relative error, and whether "will it start" agrees. Writes `vllm_validation.md` and
`vllm_validation.csv` under --out.

Non-torch figures logged before vLLM PR #11809 (v0.6.x) also counted the caching allocator's
unused reserve, which the modelled versions no longer do; those rows are scored in their own line.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calculator import vllm as engine  # noqa: E402
from calculator.gpus import compute_capability, load_gpus  # noqa: E402
from calculator.resolve import resolve_catalog  # noqa: E402
from calculator.spec import model_spec_from_config  # noqa: E402
from calculator.units import GiB  # noqa: E402
from calculator.workload import Workload  # noqa: E402

DEFAULT_CSV = ROOT / "benchmarks" / "data" / "vllm_startup_logs.csv"
TERMS = ("weights", "activation", "non_torch", "kv_available", "cudagraph")


@dataclass(frozen=True)
class Scored:
    row: dict[str, str]
    estimate: dict[str, float | None]  # GiB
    logged: dict[str, float | None]  # GiB
    starts_estimate: bool
    starts_logged: bool | None
    skipped: dict[str, str]  # term -> why not scored


def _float(text: str) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def _int(text: str) -> int | None:
    text = (text or "").strip()
    return int(text) if text else None


def score_row(row: dict[str, str]) -> Scored:
    logged = {t: _float(row.get(f"{t}_gib", "")) for t in TERMS}
    starts_logged = None if not row["starts"].strip() else row["starts"].strip() == "1"
    skipped: dict[str, str] = {}
    gpus = {g.id: g for g in load_gpus()}
    gpu = gpus.get(row["gpu_id"]) if row["gpu_id"] else None
    total_logged = _float(row["gpu_total_gib_logged"])
    if total_logged is not None:
        usable = round(total_logged * GiB) + engine.CUDA_TOTAL_RESERVED_BYTES
    elif gpu is not None:
        usable = gpu.usable_bytes
    else:
        raise ValueError(f"{row['id']}: no GPU total")
    tp = int(row["tp"])
    if not row["spec_model"]:
        # The model is not bundled: only the model-independent term (non-torch) can be scored.
        s = engine.resolved_settings(
            engine.VllmSettings(version=row["modelled_version"], max_model_len=int(row["max_model_len"]), tensor_parallel_size=tp),
            gpu_total_bytes=engine.cuda_total_bytes(usable), gpu_name=gpu.name if gpu else "",
        )
        nvlink = bool(gpu and gpu.nvlink == "yes")
        datacenter = bool(gpu and gpu.segment.startswith("datacenter"))
        nt = engine.non_torch_bytes(s, nvlink=nvlink, datacenter=datacenter) / GiB
        for t in ("weights", "activation", "kv_available"):
            skipped[t] = "model not bundled"
        for t in ("cudagraph",):
            skipped[t] = "model not bundled"
        return Scored(row=row, estimate={"weights": None, "activation": None, "non_torch": nt, "kv_available": None, "cudagraph": None},
                      logged=logged, starts_estimate=True, starts_logged=starts_logged, skipped=skipped)
    if row["spec_model"].startswith("config:"):
        # Not bundled: the row carries the model's whole config.json (sourced in its notes).
        spec = model_spec_from_config(row["spec_model"].removeprefix("config:"), json.loads(row["config_overrides"]))
    else:
        base = resolve_catalog(row["spec_model"]).spec
        spec = base
        if row["config_overrides"].strip():
            spec = model_spec_from_config(row["spec_model"], {**base.raw_config, **json.loads(row["config_overrides"])})
    w = Workload(
        precision=row["precision"], quant_method=row["quant_method"] or "auto", runtime="vllm",
        context_length=int(row["max_model_len"]), num_gpus=tp, gpu_memory_utilization=float(row["gpu_memory_utilization"]),
        vllm_version=row["modelled_version"], max_num_seqs=_int(row["max_num_seqs"]),
        max_num_batched_tokens=_int(row["max_num_batched_tokens"]), enforce_eager=row["enforce_eager"].strip() == "1",
    )
    b = engine.vllm_budget(
        spec, w, gpu_usable_bytes=usable, gpu_name=gpu.name if gpu else "",
        nvlink=bool(gpu and gpu.nvlink == "yes"), datacenter=bool(gpu and gpu.segment.startswith("datacenter")),
        rank=int(row["rank"] or 0), compute_capability=compute_capability(gpu) if gpu else None,
    )
    if int(row["rank"] or 0):  # "will it start" is rank 0's (the engine takes the fewest blocks over ranks)
        b0 = engine.vllm_budget(spec, w, gpu_usable_bytes=usable, gpu_name=gpu.name if gpu else "",
                                nvlink=bool(gpu and gpu.nvlink == "yes"), datacenter=bool(gpu and gpu.segment.startswith("datacenter")),
                                compute_capability=compute_capability(gpu) if gpu else None)
        b = type(b)(**{**{f: getattr(b, f) for f in b.__dataclass_fields__}, "starts": b0.starts, "reason": b0.reason})
    est = {
        "weights": b.weights_bytes / GiB,
        "activation": b.activation_peak_bytes / GiB,
        "non_torch": b.non_torch_bytes / GiB,
        "kv_available": b.available_kv_bytes / GiB,
        "cudagraph": b.cudagraph_bytes / GiB,
    }
    for t in row.get("unscored_terms", "").split():
        est[t] = None
        skipped[t] = "see the row's notes"
    return Scored(row=row, estimate=est, logged=logged, starts_estimate=b.starts, starts_logged=starts_logged, skipped=skipped)


def _pre_11809(row: dict[str, str]) -> bool:
    return "before PR #11809" in row["vllm_version_logged"]


def held_out(scored: list[Scored]) -> list[Scored]:
    """The rows no constant of `calculator/vllm.py` was read from (`fit` = 0)."""
    return [s for s in scored if s.row.get("fit", "0").strip() != "1"]


def summarize(scored: list[Scored]) -> list[dict[str, object]]:
    """Per term: rows scored, median / p90 / worst absolute relative error."""
    groups: list[tuple[str, str, list[Scored]]] = []
    for t in TERMS:
        if t == "non_torch":
            groups.append((t, "non_torch (current accounting)", [s for s in scored if not _pre_11809(s.row)]))
            groups.append((t, "non_torch (logged before PR #11809)", [s for s in scored if _pre_11809(s.row)]))
        else:
            groups.append((t, t, scored))
    out = []
    for term, label, rows in groups:
        errs = [abs(s.estimate[term] - s.logged[term]) / abs(s.logged[term])
                for s in rows if s.estimate.get(term) is not None and s.logged.get(term) not in (None, 0.0)]
        if not errs:
            out.append({"term": label, "n": 0})
            continue
        errs.sort()
        p90 = errs[min(len(errs) - 1, max(0, round(0.9 * len(errs) + 0.4999) - 1))]
        out.append({"term": label, "n": len(errs), "median": statistics.median(errs), "p90": p90, "worst": errs[-1]})
    return out


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def report(scored: list[Scored]) -> tuple[str, list[dict[str, str]]]:
    lines = [
        "# vLLM start-up budget vs start-up logs",
        "",
        "Generated by `python benchmarks/vllm_validation.py` from `benchmarks/data/vllm_startup_logs.csv` "
        "(one row per log, with its source URL and a verbatim quote). Estimates: `calculator/vllm.py` "
        "at the row's modelled version; GiB = 2^30 bytes.",
        "",
        "| row | modelled | term | estimate GiB | log GiB | error | error GiB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    table: list[dict[str, str]] = []
    for s in scored:
        for t in TERMS:
            est, log = s.estimate.get(t), s.logged.get(t)
            if log is None:
                continue
            if est is None:
                lines.append(f"| {s.row['id']} | {s.row['modelled_version']} | {t} | not scored ({s.skipped.get(t, '')}) | {log:.2f} | | |")
                continue
            rel = (est - log) / abs(log) if log else None
            lines.append(f"| {s.row['id']} | {s.row['modelled_version']} | {t} | {est:.2f} | {log:.2f} | "
                         f"{'' if rel is None else f'{rel:+.0%}'} | {est - log:+.2f} |")
            table.append({"id": s.row["id"], "term": t, "estimate_gib": _fmt(est), "logged_gib": _fmt(log),
                          "relative_error": "" if rel is None else f"{rel:.4f}", "absolute_error_gib": f"{est - log:.3f}"})
    lines += ["", "## Per term (absolute relative error)", "",
              "All rows, and the held-out rows (`fit` = 0: no constant of `calculator/vllm.py` was read from them).", "",
              "| term | rows | median | p90 | worst | held-out rows | median | p90 | worst |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    out = {r["term"]: r for r in summarize(held_out(scored))}

    def cells(r: dict[str, object]) -> str:
        return "0 | | | " if not r["n"] else f"{r['n']} | {r['median']:.0%} | {r['p90']:.0%} | {r['worst']:.0%}"

    for r in summarize(scored):
        lines.append(f"| {r['term']} | {cells(r)} | {cells(out[r['term']])} |")
    target = {r["term"]: r for r in summarize(scored)}
    lines += ["", "Target (issue 12): non-torch and activation within 15 % of the logs at p90."]
    for label in ("activation", "non_torch (current accounting)"):
        r, h = target.get(label), out.get(label)
        if r and r["n"]:
            verdict = "met" if r["p90"] <= 0.15 and (not h or not h["n"] or h["p90"] <= 0.15) else "NOT met"
            held = f"; held-out p90 {h['p90']:.0%} over {h['n']} rows" if h and h["n"] else ""
            lines.append(f"- {label}: p90 {r['p90']:.0%} over {r['n']} rows{held}: {verdict}.")
    lines.append("- non_torch (logged before PR #11809): vLLM 0.6.x also counted the caching allocator's unused reserve "
                 "there; no modelled version does, so these rows are listed, not targeted.")
    nt = [s for s in scored if not _pre_11809(s.row) and s.estimate.get("non_torch") is not None and s.logged.get("non_torch") is not None]
    if nt:
        worst_abs = max(abs(s.estimate["non_torch"] - s.logged["non_torch"]) for s in nt)
        within = sum(abs(s.estimate["non_torch"] - s.logged["non_torch"]) <= 0.005 + 1e-9 for s in nt)
        lines.append(f"- non_torch (current accounting), absolute: worst {worst_abs * 1024:.0f} MiB; {within} of {len(nt)} rows "
                     "within the print's rounding (+-0.005 GiB: the logs print 0.01 GiB steps).")
    lines += ["", "## Will it start", "", "| row | log | estimate |", "|---|---|---|"]
    for s in scored:
        if s.starts_logged is not None and s.row["spec_model"]:
            lines.append(f"| {s.row['id']} | {'starts' if s.starts_logged else 'does not start'} | "
                         f"{'starts' if s.starts_estimate else 'does not start'} |")
    return "\n".join(lines) + "\n", table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--out", type=Path, default=None, help="write vllm_validation.md/.csv here (default: print only)")
    args = parser.parse_args(argv)
    with args.csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    scored = [score_row(r) for r in rows]
    text, table = report(scored)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "vllm_validation.md").write_text(text + NOTES)
        with (args.out / "vllm_validation.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
    return 0


NOTES = """
## Notes

- Sources. 49 of the 59 rows are vLLM 0.19.0 DEBUG start-up logs from one H100 SXM campaign (jgchn/
  llm-d-planner `accuracy/results/v0.19.0/logs`, also in llm-d-incubation/llm-d-planner): 34
  models, TP 1/2/4, bf16/fp16/fp32, FP8 and INT8/INT4 checkpoints, fp8 KV, 2K-32K context. They
  print every term (`torch peak memory increase`, `non-torch forward increase memory`, the init
  snapshot's non-torch memory, `Graph capturing finished ... took`). The other rows are the V0
  logs of vLLM issues and PRs (RTX 3090/4060/4090, 8 GB cards, H100; 0.6.4-0.8) and one V1 blog
  post (A100). Pipeline-parallel runs of the campaign are left out (PP is not modelled); where the
  campaign repeats a setting at 2K-16K context (the same 8,192-token profile) only 8K and 32K are
  kept. Not used: llm-d/llm-d-benchmark's `empirical-vllm-memory-results.md` (no vLLM version
  stated; its sampler-bound activation figures match the full-vocabulary sort of 0.10, but its TP=2
  non-torch of 0.55 GiB matches no version modelled here).
- `fit` marks the rows a constant was read from: the Llama-3.1-8B runs of the campaign (TP=1
  non-torch base, NCCL setup and lazy-connect figures, the CUDA-graph per-graph and per-layer
  costs, with the campaign's PP=2 / PP=4 runs, which are not rows), Mixtral-8x7B at TP=2 (the
  CUDA-graph cost of a fused-MoE layer) and the V0 rows behind the V0 constants. The held-out rows
  share the campaign's GPU and NCCL with the fit rows, so they test the model across models,
  dtypes and TP, not across machines.
- Non-torch. Under NCCL >= 2.22 (lazy connect) the 0.19.0 logs show two parts of the TP cost on an
  NVSwitch H100: 1.00 GiB set up before the worker's snapshot (outside the budget in 0.19+), and
  1.82-1.96 GiB connected during the profile's first collectives (inside it). V0's NCCL 2.21
  connects everything at init (PR #10511: +1.79 GiB at TP=2). Misses: Granite (0.46 GiB logged at
  TP=1 against 0.25) and the 8 GB card's 0.03 GiB line (+10 MiB, inside its 0.01 GiB print
  step). No PCIe log of a lazy-connect NCCL was found: its split is assumed.
- Activation. V1's sampler term (14 B per request x vocabulary element, from the code) plus the
  Triton top-k/top-p scratch rows and, for MoE models, the persistent fused-MoE workspace (both
  read in the 0.19.0 and 0.33.0 wheels) lands within 5 % on every sampler-bound row; the two V0
  RTX 3090 rows (20K and 29K tokens in one batch) test the forward term instead (0 %). gpt-oss's
  MXFP4 experts run as a monolithic Triton kernel on Hopper (`OAITritonMxfp4ExpertsMonolithic`,
  fused_moe/oracle/mxfp4.py), which takes nothing from the persistent workspace: -1 % (was +11 %
  with the workspace kept). Remaining miss: fp32 Llama (-14 %). No code-level cause found: in fp32
  the sampler's `logits.to(torch.float32)` is a no-op, which makes it smaller, not larger, and the
  Triton attention fp32 falls back to preallocates only `seq_threshold_3D` rows of softmax
  segments; the log fits a forward holding about 4 hidden-size vectors per token more than
  modelled. Gemma 3's rows also carry the multimodal encoder profile (32 images of 256 tokens, as
  the logs print): -5 %.
- CUDA graphs (0.19.0 captures them after the KV cache; "Graph capturing finished ... took").
  The pool is the largest transient of one capture. Outputs are weak references, so smaller sizes
  reuse it, and PIECEWISE and FULL overlay each other. On Hopper in fp16/bf16 it is FA3's split-KV
  scratch of the largest FULL decode graph: 32 splits x tokens x heads/TP x (head size + 1) x 4 B,
  258 MiB for Llama-3.1-8B at 512 tokens. Each log's DEBUG "Estimated FULL CUDA graph memory"
  first capture matches it within 2-14 MiB on every FA3 row but gpt-oss's, MLA included (latent rank 512:
  522 MiB for DeepSeek-V2-Lite). On top of the pool comes a driver cost per graph: 1,316 KiB +
  171 KiB per layer (+46 KiB per MoE layer). gpt-oss-20b captures up to 1,024 (its
  `GptOssForCausalLMConfig` override: 83 + 83 graphs). Its remaining -17 %: its FULL first
  capture is 8 MiB in the log (its sink attention does not split, so the pool is smaller than
  modelled), while its MXFP4 MoE layers cost 0.31 MiB per graph against 0.22 modelled. The dense
  rows that miss most are Llama at TP=4 (+8 %) and Qwen2.5-7B at TP=1 (-6 %). vLLM's own estimate
  in the same logs misses the actual pool by up to +120 % (Llama-3.1-8B at TP=2: 1.69 GiB
  estimated, 0.76 taken).
- Non-torch: Granite 3.x (0.46 GiB at TP=1 on all three Granite text models, 0.25 for
  granite-vision with the same language model). No cause was found in the logs: no other
  backend or INFO / WARNING line differs from Llama's. One lead from the code: since 0.19.0,
  `profile_cudagraph_memory` runs inside the `memory_profiling` block
  (`Worker.determine_available_memory`), so anything its sample captures leave outside PyTorch
  counts as non-torch.
- KV available inherits the other terms' errors; where they are right it follows them (Qwen2.5-72B
  at TP=2: 3.22 GiB against 3.04, with 67.8 GiB of weights on the card).
- gpt-oss-20b's weights: vLLM holds 13.72 GiB on an A100 (0.19) and 7.01 GiB per rank at TP=2 on
  an H100 against the checkpoint's 12.82 / 6.41 this calculator counts: the MXFP4 kernels repack
  the experts; not modelled.
- SGLang: no start-up log with a bundled model and its settings was found (threads print
  `KV Cache is allocated` without the GPU or flags, or run patched branches), so
  `calculator/sglang.py` is pinned to its code, not scored.
"""


if __name__ == "__main__":
    raise SystemExit(main())
