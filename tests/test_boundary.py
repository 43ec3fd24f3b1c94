"""Boundary Shrink (``bs``) and Boundary Expanding (``be``), methods/boundary.py.

Fast: the conformance kit, the parameter checks, the building blocks (FGSM in the input box, the
neighbour labels, widening and pruning the classifier, finding it generically) and the plumbing on an
untrained tiny CNN. Slow: digits ``class:3`` and ``random:10%`` through the harness in process, with
the defaults and the declared digits ``dataset_params``."""

from __future__ import annotations

import math

import pytest
import torch
from bench.methods.boundary import (
    BoundaryExpanding,
    BoundaryShrink,
    fgsm,
    find_classifier,
    neighbour_labels,
    prune_shadow,
    widen_linear,
)
from torch import nn

from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.errors import BenchError
from bench.core.method import check_params, dataset_params
from bench.nn.nets import MLP, SmallCNN
from bench.testing import check_method

BS, BE = BoundaryShrink(), BoundaryExpanding()
NAN, INF = math.nan, math.inf


# -- conformance and parameters ------------------------------------------------------------------

@pytest.mark.parametrize("method, params", [
    (BS, None), (BE, None), (BE, {"train_layers": "classifier"}), (BS, {"neighbour": "adv", "stop_forget_acc": -1}),
], ids=["bs", "be", "be-classifier", "bs-code"])
def test_conformance(method, params):
    check_method(method, **({"params": params} if params else {}))


_COMMON_BAD = [("epochs", 0), ("epochs", -1), ("epochs", 2.5), ("batch_size", 0), ("batch_size", -8),
               ("lr", 0.0), ("lr", -0.1), ("lr", NAN), ("lr", INF), ("momentum", -0.1), ("momentum", 1.0),
               ("weight_decay", -1e-4), ("weight_decay", INF), ("stop_forget_acc", -0.5), ("stop_forget_acc", 1.5),
               ("stop_forget_acc", NAN), ("stop_forget_acc", -2.0)]


@pytest.mark.parametrize("method, key, value", [
    *[(BS, k, v) for k, v in [*_COMMON_BAD, ("bound", 0.0), ("bound", -0.1), ("bound", 1.5), ("bound", NAN),
                              ("neighbour", "nearest"), ("neighbour", "")]],
    *[(BE, k, v) for k, v in [*_COMMON_BAD, ("train_layers", "head"), ("train_layers", "ALL")]],
], ids=lambda v: v.name if hasattr(v, "unlearn") else repr(v))
def test_bad_parameters_are_refused_with_one_line(method, key, value):
    params = {**method.default_params, key: value}
    with pytest.raises(BenchError) as err:
        check_params(method.name, method, params)
    text = str(err.value)
    assert f"method '{method.name}'" in text and key in text and "\n" not in text, text


def test_defaults_and_sources_are_published():
    for method in (BS, BE):
        check_params(method.name, method, dict(method.default_params))
        for name in ("digits",):
            check_params(method.name, method, {**method.default_params, **dataset_params(method, name)})
        assert method.requires == {"forget"} and method.continual is not False
        assert set(method.search_space) <= set(method.default_params)
        for source in ("boundary_sh.py", "boundary_ex.py", "OPTML-Group/Unlearn-Saliency", "CVPR 2023"):
            assert source in __import__("bench.methods.boundary", fromlist=["x"]).__doc__
    assert (BS.default_params["bound"], BS.default_params["lr"], BS.default_params["epochs"]) == (0.1, 0.01, 10)
    assert dataset_params(BE, "digits") == {"train_layers": "classifier"} and BE.default_params["train_layers"] == "all"
    assert dataset_params(BS, "digits") == {"lr": 0.001}
    check_params("bs", BS, {**BS.default_params, "stop_forget_acc": -1})  # -1: no early stop


# -- building blocks -----------------------------------------------------------------------------

def _tiny(seed=0, model="mlp"):
    torch.manual_seed(seed)
    return MLP(64, (16,), 10) if model == "mlp" else SmallCNN(1, 10, widths=(4, 8), hidden=16)


