"""The tracking callback under Ray Tune writes the child runs beside Tune's loop (bench.track.ray_runs):
Tune's loop gets control back at once, the writes keep Tune's order, ``close`` waits for them and
raises a failed one. Driven by hand with Tune's trial objects' attributes, no Ray cluster."""

from __future__ import annotations

import threading

import pytest
from mlflow.tracking import MlflowClient

from bench.core.errors import RecordError
from bench.core.keys import ARTIFACTS_KEY
from bench.core.options import RunOptions
from bench.core.plugins import get_registry
from bench.run.plan import make_plan
from bench.track import ray_runs, tracking


class Trial:
    """What the callback reads of a Tune trial."""

    def __init__(self, index: int):
        self.config, self.trial_id, self.last_result, self.error_file = {"trial": index}, f"t_{index:05d}", None, None

    def __str__(self):
        return f"trainable_{self.trial_id}"


@pytest.fixture
def callback(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    opts = RunOptions(cache_dir=str(tmp_path / "cache"), tracking_uri=uri, methods="ft", seeds=[0, 1], attacks="")
    plan = make_plan(get_registry(), opts, {}, {})
    experiment = tracking.setup_experiment(uri, "writes")
    parent = MlflowClient(uri).create_run(experiment).info.run_id
    cb = ray_runs.make_ray_callback(uri, "writes", parent, plan.trials)
    cb.setup()
    yield cb, MlflowClient(uri), plan
    cb.close()


def test_a_result_is_written_beside_tunes_loop_in_order_and_close_waits_for_it(callback, monkeypatch):
    cb, client, plan = callback
    release, writing = threading.Event(), threading.Event()
    real = ray_runs.log_artifacts

    def slow_artifacts(*args):  # a slow plot: Tune's loop must not wait for it
        writing.set()
        assert release.wait(30)
        real(*args)

    monkeypatch.setattr(ray_runs, "log_artifacts", slow_artifacts)
    trial = Trial(1)
    cb.log_trial_start(trial)
    cb.log_trial_result(1, trial, {"forget_acc": 0.25, "unlearn_seconds": 1.0, ARTIFACTS_KEY: {"note.txt": "hello"}})
    trial.last_result = {"unlearn_seconds": 1.0}
    cb.log_trial_end(trial)  # returned although the artifact is still being written
    assert writing.wait(30)
    run_id = cb.run_id(trial)
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.info.run_name == plan.trials[1].trial_name
    assert run.data.params["seed"] == "1" and run.data.metrics["forget_acc"] == 0.25
    release.set()
    cb.close()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run_id)] == ["note.txt"]


def test_a_failed_write_fails_its_run_and_close_and_the_other_trials_are_still_written(callback, monkeypatch):
    cb, client, _ = callback
    real = ray_runs.log_metrics

    def broken(c, run_id, metrics, step=0):
        if metrics.get("forget_acc") == 0.5:
            raise OSError("store full")
        real(c, run_id, metrics, step=step)

    monkeypatch.setattr(ray_runs, "log_metrics", broken)
    bad, good = Trial(0), Trial(1)
    lines = []
    for trial, acc in ((bad, 0.5), (good, 0.75)):
        cb.log_trial_start(trial)
        cb.log_trial_result(1, trial, {"forget_acc": acc, "unlearn_seconds": 1.0})
        trial.last_result = {"unlearn_seconds": 1.0}
        cb.log_trial_end(trial)
        cb.after_record(trial, lambda t=trial: lines.append(t.trial_id))
    with pytest.raises(RecordError, match=r"1 write\(s\) .* failed, the first: OSError: store full\. .*--resume"):
        cb.close()
    assert lines == [good.trial_id]  # no "done" line for a trial whose result is not in the store
    assert client.get_run(cb.run_id(good)).data.metrics["forget_acc"] == 0.75
    assert client.get_run(cb.run_id(good)).info.status == "FINISHED"
    run = client.get_run(cb.run_id(bad))  # never FINISHED without its result (--resume would skip it)
    assert run.info.status == "FAILED" and "forget_acc" not in run.data.metrics
    assert run.data.tags["bench.error"] == "OSError: store full"


def test_bench_ends_with_one_line_and_status_1_when_a_record_fails():
    from click.testing import CliRunner

    from bench.cli import main

    @main.command("record-fails")
    def record_fails():
        raise RecordError("1 write(s) of the trials' runs to the MLflow store failed")

    try:
        done = CliRunner().invoke(main, ["record-fails"])
    finally:
        main.commands.pop("record-fails")
    assert done.exit_code == 1 and done.output == "Error: 1 write(s) of the trials' runs to the MLflow store failed\n"


def test_a_failed_trial_gets_its_traceback_and_the_failed_status(callback, tmp_path):
    cb, client, _ = callback
    trial = Trial(0)
    trial.error_file = str(tmp_path / "error.txt")
    (tmp_path / "error.txt").write_text("Traceback (most recent call last):\nValueError: boom\n")
    cb.log_trial_end(trial, failed=True)  # its actor never started: no run yet
    cb.close()
    run = client.get_run(cb.run_id(trial))
    assert run.info.status == "FAILED" and run.data.tags["bench.error"] == "ValueError: boom"
