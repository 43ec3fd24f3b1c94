"""The best sample of a ``bench tune`` search: which one it is (:func:`best_sample`), how the
samples ended (:func:`sample_counts`), what of it is saved (:func:`saved_params`) and how ``bench
run --params`` reads it back (:func:`load_params`: the file, or the search's MLflow run)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.run import tune_samples
from bench.track.store import resolve_tracking_uri, shown_uri


def saved_params(params: dict[str, Any], space: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The best sample's parameters to save: the searched ones and those given with ``--param``, not
    the defaults (a dataset's own defaults, saved with them, overrode another dataset's defaults
    when the file was reused there: rl tuned on digits set ``passes=alternate`` on cifar100)."""
    return {k: v for k, v in params.items() if k in space or k in given}


def best_sample(outcome, objective: str, mode: str) -> tuple[Any, float, bool] | None:
    """(spec, objective value, whether it ran to its end) of the best sample: the best of the samples
    that ran to their end (their last result); when the scheduler stopped every one early, the best
    by its last report (intermediate: ``ctx.report``), flagged so. Among equal values the lowest
    sample number wins: with the defaults first, a draw that only ties them is not saved."""
    for complete in (True, False):
        scored = _scored(outcome, objective, complete)
        if scored:  # a tie goes to the lowest sample number, the defaults' (it went to the first to finish)
            spec, value = min(scored, key=lambda sv: (sv[1] if mode == "min" else -sv[1], sample_number(sv[0])))
            return spec, value, complete
    return None


def _scored(outcome, objective: str, complete: bool) -> list[tuple[Any, float]]:
    """(spec, objective value) of the samples that ran to their end (``complete``) or were stopped
    early, each with a value of ``objective`` that is a number."""
    return [(outcome.specs[i], float(r[objective])) for i, r in outcome.results.items()
            if i in outcome.specs and objective in r and ran_to_end(r) == complete and not math.isnan(float(r[objective]))]


def ran_to_end(result: dict) -> bool:
    """Whether a sample's last result is its whole trial's (a stopped or cut one has no unlearn_seconds)."""
    return result.get("unlearn_seconds") is not None


def sample_number(spec) -> int:
    """N of a sample's trial name ("ga seed=0 sample N"); a large number for another name."""
    number = tune_samples.sample_number(str(getattr(spec, "trial_name", spec)))
    return 1 << 30 if number is None else number


#: the key of a best-params file that says where its search ran (run id, dataset, model, forget request,
#: seed, objective): ``bench run --params`` names a setting that differs, and the search's own seed
TUNED_ON = "_tuned_on"


def load_params(source: str, tracking_uri: str | None) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """``--params``: a JSON file ``{"METHOD": {...}}`` or an MLflow run id whose ``best_params.json`` to use.
    Returns the parameters and, where known, the setting the search ran on (:data:`TUNED_ON`)."""
    path = Path(source).expanduser()
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))  # JSON is UTF-8; a byte-order mark is dropped
        except UnicodeDecodeError as exc:
            raise BenchError(f"--params {path}: not UTF-8 text (byte {exc.start}: {exc.reason}); expected a JSON file "
                             f"{{\"METHOD\": {{\"NAME\": VALUE}}}} as `bench tune` writes. Check that --params names "
                             f"that file.") from None
        except OSError as exc:
            raise BenchError(f"--params {path}: cannot read it ({exc.strerror or exc}). Check its permissions.") from None
        except json.JSONDecodeError as exc:
            raise BenchError(f"--params {path}: not valid JSON ({exc}).") from None
    else:
        if len(source) != 32 or not all(c in "0123456789abcdef" for c in source):
            raise BenchError(f"--params '{source}': {'a directory, not a file' if path.is_dir() else 'no such file'}, "
                             "and not an MLflow run id.")
        import mlflow

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bar for one small file
        uri = resolve_tracking_uri(tracking_uri, writable=False, existing=True)
        if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():  # never create one here
            raise BenchError(f"--params {source}: no MLflow store at {uri[len('sqlite:///'):]} to read that run from. "
                             f"Point --tracking-uri (or MLFLOW_TRACKING_URI) at the store `bench tune` used.")
        mlflow.set_tracking_uri(uri)
        try:
            tags = mlflow.tracking.MlflowClient().get_run(source).data.tags
        except Exception as exc:
            raise BenchError(f"--params {source}: no such run in {shown_uri(uri)} ({type(exc).__name__}). Give the run id `bench "
                             f"tune` printed, or its best-params file.") from None
        if tags.get("bench.kind") != "tune":
            what = "a trial" if tags.get("bench.role") == "trial" else "a `bench run` parent" if tags.get(
                "bench.role") == "parent" else "not a bench run"
            raise BenchError(f"--params {source}: that run is {what}, not a `bench tune` run with best parameters. "
                             f"Give the run id `bench tune` printed, or its best-params file.")
        try:
            data = json.loads(mlflow.artifacts.load_text(f"runs:/{source}/best_params.json"))
        except Exception as exc:
            if tags.get("bench.best_sample") is None:  # it saved none: say so, not that a download failed (tune audit)
                run = mlflow.tracking.MlflowClient().get_run(source)
                finished = run.data.metrics.get("samples_finished")
                raise BenchError(f"--params {source}: that search saved no best parameters (status {run.info.status}"
                                 + (f", {int(finished)} sample(s) finished" if finished is not None else "") + "). Its "
                                 "samples' runs hold their tracebacks; run the search again, or give another run id or a "
                                 "best-params file.") from None
            raise BenchError(f"--params {source}: cannot read best_params.json of that MLflow run ({exc}).") from None
        partial = tags.get("bench.best_partial")
        if partial:  # the best of the samples finished before an interrupt, not of the search
            raise BenchError(f"--params {source}: that search was interrupted after {partial} sample(s) finished; its "
                             f"best_params.json is the best of those only. Run the search to its end (bench tune), or, "
                             f"to use them anyway, pass the file it wrote (NAME.partial.json) with --params FILE.")
    tuned_on = data.pop(TUNED_ON, None) if isinstance(data, dict) else None
    if tuned_on is None and not path.is_file():  # a search from before the file said it: its run's options
        tuned_on = _run_setting(source)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise BenchError(f"--params {source}: expected a JSON object {{\"METHOD\": {{\"NAME\": VALUE}}}}.")
    return data, tuned_on if isinstance(tuned_on, dict) else None


