"""The GPU campaign without a GPU: its plan, its guards and its CSV.

`benchmarks/gpu_campaign.py` runs on a GPU machine; here the worker is replaced by tiny
`python -c` stand-ins through `run_live(worker_command=...)` (the real guard path: the free-memory
refusal, the timeout kill, an out-of-memory result), the CUDA check by `is_available=`, and the
clock by a counter. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_campaign as gc  # noqa: E402
import gpu_fit  # noqa: E402

from calculator.estimate import estimate  # noqa: E402
from calculator.units import GiB, MiB  # noqa: E402
from calculator.verify.live import RESULT_MARKER, LiveResult, run_live  # noqa: E402
from calculator.workload import Workload  # noqa: E402

MEASURED_CSV = ROOT.parent / "shared" / "validation" / "measured.csv"


def yes() -> tuple[bool, str]:
    return True, ""


def printing(result: dict) -> list[str]:
    line = RESULT_MARKER + json.dumps(result)
    return [sys.executable, "-c", f"import sys, json; json.loads(sys.stdin.read()); print({line!r})"]


SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def ok_result(allocated: int, reserved: int, *, context: int = 400 * MiB, outside: int = 520 * MiB) -> dict:
    return {"status": "ok", "device_name": "NVIDIA H200", "device_total_bytes": 140 * GiB, "free_before_bytes": 139 * GiB,
            "after_load_bytes": allocated // 2, "max_allocated_bytes": allocated, "max_reserved_bytes": reserved,
            "reserved_at_measure_bytes": reserved, "process_used_bytes": reserved + outside, "context_bytes": context,
            "memory_instrument": "nvml", "versions": {"torch": "2.11.0", "cuda": "13.0", "transformers": "5.17.0", "driver": "580.159"}}


# --- the plan --------------------------------------------------------------------------------


def test_the_plan_is_valid_and_fits_the_budget() -> None:
    assert gc.plan_problems(gc.PLAN, gc.DEFAULT_BUDGET_S) == []
    required = sum(gc.expected_seconds(c, gc.case_spec(c)[0]) for c in gc.PLAN if not c.optional)
    assert required <= gc.PLAN_MARGIN * gc.DEFAULT_BUDGET_S
    assert gc.plan_problems(gc.PLAN, 100.0)[-1].startswith("the plan expects")


def test_the_plan_covers_what_the_issue_asks() -> None:
    plan = gc.PLAN
    models = {c.model for c in plan}
    assert {gc.L8, gc.Q3, gc.MISTRAL, gc.MOE, gc.GPTOSS} <= models
    gens = [c.workload for c in plan if c.workload.generated_tokens]
    assert {w.batch_size for w in gens} >= {1, 8, 32}
    assert min(w.context_length for w in gens) <= 2048 and max(w.context_length for w in gens) >= 16384
    prefill = [c.workload for c in plan if not c.workload.is_training and not c.workload.generated_tokens]
    assert {w.attention for w in prefill} == {"sdpa", "eager"}
    train = [c for c in plan if c.workload.is_training]
    assert {c.workload.mode for c in train} == {"lora", "full"}
    assert any(c.workload.master_weights for c in train) and any(not c.workload.master_weights for c in train)
    assert {c.workload.gradient_checkpointing for c in train} == {True, False}
    assert {dict(c.options).get("adamw_impl", "foreach") for c in train} == {"foreach", "fused"}
    assert any(c.workload.optimizer == "adamw-8bit" and c.needs == "bitsandbytes" for c in train)
    sweep = {c.layers for c in plan if c.group == "sweep-inference"}
    assert len(sweep) >= 4


def test_the_most_informative_cases_come_first() -> None:
    ids = [c.id for c in gc.PLAN]
    assert ids[0] == "l8-gen-b1-1k"  # the baseline: context + inference reserve
    assert {gc.PLAN[1].workload.mode, gc.PLAN[2].workload.mode} == {"lora", "full"}  # then one of each training kind
    flags = [c.optional for c in gc.PLAN]
    assert flags == sorted(flags)  # optional cases last
    late = (gc.Case(id="first", group="g", model=gc.L8, workload=Workload(precision="bf16"), optional=True), *gc.PLAN)
    assert "optional cases must come after every required one" in gc.plan_problems(late, 10_000)


def test_plan_problems_name_the_bad_case() -> None:
    bad = (gc.Case(id="a", group="g", model=gc.L8, workload=Workload(precision="bf16", num_gpus=2, parallelism="tp")),
           gc.Case(id="a", group="g", model=gc.L8, workload=Workload(precision="bf16")))
    problems = gc.plan_problems(bad, 1000)
    assert any(p.startswith("a: LiveUnsupportedError") for p in problems)
    assert "a: duplicate case id" in problems


def test_dry_run_lists_cases_with_durations_and_exit_status(capsys) -> None:
    assert gc.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(c.id in out for c in gc.PLAN)
    assert "The required cases fit the budget" in out
    assert gc.main(["--dry-run", "--budget", "60"]) == 1
    assert "PROBLEM: the plan expects" in capsys.readouterr().out


def test_the_committed_dry_run_lists_the_current_plan() -> None:
    text = (ROOT / "benchmarks" / "results" / gc.PLAN_NAME).read_text(encoding="utf-8")
    assert all(f" {c.id} " in text for c in gc.PLAN)


def test_cases_send_the_bf16_architecture_cut_as_asked() -> None:
    gptoss = gc.case_by_id("gptoss-gen-b1-2k")
    spec, cfg = gc.case_spec(gptoss)
    assert "quantization_config" not in cfg and spec.quantization is None
    spec, cfg = gc.case_spec(gc.case_by_id("sweep-gen-l4"))
    assert cfg["num_hidden_layers"] == 4 and spec.num_hidden_layers == 4


# --- the guards ------------------------------------------------------------------------------


def test_no_cuda_is_a_clean_message_and_exit_status(tmp_path, capsys) -> None:
    status = gc.main(["--out", str(tmp_path)], is_available=lambda: (False, "no CUDA GPU here; use the trace level instead (--trace)."))
    assert status == gc.EXIT_NO_GPU
    err = capsys.readouterr().err
    assert err.startswith("gpu_campaign: no CUDA GPU here") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_no_cuda_on_this_machine() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    assert gc.main(["--out", "/nonexistent/never-written"]) == gc.EXIT_NO_GPU


TINY = Workload(precision="bf16", context_length=64, generated_tokens=8)


def _case(i: str, **kw) -> gc.Case:
    return gc.Case(id=i, group="test", model=gc.L3, workload=kw.pop("workload", TINY), **kw)


def test_each_guard_outcome_is_recorded(tmp_path) -> None:
    spec, _ = gc.case_spec(_case("x"))
    est = estimate(spec, TINY)
    behaviour = {
        "fits": dict(worker_command=printing(ok_result(est.torch_allocated_bytes, est.breakdown.torch_reserved_bytes)), mem=(139 * GiB, 140 * GiB)),
        "oom": dict(worker_command=printing({"status": "oom", "message": "CUDA out of memory: Tried to allocate 2.00 GiB; GPU 0",
                                             "max_allocated_bytes": 9 * GiB, "max_reserved_bytes": 10 * GiB}), mem=(139 * GiB, 140 * GiB)),
        "small": dict(worker_command=[sys.executable, "-c", "raise SystemExit('must not start')"], mem=(1 * GiB, 140 * GiB)),
        "slow": dict(worker_command=SLEEPER, mem=(139 * GiB, 140 * GiB), timeout=1),
        "crash": dict(worker_command=[sys.executable, "-c", "import sys; sys.stderr.write('RuntimeError: boom'); sys.exit(1)"],
                      mem=(139 * GiB, 140 * GiB)),
    }
    seen_timeouts = {}

    def runner(spec, workload, *, timeout, **kwargs):
        b = behaviour[current[0]]
        seen_timeouts[current[0]] = timeout
        return run_live(spec, workload, **kwargs, timeout=b.get("timeout", timeout), is_available=yes, mem_get_info=lambda: b["mem"],
                        worker_command=b["worker_command"])

    cases = [_case(name) for name in behaviour] + [_case("bnb", needs="surely_not_a_module_here")]
    current = [""]
    outcomes = []
    for case in cases:
        current[0] = case.id
        outcomes += gc.run_campaign([case], out_dir=tmp_path, budget_s=500, runner=runner, log=lambda _line: None)
    status = {o.case.id: o.status for o in outcomes}
    assert status == {"fits": "ok", "oom": "oom", "small": "refused", "slow": "timeout", "crash": "error", "bnb": "skipped"}
    assert "exceeds the free memory" in next(o.message for o in outcomes if o.status == "refused")
    assert all(t <= gc.case_timeout(gc.expected_seconds(_case("x"), spec)) for t in seen_timeouts.values())

    rows = gc.read_rows(tmp_path / gc.CSV_NAME)
    by_id = {r["id"]: r for r in rows}
    assert {"fits:allocated", "fits:reserved", "fits:device", "fits:context", "fits:outside"} <= set(by_id)
    assert {"oom:allocated", "oom:reserved"} <= set(by_id) and "oom:device" not in by_id
    for name in ("small", "slow", "crash", "bnb"):
        row = by_id[f"{name}:status"]
        assert row["measured_value"] == "" and gc.parse_notes(row["notes"])["status"] == status[name]
    assert gc.parse_notes(by_id["oom:allocated"]["notes"])["message"].startswith("CUDA out of memory")
    lines = (tmp_path / gc.JSONL_NAME).read_text().splitlines()
    assert [json.loads(ln)["status"] for ln in lines] == list(status.values())
    # --resume keeps settled cases (ok, oom, refused, skipped) and retries the rest.
    assert gc.resumed_ids(tmp_path / gc.CSV_NAME) == {"fits", "oom", "small", "bnb"}


def test_budget_stops_before_the_limit(tmp_path) -> None:
    calls = []

    def runner(spec, workload, *, timeout, **kwargs):
        calls.append(timeout)
        now[0] += 100.0  # each case "takes" 100 s
        return LiveResult(fits=True, max_allocated_bytes=GiB, max_reserved_bytes=GiB)

    now = [0.0]
    cases = [_case(f"c{i}") for i in range(5)]
    outcomes = gc.run_campaign(cases, out_dir=tmp_path, budget_s=250.0, runner=runner, clock=lambda: now[0], log=lambda _line: None)
    # A tiny case expects ~14 s: it starts at t=0, 100 and 200 (50 s left), not at 300.
    assert [o.status for o in outcomes] == ["ok", "ok", "ok", "budget", "budget"]
    assert calls == [gc.case_timeout(outcomes[0].expected_s), gc.case_timeout(outcomes[0].expected_s), 50.0]  # capped at what is left
    assert "not started: expected 14 s, 0 s of the budget left" in outcomes[3].message


# --- the CSV ---------------------------------------------------------------------------------


def test_columns_equal_the_shared_measured_csv() -> None:
    if not MEASURED_CSV.exists():
        pytest.skip("../shared/validation/measured.csv is not beside this checkout")
    with MEASURED_CSV.open(newline="", encoding="utf-8") as fh:
        assert tuple(next(csv.reader(fh))) == gc.COLUMNS


def test_rows_round_trip_with_exact_bytes(tmp_path) -> None:
    case = gc.case_by_id("l3-lora-b4-1k")
    spec, _ = gc.case_spec(case)
    est = estimate(spec, case.workload)
    r = LiveResult(**{k: v for k, v in ok_result(est.torch_allocated_bytes + 12345, est.breakdown.torch_reserved_bytes).items()
                      if k != "status"}, fits=True)
    o = gc.CaseOutcome(case=case, status="ok", result=r, expected_s=16, seconds=15.5, estimate_bytes=gc.estimate_numbers(est))
    log = gc.CsvLog(tmp_path / "x.csv")
    log.write(gc.outcome_rows(o, when="2026-12-02 01:00 UTC"))
    log.close()
    rows = gc.read_rows(tmp_path / "x.csv")
    assert tuple(rows[0]) == gc.COLUMNS
    alloc = next(r for r in rows if r["id"] == "l3-lora-b4-1k:allocated")
    assert int(alloc["measured_value"]) == est.torch_allocated_bytes + 12345
    notes = gc.parse_notes(alloc["notes"])
    assert notes["status"] == "ok" and int(notes["estimate_bytes"]) == est.torch_allocated_bytes
    assert float(notes["error_pct"]) == pytest.approx(-12345 / (est.torch_allocated_bytes + 12345) * 100, abs=0.01)
    assert alloc["mode"] == "lora" and alloc["gpu"] == "NVIDIA H200" and "transformers 5.17.0" in alloc["framework"]
    outside = next(r for r in rows if r["id"].endswith(":outside"))
    assert int(outside["measured_value"]) == 520 * MiB


# --- the fit ---------------------------------------------------------------------------------


def _rows_for(points: list[tuple[str, int, float]], tmp_path: Path) -> list[dict[str, str]]:
    """Rows for cases (case id, allocated, reserve fraction) with a 520 MiB outside-the-allocator part."""
    out = []
    for cid, alloc, frac in points:
        case = gc.case_by_id(cid)
        r = LiveResult(**{k: v for k, v in ok_result(alloc, int(alloc * (1 + frac))).items() if k != "status"}, fits=True)
        out += gc.outcome_rows(gc.CaseOutcome(case=case, status="ok", result=r), when="2026-12-02 01:00 UTC")
    return out


def test_fit_recovers_the_reserve_fractions_and_the_context(tmp_path) -> None:
    inference = [(f"sweep-gen-l{n}", n * GiB, 0.03) for n in (2, 4, 8, 16)]
    training = [(f"sweep-full-l{n}", 3 * n * GiB, 0.08) for n in (2, 4, 8, 16)]
    fit = gpu_fit.fit_rows(_rows_for(inference + training, tmp_path))
    assert fit.reserve_fraction["inference"] == pytest.approx(0.03, rel=1e-6)
    assert fit.reserve_fraction["training"] == pytest.approx(0.08, rel=1e-6)
    assert fit.reserve_line["training"].intercept == pytest.approx(0, abs=2)
    assert fit.outside_bytes == 520 * MiB and fit.context_bytes == 400 * MiB
    assert fit.cases == {"inference": 4, "training": 4}
    text = gpu_fit.render_fit(fit)
    assert "0.0300 x allocated" in text and "520 MiB (median)" in text

    source = (ROOT / "calculator" / "estimate.py").read_text(encoding="utf-8")
    new = gpu_fit.apply_fit(fit, source)
    assert "\nCUDA_CONTEXT_BYTES = 520 * MiB\n" in new and "\nRESERVED_FRACTION_TRAINING = 0.0800\n" in new
    assert "# Measured (4 inference cases), fitted by benchmarks/gpu_fit.py from" in new and "gpu_measured.csv (NVIDIA H200" in new
    assert max(len(line) for line in new.splitlines()) <= 160  # ruff's line length
    assert gpu_fit.apply_fit(fit, new) == new  # applying twice replaces its own comment
    with pytest.raises(ValueError, match="too few measured cases"):
        gpu_fit.apply_fit(gpu_fit.fit_rows(_rows_for(inference, tmp_path)), source)


def test_fit_without_results_changes_nothing(tmp_path, capsys) -> None:
    assert gpu_fit.main(["--csv", str(tmp_path / "missing.csv"), "--apply"]) == 1
    assert "Nothing changed" in capsys.readouterr().err


# --- scoring beside the published rows -----------------------------------------------------------


def test_validation_scores_the_gpu_rows_in_their_own_section(tmp_path) -> None:
    import validation

    case = gc.case_by_id("l8-gen-b1-1k")
    spec, _ = gc.case_spec(case)
    est = estimate(spec, case.workload)
    allocated = est.torch_allocated_bytes * 100 // 101  # the engine is 1% above this measurement
    rows = _rows_for([("l8-gen-b1-1k", allocated, 0.02)], tmp_path)
    rows.append({**rows[0], "id": "l3-lora-b4-1k:status", "measured_value": "", "notes": "status=timeout; case=l3-lora-b4-1k"})
    log = gc.CsvLog(tmp_path / gc.CSV_NAME)
    log.write(rows)
    log.close()
    scored = validation.score_gpu(tmp_path / gc.CSV_NAME)
    by = {r["instrument"]: r for r in scored}
    assert set(by) == {"allocated", "reserved", "device", "context", "outside"}  # the timeout row is not scored
    assert by["allocated"]["error_pct"] == pytest.approx(1.0, abs=0.05)
    assert by["context"]["predicted_gib"] * GiB == est.breakdown.cuda_context_bytes
    text = validation.render_gpu(scored)
    assert text.startswith("## Measured on GPU") and "| l8-gen-b1-1k:allocated | inference-generate |" in text


def test_worker_reads_device_memory_without_nvml_through_nvidia_smi(monkeypatch) -> None:
    from calculator.verify import live_worker

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    monkeypatch.setattr(live_worker, "_nvidia_smi", lambda field: {"memory.used": "1234", "driver_version": "580.159"}[field])
    assert live_worker.device_used_bytes() == (1234 * MiB, "nvidia-smi")
    monkeypatch.setattr(live_worker, "_nvidia_smi", lambda field: None)
    assert live_worker.device_used_bytes() == (None, "")


# --- the worker's own code, on the CPU ------------------------------------------------------


TINY_LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
              "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}


@pytest.mark.trace
def test_worker_runs_every_campaign_code_path_on_the_cpu(monkeypatch) -> None:
    """A GPU window is too short to find a typo in: run the worker's `run()` end to end on the CPU
    with torch.cuda's bookkeeping stubbed, for each kind of case the plan has (generate with each
    cache, prefill, LoRA with checkpointing, full fine-tuning with fused AdamW and with AMP)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from calculator.verify import live_worker

    for name, value in {"is_available": lambda: True, "init": lambda: None, "current_device": lambda: 0,
                        "mem_get_info": lambda device=None: (60 * GiB, 80 * GiB), "get_device_name": lambda device=None: "CPU stand-in",
                        "synchronize": lambda device=None: None, "reset_peak_memory_stats": lambda device=None: None,
                        "max_memory_allocated": lambda device=None: 1, "max_memory_reserved": lambda device=None: 2,
                        "memory_allocated": lambda device=None: 1, "memory_reserved": lambda device=None: 2}.items():
        monkeypatch.setattr(torch.cuda, name, value)
    monkeypatch.setattr(live_worker, "_cuda_device", lambda torch: torch.device("cpu"))
    monkeypatch.setattr(live_worker, "device_used_bytes", lambda: (100 * MiB, "nvml"))
    cases = {
        "generate dynamic": Workload(precision="bf16", context_length=40, generated_tokens=8, batch_size=2),
        "generate static": Workload(precision="bf16", context_length=40, generated_tokens=8, cache_implementation="static"),
        "generate fp8 cache": Workload(precision="bf16", context_length=40, generated_tokens=8, cache_implementation="quantized",
                                       kv_cache_precision="fp8"),
        "prefill eager static": Workload(precision="bf16", context_length=32, attention="eager", cache_implementation="static"),
        "lora + checkpointing": Workload(mode="lora", precision="bf16", context_length=32, batch_size=2, gradient_checkpointing=True),
        "full, AMP": Workload(mode="full", precision="bf16", master_weights=True, context_length=32),
    }
    for label, w in cases.items():
        request = {"model_id": "tiny", "config": TINY_LLAMA, "workload": {**asdict(w), "notes": []}, "estimate_bytes": 1, "options": {}}
        result = live_worker.run(request)
        assert result["status"] == "ok", (label, result)
        assert result["context_bytes"] == 0 and result["process_used_bytes"] == 0 and result["versions"]["torch"], label
    fused = {"model_id": "tiny", "config": TINY_LLAMA, "workload": {**asdict(Workload(mode="full", precision="bf16", context_length=32)),
                                                                     "notes": []}, "estimate_bytes": 1, "options": {"adamw_impl": "fused"}}
    assert live_worker.run(fused)["status"] == "ok"
    json.dumps(result)  # what the worker prints


def test_device_row_falls_back_to_mem_get_info() -> None:
    # No NVML and no nvidia-smi: no context row; the device row is the whole device's used memory.
    r = LiveResult(fits=True, max_allocated_bytes=GiB, max_reserved_bytes=2 * GiB, reserved_at_measure_bytes=2 * GiB,
                   device_used_at_measure_bytes=3 * GiB)
    numbers = gc.measured_numbers(r)
    assert numbers["device"] == (3 * GiB, "torch.cuda.mem_get_info total - free (whole device, every process)")
    assert numbers["outside"][0] == GiB and "context" not in numbers
