"""Time a full rerun of the main page for a cached model, and the page's compute path alone.

    python benchmarks/app_rerun.py [--runs 20]

A rerun is what every widget change costs: the whole script, with the Hub lookup and the view's
numbers served from st.cache_data. Reported twice: as AppTest runs it (it recompiles the scripts
every run) and with the bytecode cache the server keeps (see `time_reruns`); wall and CPU time. Measured with Streamlit's AppTest (in-process, no browser), so
it excludes websocket and browser rendering. The compute path is the library calls one uncached
view makes (plan, precision x mode table, context sweep, advisor), i.e. the cost of a cache miss.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def time_reruns(runs: int, *, profile: Path | None = None, server_bytecode: bool = False) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of `runs` warm reruns. CPU time (`time.process_time`, all threads of
    this process) is what the script costs; wall time also counts waiting for a busy machine's cores.
    With `profile`, the script thread of the warm reruns runs under cProfile and the top functions by
    cumulative time are written there.

    AppTest (streamlit 1.67, testing/v1/app_test.py and local_script_runner.py) makes a new
    ScriptCache for every run, so it re-reads, magic-transforms and compiles app.py and the page
    on each rerun; the server keeps one ScriptCache for its lifetime (runtime/runtime.py), so a
    widget change there runs cached bytecode. `server_bytecode=True` gives AppTest one shared
    ScriptCache, as the server has: the rerun a user waits for."""
    import cProfile

    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import AppTest
    from streamlit.testing.v1 import app_test as app_test_module
    from streamlit.testing.v1 import local_script_runner as lsr

    shared_cache = ScriptCache()
    factories = (app_test_module.ScriptCache, lsr.ScriptCache)
    if server_bytecode:
        app_test_module.ScriptCache = lsr.ScriptCache = lambda: shared_cache  # type: ignore[assignment,misc]

    prof = cProfile.Profile() if profile else None
    original = lsr.LocalScriptRunner._run_script_thread

    def profiled(self: Any) -> None:
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()  # cold: imports, first lookup, first view
    assert not at.exception, at.exception
    at.run()  # the first rerun fills the remaining per-process caches
    if prof is not None:
        lsr.LocalScriptRunner._run_script_thread = profiled
    wall, cpu = [], []
    try:
        for _ in range(runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            at.run()
            wall.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
    finally:
        lsr.LocalScriptRunner._run_script_thread = original
        app_test_module.ScriptCache, lsr.ScriptCache = factories  # type: ignore[misc]
    assert not at.exception
    if prof is not None and profile is not None:
        import io
        import pstats

        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("cumulative")
        buf.write(f"cProfile of {runs} warm reruns of the default view (cumulative time; totals are for all {runs} runs)\n")
        stats.print_stats(45)
        profile.parent.mkdir(parents=True, exist_ok=True)
        profile.write_text(buf.getvalue())
    return wall, cpu


def time_compute(runs: int) -> list[float]:
    from calculator import advisor, report
    from calculator.gpus import get_gpu
    from calculator.resolve import resolve_model
    from calculator.workload import Workload

    spec = resolve_model("bosonai/higgs-audio-v2-generation-3B-base").spec
    w = Workload()
    usable = get_gpu("rtx-4090").usable_bytes
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        plan = report.build_plan(spec, w)
        report.precision_mode_table(spec, w)
        report.context_sweep(spec, w, max_tokens=max(spec.max_position_embeddings, w.context_length))
        report.estimate_to_dict(plan)
        advisor.fit_limits(spec, w, usable_bytes=usable)
        advisor.suggest_changes(spec, w, usable_bytes=usable)
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the reruns here (a separate run of its own)")
    args = parser.parse_args()
    if args.profile:
        time_reruns(args.runs, profile=args.profile, server_bytecode=True)
    reruns, reruns_cpu = time_reruns(args.runs)
    served, served_cpu = time_reruns(args.runs, server_bytecode=True)
    compute = time_compute(args.runs)
    import streamlit

    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, streamlit {streamlit.__version__}")
    print("model: bosonai/higgs-audio-v2-generation-3B-base (default view), cached")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"full script rerun (AppTest), {args.runs} runs: median {statistics.median(reruns):.0f} ms, min {min(reruns):.0f} ms, max {max(reruns):.0f} ms")
    print(f"  CPU time of the same reruns: median {statistics.median(reruns_cpu):.0f} ms, min {min(reruns_cpu):.0f} ms, max {max(reruns_cpu):.0f} ms")
    print(f"rerun with the server's bytecode cache (one ScriptCache, as runtime.py keeps), {args.runs} runs: "
          f"median {statistics.median(served):.0f} ms, min {min(served):.0f} ms, max {max(served):.0f} ms")
    print(f"  CPU time of the same reruns: median {statistics.median(served_cpu):.0f} ms, min {min(served_cpu):.0f} ms, max {max(served_cpu):.0f} ms")
    print(f"uncached compute path, {args.runs} runs: median {statistics.median(compute):.1f} ms, min {min(compute):.1f} ms, max {max(compute):.1f} ms")


if __name__ == "__main__":
    main()
