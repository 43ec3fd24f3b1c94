"""The harness in process (--executor local): data access, failure isolation, MLflow records."""

from __future__ import annotations

import threading

import mlflow
import pytest
import torch

import bench


class Spy:
    """Records what the harness handed it; changes nothing."""

    name = "spy"
    description = "test method that records its request"
    requires = frozenset({"forget"})
    default_params = {"k": 1}
    search_space: dict = {}
    seen: list = []

    def unlearn(self, model, request, params, ctx):
        Spy.seen.append((request.forget_x is not None, request.retain_x is not None, ctx.recipe, params))
        return model


def test_method_receives_only_declared_data_and_failures_stay_in_their_trial(workdir, boom_plugin, run_harness, trial_runs):
    boom_plugin(Spy())
    Spy.seen.clear()
    code, out = run_harness(workdir, methods="spy,boom,ft", params={"spy": {"k": "3"}}, recipe={"epochs": 5})
    assert code == 1, out
    assert Spy.seen == [(True, False, None, {"k": 3})]
    kids = trial_runs(workdir)
    assert kids.loc["boom", "status"] == "FAILED"
    assert "boom: deliberate failure" in kids.loc["boom", "tags.bench.error"]
    assert kids.loc["ft", "status"] == "FINISHED" and kids.loc["spy", "status"] == "FINISHED"
    assert kids.loc["spy", "params.data_access"] == "forget"
    assert kids.loc["spy", "params.params.k"] == "3"
    # the spy returned the original model unchanged: its metrics equal the original's
    assert kids.loc["spy", "metrics.forget_acc"] == kids.loc["spy", "metrics.original_forget_acc"]
    client = mlflow.tracking.MlflowClient()
    text = mlflow.artifacts.load_text(f"runs:/{kids.loc['boom', 'run_id']}/error.txt")
    assert "Traceback" in text and "RuntimeError: boom: deliberate failure" in text
    parent = client.get_run(kids.loc["boom", "tags.mlflow.parentRunId"])
    assert parent.data.metrics["trials_failed"] == 1 and parent.info.status == "FAILED"
    assert "1 trial(s) failed" in out


@pytest.mark.slow
def test_class_request_forgetting_through_the_harness(workdir, run_harness, trial_runs):
    code, out = run_harness(workdir, methods="retrain,ga", forgets=["class:3"], seeds=[0])
    assert code == 0, out
    kids = trial_runs(workdir)
    assert kids.loc["retrain", "metrics.forget_acc"] == 0.0
    assert kids.loc["retrain", "metrics.retrain_forget_acc"] == 0.0
    assert kids.loc["retrain", "metrics.avg_gap"] == 0.0  # the method reproduces the cached reference
    orig = kids.loc["ga", "metrics.original_forget_acc"]
    assert orig > 0.95 and kids.loc["ga", "metrics.forget_acc"] < 0.5 * orig
    assert kids.loc["ga", "metrics.original_test_acc"] >= 0.95
    assert kids.loc["ga", "metrics.test_forget_class_acc"] < 0.5


class Drawn:
    """A ``Rendered`` artifact: drawn where the trial is recorded."""

    def __init__(self, text: str) -> None:
        self.text = text

    def render(self) -> str:
        return self.text


class BrokenDrawing:
    def render(self) -> bytes:
        raise RuntimeError("no font for the plot")


class Reporter:
    """Adds its own metric and artifacts through the method context."""

    name = "reporter"
    description = "test method that reports a metric and artifacts"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        ctx.metrics["patches"] = float(len(request.forget_y))
        ctx.metrics["loss_auc"] = 0.25  # the loss attack's name: that attack is refused, naming this method
        ctx.artifacts["summary/patches.json"] = '{"patches": %d}' % len(request.forget_y)
        ctx.artifacts["raw.bin"] = b"\x00\x01"
        ctx.artifacts["plots/drawn.txt"] = Drawn(f"{len(request.forget_y)} points")
        ctx.artifacts["plots/broken.png"] = BrokenDrawing()
        return model


class Collider(Reporter):
    name = "collider"

    def unlearn(self, model, request, params, ctx):
        ctx.metrics["forget_acc"] = 0.0  # a harness metric: must be refused
        return model


@pytest.mark.slow
def test_methods_add_metrics_and_artifacts_to_their_trial(workdir, boom_plugin, run_harness, trial_runs):
    boom_plugin(Reporter(), Collider())
    code, out = run_harness(workdir, methods="reporter,collider", forgets=["random:7"], recipe={"epochs": 3},
                            attacks="loss")
    assert code == 1, out
    kids = trial_runs(workdir)
    assert kids.loc["reporter", "metrics.patches"] == 7.0
    assert kids.loc["reporter", "metrics.loss_auc"] == 0.25 and kids.loc["reporter", "tags.bench.attack_errors"] == "loss"
    text = mlflow.artifacts.load_text(f"runs:/{kids.loc['reporter', 'run_id']}/attack_errors/loss.txt")
    assert text.startswith("Attack 'loss' reported metric 'auc', which makes 'loss_auc', which method 'reporter' already "
                           "reported in this trial; one of the two plugins must rename it."), text
    run_id = kids.loc["reporter", "run_id"]
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/summary/patches.json") == '{"patches": 7}'
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/plots/drawn.txt") == "7 points"
    assert "RuntimeError: no font for the plot" in mlflow.artifacts.load_text(f"runs:/{run_id}/plots/broken.png.error.txt")
    assert "plots/broken.png" not in {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "plots")}
    assert kids.loc["collider", "status"] == "FAILED"
    assert "a metric bench itself measures" in kids.loc["collider", "tags.bench.error"]


def test_artifacts_are_text_bytes_or_rendered_under_relative_names():
    from bench.core.contracts import render
    from bench.core.errors import BenchError
    from bench.run.attack_step import check_artifacts

    check_artifacts("Method 'm'", {"a.txt": "x", "b.bin": b"x", "plots/c.txt": Drawn("x")})
    for bad in ({"a.txt": 3}, {"a.txt": object()}, {"/abs.txt": "x"}, {"../up.txt": "x"}, {"": "x"}):
        with pytest.raises(BenchError, match="artifacts are str, bytes or an object with render"):
            check_artifacts("Method 'm'", bad)
    assert render(Drawn("y")) == "y"
    with pytest.raises(TypeError, match="Drawn.render\\(\\) returned int, not str or bytes"):
        render(Drawn(5))


class Narrow:
    """Returns a model with ``width`` outputs per input instead of one per class."""

    name = "narrow"
    description = "test method that replaces the output layer"
    requires = frozenset({"forget"})
    default_params = {"width": 1}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        width = int(params["width"])
        if width == 0:  # one number per input, shape (N,): it failed on an IndexError in the evaluation
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1), torch.nn.Flatten(0))
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, width))


