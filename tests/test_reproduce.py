"""``bench reproduce RUN_ID``: a recorded run made again from its record (options, directory), its
trials paired with the recorded ones by trial key and every computed metric compared."""

from __future__ import annotations

import math

import pytest

from bench.track.reproduce import Check, check_trials, compared, version_changes


def test_times_and_memory_are_left_out_and_everything_else_compared():
    assert not any(map(compared, ("unlearn_seconds", "retrain_seconds", "cumulative_unlearn_seconds", "peak_memory_mb",
                                  "memory_delta_mb", "speedup_vs_retrain", "cumulative_speedup_vs_retrain")))
    assert all(map(compared, ("forget_acc", "avg_gap", "loss_auc", "weight_change", "epsilon_score", "forget_size")))


def test_check_trials_pairs_by_key_and_names_each_difference():
    nan = math.nan
    recorded = {
        "k1": ("ft seed=0", "FINISHED", {"forget_acc": 0.9, "test_acc": nan, "unlearn_seconds": 1.0}),
        "k2": ("ga seed=0", "FINISHED", {"forget_acc": 0.5, "loss_auc": 0.6}),
        "k3": ("rl seed=0", "FINISHED", {"forget_acc": 0.1}),
        "k4": ("iu seed=0", "FINISHED", {"forget_acc": 0.2}),
        "k5": ("ssd seed=0", "FAILED", {}),
    }
    now = {
        "k1": ("ft seed=0", "FINISHED", {"forget_acc": 0.9, "test_acc": nan, "unlearn_seconds": 2.0, "weight_change": 0.1}),
        "k2": ("ga seed=0", "FINISHED", {"forget_acc": 0.5 + 1e-9}),
        "k3": ("rl seed=0", "FAILED", {}),
        "k5": ("ssd seed=0", "FINISHED", {"forget_acc": 0.3}),
        "k6": ("bs seed=0", "FINISHED", {"forget_acc": 0.3}),
    }
    checks = {c.trial: c for c in check_trials(recorded, now)}
    assert checks["ft seed=0"] == Check("ft seed=0", "identical", 2, [])  # NaN = NaN; the time and a new metric left out
    assert checks["ga seed=0"].verdict == "differs"
    assert checks["ga seed=0"].differences == [("forget_acc", 0.5, 0.5 + 1e-9), ("loss_auc", 0.6, None)]
    assert "differs in 2 of 2 metrics: forget_acc 0.5 -> 0.5; loss_auc 0.6 -> missing" in checks["ga seed=0"].line(9)
    assert checks["rl seed=0"].verdict.startswith("failed now")
    assert checks["iu seed=0"].verdict.startswith("not run now")
    assert checks["ssd seed=0"].verdict == "failed in the record, finished now"  # nothing to compare: not identical
    assert checks["bs seed=0"].verdict.startswith("new (not in the record")
    both = check_trials({"k": ("x", "FAILED", {})}, {"k": ("x", "FAILED", {})})
    assert [c.verdict for c in both] == ["failed in the record and now"]
    # a method's default changed since (ft's lr): the same trial under another key, compared as itself,
    # naming the parameter (it read "not run now" beside "new", naming neither; found in review)
    from bench.track.reproduce import Recorded

    then = Recorded("ft seed=1", "FINISHED", {"forget_acc": 0.4}, "", "c", {"params.lr": "0.01", "seed": "1"})
    later = Recorded("ft seed=1", "FINISHED", {"forget_acc": 0.3}, "", "c", {"params.lr": "0.02", "seed": "1"})
    (check,) = check_trials({"old": then}, {"new": later})
    assert check.verdict == "differs" and check.params == [("params.lr", "0.01", "0.02")]
    assert "param params.lr 0.01 -> 0.02; forget_acc 0.4 -> 0.3" in check.line(9)
    # measured with other code (a plugin's unlearn edited under the same version): the line says so
    # (it named no cause; repro audit 2026-12-07); and a replaced --original file is named by its digest
    code_then = Recorded("ga seed=2", "FINISHED", {"forget_acc": 0.4}, "", "a" * 64, {"original.sha256": "1" * 64})
    code_now = Recorded("ga seed=2", "FINISHED", {"forget_acc": 0.3}, "", "b" * 64, {"original.sha256": "2" * 64})
    (check,) = check_trials({"k": code_then}, {"k": code_now})
    assert check.verdict == "differs" and check.params == [("original.sha256", "1" * 64, "2" * 64)]
    assert f"code identity {'a' * 12} -> {'b' * 12})" in check.line(9), check.line(9)
    (same,) = check_trials({"k": code_then}, {"k": code_then})
    assert same.verdict == "identical" and same.code is None
    relaxed = {c.trial: c for c in check_trials({"k2": recorded["k2"]}, {"k2": ("ga", "FINISHED", {
        "forget_acc": 0.5 + 1e-9, "loss_auc": 0.6})}, rtol=1e-6)}
    assert relaxed["ga seed=0"].verdict == "identical"


