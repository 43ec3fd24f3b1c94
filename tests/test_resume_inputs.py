"""``--resume`` keys a trial on what it measures on, not only on its specs: a rewritten indices file
(or dataset file) behind the same ``--forget`` / ``--dataset`` text runs the trials again instead of
keeping results measured on the old data next to references trained on the new."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from bench.core.options import RunOptions
from bench.run.runner import run


def _run(workdir, forget: str, cpus: float = 1.0) -> str:
    opts = RunOptions(executor="local", methods="retrain", forgets=[forget], attacks="", recipe={"epochs": 2},
                      cache_dir=str(workdir / "cache"), tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                      experiment="resume-inputs", resume=True, cpus_per_trial=cpus)
    out = io.StringIO()
    assert run(opts, Console(file=out, width=200)) == 0, out.getvalue()
    return out.getvalue()


@pytest.mark.slow  # a run of the harness or a process: the quick loop stays under 2 min
def test_a_rewritten_indices_file_runs_the_trial_again(workdir):
    path = workdir / "idx.txt"
    path.write_text("\n".join(map(str, range(10))) + "\n")
    first = _run(workdir, f"indices:{path}")
    assert "already finished" not in first
    again = _run(workdir, f"indices:{path}")  # the same file: nothing to do
    assert "1 of 1 trial(s) already finished" in again
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("resume-inputs")
    parent = client.search_runs([exp.experiment_id], "tags.`bench.role` = 'parent'")[0]
    resumed = client.list_artifacts(parent.info.run_id, "resumed")  # the resuming session's own options
    assert len(resumed) == 1 and resumed[0].path.endswith(".json")
    path.write_text("\n".join(map(str, range(300))) + "\n")
    changed = _run(workdir, f"indices:{path}")
    assert "already finished" not in changed and "done    retrain seed=0" in changed


@pytest.mark.slow
def test_resume_with_other_cpus_per_trial_starts_a_new_run(workdir):
    """The thread count changes a trial's numbers and times: a resume with another --cpus-per-trial
    put trials of 1 and 2 threads under one parent, averaged together by compare."""
    _run(workdir, "random:16")
    other = _run(workdir, "random:16", cpus=2.0)
    assert "no earlier run of this plan" in other and "already finished" not in other
    # which option made it another plan (a progress line without it until 2026-12-06: a typo reran a
    # whole long run under a new parent; found in review)
    assert "starting a new one; the latest run, " in other and "differs in cpus_per_trial '1.0' -> '2.0'" in other
    assert "1 of 1 trial(s) already finished" in _run(workdir, "random:16", cpus=2.0)


def test_the_trial_key_covers_the_inputs():
    import dataclasses

    from bench.core.spec import TrialSpec

    spec = TrialSpec(trial_name="t", method="ft", method_plugin="", params={}, data_access=frozenset(), seed=0,
                     forget_seed=0, dataset="digits", data={}, model="mlp", forget="random:10%", forget_size=144,
                     group="g0", recipe={}, attacks=(), shadow_models=0, device="cpu", threads=1, versions={},
                     plugins={}, data_sha256="a" * 64, forget_sha256="c" * 64)
    for field in ("data_sha256", "forget_sha256"):
        assert dataclasses.replace(spec, **{field: "b" * 64}).trial_key != spec.trial_key
    assert TrialSpec.from_dict(spec.as_dict()).trial_key == spec.trial_key


def test_resume_refuses_a_run_whose_driver_is_alive(workdir):
    """Two drivers of one parent run would each run its unfinished trials (twice, under one parent):
    --resume of a run still RUNNING with a live driver is refused before any work."""
    import subprocess
    import sys

    import pytest
    from mlflow.tracking import MlflowClient

    from bench.core.errors import BenchError
    from bench.track.tracking import process_started

    _run(workdir, "random:10%")
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("resume-inputs")
    parent = client.search_runs([exp.experiment_id], "tags.`bench.role` = 'parent'")[0]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        client.update_run(parent.info.run_id, status="RUNNING")
        client.set_tag(parent.info.run_id, "bench.driver.pid", str(other.pid))
        client.set_tag(parent.info.run_id, "bench.driver.started", process_started(other.pid))
        with pytest.raises(BenchError, match=rf"--resume: run {parent.info.run_id} .* is still running \(driver pid "
                                             rf"{other.pid} on this host\); resuming it now would run its trials twice"):
            _run(workdir, "random:10%")
    finally:
        other.kill()
        other.wait()
    assert "1 of 1 trial(s) already finished" in _run(workdir, "random:10%")  # its driver is gone: reaped, resumed


@pytest.mark.slow
def test_a_run_recorded_with_the_older_plan_key_still_resumes(workdir):
    """Runs recorded before the plan key held each trial's device and threads carry the key of their
    trial keys alone: --resume finds them when their recorded options match."""
    from mlflow.tracking import MlflowClient

    from bench.core.keys import Tag, plan_key

    _run(workdir, "random:16")
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("resume-inputs")
    parent = client.search_runs([exp.experiment_id], "tags.`bench.role` = 'parent'")[0]
    kids = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    client.set_tag(parent.info.run_id, Tag.PLAN_KEY, plan_key(k.data.tags[Tag.TRIAL_KEY] for k in kids))
    assert "1 of 1 trial(s) already finished" in _run(workdir, "random:16")
    assert "no earlier run of this plan" in _run(workdir, "random:16", cpus=2.0)  # other options: not that run


@pytest.mark.slow
def test_a_resume_looks_for_its_parent_only_while_no_other_resume_of_the_plan_does(workdir, monkeypatch):
    """Two --resume of one plan started together could both take over its parent (find, check and
    claim are separate store calls): the lookup is serialised by a lock of the plan in the cache."""
    import threading
    import time

    from bench.core.cache_lock import key_lock
    from bench.track import resume

    _run(workdir, "random:16")
    calls, released = [], []
    real = resume.find_resumable

    def recorded(client, experiment_id, pkey):
        calls.append((time.monotonic(), pkey))
        return real(client, experiment_id, pkey)

    monkeypatch.setattr(resume, "find_resumable", recorded)
    _run(workdir, "random:16")  # learn the plan key
    pkey = calls[0][1]
    calls.clear()
    held = threading.Event()

    def holder():
        with key_lock(workdir / "cache", f"resume-{pkey}"):
            held.set()
            time.sleep(1.0)
            released.append(time.monotonic())

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    assert "1 of 1 trial(s) already finished" in _run(workdir, "random:16")
    t.join()
    assert calls and calls[0][0] >= released[0]  # looked up only once the other resume let go


@pytest.mark.slow
def test_resume_runs_again_the_trials_measured_with_another_plugin_version(workdir, monkeypatch):
    """The documented flow "a trial fails, fix its plugin, --resume" kept the trials the old version
    had measured beside the new version's, averaged as seeds of one method (exit 0)."""
    import bench.run.runner as runner

    _run(workdir, "random:16")
    real = runner.plugin_versions
    monkeypatch.setattr(runner, "plugin_versions", lambda: {**real(), "bench.methods": "9.9"})
    again = _run(workdir, "random:16")
    assert "0 of 1 trial(s) already finished" in again and "1 finished trial(s) were measured with other code" in again
    assert "done    retrain seed=0" in again
    assert "1 of 1 trial(s) already finished" in _run(workdir, "random:16")  # now measured with 9.9
    # the replaced run says so in MLflow (both looked complete; repro audit 2026-12-07)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["resume-inputs"], order_by=["attributes.start_time ASC"])
    trials = df[df["tags.bench.role"] == "trial"]
    assert len(trials) == 2 and list(trials["status"]) == ["FINISHED", "FINISHED"]
    old, new = trials.iloc[0], trials.iloc[1]
    assert old["tags.bench.superseded_by"] == new["run_id"] and new.get("tags.bench.superseded_by") != new["run_id"]


