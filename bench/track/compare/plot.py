"""The Pareto plot of ``bench compare`` (forgetting gap against test accuracy, coloured by time),
where it is written and how it is logged to the compared parent run. matplotlib and mlflow load
inside the functions."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core.errors import BenchError
from bench.track import report


class NothingToPlot(BenchError):
    """No finished trial has the plot's two metrics (every trial failed, say): the table stands."""
from bench.track.compare.aggregate import TIME_METRIC, UTILITY_METRIC
from bench.track.report import ORIGINAL, RETRAIN

if TYPE_CHECKING:  # pragma: no cover
    from bench.track.compare.comparison import Comparison


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (lower or equal x, higher or equal y, one strictly)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(ox <= x and oy >= y and (ox < x or oy > y) for j, (ox, oy) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


@dataclass
class PlotPoint:
    name: str
    x: float
    xerr: float
    y: float
    yerr: float
    time: float


def plot_points(rows: list[report.Row], gap_metric: str) -> list[PlotPoint]:
    points = []
    for r in rows:
        (x, xs), (y, ys) = report._mean_std(r.values.get(gap_metric, [])), report._mean_std(r.values.get(UTILITY_METRIC, []))
        if not (math.isnan(x) or math.isnan(y)):
            points.append(PlotPoint(r.name, x, xs, y, ys, report.row_mean(r, TIME_METRIC)))
    return points


def plot_pareto(comp: Comparison, path: str | os.PathLike, gap_metric: str = "avg_gap",
                published: list[tuple[str, float, float]] | None = None,
                published_label: str = "published", also: tuple = ()) -> dict[tuple, list[str]]:
    """Write the plot to ``path`` (and the same figure to each path of ``also``, each in its
    extension's format); returns the Pareto-optimal method names per setting (by increasing gap).

    ``published``: (name, gap, test accuracy) points of a published table in the plot's units
    (``bench.track.compare.published.plot_points``), drawn on every panel as hollow orange markers
    labelled "NAME (paper)"; they take no part in the Pareto front.

    One panel per (dataset, model, forget) setting: x = ``gap_metric`` (lower is better), y =
    ``test_acc`` (higher is better), one point per method at its mean over seeds with std error
    bars, coloured by ``unlearn_seconds`` (log scale). The Pareto-optimal methods are ringed in red,
    starred in their label and joined by a dashed line; the original model is a grey cross and the
    retrained model's test accuracy a dotted line.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    settings = list(dict.fromkeys(r.setting for r in comp.rows))
    per_setting = {s: [r for r in comp.rows if r.setting == s] for s in settings}
    methods = {s: plot_points([r for r in rs if not report.is_reference(r)], gap_metric) for s, rs in per_setting.items()}
    if not any(methods.values()):
        raise NothingToPlot(f"Nothing to plot: no finished trial has both {gap_metric} and {UTILITY_METRIC}.")
    times = [p.time for ps in methods.values() for p in ps if p.time == p.time and p.time > 0]
    lo, hi = (min(times), max(times)) if times else (1e-3, 1.0)
    if hi <= lo * 1.01:
        lo, hi = lo / 2, hi * 2
    norm, cmap = LogNorm(lo, hi), "viridis"

    ncols = min(len(settings), 2)
    nrows = math.ceil(len(settings) / ncols)
    fig = Figure(figsize=(6.4 * ncols + 1.4, 4.6 * nrows + 0.9), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    optimal: dict[tuple, list[str]] = {}
    labels: list[tuple[Any, list[tuple[float, float, str, bool]]]] = []  # per axes: (x, y, text, bold)
    for ax, setting in zip(axes[: len(settings)], settings, strict=True):  # an odd count leaves one axes empty
        pts = methods[setting]
        refs = {r.name: r for r in per_setting[setting] if report.is_reference(r)}
        front = sorted((pts[i] for i in pareto_front([(p.x, p.y) for p in pts])), key=lambda p: p.x)
        optimal[setting] = [p.name for p in front]
        on_front = {id(p) for p in front}
        for p in pts:
            ax.errorbar(p.x, p.y, xerr=p.xerr or None, yerr=p.yerr or None, fmt="none", ecolor="0.55", elinewidth=1,
                        capsize=3, zorder=2)
        colors = [p.time if p.time == p.time and p.time > 0 else lo for p in pts]
        ax.scatter([p.x for p in pts], [p.y for p in pts], c=colors, cmap=cmap, norm=norm, s=90,
                   edgecolors="black", linewidths=0.6, zorder=3)
        if front:
            ax.plot([p.x for p in front], [p.y for p in front], color="tab:red", lw=1.6, ls="--", zorder=1)
            ax.scatter([p.x for p in front], [p.y for p in front], s=260, facecolors="none", edgecolors="tab:red",
                       linewidths=2, zorder=4)
        texts = []
        for p in plot_points([refs[ORIGINAL]], gap_metric) if ORIGINAL in refs else []:
            ax.errorbar(p.x, p.y, xerr=p.xerr or None, yerr=p.yerr or None, fmt="X", color="0.45", ms=9,
                        ecolor="0.7", capsize=3, zorder=3)
            texts.append((p.x, p.y, "original (no unlearning)", False))
        retrain_y = report.row_mean(refs[RETRAIN], UTILITY_METRIC) if RETRAIN in refs else float("nan")
        if not math.isnan(retrain_y):
            ax.axhline(retrain_y, color="0.5", lw=1, ls=":", zorder=0)
        if published:
            ax.scatter([x for _, x, _ in published], [y for _, _, y in published], s=90, facecolors="none",
                       edgecolors="tab:orange", linewidths=1.8, zorder=3)
            texts.extend((x, y, f"{name} (paper)", False) for name, x, y in published)
        for p in pts:
            star = " *" if id(p) in on_front else ""
            texts.append((p.x, p.y, f"{p.name}{star}" + (f" ({p.time:.2g} s)" if p.time == p.time else ""), id(p) in on_front))
        labels.append((ax, texts))
        ax.set_xlabel(f"{gap_metric}: forgetting gap to the retrained model (lower is better)")
        ax.set_ylabel(f"{UTILITY_METRIC}: utility (higher is better)")
        ax.set_title(" / ".join(setting), fontsize=10, parse_math=False)  # names are text: '$' is no math
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.2, y=0.12)
    for ax in axes[len(settings):]:
        ax.set_visible(False)

    handles = [
        Line2D([], [], marker="o", ls="none", color="0.8", mec="black", ms=8, label="method (mean ± std over seeds)"),
        Line2D([], [], marker="o", ls="--", color="tab:red", mfc="none", ms=13, mew=2, label="Pareto-optimal (*) and front"),
        Line2D([], [], marker="X", ls="none", color="0.45", ms=8, label="original model (reference)"),
        Line2D([], [], ls=":", color="0.5", label=f"retrained model's {UTILITY_METRIC} (reference)"),
    ]
    if published:
        handles.append(Line2D([], [], marker="o", ls="none", mfc="none", mec="tab:orange", mew=1.8, ms=8,
                              label=f"{published_label} (hollow; not on the front)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[: len(settings)]),
                       label=f"{TIME_METRIC} (method wall clock, s, log scale)")
    short = FuncFormatter(lambda v, _: f"{v:.2g}")
    bar.ax.yaxis.set_major_formatter(short)
    decades = math.log10(hi / lo)
    if decades > 2.5:  # labels at the powers of ten
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    elif decades > 1.0:  # at 1, 2, 5 x 10^k
        bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    else:  # a decade or less: every tick
        bar.ax.yaxis.set_minor_formatter(short)
    seeds = comp.seeds
    which = f"all {len(comp.parents)} runs" if comp.pooled else f"run {comp.target.info.run_id[:8]}"
    fig.suptitle(f"Forgetting vs utility: experiment '{comp.experiment}', {which}, "
                 f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}", fontsize=11)
    fig.draw_without_rendering()  # fixes the layout and the limits the labels are placed in
    for ax, texts in labels:
        ax.set_xlim(ax.get_xlim())
        ax.set_ylim(ax.get_ylim())
        _place_labels(ax, texts, fig.canvas.get_renderer())
    for out in (path, *also):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    return optimal


#: Label positions tried around a point, in offset points: (dx, dy, horizontal, vertical alignment).
_LABEL_SPOTS = ((9, 6, "left", "bottom"), (9, -6, "left", "top"), (-9, 6, "right", "bottom"), (-9, -6, "right", "top"),
                (0, 11, "center", "bottom"), (0, -11, "center", "top"), (14, 0, "left", "center"), (-14, 0, "right", "center"))


def _place_labels(ax, texts: list[tuple[float, float, str, bool]], renderer) -> None:
    """Annotate each point where its label overlaps no marker, no other label and stays inside the axes
    (or, failing that, where it overlaps least)."""
    from matplotlib.transforms import Bbox

    box = ax.get_window_extent(renderer)
    radius = 12  # pixels around a marker (the Pareto ring included)
    markers = [ax.transData.transform((x, y)) for x, y, _, _ in texts]
    placed: list = []

    def overlap(a, b) -> float:
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        return w * h if w > 0 and h > 0 else 0.0

    for x, y, text, bold in texts:
        best = None
        for dx, dy, ha, va in _LABEL_SPOTS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=8.5,
                              parse_math=False,  # a method named m$\oops$ crashed the plot (found in review)
                              fontweight="bold" if bold else "normal", color="0.3" if text.startswith("original") else "black",
                              zorder=5, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
            ann.set_in_layout(False)
            bb = ann.get_window_extent(renderer)
            cost = sum(overlap(bb, other) for other in placed)
            cost += sum(overlap(bb, Bbox.from_extents(mx - radius, my - radius, mx + radius, my + radius)) for mx, my in markers)
            outside = bb.width * bb.height - overlap(bb, box)
            cost += 2 * outside
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, bb)
            else:
                ann.remove()
            if cost == 0:
                break
        placed.append(best[2])


def default_plot_path(comp: Comparison) -> Path:
    prefix = comp.target.info.run_id[:8]
    return Path.cwd() / (f"compare-all-{prefix}.png" if comp.pooled else f"compare-{prefix}.png")


def artifact_name(comp: Comparison) -> str:
    """``pareto.png`` on the compared parent run; ``pareto-all.png`` (on the latest parent) when pooled,
    so that a pooled plot never replaces the one of that run alone."""
    return "pareto-all.png" if comp.pooled else "pareto.png"


def log_plot(comp: Comparison, path: str | os.PathLike) -> str:
    """Log the PNG as an artifact of the target parent run; returns the artifact's URI."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(comp.tracking_uri)
    name = artifact_name(comp)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / name
        shutil.copyfile(path, copy)
        client.log_artifact(comp.target.info.run_id, str(copy))
    return f"{comp.target.info.artifact_uri.rstrip('/')}/{name}"