@pytest.mark.parametrize("width", [1, 11, 0])
def test_a_model_with_another_output_width_fails_its_trial(workdir, shared_cache, boom_plugin, run_harness, trial_runs,
                                                           width):
    """One output: argmax is always class 0, which scored an accuracy (the fraction of class 0) and a
    JS divergence broadcast against the references' 10 classes, with exit 0. Now refused."""
    boom_plugin(Narrow())
    code, out = run_harness(workdir, methods="narrow,ft", params={"narrow": {"width": str(width)}}, attacks="",
                            recipe={"epochs": 5}, cache_dir=str(shared_cache))
    assert code == 1, out
    kids = trial_runs(workdir)
    assert kids.loc["narrow", "status"] == "FAILED" and kids.loc["ft", "status"] == "FINISHED"
    shape = f"(N, {width})" if width else "(N)"
    assert (f"Method 'narrow' returned a model whose outputs have shape {shape}; expected (N, 10)"
            in kids.loc["narrow", "tags.bench.error"]), kids.loc["narrow", "tags.bench.error"]


class KeepsItsResult:
    """Returns the model of its first call in every later call (kept on itself)."""

    name = "keeps"
    description = "test method that keeps its first result"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def __init__(self) -> None:
        self.kept = None

    def unlearn(self, model, request, params, ctx):
        if self.kept is None:
            self.kept = model
        return self.kept


@pytest.mark.slow
def test_a_model_kept_from_an_earlier_trial_fails_its_trial(workdir, shared_cache, boom_plugin, run_harness, trial_runs):
    """A method that kept its first result and returned it ever after: the second seed's trial scored
    the first seed's model, exit 0 (found in review, 2026-12-07)."""
    boom_plugin(KeepsItsResult())
    code, out = run_harness(workdir, methods="keeps", seeds=[0, 1], attacks="", recipe={"epochs": 5},
                            cache_dir=str(shared_cache))
    assert code == 1, out
    kids = trial_runs(workdir).sort_values("params.seed")
    assert list(kids["status"]) == ["FINISHED", "FAILED"], kids["status"]
    assert kids["tags.bench.error"].iloc[1].startswith("bench.core.errors.BenchError: Method 'keeps' returned the very "
                                                      "model object it returned in an earlier trial"), kids["tags.bench.error"].iloc[1]


class InPlace:
    """Shifts the forget inputs in place: the harness would then evaluate on the shifted inputs.
    ``how``: by index assignment (torch counts it), or through ``.data``, a NumPy view or
    ``.data = other`` (torch does not: the contents' digest does)."""

    name = "inplace"
    description = "test method that changes the request's tensors"
    requires = frozenset({"forget"})
    default_params: dict = {"how": "index"}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        x = request.forget_x
        if params["how"] == "index":
            x[:, :10] = 16.0  # index assignment is in place too
        elif params["how"] == "data":
            x.data[:, :10] = 16.0
        elif params["how"] == "numpy":
            x.numpy()[:, :10] = 16.0
        else:
            x.data = x.data + 1.0
        return model


def test_a_method_that_changes_the_request_in_place_fails_its_trial(workdir, shared_cache, boom_plugin, run_harness,
                                                                    trial_runs):
    boom_plugin(InPlace())
    code, out = run_harness(workdir, methods="inplace,ft", attacks="", recipe={"epochs": 5}, cache_dir=str(shared_cache))
    assert code == 1, out
    kids = trial_runs(workdir)
    assert kids.loc["inplace", "status"] == "FAILED" and kids.loc["ft", "status"] == "FINISHED"
    assert "Method 'inplace' changed request.forget_x in place" in kids.loc["inplace", "tags.bench.error"]


@pytest.mark.parametrize("how", ["data", "numpy", "reassign"])
def test_a_change_torch_does_not_count_fails_the_trial_too(workdir, shared_cache, boom_plugin, run_harness, trial_runs,
                                                          how):
    boom_plugin(InPlace())
    code, out = run_harness(workdir, methods="inplace", attacks="", params={"inplace": {"how": how}},
                            recipe={"epochs": 5}, cache_dir=str(shared_cache))
    assert code == 1, out
    error = trial_runs(workdir).loc["inplace", "tags.bench.error"]
    assert "Method 'inplace' changed the contents of request.forget_x (through .data, a NumPy view" in error, error


class Tamper:
    """An attack that changes the unlearned model in place (the attacks after it would measure
    another model)."""

    name = "tamper"
    description = "test attack that changes the model"
    needs: frozenset = frozenset()

    def __init__(self, via: str = "add_") -> None:
        self.via = via

    def evaluate(self, model, ctx):
        weight = next(model.parameters())
        self.before = weight.detach().clone()
        if self.via == "data":  # torch does not count it: the model's digest tells it
            weight.data.add_(1.0)
        elif self.via == "numpy":  # nor this, on the data the next attacks score: the data's digest tells it
            ctx.test_x.numpy()[0] += 1.0
        elif self.via == "labels":  # every test label to 0
            ctx.test_y.numpy()[:] = 0
        else:
            with torch.no_grad():
                weight.add_(1.0)
        return {"score": 0.5}


class _TamperPlugin:
    def __init__(self, via: str) -> None:
        self.attack = Tamper(via)

    @bench.hookimpl
    def register_attacks(self, register):
        register(self.attack)


@pytest.mark.parametrize("via", ["add_", "data", "numpy"])
def test_an_attack_that_changes_the_model_or_data_loses_its_numbers_and_the_next_attacks_do_not_run(
        workdir, shared_cache, run_harness, trial_runs, via, plugged):
    plugin = _TamperPlugin(via)
    with plugged(plugin):
        code, out = run_harness(workdir, methods="ft", attacks="tamper,loss", recipe={"epochs": 5},
                                cache_dir=str(shared_cache), save_models=True)
    assert code == 1, out
    kids = trial_runs(workdir)
    run = kids.loc["ft"]
    # the method's numbers were measured before the attacks: kept; tamper's and loss's are not there
    assert run["status"] == "FINISHED" and run["metrics.forget_acc"] == run["metrics.forget_acc"]
    assert not any(c.startswith(("metrics.tamper_", "metrics.loss_")) for c in kids.columns if kids[c].notna().any())
    assert run["tags.bench.attack_errors"] == "tamper,loss"
    what = "ctx.test_x" if via == "numpy" else "the unlearned model's net.1.weight"
    text = mlflow.artifacts.load_text(f"runs:/{run['run_id']}/attack_errors/tamper.txt")
    assert text.startswith(f"Attack 'tamper' changed {what} in place"), text
    later = mlflow.artifacts.load_text(f"runs:/{run['run_id']}/attack_errors/loss.txt")
    assert later.startswith("Attack 'loss' was not run: attack 'tamper' before it changed"), later
    assert "attack 'tamper' has no metrics in 1 trial(s) (ft seed=0)" in out, out
    if via == "add_":  # the saved model is the one measured, not the one the attack changed
        from bench.run.saved_models import load_trial_model

        model = load_trial_model(run["run_id"], f"sqlite:///{workdir / 'mlflow.db'}")
        assert torch.equal(next(model.parameters()), plugin.attack.before)  # not the weights + 1.0 it left


