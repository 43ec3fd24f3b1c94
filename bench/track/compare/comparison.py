"""One comparison: the parent runs asked for, their trials, the ranked rows (:func:`compare`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.core.errors import BenchError
from bench.core.keys import DEFAULT_EXPERIMENT, Tag
from bench.track import report
from bench.track.compare.aggregate import (
    DEFAULT_OBJECTIVE,
    available_metrics,
    build_rows,
    order_rows,
    resolve_objective,
)
from bench.track.compare.query import (
    TrialRecord,
    find_experiment,
    load_trials,
    open_store,
    select_parents,
)


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
    not_started: int = 0  # trials the parent runs planned (tag bench.trials) that have no run at all

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


def compare(tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, run: str = "latest",
            objective: str = DEFAULT_OBJECTIVE, maximize: bool | None = None) -> Comparison:
    uri, client = open_store(tracking_uri)
    exp = find_experiment(client, experiment)
    parents = select_parents(client, exp, run)
    recorded: dict[str, int] = {}
    trials, unfinished = load_trials(client, exp.experiment_id, parents, recorded)
    # a local run writes a trial when it ends, Ray when it starts: a run going on, or cut off, had more
    # trials than compare showed, without a word (outputs audit, 2026-12-07)
    not_started = sum(max(0, int(p.data.tags[Tag.TRIALS]) - recorded.get(p.info.run_id, 0))
                      for p in parents if p.data.tags.get(Tag.TRIALS, "").isdigit())
    if not trials:
        which = "these parent runs" if len(parents) > 1 else f"parent run {parents[0].info.run_id}"
        going = any(p.info.status == "RUNNING" for p in parents)
        still = (f" ({unfinished} still running)" if unfinished else " (it is still running: training its references, "
                 "or no trial has ended yet)" if going else " (was it interrupted before its trials started?)")
        raise BenchError(f"No finished or failed trial runs under {which}{still}. "
                         f"{_with_trials(client, exp, parents) if run.strip() == 'latest' else ''}"
                         "Pick another with --run ID, or --run all.")
    costs = report.with_run_costs([((t.parent_id, t.setting, t.seed, t.forget_key), t.method, t.metrics if t.finished else None)
                                   for t in trials])
    for t, metrics in zip(trials, costs):  # cost_vs_retrain: against the retrain trial timed beside it
        if metrics is not None:
            t.metrics = dict(metrics)
    available = available_metrics(trials)
    maximize = resolve_objective(objective, maximize, available)
    rows = build_rows(trials)
    ranks = report.rank_rows(rows, objective, maximize)
    rows, ranks = order_rows(rows, ranks)
    columns = list(report.columns_for(rows))  # plus forget_all_acc etc. for continual requests
    columns += [objective] if objective not in columns else []
    return Comparison(experiment=exp.name, experiment_id=exp.experiment_id, tracking_uri=uri, parents=parents,
                      pooled=len(parents) > 1 or run.strip() == "all", trials=trials, unfinished=unfinished,
                      not_started=not_started,
                      rows=rows, ranks=ranks, columns=columns, objective=objective, maximize=maximize, available=available)


def _with_trials(client, exp, skipped: list) -> str:
    """Names the latest parent run with trials, for a ``latest`` that has none yet (a run beside
    still training its references hid a finished one; concurrency audit, 2026-12-07)."""
    ids = {p.info.run_id for p in skipped}
    for parent in [p for p in select_parents(client, exp, "all") if p.info.run_id not in ids][:20]:
        if load_trials(client, exp.experiment_id, [parent])[0]:
            return f"The latest run with trials is {parent.info.run_id} ('{parent.info.run_name}'): --run {parent.info.run_id[:8]}. "
    return ""


def seed_notes(comp: Comparison) -> list[str]:
    """A line per setting whose ranked methods were averaged over different seeds (their finished
    trials'): pooled runs (``--run all``) may hold a method on more seeds than the others, and the
    ranks then compare means over different forget sets and initialisations (found in review)."""
    ranked = {(r.setting, r.name) for r, k in zip(comp.rows, comp.ranks) if k is not None}
    by_setting: dict[tuple, dict[str, set[str]]] = {}
    for t in comp.trials:
        if t.finished and (t.setting, t.label) in ranked:
            by_setting.setdefault(t.setting, {}).setdefault(t.label, set()).add(t.seed)
    out = []
    for setting, seeds in by_setting.items():
        groups: dict[tuple[str, ...], list[str]] = {}
        for label, s in seeds.items():
            groups.setdefault(tuple(sorted(s, key=lambda v: (len(v), v))), []).append(label)
        if len(groups) > 1:
            parts = "; ".join(f"{', '.join(labels)} on seed(s) {','.join(ss)}" for ss, labels in groups.items())
            drawn = "forget sets and initialisations" if not setting[2].startswith(("class:", "indices:")) \
                else "initialisations"
            fix = ("compare one run (--run RUN_ID), or run the missing seeds (a run's failed or cut-off trials: `bench "
                   "run --resume` runs them again)" if comp.pooled else  # one run: its
                   "the other seeds' trials failed or were cut off: `bench run --resume` runs them again")  # failures
            out.append(f"note: the methods of {'/'.join(setting)} are ranked over different seeds ({parts}); their means "
                       f"are over different {drawn}: {fix}")
    return out


def stopped_notes(comp: Comparison) -> list[str]:
    """A line when samples of ``bench tune --scheduler asha`` that the scheduler stopped early are
    among the trials: left out of the means and ranks (counted as killed), as their numbers are an
    intermediate epoch's."""
    stopped = [t for t in comp.trials if t.stopped_early]
    if not stopped:
        return []
    return [f"note: {len(stopped)} sample(s) that the scheduler (ASHA) stopped early are left out of the means and "
            f"ranks and counted as killed: their numbers are an intermediate epoch's, not a full run's"]


def cost_notes(comp: Comparison) -> list[str]:
    """A line per setting where ``cost_vs_retrain`` is shown for some methods and blank for others:
    a method's trials (the latest measurement of each, ``--run all``) came from a run without a
    ``retrain`` trial to time them against, and its cell was blank without a word (found in review,
    2026-12-07)."""
    if report.RUN_COST not in comp.columns:
        return []
    timed: dict[tuple, set[str]] = {}
    untimed: dict[tuple, set[str]] = {}
    for t in comp.trials:
        if t.finished:
            (timed if report.RUN_COST in t.metrics else untimed).setdefault(t.setting, set()).add(t.label)
    out = []
    for setting, labels in untimed.items():
        blank = sorted(labels - timed.get(setting, set()))
        if blank and setting in timed:
            out.append(f"note: {report.RUN_COST} of {', '.join(blank)} on {'/'.join(setting)} is blank: its trials were "
                       f"measured in a run without a retrain trial to time them against; add retrain to that run's "
                       f"--methods, or compare one run (--run RUN_ID)")
    return out


def title(comp: Comparison) -> str:
    better = "higher" if comp.maximize else "lower"
    p = comp.target.info
    which = f"all {len(comp.parents)} runs" if comp.pooled else f"run {p.run_id[:8]} ({p.run_name})"
    missing = comp.unfinished + comp.not_started
    partial = f" (partial: {missing} planned trial(s) not finished)" if missing else ""
    return (f"bench compare: '{comp.experiment}' {which}{partial}, ranked by {comp.objective} ({better} is better), "
            f"mean ± std over seeds")


def missing_note(comp: Comparison) -> str:
    """What the header line adds about the trials a run planned that it has not finished: ``""`` when none."""
    parts = [f"{comp.unfinished} still running (not shown)"] if comp.unfinished else []
    if comp.not_started:
        going = any(p.info.status == "RUNNING" for p in comp.parents)
        parts.append(f"{comp.not_started} planned not started" + (
            "" if going else " (the run ended before them: `bench run --resume` runs them)"))
    return "".join(f", {part}" for part in parts)
