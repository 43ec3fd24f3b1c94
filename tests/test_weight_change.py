"""``weight_change``: how far a method moved the weights it was given, and the warning when it moved
none of them (a method returning its input scores the original's numbers, which rank well on
utility: three such cases were found by review, each closed at its cause; this catches the next)."""

from __future__ import annotations

import math
import re

import pytest
import torch

import bench
from bench.eval.evaluation import parameter_snapshot, weight_change
from bench.track.trial_warnings import unchanged_warnings


def test_weight_change_is_the_relative_l2_distance_of_the_parameters():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    before = parameter_snapshot(model)
    assert weight_change(before, model) == 0.0
    theta = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    with torch.no_grad():
        model[0].weight[1, 2] += 0.5
        model[2].bias -= 0.25
        model[1].running_mean += 3.0  # a buffer: not a parameter, not counted
    expected = math.sqrt(0.5 ** 2 + 2 * 0.25 ** 2) / float(theta.norm())
    assert weight_change(before, model) == pytest.approx(expected, rel=1e-6)  # float32 weights
    assert before.params["0.weight"][1, 2] != model[0].weight[1, 2]  # the snapshot is a copy
    assert before.buffers["1.running_mean"].sum() == 0


def test_weight_change_is_none_without_a_one_to_one_comparison():
    model = torch.nn.Linear(4, 3)
    before = parameter_snapshot(model)
    assert weight_change(before, torch.nn.Sequential(torch.nn.Linear(4, 3))) is None  # other names
    assert weight_change(before, torch.nn.Linear(5, 3)) is None  # other shapes
    assert weight_change(parameter_snapshot(torch.nn.ReLU()), torch.nn.ReLU()) is None  # nothing to compare