def test_an_attack_that_writes_into_the_test_set_leaves_the_next_trials_data_alone(workdir, shared_cache, run_harness,
                                                                                     trial_runs, plugged):
    """In process the test split is the dataset's own tensors: an attack zeroing ctx.test_y was
    caught in the first trial only, and the next trials were measured on the zeroed labels
    (test_acc 0.100; an auditor's finding). The attacks get a copy."""
    with plugged(_TamperPlugin("labels")):
        code, out = run_harness(workdir, methods="ft", seeds=[0, 1], attacks="tamper", recipe={"epochs": 5},
                                cache_dir=str(shared_cache))
    assert code == 1, out
    kids = trial_runs(workdir).set_index("params.seed")
    assert (kids["tags.bench.attack_errors"] == "tamper").all()  # both trials' attack caught, each on its own copy
    assert (kids["metrics.test_acc"] > 0.8).all(), kids["metrics.test_acc"]  # not the 0.1 of all-zero labels


class Leaky:
    """Leaves a process-wide torch setting changed: the next trials in the worker would fail or
    measure something else (it failed ft's and ga's trials, blamed on them)."""

    name = "leaky"
    description = "test method that changes torch's global settings"
    requires = frozenset({"forget"})
    default_params = {"what": "grad"}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        what = params["what"]
        if what == "grad":
            torch.set_grad_enabled(False)
        elif what == "dtype":
            torch.set_default_dtype(torch.float64)
        elif what == "tf32":  # on a GPU every later float32 matmul would round to TF32
            torch.set_float32_matmul_precision("high")
        elif what == "cudnn":
            torch.backends.cudnn.benchmark = True
        elif what == "device":  # every later trial's new tensors would land there (it failed the next one)
            torch.set_default_device("meta")
        return model


@pytest.mark.parametrize("what,said", [("grad", "grad mode changed (True -> False)"),
                                       ("dtype", "default dtype changed (torch.float32 -> torch.float64)"),
                                       pytest.param("tf32", "float32 matmul precision (TF32) changed (highest -> high)",
                                                    marks=pytest.mark.slow),
                                       pytest.param("cudnn", "cuDNN benchmark flag changed (False -> True)",
                                                    marks=pytest.mark.slow),
                                       pytest.param("device", "default device changed (cpu -> meta)",
                                                    marks=pytest.mark.slow)])
def test_a_method_that_leaves_torch_settings_changed_fails_alone(workdir, shared_cache, boom_plugin, run_harness,
                                                                 trial_runs, what, said):
    boom_plugin(Leaky())
    code, out = run_harness(workdir, methods="leaky,ft,ga", params={"leaky": {"what": what}}, attacks="",
                            recipe={"epochs": 5}, cache_dir=str(shared_cache))
    assert code == 1, out
    kids = trial_runs(workdir)
    assert kids.loc["leaky", "status"] == "FAILED" and f"Method 'leaky' left torch's {said}" in kids.loc["leaky", "tags.bench.error"]
    assert kids.loc["ft", "status"] == "FINISHED" and kids.loc["ga", "status"] == "FINISHED"
    assert torch.is_grad_enabled() and torch.get_default_dtype() == torch.float32
    assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.benchmark
    assert torch.get_default_device() == torch.device("cpu")


class Quits:
    """Ends the process from inside unlearn."""

    name = "quits"
    description = "test method that calls sys.exit"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        import sys

        sys.exit(0)


class QuitsElsewhere(Quits):
    """Ends the process from another hook: prepare, an artifact's render, check_setting."""

    def __init__(self, where: str) -> None:
        self.where = where

    def prepare(self):
        if self.where == "prepare":
            import sys

            sys.exit(0)

    def check_setting(self, params, setting):
        if self.where == "check_setting":
            import sys

            sys.exit()

    def unlearn(self, model, request, params, ctx):
        ctx.artifacts["plot.txt"] = QuittingDrawing()
        return model


class QuittingDrawing:
    def render(self):
        import sys

        sys.exit(0)


def test_a_method_that_calls_sys_exit_fails_alone(workdir, shared_cache, boom_plugin, run_harness, trial_runs):
    """In process, sys.exit(0) ended the whole run with exit status 0 and the other trials unrun."""
    boom_plugin(Quits())
    code, out = run_harness(workdir, methods="quits,ft", attacks="", recipe={"epochs": 5}, cache_dir=str(shared_cache))
    assert code == 1, out
    kids = trial_runs(workdir)
    assert kids.loc["quits", "status"] == "FAILED" and kids.loc["ft", "status"] == "FINISHED"
    assert "Method 'quits' (unlearn) called sys.exit(0)" in kids.loc["quits", "tags.bench.error"]
    text = mlflow.artifacts.load_text(f"runs:/{kids.loc['quits', 'run_id']}/error.txt")
    assert "sys.exit(0)" in text and "in unlearn" in text  # the plugin's own frame is in the traceback


@pytest.mark.slow
@pytest.mark.parametrize("where", ["prepare", "render", "check_setting"])
def test_sys_exit_in_another_hook_fails_only_what_it_did(workdir, shared_cache, boom_plugin, run_harness, trial_runs,
                                                         where):
    """sys.exit() in prepare or in an artifact's render ended a local run with exit 0, the other
    trials unrun; in check_setting it ended bench run at plan time with exit 0 and no word (found
    in review)."""
    boom_plugin(QuitsElsewhere(where))
    if where == "check_setting":  # run() raises what the command line prints as one line, exit 2
        with pytest.raises(BenchError, match=r"^Method 'quits': its check_setting failed with SystemExit at "):
            run_harness(workdir, methods="quits,ft", attacks="", recipe={"epochs": 5}, cache_dir=str(shared_cache))
        return
    code, out = run_harness(workdir, methods="quits,ft", attacks="", recipe={"epochs": 5}, cache_dir=str(shared_cache))
    kids = trial_runs(workdir)
    assert kids.loc["ft", "status"] == "FINISHED", out
    if where == "prepare":
        assert code == 1 and kids.loc["quits", "status"] == "FAILED"
        assert "Method 'quits' (prepare) called sys.exit(0)" in kids.loc["quits", "tags.bench.error"]
    else:  # the drawing alone is lost, recorded beside the trial's files
        text = mlflow.artifacts.load_text(f"runs:/{kids.loc['quits', 'run_id']}/plot.txt.error.txt")
        assert "QuittingDrawing.render() called sys.exit(0)" in text, text


