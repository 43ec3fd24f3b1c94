"""An attack that fails loses its own numbers only: the trial keeps the method's metrics and the
other attacks', records the failure (tag bench.attack_errors, artifact attack_errors/<attack>.txt),
``bench run`` exits 1, ``--resume`` runs such a trial again, ``bench reproduce`` confirms nothing
about it, and a ``bench tune`` sample whose objective is that attack's fails."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import bench
from bench.core.errors import BenchError
from bench.core.keys import ATTACK_ERRORS_KEY
from bench.core.spec import TrialSpec


class Flaky:
    """Fails its first ``fails`` calls (an out-of-memory, say), then scores."""

    name = "flaky"
    description = "test attack that fails its first calls"

    def __init__(self, fails: int) -> None:
        self.fails = fails

    def evaluate(self, model, ctx):
        if self.fails > 0:
            self.fails -= 1
            raise RuntimeError("out of memory (test)")
        return {"auc": 0.5}


class _FlakyPlugin:
    def __init__(self, fails: int) -> None:
        self.attack = Flaky(fails)

    @bench.hookimpl
    def register_attacks(self, register):
        register(self.attack)


@pytest.mark.slow
def test_resume_runs_a_trial_whose_attack_failed_again(workdir, shared_cache, run_harness, trial_runs, plugged):
    with plugged(_FlakyPlugin(fails=1)):
        code, out = run_harness(workdir, methods="ft,ga", attacks="flaky", recipe={"epochs": 5},
                                cache_dir=str(shared_cache))
        assert code == 1, out
        first = trial_runs(workdir)
        assert first.loc["ft", "tags.bench.attack_errors"] == "flaky" and first.loc["ga", "metrics.flaky_auc"] == 0.5
        assert "attack 'flaky' has no metrics in 1 trial(s) (ft seed=0): Attack 'flaky' failed: RuntimeError" in out
        code, out = run_harness(workdir, methods="ft,ga", attacks="flaky", recipe={"epochs": 5},
                                cache_dir=str(shared_cache), resume=True)
    assert code == 0, out
    assert "1 of 2 trial(s) already finished" in out and "1 finished trial(s) lack an attack's metrics" in out, out
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    ft = mlflow.search_runs(experiment_names=["unlearning-bench"], filter_string="tags.`bench.method` = 'ft'",
                            order_by=["start_time DESC"])
    assert len(ft) == 2 and ft["metrics.flaky_auc"].iloc[0] == 0.5 and ft["status"].iloc[0] == "FINISHED"
    # the first session's line no longer holds: bench compare does not repeat it
    parent = mlflow.MlflowClient().get_run(ft["tags.mlflow.parentRunId"].iloc[0])
    assert "flaky" not in parent.data.tags.get("bench.warnings", "")


def _record(errors: str = "") -> tuple:
    return ("ft seed=0", "FINISHED", {"forget_acc": 0.5, "loss_auc": 0.6}, errors)


def test_reproduce_confirms_nothing_about_a_trial_an_attack_failed_in():
    from bench.track.reproduce import check_trials

    (same,) = check_trials({"k": _record()}, {"k": _record()})
    assert same.verdict == "identical"
    (then,) = check_trials({"k": _record("lira")}, {"k": _record()})
    assert then.verdict.startswith("attack(s) lira failed in the record"), then.verdict
    (now,) = check_trials({"k": _record()}, {"k": _record("lira,rmia")})
    assert now.verdict.startswith("attack(s) lira,rmia failed now"), now.verdict
    # the old three-field form (a record read by an earlier version) still compares
    (old,) = check_trials({"k": _record()[:3]}, {"k": _record()[:3]})
    assert old.verdict == "identical"


def test_attack_error_lines_count_and_name_the_trials():
    from bench.track.trial_warnings import attack_error_lines

    class Spec:
        def __init__(self, name):
            self.trial_name = name

    specs = [Spec(f"ft seed={i}") for i in range(5)]
    results = {i: {ATTACK_ERRORS_KEY: {"lira": f"Attack 'lira' failed: ValueError: {i}.\n\nTraceback ..."}} for i in range(5)}
    results[5] = {"forget_acc": 0.1}
    specs.append(Spec("ga seed=0"))
    (line,) = attack_error_lines(specs, results)
    assert line.startswith("attack 'lira' has no metrics in 5 trial(s) (ft seed=0, ft seed=1, ft seed=2 and 2 more): "
                           "Attack 'lira' failed: ValueError: 0. The method's metrics"), line
    assert attack_error_lines(specs, {5: results[5]}) == []


def test_a_tune_sample_whose_objective_attack_failed_fails(monkeypatch):
    """Tune refuses a result without the search's metric (its strict check raised in the driver);
    the sample fails instead, with the attack's traceback."""
    from bench.run import executor

    spec = TrialSpec(trial_name="ft seed=0", method="ft", method_plugin="", params={"lr": 0.1}, data_access=frozenset(),
                     seed=0, forget_seed=0, dataset="digits", data={}, model="mlp", forget="random:10%", forget_size=144,
                     group="g0", recipe={}, attacks=("lira",), shadow_models=4, device="cpu", threads=1, versions={},
                     plugins={})
    errors = {"lira": "Attack 'lira' failed: ValueError: no shadows\n\nTraceback (most recent call last): ..."}
    errors["loss"] = "Attack 'loss' failed: RuntimeError: other\n\nTraceback ..."
    monkeypatch.setattr(executor, "run_trial", lambda *a, **k: {"forget_acc": 0.2, ATTACK_ERRORS_KEY: errors})
    config = {"trial": spec.as_dict(), "pick": {"number": 1, "sample": {"lr": 0.2}}, "objective": "lira_auc"}
    payload = SimpleNamespace(attacks={"loss": object(), "lira": object()})
    with pytest.raises(BenchError, match=r"(?s)Attack 'lira', whose lira_auc is the objective, has no metrics, so this "
                                         r"sample has no score: Attack 'lira' failed: ValueError: no shadows") as caught:
        executor._tune_trainable(config, payload=payload)
    assert "RuntimeError: other" not in str(caught.value)  # not another attack's failure
    # the sample's FAILED line is the error's first line (it was the attack's inner exception alone,
    # read as the sample's own), and its record keeps the attack's traceback beneath
    from bench.track.tracking import error_line, format_exception

    text = format_exception(caught.value)
    assert error_line(text).startswith("bench.core.errors.BenchError: Attack 'lira', whose lira_auc"), error_line(text)
    assert "Traceback (most recent call last): ..." in text


