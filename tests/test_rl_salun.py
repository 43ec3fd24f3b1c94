"""Random Labels (``rl``), SalUn (``salun``) and SalUn-soft (``salun-soft``): conformance, parameter
checks, the saliency mask, SalUn's frozen weights (bit-identical to the original's), and the
methods' goals on digits through the harness."""

from __future__ import annotations

import copy

import pytest
import torch
from bench.methods.rl import RandomLabels
from bench.methods.salun import HardMask, Proximal, SalUn, SalUnSoft, saliency_mask
from torch import nn

from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.errors import BenchError
from bench.core.method import check_params
from bench.testing import check_method, toy_setting

METHODS = [RandomLabels(), SalUn(), SalUnSoft()]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _request(setting=None, forget_class=3):
    s = setting or toy_setting()
    x, y, _, _ = s.data()
    f = y == forget_class
    return ForgetRequest(num_classes=s.num_classes, kind="class", forget_class=forget_class,
                         forget_indices=torch.nonzero(f).flatten().numpy(), forget_x=x[f], forget_y=y[f],
                         retain_x=x[~f], retain_y=y[~f])


def _ctx(seed=0):
    s = toy_setting()
    return MethodContext(seed=seed, device="cpu", new_model=lambda: s.new_model(seed))


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


# -- conformance and parameters ----------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_conformance(method):
    check_method(method)


def test_registered_with_sources_in_their_docstrings():
    from bench.core.plugins import get_registry

    names = {e.obj.name for e in get_registry().entries("method")}
    assert {"rl", "salun", "salun-soft"} <= names
    import bench.methods.rl as rl
    import bench.methods.salun as salun

    assert "Classification/unlearn/RL.py" in rl.__doc__
    for needle in ("Classification/generate_mask.py", "RL_pro.py", "PR #33", "ICLR 2024"):
        assert needle in salun.__doc__, needle


@pytest.mark.parametrize("method,key,bad", [
    (RandomLabels(), "epochs", 0), (RandomLabels(), "epochs", 2.5), (RandomLabels(), "batch_size", 0),
    (RandomLabels(), "lr", 0.0), (RandomLabels(), "lr", float("inf")), (RandomLabels(), "momentum", 1.0),
    (RandomLabels(), "weight_decay", -1e-4), (RandomLabels(), "passes", "both"),
    (SalUn(), "threshold", 0.0), (SalUn(), "threshold", 1.5), (SalUn(), "threshold", float("nan")),
    (SalUn(), "lr", -0.01), (SalUnSoft(), "mask_ratio", -0.1), (SalUnSoft(), "mask_ratio", 1.01),
    (SalUnSoft(), "passes", "mixed"),
])
def test_check_params_refuses_bad_values(method, key, bad):
    params = {**method.default_params, key: bad}
    with pytest.raises(ValueError, match=f"^{key}="):
        method.check_params(params)
    with pytest.raises(BenchError, match=f"-p {method.name}.{key}=VALUE"):
        check_params(method.name, method, params)
    with pytest.raises(BenchError):  # a direct call refuses before any work as well
        method.unlearn(toy_setting().original_copy(), _request(), params, _ctx())


def test_defaults_are_the_reference_ones():
    assert RandomLabels.default_params == {"epochs": 10, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
                                           "batch_size": 256, "passes": "alternate"}
    assert SalUn.default_params["threshold"] == 0.5 and SalUn.default_params["passes"] == "alternate"
    assert SalUnSoft.default_params["mask_ratio"] == 0.5 and SalUnSoft.default_params["passes"] == "joint"
    for m in METHODS:
        m.check_params(dict(m.default_params))
        for overrides in m.dataset_params.values():
            m.check_params({**m.default_params, **overrides})


# -- the saliency mask and the frozen weights ------------------------------------------------------