@pytest.mark.slow  # runs the harness (or many LPs): full suite only, the quick loop stays under 2 min
def test_trial_timeout_stops_a_stuck_trial_and_the_others_run(workdir, shared_cache, boom_plugin, run_harness,
                                                              trial_runs, spins):
    import time

    boom_plugin(spins, Spy())
    t0 = time.perf_counter()
    code, out = run_harness(workdir, methods="spins,spy", attacks="", recipe={"epochs": 5}, cache_dir=str(shared_cache),
                            trial_timeout=8)
    assert code == 1, out
    assert time.perf_counter() - t0 < 60
    kids = trial_runs(workdir)
    assert kids.loc["spins", "status"] == "FAILED" and kids.loc["spy", "status"] == "FINISHED"
    assert "Trial spins seed=0 ran longer than --trial-timeout 8 s in method 'spins' and was stopped" in \
        kids.loc["spins", "tags.bench.error"]
    text = mlflow.artifacts.load_text(f"runs:/{kids.loc['spins', 'run_id']}/error.txt")
    assert "TrialTimeout" in text and "in unlearn" in text  # where it was stopped
    assert torch.is_grad_enabled()


class Hangs:
    """An attack that never returns (it sleeps 5 ms a turn, swallowing errors as a careless plugin would)."""

    name, description, needs = "hangs", "test attack that never returns", frozenset()

    def evaluate(self, model, ctx):
        import time

        while True:
            try:
                time.sleep(0.005)
            except Exception:  # noqa: BLE001
                pass


@pytest.mark.slow  # runs the harness (an 8 s timeout): full suite only
def test_an_attack_past_the_trial_timeout_loses_its_numbers_and_the_method_keeps_its_own(
        workdir, shared_cache, run_harness, trial_runs, plugged):
    """A hanging attack failed its whole trial under --trial-timeout: the method's numbers, measured
    before it, were lost (noted in session 30). Now the attack and those after it lose theirs."""
    plugin = _TamperPlugin("add_")
    plugin.attack = Hangs()  # registered as "hangs"
    with plugged(plugin):
        code, out = run_harness(workdir, methods="ft", attacks="loss,hangs,entropy", recipe={"epochs": 5},
                                cache_dir=str(shared_cache), trial_timeout=8)
    assert code == 1, out
    run = trial_runs(workdir).loc["ft"]
    assert run["status"] == "FINISHED" and 0 <= run["metrics.forget_acc"] <= 1 and run["metrics.loss_auc"] >= 0
    assert run["tags.bench.attack_errors"] == "hangs,entropy" and run["metrics.unlearn_seconds"] < 8
    text = mlflow.artifacts.load_text(f"runs:/{run['run_id']}/attack_errors/hangs.txt")
    assert text.startswith("Attack 'hangs' ran past --trial-timeout 8 s and was stopped; the trial keeps the method's "
                           "numbers") and "TrialTimeout" in text and "in evaluate" in text, text
    later = mlflow.artifacts.load_text(f"runs:/{run['run_id']}/attack_errors/entropy.txt")
    assert later == "Attack 'entropy' was not run: the trial's --trial-timeout had passed (in attack 'hangs')."
    assert "attack 'hangs' has no metrics in 1 trial(s) (ft seed=0): Attack 'hangs' ran past" in out, out


def test_a_part_stopped_by_the_timeout_can_let_the_trial_finish_without_the_watchdog():
    """What the attacks use (bench.run.attack_step): catch the TrialTimeout, ``disarm``, go on; the
    watchdog fires no more (it fires each second while a trial runs) and none is left running."""
    import time

    from bench.run.deadline import TrialTimeout, disarm, run_with_deadline

    assert disarm() is None  # no deadline on this thread: nothing to disarm, the caller re-raises

    def trial() -> str:
        try:
            while True:
                time.sleep(0.005)
        except TrialTimeout:
            assert disarm() == 0.2 and disarm() is None
        _busy(1.1)  # Python instructions past the watchdog's next turn (each second): nothing surfaces
        return "kept"

    assert run_with_deadline(0.2, "Trial t", trial) == "kept"
    assert not [t for t in threading.enumerate() if t.name == "bench-trial-deadline"]


