"""plotly ``FigureWidget`` builders and updaters: the metrics (loss) chart and the GPU chart.

Updaters take the whole current series and resend a trace only when its (thinned) data
changed; each update is one ``batch_update``, i.e. one message per figure.
"""

from __future__ import annotations

import contextlib
import html
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

with contextlib.suppress(ImportError):
    import pandas  # noqa: F401 - imported here, on the thread that imports the UI: see below

# plotly imports pandas lazily when it validates data, on the chart thread; job.metrics() imports
# it on the kernel's thread. Two threads importing pandas at once can see it half initialised
# ("partially initialized module 'pandas' has no attribute 'Series'"); imported here first, both
# find it complete.

MAX_POINTS = 2000
_BUILDER = ThreadPoolExecutor(1, thread_name_prefix="gpu_magic-charts")
"""Builds figures off the kernel's thread: a kernel's first ``FigureWidget`` takes seconds
(plotly loads its validators), and a submit must not wait for it. One thread, so plotly's own
lazy imports never run in two threads at once."""
COLORS = qualitative.Plotly
MARGIN = {"l": 50, "r": 50, "t": 30, "b": 40}


def thin(points: list, max_points: int = MAX_POINTS) -> list:
    """At most about ``max_points`` evenly spaced points, always keeping the last one."""
    if len(points) <= max_points:
        return list(points)
    stride = -(-len(points) // max_points)
    kept = list(points[::stride])
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    return kept


def columns(points: list) -> tuple[tuple, tuple]:
    return tuple(p[0] for p in points), tuple(p[1] for p in points)


def _set_data(trace, xs: tuple, ys: tuple) -> None:
    if tuple(trace.x or ()) != xs or tuple(trace.y or ()) != ys:
        trace.x, trace.y = xs, ys


def _trace(fig: go.FigureWidget, name: str):
    return next((t for t in fig.data if t.name == legend_name(name)), None)


def legend_name(name: str) -> str:
    """A metric's name as plotly shows it: escaped, since plotly reads tags in trace names
    (``<b>``, ``<a href>``) and a name comes from the job's output."""
    return html.escape(name, quote=False)


def build_figures(background: bool = True) -> Future:
    """``(metrics figure, GPU figure)``, built on the chart thread (inline without
    ``background``)."""
    return build(_both, background)


def build(make, background: bool = True) -> Future:
    """``make()``'s figures, built on the chart thread (inline without ``background``)."""
    if background:
        return _BUILDER.submit(make)
    done: Future = Future()
    done.set_result(make())
    return done


def _both() -> tuple[go.FigureWidget, go.FigureWidget]:
    return metrics_figure(), gpu_figure()


# -- metrics ----------------------------------------------------------------------------------
def metrics_figure(x_label: str = "step") -> go.FigureWidget:
    fig = go.FigureWidget()
    fig.update_layout(
        autosize=True,  # width: the element's (the panel's half box), at each relayout
        height=300,
        margin=MARGIN,
        title={"text": "metrics", "font": {"size": 13}},
        xaxis={"title": {"text": x_label}},
        yaxis={"title": {"text": "value"}},
        yaxis2={
            "title": {"text": "learning rate"},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "visible": False,
        },
        legend={"orientation": "h", "y": -0.25},
    )
    fig.add_class("gpu-magic-loss-chart")
    return fig


def update_metrics(
    fig: go.FigureWidget,
    series: dict[str, list[tuple[float, float]]],
    secondary: frozenset[str] = frozenset(),
    x_label: str | None = None,
) -> None:
    with fig.batch_update():
        for name, points in series.items():
            trace = _trace(fig, name) or _add_metric(fig, name, name in secondary)
            _set_data(trace, *columns(thin(points)))
        visible = bool(secondary & series.keys())
        if fig.layout.yaxis2.visible != visible:
            fig.layout.yaxis2.visible = visible
        if x_label and fig.layout.xaxis.title.text != x_label:
            fig.layout.xaxis.title.text = x_label


def _add_metric(fig: go.FigureWidget, name: str, secondary: bool):
    axis = {"yaxis": "y2", "line": {"dash": "dot"}} if secondary else {}
    fig.add_scatter(x=[], y=[], name=legend_name(name), mode="lines", **axis)
    return fig.data[-1]


# -- GPUs -------------------------------------------------------------------------------------
def gpu_figure() -> go.FigureWidget:
    base = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=("GPU utilisation %", "GPU memory GiB"),
    )
    fig = go.FigureWidget(base)
    fig.update_layout(
        autosize=True, height=320, margin=MARGIN, legend={"orientation": "h", "y": -0.2}
    )
    fig.update_yaxes(range=[0, 105], row=1, col=1)
    fig.add_class("gpu-magic-gpu-chart")
    return fig


def gpu_columns(samples) -> dict[int, dict[str, list]]:
    """Per GPU index: times (local, ISO text: JSON-safe), utilisation % and memory used (GiB)."""
    per_gpu: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        cols = per_gpu[s.index]
        cols["at"].append(datetime.fromtimestamp(s.at).isoformat(" ", "milliseconds"))
        cols["util"].append(s.utilization)
        cols["mem"].append(None if s.memory_used is None else s.memory_used / 1024)
        cols["total"].append(s.memory_total)
    return per_gpu


def update_gpu(fig: go.FigureWidget, samples) -> None:
    per_gpu = gpu_columns(samples)
    with fig.batch_update():
        for index in sorted(per_gpu):
            cols = per_gpu[index]
            util = _trace(fig, f"GPU{index}") or _add_gpu(fig, index, memory=False)
            mem = _trace(fig, f"GPU{index} memory") or _add_gpu(fig, index, memory=True)
            _set_data(util, *columns(thin(list(zip(cols["at"], cols["util"], strict=True)))))
            _set_data(mem, *columns(thin(list(zip(cols["at"], cols["mem"], strict=True)))))
        _memory_range(fig, per_gpu)


def _add_gpu(fig: go.FigureWidget, index: int, memory: bool):
    color = COLORS[index % len(COLORS)]
    name = f"GPU{index} memory" if memory else f"GPU{index}"
    fig.add_scatter(
        x=[],
        y=[],
        name=name,
        mode="lines",
        line={"color": color},
        legendgroup=f"gpu{index}",
        showlegend=not memory,
        row=2 if memory else 1,
        col=1,
    )
    return fig.data[-1]


def _memory_range(fig: go.FigureWidget, per_gpu) -> None:
    totals = [t for cols in per_gpu.values() for t in cols["total"] if t]
    if totals:
        top = max(totals) / 1024 * 1.05
        if tuple(fig.layout.yaxis2.range or ()) != (0, top):
            fig.update_yaxes(range=[0, top], row=2, col=1)
