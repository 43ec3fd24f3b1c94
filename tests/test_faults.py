"""Trustworthy numbers under faults: a model with non-finite outputs fails its own trial (never
scores), a failing trial prints one line, concurrent first runs share a new store, and a driver
killed with SIGKILL leaves nothing RUNNING and no Ray processes behind once bench runs again."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time

import mlflow
import pytest
import torch
from rich.console import Console

from bench.core.errors import BenchError
from bench.core.options import RunOptions
from bench.eval.evaluation import nonfinite_outputs
from bench.run.runner import run

EPOCHS = {"epochs": 5}


def _nan_(model):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    return model


class NanMethod:
    """Returns the model with NaN weights (on request ``from_request`` on, counting from 1)."""

    name = "nanm"
    description = "test method that returns NaN weights"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}
    from_request = 1
    calls = 0

    def unlearn(self, model, request, params, ctx):
        NanMethod.calls += 1
        return _nan_(model) if NanMethod.calls >= NanMethod.from_request else model


class NanReport(NanMethod):
    """Passes a NaN copy of the model to ``ctx.report``, returns the model unchanged."""

    name = "nanreport"

    def unlearn(self, model, request, params, ctx):
        if ctx.report is not None:
            ctx.report(_nan_(ctx.new_model()))
        return model


class _Votes(torch.nn.Module):
    """SISA's argmax aggregation: each member votes one-hot; the outputs are the vote counts."""

    def __init__(self, *members):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x):
        votes = [torch.nn.functional.one_hot(m(x).argmax(1), m(x).shape[1]) for m in self.members]
        return torch.stack(votes).sum(0).float()


class NanMember(NanMethod):
    """Returns an ensemble of the model and a NaN copy of it: finite outputs, a diverged member."""

    name = "nanmember"

    def unlearn(self, model, request, params, ctx):
        import copy

        return _Votes(model, _nan_(copy.deepcopy(model)))


def _opts(workdir, cache, **kw):
    kw.setdefault("recipe", EPOCHS)
    return RunOptions(cache_dir=str(cache), tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", **kw)


def _runs(workdir):
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["unlearning-bench"])


def _check_nan_trial_failed_alone(workdir, code, out):
    assert code == 1, out
    df = _runs(workdir)
    kids = df[df["tags.bench.role"] == "trial"].set_index("tags.bench.method")
    assert kids.loc["ft", "status"] == "FINISHED" and kids.loc["ft", "metrics.forget_acc"] >= 0
    assert kids.loc["nanm", "status"] == "FAILED"
    run_id = kids.loc["nanm", "run_id"]
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/error.txt")
    assert "Method 'nanm' returned a model with NaN outputs on the forget set" in text, text
    assert mlflow.tracking.MlflowClient().get_run(run_id).data.metrics == {}  # nothing measured on a NaN model
    failed = [line for line in out.splitlines() if " FAILED " in line]
    assert len(failed) == 1, out
    assert "nanm seed=0" in failed[0] and "BenchError: Method 'nanm' returned a model with NaN outputs" in failed[0]
    assert f"traceback: MLflow run {run_id}, error.txt" in failed[0]
    parent = df[df["tags.bench.role"] == "parent"].iloc[0]
    assert parent["tags.bench.driver.pid"].isdigit() and parent["tags.bench.driver.host"]
    return kids


# -- non-finite outputs --------------------------------------------------------------------------

def test_nonfinite_outputs_name_the_first_bad_set():
    ok, nan, inf = torch.zeros(3, 2), torch.tensor([[0.0, float("nan")]]), torch.tensor([[float("inf"), 0.0]])
    assert nonfinite_outputs({"forget": ok, "retain": ok, "test": ok}) is None
    assert nonfinite_outputs({"forget": ok, "retain": nan, "test": inf}) == "NaN outputs on the retain set"
    assert nonfinite_outputs({"forget": inf, "retain": ok, "test": ok}) == "infinite outputs on the forget set"
    assert nonfinite_outputs({"forget": torch.zeros(0, 2)}) is None  # an empty set has nothing wrong


@pytest.mark.parametrize("attacks", ["", pytest.param("loss,entropy,svc", marks=pytest.mark.slow)], ids=["no-attacks", "attacks"])
def test_nan_model_fails_only_its_own_trial(workdir, shared_cache, boom_plugin, attacks):
    boom_plugin(NanMethod())
    NanMethod.calls, NanMethod.from_request = 0, 1
    out = io.StringIO()
    code = run(_opts(workdir, shared_cache, executor="local", methods="nanm,ft", attacks=attacks), Console(file=out, width=250))
    kids = _check_nan_trial_failed_alone(workdir, code, out.getvalue())
    if attacks:  # failed before the attacks: not blamed on one, and the other trial was attacked
        assert "svc" not in kids.loc["nanm", "tags.bench.error"]
        assert kids.loc["ft", "metrics.mia_efficacy"] >= 0