def _request(n=12, kind="random", seed=0, forget_class=None, bounds=(0.0, 1.0)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 1, 8, 8), generator=g)
    y = torch.full((n,), forget_class) if kind == "class" else torch.randint(10, (n,), generator=g)
    lo, hi = bounds
    return ForgetRequest(num_classes=10, kind=kind, forget_class=forget_class, forget_x=x, forget_y=y,
                         forget_indices=torch.arange(n).numpy(), input_bounds=(torch.tensor(lo), torch.tensor(hi)))


def test_fgsm_takes_one_signed_step_scaled_to_the_input_box_and_clips_to_it():
    model = _tiny()
    req = _request(bounds=(-2.0, 3.0))
    x = req.forget_x * 5 - 2  # inside the box [-2, 3]
    lo, hi = req.input_bounds
    adv = fgsm(model, x, req.forget_y, 0.1, lo, hi)
    step = (adv - x).abs()
    assert adv.min() >= -2 and adv.max() <= 3
    assert step.max() <= 0.5 + 1e-6  # 0.1 of the box's width 5
    inside = (x > -1.5) & (x < 2.5)  # away from the edges every coordinate moves by the full step
    assert torch.allclose(step[inside], torch.full_like(step[inside], 0.5), atol=1e-5)
    assert not any(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("kind", ["class", "random"])
def test_neighbour_labels_are_never_the_own_label_and_the_code_variant_is_the_plain_argmax(kind):
    model = _tiny()
    req = _request(n=40, kind=kind, forget_class=3 if kind == "class" else None)
    x, y = req.forget_x, req.forget_y
    wrong, success = neighbour_labels(model, x, y, req, 0.1, "wrong", y)
    plain, success2 = neighbour_labels(model, x, y, req, 0.1, "adv", y)
    assert (wrong != y).all() and success == success2
    assert ((plain != y) == (wrong == plain)).all()  # they agree exactly where the attack succeeded
    lo, hi = torch.tensor(0.0), torch.tensor(1.0)
    assert torch.equal(plain, model(fgsm(model, x, y, 0.1, lo, hi)).argmax(1))


def test_widen_then_prune_keeps_the_original_rows_and_draws_the_shadow_row_from_the_seed():
    layer = nn.Linear(5, 3)
    wide = widen_linear(layer, torch.Generator().manual_seed(1))
    again = widen_linear(layer, torch.Generator().manual_seed(1))
    assert wide.out_features == 4 and torch.equal(wide.weight[:3], layer.weight) and torch.equal(wide.bias[:3], layer.bias)
    assert torch.equal(wide.weight, again.weight) and wide.weight[3].abs().max() <= 1 / math.sqrt(5)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), wide)
    with torch.no_grad():
        wide.weight.add_(1.0)
    out = prune_shadow(model, "2", 3)
    assert out[2].out_features == 3 and torch.equal(out[2].weight, wide.weight[:3]) and out(torch.zeros(2, 4)).shape == (2, 3)
    copy = prune_shadow(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), wide), "2", 3, copy=True)
    assert copy[2].out_features == 3 and wide.out_features == 4


