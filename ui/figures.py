"""Plotly figure builders: library results in, `go.Figure` out. No Streamlit, so tests build
them directly. Memory axes are in GiB (2^30 bytes) and say so; hover text adds GB (10^9)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import NamedTuple

import plotly.graph_objects as go

from calculator.estimate import COMPONENT_LABELS, Breakdown
from calculator.gpus import GPU
from calculator.pricing import GPUConfiguration
from calculator.units import GB, GiB

# Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008), in component order, then greys for the
# runtime overhead so the model's own memory stands out on a projector.
COMPONENT_COLOURS: dict[str, str] = {
    "weights": "#0072B2",
    "kv_cache": "#E69F00",
    "activations": "#009E73",
    "logits": "#CC79A7",
    "gradients": "#D55E00",
    "optimizer": "#56B4E9",
    "master_weights": "#F0E442",
    "adapters": "#8C564B",
    "speech_codec": "#9467BD",
    "allocator_reserve": "#A0A0A0",
    "cuda_context": "#5A5A5A",
}
FIT_COLOUR = "#009E73"
NO_FIT_COLOUR = "#D55E00"
FONT = {"size": 16}
GIB_AXIS = "GiB (2³⁰ bytes) per GPU"

# Reference cards for the capacity lines on the context chart: one common card per memory size.
CAPACITY_GPU_IDS: tuple[str, ...] = ("rtx-4060-ti-16gb", "rtx-4090", "l40s", "h100-sxm")


# Memo of the main page's three figures: building one through plotly's validating object
# model costs 15-30 ms, serialising a built one about 0.5 ms, and a widget change usually leaves
# most of them as they were. Each memoised builder takes only hashable plain values (numbers,
# strings, tuples), extracted by its public wrapper from exactly the fields the figure shows, so its
# key is everything that determines the figure. Entries are shared by every session of the server:
# callers (st.plotly_chart serialises a copy) must not modify a returned figure.
_MEMO_SIZE = 128


def _gib(n: int | float) -> float:
    return n / GiB


def _tokens(n: int) -> str:
    """256, 4k, 128k, 1M: the way context lengths are said."""
    if n >= 2**20:
        return f"{n / 2**20:g}M"
    return f"{n / 1024:g}k" if n >= 1024 else str(n)


def _cartesian_white() -> go.layout.Template:
    """plotly's "plotly_white" template cut to what 2-D bar and line charts read: its layout keys for
    cartesian axes, fonts, hover, shapes and annotations, and its bar and scatter trace defaults.

    Built once at import: a figure deep-copies its template, and the full plotly_white (24 trace
    types, colour scales, 3-D/geo/polar axes) or plotly's default template, which a bare
    `go.Figure()` copies in first, cost more than the rest of the page's rerun (cProfile:
    benchmarks/results/app_rerun_profile_before.txt)."""
    import plotly.io as pio

    full = pio.templates["plotly_white"].to_plotly_json()
    keep = ("autotypenumbers", "colorway", "font", "hovermode", "hoverlabel", "paper_bgcolor", "plot_bgcolor", "xaxis", "yaxis",
            "shapedefaults", "annotationdefaults", "title")
    return go.layout.Template(layout={k: full["layout"][k] for k in keep if k in full["layout"]},
                              data={k: full["data"][k] for k in ("bar", "scatter")})


_TEMPLATE = _cartesian_white()


def _figure(data: object = None) -> go.Figure:
    """A figure with the pruned template set from the start (so plotly's default is never copied in)."""
    return go.Figure(data, layout={"template": _TEMPLATE})


def _layout(fig: go.Figure, *, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 20}, "yref": "container", "y": 0.98, "yanchor": "top"},
        # Own template (plotly_white, pruned: `_TEMPLATE`) and explicit tick/axis sizes: pages pass
        # theme=None so Streamlit's theme does not shrink them back to 11 px (too small on a projector).
        font=FONT,
        height=height + 40,
        # The legend hangs from just under the title (container coordinates: 44 px from the top) and
        # the plot's top margin grows with its rows: at 1280 px the breakdown's 7 entries wrap to 4 rows,
        # which, anchored on the plot's top edge, ran up into the title.
        margin={"l": 10, "r": 10, "t": 100, "b": 10},
        legend={"orientation": "h", "yref": "container", "yanchor": "top", "y": 1 - 44 / (height + 40), "xanchor": "left", "x": 0},
        hoverlabel={"font_size": 15},
    )
    fig.update_xaxes(tickfont={"size": 15}, title_font={"size": 16})
    fig.update_yaxes(tickfont={"size": 15}, title_font={"size": 16})
    return fig


