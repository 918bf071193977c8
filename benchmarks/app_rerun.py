"""Time a full rerun of the main page for a cached model, and the page's compute path alone.

    python benchmarks/app_rerun.py [--runs 20]

A rerun is what every widget change costs: the whole script, with the Hub lookup and the view's
numbers served from st.cache_data. Measured with Streamlit's AppTest (in-process, no browser), so
it excludes websocket and browser rendering. The compute path is the library calls one uncached
view makes (plan, precision x mode table, context sweep, advisor), i.e. the cost of a cache miss.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def time_reruns(runs: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()  # cold: imports, first lookup, first view
    assert not at.exception, at.exception
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        at.run()
        out.append((time.perf_counter() - start) * 1000)
    assert not at.exception
    return out


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
    args = parser.parse_args()
    reruns = time_reruns(args.runs)
    compute = time_compute(args.runs)
    import streamlit

    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, streamlit {streamlit.__version__}")
    print("model: bosonai/higgs-audio-v2-generation-3B-base (default view), cached")
    print(f"full script rerun (AppTest), {args.runs} runs: median {statistics.median(reruns):.0f} ms, min {min(reruns):.0f} ms, max {max(reruns):.0f} ms")
    print(f"uncached compute path, {args.runs} runs: median {statistics.median(compute):.1f} ms, min {min(compute):.1f} ms, max {max(compute):.1f} ms")


if __name__ == "__main__":
    main()