def test_the_attack_an_objective_belongs_to_is_the_longest_name_it_starts_with():
    from bench.eval.metrics import objective_attack

    attacks = {"lira": object(), "lira_offline": object(), "svc": SimpleNamespace(unprefixed=("avg_gap_mia",))}
    assert objective_attack("lira_offline_auc", attacks) == "lira_offline"
    assert objective_attack("lira_auc", attacks) == "lira" and objective_attack("avg_gap_mia", attacks) == "svc"
    assert objective_attack("avg_gap", attacks) is None


def test_a_search_whose_objective_attack_lost_its_shadows_runs_no_sample():
    """The shadows fail once, on the driver: every sample would train its method and then fail."""
    from bench.run.tuning import _unscorable

    attacks = {"lira": SimpleNamespace(needs=frozenset({"shadows"})), "loss": SimpleNamespace(needs=frozenset())}
    broken = SimpleNamespace(attack_models={"errors": {"shadows": "Traceback ...\nRuntimeError: planted\n(while ...)"}})
    payload = SimpleNamespace(attacks=attacks, groups={"g0": broken})
    (why,) = _unscorable("lira_auc", payload).values()
    assert "RuntimeError: planted" in why and "Attack 'lira', whose lira_auc is the objective, needs them" in why
    assert _unscorable("loss_auc", payload) == {} and _unscorable("avg_gap", payload) == {}
    fine = SimpleNamespace(attacks=attacks, groups={"g0": SimpleNamespace(attack_models={"shadows": object()})})
    assert _unscorable("lira_auc", fine) == {}


def test_an_artifact_named_like_the_trials_own_files_is_refused_however_written():
    from bench.run.attack_step import check_artifacts

    for name in ("model.safetensors", "./model.safetensors", ".//error.txt", "./attack_errors/lira.txt",
                 "forget_indices.txt", "attack_errors/x.txt"):
        with pytest.raises(BenchError, match=r"a name of the trial's own files"):
            check_artifacts("Attack 'a'", {name: "x"})
    check_artifacts("Attack 'a'", {"a/model.safetensors": "x", "report.txt": "x"})  # elsewhere: its own