def test_the_code_identity_follows_the_plugins_bench_and_torch_and_resume_keeps_only_its_own():
    from types import SimpleNamespace

    import bench.run.trained_with as tw
    from bench.track.resume import MEASURED_WITH, fresh_results

    class M:  # a method plugin's object (its class's module: this test file)
        pass

    base = dict(method=("my-plugin", M()), attacks={"loss": ("bench.attacks", object())}, model="", own_original="",
                plugins={"my-plugin": "1.0", "bench.attacks": "0.1.0"}, versions={"torch": "2.14.1"})
    first = tw.measured_with(**base)
    assert tw.measured_with(**base) == first and len(first) == 16
    others = [
        {**base, "plugins": {**base["plugins"], "my-plugin": "1.1"}},
        {**base, "plugins": {**base["plugins"], "bench.attacks": "0.2"}},
        {**base, "versions": {"torch": "2.15.0"}},
        {**base, "attacks": {}},
        {**base, "model": "timm 1.0.9"},
        {**base, "own_original": "ab" * 32},
    ]
    assert len({tw.measured_with(**o) for o in others} | {first}) == len(others) + 1
    done = {"k1": {"avg_gap": 0.1, MEASURED_WITH: first}, "k2": {"avg_gap": 0.2, MEASURED_WITH: "old"},
            "k3": {"avg_gap": 0.3, MEASURED_WITH: ""}, "k4": {"avg_gap": 0.4, MEASURED_WITH: first}}
    trials = [SimpleNamespace(trial_key=k, measured_with=first) for k in ("k1", "k2", "k3")]
    kept, stale = fresh_results(done, trials)
    assert kept == {"k1": {"avg_gap": 0.1}} and stale == 2  # k4: not in the plan; k3: recorded no identity