def test_saliency_mask_keeps_the_global_top_fraction_of_the_forget_gradient():
    s = toy_setting()
    model = s.original_copy()
    req = _request()
    mask = saliency_mask(model, req.forget_x, req.forget_y, batch_size=10_000, threshold=0.3)
    # one batch: the summed gradient is that of -CE over the whole forget set, in eval mode
    model.zero_grad()
    (-nn.functional.cross_entropy(model(req.forget_x), req.forget_y)).backward()
    grads = torch.cat([p.grad.abs().flatten() for p in model.parameters()])
    chosen = torch.cat([m.flatten() for m in mask])
    assert chosen.dtype == torch.bool and int(chosen.sum()) == int(0.3 * len(grads))
    assert grads[chosen].min() >= grads[~chosen].max()
    assert [m.shape for m in mask] == [p.shape for p in model.parameters()]


@pytest.mark.parametrize("make", ["toy", "batchnorm"])
def test_salun_leaves_masked_out_weights_bit_identical_with_weight_decay_and_momentum(make):
    s = toy_setting()
    if make == "toy":
        model = s.original_copy()
    else:  # BatchNorm weights and biases are parameters too; running statistics are buffers
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    method = SalUn()
    params = dict(method.default_params)
    assert params["weight_decay"] > 0 and params["momentum"] > 0
    req = _request()
    original = _weights(model)
    mask = saliency_mask(copy.deepcopy(model), req.forget_x, req.forget_y, params["batch_size"], params["threshold"])
    out = method.unlearn(model, req, params, _ctx())
    moved = 0
    for before, after, m in zip(original, _weights(out), mask, strict=True):
        assert torch.equal(after[~m], before[~m])  # bit-identical, not merely close
        moved += int((after[m] != before[m]).sum())
    kept = sum(int(m.sum()) for m in mask)
    assert kept == int(0.5 * sum(p.numel() for p in original))
    assert moved > 0.5 * kept  # the salient half did train


def test_without_the_reset_weight_decay_and_momentum_would_move_frozen_weights():
    """The upstream bug that PR #33 fixed: masking gradients alone is not enough."""
    s = toy_setting()
    model = s.original_copy()
    req = _request()
    mask = saliency_mask(model, req.forget_x, req.forget_y, 256, 0.5)
    hard = HardMask(model, mask)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(req.retain_x), req.retain_y).backward()
        hard.before_step(model)
        opt.step()
    frozen_moved = any(not torch.equal(p[~m], t[~m]) for p, m, t in zip(model.parameters(), mask, hard.theta0))
    assert frozen_moved
    hard.after_step(model, opt, 0)
    for p, m, t in zip(model.parameters(), mask, hard.theta0, strict=True):
        assert torch.equal(p[~m], t[~m])
        assert torch.equal(opt.state[p]["momentum_buffer"][~m], torch.zeros_like(t[~m]))


def test_salun_with_the_whole_mask_is_rl_bit_for_bit():
    s = toy_setting()
    rl = RandomLabels().unlearn(s.original_copy(), _request(), dict(RandomLabels.default_params), _ctx(3))
    full = {**SalUn.default_params, "threshold": 1.0}
    salun = SalUn().unlearn(s.original_copy(), _request(), full, _ctx(3))
    assert all(torch.equal(a, b) for a, b in zip(_weights(rl), _weights(salun), strict=True))


def test_salun_soft_without_the_proximal_step_is_joint_rl_bit_for_bit():
    s = toy_setting()
    rl = RandomLabels().unlearn(s.original_copy(), _request(), {**RandomLabels.default_params, "passes": "joint"}, _ctx(1))
    soft = SalUnSoft().unlearn(s.original_copy(), _request(), {**SalUnSoft.default_params, "mask_ratio": 0.0}, _ctx(1))
    assert all(torch.equal(a, b) for a, b in zip(_weights(rl), _weights(soft), strict=True))


