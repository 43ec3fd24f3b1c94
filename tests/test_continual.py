"""Continual forget requests (bench/run/continual.py, ``--forget seq:...``): parsing and validation,
one method call per request on the previous output, a retrained reference per request, per-request
MLflow metric steps, resume and ``bench compare`` on the final step."""

from __future__ import annotations

import io

import mlflow
import numpy as np
import pytest
from rich.console import Console

from bench.core.errors import BenchError
from bench.core.options import RunOptions
from bench.core.forget import parse_forget
from bench.run.runner import run

SEQ_METHODS = "retrain,ft,ga,l2ul,sisa,prune"


# -- parsing and validation (no training) ------------------------------------------------------


def test_seq_requests_are_disjoint_seeded_and_fit_the_dataset():
    y = np.repeat(np.arange(10), 20)
    steps = parse_forget("seq:5x20").select_steps(y, 10, forget_seed=3)
    assert [len(s) for s in steps] == [20] * 5
    assert len(np.unique(np.concatenate(steps))) == 100 and all((np.diff(s) > 0).all() for s in steps)
    again = parse_forget("seq:5x20").select_steps(y, 10, forget_seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(steps, again, strict=True))
    union = parse_forget("seq:5x20").select(y, 10, 3)
    assert np.array_equal(union, np.sort(np.concatenate(steps)))
    classes = parse_forget("seq:class:1,3,5").select_steps(y, 10, 0)
    assert [set(y[s]) for s in classes] == [{1}, {3}, {5}] and [len(s) for s in classes] == [20, 20, 20]


@pytest.mark.parametrize("text, words", [
    ("seq:", "expected"), ("seq:5", "seq:NxK"), ("seq:0x3", "at least 1"), ("seq:5xa", "seq:NxK"),
    ("seq:class:1,1", "repeated"), ("seq:class:x", "integers"),
])
def test_bad_seq_syntax_is_refused(text, words):
    with pytest.raises(BenchError, match=words):
        parse_forget(text)


@pytest.mark.parametrize("text, words", [
    ("seq:20x10", "need 200 distinct"), ("seq:class:12", "unknown class"),
    ("seq:class:0,1,2,3,4,5,6,7,8,9", "whole training set"),
])
def test_seq_requests_that_do_not_fit_are_refused(text, words):
    with pytest.raises(BenchError, match=words):
        parse_forget(text).select(np.repeat(np.arange(10), 20), 10, 0)


class OneShot:
    """A method that needs the original training state, so it says it cannot continue."""

    name = "oneshot"
    description = "test method that cannot take continual requests"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}
    continual = False
    continual_note = "it needs the original model's training state."

    def unlearn(self, model, request, params, ctx):
        return model