@pytest.mark.slow
def test_nan_model_on_a_later_continual_request_fails_the_trial(workdir, shared_cache, boom_plugin):
    boom_plugin(NanMethod())
    NanMethod.calls, NanMethod.from_request = 0, 2
    out = io.StringIO()
    code = run(_opts(workdir, shared_cache, executor="local", methods="nanm", attacks="", forgets=["seq:2x10"]),
               Console(file=out, width=250))
    assert code == 1, out.getvalue()
    kids = _runs(workdir)
    kids = kids[kids["tags.bench.role"] == "trial"]
    assert list(kids["status"]) == ["FAILED"]
    assert "returned a model with NaN outputs on the forget set on request 2" in kids.iloc[0]["tags.bench.error"]


def test_nan_model_passed_to_ctx_report_fails_the_trial(workdir, shared_cache, boom_plugin):
    from bench.core.plugins import get_registry, plugin_versions
    from bench.run.plan import make_plan
    from bench.run.prepare import prepare_references
    from bench.run.trial import run_trial
    from bench.track.provenance import package_versions

    boom_plugin(NanReport())
    versions = package_versions()
    plan = make_plan(get_registry(), _opts(workdir, shared_cache, methods="nanreport", attacks=""), versions, plugin_versions())
    payload, _, _ = prepare_references(plan, versions, lambda *a, **k: None)
    assert run_trial(plan.trials[0], payload)["forget_acc"] >= 0  # no scheduler listening: nothing evaluated
    reports: list = []
    with pytest.raises(BenchError, match=r"Method 'nanreport' returned a model with NaN outputs on the forget set "
                                         r"\(a model passed to ctx.report\)"):
        run_trial(plan.trials[0], payload, report=reports.append)
    assert reports == []


def test_a_diverged_part_with_finite_outputs_fails_the_trial(workdir, shared_cache, boom_plugin):
    """An ensemble whose member diverged still votes (argmax of NaN logits is a class): its outputs
    are finite, and its metrics were computed as if it were sound, exit 0 (params audit, 2026-12-07)."""
    from bench.core.plugins import get_registry, plugin_versions
    from bench.run.plan import make_plan
    from bench.run.prepare import prepare_references
    from bench.run.trial import run_trial
    from bench.track.provenance import package_versions

    boom_plugin(NanMember())
    versions = package_versions()
    plan = make_plan(get_registry(), _opts(workdir, shared_cache, methods="nanmember", attacks=""), versions, plugin_versions())
    payload, _, _ = prepare_references(plan, versions, lambda *a, **k: None)
    with pytest.raises(BenchError, match=r"Method 'nanmember' returned a model with NaN or infinite values in "
                                         r"members\.1\..*, though its outputs are finite"):
        run_trial(plan.trials[0], payload)


@pytest.mark.slow
def test_the_per_epoch_reports_asha_listens_to_are_not_the_methods_time(workdir, shared_cache):
    """Under `bench tune --scheduler asha` a sample's ctx.report evaluates the model and hands the
    numbers to Tune at every epoch; a sample ASHA let finish counted that as its unlearn_seconds (found
    in review, 2026-12-07). ft reports three times here, each report held 1 s."""
    import time

    from bench.core.plugins import get_registry, plugin_versions
    from bench.run.plan import make_plan
    from bench.run.prepare import prepare_references
    from bench.run.trial import run_trial
    from bench.track.provenance import package_versions

    versions = package_versions()
    plan = make_plan(get_registry(), _opts(workdir, shared_cache, methods="ft", attacks="", params={"ft": {"epochs": 3}}),
                     versions, plugin_versions())
    payload, _, _ = prepare_references(plan, versions, lambda *a, **k: None)
    reports: list = []
    metrics = run_trial(plan.trials[0], payload, report=lambda m: (reports.append(m), time.sleep(1.0)))
    assert len(reports) == 3 and all("avg_gap" in m for m in reports)
    assert metrics["unlearn_seconds"] < 1.5, metrics["unlearn_seconds"]  # 3 s of reports left out
    assert metrics["speedup_vs_retrain"] == pytest.approx(metrics["retrain_seconds"] / metrics["unlearn_seconds"])


# -- the same through Ray: one line on the terminal, Ray's traceback in a log file ----------------

@pytest.mark.slow
def test_ray_failure_prints_one_line_and_no_ray_traceback(workdir, shared_cache, boom_plugin, capfd):
    boom_plugin(NanMethod())
    NanMethod.calls, NanMethod.from_request = 0, 1
    out = io.StringIO()
    code = run(_opts(workdir, shared_cache, methods="nanm,ft", attacks=""), Console(file=out, width=250), quiet=True)
    err = capfd.readouterr().err
    _check_nan_trial_failed_alone(workdir, code, out.getvalue())
    assert "Traceback" not in err and "Trial task failed" not in err and "_tune_trainable" not in err, err
    log = re.search(r"Ray's log: (\S+)\.$", out.getvalue(), re.M)
    assert log, out.getvalue()
    text = open(log.group(1)).read()
    assert "Trial task failed" in text and "NaN outputs on the forget set" in text


# -- several processes on one store --------------------------------------------------------------