class _TimmLike(nn.Module):
    """A timm-style model: ``get_classifier()`` names ``fc``; an auxiliary 10-way head registered
    after it is not the classifier."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.fc = nn.Linear(16, 10)
        self.aux = nn.Linear(16, 10)

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.fc(self.body(x))


def test_the_classifier_is_found_generically_and_a_model_without_one_is_refused():
    assert find_classifier(_tiny(), 10)[0] == "net.3"
    assert find_classifier(_tiny(model="cnn"), 10)[0] == "head.2"
    assert find_classifier(_TimmLike(), 10)[0] == "fc"
    assert find_classifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 4)), 10)[0] == "1"
    conv_only = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    with pytest.raises(BenchError, match=r"Method 'be' .*no nn.Linear with 10 outputs"):
        BE.unlearn(conv_only, _request(), dict(BE.default_params), MethodContext(0, "cpu", lambda: conv_only))
    model = _TimmLike()
    out = BE.unlearn(model, _request(), dict(BE.default_params), MethodContext(0, "cpu", _TimmLike))
    assert out.fc.out_features == 10 and out.aux.out_features == 10 and out(torch.rand(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("kind", ["class", "random"])
@pytest.mark.parametrize("method", [BS, BE], ids=["bs", "be"])
def test_both_kinds_on_an_untrained_tiny_mlp_and_cnn_give_the_same_architecture(method, kind, arch):
    original = _tiny(model=arch)
    model = _tiny(model=arch)
    req = _request(n=20, kind=kind, forget_class=3 if kind == "class" else None)
    reports = []
    ctx = MethodContext(0, "cpu", lambda: _tiny(model=arch), report=lambda m: reports.append(m(req.forget_x).shape))
    params = {**method.default_params, "epochs": 2, "batch_size": 8, "stop_forget_acc": -1}
    out = method.unlearn(model, req, params, ctx)
    assert out(req.forget_x).shape == (20, 10) and reports == [(20, 10)] * 2
    assert {k: v.shape for k, v in out.state_dict().items()} == {k: v.shape for k, v in original.state_dict().items()}
    assert ctx.metrics[f"{method.name}_steps"] == 2 * 3 and ctx.metrics[f"{method.name}_stopped"] == 0.0


def test_be_classifier_only_leaves_the_rest_of_the_network_unchanged():
    original = _tiny(model="cnn")
    model = _tiny(model="cnn")
    req = _request(n=20)
    out = BE.unlearn(model, req, {**BE.default_params, "train_layers": "classifier"}, MethodContext(0, "cpu", _tiny))
    before, after = original.state_dict(), out.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= {"head.2.weight", "head.2.bias"}, changed


def test_the_early_stop_ends_the_fine_tuning_once_the_forget_points_are_misclassified():
    model = _tiny()
    req = _request(n=20)
    ctx = MethodContext(0, "cpu", _tiny)
    BS.unlearn(model, req, {**BS.default_params, "epochs": 50, "batch_size": 4}, ctx)
    assert ctx.metrics["bs_stopped"] == 1.0 and ctx.metrics["bs_steps"] < 50 * 5
    assert (model(req.forget_x).argmax(1) != req.forget_y).all()


# -- digits through the harness ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_digits_class_3_both_forget_the_class_and_keep_the_other_classes(baseline_trials):
    code, out, kids = baseline_trials("class:3", attacks="")
    assert code == 0, out
    for name in ("bs", "be"):
        row = kids.loc[name]
        assert row["metrics.original_forget_acc"] > 0.95
        assert row["metrics.forget_acc"] <= 0.05, (name, row["metrics.forget_acc"])
        drop = row["metrics.original_test_retain_class_acc"] - row["metrics.test_retain_class_acc"]
        assert drop <= 0.03, (name, drop)
        assert row["metrics.test_forget_class_acc"] <= 0.05
    assert kids.loc["be", "params.params.train_layers"] == "classifier"  # the declared digits settings
    assert float(kids.loc["bs", "params.params.lr"]) == 0.001
    assert kids.loc["bs", "metrics.bs_kept_true_label"] == 0.0


@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_digits_random_10_percent_end_to_end_with_the_default_attacks(baseline_trials):
    code, out, kids = baseline_trials("random:10%")
    assert code == 0, out
    for name in ("bs", "be"):
        row = kids.loc[name]
        assert row["status"] == "FINISHED"
        for key in ("forget_acc", "retain_acc", "test_acc", "avg_gap", "unlearn_seconds", "loss_auc", "entropy_auc",
                    "mia_efficacy", f"{name}_steps"):
            value = row[f"metrics.{key}"]
            assert not math.isnan(value), (name, key)  # logged, not NaN
        assert row["metrics.test_acc"] >= 0.8, (name, row["metrics.test_acc"])
    table = out[out.index("attacks on the forget set"):]
    assert all(h in table for h in ("loss_auc", "entropy_auc", "mia_efficacy")), table
    assert any("│ bs " in line for line in table.splitlines()) and any("│ be " in line for line in table.splitlines())


@pytest.mark.parametrize("method", [BS, BE], ids=["bs", "be"])
def test_a_second_request_on_its_own_output_works(method):
    model = _tiny(model="cnn")
    for cls in (1, 3):
        req = _request(n=16, kind="class", forget_class=cls, seed=cls)
        model = method.unlearn(model, req, dict(method.default_params), MethodContext(0, "cpu", _tiny))
        assert model(req.forget_x).shape == (16, 10)