def test_methods_that_cannot_continue_are_refused_before_any_training(workdir, boom_plugin):
    boom_plugin(OneShot())
    opts = RunOptions(methods="retrain,oneshot", forgets=["seq:3x10"], executor="local", cache_dir=str(workdir / "cache"),
                      tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    with pytest.raises(BenchError, match="'oneshot' cannot take continual requests.*original model's training state"):
        run(opts, Console(file=io.StringIO()))
    assert not list((workdir / "cache").iterdir()) and not (workdir / "mlflow.db").exists()


# -- through the harness -------------------------------------------------------------------------


class Chain:
    """Records what each call receives; returns a new module wrapping the one it was given."""

    name = "chain"
    description = "test method recording the model and data of each continual request"
    requires = frozenset({"forget", "retain"})
    default_params: dict = {}
    search_space: dict = {}
    seen: list = []

    def unlearn(self, model, request, params, ctx):
        import torch

        Chain.seen.append((getattr(model, "depth", 0), len(request.forget_y), len(request.retain_y),
                           request.forget_indices.copy(), request.kind, request.forget_class))
        ctx.metrics["chain_depth"] = float(getattr(model, "depth", 0) + 1)

        class Wrapped(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner, self.depth = inner, getattr(inner, "depth", 0) + 1

            def forward(self, x):
                return self.inner(x)

        return Wrapped(model)


def _run(workdir, **kw):
    opts = RunOptions(executor="local", cache_dir=str(workdir / "cache"), tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                      recipe={"epochs": 10}, **kw)
    out = io.StringIO()
    return run(opts, Console(file=out, width=250)), out.getvalue()


def _history(client, run_id, key):
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.mark.slow
def test_seq_3x10_records_three_steps_per_trial_and_resume_and_compare_read_the_last(workdir, boom_plugin):
    boom_plugin(Chain())
    Chain.seen.clear()
    # no attacks: their steps under seq are checked through Ray (test_seq_through_ray_records_every_request)
    code, out = _run(workdir, methods=f"{SEQ_METHODS},chain", forgets=["seq:3x10"], attacks="")
    assert code == 0, out
    assert "forget_all_acc" in out and "cumulative_unlearn_seconds" in out  # the summary's extra columns

    # each request goes to the model the previous call returned, with what remains as retain set
    n = 1437
    assert [s[:3] for s in Chain.seen] == [(0, 10, n - 10), (1, 10, n - 20), (2, 10, n - 30)]
    assert len(np.unique(np.concatenate([s[3] for s in Chain.seen]))) == 30
    assert all(s[4] == "random" and s[5] is None for s in Chain.seen)

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    client = mlflow.tracking.MlflowClient()
    df = mlflow.search_runs(experiment_names=["unlearning-bench"])
    kids = df[df["tags.bench.role"] == "trial"].set_index("tags.bench.method")
    assert set(kids.index) == {*SEQ_METHODS.split(","), "chain"} and (kids["status"] == "FINISHED").all()
    for method, run_id in kids["run_id"].items():
        for key in ("forget_acc", "forget_all_acc", "retain_acc", "test_acc", "unlearn_seconds", "cumulative_unlearn_seconds"):
            assert len(client.get_metric_history(run_id, key)) == 3, (method, key)
        steps = _history(client, run_id, "unlearn_seconds")
        assert np.allclose(np.cumsum(steps), _history(client, run_id, "cumulative_unlearn_seconds"), rtol=1e-6)
        assert _history(client, run_id, "forget_all_size") == [10.0, 20.0, 30.0]
        assert _history(client, run_id, "request") == [1.0, 2.0, 3.0]
        final = client.get_run(run_id).data.metrics  # what compare and resume read: the last step
        assert final["forget_acc"] == _history(client, run_id, "forget_acc")[-1] and final["forget_size"] == 10.0
    assert _history(client, kids.loc["chain", "run_id"], "chain_depth") == [1.0, 2.0, 3.0]
    # each request's points are recorded (its forget_acc is measured on them), beside their union
    union = mlflow.artifacts.load_text(f"runs:/{kids.loc['chain', 'run_id']}/forget_indices.txt")
    parts = [mlflow.artifacts.load_text(f"runs:/{kids.loc['chain', 'run_id']}/request-{t}/forget_indices.txt")
             for t in (1, 2, 3)]
    lines = lambda text: [int(x) for x in text.splitlines() if not x.startswith("#")]  # noqa: E731
    assert [sorted(s[3].tolist()) for s in Chain.seen] == [lines(p) for p in parts]
    assert sorted(sum((lines(p) for p in parts), [])) == lines(union)
    assert "# request: 2 of 3\n" in parts[1] and "# forget: seq:3x10\n" in parts[1]
    # retrain reproduces the retrained reference of every request (one reference per request)
    rid = kids.loc["retrain", "run_id"]
    assert _history(client, rid, "avg_gap") == [0.0, 0.0, 0.0] and _history(client, rid, "forget_all_gap") == [0.0] * 3
    assert len(set(_history(client, rid, "retrain_retain_acc"))) > 1 or len(set(_history(client, rid, "retrain_forget_acc"))) > 1
    assert final_has_goal(client, kids.loc["l2ul", "run_id"])
    sisa = client.get_run(kids.loc["sisa", "run_id"]).data.metrics  # its own ensemble carries over the requests
    assert sisa["train_seconds"] > 0 and sisa["method_original_test_acc"] > 0.5
    assert len(_history(client, kids.loc["sisa", "run_id"], "sisa_shards_retrained")) == 3

    from bench.track.compare import compare

    comp = compare(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    assert {r.name for r in comp.rows} >= set(SEQ_METHODS.split(",")) and "forget_all_acc" in comp.columns
    l2ul_row = next(r for r in comp.rows if r.name == "l2ul")
    assert l2ul_row.values["forget_acc"] == [client.get_run(kids.loc["l2ul", "run_id"]).data.metrics["forget_acc"]]

    code, again = _run(workdir, methods=f"{SEQ_METHODS},chain", forgets=["seq:3x10"], attacks="", resume=True)
    assert code == 0 and (f"{len(SEQ_METHODS.split(',')) + 1} of {len(SEQ_METHODS.split(',')) + 1} trial(s) already finished" in again) and "cumulative_unlearn_seconds" in again


def final_has_goal(client, run_id) -> bool:
    return len(client.get_metric_history(run_id, "l2ul_goal_reached")) == 3


@pytest.mark.slow
def test_seq_class_requests_and_failures_stay_in_their_trial(workdir, boom_plugin):
    boom_plugin(Chain())
    Chain.seen.clear()
    code, out = _run(workdir, methods="chain,boom", forgets=["seq:class:1,3"])
    assert code == 1, out
    assert [(s[4], s[5]) for s in Chain.seen] == [("class", 1), ("class", 3)]
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["unlearning-bench"])
    kids = df[df["tags.bench.role"] == "trial"].set_index("tags.bench.method")
    assert kids.loc["boom", "status"] == "FAILED" and "boom: deliberate failure" in kids.loc["boom", "tags.bench.error"]
    assert kids.loc["chain", "metrics.test_forget_class_acc"] > 0.9  # the chain changes nothing: class 3 kept
    assert kids.loc["chain", "metrics.retrain_test_forget_class_acc"] == 0.0


@pytest.mark.slow
def test_seq_through_ray_records_every_request(workdir, store_args, run_bench):
    # --cpus-per-trial 2: one trial at a time, one Tune worker to start (CPU the suite's other tests need);
    # two requests, 5 epochs: the suite's slowest test at three and 10 (87 s)
    result = run_bench("run", "-m", "retrain,ft", "-f", "seq:2x10", "-r", "epochs=5", "--cpus-per-trial", "2",
                       *store_args(workdir), cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    client = mlflow.tracking.MlflowClient()
    df = mlflow.search_runs(experiment_names=["unlearning-bench"])
    kids = df[df["tags.bench.role"] == "trial"].set_index("tags.bench.method")
    steps = lambda run_id, key: sorted(m.step for m in client.get_metric_history(run_id, key))  # noqa: E731
    for run_id in kids["run_id"]:
        assert steps(run_id, "forget_all_acc") == [0, 1]
        # the default attacks run once, on the final model (docs/continual.md)
        assert steps(run_id, "mia_efficacy") == [1] and steps(run_id, "loss_auc") == [1]
    assert _history(client, kids.loc["retrain", "run_id"], "avg_gap") == [0.0, 0.0]


def test_retain_class_accuracy_leaves_out_every_class_forgotten_so_far():
    """After the second request of seq:class:1,3, the "other classes" are those neither request
    forgot: a model that knows neither 1 nor 3 (the retrained reference) scores 1.0 there, not
    the 0.8 it scored when class 1's test points still counted."""
    from types import SimpleNamespace

    import torch

    from bench.eval.evaluation import evaluate_model
    from bench.run.request import step_data

    labels = torch.arange(5).repeat(4)  # classes 0..4, four points each
    splits = SimpleNamespace(train_x=labels[:, None].float(), train_y=labels, test_x=labels[:, None].float(),
                             test_y=labels, train_size=len(labels))

    class KnowsAllBut1And3(torch.nn.Module):
        def forward(self, x):
            y = x[:, 0].long()
            return torch.nn.functional.one_hot(torch.where((y == 1) | (y == 3), 0, y), 5).float()

    first = np.flatnonzero(labels.numpy() == 1)
    second = np.flatnonzero(labels.numpy() == 3)
    seen = np.union1d(first, second)
    data, _ = step_data(splits, second, seen, "cpu", 3)
    assert data.forgotten_classes == (1, 3)
    accs = evaluate_model(KnowsAllBut1And3(), data).accs
    assert accs["test_retain_class_acc"] == 1.0 and accs["test_forget_class_acc"] == 0.0
    single, _ = step_data(splits, first, first, "cpu", 1)  # a single class request: that class alone
    assert single.forgotten_classes == (1,)
    assert evaluate_model(KnowsAllBut1And3(), single).accs["test_retain_class_acc"] == 0.75


def test_input_bounds_from_the_dataset_or_the_training_split():
    from bench.run.request import input_bounds
    from bench.datasets.digits import Digits

    d = Digits().load(None, False, None)
    d.info.pop("input_bounds", None)
    lo, hi = input_bounds(d, "cpu")  # none given: per-feature min/max of the training split
    assert lo.shape == hi.shape == (1, 8, 8) and float(lo.min()) == 0.0 and float(hi.max()) == 1.0
    d.info["input_bounds"] = ([0.0], [0.5])  # per channel
    lo, hi = input_bounds(d, "cpu")
    assert lo.shape == (1, 1, 1) and float(hi) == 0.5


@pytest.mark.parametrize("text", ["seq:5_0x2", "seq:\u0661x2", "seq:class:1_0", "random:5_0", "random:\u0661\u0660", "class:1_0"])
def test_forget_numbers_are_ascii_digits(text):
    """int() and float() take '5_0' (50) and other scripts' digits: refused instead of read."""
    with pytest.raises(BenchError, match="Bad forget request"):
        parse_forget(text)
