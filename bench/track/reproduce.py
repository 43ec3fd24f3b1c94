"""``bench reproduce``: a recorded ``bench run`` run again from its record, and every trial's numbers
checked against the recorded ones.

The record is the parent run's ``experiment.json`` (the options the run resolved: methods, seeds,
data, forget request, parameters, recipe, attacks, executor, cache) and its directory
(``Tag.CWD``: relative paths in the options are relative to it); the comparison pairs the trials
of the two runs by their trial key (``bench.core.keys.trial_key``: what a trial measures, with the
digests of its data and forget set), so a trial measured on other data is reported as not in the
record rather than compared. Wall-clock times and memory (``*_seconds``, ``*_mb``, ``speedup*``)
are measured, not computed, and differ between any two runs: they are left out. Everything else
must be equal (``--rtol``/``--atol`` relax it); NaN equals NaN.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from bench.core.errors import BenchError
from bench.core.keys import Tag
from bench.core.options import OPTION_BY_NAME, RunOptions, merge_options

#: metric names measured by the clock or the allocator: never the same twice
TIMED_SUFFIXES = ("_seconds", "_mb")
TIMED_PREFIXES = ("speedup", "cumulative_speedup")
#: options of the record that the new run sets itself
OWN_OPTIONS = ("resume", "dry_run", "run_name", "tracking_uri", "experiment")
#: the trial params a rerun must give again: what the options make of the measurement (the method,
#: its hyperparameters, the recipe, the seeds, the request, the attacks) and the digests of the data
#: and forget set. Not the others: versions and host (another machine), plugins (one not used,
#: uninstalled), paths (a moved project or data folder), the code identity (said by the notes)
COMPARED_PARAMS = ("method", "dataset", "model", "forget", "forget_size", "seed", "forget_seed", "attacks",
                   "shadow_models", "data_access", "data_sha256", "forget_sha256", "original.sha256")
COMPARED_PREFIXES = ("params.", "recipe.")


def compared_param(name: str) -> bool:
    """Whether trial param ``name`` must be the same in a record and its rerun (:data:`COMPARED_PARAMS`)."""
    return name in COMPARED_PARAMS or name.startswith(COMPARED_PREFIXES)


class Recorded(NamedTuple):
    """One trial run as :func:`check_trials` compares it (a plain tuple of its first 3-5 fields too)."""

    name: str
    status: str
    metrics: dict
    attack_errors: str = ""  # the attacks that failed in it (comma-joined)
    measured_with: str = ""  # its code identity (tag bench.measured_with)
    params: dict | None = None  # its MLflow params


def compared(metric: str) -> bool:
    """Whether ``metric`` is a computed number that a rerun must give again (not a time or memory)."""
    return not (metric.endswith(TIMED_SUFFIXES) or metric.startswith(TIMED_PREFIXES))


def recorded_options(client, parent) -> RunOptions:
    """The options ``parent`` (a ``bench run`` parent run) ran with, from its ``experiment.json``."""
    run_id = parent.info.run_id
    if parent.data.tags.get(Tag.KIND) == "tune":
        raise BenchError(f"Run {run_id} is a `bench tune` search: reproduce takes a `bench run` parent run (run its best "
                         f"parameters with `bench run --params {run_id}`, then reproduce that run).")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            text = Path(client.download_artifacts(run_id, "experiment.json", tmp)).read_text()
        except Exception as exc:  # noqa: BLE001 -- an MlflowException or OSError: one line, the artifact named
            raise BenchError(f"Run {run_id} has no readable experiment.json ({type(exc).__name__}), the record of its "
                             f"options: it was not made by `bench run`, or its artifacts are gone.") from None
    try:
        options = json.loads(text)["options"]
    except (ValueError, KeyError, TypeError):
        options = None
    if not isinstance(options, dict):
        raise BenchError(f"Run {run_id}: its experiment.json holds no 'options' object; it was not written by "
                         f"`bench run`.")
    unknown = sorted(set(options) - set(OPTION_BY_NAME))
    if unknown:
        raise BenchError(f"Run {run_id} was recorded with options this bench does not know ({', '.join(unknown)}): "
                         f"it was made by another version of bench; reproduce it with that version.")
    # through the checks of an experiment file: a value of the wrong type is one line, not a traceback
    layer = {OPTION_BY_NAME[k].key: v for k, v in options.items() if k not in OWN_OPTIONS and v is not None}
    try:
        return merge_options(layer, {})
    except BenchError as exc:
        raise BenchError(f"Run {run_id}'s experiment.json: {str(exc).replace('the experiment file', 'it')}") from None


def trial_results(client, experiment_id: str, parent_id: str) -> dict[str, Recorded]:
    """``{trial key: Recorded}`` of ``parent_id``'s trial runs; a trial run more than once
    (``--resume``) counts by its latest finished attempt."""
    from bench.track.compare.query import _search_all

    runs = _search_all(client, [experiment_id], f"tags.`{Tag.PARENT}` = '{parent_id}'", ["attributes.start_time ASC"])
    found: dict[str, Recorded] = {}
    for run in runs:
        tags = run.data.tags
        key = tags.get(Tag.TRIAL_KEY)
        if tags.get(Tag.ROLE) != "trial" or not key:
            continue
        if key in found and found[key].status == "FINISHED" and run.info.status != "FINISHED":
            continue  # a finished attempt is not replaced by a later failed one
        name = run.info.run_name or f"{tags.get(Tag.METHOD, '?')} seed={tags.get(Tag.SEED, '?')}"
        found[key] = Recorded(name, run.info.status, with_earlier_requests(client, run), tags.get(Tag.ATTACK_ERRORS, ""),
                              tags.get(Tag.MEASURED_WITH, ""), dict(run.data.params))
    return found


def with_earlier_requests(client, run) -> dict[str, float]:
    """A trial run's metrics; for a continual trial (``--forget seq:...``, metric ``request`` T > 1)
    also the values of each earlier request t, logged as metric step t-1, as ``"<metric> (request
    t)"``: the final values alone let a rerun that differed on the way pass as identical."""
    metrics = dict(run.data.metrics)
    last = int(metrics.get("request", 1))
    if last > 1:
        for key in [k for k in metrics if compared(k)]:
            for m in client.get_metric_history(run.info.run_id, key):  # by step, then time: a later one wins
                if m.step < last - 1:
                    metrics[f"{key} (request {m.step + 1})"] = m.value
    return metrics


