"""The built-in methods on a digits MLP trained in the test: each does what it claims."""

from __future__ import annotations

import pytest
import torch

from bench.core.contracts import ForgetRequest, MethodContext
from bench.datasets.digits import Digits
from bench.methods import FineTune, GradientAscent, Retrain
from bench.nn.nets import MLP
from bench.core.recipe import build_recipe
from bench.nn.training import accuracy, fit, set_threads

RECIPE = build_recipe(Digits.default_recipe)


@pytest.fixture(scope="module")
def setting():
    set_threads(1)
    d = Digits().load(None, False, None)
    forget = d.train_y == 3
    torch.manual_seed(0)
    original = fit(MLP(64, (256, 256), 10), d.train_x, d.train_y, RECIPE, seed=0)
    return d, forget, original


def _new_model():
    torch.manual_seed(0)
    return MLP(64, (256, 256), 10)


def _request(d, forget, *, with_forget=True, with_retain=True):
    return ForgetRequest(
        num_classes=10, kind="class", forget_class=3,
        forget_x=d.train_x[forget] if with_forget else None, forget_y=d.train_y[forget] if with_forget else None,
        retain_x=d.train_x[~forget] if with_retain else None, retain_y=d.train_y[~forget] if with_retain else None,
    )


def _copy(model):
    m = _new_model()
    m.load_state_dict(model.state_dict())
    return m


def _accs(model, d, forget):
    return (accuracy(model, d.train_x[forget], d.train_y[forget]), accuracy(model, d.train_x[~forget], d.train_y[~forget]),
            accuracy(model, d.test_x, d.test_y))


def test_gradient_ascent_forgets_a_class_without_collapsing(setting):
    d, forget, original = setting
    f0, r0, _ = _accs(original, d, forget)
    ga = GradientAscent()
    params = dict(ga.default_params)
    assert ga.requires_for(params) == {"forget"}
    out = ga.unlearn(_copy(original), _request(d, forget, with_retain=False), params, MethodContext(0, "cpu", _new_model))
    f, r, t = _accs(out, d, forget)
    assert f0 > 0.95 and f < 0.5 * f0, (f0, f)
    assert r > 0.85, r  # the default early stop keeps the model usable


def test_neggrad_plus_forgets_and_keeps_retain_accuracy(setting):
    d, forget, original = setting
    ga = GradientAscent()
    params = {**ga.default_params, "variant": "neggrad+"}
    assert ga.requires_for(params) == {"forget", "retain"}
    out = ga.unlearn(_copy(original), _request(d, forget), params, MethodContext(0, "cpu", _new_model))
    f, r, _ = _accs(out, d, forget)
    assert f < 0.2 and r > 0.9, (f, r)


def test_fine_tuning_uses_only_retain_data_and_keeps_utility(setting):
    d, forget, original = setting
    ft = FineTune()
    out = ft.unlearn(_copy(original), _request(d, forget, with_forget=False), dict(ft.default_params), MethodContext(0, "cpu", _new_model))
    f, r, t = _accs(out, d, forget)
    f0, _, _ = _accs(original, d, forget)
    assert r > 0.97 and t > 0.9
    assert f < f0  # catastrophic forgetting of the absent class has begun


def test_retrain_matches_an_independent_retraining_bit_for_bit(setting):
    d, forget, original = setting
    out = Retrain().unlearn(_copy(original), _request(d, forget, with_forget=False), {},
                            MethodContext(0, "cpu", _new_model, recipe=RECIPE))
    torch.manual_seed(0)
    ref = fit(MLP(64, (256, 256), 10), d.train_x[~forget], d.train_y[~forget], RECIPE, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(out.state_dict().values(), ref.state_dict().values(), strict=True))
    f, r, t = _accs(out, d, forget)
    assert f == 0.0 and r > 0.97