def test_a_timeout_inside_a_guarded_import_leaves_no_half_imported_module(tmp_path, monkeypatch):
    """A trial timed out while torch._dynamo was being imported (its first optimizer step): the
    timeout, an Exception then, was swallowed by a guarded import inside it, and the next trial in
    the worker failed with "partially initialized module 'torch._dynamo'"."""
    import sys
    import time

    from bench.core.errors import BenchError
    from bench.run.deadline import run_with_deadline

    # short sleeps: the timeout surfaces between Python instructions, not inside one long C call
    (tmp_path / "bench_slow_import.py").write_text(
        "import time\ntry:\n    for _ in range(200):\n        time.sleep(0.01)\nexcept Exception:  # a library's guarded "
        "step\n    pass\nVALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def trial() -> None:
        import bench_slow_import  # noqa: F401
        for _ in range(500):  # where a swallowed timeout's re-raise, a second later, would land
            time.sleep(0.01)

    with pytest.raises(BenchError, match="ran longer than --trial-timeout 0.2 s"):
        run_with_deadline(0.2, "Trial t", trial)
    assert "bench_slow_import" not in sys.modules  # not left behind, complete or half
    monkeypatch.delitem(sys.modules, "bench_slow_import", raising=False)


@pytest.mark.slow  # a run of the harness or a process: the quick loop stays under 2 min
def test_a_timeout_inside_a_package_import_drops_the_submodules_it_had_loaded(tmp_path, monkeypatch):
    """The package's import was cut after it had loaded a submodule: the import system dropped the
    package, the submodule stayed in sys.modules, and the package's next import never bound it
    ("partially initialized module 'torch._dynamo' has no attribute 'decorators'" in every later
    trial of a local run; found in review)."""
    import sys
    import time

    from bench.core.errors import BenchError
    from bench.run.deadline import run_with_deadline

    pkg = tmp_path / "bench_slow_pkg"
    pkg.mkdir()
    (pkg / "part.py").write_text("VALUE = 1\n")
    (pkg / "__init__.py").write_text("import time\nfrom . import part\nfor _ in range(200):\n    time.sleep(0.01)\n"
                                     "READY = part.VALUE\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def trial() -> None:
        import bench_slow_pkg  # noqa: F401

    with pytest.raises(BenchError, match=r"It stopped an import: bench_slow_pkg will be imported again"):
        run_with_deadline(0.2, "Trial t", trial)
    assert not [m for m in sys.modules if m.startswith("bench_slow_pkg")]
    import bench_slow_pkg  # the next trial: whole, its submodule bound

    assert bench_slow_pkg.part.VALUE == 1 and bench_slow_pkg.READY == 1
    for name in ("bench_slow_pkg", "bench_slow_pkg.part"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def _busy(seconds: float) -> None:
    """Run Python instructions for ``seconds``: where a stray TrialTimeout would surface."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1_000))


@pytest.mark.parametrize("blocked", ["sleep", "lock"])
def test_trial_timeout_stops_a_trial_blocked_in_a_system_call(blocked):
    """A trial sleeping 120 s under --trial-timeout 8 was stopped only when the sleep returned, after
    134 s, "ran longer than 8 s" (found in review, 2026-12-07): the exception waits for the next
    Python instruction. In the main thread a signal now wakes the blocked call; its handler is put
    back after. (In a process of its own: pytest-timeout holds SIGALRM here, and bench leaves a
    handler it finds alone.)"""
    import subprocess
    import sys

    code = ("import signal, threading, time\n"
            "from bench.core.errors import BenchError\nfrom bench.run.deadline import run_with_deadline\n"
            "held = threading.Lock()\nheld.acquire()\n"
            f"body = {{'sleep': lambda: time.sleep(60), 'lock': held.acquire}}[{blocked!r}]\n"
            "start = time.monotonic()\n"
            "try:\n    run_with_deadline(0.3, 'x', body)\nexcept BenchError as exc:\n    print(exc)\n"
            "print(round(time.monotonic() - start), signal.getsignal(signal.SIGALRM) == signal.SIG_DFL)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("x ran longer than --trial-timeout 0.3 s and was stopped"), done.stdout + done.stderr
    seconds, restored = lines[1].split()
    assert int(seconds) < 5 and restored == "True", lines  # (60 s before: the call's own end)


@pytest.mark.slow  # a run of the harness or a process: the quick loop stays under 2 min
def test_trial_timeout_leaves_a_trial_that_ends_in_time_alone():
    import time

    from bench.core.errors import BenchError
    from bench.run.deadline import run_with_deadline

    stopped = 0
    for _ in range(50):  # ending right at the deadline (stopped or not) leaves no exception behind it
        try:
            run_with_deadline(0.01, "x", time.sleep, 0.01)
        except BenchError:
            stopped += 1
        sum(range(10_000))  # Python instructions after the call: a stray TrialTimeout would surface here
    time.sleep(1.2)  # the watchdog fires again each second while a trial runs: nothing is pending here
    sum(range(10_000))

    def spins() -> None:
        while True:
            pass

    with pytest.raises(BenchError, match="ran longer than --trial-timeout 0.2 s"):
        run_with_deadline(0.2, "Trial t", spins)
    assert not [t for t in threading.enumerate() if t.name == "bench-trial-deadline"]


def test_a_timeout_names_the_part_of_the_trial_that_ran_past_it():
    """A hanging attack failed its trial with a line that named the trial only (plugins audit)."""
    from bench.run.deadline import phase, run_with_deadline

    def attack_hangs() -> None:
        with phase("method 'ft'"):
            pass
        with phase("attack 'slow'"):
            while True:
                pass

    with pytest.raises(BenchError, match=r"^Trial t ran longer than --trial-timeout 0\.2 s in attack 'slow' and was "
                                         r"stopped"):
        run_with_deadline(0.2, "Trial t", attack_hangs)
    with pytest.raises(BenchError, match=r"^Trial t ran longer than --trial-timeout 0\.2 s and was stopped"):
        run_with_deadline(0.2, "Trial t", lambda: any(False for _ in iter(int, 1)))  # outside any part: none named


def test_a_trial_whose_clean_up_was_cut_short_leaves_no_watchdog_firing(monkeypatch):
    """A timeout that surfaced in the clean-up after a trial (the trial ending just as its time ran
    out; here the watchdog's stop fails once instead) skipped stopping the watchdog, which then
    raised TrialTimeout into whatever the worker did next, every second, for good: the next trials,
    MLflow's writes, pytest's own report of a failure (a crashed xdist worker on a loaded machine).
    The watchdog fires only while the trial's frame runs."""
    import types

    import bench.run.deadline as deadline

    class CutEvent(threading.Event):
        cut = 0

        def set(self) -> None:
            if CutEvent.cut == 0:  # the first stop: the clean-up cut short
                CutEvent.cut += 1
                raise RuntimeError("clean-up cut short")
            super().set()

    monkeypatch.setattr(deadline, "threading", types.SimpleNamespace(
        Event=CutEvent, Thread=threading.Thread, get_ident=threading.get_ident, current_thread=threading.current_thread,
        main_thread=threading.main_thread))
    with pytest.raises(RuntimeError, match="cut short"):
        deadline.run_with_deadline(0.2, "Trial t", sum, range(10))
    _busy(0.8)  # past the watchdog's time (0.2 s), when it fired into whatever ran next: none may land here
    assert not [t for t in threading.enumerate() if t.name == "bench-trial-deadline"]


class BadData:
    """A dataset plugin whose load raises (arg "exit": calls sys.exit)."""

    name = "baddata"
    description = "test dataset that fails to load"
    default_recipe: dict = {}

    def load(self, data_dir, download, arg):
        if arg == "exit":
            import sys

            sys.exit(0)
        raise ValueError("column 'label' missing")


class _BadDataPlugin:
    @bench.hookimpl
    def register_datasets(self, register):
        register(BadData())


@pytest.mark.parametrize("spec,said", [
    ("baddata", "Dataset 'baddata' failed to load: ValueError: column 'label' missing. Check the spec's options"),
    ("baddata:exit", "Dataset plugin 'baddata' (load) called sys.exit(0)")])
def test_a_dataset_plugin_that_fails_to_load_is_one_line_before_any_work(workdir, run_harness, spec, said):
    """A plugin's exception reached the terminal as a raw traceback, and sys.exit ended bench with 0."""
    from bench.core.errors import BenchError
    from bench.core.plugins import register_plugin, unregister_plugin

    plugin = _BadDataPlugin()
    register_plugin(plugin)
    try:
        with pytest.raises(BenchError) as err:
            run_harness(workdir, methods="ft", datasets=[spec], attacks="")
    finally:
        unregister_plugin(plugin)
    assert said in str(err.value)
    assert not (workdir / "mlflow.db").exists()  # refused before anything was recorded


def test_content_digest_tells_any_changed_swapped_or_resized_element():
    from bench.nn.training import _DIGEST_CHUNK, content_digest

    for x in (torch.rand(7, 5), torch.rand(3, dtype=torch.float64), torch.arange(12, dtype=torch.uint8),
              torch.tensor([True, False, True]), torch.randn(4, dtype=torch.complex64), torch.arange(6).reshape(2, 3).t()):
        d = content_digest(x)
        assert content_digest(x.clone()) == d
        flat = x.clone().reshape(-1)
        y = flat.clone()
        y[0], y[1] = flat[1], flat[0]  # a swap keeps the plain sum: the weighted one tells it
        if not torch.equal(y, flat):
            assert content_digest(y.reshape(x.shape)) != d
        z = flat.clone()
        z[-1] = ~z[-1] if z.dtype == torch.bool else z[-1] + 1
        assert content_digest(z.reshape(x.shape)) != d
        assert content_digest(flat) != d or x.dim() == 1  # the shape is part of it
    big = torch.zeros(_DIGEST_CHUNK + 5)  # past one chunk: positions keep counting across chunks
    a, b = big.clone(), big.clone()
    a[3], b[_DIGEST_CHUNK + 3] = 1.0, 1.0
    assert content_digest(a) != content_digest(b)


class _IndexAttacks:
    """Two attacks: the first writes to ctx.forget_indices, the second records what it sees."""

    seen: list = []

    class Writes:
        name, description, needs = "writes-indices", "test attack that writes to ctx.forget_indices", frozenset()

        def evaluate(self, model, ctx):
            ctx.forget_indices += 1
            return {"score": 0.5}

    class Reads:
        name, description, needs = "reads-indices", "test attack that records ctx.forget_indices", frozenset()

        def evaluate(self, model, ctx):
            _IndexAttacks.seen.append(ctx.forget_indices.copy())
            return {"score": 0.5}

    @bench.hookimpl
    def register_attacks(self, register):
        register(self.Writes())
        register(self.Reads())


@pytest.mark.slow
def test_each_attack_gets_its_own_forget_indices(workdir, shared_cache, run_harness, trial_runs, plugged):
    _IndexAttacks.seen.clear()
    with plugged(_IndexAttacks()):
        code, out = run_harness(workdir, methods="ft", attacks="writes-indices,reads-indices", recipe={"epochs": 5},
                                cache_dir=str(shared_cache))
    assert code == 0, out
    text = mlflow.artifacts.load_text(f"runs:/{trial_runs(workdir).loc['ft', 'run_id']}/forget_indices.txt")
    indices = [int(line) for line in text.splitlines() if line and not line.startswith("#")]
    assert _IndexAttacks.seen[0].tolist() == indices  # not shifted by the attack before it


class Odd:
    """An attack that reports what the harness must refuse (``how``)."""

    def __init__(self, name: str, how: str) -> None:
        self.name, self.how = name, how
        self.description = "test attack with a faulty report"

    def evaluate(self, model, ctx):
        if self.how == "raise":
            raise ValueError("no threshold")
        if self.how == "leak":
            torch.set_grad_enabled(False)
            return {"auc": 0.5}
        if self.how == "art":  # a name of the trial's own files: it replaced the --save-models model
            ctx.artifacts["model.safetensors"] = "my attack report"
            return {"auc": 0.5}
        if self.how == "twice":
            self.unprefixed = ("odd_auc",)
            return {"auc": 0.5, "odd_auc": 0.4}
        return {"list": [0.5], "nan": {"auc": float("nan")}, "text": {"auc": "high"}, "name": {"bad key!": 0.5},
                "shadowing": {"acc": 0.123}, "empty": {}}[self.how]


class _OddPlugin:
    def __init__(self, attack) -> None:
        self.attack = attack

    @bench.hookimpl
    def register_attacks(self, register):
        register(self.attack)


@pytest.mark.slow
@pytest.mark.parametrize("name,how,said", [
    ("retain", "shadowing", "Attack 'retain' reported metric 'acc', which makes 'retain_acc', a metric bench itself "
                            "measures"),
    ("odd", "name", "Attack 'odd' reported metric 'bad key!': a metric name is up to 250"),
    ("odd", "nan", "Attack 'odd' reported metric 'auc' = nan; its values must be finite"),
    ("odd", "text", "Attack 'odd' reported metric 'auc' = 'high', a str, not a float; return float(value)"),
    ("odd", "list", "Attack 'odd' returned list; evaluate() returns a dict"),
    # no attack table, no word, exit 0 (found in review)
    ("odd", "empty", "Attack 'odd' returned no metrics (an empty dict); evaluate() returns at least one"),
    ("odd", "raise", "Attack 'odd' failed: ValueError: no threshold"),
    ("odd", "twice", "Attack 'odd' reported metrics 'auc' and 'odd_auc', which both make 'odd_auc'; rename one"),
    ("odd", "leak", "Attack 'odd' left torch's"),
    ("odd", "art", "Attack 'odd' reported artifact 'model.safetensors', a name of the trial's own files; rename it"),
])
def test_an_attacks_faulty_report_loses_its_own_numbers_only_naming_it(workdir, shared_cache, run_harness, trial_runs,
                                                                       name, how, said, plugged):
    """An attack named `retain` reporting `acc` replaced the harness's retain_acc (0.123 recorded,
    exit 0); a NaN was recorded as a result; a name MLflow refuses failed every trial's write and
    blamed the store; a raise or a list was reported without the attack's name. Then a faulty attack
    failed its whole trial, and the method's numbers went with it (one bad attack plugin emptied a
    run's table): now it loses its own numbers, the others are kept, and the run exits 1."""
    with plugged(_OddPlugin(Odd(name, how))):
        code, out = run_harness(workdir, methods="ft", attacks=f"loss,{name}", recipe={"epochs": 5},
                                cache_dir=str(shared_cache))
    assert code == 1, out
    kids = trial_runs(workdir)
    run = kids.loc["ft"]
    assert run["status"] == "FINISHED" and run["tags.bench.attack_errors"] == name
    assert 0 <= run["metrics.forget_acc"] <= 1 and 0 <= run["metrics.loss_auc"] <= 1  # the method's and loss's kept
    mine = [c for c in kids.columns if c.startswith(f"metrics.{name}_") and kids[c].notna().any()
            and name != "retain"]  # retain_*: the harness's own
    assert mine == [] and run["metrics.retain_acc"] != 0.123, mine
    text = mlflow.artifacts.load_text(f"runs:/{run['run_id']}/attack_errors/{name}.txt")
    assert text.startswith(said) and "Traceback" in text, text
    assert f"attack '{name}' has no metrics in 1 trial(s) (ft seed=0): {said}" in out, out
    assert f"(attack(s) {name} failed: no metrics of theirs)" in out, out
    parent = kids["tags.mlflow.parentRunId"].iloc[0]
    warnings = mlflow.MlflowClient().get_run(parent).data.tags["bench.warnings"]
    assert f"attack '{name}' has no metrics" in warnings  # bench compare says it again


def test_a_plugin_metric_is_checked_before_it_joins_the_trial():
    from bench.core.errors import BenchError
    from bench.run.attack_step import add_metric

    metrics = {"retain_acc": 1.0}
    add_metric("Method 'm'", "patches", 3, metrics, finite=False)
    add_metric("Method 'm'", "sisa/shard 1:time", 2, metrics, finite=False)  # '/', ' ' and ':' are MLflow's too
    add_metric("Method 'm'", "loss", float("nan"), metrics, finite=False)  # a method's NaN is its own report
    assert metrics["patches"] == 3.0 and metrics["loss"] != metrics["loss"]
    for key, value, finite in (("retain_acc", 0.1, False), ("a b!", 1, False), ("/x", 1, False), ("score/", 1, False),
                               ("a/./b", 1, False), ("..", 1, False), (".", 1, False), ("a//b", 1, False), (3, 1, False),
                               ("x" * 251, 1, False), ("ok", "one", False), ("ok", float("inf"), True),
                               ("ok", float("-inf"), False)):  # a method's inf: MLflow stored -1.8e308 (outputs audit)
        with pytest.raises(BenchError):
            add_metric("Method 'm'", key, value, metrics, finite=finite)
    assert set(metrics) == {"retain_acc", "patches", "sisa/shard 1:time", "loss"}
    # an attack's value is a real number as the kit requires: a bool or a tensor was logged (1.0, 0.25)
    import torch

    for value, kind in ((True, "bool"), (torch.tensor(0.25), "Tensor")):
        with pytest.raises(BenchError, match=rf"Attack 'a' reported metric 'v' = .*, a {kind}, not a float; return float"):
            add_metric("Attack 'a'", "a_v", value, metrics, finite=True, shown="v")
    add_metric("Attack 'a'", "a_np", __import__("numpy").float32(0.5), metrics, finite=True)  # NumPy's are real numbers
    with pytest.raises(BenchError, match=r"reported metric 'retain_acc', a metric bench itself measures in this trial; "
                                         r"rename it"):
        add_metric("Method 'm'", "retain_acc", 0.1, metrics, finite=False)
    # a method's ctx.metrics["loss_auc"] then the loss attack's auc: the attack alone was told to
    # rename it, the method not named (found in review)
    with pytest.raises(BenchError, match=r"^Attack 'loss' reported metric 'auc', which makes 'patches', which method "
                                         r"'m' already reported in this trial; one of the two plugins must rename it"):
        add_metric("Attack 'loss'", "patches", 0.5, metrics, finite=True, shown="auc", owners={"patches": "method 'm'"})


from bench.core.errors import BenchError  # noqa: E402


def test_a_returned_model_ending_in_a_softmax_is_refused():
    """A method whose model gained a final softmax scored its divergences and attacks on
    softmax(probabilities), the accuracies right, exit 0; model plugins were refused so, methods not
    (found in review)."""
    from bench.eval.evaluation import EvalData, evaluate_model
    from bench.run.trial import checked_eval

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 10))
    x, y = torch.randn(300, 64), torch.arange(300) % 10
    data = EvalData(x[:100], y[:100], x[100:150], y[100:150], x[150:], y[150:])
    checked_eval("m", evaluate_model(net, data), 10, "")  # logits
    with pytest.raises(BenchError, match=r"Method 'm' returned a model whose outputs are probabilities \(rows of "
                                         r"values in \[0, 1\] summing to 1\) on request 2; .*return the logits"):
        checked_eval("m", evaluate_model(torch.nn.Sequential(net, torch.nn.Softmax(dim=1)), data), 10, " on request 2")


def test_a_returned_model_random_in_eval_mode_is_refused():
    """A method whose returned model applied F.dropout in a forward hook (active in eval mode) scored
    test_acc 0.797 against 0.960, exit 0; a model plugin with the same fault is refused at plan
    time (found in review, 2026-12-07). A model that draws no random number leaves the global
    generator as it was."""
    from bench.run.trial import refuse_eval_flaws

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 10), torch.nn.Dropout(0.5))  # nn.Dropout: off in eval mode
    x = torch.randn(20, 64)
    state = torch.random.get_rng_state()
    refuse_eval_flaws("m", net, x)
    assert torch.equal(torch.random.get_rng_state(), state) and net.training  # generator and mode put back
    net.register_forward_pre_hook(lambda module, args: (torch.nn.functional.dropout(args[0], 0.5),))
    with pytest.raises(BenchError, match=r"^Method 'm' returned a model that gives other logits for the same inputs in "
                                         r"eval mode: randomness at evaluation .* on request 2\.$"):
        refuse_eval_flaws("m", net, x, " on request 2")
    refuse_eval_flaws("m", net, x[:1])  # one row: nothing to compare against (never refused)