@dataclass
class Check:
    """One recorded trial against its rerun."""

    trial: str
    verdict: str  # "identical", "differs", "failed now", "not run now", "new"
    compared: int = 0
    #: (metric, recorded value, value now; None where it is missing on that side)
    differences: list[tuple[str, float | None, float | None]] = field(default_factory=list)
    #: (param, recorded value, value now; None where it is missing now): the record's params
    #: contradict what its options run (an edited or corrupted record)
    params: list[tuple[str, str, str | None]] = field(default_factory=list)
    #: (the record's code identity, this run's) where they differ (tag bench.measured_with: bench's,
    #: torch's and the trial's plugins' code): a difference then has that cause to name
    code: tuple[str, str] | None = None

    def line(self, width: int) -> str:
        if self.verdict == "identical":
            return f"  {self.trial:<{width}}  identical ({self.compared} metrics)"
        if self.verdict != "differs":
            return f"  {self.trial:<{width}}  {self.verdict}"
        value = lambda v: "missing" if v is None else f"{v:.6g}"  # noqa: E731
        parts = [f"param {p} {old} -> {'missing' if new is None else new}" for p, old, new in self.params]
        parts += [f"{m} {value(old)} -> {value(new)}" for m, old, new in self.differences]
        more = f"; and {len(parts) - 3} more" if len(parts) > 3 else ""
        what = (f"{len(self.differences)} of {self.compared} metrics" if self.differences else "") + \
            (" and " if self.differences and self.params else "") + \
            (f"{len(self.params)} param(s)" if self.params else "")
        why = (f" (measured with other code: bench, torch or a plugin changed since the record, code identity "
               f"{self.code[0][:12]} -> {self.code[1][:12]})" if self.code else "")
        return f"  {self.trial:<{width}}  differs in {what}: {'; '.join(parts[:3])}{more}{why}"