def breakdown_figure(breakdown: Breakdown, *, title: str = "What the peak is made of", labels: Mapping[str, str] = COMPONENT_LABELS) -> go.Figure:
    """One horizontal stacked bar of the peak, a segment per non-zero component (GiB).

    The figure is memoised on exactly the values it shows (see `_MEMO_SIZE`); do not modify it."""
    return _breakdown_figure(tuple(breakdown.as_dict().items()), breakdown.total_bytes, title, tuple(labels.items()))


@lru_cache(maxsize=_MEMO_SIZE)
def _breakdown_figure(components: tuple[tuple[str, int], ...], total_bytes: int, title: str, label_items: tuple[tuple[str, str], ...]) -> go.Figure:
    labels = dict(label_items)
    fig = _figure()
    for name, num_bytes in components:
        if num_bytes <= 0:
            continue
        label = labels.get(name, name)
        fig.add_trace(
            go.Bar(
                name=label,
                x=[_gib(num_bytes)],
                y=["peak"],
                orientation="h",
                marker_color=COMPONENT_COLOURS.get(name, "#777777"),
                customdata=[num_bytes / GB],  # floats: byte counts can pass 2^63 for absurd inputs
                hovertemplate=f"{label}: %{{x:,.2f}} GiB (%{{customdata:,.2f}} GB)<extra></extra>",
                text=[f"{label}<br>{_gib(num_bytes):,.1f} GiB"] if num_bytes >= 0.06 * total_bytes else None,
                textposition="inside",
                insidetextanchor="middle",
                meta=name,
            )
        )
    fig.update_layout(barmode="stack", showlegend=True, yaxis={"visible": False}, xaxis={"title": GIB_AXIS})
    return _layout(fig, title=title, height=300)


def context_figure(
    sweep: Sequence[tuple[int, int]],
    *,
    current_context: int,
    current_bytes: int,
    capacity_gpus: Sequence[GPU] = (),
    headroom_fraction: float = 0.0,
    max_position_embeddings: int | None = None,
    title: str = "VRAM vs context length",
) -> go.Figure:
    """Peak per GPU against context length (log x), with each reference GPU's usable memory
    (divided by 1 + headroom, so crossing a line means "no longer fits") as a horizontal line.

    Memoised on exactly the values it shows (see `_MEMO_SIZE`); do not modify the figure."""
    return _context_figure(tuple((int(n), int(b)) for n, b in sweep), current_context, current_bytes,
                           tuple((g.name, g.usable_bytes) for g in capacity_gpus), headroom_fraction, max_position_embeddings, title)


@lru_cache(maxsize=_MEMO_SIZE)
def _context_figure(sweep: tuple[tuple[int, int], ...], current_context: int, current_bytes: int, capacity: tuple[tuple[str, int], ...],
                    headroom_fraction: float, max_position_embeddings: int | None, title: str) -> go.Figure:
    xs = [n for n, _ in sweep]
    ys = [_gib(b) for _, b in sweep]
    fig = _figure()
    fig.add_trace(
        go.Scatter(
            x=xs, y=ys, mode="lines+markers", name="peak VRAM", line={"width": 4, "color": COMPONENT_COLOURS["weights"]},
            customdata=[b / GB for _, b in sweep], hovertemplate="%{x:,} tokens: %{y:,.2f} GiB (%{customdata:,.2f} GB)<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[current_context], y=[_gib(current_bytes)], mode="markers", name="your setting",
            marker={"size": 16, "color": NO_FIT_COLOUR, "symbol": "diamond"},
            hovertemplate="your setting: %{x:,} tokens, %{y:,.2f} GiB<extra></extra>",
        )
    )
    # Shapes and annotations in one layout update: add_hline/add_vline validate per call and cost
    # ~10 ms each, a third of the page's rerun budget.
    shapes: list[dict] = []
    notes: list[dict] = []
    for gpu_name, usable_bytes in capacity:
        limit = _gib(usable_bytes / (1 + headroom_fraction))
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": limit, "y1": limit,
                       "line": {"dash": "dash", "color": "#444444", "width": 1.5}})
        label = f"{gpu_name}: {limit:,.1f} GiB" + (f" after {headroom_fraction:.0%} headroom" if headroom_fraction else " usable")
        notes.append({"xref": "paper", "x": 0, "yref": "y", "y": limit, "text": label, "showarrow": False, "xanchor": "left", "yanchor": "bottom",
                      "font": {"size": 14, "color": "#333333"}})
    if max_position_embeddings:
        shapes.append({"type": "line", "xref": "x", "x0": max_position_embeddings, "x1": max_position_embeddings, "yref": "paper", "y0": 0, "y1": 1,
                       "line": {"dash": "dot", "color": "#888888", "width": 1.5}})
        # Annotations on a log axis take log10 of the position (shapes take the value itself).
        notes.append({"xref": "x", "x": math.log10(max_position_embeddings), "yref": "paper", "y": 1, "text": f"model max {max_position_embeddings:,}",
                      "showarrow": False, "xanchor": "right", "yanchor": "top", "font": {"size": 14, "color": "#333333"}})
    fig.update_layout(shapes=shapes, annotations=notes)
    ticks = [2**k for k in range(8, 25) if xs and 2**k <= max(xs) * 1.01]
    fig.update_layout(
        xaxis={"type": "log", "title": "context length (tokens, log scale)", "tickvals": ticks, "ticktext": [_tokens(t) for t in ticks]},
        yaxis={"title": GIB_AXIS, "rangemode": "tozero"},
    )
    return _layout(fig, title=title, height=460)