def test_a_returned_model_whose_rows_depend_on_their_batch_is_refused():
    """A returned model that normalises with its batch's statistics at evaluation gives numbers that
    depend on the evaluation's batch size (bench measures in batches); the plan refused such a model
    plugin and the conformance kit such a method, a trial did not. BatchNorm in eval mode (running
    statistics) passes."""
    from bench.run.trial import refuse_eval_flaws

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32), torch.nn.Linear(32, 10))
    net.train()(torch.randn(50, 64))  # running statistics of its own
    x = torch.randn(20, 64)
    refuse_eval_flaws("m", net, x)
    net[1].register_forward_pre_hook(lambda module, args: ((args[0] - args[0].mean(0)) / (args[0].std(0, correction=0) + 1e-5),))
    with pytest.raises(BenchError, match=r"^Method 'm' returned a model whose outputs depend on their batch: in eval "
                                         r"mode a row's logits depend on the other rows of its batch .*after eval\(\)\.$"):
        refuse_eval_flaws("m", net, x)


def test_an_attack_rate_outside_zero_one_is_refused():
    """An attack reporting an AUC of 1.7 or a TPR of -0.3 had it shown and stored as measured (found in
    review): names bench reads as rates must lie in [0, 1]; other names are free."""
    from bench.run.attack_step import add_metric

    metrics: dict = {}
    for key, value in (("x_auc", 1.0), ("x_tpr_at_1fpr", 0.0), ("mia_efficacy", 0.5), ("x_epsilon_score", 7.5)):
        add_metric("Attack 'x'", key, value, metrics, finite=True)
    for key, value in (("y_auc", 1.7), ("y_tpr_at_0.1fpr", -0.3), ("y_balanced_acc", 2.0)):
        with pytest.raises(BenchError, match=rf"reported metric '{key}' = {value:g}; a name ending in _auc.* in \[0, 1\]"):
            add_metric("Attack 'y'", key, value, metrics, finite=True)