def test_a_record_that_lost_a_metric_or_whose_params_were_edited_is_not_confirmed():
    """An auditor deleted forget_acc, test_acc, retain_acc and avg_gap from a trial's record, and set
    another trial's params.lr 0.005 -> 0.5: `bench reproduce` said both were identical (a metric
    the record lacks was taken as logged by newer code; params were not compared)."""
    from bench.track.reproduce import Recorded

    full = {"forget_acc": 0.5, "test_acc": 0.9, "loss_auc": 0.6, "unlearn_seconds": 1.0}
    params = {"params.lr": "0.005", "seed": "0", "measured_with": "abc", "method_train.key": "k1",
              "versions.host.platform": "Linux-6.1", "plugins.spin": "0.1", "original.path": "/a/o.safetensors",
              "data.files": "/data/A"}
    rerun = Recorded("ft seed=0", "FINISHED", full, "", "abc", params)
    lost = Recorded("ft seed=0", "FINISHED", {"loss_auc": 0.6}, "", "abc", params)
    (check,) = check_trials({"k": lost}, {"k": rerun})
    assert check.verdict == "differs" and check.compared == 3
    assert check.differences == [("forget_acc", None, 0.5), ("test_acc", None, 0.9)]
    assert "differs in 2 of 3 metrics: forget_acc missing -> 0.5; test_acc missing -> 0.9" in check.line(9)
    # measured with other (older) code: a metric it did not log yet is not compared
    older = lost._replace(measured_with="old", params={**params, "measured_with": "old", "method_train.key": "k0"})
    (check,) = check_trials({"k": older}, {"k": rerun})
    assert check.verdict == "identical" and check.compared == 1
    # a recorded param the options do not give again
    edited = rerun._replace(params={**params, "params.lr": "0.5", "seed": "99"})
    (check,) = check_trials({"k": edited}, {"k": rerun})
    assert check.verdict == "differs" and check.params == [("params.lr", "0.5", "0.005"), ("seed", "99", "0")]
    assert "differs in 2 param(s): param params.lr 0.5 -> 0.005; param seed 99 -> 0" in check.line(9)
    (check,) = check_trials({"k": rerun}, {"k": rerun})
    assert check == Check("ft seed=0", "identical", 3, [])
    # what a true reproduction may change (the auditor's second finding: these said "differs"): another
    # host, an unrelated plugin uninstalled, a moved project or data folder
    elsewhere = rerun._replace(params={**params, "versions.host.platform": "Linux-6.9", "original.path": "/b/o.safetensors",
                                       "data.files": "/data/B"})
    elsewhere.params.pop("plugins.spin")
    (check,) = check_trials({"k": rerun}, {"k": elsewhere})
    assert check.verdict == "identical", check


def test_version_changes_name_what_differs_from_the_record():
    recorded = {"versions.torch": "2.3.0", "versions.numpy": "1.26.4", "plugins.extra": "0.1"}
    assert version_changes(recorded, "versions", {"torch": "2.4.0", "numpy": "1.26.4", "scipy": "1.13"}) == [
        "torch 2.3.0 -> 2.4.0"]
    assert version_changes(recorded, "plugins", {"extra": "0.2"}) == ["extra 0.1 -> 0.2"]


def _parent(store: str, run_id: str | None = None, reproduces: str | None = None):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("unlearning-bench")
    where = "tags.`bench.role` = 'parent'" + (f" and tags.`bench.reproduces` = '{reproduces}'" if reproduces else "")
    runs = client.search_runs([exp.experiment_id], where, order_by=["attributes.start_time DESC"])
    return client, (next(r for r in runs if r.info.run_id == run_id) if run_id else runs[0])


