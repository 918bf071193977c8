"""Figure builders take library results and draw exactly those numbers (no Streamlit needed)."""

from __future__ import annotations

import json

import plotly.io as pio
import pytest

from calculator.estimate import Breakdown, estimate
from calculator.gpus import get_gpu
from calculator.report import build_plan, context_sweep, estimate_to_dict
from calculator.resolve import resolve_model
from calculator.units import GB, GiB
from calculator.workload import Workload
from ui import figures
from ui.export import estimate_csv, estimate_json

SPEC = resolve_model("Qwen/Qwen2.5-7B").spec


def as_json(fig) -> dict:
    return json.loads(pio.to_json(fig))


def test_breakdown_segments_are_the_components_in_gib():
    b = Breakdown(weights_bytes=10 * GiB, kv_cache_bytes=GiB // 2, cuda_context_bytes=500 * 2**20)
    data = as_json(figures.breakdown_figure(b))["data"]
    assert [t["meta"] for t in data] == ["weights", "kv_cache", "cuda_context"]  # zero components left out
    assert [t["x"][0] for t in data] == pytest.approx([10.0, 0.5, 500 / 1024])
    assert data[0]["customdata"][0] == pytest.approx(10 * GiB / GB)  # hover shows GB too
    assert sum(t["x"][0] for t in data) == pytest.approx(b.total_bytes / GiB)


def test_breakdown_survives_byte_counts_past_int64():
    fig = figures.breakdown_figure(Breakdown(weights_bytes=2**70))
    assert as_json(fig)["data"][0]["x"][0] == pytest.approx(2**40)


def test_context_figure_has_sweep_point_and_capacity_lines():
    w = Workload(context_length=8192)
    sweep = context_sweep(SPEC, w)
    gpus = [get_gpu("rtx-4090"), get_gpu("h100-sxm")]
    fig = as_json(figures.context_figure(sweep, current_context=8192, current_bytes=estimate(SPEC, w).total_bytes, capacity_gpus=gpus,
                                         headroom_fraction=0.1, max_position_embeddings=SPEC.max_position_embeddings))
    line, point = fig["data"][0], fig["data"][1]
    assert line["x"] == [n for n, _ in sweep] and line["y"] == pytest.approx([b / GiB for _, b in sweep])
    assert point["x"] == [8192] and point["y"][0] == pytest.approx(estimate(SPEC, w).total_bytes / GiB)
    assert fig["layout"]["xaxis"]["type"] == "log"
    hlines = [s for s in fig["layout"]["shapes"] if s["y0"] == s["y1"]]
    assert sorted(s["y0"] for s in hlines) == pytest.approx(sorted(g.usable_bytes / 1.1 / GiB for g in gpus))
    assert "GiB" in fig["layout"]["yaxis"]["title"]["text"]


def test_ranking_figure_is_priced_configs_in_rank_order():
    plan = build_plan(SPEC, Workload())
    fig = as_json(figures.ranking_figure(plan.ranking, limit=10))
    bars = fig["data"][0]
    priced = [c for c in plan.ranking if c.priced][:10]
    assert bars["x"][::-1] == pytest.approx([c.total_usd_per_hour for c in priced])
    assert bars["y"][::-1] == [f"{c.count}× {c.gpu.name}" for c in priced]
    assert bars["marker"]["color"][::-1] == [figures.FIT_COLOUR if c.fits else figures.NO_FIT_COLOUR for c in priced]


def test_compare_figure_stacks_each_row():
    rows = [{"label": p, "breakdown": estimate(SPEC, Workload(precision=p)).breakdown} for p in ("fp16", "int4")]
    fig = as_json(figures.compare_figure(rows))
    weights = next(t for t in fig["data"] if t.get("meta") == "weights")
    assert weights["x"] == ["fp16", "int4"]
    assert weights["y"] == pytest.approx([r["breakdown"].weights_bytes / GiB for r in rows])
    totals = fig["data"][-1]
    assert totals["text"] == [f"{r['breakdown'].total_bytes / GiB:,.1f} GiB" for r in rows]


def test_exports_carry_the_engine_dict():
    data = estimate_to_dict(build_plan(SPEC, Workload()))
    assert json.loads(estimate_json(data))["total_bytes"] == data["total_bytes"]
    csv_text = estimate_csv(data)
    assert csv_text.startswith("field,value\nmodel,Qwen/Qwen2.5-7B\n")
    assert f"total_bytes,{data['total_bytes']}\n" in csv_text
    assert f"breakdown.weights,{data['breakdown']['weights']}\n" in csv_text
    assert "gpu_ranking.1.gpu," in csv_text and "gpu_ranking.11.gpu," not in csv_text


def test_ranking_table_carries_throughput_estimates():
    from calculator.report import build_plan, throughput_for
    from calculator.resolve import resolve_catalog
    from calculator.workload import Workload
    from ui.widgets import ranking_frame

    plan = build_plan(resolve_catalog("meta-llama/Llama-3.1-8B").spec, Workload(precision="bf16"))
    fitting = [c for c in plan.ranking if c.fits]
    frame = ranking_frame(fitting, plan=plan)
    speed = throughput_for(plan, fitting[0])
    assert frame.loc[0, "Decode tok/s (est.)"] == round(speed.decode.per_sequence_tokens_per_s, 1)
    assert frame.loc[0, "$ / 1M output tokens (est.)"] == round(speed.usd_per_million_output_tokens, 2)