def test_a_test_split_of_training_copies_is_refused():
    """A dataset whose test split copied training points passed, exit 0: test accuracy and every
    attack's non-members were training points (found in review). A few duplicates (real datasets
    hold some) pass."""
    from types import SimpleNamespace

    from bench.run.checks import check_splits, test_copies

    g = torch.Generator().manual_seed(0)
    train_x, train_y = torch.rand(200, 8, generator=g), torch.arange(200) % 2
    test_x, test_y = torch.rand(50, 8, generator=g), torch.arange(50) % 2
    assert test_copies(train_x, test_x) == 0
    splits = lambda tx: SimpleNamespace(train_x=train_x, train_y=train_y, test_x=tx, test_y=test_y,  # noqa: E731
                                        num_classes=2, input_shape=(8,), info={})
    few = test_x.clone()
    few[:3] = train_x[10:13]
    assert test_copies(train_x, few) == 3
    check_splits("few", splits(few))
    with pytest.raises(BenchError, match=r"Dataset 'copied': 50 of 50 test rows are exact copies of training rows"):
        check_splits("copied", splits(train_x[100:150].clone()))


class TrimsShadows:
    """Keeps 2 of the shared shadow models by reassigning the set's fields (a plugin's shortcut)."""

    name = "trims"
    description = "test attack that trims ctx.shadows"
    needs = ("shadows",)

    def evaluate(self, model, ctx):
        s = ctx.shadows
        s.states, s.keep, s.seeds = s.states[:2], s.keep[:2], s.seeds[:2]
        return {"models": float(len(s.states))}