def _same(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def check_trials(recorded: dict, now: dict, rtol: float = 0.0, atol: float = 0.0) -> list[Check]:
    """Every trial of the record against the same trial (by key) now (:func:`trial_results`' form,
    or plain tuples of its first fields), then the trials only the new run has. Only "identical"
    lines make a reproduction: a metric of the record missing now is a difference; one the record
    lacks is one too when the record was measured with the same code (a record that lost its
    ``forget_acc`` confirmed the rest before), and is left out when it was logged by newer code;
    a recorded param that the options decide (:func:`compared_param`) and the rerun does not give
    again is a difference (the rerun follows the options, so an edited param contradicts the
    numbers beside it); a trial that failed, in the record or now, is said as such, as is one an attack failed in
    (its numbers are missing)."""
    recorded = {k: Recorded(*v) for k, v in recorded.items()}
    now = {k: Recorded(*v) for k, v in now.items()}
    # a trial of the same name under another key: its parameters changed (a method's default, say),
    # compared as the same trial, so the line names the parameter; it read "not run now" and "new"
    # beside each other, naming neither (found in review)
    renamed = {r.name: k for k, r in now.items() if k not in recorded}
    paired: set[str] = set()
    checks: list[Check] = []
    for key, (name, status, metrics, then, code, params) in recorded.items():
        if key not in now and name in renamed and renamed[name] not in paired:
            paired.add(renamed[name])
            now[key] = now[renamed[name]]
        new_status = now[key].status if key in now else None
        if status != "FINISHED":
            checks.append(Check(name, "failed in the record, not run now" if new_status is None else
                                "failed in the record and now" if new_status != "FINISHED" else
                                "failed in the record, finished now"))
            continue
        if new_status is None:
            checks.append(Check(name, "not run now (not in the new plan: the methods a wildcard selects, the data, "
                                      "the forget set or an --original file changed)"))
            continue
        if new_status != "FINISHED":
            checks.append(Check(name, f"{new_status.lower()} now (its error is in the new run)"))
            continue
        rerun = now[key]
        failed_now = rerun.attack_errors
        if then or failed_now:  # an attack's numbers are missing on one side (or both): nothing to confirm
            said = [f"attack(s) {then} failed in the record" if then else "", f"attack(s) {failed_now} failed now" if failed_now else ""]
            checks.append(Check(name, "; ".join(filter(None, said)) + " (tracebacks: artifacts attack_errors/)"))
            continue
        new_metrics = rerun.metrics
        same_code = bool(code) and code == rerun.measured_with
        names = sorted({m for m in metrics if compared(m)} | ({m for m in new_metrics if compared(m)} if same_code else set()))
        diffs = [(m, metrics.get(m), new_metrics.get(m)) for m in names
                 if m not in metrics or m not in new_metrics or not _same(metrics[m], new_metrics[m], rtol, atol)]
        param_diffs = [(p, v, rerun.params.get(p)) for p, v in sorted((params or {}).items())
                       if compared_param(p) and rerun.params is not None and rerun.params.get(p) != v]
        other_code = (code, rerun.measured_with) if code and rerun.measured_with and code != rerun.measured_with else None
        checks.append(Check(name, "differs" if diffs or param_diffs else "identical", len(names), diffs, param_diffs,
                            other_code))
    for key, (name, *_) in now.items():
        if key not in recorded and key not in paired:
            checks.append(Check(name, "new (not in the record: the plan differs)"))
    return checks


def version_changes(recorded_params: dict[str, str], prefix: str, now: dict) -> list[str]:
    """``name then -> now`` for every entry of ``now`` (package versions, ``prefix`` "versions"; the
    plugins', "plugins") that differs from the record's ``<prefix>.<name>`` param."""
    out = []
    for name, value in sorted(now.items()):
        then = recorded_params.get(f"{prefix}.{name}")
        if then is not None and str(then) != str(value):
            out.append(f"{name} {then} -> {value}")
    return out


def plan_differences(recorded: dict, planned: dict[str, dict[str, str]]) -> list[str]:
    """What a rerun's plan already says it will not match, before any work: ``recorded`` is
    :func:`trial_results`' form, ``planned`` ``{trial name: its params as it would record them}``.
    One line per recorded finished trial whose compared params (:func:`compared_param`: the data's
    and forget set's digests, your own original's, the method's hyperparameters...) differ now,
    or that the plan lacks. (A changed data file was said only after the whole rerun.)"""
    out = []
    for name, status, _, _, _, params in (Recorded(*v) for v in recorded.values()):
        if status != "FINISHED":
            continue
        if name not in planned:
            out.append(f"{name}: not in the plan now")
            continue
        now = planned[name]
        diffs = [f"{p} {v[:12] if p.endswith('sha256') else v} -> "
                 f"{(now.get(p) or 'missing')[:12] if p.endswith('sha256') else now.get(p, 'missing')}"
                 for p, v in sorted((params or {}).items()) if compared_param(p) and now.get(p) != v]
        if diffs:
            out.append(f"{name}: {'; '.join(diffs[:3])}" + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else ""))
    return out