def _run_setting(run_id: str) -> dict[str, Any] | None:
    import ast

    import mlflow

    try:
        params = mlflow.tracking.MlflowClient().get_run(run_id).data.params
        one = {k: ast.literal_eval(params[f"options.{k}s"]) for k in ("dataset", "model", "forget", "seed")}
        return {"run": run_id, **{k: v[0] for k, v in one.items()}, "objective": params.get("tune.objective"),
                "validation": float(params.get("options.validation", 0) or 0)}
    except Exception:  # an older record: no note
        return None


def params_notes(source: str, tuned_on: dict[str, Any] | None, opts) -> list[str]:
    """Notes for ``bench run --params``: parameters tuned on another dataset, model or forget request
    (used there without a word), or a run on the search's own seed, whose numbers they were selected
    on (tune audit, 2026-12-07)."""
    if not tuned_on:
        return []
    where = f"{tuned_on.get('dataset')} / {tuned_on.get('model')} / {tuned_on.get('forget')}"
    given = [(d, m, f) for d in opts.datasets for m in opts.models for f in opts.forgets]
    if any((d, m, f) != (tuned_on.get("dataset"), tuned_on.get("model"), tuned_on.get("forget")) for d, m, f in given):
        return [f"note: --params {source} was tuned on {where} (seed {tuned_on.get('seed')}); this run's "
                f"{'settings' if len(given) > 1 else 'setting'} {', '.join(' / '.join(g) for g in given)} may want "
                "other values (bench tune on it)"]
    if tuned_on.get("seed") in opts.seeds and not tuned_on.get("validation") and not opts.validation:
        return [f"note: --params {source} was selected on seed {tuned_on['seed']} of this setting (by "
                f"{tuned_on.get('objective')}, on its test set too): that seed's numbers are the search's best, "
                "optimistic; report the other seeds"]
    return []


def sample_counts(outcome, num_samples: int, refused: int) -> dict[str, int]:
    """The parent run's counts of the search's ``num_samples`` samples (with ``--resume``, the earlier
    sessions' finished ones included): ``samples_finished`` ran to their end, ``samples_stopped_early``
    were stopped by the scheduler (ASHA) on an intermediate report, ``samples_failed`` raised (their
    runs hold the tracebacks), ``samples_refused`` were refused by the setting and never ran, and
    ``samples_unfinished`` did not run to their end for any other reason or none: stopped early, cut
    by an interrupt, or never started. Before 2026-12-07 the interrupted and failed samples were in
    no count (found in review)."""
    ended = [r for i, r in outcome.results.items() if i in outcome.specs]
    finished = sum(map(ran_to_end, ended))
    failed = len(outcome.failures)
    return {"samples_finished": finished, "samples_stopped_early": len(ended) - finished, "samples_failed": failed,
            "samples_refused": refused, "samples_unfinished": max(0, num_samples - finished - failed - refused)}


def tied_with(outcome, objective: str, value: float, complete: bool) -> int:
    """How many of the samples compared with the best (those that ran to their end, or when none did,
    the stopped ones) scored exactly its ``value``: a search over a knob the objective does not see
    ties every sample, and the lowest-numbered one is saved."""
    return sum(1 for _, v in _scored(outcome, objective, complete) if v == value)


def defaults_ran(outcome) -> bool:
    """Whether the defaults' sample (sample 0) ran to its end, in this session or an earlier one."""
    return any(sample_number(outcome.specs[i]) == 0 and ran_to_end(r) for i, r in outcome.results.items()
               if i in outcome.specs)


def defaults_fate(outcome, scheduler: str) -> str:
    """What became of the defaults' sample that did not run to its end, with what to do: its
    failure (the deadline's, or another), or the interrupt that cut it (the advice was a longer
    --trial-timeout whatever the cause; diff review, 2026-12-07)."""
    failed = next((error for i, error in outcome.failures.items()
                   if i in outcome.specs and sample_number(outcome.specs[i]) == 0), None)
    if failed is not None and "ran longer than --trial-timeout" in failed:
        return "ran past --trial-timeout and was stopped (a fresh worker's first trial also pays its imports): give a " \
               "longer --trial-timeout"
    if failed is not None:
        return "failed (its run holds the traceback)"
    resume = "; the same command with --resume runs it" if scheduler == "fifo" else ""
    return f"was cut off by the interrupt{resume}"
