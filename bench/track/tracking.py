"""MLflow tracking: one parent run per ``bench run``, one nested child run per trial.

Under Ray Tune the child runs are written by ``BenchMLflowCallback`` (``bench.track.ray_runs``), a
subclass of Ray's ``MLflowLoggerCallback`` (driver side, so a SQLite store has one writer);
``--executor local`` writes the same runs through the same helpers. Each child run carries the flattened trial
spec as params (method, hyperparameters as ``params.*``, dataset, model, seed, forget
request, recipe as ``recipe.*``, package versions as ``versions.*``, plugin versions as
``plugins.*``), every metric, the tag ``mlflow.parentRunId`` and, when it fails, the
traceback as the artifact ``error.txt`` and the tag ``bench.error``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import traceback as tb_module
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.core.contracts import render
from bench.core.errors import RecordError
from bench.core.keys import ARTIFACTS_KEY, ATTACK_ERRORS_KEY, MODEL_ARTIFACT, RESOLVED_KEY, STEPS_KEY, Tag
from bench.core.spec import TrialSpec
from bench.track.provenance import process_alive, process_started, provenance_tags
from bench.track.store import new_sqlite_store, shown_uri

# Ray adds these to every reported result; they are not measurements of the trial.
RAY_RESULT_KEYS = {
    "time_this_iter_s", "time_total_s", "training_iteration", "timestamp", "time_since_restore",
    "iterations_since_restore", "timesteps_total", "episodes_total", "timesteps_since_restore",
    "pid", "date", "hostname", "node_ip", "done", "trial_id", "experiment_tag", "config", "checkpoint_dir_name", "should_checkpoint",
}


#: Tags of a parent run naming the process that drives it: at the start of every ``bench run`` and
#: ``bench tune`` on a store, a RUNNING parent whose driver (same host) is dead is marked KILLED.
DRIVER_PID, DRIVER_HOST, DRIVER_STARTED = Tag.DRIVER_PID, Tag.DRIVER_HOST, Tag.DRIVER_STARTED


_PARAM_KEY = re.compile(r"^[/\w.\- :]{1,250}$")  # what MLflow takes as a param key (mlflow.utils.validation)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts as MLflow params ``a.b.c``; a dict with a key MLflow cannot take in a param key
    (``--original mlp:256,256=PATH``: a comma) is one param holding its JSON, so the run is recorded
    (MLflow refused the whole parent run after Ray had started)."""
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and all(_PARAM_KEY.match(f"{name}.{k}") for k in value):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, dict):
            out[name] = json.dumps(value, default=str)[:6000]
        else:
            out[name] = str(value)[:6000]
    return out


def trial_params(spec: TrialSpec) -> dict[str, str]:
    """A trial's MLflow params: its recorded spec, flattened (``params.lr``, ``recipe.epochs``...)."""
    return flatten({k: v for k, v in spec.as_dict().items() if k != "trial_name"})


