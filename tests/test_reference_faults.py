"""A reference, or a method's own original, that fails to train (a plugin's bug, CUDA out of memory)
fails only the trials that need it: each is recorded FAILED with the traceback, the other trials
run, the exit code is 1 and no traceback reaches the terminal; nothing is cached for the failed
job, so ``--resume`` trains it again (bench.run.references, bench.run.payload.blocked_trials)."""

from __future__ import annotations

import io

import mlflow
import pytest
import torch
from torch import nn

import bench

PLANTED = "CUDA out of memory. Tried to allocate 2.00 GiB (planted)"


class _TrainBoomNet(nn.Module):
    """Runs in evaluation (so the plan's check of the model passes); raises while training."""

    def __init__(self, d: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, classes)

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            raise RuntimeError(PLANTED)
        return self.fc(x.flatten(1))


class TrainBoomModel:
    name = "trainboom"
    description = "test model that fails to train"

    def create(self, num_classes, input_shape, arg=None):
        return _TrainBoomNet(int(torch.tensor(input_shape).prod()), num_classes)


class _EvalBoomNet(_TrainBoomNet):
    """Fails in evaluation on more rows than the plan's probe gives it, once ``EvalBoomModel.armed``."""

    def forward(self, x):
        large = not self.training and x.shape[0] > 8
        if EvalBoomModel.armed == "raise" and large:
            raise RuntimeError(PLANTED)
        out = self.fc(x.flatten(1))
        return out[:, :5] if EvalBoomModel.armed == "shape" and large else out


class EvalBoomModel:
    name = "evalboom"
    description = "test model whose evaluation fails on large batches"
    armed = ""  # "raise", or "shape": five logits instead of one per class

    def create(self, num_classes, input_shape, arg=None):
        return _EvalBoomNet(int(torch.tensor(input_shape).prod()), num_classes)


class OwnTrainBoom:
    """A method with its own training (as SISA) whose ``train`` fails."""

    name = "owntrain"
    description = "test method whose own training fails"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}
    calls = 0

    def train(self, x, y, params, ctx):
        OwnTrainBoom.calls += 1
        raise RuntimeError(PLANTED)

    def save_trained(self, model):
        return b""

    def load_trained(self, data, params, ctx):
        raise AssertionError("never trained")

    def unlearn(self, model, request, params, ctx):
        raise AssertionError("a trial whose original failed must not run")


class _Plugin:
    @bench.hookimpl
    def register_methods(self, register):
        register(OwnTrainBoom())

    @bench.hookimpl
    def register_models(self, register):
        register(TrainBoomModel())
        register(EvalBoomModel())


@pytest.fixture
def planted():
    from bench.core.plugins import register_plugin, unregister_plugin

    plugin = _Plugin()
    register_plugin(plugin)
    OwnTrainBoom.calls = 0
    try:
        yield
    finally:
        unregister_plugin(plugin)


def _trials(workdir):
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["unlearning-bench"])
    return df[df["tags.bench.role"] == "trial"]


def test_failed_own_original_fails_its_trials_only_and_trains_again_on_resume(workdir, shared_cache, planted, run_harness):
    code, out = run_harness(workdir, methods="owntrain,ft", attacks="", recipe={"epochs": 5}, cache_dir=str(shared_cache))
    assert code == 1, out
    assert "FAILED      training owntrain original digits/mlp seed=0" in out and "1 failed" in out
    assert "[not run] FAILED  owntrain seed=0: RuntimeError: " + PLANTED in out
    assert "1 of them ran out of GPU memory" in out  # the hint for what to change
    kids = _trials(workdir).set_index("tags.bench.method")
    assert kids.loc["owntrain", "status"] == "FAILED" and kids.loc["ft", "status"] == "FINISHED"
    assert PLANTED in kids.loc["owntrain", "tags.bench.error"]
    assert not any(c.startswith("metrics.") and kids.loc["owntrain", c] == kids.loc["owntrain", c]
                   for c in kids.columns)  # no number recorded for the trial that did not run
    text = mlflow.artifacts.load_text(f"runs:/{kids.loc['owntrain', 'run_id']}/error.txt")
    assert "Traceback" in text and "in train" in text and "while training owntrain original digits/mlp" in text
    assert OwnTrainBoom.calls == 1
    # nothing was cached for it: --resume keeps ft's trial and trains the own original again
    code, out = run_harness(workdir, methods="owntrain,ft", attacks="", recipe={"epochs": 5}, cache_dir=str(shared_cache),
                            resume=True)
    assert code == 1 and OwnTrainBoom.calls == 2, out
    assert "running ft" not in out


