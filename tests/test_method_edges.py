"""Methods that returned the original model as a result with exit 0 under edge values: salun-soft
after diverging (its proximal step reset NaN weights to the epoch's start), bad-teacher at a
temperature that overflows Adam, unsir without an impair epoch."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.errors import BenchError
from bench.core.method import check_params
from bench.core.plugins import get_registry


def _setting(classes=3, n=90, dim=6):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=g)
    y = torch.arange(n) % classes
    x[:, 0] += 2 * y  # learnable
    model = torch.nn.Sequential(torch.nn.Linear(dim, 16), torch.nn.ReLU(), torch.nn.Linear(16, classes))
    forget = y == 1
    request = ForgetRequest(classes, "class", forget_indices=torch.nonzero(forget).flatten().numpy(), forget_x=x[forget],
                            forget_y=y[forget], retain_x=x[~forget], retain_y=y[~forget], forget_class=1)
    return model, request


def _ctx(model, classes=3):
    return MethodContext(seed=0, device="cpu",
                         new_model=lambda: torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, classes)))


def test_salun_soft_leaves_a_diverged_model_non_finite_for_the_harness_to_fail():
    method = get_registry().get("method", "salun-soft")
    model, request = _setting()
    original = copy.deepcopy(model.state_dict())
    params = {**method.default_params, "lr": 1e30, "epochs": 2}
    out = method.unlearn(model, request, params, _ctx(model))
    weights = torch.cat([p.detach().flatten() for p in out.parameters()])
    # before: every non-finite weight was put back to the epoch's start: the original, bit for bit
    assert not torch.isfinite(weights).all(), "a diverged run must not come back as finite weights"
    assert any(not torch.equal(out.state_dict()[k], v) for k, v in original.items())


def test_salun_soft_still_thresholds_a_finite_run():
    from bench.methods.salun import Proximal

    model = torch.nn.Linear(4, 2, bias=False)
    prox = Proximal(mask_ratio=0.5, epochs=2, steps=1)  # epoch 0: k = 2 of the 8 weights
    prox.start_epoch(model, 0)
    with torch.no_grad():
        model.weight.add_(torch.tensor([[0.1, -0.2, 0.3, -0.4], [0.5, -0.6, 0.7, -0.8]]))
    start = prox.anchor[0].clone()
    prox.after_step(model, None, 0)
    d = model.weight.detach() - start
    assert (d.abs() < torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]) + 1e-6).all() and (d == 0).any()


@pytest.mark.parametrize("method, params, message", [
    ("bad-teacher", {"temperature": 1e-30}, r"temperature=1e-30: expected a number >= 0.001"),
    ("unsir", {"impair_epochs": 0}, r"impair_epochs=0: expected an integer >= 1 \(without an impair pass"),
])
def test_values_that_made_a_method_a_no_op_are_refused(method, params, message):
    obj = get_registry().get("method", method)
    with pytest.raises(BenchError, match=message):
        check_params(method, obj, {**obj.default_params, **params})


def test_unsir_still_takes_impair_only_and_random_noise():
    obj = get_registry().get("method", "unsir")
    check_params("unsir", obj, {**obj.default_params, "repair_epochs": 0, "noise_steps": 0})
