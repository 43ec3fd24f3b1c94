"""``bench compare``: read finished ``bench run``s back from MLflow, rank the methods, plot the trade-off.

What it reads is what :mod:`bench.run.runner` writes, tagged with :class:`bench.core.keys.Tag`:
parent runs (``Tag.ROLE`` parent), and under each one child run per trial (``Tag.ROLE`` trial,
``Tag.PARENT``, ``Tag.METHOD``, ``Tag.SEED``, ``Tag.DATASET``, ``Tag.MODEL``, ``Tag.FORGET``,
method hyperparameters as ``params.*`` params) with every metric of the trial, including the
reference accuracies ``original_*`` / ``retrain_*`` and ``retrain_seconds``.

Rows are the methods per (dataset, model, forget) setting, plus the two reference rows rebuilt
from the children's ``original_*`` / ``retrain_*`` metrics (one value per parent run and seed);
their gaps are computed from the same accuracies (the original model's gaps are what doing
nothing scores). Cells are mean ± std over seeds (sample std). Failed or killed trials are
counted, never averaged. When pooled runs (``--run all``) used different hyperparameters for a
method, each variant gets its own row, labelled with the parameters that differ (``ga[lr=0.01]``).

The modules: :mod:`~bench.track.compare.query` (reading MLflow), :mod:`~bench.track.compare.aggregate`
(rows, objective, order; the rows come from :func:`bench.track.report.aggregate`, as ``bench run``'s),
:mod:`~bench.track.compare.comparison` (:func:`compare`), :mod:`~bench.track.compare.plot` (the
Pareto plot). Nothing heavy is imported at module level: mlflow and matplotlib load inside the
functions.
"""

from __future__ import annotations

from bench.core.keys import DEFAULT_EXPERIMENT
from bench.eval.metrics import ACCURACIES, DIRECTIONS, direction
from bench.track.compare.aggregate import (
    DEFAULT_OBJECTIVE,
    REFERENCE_PREFIXES,
    TIME_METRIC,
    UTILITY_METRIC,
    available_metrics,
    build_rows,
    order_rows,
    reference_values,
    resolve_objective,
)
from bench.track.compare.comparison import Comparison, compare, cost_notes, missing_note, seed_notes, stopped_notes, title
from bench.track.compare.plot import (
    NothingToPlot,
    PlotPoint,
    artifact_name,
    default_plot_path,
    log_plot,
    pareto_front,
    plot_pareto,
    plot_points,
)
from bench.track.compare.query import (
    FINISHED,
    UNFINISHED,
    TrialRecord,
    find_experiment,
    load_trials,
    open_store,
    select_parents,
)
from bench.track.report import ORIGINAL, RETRAIN

__all__ = [
    "DEFAULT_EXPERIMENT", "DEFAULT_OBJECTIVE", "UTILITY_METRIC", "TIME_METRIC", "ORIGINAL", "RETRAIN", "REFERENCE_PREFIXES",
    "FINISHED", "UNFINISHED", "ACCURACIES", "DIRECTIONS", "direction",
    "TrialRecord", "Comparison", "open_store", "find_experiment", "select_parents", "load_trials",
    "reference_values", "build_rows", "available_metrics", "resolve_objective", "order_rows", "compare", "seed_notes", "cost_notes", "stopped_notes", "missing_note", "title",
    "pareto_front", "PlotPoint", "plot_points", "plot_pareto", "NothingToPlot", "default_plot_path", "artifact_name", "log_plot",
]
