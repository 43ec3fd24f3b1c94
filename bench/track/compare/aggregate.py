"""The rows of ``bench compare``: the trials read from MLflow aggregated by
:func:`bench.track.report.aggregate` (as ``bench run``'s summary is), with the reference rows
rebuilt from the trials' ``original_*`` / ``retrain_*`` metrics; the objective and its direction;
the order of the ranked table."""

from __future__ import annotations

import math

from bench.core.errors import BenchError
from bench.eval.metrics import RETRAINED_VALUES, direction, no_direction_reason
from bench.track import report
from bench.track.compare.query import TrialRecord

DEFAULT_OBJECTIVE = "avg_gap"
UTILITY_METRIC = "test_acc"
TIME_METRIC = "unlearn_seconds"
REFERENCE_PREFIXES = ("original_", "retrain_")


def reference_values(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """The original and retrained models' rows of one trial's metrics, with their gaps."""
    original = {k[len("original_"):]: v for k, v in metrics.items() if k.startswith("original_")}
    retrain = {k[len("retrain_"):]: v for k, v in metrics.items() if k.startswith("retrain_") and k != "retrain_seconds"}
    original, retrain = report.with_gaps(original, retrain)
    if "retrain_seconds" in metrics:
        retrain[TIME_METRIC] = metrics["retrain_seconds"]
    if "cumulative_retrain_seconds" in metrics:  # seq: the retrained references' time over the requests, as the summary shows
        retrain["cumulative_unlearn_seconds"] = metrics["cumulative_retrain_seconds"]
    return original, retrain


def build_rows(trials: list[TrialRecord]) -> list[report.Row]:
    """Per setting (in order of first appearance): the two reference rows, then one row per method
    (label) in order of appearance. The references are rebuilt from each finished trial's
    ``original_*`` / ``retrain_*`` metrics, once per (setting, seed): runs pooled with --run all
    that share a setting share its references (the same cached models), counted once."""
    references, seen = [], set()
    for t in trials:
        key = (t.setting, t.seed)
        if not t.finished or key in seen:
            continue
        original, retrain = reference_values(t.metrics)
        if original or retrain:
            seen.add(key)
            references.append((t.setting, original, retrain))
    records = [(t.setting, t.label, t.metrics if t.finished else report.KILLED if t.status == "KILLED" or t.stopped_early
                else None) for t in trials]
    rows = report.aggregate(records, references, keep=lambda k: not k.startswith(REFERENCE_PREFIXES))
    settings = list(dict.fromkeys(t.setting for t in trials))
    return sorted(rows, key=lambda r: settings.index(r.setting))


def available_metrics(trials: list[TrialRecord]) -> list[str]:
    """The metrics a method can be ranked by: those of finished trials, less the reference copies."""
    names = {k for t in trials if t.finished for k in t.metrics if not k.startswith(REFERENCE_PREFIXES)}
    return sorted(names)


def resolve_objective(objective: str, maximize: bool | None, available: list[str]) -> bool:
    if objective.startswith(REFERENCE_PREFIXES):  # logged with every trial, but not the method's own
        whose = "original model's" if objective.startswith("original_") else "retrained reference's"
        raise BenchError(f"'{objective}' is the {whose} value, logged with every trial and the same for every method "
                         f"of a setting: it ranks nothing. Rank by a method's own metric, e.g. "
                         f"--objective {objective.split('_', 1)[1] if objective != 'retrain_seconds' else 'unlearn_seconds'}.")
    if objective in RETRAINED_VALUES:
        raise BenchError(f"--objective {objective}:{no_direction_reason(objective)}")
    if available and objective not in available:
        needs = (f" ('{objective}' needs a finished retrain trial in the run: add retrain to --methods.)"
                 if objective == report.RUN_COST else "")
        raise BenchError(f"Unknown objective metric '{objective}'. Available metrics: {', '.join(available)}.{needs}")
    if maximize is not None:
        return maximize
    known = direction(objective)
    if known is None:
        raise BenchError(f"No known better direction for '{objective}'.{no_direction_reason(objective, available)} "
                         "Pass --maximize or --minimize.")
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
