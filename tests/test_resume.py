"""A `bench run` killed midway and rerun with --resume: finished trials are kept, not rerun."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import mlflow
import pytest

pytestmark = pytest.mark.slow


def test_killed_run_resumes_without_rerunning_finished_trials(workdir, store_args, run_bench, invoke_bench):
    exe = os.path.join(os.path.dirname(sys.executable), "bench")
    # the SIGKILL lands within 0.2 s of the first trial's end: retrain's trials alone take 2 s
    # (the recipe's 30 epochs; 60 doubled the four references' training for nothing)
    args = ["run", "--seeds", "0-1", *store_args(workdir)]
    log = open(workdir / "first.log", "w")
    # its own session, so that SIGKILL takes the driver and the Ray it started, as a crash would
    proc = subprocess.Popen([exe, *args], cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and " done " not in (workdir / "first.log").read_text():
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    before = mlflow.search_runs(experiment_names=["unlearning-bench"])
    kids_before = before[(before["tags.bench.role"] == "trial") & (before["status"] == "FINISHED")]
    assert 1 <= len(kids_before) < 6
    finished_ids = set(kids_before["run_id"])

    second = run_bench(*args, "--resume", cwd=workdir)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{len(kids_before)} of 6 trial(s) already finished" in second.stdout
    # trial lines only ("[2/6] running ft seed=0"): the reaper's "... left running by a bench process
    # that died" appears when the killed run's Ray processes outlived it
    assert len(re.findall(r"\] running ", second.stdout)) == 6 - len(kids_before), second.stdout

    after = mlflow.search_runs(experiment_names=["unlearning-bench"])
    parents = after[after["tags.bench.role"] == "parent"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    kids = after[after["tags.bench.role"] == "trial"]
    finished = kids[kids["status"] == "FINISHED"]
    assert len(finished) == 6 and finished["tags.bench.trial_key"].is_unique
    assert finished_ids <= set(finished["run_id"])  # the measurements of the first run are kept as they were
    assert "RUNNING" not in set(kids["status"])
    assert (kids["tags.mlflow.parentRunId"] == parents.iloc[0]["run_id"]).all()

    # a third --resume finds nothing left to do
    third = invoke_bench(*args, "--resume", "--executor", "local", cwd=workdir)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "6 of 6 trial(s) already finished" in third.stdout and "] running " not in third.stdout