def test_weight_change_is_none_when_buffers_were_added_or_only_buffers_moved():
    """PRUNE's patches are buffers around the frozen original: from a continual request's second
    step on, its input was already patched and its parameters never move, so the distance was 0 and
    `bench run` warned "returned the weights it was given unchanged" though it had added patches
    that forgot the new points (found in review). A model that gained or lost buffers, or whose
    buffers alone moved, is not compared; buffers that moved beside its parameters are not counted."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    before = parameter_snapshot(model)
    patch = torch.nn.Module()
    patch.register_buffer("A", torch.ones(2, 4, dtype=torch.float64))
    model.add_module("patch", patch)  # a new patch: the parameters as they were
    assert weight_change(before, model) is None
    del model.patch
    assert weight_change(before, model) == 0.0
    with torch.no_grad():
        model[1].running_var *= 2  # only a buffer moved (a recalibration): no claim of "unchanged"
    assert weight_change(before, model) is None
    with torch.no_grad():
        model[0].bias += 1.0
    assert weight_change(before, model) > 0


class _Trial:
    def __init__(self, method):
        self.method = method


def test_unchanged_warnings_count_trials_and_continual_requests():
    trials = [_Trial("keep"), _Trial("keep"), _Trial("moves"), _Trial("seq")]
    results = {0: {"weight_change": 0.0}, 1: {"weight_change": 0.1}, 2: {"weight_change": 0.2},
               3: {"weight_change": 0.3, "bench_steps": [{"weight_change": 0.0}, {"weight_change": 0.3}]}}
    lines = unchanged_warnings(trials, results)
    assert len(lines) == 2
    assert lines[0].startswith("warning: method 'keep' returned the weights it was given unchanged (weight_change 0) "
                               "in 1 of 2 trial(s)")
    assert "method 'seq'" in lines[1] and "in 1 of 1 trial(s)" in lines[1]
    assert unchanged_warnings(trials[2:3], {0: {"weight_change": 0.2}}) == []
    assert unchanged_warnings(trials[:1], {0: {}}) == []  # not logged (another architecture): no claim
    # nothing to forget (the original already misclassified every forget point): stopping at once is right
    assert unchanged_warnings(trials[:1], {0: {"weight_change": 0.0, "original_forget_acc": 0.0}}) == []
    assert "in 1 of 1 sample(s)" in unchanged_warnings(trials[:1], {0: {"weight_change": 0.0}}, "sample")[0]
    # a continual request whose input (the previous request's result) already misclassified every
    # forget point: nothing to forget, though the original knew them (a false warning until 2026-12-06)
    done = {"weight_change": 0.0, "original_forget_acc": 0.8, "input_forget_acc": 0.0}
    assert unchanged_warnings(trials[3:], {0: {"bench_steps": [{"weight_change": 0.3}, done]}}) == []
    assert len(unchanged_warnings(trials[3:], {0: {"bench_steps": [{**done, "input_forget_acc": 0.1}]}})) == 1


def test_goal_warnings_name_methods_that_missed_their_own_goal():
    """L2UL at its epoch cap with forget points still right logged l2ul_goal_reached 0 and bench
    said nothing (found in review); a continual trial counts once, by any request."""
    from bench.track.trial_warnings import goal_warnings, method_warnings

    trials = [_Trial("l2ul"), _Trial("l2ul"), _Trial("l2ul"), _Trial("seq")]
    results = {0: {"l2ul_goal_reached": 0.0}, 1: {"l2ul_goal_reached": 1.0}, 2: {},
               3: {"bench_steps": [{"x_goal_reached": 1.0}, {"x_goal_reached": 0.0}, {"x_goal_reached": 0.0}]}}
    lines = goal_warnings(trials, results)
    assert lines == [
        "warning: method 'l2ul' stopped before reaching its own goal (l2ul_goal_reached 0) in 1 of 3 trial(s): it ran "
        "out of steps or epochs (its docs name the cap) with part of the forget set not yet forgotten as it defines it.",
        "warning: method 'seq' stopped before reaching its own goal (x_goal_reached 0) in 1 of 1 trial(s): it ran "
        "out of steps or epochs (its docs name the cap) with part of the forget set not yet forgotten as it defines it."]
    assert goal_warnings(trials[1:3], {0: results[1], 1: results[2]}) == []
    both = method_warnings(trials[:1], {0: {"weight_change": 0.0, "l2ul_goal_reached": 0.0}}, "sample")
    assert len(both) == 2 and "unchanged" in both[0] and "in 1 of 1 sample(s)" in both[1]


class _Method:
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def __init__(self, name, step):
        self.name, self.description, self.step = name, f"test method moving one weight by {step}", step

    def unlearn(self, model, request, params, ctx):
        with torch.no_grad():
            next(model.parameters()).flatten()[0] += self.step
        return model


class _Plugin:
    @bench.hookimpl
    def register_methods(self, register):
        register(_Method("keeps", 0.0))
        register(_Method("nudges", 0.5))


@pytest.mark.slow
def test_a_run_logs_weight_change_and_warns_about_a_method_that_changed_nothing(workdir, shared_cache, run_harness,
                                                                                 trial_runs, plugged):
    import mlflow

    with plugged(_Plugin()):
        code, out = run_harness(workdir, methods="keeps,nudges", attacks="loss", recipe={"epochs": 5},
                                cache_dir=str(shared_cache))
    assert code == 0, out
    runs = trial_runs(workdir)
    assert runs.loc["keeps", "metrics.weight_change"] == 0.0
    assert 0 < runs.loc["nudges", "metrics.weight_change"] < 0.1
    text = " ".join(out.split())
    assert "warning: method 'keeps' returned the weights it was given unchanged (weight_change 0) in 1 of 1" in text
    assert "method 'nudges'" not in text
    parent = mlflow.search_runs(experiment_names=["unlearning-bench"], filter_string="tags.`bench.role` = 'parent'")
    assert "method 'keeps' returned the weights it was given unchanged" in parent["tags.bench.warnings"].iloc[0]


def test_weight_change_is_no_objective():
    from bench.eval.metrics import METRIC_DIRECTIONS, direction, no_direction_reason

    # "_change" has no suffix rule; an entry of None keeps it out of bench tune's objectives
    assert direction("weight_change") is None and "weight_change" not in METRIC_DIRECTIONS
    assert "a diagnostic" in no_direction_reason("weight_change")


@pytest.mark.slow  # runs the harness against a store
def test_a_method_at_batch_size_one_trains(workdir, shared_cache, run_harness, trial_runs):
    """Every minibatch method accepts batch_size=1; the shared batching skipped every batch of one,
    so ft (and eu-k, scrub's forget pass, ...) returned the weights it was given: the original's
    numbers (eu-k's untrained head) with exit 0 (found in review)."""
    code, out = run_harness(workdir, methods="ft", attacks="", params={"ft": {"batch_size": 1, "epochs": 1}},
                            cache_dir=str(shared_cache))
    assert code == 0, out
    runs = trial_runs(workdir)
    assert runs.loc["ft", "metrics.weight_change"] > 0 and "unchanged" not in out
    assert int(runs.loc["ft", "params.params.batch_size"]) == 1


class _DTrial:
    def __init__(self, method, dataset="digits"):
        self.method, self.dataset = method, dataset


def test_chance_warnings_name_methods_that_collapsed_the_model():
    """ft at lr 1 left test_acc 0.103 and entropy_auc 0.500 ("the attacker is at chance"), exit 0,
    no word (params audit, 2026-12-07): a model no better than the most common class is said."""
    from bench.track.trial_warnings import chance_warnings, method_warnings

    trials = [_DTrial("ft"), _DTrial("ft"), _DTrial("ga"), _DTrial("seq"), _DTrial("ft", "other")]
    results = {0: {"test_acc": 0.103, "original_test_acc": 0.97}, 1: {"test_acc": 0.95, "original_test_acc": 0.97},
               2: {"test_acc": 0.11, "original_test_acc": 0.11},  # the original did not learn: not the method's doing
               3: {"bench_steps": [{"test_acc": 0.9, "original_test_acc": 0.97}, {"test_acc": 0.09, "original_test_acc": 0.97}]},
               4: {"test_acc": 0.2, "original_test_acc": 0.9}}  # no chance rate known for its dataset: no claim
    lines = chance_warnings(trials, results, {"digits": 0.102}, 0.02)
    assert lines == [
        "warning: method 'ft' left a model no better than chance on the test split (test_acc down to 0.103, the "
        "original's well above) in 1 of 2 trial(s): it collapsed, and its forget_acc and attack scores (an AUC near "
        "0.5) say nothing about forgetting. Check its parameters (a step size too large for this model).",
        "warning: method 'seq' left a model no better than chance on the test split (test_acc down to 0.090, the "
        "original's well above) in 1 of 1 trial(s): it collapsed, and its forget_acc and attack scores (an AUC near "
        "0.5) say nothing about forgetting. Check its parameters (a step size too large for this model)."]
    assert method_warnings(trials[:1], {0: results[0]}) == []  # no chance rates given: none said
    assert "in 1 of 1 sample(s)" in method_warnings(trials[:1], {0: results[0]}, "sample", {"digits": 0.102})[0]


class _BiasOnlyNet(torch.nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.b = torch.nn.Parameter(torch.zeros(classes))

    def forward(self, x):
        return self.b.expand(x.shape[0], -1) + 0.0 * x.flatten(1)[:, :1]


class _BiasOnly:
    name = "biasonly"
    description = "test model that learns the class prior only"

    def create(self, num_classes, input_shape, arg=None):
        return _BiasOnlyNet(num_classes)


class _Zeroes(_Method):
    def __init__(self):
        super().__init__("zeroes", 0.0)
        self.description = "test method that zeroes every weight"

    def unlearn(self, model, request, params, ctx):
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        return model


class _ChancePlugin:
    @bench.hookimpl
    def register_methods(self, register):
        register(_Zeroes())

    @bench.hookimpl
    def register_models(self, register):
        register(_BiasOnly())


@pytest.mark.slow  # a run of the harness
def test_a_run_says_which_references_and_methods_are_at_chance(workdir, shared_cache, run_harness, plugged):
    import mlflow

    with plugged(_ChancePlugin()):
        code, out = run_harness(workdir, methods="ft,zeroes", models=["mlp", "biasonly"], attacks="", recipe={"epochs": 5},
                                cache_dir=str(shared_cache))
    assert code == 0, out
    text = " ".join(out.split())
    assert re.search(r"warning: the original of digits/biasonly seed=0 scores test_acc 0\.1\d\d, no better than always "
                     r"answering the test split's most common class \(0\.1\d\d\): it did not learn", text), text
    assert "warning: the retrained reference of digits/biasonly seed=0 scores" in text
    assert "of digits/mlp" not in text
    # on mlp only: on biasonly the original was at chance already
    assert "warning: method 'zeroes' left a model no better than chance on the test split" in text
    assert "in 1 of 2 trial(s)" in text.split("method 'zeroes' left")[1] and "method 'ft' left" not in text
    parent = mlflow.search_runs(experiment_names=["unlearning-bench"], filter_string="tags.`bench.role` = 'parent'")
    kept = parent["tags.bench.warnings"].iloc[0]
    assert "the original of digits/biasonly" in kept and "method 'zeroes' left a model" in kept
    # which plugin registered each part of a trial (only the method's was recorded; plugins audit)
    kids = mlflow.search_runs(experiment_names=["unlearning-bench"], filter_string="tags.`bench.role` = 'trial'")
    kids = kids.set_index(["params.method", "params.model"])
    plugin = kids.loc[("zeroes", "biasonly"), "params.method_plugin"]
    assert plugin not in ("", "bench.methods") and kids.loc[("zeroes", "biasonly"), "params.origins.model"] == plugin
    assert (kids.loc[("ft", "mlp"), "params.origins.model"], kids.loc[("ft", "mlp"), "params.origins.dataset"]) == \
        ("bench.nn.models", "bench.datasets")


def test_unmoved_warnings_name_methods_whose_numbers_stayed_the_originals():
    """iu, ssd and ga at their digits defaults on 20,000 CIFAR-shaped images moved the weights by
    0.03-0.6% and left every accuracy the original's, without a word (scale audit, 2026-12-07)."""
    from types import SimpleNamespace

    from bench.core.keys import STEPS_KEY
    from bench.track.trial_warnings import unmoved_warnings

    same = {"forget_acc": 1.0, "retain_acc": 1.0, "test_acc": 0.98, "original_forget_acc": 1.0,
            "original_retain_acc": 1.0, "original_test_acc": 0.98, "retrain_forget_acc": 0.979}
    trials = [SimpleNamespace(method=m) for m in ("iu", "iu", "ft", "ga", "ssd", "seq")]
    results = {0: {**same, "weight_change": 0.0003}, 1: {**same, "weight_change": 0.004, "test_acc": 0.97},
               2: {**same, "weight_change": 0.02},  # moved: the original's answers may be right on an easy request
               3: {**same, "weight_change": 0.006, "retrain_forget_acc": 1.0},  # nothing to forget differently
               4: {**same, "weight_change": 0.0},  # unchanged_warnings' case
               5: {**same, "weight_change": 0.001, STEPS_KEY: [same]}}  # continual: left out
    (line,) = unmoved_warnings(trials, results)
    assert line == ("warning: method 'iu' moved the weights by under 1% and left the forget, retain and test accuracies "
                    "exactly the original model's in 1 of 2 trial(s) (weight_change down to 0.0003): its numbers are the "
                    "original's. Its defaults may suit another dataset or model (docs/methods.md gives them, and the "
                    "per-dataset ones): raise its step size, epochs or selection threshold.")
    assert "in 1 of 1 sample(s)" in unmoved_warnings(trials[:1], {0: results[0]}, "sample")[0]