@pytest.mark.slow  # runs the harness
def test_a_run_whose_cache_came_from_the_environment_is_reproduced_on_that_cache(tmp_path, shared_cache, invoke_bench):
    """The record held options.cache_dir = None: reproduce used this environment's cache, and with
    another XDG_CACHE_HOME trained the references again, though the README says "on the cache it
    used" (outputs audit, 2026-12-07). The resolved directory is the parent's tag bench.cache_dir."""
    used, other = tmp_path / "xdg-used", tmp_path / "xdg-other"
    used.mkdir()
    (used / "unlearning-bench").symlink_to(shared_cache, target_is_directory=True)  # its references, trained
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ("--tracking-uri", store, "--executor", "local")
    first = invoke_bench("run", "-m", "ga", "-s", "0", "--attacks", "", "--recipe", "epochs=5", *common, cwd=tmp_path,
                         env={"XDG_CACHE_HOME": str(used)})
    assert first.returncode == 0, first.stderr
    _, original = _parent(store)
    assert original.data.tags["bench.cache_dir"] == str(used / "unlearning-bench")
    again = invoke_bench("reproduce", "latest", *common, cwd=tmp_path, env={"XDG_CACHE_HOME": str(other)})
    assert again.returncode == 0 and "0 trained" in again.stdout + again.stderr, again.stdout + again.stderr
    assert not other.exists()  # this environment's cache was not used
    # the recorded cache gone: said, and this environment's used
    (used / "unlearning-bench").unlink()
    gone = invoke_bench("reproduce", "latest", *common, "-q", cwd=tmp_path, env={"XDG_CACHE_HOME": str(other)})
    assert gone.returncode == 0 and f"note: the run used the cache {used / 'unlearning-bench'}, which does not exist " \
        "here: using this environment's (references missing there are trained again)" in gone.stderr, gone.stderr


@pytest.mark.slow
def test_a_run_is_made_again_from_its_record_in_its_directory(tmp_path, shared_cache, invoke_bench):
    made_in, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    made_in.mkdir()
    elsewhere.mkdir()
    (made_in / "forget.txt").write_text("3\n14\n15\n92\n65\n")  # a relative path, read from the recorded directory
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ("--tracking-uri", store, "--executor", "local")
    first = invoke_bench("run", "-m", "ga,ft", "-s", "0", "-f", "indices:forget.txt", "--attacks", "loss",
                         "--recipe", "epochs=5", "--cache-dir", str(shared_cache), *common, "-q", cwd=made_in)
    assert first.returncode == 0, first.stderr
    client, original = _parent(store)

    again = invoke_bench("reproduce", original.info.run_id[:8], *common, "-q", cwd=elsewhere)
    assert again.returncode == 0, again.stderr
    assert f"running in {made_in}, the directory the run was made in" in again.stderr
    assert "reproducing run " + original.info.run_id in again.stderr
    assert "bench run -m ga,ft -s 0 -f indices:forget.txt" in again.stderr  # the recorded command line
    assert "2 of 2 recorded trial(s) give the same numbers (times and memory left out)" in again.stdout
    assert again.stdout.count(" identical (") == 2
    _, copy = _parent(store, reproduces=original.info.run_id)
    assert copy.data.tags["bench.reproduced"] == "identical"
    assert copy.info.run_name == f"reproduce-{original.info.run_name}"
    assert copy.data.tags["bench.command"].startswith("bench reproduce ")
    text = client.download_artifacts(copy.info.run_id, "reproduction.txt", str(tmp_path))
    assert "2 of 2 recorded trial(s)" in open(text).read()
    # latest is the latest `bench run`, not the reproduction just made (it reproduced that; repro audit)
    latest = invoke_bench("reproduce", "latest", *common, "-q", cwd=elsewhere)
    assert latest.returncode == 0 and "reproducing run " + original.info.run_id in latest.stderr, latest.stderr
    # and so is bench compare's (it showed the reproduction; outputs audit), the reproduction by its id
    shown = invoke_bench("compare", "--tracking-uri", store, "--no-plot", "--format", "csv")
    assert shown.returncode == 0 and f"parent run {original.info.run_id} " in shown.stderr, shown.stderr
    shown = invoke_bench("compare", "--tracking-uri", store, "--no-plot", "--run", copy.info.run_id[:3])
    assert shown.returncode == 2 and "A run id prefix needs at least 4 characters." in shown.stderr, shown.stderr

    # --resume of the recorded command continues the recorded run, not its reproduction (same plan)
    resumed = invoke_bench("run", "-m", "ga,ft", "-s", "0", "-f", "indices:forget.txt", "--attacks", "loss",
                           "--recipe", "epochs=5", "--cache-dir", str(shared_cache), *common, "--resume", cwd=made_in)
    assert resumed.returncode == 0 and f"resuming parent run {original.info.run_id}" in resumed.stdout, resumed.stdout

    # one recorded number changed in the store: the rerun no longer matches it
    trials = client.search_runs([original.info.experiment_id],
                                f"tags.`mlflow.parentRunId` = '{original.info.run_id}' and tags.`bench.method` = 'ga'")
    client.log_metric(trials[0].info.run_id, "forget_acc", 0.123456, step=99)
    changed = invoke_bench("reproduce", original.info.run_id, *common, "-q", cwd=elsewhere)
    assert changed.returncode == 1, changed.stderr
    assert "1 of 2 recorded trial(s) give the same numbers" in changed.stdout
    assert "differs in 1 of " in changed.stdout and "forget_acc 0.123456 -> " in changed.stdout
    _, copy = _parent(store, reproduces=original.info.run_id)
    assert copy.data.tags["bench.reproduced"] == "differs"

    # the indices file rewritten since: said before the rerun's work, from the plan (it was said only
    # after the whole rerun; repro audit 2026-12-07)
    (made_in / "forget.txt").write_text("3\n14\n15\n92\n66\n")
    rewritten = invoke_bench("reproduce", original.info.run_id, *common, cwd=elsewhere)
    assert rewritten.returncode == 1, rewritten.stderr
    note = next(line for line in rewritten.stderr.splitlines() if "cannot give the same numbers" in line)
    assert note.startswith("note: 2 recorded trial(s) cannot give the same numbers, as the plan made now differs"), note
    assert "forget_sha256" in note and "ga seed=0: " in note, note
    # the file gone: one line that says the record keeps each trial's forget set (hostile audit)
    (made_in / "forget.txt").unlink()
    gone = invoke_bench("reproduce", original.info.run_id, *common, cwd=elsewhere)
    assert gone.returncode == 2 and "no file at" in gone.stderr and "kept each trial's forget set" in gone.stderr, gone.stderr
    assert len(gone.stderr.strip().splitlines()) <= 3 and "Traceback" not in gone.stderr, gone.stderr