def _bench(*args, **kw):
    exe = os.path.join(os.path.dirname(sys.executable), "bench")
    return subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.slow
def test_two_first_runs_on_a_new_store_both_finish(workdir):
    from bench.core.cache import ReferenceCache

    args = ["run", "--executor", "local", "--methods", "ft", "--attacks", "", "-r", "epochs=5",
            "--cache-dir", str(workdir / "cache"), "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    procs = [_bench(*args, cwd=workdir) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)
    df = _runs(workdir)
    parents = df[df["tags.bench.role"] == "parent"]
    assert list(parents["status"]) == ["FINISHED", "FINISHED"]
    assert (df[df["tags.bench.role"] == "trial"]["status"] == "FINISHED").sum() == 2
    if hasattr(ReferenceCache, "locked"):  # per-key cache locks: each reference trained by one run only
        assert parents["metrics.references_trained"].sum() == parents["metrics.references_trained"].max() == 2


def _ray_processes_of(driver: int) -> list[int]:
    """Pids of live processes whose environment names ``driver`` as their bench Ray driver."""
    from bench.run.executor import DRIVER_ENV
    from bench.track.tracking import process_alive

    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            env = open(f"/proc/{name}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(f"{DRIVER_ENV}={driver}:".encode()) for v in env) and process_alive(int(name)):
            found.append(int(name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkilled_driver_leaves_nothing_running_after_the_next_command(workdir, shared_cache):
    store = ["--cache-dir", str(shared_cache), "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    log = open(workdir / "first.log", "w")
    exe = os.path.join(os.path.dirname(sys.executable), "bench")
    # its own session (as from a terminal): SIGKILL takes the driver alone, its Ray processes stay
    # the references of the other tests (cached), a trial long enough to be in flight when killed
    first = subprocess.Popen([exe, "run", "--methods", "ft", "--seeds", "0", "--attacks", "", "-r", "epochs=5",
                              "-p", "ft.epochs=400", *store],
                             cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and "] running " not in (workdir / "first.log").read_text():
            time.sleep(0.2)
        assert "] running " in (workdir / "first.log").read_text(), (workdir / "first.log").read_text()
        before = _ray_processes_of(first.pid)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    time.sleep(3)
    # measured from a shell (setsid bench run ...; kill -9): raylet's DashboardAgent and RuntimeEnvAgent
    # survive for minutes, reparented to init; gcs_server and raylet die with the driver
    survivors = _ray_processes_of(first.pid)
    print(f"Ray processes of the driver: {len(before)} before SIGKILL, {len(survivors)} alive 3 s after")
    assert before
    df = _runs(workdir)
    assert "RUNNING" in set(df["status"])  # the parent and the trials in flight

    second = _bench("run", "--executor", "local", "--methods", "ft", "--seeds", "0", "--attacks", "", "-r", "epochs=5",
                    *store, cwd=workdir)
    out = second.communicate(timeout=300)[0]
    assert second.returncode == 0, out
    assert "marked KILLED: run(s) left RUNNING by a bench process that died" in out
    assert f"driver pid {first.pid}" in out
    df = _runs(workdir)
    assert "RUNNING" not in set(df["status"]), df[["status", "tags.bench.role"]]
    killed = df[df["tags.bench.driver.pid"] == str(first.pid)]
    assert list(killed["status"]) == ["KILLED"]
    kids = df[df["tags.mlflow.parentRunId"] == killed.iloc[0]["run_id"]]
    assert set(kids["status"]) <= {"KILLED", "FINISHED"}
    deadline = time.time() + 10
    while time.time() < deadline and _ray_processes_of(first.pid):
        time.sleep(0.2)
    assert _ray_processes_of(first.pid) == []


class Keeps(NanMethod):
    """Returns the model as given, and says it trains nothing (its warm-up steps no optimiser)."""

    name = "keeps"
    trains = False

    def unlearn(self, model, request, params, ctx):
        return model


@pytest.mark.slow
def test_ray_trial_timeout_stops_a_stuck_trial_and_its_worker_goes_on(workdir, shared_cache, boom_plugin, spins):
    """Under Ray the trial runs in Tune's trainable thread; the one slot (2 CPUs per trial) runs
    the stuck trial first, then the other. The limit covers each trial's set-up too (a fresh
    worker's first trial imports torch._dynamo: seconds on a loaded machine), so the other trial
    is one that returns the model as given, and the limit is not tight."""
    boom_plugin(spins, Keeps())
    out = io.StringIO()
    code = run(_opts(workdir, shared_cache, methods="spins,keeps", attacks="", trial_timeout=10, cpus_per_trial=2),
               Console(file=out, width=250))
    assert code == 1, out.getvalue()
    kids = _runs(workdir)
    kids = kids[kids["tags.bench.role"] == "trial"].set_index("tags.bench.method")
    assert kids.loc["spins", "status"] == "FAILED"
    assert "ran longer than --trial-timeout 10 s" in kids.loc["spins", "tags.bench.error"]
    assert kids.loc["keeps", "status"] == "FINISHED", kids["tags.bench.error"].to_dict()