def test_failed_reference_fails_its_groups_trials_and_the_other_group_runs(workdir, shared_cache, planted, run_harness):
    code, out = run_harness(workdir, methods="ft", models=["mlp", "trainboom"], attacks="", recipe={"epochs": 5},
                            cache_dir=str(shared_cache))
    assert code == 1, out
    assert "FAILED      training original digits/trainboom seed=0" in out
    assert "FAILED      training retrained digits/trainboom seed=0" in out
    kids = _trials(workdir).set_index("tags.bench.model")
    assert kids.loc["trainboom", "status"] == "FAILED" and kids.loc["mlp", "status"] == "FINISHED"
    assert PLANTED in kids.loc["trainboom", "tags.bench.error"]
    assert "retrain" in out  # the healthy group's references are in the summary


@pytest.mark.slow  # two runs of the harness each
@pytest.mark.parametrize("fault", ["raise", "shape"])
def test_references_whose_evaluation_fails_fail_their_groups_trials_only(workdir, planted, run_harness, fault):
    """A model plugin whose eval-mode forward fails on the batches the references are scored on
    (the plan's probe gives it two rows): a raw traceback ended the whole run, exit 1, the other
    model's trials unrun and nothing in MLflow; one giving five logits there had its references'
    accuracies printed as 0.000 and the method blamed (plugins audit, 2026-12-07)."""
    common = dict(methods="ft", models=["mlp", "evalboom"], attacks="", recipe={"epochs": 2})
    EvalBoomModel.armed = ""
    try:
        code, out = run_harness(workdir, **common)  # the references, cached
        assert code == 0, out
        EvalBoomModel.armed = fault
        code, out = run_harness(workdir, **common, experiment="armed")
    finally:
        EvalBoomModel.armed = ""
    assert code == 1, out
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["armed"])
    kids = df[df["tags.bench.role"] == "trial"].set_index("tags.bench.model")
    assert kids.loc["evalboom", "status"] == "FAILED" and kids.loc["mlp", "status"] == "FINISHED"
    assert "Traceback" not in out and "Method 'ft'" not in out
    text = mlflow.artifacts.load_text(f"runs:/{kids.loc['evalboom', 'run_id']}/error.txt")
    if fault == "raise":
        assert PLANTED in kids.loc["evalboom", "tags.bench.error"]
        assert "Traceback" in text and "while evaluating the references of digits/evalboom seed=0" in text
    else:
        assert "The original of digits/evalboom seed=0 gives outputs of shape (N, 5) on the test set; expected " \
               "(N, 10)" in text, text
        # no reference row of accuracies read from five logits (0.000)
        assert not [ln for ln in out.splitlines() if "evalboom" in ln and "(reference)" in ln], out


def test_failure_hint_names_what_to_change():
    from bench.run.checks import failure_hint as oom_hint

    oom = "Traceback ...\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB"
    assert oom_hint(["RuntimeError: boom"], 0.25) == ""
    hint = oom_hint([oom, "RuntimeError: boom", oom], 0.25)
    assert "2 of them ran out of GPU memory with up to 4 trials sharing a GPU (--gpus-per-trial 0.25)" in hint
    assert "--resume and --gpus-per-trial 0.5" in hint
    assert "--gpus-per-trial 1 " in oom_hint([oom], 0.5)
    assert "a GPU each" in oom_hint([oom], 1) and "--gpus-per-trial" not in oom_hint([oom], 1)
    ray_oom = ("ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.\n"
               "Memory on the node (IP: 127.0.0.1) where the task was running was 23.1GB / 24GB (0.96)")
    hint = oom_hint([ray_oom], 0)
    assert "Ray stopped 1 of them because the machine ran low on memory" in hint and "--cpus-per-trial" in hint
    assert "GPU" not in hint
    # a BatchNorm1d model on a one-point forget set: torch's line named neither (found in review)
    bn = "ValueError: Expected more than 1 value per channel when training, got input size torch.Size([1, 16])"
    hint = oom_hint([bn, bn, "RuntimeError: boom"], 0)
    assert "2 of them trained a batch-norm layer on a batch of one row" in hint and "forget at least 2 points" in hint