def trial_metrics(result: dict) -> dict[str, float]:
    out = {}
    for key, value in result.items():
        if key in RAY_RESULT_KEYS or isinstance(value, (dict, str, bool)) or value is None:
            continue
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def configure_environment() -> None:
    import logging

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # its bar for reading one small artifact back (experiment.json, a forget set) is noise on stderr
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow announces every table creation and migration of a new SQLite store at INFO
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def store_lock(tracking_uri: str):
    """An exclusive lock beside a SQLite store (``mlflow.db.lock``) while the store and the experiment
    are created: two ``bench`` processes starting on a new store would otherwise both create
    MLflow's tables, and one fails ("table ... already exists"). Other stores: no lock."""
    try:
        import fcntl
    except ImportError:  # not POSIX: setup_experiment's retry is the only guard
        fcntl = None
    if fcntl is None or not tracking_uri.startswith("sqlite:///"):
        yield
        return
    with open(f"{tracking_uri[len('sqlite:///'):]}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def setup_experiment(tracking_uri: str, name: str) -> str:
    """Create (or find) the experiment, initialising the store once even when several ``bench``
    processes start together on it; artifacts of a SQLite store go next to the database."""
    configure_environment()
    # a store MLflow could not create (a full disk) was a raw traceback of its migrations (cache audit, 2026-12-07)
    with recording(f"setting up experiment '{name}' in the MLflow store {shown_uri(tracking_uri)}", NOTHING_RUN):
        for attempt in range(5):
            try:
                with store_lock(tracking_uri):
                    return _setup_experiment(tracking_uri, name)
            except Exception as exc:  # without a lock (not POSIX, not SQLite): created concurrently
                if "already exists" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _setup_experiment(tracking_uri: str, name: str) -> str:
    import mlflow
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///"):  # a new store: from the template (bench/track/store.py)
        new_sqlite_store(Path(tracking_uri[len("sqlite:///"):]))
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    artifact_location = None
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        artifact_location = (db.parent / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # created concurrently
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


# -- the driver of a parent run, and runs left RUNNING by a dead one ----------------------------

def driver_tags() -> dict[str, str]:
    """The tags naming this process as the driver of a parent run."""
    return {DRIVER_PID: str(os.getpid()), DRIVER_HOST: socket.gethostname(), DRIVER_STARTED: process_started(os.getpid())}


def claim_parent(client, run_id: str) -> None:
    """Make this process the recorded driver of ``run_id`` (a resumed parent run)."""
    for key, value in driver_tags().items():
        client.set_tag(run_id, key, value)


def reap_dead_runs(client) -> list[tuple[str, str, str, int]]:
    """Mark KILLED every parent run of the store still RUNNING whose driver on this host is dead
    (SIGKILL, a crash, a lost machine), and its child runs still RUNNING. Returns, per parent,
    (run id, run name, driver pid, children marked)."""
    host = socket.gethostname()
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = [] if not experiments else client.search_runs(experiments, filter_string=f"tags.`{Tag.ROLE}` = 'parent' and attributes.status = 'RUNNING'",
                              max_results=1000)
    reaped = []
    for run in runs:
        tags = run.data.tags
        pid = tags.get(DRIVER_PID, "")
        if not pid.isdigit() or tags.get(DRIVER_HOST) != host or int(pid) == os.getpid():
            continue
        if process_alive(int(pid), tags.get(DRIVER_STARTED)):
            continue
        children = kill_unfinished_children(client, run.info.experiment_id, run.info.run_id)
        client.set_terminated(run.info.run_id, "KILLED")
        reaped.append((run.info.run_id, run.info.run_name, pid, children))
    return reaped


def reap_notice(reaped: list[tuple[str, str, str, int]]) -> str:
    runs = ", ".join(f"{rid} ('{name}', driver pid {pid}, {n} trial(s))" for rid, name, pid, n in reaped)
    return f"marked KILLED: run(s) left RUNNING by a bench process that died: {runs}"


def start_parent(tracking_uri: str, experiment_id: str, run_name: str | None, params: dict, tags: dict) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    run = client.create_run(experiment_id, run_name=run_name,
                            tags={Tag.ROLE: "parent", **driver_tags(), **provenance_tags(), **tags})
    try:
        log_params(client, run.info.run_id, params)
    except BaseException:
        try:  # not left RUNNING until the next run's reaper: the run never started
            client.set_terminated(run.info.run_id, "FAILED")
        except Exception:
            pass
        raise
    return run.info.run_id


def log_params(client, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def log_metrics(client, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, v, now, step) for k, v in metrics.items()]
    for i in range(0, len(items), 500):
        client.log_batch(run_id, metrics=items[i : i + 500])


def log_artifacts(client, run_id: str, result: dict) -> None:
    """Log the files a method or attack returned with its result (``bench.core.keys.ARTIFACTS_KEY``),
    and the attacks that failed in it (``ATTACK_ERRORS_KEY``: tag ``bench.attack_errors``, one
    ``attack_errors/<attack>.txt`` each with its traceback), and the values a method's automatic
    parameters took (``RESOLVED_KEY``: params ``resolved.<parameter>``)."""
    import tempfile

    if resolved := result.get(RESOLVED_KEY):
        log_params(client, run_id, {f"resolved.{key}": value for key, value in resolved.items()})
    if errors := result.get(ATTACK_ERRORS_KEY):
        client.set_tag(run_id, Tag.ATTACK_ERRORS, ",".join(errors))
        for name, text in errors.items():
            client.log_text(run_id, text, f"attack_errors/{name}.txt")
    if not (files := result.get(ARTIFACTS_KEY)):
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if not isinstance(content, (str, bytes)):  # a Rendered (bench.core.contracts): drawn here
                try:
                    content = render(content)
                except Exception as exc:
                    path, content = path.with_name(path.name + ".error.txt"), format_exception(exc)
            path.write_text(content) if isinstance(content, str) else path.write_bytes(content)
        client.log_artifacts(run_id, tmp)
    if MODEL_ARTIFACT in files:  # what --resume --save-models asks of a trial it keeps
        client.set_tag(run_id, Tag.SAVED_MODEL, "true")


def child_tags(spec: TrialSpec, parent_run_id: str) -> dict[str, str]:
    return {
        Tag.PARENT: parent_run_id,
        Tag.ROLE: "trial",
        Tag.METHOD: spec.method,
        Tag.SEED: str(spec.seed),
        Tag.DATASET: spec.dataset,
        Tag.MODEL: spec.model,
        Tag.FORGET: spec.forget,
        Tag.TRIAL_KEY: spec.trial_key,
        **({Tag.MEASURED_WITH: spec.measured_with} if spec.measured_with else {}),
    }


def log_earlier_steps(client, run_id: str, result: dict, default_step: int = 0) -> int:
    """Log the metrics of every request of a continual trial but the last as metric steps 0..T-2
    of ``run_id``; return the step at which the final result is to be logged (T-1;
    ``default_step`` for other trials)."""
    steps = result.get(STEPS_KEY)
    if not steps:
        return default_step
    for t, metrics in enumerate(steps[:-1]):
        log_metrics(client, run_id, trial_metrics(metrics), step=t)
    return len(steps) - 1


def set_warnings(client, run_id: str, lines) -> None:
    """The parent run's warnings (tag ``bench.warnings``, which ``bench compare`` repeats): ``lines``,
    or no tag when there are none (a resumed run's earlier lines that no longer hold go)."""
    text = "\n".join(lines)[:4900]
    if text:
        client.set_tag(run_id, Tag.WARNINGS, text)
    elif Tag.WARNINGS in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, Tag.WARNINGS)


def record_failure(client, run_id: str, error_text: str) -> None:
    client.set_tag(run_id, Tag.ERROR, error_line(error_text, limit=4000))  # the exception, on one line
    client.log_text(run_id, error_text, "error.txt")


def kill_unfinished_children(client, experiment_id: str, parent_run_id: str) -> int:
    """Mark the child runs still RUNNING (trials cut off by an interrupt) as KILLED."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{Tag.PARENT}` = '{parent_run_id}' and attributes.status = 'RUNNING'"
    )
    for run in runs:
        client.set_terminated(run.info.run_id, "KILLED")
    return len(runs)


def format_exception(exc: BaseException) -> str:
    return "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__))


#: what a RecordError tells the user to do
RESUME_HINT = "Trials recorded as FINISHED are kept: rerun with --resume once the store takes writes."
#: ... when the store refused the run's opening
NOTHING_RUN = "Nothing was run: rerun once the store takes writes."


@contextmanager
def recording(what: str, then: str = RESUME_HINT):
    """Turn an error of the tracking store inside the block into ``RecordError`` ("``what`` failed:
    <the error>. ``then``", one line and exit status 1 from ``bench``): a measurement the store did
    not take is never reported as done, and the user sees no traceback for a full disk or a lost
    server."""
    from bench.core.errors import BenchError

    try:
        yield
    except (RecordError, BenchError):  # a refusal of bad input inside the block is said as it is
        raise
    except Exception as exc:
        raise RecordError(f"{what} failed: {error_line(format_exception(exc))}. {then}") from exc


def error_line(error_text: str, limit: int = 300) -> str:
    """The exception of a traceback on one line ("RuntimeError: boom"): the lines after its last
    frame, whitespace collapsed, at most ``limit`` characters."""
    lines = error_text.rstrip().splitlines()
    last_frame = max((i for i, line in enumerate(lines) if line.startswith((" ", "\t", "Traceback (most recent call"))),
                     default=-1)
    text = " ".join(" ".join(lines[last_frame + 1:]).split()) or " ".join(" ".join(lines[-1:]).split())
    return (text[: limit - 3] + "...") if len(text) > limit else (text or "failed")


def failure_line(tag: str, name: str, error_text: str, run_id: str | None) -> str:
    """The terminal line of a failed trial: which trial, the exception, where its traceback is."""
    where = f"traceback: MLflow run {run_id}, error.txt" if run_id else "traceback in MLflow (error.txt)"
    return f"{tag} FAILED  {name}: {error_line(error_text)} ({where})"


def log_local_trial(tracking_uri: str, experiment_id: str, parent_run_id: str, spec: TrialSpec,
                    metrics: dict | None, error: str | None, killed: bool = False) -> str:
    """Write one finished trial as a child run (the ``--executor local`` path); ``killed``: the trial
    an interrupt cut off, recorded KILLED as under Ray (bench compare counts it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    run = client.create_run(experiment_id, run_name=spec.trial_name, tags=child_tags(spec, parent_run_id))
    run_id = run.info.run_id
    log_params(client, run_id, trial_params(spec))
    if metrics:
        log_metrics(client, run_id, trial_metrics(metrics), step=log_earlier_steps(client, run_id, metrics))
        log_artifacts(client, run_id, metrics)
    if error:
        record_failure(client, run_id, error)
    client.set_terminated(run_id, "KILLED" if killed else "FAILED" if error else "FINISHED")
    return run_id
