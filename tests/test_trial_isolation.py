"""Trials of one worker share the data and the forget indices (``--executor local``, a reused Ray
actor): nothing one method does to them may change what the trials after it measure. Each case
runs a misbehaving method before ``ft`` and checks ``ft``'s metrics against ``ft`` run alone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

pytestmark = pytest.mark.slow

SAME = ("forget_acc", "retain_acc", "test_acc", "js_to_retrain_forget", "js_to_retrain_test", "forget_size", "avg_gap")


class ShiftsIndices:
    """Writes to the forget indices it was given (before: every later trial used another forget set)."""

    name = "shifts-indices"
    description = "test method that writes to request.forget_indices"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        request.forget_indices += 1
        return model


class _ScalesInput(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.mul_(1.5))  # changes its input in place


class ScalingModel:
    """Returns a model whose forward changes its input in place (before: the shared test set was
    scaled for every later trial, and the attack after it was blamed)."""

    name = "scaling-model"
    description = "test method whose model changes its input in place"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        return _ScalesInput(model)


def _ft_alone(workdir, run_harness, trial_runs, cache, attacks):
    code, out = run_harness(workdir, methods="ft", attacks=attacks, recipe={"epochs": 5}, cache_dir=cache)
    assert code == 0, out
    return trial_runs(workdir).loc["ft"]


def test_writing_the_forget_indices_changes_no_other_trial(tmp_path, shared_cache, boom_plugin, run_harness, trial_runs):
    boom_plugin(ShiftsIndices())
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    code, out = run_harness(tmp_path / "a", methods="shifts-indices,ft", attacks="", recipe={"epochs": 5},
                            cache_dir=str(shared_cache))
    assert code == 0, out
    kids = trial_runs(tmp_path / "a")
    alone = _ft_alone(tmp_path / "b", run_harness, trial_runs, str(shared_cache), "")
    for key in SAME:
        assert kids.loc["ft", f"metrics.{key}"] == alone[f"metrics.{key}"], key


def test_a_model_that_changes_its_input_changes_nothing_else(tmp_path, shared_cache, boom_plugin, run_harness,
                                                              trial_runs):
    boom_plugin(ScalingModel())
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    code, out = run_harness(tmp_path / "a", methods="scaling-model,ft", attacks="loss", recipe={"epochs": 5},
                            cache_dir=str(shared_cache))
    assert code == 0, out  # the loss attack is not blamed for what the model did to its input
    kids = trial_runs(tmp_path / "a")
    alone = _ft_alone(tmp_path / "b", run_harness, trial_runs, str(shared_cache), "loss")
    for key in (*SAME, "loss_auc"):
        assert kids.loc["ft", f"metrics.{key}"] == alone[f"metrics.{key}"], key


def test_predict_logits_hands_the_model_a_copy_of_each_batch():
    from bench.nn.training import predict_logits

    x = torch.arange(12.0).reshape(6, 2)
    before = x.clone()
    predict_logits(_ScalesInput(nn.Linear(2, 3)), x, batch_size=4)
    assert torch.equal(x, before)


def test_the_request_indices_are_the_methods_own_copy():
    from bench.run.request import build_request

    idx = np.array([3, 5, 7])
    x, y = torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)
    req = build_request(num_classes=2, kind="random", forget_indices=idx, forget_class=None, forget=(x, y),
                        retain=(x, y), access={"forget"}, bounds=None)
    req.forget_indices += 1
    assert idx.tolist() == [3, 5, 7]


def test_nested_params_reach_the_next_trial_unchanged():
    from bench.core.contracts import MethodContext
    from bench.run.trial import unlearn_checked

    class Appends:
        def unlearn(self, model, request, params, ctx):
            params["layers"].append(99)
            return model

    params = {"layers": [1, 2]}
    request = SimpleNamespace(forget_x=None, forget_y=None, retain_x=None, retain_y=None, input_bounds=None)
    unlearn_checked(Appends(), "appends", nn.Linear(2, 2), request, params, MethodContext(0, "cpu", None))
    assert params == {"layers": [1, 2]}