@pytest.mark.parametrize("args, message", [
    (("all",), "RUN_ID all: reproduce takes one run"),
    (("latest", "--rtol", "-1"), "Bad --rtol -1.0: expected a finite number >= 0"),
    (("latest", "--atol", "nan"), "Bad --atol nan: expected a finite number >= 0"),
    (("nosuchrun",), "Unknown run 'nosuchrun' in experiment 'unlearning-bench'"),
    (("nosuchrun",), "; or pass latest."),  # reproduce's alternative, not compare's --run
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, invoke_bench, args, message):
    from bench.track.store import new_sqlite_store

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    if args[0] == "nosuchrun":  # a store with one parent run to look the name up in
        import mlflow

        new_sqlite_store(tmp_path / "mlflow.db")
        mlflow.set_tracking_uri(store)
        exp = mlflow.set_experiment("unlearning-bench")
        with mlflow.start_run(experiment_id=exp.experiment_id, tags={"bench.role": "parent"}):
            pass
    got = invoke_bench("reproduce", *args, "--tracking-uri", store)
    assert got.returncode == 2, got.stderr
    assert message in got.stderr and len(got.stderr.strip().splitlines()) == 1, got.stderr


def test_a_record_with_bad_values_is_one_line(tmp_path):
    """Its values were set as found: "seeds": "abc" gave a NumPy traceback, a string for a list was
    read one character at a time."""
    import json

    import mlflow

    from bench.core.errors import BenchError
    from bench.track.reproduce import recorded_options

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.tracking.MlflowClient()
    # its artifacts under tmp_path: MLflow's default root (./mlruns) is the checkout the tests run in
    exp = client.get_experiment(client.create_experiment("records", artifact_location=str(tmp_path / "art")))
    for options, message in (({"seeds": "abc"}, r"Run \w+'s experiment.json: .*seeds"),
                             ({"forgets": 3}, r"Run \w+'s experiment.json: .*forget"),
                             (None, r"holds no 'options' object"),
                             ({"seeds": [0], "warp": 1}, r"options this bench does not know \(warp\)")):
        with mlflow.start_run(experiment_id=exp.experiment_id) as run:
            mlflow.log_text(json.dumps({"options": options}), "experiment.json")
        with pytest.raises(BenchError, match=message):
            recorded_options(client, client.get_run(run.info.run_id))
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        mlflow.log_text(json.dumps({"options": {"seeds": [1, 2], "forgets": ["class:3"], "dry_run": False}}),
                        "experiment.json")
    opts = recorded_options(client, client.get_run(run.info.run_id))
    assert opts.seeds == [1, 2] and opts.forgets == ["class:3"] and opts.methods == "retrain,ft,ga"


def test_a_parent_without_experiment_json_is_refused(tmp_path):
    import mlflow

    from bench.core.errors import BenchError
    from bench.track.reproduce import recorded_options

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment(client.create_experiment("not-a-bench-run", artifact_location=str(tmp_path / "art")))
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        pass
    with pytest.raises(BenchError, match=r"has no readable experiment.json .*not made by `bench run`"):
        recorded_options(client, client.get_run(run.info.run_id))
    client.set_tag(run.info.run_id, "bench.kind", "tune")
    with pytest.raises(BenchError, match=r"is a `bench tune` search"):
        recorded_options(client, client.get_run(run.info.run_id))


def test_a_running_run_is_refused(tmp_path, invoke_bench):
    import mlflow

    from bench.track.store import new_sqlite_store

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    new_sqlite_store(tmp_path / "mlflow.db")
    client = mlflow.tracking.MlflowClient(store)
    exp = client.get_experiment_by_name("unlearning-bench") or client.get_experiment(client.create_experiment("unlearning-bench"))
    run = client.create_run(exp.experiment_id, run_name="busy", tags={"bench.role": "parent"})  # left RUNNING
    got = invoke_bench("reproduce", run.info.run_id, "--tracking-uri", store)
    assert got.returncode == 2 and f"Run {run.info.run_id} ('busy') is still running" in got.stderr, got.stderr


@pytest.mark.slow
def test_a_record_without_a_finished_trial_confirms_nothing(tmp_path, shared_cache, invoke_bench, boom_plugin):
    boom_plugin()
    store = ("--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--executor", "local")
    first = invoke_bench("run", "-m", "boom", "--attacks", "", "--cache-dir", str(shared_cache), *store, "-q")
    assert first.returncode == 1, first.stderr
    again = invoke_bench("reproduce", "latest", *store, "-q")
    assert again.returncode == 1, again.stderr
    assert "0 of 0 recorded trial(s) give the same numbers (times and memory left out); the record has no finished " \
           "trial, so nothing was confirmed" in again.stdout
    assert "boom seed=0  failed in the record and now" in again.stdout


@pytest.mark.slow
def test_a_continual_trial_is_compared_request_by_request(tmp_path, shared_cache, invoke_bench):
    """A seq: trial logs every request's metrics as steps; comparing the last request's alone let a
    rerun that differed on request 1 pass as identical."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ("--tracking-uri", store, "--executor", "local")
    first = invoke_bench("run", "-m", "ft", "-f", "seq:2x5", "--attacks", "", "--recipe", "epochs=5",
                         "--cache-dir", str(shared_cache), *common, "-q", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    client, original = _parent(store)
    again = invoke_bench("reproduce", "latest", *common, "-q", cwd=tmp_path)
    assert again.returncode == 0 and "1 of 1 recorded trial(s) give the same numbers" in again.stdout, again.stdout
    (trial,) = client.search_runs([original.info.experiment_id], f"tags.`mlflow.parentRunId` = '{original.info.run_id}'")
    compared = int(again.stdout.split(" identical (")[1].split(" ")[0])
    finals = sum(1 for k in trial.data.metrics if not k.endswith(("_seconds", "_mb")) and not k.startswith("speedup"))
    assert compared > finals + 10, (compared, finals)  # request 1's values too
    # request 1's forget_acc changed in the record (its final value as it was): not identical
    client.log_metric(trial.info.run_id, "forget_acc", 0.123456, step=0)
    changed = invoke_bench("reproduce", original.info.run_id, *common, "-q", cwd=tmp_path)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "differs in 1 of " in changed.stdout and "forget_acc (request 1) 0.123456 -> " in changed.stdout, changed.stdout