def test_train_many_local_returns_a_failure_and_goes_on():
    from bench.run import ref_tasks
    from bench.run.references import JobFailure

    class Job:
        recipe = type("R", (), {"epochs": 1})()

        def __init__(self, bad):
            self.bad = bad

        def describe(self):
            return "job"

        def run(self):
            if self.bad:
                raise ValueError("planted")
            return b"ok", 0.5

    out = ref_tasks.train_many_local([Job(True), Job(False)])
    assert isinstance(out[0], JobFailure) and "ValueError: planted" in out[0].error and "Traceback" in out[0].error
    assert out[1] == (b"ok", 0.5)


def test_ensure_references_without_a_failure_list_raises(tmp_path):
    from bench.core.cache import ReferenceCache
    from bench.run.references import JobFailure, ReferenceFailed, ensure_references

    class Job:
        key, doc = "k" * 64, {"kind": "original", "dataset": "d", "model": "m", "seed": 0}

        def describe(self):
            return "original d/m seed=0"

    with pytest.raises(ReferenceFailed, match="training original d/m seed=0 failed"):
        ensure_references([Job()], ReferenceCache(tmp_path), lambda jobs, done=None: [JobFailure("E: x")], lambda *a, **k: None, {})
    failed: dict = {}
    refs, trained = ensure_references([Job()], ReferenceCache(tmp_path), lambda jobs, done=None: [JobFailure("E: x")],
                                      lambda *a, **k: None, {}, failed)
    assert refs == {} and trained == 0 and "E: x" in failed[Job.key]
    assert ReferenceCache(tmp_path).check(Job.key)[0] is None  # not cached


def test_a_reference_is_cached_as_soon_as_it_is_trained(tmp_path):
    """An interrupt while the second reference trains keeps the first (every reference of the batch
    was cached only once all had ended: a Ctrl-C lost them all, and --resume trained them again)."""
    from bench.core.cache import ReferenceCache
    from bench.run import ref_tasks
    from bench.run.references import ensure_references

    class Job:
        recipe = type("R", (), {"epochs": 1})()

        def __init__(self, i):
            from bench.core.cache import cache_key

            self.doc = {"kind": "original", "dataset": "d", "model": "m", "seed": i}
            self.key = cache_key(self.doc)

        def describe(self):
            return f"original d/m seed={self.doc['seed']}"

        def run(self):
            if self.doc["seed"] == 2:
                raise KeyboardInterrupt  # Ctrl-C while this one trains
            from safetensors.torch import save

            return save({"w": torch.zeros(2)}), 0.5

    cache = ReferenceCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        ensure_references([Job(1), Job(2)], cache, ref_tasks.train_many_local, lambda *a, **k: None, {})
    assert cache.check(Job(1).key)[0] is not None and cache.check(Job(2).key)[0] is None