def test_proximal_step_soft_thresholds_towards_the_epoch_start():
    torch.manual_seed(0)
    model = nn.Linear(10, 10)
    prox = Proximal(mask_ratio=0.5, epochs=2, steps=5)
    prox.start_epoch(model, 0)
    n = sum(p.numel() for p in model.parameters())
    assert prox.k == int(0.5 * ((10 - 1) / 10 * n))
    anchor = [a.clone() for a in prox.anchor]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape))
    moved = _weights(model)
    prox.after_step(model, None, 0)
    d = torch.cat([(m - a).flatten() for m, a in zip(moved, anchor)])
    lam = d.abs().kthvalue(prox.k).values
    now = torch.cat([(p.detach() - a).flatten() for p, a in zip(model.parameters(), anchor)])
    reset = now == 0
    assert int(reset.sum()) == prox.k  # the k smallest changes return to the anchor exactly
    expected = torch.sign(d) * (d.abs() - lam).clamp(min=0)
    assert torch.allclose(now, expected, atol=1e-6)
    prox.start_epoch(model, 1)  # the anchor moves to the weights at the epoch's start; k decays
    assert prox.k == int(0.5 * ((10 - 6) / 10 * n))
    assert all(torch.equal(a, p) for a, p in zip(prox.anchor, model.parameters()))


def test_random_labels_are_drawn_per_batch_over_all_classes(monkeypatch):
    """The forget pass trains on labels drawn uniformly over K, the true one included; the
    retain pass on the true labels, each retain point once per epoch."""
    from bench.methods.rl import train_random_labels

    seen = []
    cross_entropy = nn.functional.cross_entropy

    def spy(logits, y):
        seen.append(y.clone())
        return cross_entropy(logits, y)

    monkeypatch.setattr(nn.functional, "cross_entropy", spy)
    req = _request()
    params = {**RandomLabels.default_params, "epochs": 3, "batch_size": 16}
    train_random_labels(toy_setting().original_copy(), req, params, _ctx())
    per_epoch, nf_batches = len(seen) // 3, -(-len(req.forget_y) // 16)
    forget_labels = torch.cat([b for e in range(3) for b in seen[e * per_epoch:e * per_epoch + nf_batches]])
    assert set(forget_labels.tolist()) == set(range(10))  # all classes, the forgotten one included
    assert not torch.equal(seen[0], seen[per_epoch])  # drawn afresh
    retain_labels = torch.cat(seen[nf_batches:per_epoch])
    assert sorted(retain_labels.tolist()) == sorted(req.retain_y.tolist())


# -- through the harness (slow) ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_each_forgets_a_digits_class_and_keeps_the_other_classes(baseline_trials):
    """digits, default mlp, class:3, defaults (with their digits dataset_params): forget accuracy
    <= 0.05 and test accuracy on the other classes within 3 points of the original's."""
    code, out, kids = baseline_trials("class:3", attacks="")
    assert code == 0, out
    assert kids.loc["salun-soft", "params.params.passes"] == "alternate"  # digits dataset_params
    for name in ("rl", "salun", "salun-soft"):
        k = kids.loc[name]
        assert k["metrics.original_forget_acc"] > 0.95, name
        assert k["metrics.forget_acc"] <= 0.05, (name, k["metrics.forget_acc"])
        drop = k["metrics.original_test_retain_class_acc"] - k["metrics.test_retain_class_acc"]
        assert drop <= 0.03, (name, drop)


@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_random_forgetting_end_to_end_with_the_default_attacks(baseline_trials):
    code, out, kids = baseline_trials("random:10%")
    assert code == 0, out
    table = out[out.index("attacks on the forget set"):]
    for name in ("rl", "salun", "salun-soft"):
        k = kids.loc[name]
        assert k["status"] == "FINISHED", name
        for metric in ("forget_acc", "retain_acc", "test_acc", "avg_gap", "unlearn_seconds", "loss_auc",
                       "mia_efficacy", "entropy_auc"):
            assert k[f"metrics.{metric}"] == k[f"metrics.{metric}"], (name, metric)  # logged, not NaN
        assert k["metrics.retain_acc"] > 0.9 and k["metrics.test_acc"] > 0.9, name
        line = next(line for line in table.splitlines() if f"│ {name} " in line)
        assert f"{k['metrics.mia_efficacy']:.3f}" in line, line


@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_continual_requests_run(baseline_trials):
    code, out, kids = baseline_trials("seq:3x10", attacks="")
    assert code == 0, out
    assert set(kids.index) >= {"rl", "salun", "salun-soft"}
    assert (kids["status"] == "FINISHED").all()
