"""``l1-sparse`` (Jia et al., NeurIPS 2023) and ``iu`` (influence unlearning with WoodFisher): the
conformance kit, the l1 schedule, ``iu`` against a literal per-example implementation, bad
parameters, forgetting digits class 3, and both methods end to end through the harness."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from bench.datasets.digits import Digits
from bench.methods.influence import GRAD_BUDGET, InfluenceUnlearning, retain_count
from bench.methods.l1_sparse import L1Sparse, l1_alpha
from torch import nn

from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.errors import BenchError
from bench.core.method import check_params, dataset_params
from bench.core.recipe import build_recipe
from bench.nn.nets import MLP
from bench.nn.training import accuracy, fit, set_threads
from bench.testing import check_method

NAN, INF = math.nan, math.inf


# -- conformance ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method,params,digits", [
    (L1Sparse(), None, False), (L1Sparse(), {"no_l1_epochs": 3}, True), (InfluenceUnlearning(), None, False),
    (InfluenceUnlearning(), {"recursion": "reference"}, True),
], ids=["l1-sparse", "l1-sparse-no-l1-epochs-digits", "iu", "iu-reference-digits"])
def test_conformance(method, params, digits):
    # the kit's toy setting is a digits subset that does not apply dataset_params: with digits=True
    # the check runs with the method's declared digits setting
    merged = {**(dataset_params(method, "digits") if digits else {}), **(params or {})}
    check_method(method, params=merged)


# -- l1-sparse ------------------------------------------------------------------------------------

def test_l1_schedule_follows_ft_iter():
    assert [l1_alpha(1.0, e, 10, 0) for e in range(10)] == pytest.approx([1 - e / 10 for e in range(10)])
    # the last no_l1_epochs epochs run without the penalty; the decay spans the others
    assert [l1_alpha(2.0, e, 5, 2) for e in range(5)] == pytest.approx([2.0, 2 * (2 / 3), 2 * (1 / 3), 0.0, 0.0])
    # no_l1_epochs == epochs: the code's CIFAR branch keeps alpha constant
    assert [l1_alpha(0.5, e, 3, 3) for e in range(3)] == [0.5, 0.5, 0.5]


def test_l1_penalty_shrinks_the_weights_and_zero_alpha_is_plain_fine_tuning():
    torch.manual_seed(0)
    x, y = torch.randn(96, 6), torch.randint(0, 3, (96,))
    base = MLP(6, (8,), 3)
    req = ForgetRequest(num_classes=3, kind="random", retain_x=x, retain_y=y)
    outs = {}
    for alpha in (0.0, 0.05):
        model = MLP(6, (8,), 3)
        model.load_state_dict(base.state_dict())
        params = {**L1Sparse.default_params, "alpha": alpha, "epochs": 3, "batch_size": 32}
        outs[alpha] = L1Sparse().unlearn(model, req, params, MethodContext(0, "cpu", lambda: MLP(6, (8,), 3)))
    norm = {a: sum(p.abs().sum().item() for p in m.parameters()) for a, m in outs.items()}
    assert norm[0.05] < norm[0.0]
    # alpha = 0: the same SGD steps as ft's loop (same optimiser, batch order from ctx.seed)
    from bench.nn.training import train_epochs

    ref = MLP(6, (8,), 3)
    ref.load_state_dict(base.state_dict())
    train_epochs(ref, x, y, epochs=3, batch_size=32, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4,
                 schedule="constant", seed=0)
    for a, b in zip(outs[0.0].parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)


# -- iu against a literal per-example implementation ---------------------------------------------

def _flat_grad(model, x, y):
    """Gradient of CE on a batch of one, flattened (the reference's ``sam_grad``)."""
    loss = F.cross_entropy(model(x), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def _naive_iu_perturbation(model, fx, fy, rx, ry, damping, count, recursion):
    """Wfisher written out literally, one example at a time: gradient sums, v, then either the
    rank-one recursion with one stored u_k per example, or the code's two-vector loop."""
    model.eval()
    n_f, n_r = len(fy), len(ry)
    forget = sum(_flat_grad(model, fx[i:i + 1], fy[i:i + 1]) for i in range(n_f))
    retain = sum(_flat_grad(model, rx[i:i + 1], ry[i:i + 1]) for i in range(n_r))
    v = forget / (n_f + n_r) - retain * n_f / ((n_f + n_r) * n_r)
    grads = [_flat_grad(model, rx[i:i + 1], ry[i:i + 1]) for i in range(count)]
    if recursion == "reference":
        k, o = v.clone(), None
        for g in grads:
            if o is None:
                o = g.clone()
            else:
                tmp = torch.dot(o, g)
                k = k - (torch.dot(k, g) / (damping + tmp)) * o
                o = o - (tmp / (damping + tmp)) * o
        return v, k, grads[0]
    us, ds = [], []
    for g in grads:  # u_k = H_{k-1}^{-1} g_k, H_k^{-1} = H_{k-1}^{-1} - u u^T / (N + g^T u)
        u = g.clone()
        for uj, dj in zip(us, ds):
            u = u - uj * torch.dot(uj, g) / dj
        us.append(u)
        ds.append(damping + torch.dot(g, u))
    k = v.clone()
    for uj, dj in zip(us, ds):
        k = k - uj * torch.dot(uj, v) / dj
    return v, k, grads[0]


@pytest.mark.parametrize("recursion", ["woodfisher", "reference"])
def test_iu_equals_the_naive_per_example_implementation(recursion):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    fx, fy = torch.randn(4, 5, dtype=torch.float64), torch.randint(0, 3, (4,))
    rx, ry = torch.randn(15, 5, dtype=torch.float64), torch.randint(0, 3, (15,))
    damping = 0.5  # small, so that the inverse Hessian matters
    params = {**InfluenceUnlearning.default_params, "alpha": 1.0, "damping": damping, "recursion": recursion,
              "max_retain": 9, "chunk_size": 4}  # chunks of 4 over 9 examples: a partial last chunk
    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    v, expected, g0 = _naive_iu_perturbation(model, fx, fy, rx, ry, damping, 9, recursion)
    req = ForgetRequest(num_classes=3, kind="random", forget_x=fx, forget_y=fy, retain_x=rx, retain_y=ry)
    ctx = MethodContext(0, "cpu", lambda: None)
    out = InfluenceUnlearning().unlearn(model, req, params, ctx)
    got = torch.cat([p.detach().reshape(-1) for p in out.parameters()]) - before
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    assert (got - v).norm() > 0.05 * v.norm()  # the inverse Hessian changed the direction
    assert ctx.metrics["iu_retain_examples"] == 9.0
    if recursion == "reference":
        # the code's loop only ever subtracts multiples of the first retain gradient (the "fix" of the docs)
        diff = v - got
        assert abs(torch.dot(diff, g0).abs() - diff.norm() * g0.norm()) < 1e-9 * diff.norm() * g0.norm()


def test_iu_float32_matches_float64_and_the_default_count():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    fx, fy = torch.randn(3, 5), torch.randint(0, 3, (3,))
    rx, ry = torch.randn(40, 5), torch.randint(0, 3, (40,))
    params = {**InfluenceUnlearning.default_params, "alpha": 1.0, "damping": 1.0}
    assert retain_count(model, 40, params) == 3  # the code's N + 2 with N = 1
    assert retain_count(model, 2, params) == 2
    big = nn.Linear(GRAD_BUDGET // 1000, 1, bias=False, device="meta")  # GRAD_BUDGET / 1000 parameters
    assert retain_count(big, 5000, {**params, "damping": 1000.0}) == 1000  # the memory budget caps it
    assert retain_count(big, 5000, {**params, "damping": 1000.0, "recursion": "reference"}) == 1002
    assert retain_count(big, 5000, {**params, "max_retain": 7}) == 7
    before = [p.detach().clone() for p in model.parameters()]
    _, expected, _ = _naive_iu_perturbation(copy.deepcopy(model).double(), fx.double(), fy, rx.double(), ry, 1.0, 3,
                                            "woodfisher")
    req = ForgetRequest(num_classes=3, kind="random", forget_x=fx, forget_y=fy, retain_x=rx, retain_y=ry)
    out = InfluenceUnlearning().unlearn(model, req, params, MethodContext(0, "cpu", lambda: None))
    got = torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(out.parameters(), before)])
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-6)


