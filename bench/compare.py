"""``bench compare``: read finished ``bench run``s back from MLflow, rank the methods, plot the trade-off.

What it reads is what :mod:`bench.runner` writes: parent runs tagged ``bench.role=parent``, and
under each one child run per trial (``bench.role=trial``, ``mlflow.parentRunId``, ``bench.method``,
``bench.seed``, ``bench.dataset``, ``bench.model``, ``bench.forget``, method hyperparameters as
``params.*`` params) with every metric of the trial, including the reference accuracies
``original_*`` / ``retrain_*`` and ``retrain_seconds``.

Rows are the methods per (dataset, model, forget) setting, plus the two reference rows rebuilt
from the children's ``original_*`` / ``retrain_*`` metrics (one value per parent run and seed);
their gaps are computed from the same accuracies (the original model's gaps are what doing
nothing scores). Cells are mean ± std over seeds (sample std). Failed or killed trials are
counted, never averaged. When pooled runs (``--run all``) used different hyperparameters for a
method, each variant gets its own row, labelled with the parameters that differ (``ga[lr=0.01]``).

Nothing heavy is imported at module level: mlflow and matplotlib load inside the functions.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import report
from .errors import BenchError
from .metrics import ACCURACIES, DIRECTIONS, direction

DEFAULT_EXPERIMENT = "unlearning-bench"
DEFAULT_OBJECTIVE = "avg_gap"
GAP_METRICS = ("avg_gap", "forget_gap")
UTILITY_METRIC = "test_acc"
TIME_METRIC = "unlearn_seconds"
ORIGINAL, RETRAIN = "original (reference)", "retrain (reference)"
REFERENCE_PREFIXES = ("original_", "retrain_")
FINISHED = "FINISHED"
UNFINISHED = ("RUNNING", "SCHEDULED")

# -- reading MLflow ------------------------------------------------------------------------------

@dataclass
class TrialRecord:
    """One child run (one trial), as read back from MLflow."""

    run_id: str
    parent_id: str
    method: str
    seed: str
    setting: tuple[str, str, str]  # dataset, model, forget
    status: str
    start_time: int
    metrics: dict[str, float]
    method_params: dict[str, str]  # the ``params.*`` params, without the prefix
    label: str = ""  # the row name: the method, plus its differing hyperparameters when pooled

    @property
    def finished(self) -> bool:
        return self.status == FINISHED


@dataclass
class Comparison:
    experiment: str
    experiment_id: str
    tracking_uri: str
    parents: list[Any]  # mlflow Run objects, latest first
    pooled: bool
    trials: list[TrialRecord]
    unfinished: int  # trials still running (not counted in the rows)
    rows: list[report.Row]
    ranks: list[int | None]
    columns: list[str]
    objective: str
    maximize: bool
    available: list[str] = field(default_factory=list)

    @property
    def target(self):
        """The parent run the plot is logged to (the latest one when pooled)."""
        return self.parents[0]

    @property
    def seeds(self) -> list[str]:
        return sorted({t.seed for t in self.trials}, key=lambda s: (len(s), s))

    def describe(self) -> str:
        if self.pooled:
            return f"all {len(self.parents)} parent runs"
        p = self.target.info
        return f"parent run {p.run_id} ('{p.run_name}', {p.status})"


def open_store(tracking_uri: str | None) -> tuple[str, Any]:
    """Resolve the store as ``bench run`` does; a missing SQLite file is an error, never created."""
    from .experiment import resolve_tracking_uri
    from .tracking import configure_environment

    uri = resolve_tracking_uri(tracking_uri, writable=False)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.is_file():
            raise BenchError(f"No MLflow store at {db}: nothing has been run here. Run `bench run` first, "
                             f"or point --tracking-uri (or MLFLOW_TRACKING_URI) at the store `bench run` used.")
    configure_environment()
    from mlflow.tracking import MlflowClient

    return uri, MlflowClient(uri)


def _search_all(client, experiment_ids: list[str], filter_string: str, order_by: list[str] | None = None) -> list:
    runs: list = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, order_by=order_by,
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_experiment(client, name: str):
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage == "deleted":
        names = sorted(e.name for e in client.search_experiments())
        listed = ", ".join(f"'{n}'" for n in names) if names else "none"
        raise BenchError(f"Unknown experiment '{name}'. Experiments in this store: {listed}. Pass one with --experiment.")
    return exp


def select_parents(client, exp, run_ref: str) -> list:
    """``latest`` (default), ``all``, a parent run id, a unique id prefix (4+ characters) or a run name.

    ``latest`` and ``all`` mean ``bench run`` runs; a ``bench tune`` run (tag ``bench.kind=tune``) is
    compared only when named, each sample being its own row."""
    parents = _search_all(client, [exp.experiment_id], "tags.`bench.role` = 'parent'", ["attributes.start_time DESC"])
    if not parents:
        raise BenchError(f"Experiment '{exp.name}' has no bench runs (no parent run tagged bench.role=parent). "
                         f"Run `bench run --experiment {exp.name}` first.")
    ref = (run_ref or "latest").strip()
    if ref in ("latest", "all"):
        runs = [p for p in parents if p.data.tags.get("bench.kind") != "tune"]  # `bench tune` searches: by id only
        if not runs:
            tunes = ", ".join(f"{p.info.run_id} ('{p.info.run_name}')" for p in parents[:5])
            raise BenchError(f"Experiment '{exp.name}' has only `bench tune` runs, which --run {ref} leaves out; "
                             f"compare the samples of one with --run ID: {tunes}.")
        return runs[:1] if ref == "latest" else runs
    match = [p for p in parents if p.info.run_id == ref] or [p for p in parents if p.info.run_name == ref][:1]
    if not match and len(ref) >= 4:
        match = [p for p in parents if p.info.run_id.startswith(ref)]
    if len(match) == 1:
        return match
    recent = ", ".join(f"{p.info.run_id} ('{p.info.run_name}')" for p in parents[:5])
    if len(match) > 1:
        raise BenchError(f"--run {ref} matches {len(match)} parent runs of experiment '{exp.name}'; give more of the id. "
                         f"Recent parent runs: {recent}.")
    hint = ""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(ref)
    except MlflowException:
        run = None
    if run is not None:
        if run.data.tags.get("bench.role") == "trial":
            hint = f" It is a trial run; its parent run is {run.data.tags.get('mlflow.parentRunId')}."
        elif run.info.experiment_id != exp.experiment_id:
            other = client.get_experiment(run.info.experiment_id).name
            hint = f" It belongs to experiment '{other}': pass --experiment '{other}'."
        else:
            hint = " It is not a bench parent run."
    raise BenchError(f"Unknown run '{ref}' in experiment '{exp.name}'.{hint} Recent parent runs: {recent}; "
                     f"or pass --run latest or --run all.")


def load_trials(client, experiment_id: str, parents: list) -> tuple[list[TrialRecord], int]:
    """The trial runs of ``parents``, one per trial (a trial re-run by ``--resume`` counts once, its
    latest finished attempt winning), oldest first; and how many are still running."""
    ids = {p.info.run_id for p in parents}
    if len(parents) == 1:
        runs = _search_all(client, [experiment_id], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    else:
        runs = _search_all(client, [experiment_id], "tags.`bench.role` = 'trial'")
    attempts: dict[tuple, list[TrialRecord]] = defaultdict(list)
    for run in runs:
        tags = run.data.tags
        if tags.get("bench.role") != "trial" or tags.get("mlflow.parentRunId") not in ids:
            continue
        rec = TrialRecord(
            run_id=run.info.run_id, parent_id=tags["mlflow.parentRunId"], method=tags.get("bench.method", "?"),
            seed=tags.get("bench.seed", "?"),
            setting=(tags.get("bench.dataset", "?"), tags.get("bench.model", "?"), tags.get("bench.forget", "?")),
            status=run.info.status, start_time=run.info.start_time or 0, metrics=dict(run.data.metrics),
            method_params={k[len("params."):]: v for k, v in run.data.params.items() if k.startswith("params.")},
        )
        key = tags.get("bench.trial_key") or (rec.method, rec.seed, *rec.setting)
        attempts[(rec.parent_id, key)].append(rec)
    trials: list[TrialRecord] = []
    unfinished = 0
    for group in attempts.values():
        group.sort(key=lambda t: t.start_time)
        done = [t for t in group if t.finished]
        best = done[-1] if done else group[-1]
        if best.status in UNFINISHED:
            unfinished += 1
            continue
        trials.append(best)
    trials.sort(key=lambda t: (t.start_time, t.run_id))
    _label_variants(trials)
    return trials, unfinished


def _label_variants(trials: list[TrialRecord]) -> None:
    """Row names: the method, plus the hyperparameters that differ when pooled runs used several."""
    by_method: dict[str, list[TrialRecord]] = defaultdict(list)
    for t in trials:
        by_method[t.method].append(t)
    for method, group in by_method.items():
        variants = {tuple(sorted(t.method_params.items())) for t in group}
        if len(variants) <= 1:
            for t in group:
                t.label = method
            continue
        keys = sorted({k for t in group for k in t.method_params})
        differing = [k for k in keys if len({t.method_params.get(k) for t in group}) > 1]
        for t in group:
            shown = ",".join(f"{k}={_short(t.method_params.get(k, '-'))}" for k in differing)
            t.label = f"{method}[{shown}]"


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() or len(value) <= 7 else f"{number:.4g}"


# -- rows, ranks -----------------------------------------------------------------------------

def reference_values(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """The original and retrained models' rows of one trial's metrics, with their gaps."""
    original = {k[len("original_"):]: v for k, v in metrics.items() if k.startswith("original_")}
    retrain = {k[len("retrain_"):]: v for k, v in metrics.items() if k.startswith("retrain_") and k != "retrain_seconds"}
    gaps = []
    for acc in ACCURACIES:
        if acc in original and acc in retrain:
            gap = abs(original[acc] - retrain[acc])
            original[acc.replace("_acc", "_gap")] = gap
            retrain[acc.replace("_acc", "_gap")] = 0.0
            gaps.append(gap)
    if len(gaps) == len(ACCURACIES):
        original["avg_gap"] = sum(gaps) / len(gaps)
        retrain["avg_gap"] = 0.0
    if "retrain_seconds" in metrics:
        retrain[TIME_METRIC] = metrics["retrain_seconds"]
    return original, retrain


def build_rows(trials: list[TrialRecord]) -> list[report.Row]:
    """Per setting: the two reference rows, then one row per method (label), in order of appearance."""
    rows: dict[tuple, report.Row] = {}
    settings: list[tuple] = []
    names: dict[tuple, list[str]] = defaultdict(list)

    def row(setting, name):
        if setting not in names:
            settings.append(setting)
        if (setting, name) not in rows:
            rows[(setting, name)] = report.Row(setting, name, defaultdict(list), 0, 0)
            names[setting].append(name)
        return rows[(setting, name)]

    for t in trials:  # every setting gets its reference rows first
        row(t.setting, ORIGINAL)
        row(t.setting, RETRAIN)
    seen_refs: set[tuple] = set()
    for t in trials:
        r = row(t.setting, t.label)
        if not t.finished:
            r.failed += 1
            continue
        r.ok += 1
        for k, v in t.metrics.items():
            if not k.startswith(REFERENCE_PREFIXES):
                r.values[k].append(float(v))
        ref_key = (t.parent_id, t.setting, t.seed)
        if ref_key in seen_refs:
            continue
        original, retrain = reference_values(t.metrics)
        if not original and not retrain:
            continue
        seen_refs.add(ref_key)
        for name, values in ((ORIGINAL, original), (RETRAIN, retrain)):
            ref = row(t.setting, name)
            ref.ok += 1
            for k, v in values.items():
                ref.values[k].append(float(v))
    out = []
    for setting in settings:
        out.extend(rows[(setting, n)] for n in names[setting] if rows[(setting, n)].ok or not report.is_reference(rows[(setting, n)]))
    return out


def available_metrics(trials: list[TrialRecord]) -> list[str]:
    """The metrics a method can be ranked by: those of finished trials, less the reference copies."""
    names = {k for t in trials if t.finished for k in t.metrics if not k.startswith(REFERENCE_PREFIXES)}
    return sorted(names)


def resolve_objective(objective: str, maximize: bool | None, available: list[str]) -> bool:
    if available and objective not in available:
        raise BenchError(f"Unknown objective metric '{objective}'. Available metrics: {', '.join(available)}.")
    if maximize is not None:
        return maximize
    known = direction(objective)
    if known is None:
        extra = ""
        if objective in DIRECTIONS:  # known to have no better direction
            gap = objective.replace("_acc", "_gap")
            gap = gap if gap in available else "avg_gap"
            extra = f" Its target is the retrained model's value, not an extreme: rank by '{gap}' instead, or choose a direction."
        raise BenchError(f"No known better direction for '{objective}'.{extra} Pass --maximize or --minimize.")
    return known


def order_rows(rows: list[report.Row], ranks: list[int | None]) -> tuple[list[report.Row], list[int | None]]:
    """Per setting (in order of appearance): the references, then the methods by rank (unranked last)."""
    settings = list(dict.fromkeys(r.setting for r in rows))
    pairs = list(zip(rows, ranks, strict=True))

    def key(pair):
        r, k = pair
        return (settings.index(r.setting), 0 if report.is_reference(r) else 1,
                math.inf if k is None else k, 0 if report.is_reference(r) else r.name)

    pairs.sort(key=key)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def compare(tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, run: str = "latest",
            objective: str = DEFAULT_OBJECTIVE, maximize: bool | None = None) -> Comparison:
    uri, client = open_store(tracking_uri)
    exp = find_experiment(client, experiment)
    parents = select_parents(client, exp, run)
    trials, unfinished = load_trials(client, exp.experiment_id, parents)
    if not trials:
        which = "these parent runs" if len(parents) > 1 else f"parent run {parents[0].info.run_id}"
        still = f" ({unfinished} still running)" if unfinished else " (was it interrupted before its trials started?)"
        raise BenchError(f"No finished or failed trial runs under {which}{still}. Pick another with --run ID, or --run all.")
    available = available_metrics(trials)
    maximize = resolve_objective(objective, maximize, available)
    rows = build_rows(trials)
    ranks = report.rank_rows(rows, objective, maximize)
    rows, ranks = order_rows(rows, ranks)
    columns = list(report.columns_for(rows))  # plus forget_all_acc etc. for continual requests
    columns += [objective] if objective not in columns else []
    return Comparison(experiment=exp.name, experiment_id=exp.experiment_id, tracking_uri=uri, parents=parents,
                      pooled=len(parents) > 1 or run.strip() == "all", trials=trials, unfinished=unfinished,
                      rows=rows, ranks=ranks, columns=columns, objective=objective, maximize=maximize, available=available)


def title(comp: Comparison) -> str:
    better = "higher" if comp.maximize else "lower"
    p = comp.target.info
    which = f"all {len(comp.parents)} runs" if comp.pooled else f"run {p.run_id[:8]} ({p.run_name})"
    return (f"bench compare: '{comp.experiment}' {which}, ranked by {comp.objective} ({better} is better), "
            f"mean ± std over seeds")


# -- the Pareto plot -------------------------------------------------------------------------

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


def plot_pareto(comp: Comparison, path: str | os.PathLike, gap_metric: str = "avg_gap") -> dict[tuple, list[str]]:
    """Write the PNG; returns the Pareto-optimal method names per setting (by increasing gap).

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
        raise BenchError(f"Nothing to plot: no finished trial has both {gap_metric} and {UTILITY_METRIC}.")
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
    for ax, setting in zip(axes, settings, strict=True):
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
        for p in pts:
            star = " *" if id(p) in on_front else ""
            texts.append((p.x, p.y, f"{p.name}{star}" + (f" ({p.time:.2g} s)" if p.time == p.time else ""), id(p) in on_front))
        labels.append((ax, texts))
        ax.set_xlabel(f"{gap_metric}: forgetting gap to the retrained model (lower is better)")
        ax.set_ylabel(f"{UTILITY_METRIC}: utility (higher is better)")
        ax.set_title(" / ".join(setting), fontsize=10)
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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
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