def test_the_code_identity_covers_the_built_in_methods_helper_modules(monkeypatch):
    """A built-in method's identity held only the module defining its class: a change in a helper
    module (PRUNE's LP code lives in its subpackage) kept the trials measured before it."""
    from pathlib import Path

    import bench.run.trained_with as tw

    tw.bench_code_digest.cache_clear()
    before = tw.bench_code_digest()
    real = Path.read_bytes

    def edited(self):
        data = real(self)
        return data + b"\n# edited\n" if self.parent.name == "prune" and self.name == "engine.py" else data  # a helper

    monkeypatch.setattr(Path, "read_bytes", edited)
    tw.bench_code_digest.cache_clear()
    try:
        assert tw.bench_code_digest() != before
    finally:
        monkeypatch.undo()
        tw.bench_code_digest.cache_clear()
    assert tw.bench_code_digest() == before


def test_a_third_party_plugins_identity_covers_its_helper_modules(tmp_path, monkeypatch):
    """An attack importing a value from its package's helper.py: editing helper.py and resuming kept
    the trials measured before ('2 of 2 trial(s) already finished')."""
    import importlib
    import sys

    from bench.run.trained_with import _package_digest, object_code_digest

    pkg = tmp_path / "auditplug_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .helper import VALUE\n\nclass Attack:\n    name = 'x'\n")
    (pkg / "helper.py").write_text("VALUE = 0.5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("auditplug_pkg")
    try:
        before = object_code_digest(module.Attack())
        (pkg / "helper.py").write_text("VALUE = 0.7\n")
        _package_digest.cache_clear()  # read once per process: a new bench process reads the edit
        assert object_code_digest(module.Attack()) != before and len(before) == 16
    finally:
        sys.modules.pop("auditplug_pkg", None)
        sys.modules.pop("auditplug_pkg.helper", None)


def test_a_plugin_packages_data_files_are_in_its_identity(tmp_path, monkeypatch):
    """A model plugin scaling its initial weights by a value in its package's scale.json kept its
    cached references when the value changed: the retrain method 0.225 away from its own reference,
    exit 0 (cache audit, 2026-12-07). Caches and byte-compiled files are not part of it."""
    import importlib
    import sys

    from pathlib import Path

    from bench.run import trained_with
    from bench.run.trained_with import _package_digest, object_code_digest

    pkg = tmp_path / "auditplug_data"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("class Model:\n    name = 'x'\n")
    (pkg / "conf").mkdir()
    (pkg / "conf" / "scale.json").write_text('{"scale": 1.0}')
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("auditplug_data")

    def digest():
        _package_digest.cache_clear()  # read once per process: a new bench process reads the edit
        return object_code_digest(module.Model())

    try:
        before = digest()
        (pkg / "__pycache__").mkdir(exist_ok=True)  # Python may have written it at the import
        (pkg / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0" * 8)
        (pkg / ".hidden").write_text("editor state")
        for junk in ("run.log", "scale.json~", "mlflow.db", "best-params-ga.json", "compare-ab12.png", "x.swp"):
            (pkg / junk).write_text("written while it runs")  # a log written at import retrained every run
        assert digest() == before
        (pkg / "conf" / "scale.json").write_text('{"scale": 0.2}')
        changed = digest()
        assert changed != before
        monkeypatch.setattr(trained_with, "MAX_DATA_BYTES", 4)  # past the budget: by name and size only
        capped = digest()
        (pkg / "conf" / "scale.json").write_text('{"scale": 0.3}')
        assert digest() == capped
        (pkg / "conf" / "scale.json").write_text('{"scale": 0.25}')
        assert digest() != capped
        monkeypatch.setattr(trained_with, "MAX_DATA_BYTES", 64 << 20)
        read = digest()
        real = Path.read_bytes  # a data file that cannot be read: by name, never an empty identity
        monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(PermissionError(13, "denied"))
                            if self.name == "scale.json" else real(self))
        assert len(digest()) == 16 and digest() != read
    finally:
        sys.modules.pop("auditplug_data", None)
        _package_digest.cache_clear()


def test_a_model_plugins_initial_values_are_in_its_references_key():
    """A model plugin whose create starts from a file (--model NAME:PATH, new content at the same
    path) kept its cached references, original 0.877 against 0.672 fresh, exit 0 (cache audit,
    2026-12-07): what create built is keyed with its initial values too."""
    import torch

    from bench.run.trained_with import network_digest

    def create(scale):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 3))
        with torch.no_grad():
            net[0].weight.mul_(scale)
        return net

    assert network_digest(create(1.0)) == network_digest(create(1.0))
    assert network_digest(create(1.0)) != network_digest(create(0.2))
    half = torch.nn.Sequential(torch.nn.Linear(4, 3)).to(torch.bfloat16)  # any dtype: its bytes
    assert len(network_digest(half)) == 16
    sparse = create(1.0)  # a sparse buffer was a raw traceback at plan time (diff review, 2026-12-07)
    sparse.register_buffer("mask", torch.eye(3).to_sparse())
    assert network_digest(sparse) == network_digest(sparse) != network_digest(create(1.0))