def ranking_figure(configs: Sequence[GPUConfiguration], *, limit: int = 15, title: str = "GPU configurations by price") -> go.Figure:
    """Horizontal bars of total $/hour for the first `limit` ranked configurations, coloured by
    fit, labelled with the share of usable memory the job takes.

    Memoised on exactly the values it shows (see `_MEMO_SIZE`); do not modify the figure."""
    shown = tuple(_Bar(c.count, c.gpu.name, c.total_usd_per_hour, c.fits, c.utilisation, c.cheapest_provider or "")
                  for c in configs if c.priced)[:limit]
    return _ranking_figure(shown, title)


class _Bar(NamedTuple):
    """What the ranking chart shows of one configuration."""

    count: int
    gpu_name: str
    total_usd_per_hour: float
    fits: bool
    utilisation: float
    cheapest_provider: str


@lru_cache(maxsize=_MEMO_SIZE)
def _ranking_figure(shown: tuple[_Bar, ...], title: str) -> go.Figure:
    names = [f"{c.count}× {c.gpu_name}" for c in shown][::-1]
    prices = [c.total_usd_per_hour for c in shown][::-1]
    colours = [FIT_COLOUR if c.fits else NO_FIT_COLOUR for c in shown][::-1]
    labels = [f"${c.total_usd_per_hour:,.2f}/hr · {c.utilisation:.0%} used" + ("" if c.fits else " · does not fit") for c in shown][::-1]
    fig = _figure(
        go.Bar(
            x=prices, y=names, orientation="h", marker_color=colours, text=labels, textposition="auto", cliponaxis=False,
            outsidetextfont={"color": "#1F2937", "size": 15}, insidetextfont={"color": "white", "size": 15},
            customdata=[[c.cheapest_provider, c.utilisation * 100] for c in shown][::-1],
            hovertemplate="%{y}: $%{x:,.2f}/hr at %{customdata[0]}, %{customdata[1]:.0f}% of usable memory<extra></extra>",
            name="total $/hr",
        )
    )
    # Leave room right of the longest bar so labels placed outside short bars are never clipped.
    top = max(prices, default=1.0) or 1.0
    fig.update_layout(xaxis={"title": "total USD per hour", "range": [0, top * 1.25]}, yaxis={"title": None, "automargin": True}, showlegend=False)
    return _layout(fig, title=title, height=max(320, 34 * len(shown) + 120))


def compare_figure(rows: Sequence[Mapping[str, object]], *, title: str = "Peak VRAM per GPU, side by side") -> go.Figure:
    """Stacked bars, one per compared row (`label` plus `breakdown`: a Breakdown)."""
    fig = _figure()
    labels = [str(r["label"]) for r in rows]
    for name in COMPONENT_LABELS:
        values = [_gib(r["breakdown"].as_dict()[name]) for r in rows]  # type: ignore[union-attr]
        if not any(values):
            continue
        fig.add_trace(go.Bar(name=COMPONENT_LABELS[name], x=labels, y=values, marker_color=COMPONENT_COLOURS[name], meta=name,
                             hovertemplate=f"{COMPONENT_LABELS[name]}: %{{y:,.2f}} GiB<extra></extra>"))
    totals = [_gib(r["breakdown"].total_bytes) for r in rows]  # type: ignore[union-attr]
    fig.add_trace(go.Scatter(x=labels, y=totals, mode="text", text=[f"{t:,.1f} GiB" for t in totals], textposition="top center",
                             showlegend=False, name="total", textfont={"size": 16}))
    fig.update_layout(barmode="stack", yaxis={"title": GIB_AXIS})
    return _layout(fig, title=title, height=480)