def test_iu_with_no_forget_points_leaves_the_model_unchanged():
    torch.manual_seed(0)
    model = MLP(4, (6,), 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    req = ForgetRequest(num_classes=3, kind="indices", forget_x=torch.zeros(0, 4), forget_y=torch.zeros(0, dtype=torch.long),
                        retain_x=torch.randn(20, 4), retain_y=torch.randint(0, 3, (20,)))
    out = InfluenceUnlearning().unlearn(model, req, dict(InfluenceUnlearning.default_params),
                                        MethodContext(0, "cpu", lambda: None))
    for k, v in out.state_dict().items():
        torch.testing.assert_close(v, state[k])


def test_iu_runs_on_a_model_with_a_parameter_no_output_uses():
    """A trainable parameter the forward never reads gets a zero gradient (it raised "One of the
    differentiated Tensors appears to not have been used in the graph" in the flat gradient sums)
    and stays as it was; the others move as on the model without it."""
    torch.manual_seed(0)
    plain = MLP(4, (6,), 3)
    extra = copy.deepcopy(plain)
    extra.unused = nn.Linear(2, 2)
    before = extra.unused.weight.detach().clone()
    start = {k: v.clone() for k, v in plain.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
    req = ForgetRequest(num_classes=3, kind="random", forget_x=x[:5], forget_y=y[:5], retain_x=x[5:], retain_y=y[5:])
    params = dict(InfluenceUnlearning.default_params)
    outs = [InfluenceUnlearning().unlearn(m, req, dict(params), MethodContext(0, "cpu", lambda: None)) for m in (plain, extra)]
    assert torch.equal(outs[1].unused.weight, before)
    moved = [k for k, v in outs[0].state_dict().items() if not torch.equal(v, start[k])]
    assert moved
    for k in moved:
        torch.testing.assert_close(outs[1].state_dict()[k], outs[0].state_dict()[k])


# -- parameters -----------------------------------------------------------------------------------

_SGD = [("lr", 0.0), ("lr", -0.1), ("lr", NAN), ("momentum", 1.0), ("momentum", -0.1), ("weight_decay", -1e-4)]
BAD = [
    *[(L1Sparse(), k, v) for k, v in [("alpha", -1e-3), ("alpha", NAN), ("alpha", INF), ("epochs", 0), ("epochs", 2.5),
                                      ("batch_size", 0), ("no_l1_epochs", -1), ("no_l1_epochs", 11),
                                      ("no_l1_epochs", 1.5), *_SGD]],
    *[(InfluenceUnlearning(), k, v) for k, v in [("alpha", NAN), ("alpha", INF), ("damping", 0.0), ("damping", -1.0),
                                                 ("damping", NAN), ("max_retain", -1), ("max_retain", 2.5),
                                                 ("recursion", "exact"), ("batch_size", 0), ("chunk_size", -1)]],
]


@pytest.mark.parametrize("method,key,value", BAD, ids=[f"{m.name}-{k}={v}" for m, k, v in BAD])
def test_bad_params_are_refused(method, key, value):
    with pytest.raises(BenchError, match=f"{key}="):
        check_params(method.name, method, {**method.default_params, key: value})


@pytest.mark.parametrize("method", [L1Sparse(), InfluenceUnlearning()], ids=["l1-sparse", "iu"])
def test_defaults_and_digits_setting_are_accepted(method):
    check_params(method.name, method, dict(method.default_params))
    check_params(method.name, method, {**method.default_params, **dataset_params(method, "digits")})
    assert set(method.search_space) <= set(method.default_params)


# -- digits class 3, the method called directly on the default MLP --------------------------------

@pytest.fixture(scope="module")
def digits_original():
    set_threads(1)
    d = Digits().load(None, False, None)
    torch.manual_seed(0)  # the harness's new_model(): seeded by the trial seed, then fit with it
    original = fit(MLP(64, (256, 256), 10), d.train_x, d.train_y, build_recipe(Digits.default_recipe), seed=0)
    return d, original


@pytest.mark.parametrize("method", [L1Sparse(), InfluenceUnlearning()], ids=["l1-sparse", "iu"])
def test_digits_class_3_is_forgotten_with_the_declared_digits_defaults(digits_original, method):
    d, original = digits_original
    forget, other = d.train_y == 3, d.test_y != 3
    model = MLP(64, (256, 256), 10)
    model.load_state_dict(original.state_dict())
    req = ForgetRequest(num_classes=10, kind="class", forget_class=3, forget_x=d.train_x[forget],
                        forget_y=d.train_y[forget], retain_x=d.train_x[~forget], retain_y=d.train_y[~forget])
    params = {**method.default_params, **dataset_params(method, "digits")}
    out = method.unlearn(model, req, params, MethodContext(0, "cpu", lambda: MLP(64, (256, 256), 10)))
    base = accuracy(original, d.test_x[other], d.test_y[other])
    assert accuracy(original, req.forget_x, req.forget_y) > 0.95
    assert accuracy(out, req.forget_x, req.forget_y) <= 0.05
    assert accuracy(out, d.test_x[other], d.test_y[other]) >= base - 0.03


# -- through the harness --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_digits_class_3_through_the_harness(baseline_trials):
    code, out, kids = baseline_trials("class:3", attacks="")
    assert code == 0, out
    for name in ("l1-sparse", "iu"):
        row = kids.loc[name]
        assert row["metrics.original_forget_acc"] > 0.95
        assert row["metrics.forget_acc"] <= 0.05, (name, row["metrics.forget_acc"])
        drop = row["metrics.original_test_retain_class_acc"] - row["metrics.test_retain_class_acc"]
        assert drop <= 0.03, (name, drop)
    assert float(kids.loc["l1-sparse", "params.params.alpha"]) == 6e-3  # the declared digits setting
    assert float(kids.loc["iu", "params.params.alpha"]) == 13.0


@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_digits_random_10_percent_end_to_end_with_the_default_attacks(baseline_trials):
    code, out, kids = baseline_trials("random:10%")
    assert code == 0, out
    for name in ("l1-sparse", "iu"):
        row = kids.loc[name]
        assert row["status"] == "FINISHED"
        for key in ("forget_acc", "retain_acc", "test_acc", "avg_gap", "unlearn_seconds", "loss_auc", "entropy_auc",
                    "mia_efficacy"):
            value = row[f"metrics.{key}"]
            assert value == value, (name, key)  # logged, not NaN
        assert row["metrics.test_acc"] >= 0.9, (name, row["metrics.test_acc"])
    assert kids.loc["iu", "metrics.iu_retain_examples"] == 394.0  # the memory budget on the 85,002-parameter MLP
    table = out[out.index("attacks on the forget set"):]
    assert all(h in table for h in ("loss_auc", "entropy_auc", "mia_efficacy")), table
    lines = table.splitlines()
    assert any("│ l1-sparse " in line for line in lines) and any("│ iu " in line for line in lines), table
