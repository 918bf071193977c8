"""The figure memo behind fast reruns (ui/figures.py): a figure is reused only for exactly the values
it shows, and the pruned template draws like plotly_white."""

from __future__ import annotations

import json
from dataclasses import replace

import plotly.io as pio

from calculator.estimate import COMPONENT_LABELS, Breakdown, component_labels
from calculator.gpus import load_gpus
from calculator.report import build_plan
from calculator.resolve import resolve_model
from calculator.workload import Workload
from ui import figures

SPEC = resolve_model("meta-llama/Llama-3.2-3B").spec


def spec_json(fig) -> dict:
    return json.loads(pio.to_json(fig, validate=False))


def test_breakdown_figure_is_reused_only_for_the_same_values():
    b = Breakdown(weights_bytes=6 * 2**30, kv_cache_bytes=2**30)
    first = figures.breakdown_figure(b)
    assert figures.breakdown_figure(Breakdown(weights_bytes=6 * 2**30, kv_cache_bytes=2**30)) is first
    for other in (
        figures.breakdown_figure(replace(b, kv_cache_bytes=2**30 + 1)),
        figures.breakdown_figure(b, title="other"),
        figures.breakdown_figure(b, labels=component_labels("vllm")),
    ):
        assert other is not first
    # The memoised build is the plain build.
    plain = figures._breakdown_figure.__wrapped__(tuple(b.as_dict().items()), b.total_bytes, "What the peak is made of", tuple(COMPONENT_LABELS.items()))
    assert spec_json(first) == spec_json(plain)


def test_context_figure_key_covers_every_input():
    gpus = [g for g in load_gpus() if g.id in figures.CAPACITY_GPU_IDS]
    sweep = [(1024, 7 * 2**30), (4096, 8 * 2**30)]
    kw = {"current_context": 4096, "current_bytes": 8 * 2**30, "capacity_gpus": gpus, "headroom_fraction": 0.0, "max_position_embeddings": 131072}
    first = figures.context_figure(sweep, **kw)
    assert figures.context_figure(list(sweep), **kw) is first
    changes = [{"current_context": 2048}, {"current_bytes": 9 * 2**30}, {"headroom_fraction": 0.1}, {"max_position_embeddings": 8192},
               {"capacity_gpus": gpus[:1]}, {"capacity_gpus": [replace(gpus[0], reported_total_mib=(gpus[0].usable_bytes >> 20) - 1), *gpus[1:]]}]
    for change in changes:
        assert figures.context_figure(sweep, **(kw | change)) is not first, change
    assert figures.context_figure([(1024, 7 * 2**30), (4096, 8 * 2**30 + 1)], **kw) is not first


def test_ranking_figure_key_covers_what_each_bar_shows():
    ranking = build_plan(SPEC, Workload()).ranking
    first = figures.ranking_figure(ranking)
    assert figures.ranking_figure(list(ranking)) is first
    top = next(c for c in ranking if c.priced)
    i = ranking.index(top)
    assert figures.ranking_figure([*ranking[:i], replace(top, fits=not top.fits), *ranking[i + 1:]]) is not first
    assert figures.ranking_figure(ranking, limit=5) is not first
    shown = spec_json(first)["data"][0]
    assert shown["y"][-1] == f"{top.count}× {top.gpu.name}" and shown["x"][-1] == top.total_usd_per_hour


def test_pruned_template_keeps_plotly_whites_cartesian_look():
    white = pio.templates["plotly_white"].to_plotly_json()
    ours = spec_json(figures.breakdown_figure(Breakdown(weights_bytes=2**30)))["layout"]["template"]
    for key in ("paper_bgcolor", "plot_bgcolor", "font", "colorway", "xaxis", "yaxis", "hoverlabel"):
        assert ours["layout"][key] == white["layout"][key], key
    assert ours["data"]["bar"] == white["data"]["bar"]
    assert len(json.dumps(ours)) < len(json.dumps(white)) / 2