@pytest.mark.slow
def test_an_attack_reassigning_the_shadow_set_leaves_the_next_attacks_their_own(workdir, shared_cache, run_harness,
                                                                                trial_runs, plugged):
    """lira after it scored with 2 of 4 shadow models (lira_auc 0.505 instead of 0.529), exit 0, no
    attack error: the set was one object for every attack of the group (found in review)."""
    kw = dict(methods="ft", recipe={"epochs": 5}, shadow_models=4, cache_dir=str(shared_cache))
    (workdir / "alone").mkdir()
    (workdir / "after").mkdir()
    code, out = run_harness(workdir / "alone", attacks="lira", **kw)
    assert code == 0, out
    alone = trial_runs(workdir / "alone")
    with plugged(_OddPlugin(TrimsShadows())):
        code, out = run_harness(workdir / "after", attacks="trims,lira", **kw)
    assert code == 0, out
    after = trial_runs(workdir / "after")
    assert after.loc["ft", "metrics.trims_models"] == 2.0
    for metric in ("metrics.lira_auc", "metrics.lira_tpr_at_0.1fpr"):
        assert after.loc["ft", metric] == alone.loc["ft", metric], metric


class ExitsOnThirdCreate:
    """A model plugin whose create() calls sys.exit(0) from its third call on: the plan's two calls
    pass, the references' training exits."""

    name = "exits-later"
    description = "test model that exits while the references train"
    calls = 0

    def create(self, num_classes, input_shape, arg=None):
        import math
        import sys

        from torch import nn

        ExitsOnThirdCreate.calls += 1
        if ExitsOnThirdCreate.calls > 2:
            sys.exit(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


class _ModelPlugin:
    @bench.hookimpl
    def register_models(self, register):
        register(ExitsOnThirdCreate())


@pytest.mark.slow
def test_sys_exit_while_the_references_train_fails_them_in_one_line(workdir, plugged, run_harness):
    """`bench run --executor local` ended with exit 0 and no word after "training 2 reference
    model(s)" (found in review of the sys.exit fixes)."""
    ExitsOnThirdCreate.calls = 0
    with plugged(_ModelPlugin()):
        code, out = run_harness(workdir, models=["exits-later"], methods="ga", attacks="", recipe={"epochs": 1})
    assert code == 1, out
    assert "FAILED      training" in out and "called sys.exit(0)" in out, out


def test_a_returned_model_of_another_dtype_is_refused_naming_it():
    """A method that returned model.double() failed its trial with torch's "mat1 and mat2 must have
    the same dtype, but got Float and Double" in the evaluation, naming neither (found in review)."""
    from bench.core.contracts import ForgetRequest, MethodContext
    from bench.run.trial import unlearn_checked

    class Doubles:
        def unlearn(self, model, request, params, ctx):
            return model.double()

    x, y = torch.randn(6, 4), torch.arange(6) % 2
    request = ForgetRequest(num_classes=2, kind="random", forget_x=x[:2], forget_y=y[:2], retain_x=x[2:], retain_y=y[2:])
    ctx = MethodContext(0, "cpu", lambda: None)
    with pytest.raises(BenchError, match=r"Method 'd' returned a model with torch\.float64 parameters \('0\.weight'\); "
                                         r"bench evaluates float32 models on float32 data: convert it back"):
        unlearn_checked(Doubles(), "d", torch.nn.Sequential(torch.nn.Linear(4, 2)), request, {}, ctx)
    class Same:
        def unlearn(self, model, request, params, ctx):
            return model

    unlearn_checked(Same(), "s", torch.nn.Sequential(torch.nn.Linear(4, 2)), request, {}, ctx)


@pytest.mark.slow  # a run of the harness or a process: the quick loop stays under 2 min
def test_with_a_trial_timeout_torchs_lazy_import_happens_before_the_clock_starts():
    """A --trial-timeout that cut torch's import of torch._dynamo (an optimiser's first step) short
    broke every later trial of the process (found in review, 2026-12-07): with a timeout, it is
    imported before the trial's clock starts, and an optimiser step then imports nothing more."""
    import subprocess
    import sys

    code = ("import sys, torch\nfrom bench.run.trial import import_lazy_torch\n"
            "print('torch._dynamo' in sys.modules)\nimport_lazy_torch()\nbefore = set(sys.modules)\n"
            "m = torch.nn.Linear(3, 2)\nopt = torch.optim.Adam(m.parameters())\nm(torch.ones(1, 3)).sum().backward()\n"
            "opt.step()\nprint('torch._dynamo' in sys.modules, sorted(set(sys.modules) - before))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split("\n")[:2] == ["False", "True []"], done.stdout + done.stderr


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_run_trial_imports_torchs_lazy_modules_first_only_under_a_timeout(monkeypatch, timeout):
    """run_trial calls the helper above before the deadline's clock, and only with a --trial-timeout
    (the test above checks the helper, not that run_trial calls it)."""
    from types import SimpleNamespace

    from bench.run import trial

    calls: list[str] = []
    monkeypatch.setattr(trial, "import_lazy_torch", lambda: calls.append("import"))
    monkeypatch.setattr(trial, "run_with_deadline", lambda seconds, *a, **k: calls.append(f"clock {seconds}") or {})
    trial.run_trial(SimpleNamespace(trial_name="t"), SimpleNamespace(trial_timeout=timeout))
    assert calls == (["import", "clock 5.0"] if timeout else ["clock None"])
