"""A tracking store that refuses a write: never a run reported as done without its record, never a
traceback for it on the terminal. The local executor's trial records, the parent run's summary and
its closing each fail with one line and exit status 1 (the Ray path: tests/test_ray_runs.py); an
error of bench's own that is already on its way out is never masked by the store's."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from bench.core.keys import Tag
from bench.track import tracking

FT = ("-m", "ft", "-p", "ft.epochs=1", "--executor", "local", "--attacks", "")


def _args(workdir, shared_cache):
    return ("run", *FT, "--cache-dir", str(shared_cache), "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}")


def _runs(workdir):
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name("unlearning-bench").experiment_id])


def _one_error_line(proc) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


@pytest.mark.slow  # a run of the harness or a process: the quick loop stays under 2 min
def test_a_trial_record_the_store_refuses_ends_the_run_with_one_line(workdir, shared_cache, invoke_bench, monkeypatch):
    real = tracking.log_metrics

    def full_disk(client, run_id, metrics, step=0):
        if "forget_acc" in metrics:  # the trial's results, not the parent's bookkeeping
            raise OSError(28, "No space left on device")
        real(client, run_id, metrics, step=step)

    monkeypatch.setattr(tracking, "log_metrics", full_disk)
    proc = invoke_bench(*_args(workdir, shared_cache), cwd=workdir)
    line = _one_error_line(proc)
    assert line.startswith("Error: recording trial ft seed=0 in the MLflow store failed: OSError: [Errno 28] No space "
                           "left on device. Trials recorded as FINISHED are kept: rerun with --resume"), line
    assert "done    ft" not in proc.stdout  # never reported as done
    runs = _runs(workdir)
    parent = next(r for r in runs if r.data.tags.get(Tag.ROLE) == "parent")
    child = next(r for r in runs if r.info.run_id != parent.info.run_id)
    assert parent.info.status == "FAILED" and child.info.status != "FINISHED" and "forget_acc" not in child.data.metrics


@pytest.mark.parametrize("where", ["open", "references", "summary", "close"])
def test_a_parent_run_the_store_refuses_ends_the_run_with_one_line(workdir, shared_cache, invoke_bench, monkeypatch, where):
    if where == "summary":
        real_text = MlflowClient.log_text

        def read_only(self, run_id, text, artifact_file):
            if artifact_file.startswith("summary"):
                raise OSError("read-only file system")
            return real_text(self, run_id, text, artifact_file)

        monkeypatch.setattr(MlflowClient, "log_text", read_only)
        expected = "Error: writing the run's summary to the MLflow store failed: OSError: read-only file system."
    elif where == "references":
        real_metrics = tracking.log_metrics

        def refused(client, run_id, metrics, step=0):
            if "references_trained" in metrics:
                raise OSError("read-only file system")
            real_metrics(client, run_id, metrics, step=step)

        monkeypatch.setattr(tracking, "log_metrics", refused)
        expected = "Error: recording the references in the MLflow store failed: OSError: read-only file system. The references"
    elif where == "open":
        monkeypatch.setattr(MlflowClient, "log_text", lambda *a, **k: (_ for _ in ()).throw(OSError("read-only file system")))
        expected = ("Error: opening the run in the MLflow store failed: OSError: read-only file system. Nothing was run: "
                    "rerun once the store takes writes.")
    else:
        real = MlflowClient.set_terminated

        def lost(self, run_id, status=None, end_time=None):
            if status == "FINISHED" and self.get_run(run_id).data.tags.get(Tag.ROLE) == "parent":
                raise ConnectionError("the tracking server went away")
            return real(self, run_id, status, end_time)

        monkeypatch.setattr(MlflowClient, "set_terminated", lost)
        expected = "Error: marking the parent run "
    proc = invoke_bench(*_args(workdir, shared_cache), cwd=workdir)
    line = _one_error_line(proc)
    assert line.startswith(expected), line
    if where == "close":
        assert "FINISHED in the MLflow store failed: ConnectionError: the tracking server went away." in line


def test_the_stores_refusal_to_close_never_masks_an_error_of_benchs_own(workdir, shared_cache, monkeypatch):
    """A bug's traceback is what a developer needs: the store's failure to close the parent run
    after it is not raised over it."""
    import io

    from rich.console import Console

    from bench.core.options import RunOptions
    from bench.run import runner
    from bench.track import report

    monkeypatch.setattr(report, "build_rows", lambda *a, **k: (_ for _ in ()).throw(ZeroDivisionError("a bug")))
    real = MlflowClient.set_terminated

    def gone_at_the_end(self, run_id, status=None, end_time=None):
        if status == "FAILED":  # the parent run, closed after the bug
            raise OSError("store gone")
        return real(self, run_id, status, end_time)

    monkeypatch.setattr(MlflowClient, "set_terminated", gone_at_the_end)
    opts = RunOptions(executor="local", tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", cache_dir=str(shared_cache),
                      methods="ft", params={"ft": {"epochs": 1}}, attacks="")
    with pytest.raises(ZeroDivisionError, match="a bug"):
        runner.run(opts, Console(file=io.StringIO()))


def test_bench_tune_whose_run_the_store_refuses_ends_with_one_line(workdir, shared_cache, invoke_bench, monkeypatch):
    monkeypatch.setattr(tracking, "start_parent", lambda *a, **k: (_ for _ in ()).throw(OSError("read-only file system")))
    proc = invoke_bench("tune", "--method", "ft", "--num-samples", "2", "--cache-dir", str(shared_cache),
                        "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}", cwd=workdir)
    assert _one_error_line(proc) == ("Error: opening the run in the MLflow store failed: OSError: read-only file system. "
                                     "Nothing was run: rerun once the store takes writes.")


def test_option_keys_mlflow_cannot_take_are_recorded_as_one_json_param(tmp_path):
    """``--original mlp:256,256=PATH`` made the param key ``options.original.mlp:256,256``, whose
    comma MLflow refuses: the whole parent run failed after Ray had started (exit 1)."""
    params = tracking.flatten({"options": {"original": {"mlp:256,256": "mine.safetensors"}, "recipe": {"lr": 0.1}}})
    assert params == {"options.original": '{"mlp:256,256": "mine.safetensors"}', "options.recipe.lr": "0.1"}
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    run = client.create_run(client.create_experiment("x"))
    tracking.log_params(client, run.info.run_id, params)  # MLflow takes every key
    assert client.get_run(run.info.run_id).data.params == params


def test_a_parent_run_whose_params_the_store_refuses_is_not_left_running(workdir, shared_cache, invoke_bench,
                                                                          monkeypatch):
    real = tracking.log_params

    def refused(client, run_id, params):
        if any(k.startswith("options.") for k in params):
            raise OSError("read-only file system")
        real(client, run_id, params)

    monkeypatch.setattr(tracking, "log_params", refused)
    proc = invoke_bench(*_args(workdir, shared_cache), cwd=workdir)
    assert _one_error_line(proc).startswith("Error: opening the run in the MLflow store failed: OSError: read-only")
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("unlearning-bench").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_a_store_mlflow_cannot_create_is_one_line_and_leaves_no_half_store(tmp_path, monkeypatch, invoke_bench):
    """A full disk while MLflow migrated a new store was a raw traceback of alembic's, exit 1, and left
    the half-made mlflow.db behind (cache audit, 2026-12-07)."""
    import sqlite3

    from mlflow.tracking import MlflowClient as Client

    from bench.track import store

    monkeypatch.setattr(store, "store_template", lambda: None)  # MLflow's own creation, as when the copy fails

    def full(self, experiment_id):  # where MLflow builds the store: beside it, renamed into place once whole
        building = self._tracking_client.tracking_uri[len("sqlite:///"):]
        assert building.startswith(str(tmp_path / "mlflow.db.new-")), building
        with open(building, "wb") as fh:
            fh.write(b"half")
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Client, "get_experiment", full)
    got = invoke_bench("run", "-m", "ft", "--attacks", "", "--executor", "local", "--cache-dir", str(tmp_path / "c"),
                       "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
    assert got.returncode == 1, got.stdout + got.stderr
    assert "Traceback" not in got.stdout + got.stderr
    assert got.stderr.strip().splitlines()[-1].startswith("Error: setting up experiment 'unlearning-bench' in the MLflow "
                                                          "store sqlite:///") and "database or disk is full" in got.stderr
    assert not (tmp_path / "mlflow.db").exists() and not list(tmp_path.glob("mlflow.db.new-*"))