@pytest.mark.slow
def test_tune_with_a_failed_reference_runs_no_sample(workdir, planted, capsys):
    pytest.importorskip("ray")
    from rich.console import Console

    from bench.core.options import RunOptions
    from bench.run.tuning import tune_method

    opts = RunOptions(models=["trainboom"], attacks="", recipe={"epochs": 5}, cache_dir=str(workdir / "cache"),
                      tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    out = io.StringIO()
    code = tune_method(opts, "ft", "avg_gap", 2, "fifo", 0, str(workdir / "best.json"), Console(file=out, width=250))
    assert code == 1, out.getvalue()
    assert "no sample can run: RuntimeError: " + PLANTED in out.getvalue()
    assert not (workdir / "best.json").exists()


def test_diverged_reference_training_fails_the_trials_and_caches_nothing(workdir, run_harness, trial_runs):
    """A recipe that makes training diverge (NaN weights) would give every trial NaN references
    to start from and compare with, and blame the method for the NaN: the references fail instead."""
    code, out = run_harness(workdir, methods="ft", attacks="", recipe={"epochs": 2, "lr": 1e6})
    assert code == 1, out
    assert "FAILED      training original digits/mlp seed=0" in out
    assert "diverged in training (non-finite values in" in out and "at lr=1e+06" in out
    kids = trial_runs(workdir)
    assert kids.loc["ft", "status"] == "FAILED" and "diverged in training" in kids.loc["ft", "tags.bench.error"]
    assert "Method 'ft' returned" not in out  # not blamed on the method
    assert not list((workdir / "cache").rglob("*.safetensors"))


def test_a_cached_reference_with_nan_outputs_is_not_used(workdir, shared_cache, run_harness, trial_runs):
    """An entry cached with NaN weights (by a version before the check, say) is intact for the
    cache's digest, but its outputs are refused before any trial starts from it."""
    from bench.core.cache import ReferenceCache, state_to_bytes
    from bench.core.options import RunOptions
    from bench.core.plugins import get_registry, plugin_versions
    from bench.nn.nets import MLP
    from bench.run.plan import make_plan

    opts = RunOptions(methods="ft", attacks="", recipe={"epochs": 2}, cache_dir=str(workdir / "cache"),
                      tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", executor="local")
    g = make_plan(get_registry(), opts, {}, plugin_versions()).groups[0]
    net = MLP(64, (256, 256), 10)
    with torch.no_grad():
        net.net[-1].bias.fill_(float("nan"))
    ReferenceCache(workdir / "cache").put(g.original_key, state_to_bytes(net), {"document": g.original_doc,
                                                                             "train_seconds": 0.1})
    code, out = run_harness(workdir, methods="ft", attacks="", recipe={"epochs": 2})
    assert code == 1, out
    assert "cache hit   original digits/mlp seed=0" in out
    assert "The original of digits/mlp seed=0 has NaN outputs on the forget set" in out
    assert trial_runs(workdir).loc["ft", "status"] == "FAILED"


def test_attack_models_that_fail_to_train_lose_only_their_attacks_numbers(workdir, shared_cache, run_harness, trial_runs,
                                                                          monkeypatch):
    """The group's trials failed with them, the method's metrics and the other attacks' lost too."""
    import mlflow

    from bench.run import prepare

    def boom(*args, **kwargs):
        raise RuntimeError(PLANTED)

    monkeypatch.setattr(prepare, "ensure_shadow_set", boom)
    code, out = run_harness(workdir, methods="ft", attacks="lira,loss", recipe={"epochs": 5}, cache_dir=str(shared_cache))
    assert code == 1, out
    assert "FAILED      training the attacks' shadows of digits/mlp seed=0: RuntimeError: " + PLANTED in out
    assert "attack 'lira' has no metrics in 1 trial(s) (ft seed=0): Attack 'lira' was not run: its shadows failed" in out
    run = trial_runs(workdir).loc["ft"]
    assert run["status"] == "FINISHED" and run["tags.bench.attack_errors"] == "lira"
    assert 0 <= run["metrics.forget_acc"] <= 1 and 0 <= run["metrics.loss_auc"] <= 1
    text = mlflow.artifacts.load_text(f"runs:/{run['run_id']}/attack_errors/lira.txt")
    assert PLANTED in text and "Traceback" in text


def test_shadow_models_that_diverge_are_refused_and_not_cached(tmp_path):
    from bench.core.cache import ReferenceCache
    from bench.core.errors import BenchError
    from bench.core.recipe import Recipe
    from bench.datasets.digits import Digits
    from bench.eval.shadows import ensure_shadow_set
    from bench.nn.models import MLPModel

    splits = Digits().load(None, False, None)
    with pytest.raises(BenchError, match=r"shadow 0 \(seed \d+\) diverged in training \(non-finite values in .*\) "
                                         r"at lr=1e\+06"):
        ensure_shadow_set("shadows", 2, model_obj=MLPModel(), arg="32", splits=splits, recipe=Recipe(lr=1e6, epochs=2),
                          group_seed=0, base_doc={"dataset": "digits", "model": "mlp:32", "data_sha256": "0" * 64},
                          forget_idx=torch.arange(10).numpy(), device="cpu", cache=ReferenceCache(tmp_path),
                          say=lambda *a, **k: None, versions={})
    assert not list(tmp_path.rglob("*.safetensors"))
