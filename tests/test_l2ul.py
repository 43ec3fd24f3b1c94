"""L2UL (methods/l2ul.py): the issue's "Must show" items on a digits MLP trained here, the targeted
L2 PGD, and regression tests for the released code's defects (spec ../shared/specs/l2ul.md §5)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bench.contracts import ForgetRequest, MethodContext
from bench.datasets.digits import Digits
from bench.errors import BenchError
from bench.methods.l2ul import (
    L2UL, L2ULAdv, L2ULNaive, L2ULOracle, invert_importance, l2_pgd_targeted, mas_importance, random_other_labels,
)
from bench.nets import MLP, SmallCNN
from bench.plugins import get_registry
from bench.recipe import build_recipe
from bench.training import accuracy, fit


@pytest.fixture(scope="module")
def trained():
    """digits, an mlp 256-256 trained with the digits recipe (seed 0), 16 random training points."""
    torch.set_num_threads(1)
    d = Digits().load(None, False, None)
    torch.manual_seed(0)
    model = fit(MLP(64, (256, 256), 10), d.train_x, d.train_y, build_recipe(Digits.default_recipe), seed=0)
    fx, fy = _forget_points(d, 0)
    return d, model, fx, fy


@pytest.fixture(scope="module")
def trained_cnn():
    """digits, the small CNN (``cnn:32,64``) trained with the digits recipe (seed 0)."""
    torch.set_num_threads(1)
    d = Digits().load(None, False, None)
    torch.manual_seed(0)
    return d, fit(SmallCNN(1, 10, (32, 64)), d.train_x, d.train_y, build_recipe(Digits.default_recipe), seed=0)


def _forget_points(d, seed):
    idx = torch.as_tensor(np.sort(np.random.default_rng(seed).choice(len(d.train_y), 16, replace=False)))
    return d.train_x[idx], d.train_y[idx]


def _unlearn(method, model, fx, fy, seed=0, **params):
    p = {**method.default_params, **params}
    ctx = MethodContext(seed=seed, device="cpu", new_model=None)
    out = method.unlearn(copy.deepcopy(model), ForgetRequest(num_classes=10, kind="random", forget_x=fx, forget_y=fy), p, ctx)
    return out, ctx.metrics


def _digits(method, **params):
    """The method's digits defaults (its ``dataset_params``), with ``params`` on top."""
    return {**method.dataset_params["digits"], **params}


PAPER_OBJECTIVE = {"forget_loss": "neg_ce", "mask_misclassified": False}


def test_l2ul_on_a_digits_cnn_forgets_16_points_within_5_points_of_test_accuracy(trained_cnn):
    """The issue's "Must show", on the digits CNN with the method's digits defaults (the bounded
    forget objective: unlikelihood, misclassified instances masked); the paper's -CE objective with
    the same settings is reported beside it (figures in docs/l2ul.md)."""
    d, model = trained_cnn
    fx, fy = _forget_points(d, 0)
    before = accuracy(model, d.test_x, d.test_y)
    assert accuracy(model, fx, fy) == 1.0
    figures = {}
    for method in (L2ULNaive(), L2ULAdv(), L2UL()):
        for objective, extra in (("bounded", {}), ("paper", PAPER_OBJECTIVE)):
            if objective == "paper" and method.variant != "full":
                continue
            out, metrics = _unlearn(method, model, fx, fy, **_digits(method, **extra))
            figures[method.name, objective] = (accuracy(out, fx, fy), accuracy(out, d.test_x, d.test_y), metrics)
    print(f"\ncnn original test {before:.3f}; " + "; ".join(
        f"{k} ({o}): forget {f:.3f} test {t:.3f} goal {m['l2ul_goal_reached']:.0f} epochs {m['l2ul_epochs']:.0f}"
        for (k, o), (f, t, m) in figures.items()))
    f_full, t_full, m_full = figures["l2ul", "bounded"]
    assert f_full == 0.0 and m_full["l2ul_goal_reached"] == 1.0 and m_full["l2ul_goal_fraction"] == 1.0
    assert t_full >= before - 0.05  # measured 0.944 (original 0.983)
    # the paper's -CE objective reaches the goal too, but far from the original test accuracy
    f_paper, t_paper, _ = figures["l2ul", "paper"]
    assert f_paper == 0.0 and t_paper < before - 0.05
    # adversarial examples and importance keep more test accuracy than the naive baseline
    _, t_adv, m_adv = figures["l2ul-adv", "bounded"]
    _, t_naive, _ = figures["l2ul-naive", "bounded"]
    assert m_adv["l2ul_goal_reached"] == 1.0
    assert t_full > t_adv > t_naive


def test_paper_objective_on_the_digits_mlp_adv_keeps_more_test_accuracy_than_naive(trained):
    """The paper's -CE objective (the method's defaults outside the code's datasets and digits) on
    the digits MLP: naive collapses, adv and full reach the goal far below the original."""
    d, model, fx, fy = trained
    before = accuracy(model, d.test_x, d.test_y)
    assert accuracy(model, fx, fy) == 1.0
    figures = {}
    for method in (L2ULNaive(), L2ULAdv(), L2UL()):
        assert method.default_params["forget_loss"] == "neg_ce" and not method.default_params["mask_misclassified"]
        out, metrics = _unlearn(method, model, fx, fy)
        figures[method.name] = (accuracy(out, fx, fy), accuracy(out, d.test_x, d.test_y), metrics)
    print(f"\nmlp original test {before:.3f}; " + "; ".join(
        f"{k}: forget {f:.3f} test {t:.3f} goal {m['l2ul_goal_reached']:.0f} epochs {m['l2ul_epochs']:.0f}"
        for k, (f, t, m) in figures.items()))
    f_full, t_full, m_full = figures["l2ul"]
    assert f_full == 0.0 and m_full["l2ul_goal_reached"] == 1.0 and m_full["l2ul_goal_fraction"] == 1.0
    f_adv, t_adv, m_adv = figures["l2ul-adv"]
    assert f_adv == 0.0 and m_adv["l2ul_goal_reached"] == 1.0
    # the naive baseline collapses the model (chance-level test accuracy) without reaching its goal;
    # the adversarial examples keep more test accuracy (still far from the original on digits)
    _, t_naive, m_naive = figures["l2ul-naive"]
    assert t_naive < 0.2 and m_naive["l2ul_goal_reached"] == 0.0
    assert t_adv > t_naive + 0.1 and t_full > t_naive + 0.1


def test_oracle_with_the_remaining_data_meets_the_target_where_forget_only_variants_miss(trained):
    """``l2ul-oracle`` (the code's Case 0: the forget term plus CE on the remaining data, weighted as
    the adversarial batch would be) on the digits MLP, forget sets of seeds 0-2: with the bounded
    objective it reaches forget accuracy 0 within 5 points of the original test accuracy (measured
    0.969 / 0.969 / 0.958, original 0.975), which no forget-only variant does on this model; with
    the paper's -CE even the remaining data does not prevent the collapse (0.10-0.14)."""
    d, model, _, _ = trained
    before = accuracy(model, d.test_x, d.test_y)
    oracle = L2ULOracle()
    for seed in (0, 1, 2):
        idx = torch.as_tensor(np.sort(np.random.default_rng(seed).choice(len(d.train_y), 16, replace=False)))
        keep = torch.ones(len(d.train_y), dtype=torch.bool)
        keep[idx] = False
        request = ForgetRequest(num_classes=10, kind="random", forget_x=d.train_x[idx], forget_y=d.train_y[idx],
                                retain_x=d.train_x[keep], retain_y=d.train_y[keep])
        tests = {}
        for objective, extra in (("bounded", {}), ("paper", PAPER_OBJECTIVE)):
            ctx = MethodContext(seed=seed, device="cpu", new_model=None)
            out = oracle.unlearn(copy.deepcopy(model), request, {**oracle.default_params, **_digits(oracle, **extra)}, ctx)
            tests[objective] = (accuracy(out, request.forget_x, request.forget_y), accuracy(out, d.test_x, d.test_y),
                                ctx.metrics["l2ul_goal_reached"])
        print(f"\noracle seed {seed}: original {before:.3f}, {tests}")
        forget, test, goal = tests["bounded"]
        assert forget == 0.0 and goal == 1.0 and test >= before - 0.05
        assert tests["paper"][1] < before - 0.3
    # without the remaining data the variant is refused with the method to use
    with pytest.raises(BenchError, match="l2ul-oracle"):
        _unlearn(L2UL(), model, request.forget_x, request.forget_y, variant="oracle", retain_batch_size=256)


#: The function-space anchor on random inputs with the straggler mean (a deviation, docs/l2ul.md).
ANCHOR = {"anchor_weight": 4.0, "forget_mean": "active", "lr": 3e-3, "max_epochs": 1000}


def test_random_input_anchor_meets_the_target_on_a_forget_set_the_defaults_miss(trained_cnn):
    """Forget set of seed 1 on the digits CNN: the digits defaults reach the goal at 0.892, 9 points
    below the original; with the anchor on random inputs ``l2ul`` reaches it within 5 points
    (measured 0.953 in this test, original 0.983), still using only the model and the forget set."""
    d, model = trained_cnn
    before = accuracy(model, d.test_x, d.test_y)
    fx, fy = _forget_points(d, 1)
    tests = {}
    for label, extra in (("defaults", {}), ("anchor", ANCHOR)):
        out, metrics = _unlearn(L2UL(), model, fx, fy, seed=1, **_digits(L2UL(), **extra))
        assert metrics["l2ul_goal_reached"] == 1.0 and accuracy(out, fx, fy) == 0.0
        tests[label] = accuracy(out, d.test_x, d.test_y)
    print(f"\nseed 1: original {before:.3f}, defaults {tests['defaults']:.3f}, anchor {tests['anchor']:.3f}")
    assert tests["defaults"] < before - 0.05 <= tests["anchor"]


#: The recommended anchor: half the inputs from the forget set's pixel marginals, KL (docs/l2ul.md).
PIXEL_ANCHOR = {**ANCHOR, "anchor_inputs": "mixed", "anchor_loss": "kl"}


def test_forget_pixel_anchor_meets_the_target_where_the_uniform_anchor_misses(trained_cnn):
    """Forget set of seed 5 on the digits CNN: the anchor on uniform inputs reaches the goal 6
    points below the original (0.919 in this test, on one thread; 0.925 in docs/l2ul.md); with half
    of the inputs drawn from the forget set's pixel marginals and the KL between the outputs,
    ``l2ul`` reaches forget accuracy 0 within 5 points (0.942 here, 0.950 there; original 0.983)."""
    d, model = trained_cnn
    before = accuracy(model, d.test_x, d.test_y)
    fx, fy = _forget_points(d, 5)
    tests = {}
    for label, extra in (("uniform", ANCHOR), ("pixels", PIXEL_ANCHOR)):
        out, metrics = _unlearn(L2UL(), model, fx, fy, seed=5, **_digits(L2UL(), **extra))
        assert metrics["l2ul_goal_reached"] == 1.0 and accuracy(out, fx, fy) == 0.0
        tests[label] = accuracy(out, d.test_x, d.test_y)
    print(f"\nseed 5: original {before:.3f}, uniform anchor {tests['uniform']:.3f}, pixel anchor {tests['pixels']:.3f}")
    assert tests["uniform"] < before - 0.05 <= tests["pixels"]


@pytest.mark.slow
def test_forget_pixel_anchor_on_the_other_forget_sets_of_the_digits_cnn(trained_cnn):
    """Forget sets of seeds 2, 3 and 4 (docs/l2ul.md gives seeds 0-9: the target met on 9 of 10):
    with the recommended anchor ``l2ul`` reaches forget accuracy 0 within 5 points of the
    original test accuracy on each (measured 0.967 / 0.969 / 0.969 in this test, on one thread)."""
    d, model = trained_cnn
    before = accuracy(model, d.test_x, d.test_y)
    for seed in (2, 3, 4):
        fx, fy = _forget_points(d, seed)
        out, metrics = _unlearn(L2UL(), model, fx, fy, seed=seed, **_digits(L2UL(), **PIXEL_ANCHOR))
        test = accuracy(out, d.test_x, d.test_y)
        print(f"\nseed {seed}: original {before:.3f}, pixel anchor {test:.3f}, steps {metrics['l2ul_steps']:.0f}")
        assert metrics["l2ul_goal_reached"] == 1.0 and accuracy(out, fx, fy) == 0.0 and test >= before - 0.05


def test_forget_pixel_anchor_meets_the_target_on_the_digits_mlp(trained):
    """On the digits MLP the recommended anchor with λ = 0.01 (the digits λ 0.1 holds the MLP: the
    goal is missed at the cap) reaches forget accuracy 0 within 5 points of the original test
    accuracy on the forget sets of seeds 0 and 1 (0.947 / 0.953 in docs/l2ul.md, original 0.975;
    8 of 10 forget sets there)."""
    d, model, _, _ = trained
    before = accuracy(model, d.test_x, d.test_y)
    for seed in (0, 1):
        fx, fy = _forget_points(d, seed)
        out, metrics = _unlearn(L2UL(), model, fx, fy, seed=seed, **_digits(L2UL(), **PIXEL_ANCHOR, lam=0.01))
        test = accuracy(out, d.test_x, d.test_y)
        print(f"\nmlp seed {seed}: original {before:.3f}, pixel anchor {test:.3f}, steps {metrics['l2ul_steps']:.0f}")
        assert metrics["l2ul_goal_reached"] == 1.0 and accuracy(out, fx, fy) == 0.0 and test >= before - 0.05

def test_random_input_anchor_samples_the_input_domain_and_is_zero_at_the_start():
    from bench.methods.l2ul import _RandomInputAnchor

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    seen = []
    net.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    lo, hi = torch.tensor([[0.0, -1.0]]), torch.tensor([[1.0, 3.0]])  # per-feature bounds of a 2x2 input
    anchor = _RandomInputAnchor(net, (lo, hi), (64, 2, 2), torch.Generator().manual_seed(0))
    assert float(anchor(net)) == 0.0  # the model as given matches itself
    u = seen[-1]
    anchor(net)
    assert u.shape == (64, 2, 2) and not torch.equal(u, seen[-1])  # fresh inputs at every step
    assert (u >= lo).all() and (u <= hi).all() and u[:, :, 1].min() < -0.5 and u[:, :, 1].max() > 2.5
    with torch.no_grad():
        net[1].bias += 1.0  # every logit moves by 1: the anchor is the mean squared difference
    assert float(anchor(net)) == pytest.approx(1.0)
    # the original's copy does not follow the model, and is frozen
    assert all(not q.requires_grad for q in anchor.original.parameters())
    # both models see the random inputs in eval mode: BatchNorm statistics are left alone
    bn = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).train()
    anchor = _RandomInputAnchor(bn, (lo, hi), (64, 2, 2), torch.Generator().manual_seed(0))
    stats = bn[2].running_mean.clone()
    value = anchor(bn)
    assert float(value) == 0.0 and torch.equal(bn[2].running_mean, stats) and bn.training


def test_forget_pixel_anchor_inputs_and_the_kl_anchor():
    """``anchor_inputs="forget_pixels"`` draws every pixel from the same pixel of some forget
    instance (the product of the per-pixel marginals: new inputs, not the forget images);
    ``"mixed"`` draws half uniformly; ``anchor_loss="kl"`` compares softmax outputs, so it is 0 at
    the start and ignores a shift of every logit that the MSE counts."""
    from bench.methods.l2ul import _RandomInputAnchor

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    seen = []
    net.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    lo, hi = torch.tensor(-5.0), torch.tensor(5.0)
    fx = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[10.0, 11.0], [12.0, 13.0]], [[20.0, 21.0], [22.0, 23.0]]])
    g = torch.Generator().manual_seed(0)
    anchor = _RandomInputAnchor(net, (lo, hi), (200, 2, 2), g, inputs="forget_pixels", loss="kl", forget_x=fx)
    assert float(anchor(net)) == pytest.approx(0.0, abs=1e-6)
    u = seen[-1]
    assert u.shape == (200, 2, 2)
    # every pixel is the same pixel of one of the forget instances, and all three occur at each pixel
    for i in range(2):
        for j in range(2):
            assert set(u[:, i, j].tolist()) == {float(fx[k, i, j]) for k in range(3)}
    # pixels are drawn independently: most inputs mix pixels of different forget instances
    owner = (u.flatten(1) // 10).long()
    assert (owner != owner[:, :1]).any(1).float().mean() > 0.5
    with torch.no_grad():
        net[1].bias += 1.0  # the same shift on every logit: probabilities unchanged
    assert float(anchor(net)) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        net[1].bias[0] += 2.0  # one class favoured: the KL is positive
    assert float(anchor(net)) > 1e-3
    mixed = _RandomInputAnchor(net, (lo, hi), (10, 2, 2), g, inputs="mixed", forget_x=fx)
    mixed(net)
    v = seen[-1]
    assert ((v[:5] >= -5) & (v[:5] <= 5)).all() and not torch.isin(v[:5], fx).any()  # 5 uniform inputs
    assert torch.isin(v[5:], fx).all()  # 5 from the forget pixels
    with pytest.raises(ValueError, match="forget_x"):
        _RandomInputAnchor(net, (lo, hi), (10, 2, 2), g, inputs="mixed")


@pytest.mark.slow
def test_bounded_objective_on_other_forget_sets_of_the_digits_cnn(trained_cnn):
    """Forget sets of seeds 1 and 2: the bounded objective reaches the goal and keeps more test
    accuracy than the paper's, but not within 5 points there (docs/l2ul.md records the figures)."""
    d, model = trained_cnn
    before = accuracy(model, d.test_x, d.test_y)
    for seed in (1, 2):
        fx, fy = _forget_points(d, seed)
        tests = {}
        for objective, extra in (("bounded", {}), ("paper", PAPER_OBJECTIVE)):
            out, metrics = _unlearn(L2UL(), model, fx, fy, seed=seed, **_digits(L2UL(), **extra))
            assert metrics["l2ul_goal_reached"] == 1.0 and accuracy(out, fx, fy) == 0.0
            tests[objective] = accuracy(out, d.test_x, d.test_y)
        print(f"\nseed {seed}: original {before:.3f}, bounded {tests['bounded']:.3f}, paper {tests['paper']:.3f}")
        assert tests["bounded"] > tests["paper"] + 0.1


def test_forget_losses_and_the_mask():
    """unlikelihood = -log(1 - p_y) (bounded below by 0, large where p_y is near 1, unlike -CE whose
    gradient vanishes there); the mask drops instances already misclassified."""
    from bench.methods.l2ul import _loss

    logits = torch.tensor([[9.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.5, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 0])  # confidently correct, misclassified, barely correct

    def model(_):
        return logits

    p = torch.softmax(logits, 1)[torch.arange(3), y]
    ul = _loss(model, None, y, None, "misclassify", "unlikelihood")
    assert torch.allclose(ul, (-torch.log1p(-p)).mean())
    ce = _loss(model, None, y, None, "misclassify", "neg_ce")
    assert torch.allclose(ce, -torch.nn.functional.cross_entropy(logits, y))
    (g_ul,) = torch.autograd.grad(ul, logits)
    (g_ce,) = torch.autograd.grad(ce, logits)
    assert g_ul[0, 0] > 100 * g_ce[0, 0] > 0  # the confident instance: -CE barely pushes it
    for forget_loss in ("neg_ce", "unlikelihood"):
        masked = _loss(model, None, y, None, "misclassify", forget_loss, mask=True)
        (g,) = torch.autograd.grad(masked, logits)
        assert torch.equal(g[1], torch.zeros(3)) and (g[0] != 0).any() and (g[2] != 0).any()
    # mean over the instances still correct: the push on the last ones does not fade as others flip
    ul_per = -torch.log1p(-p)
    for forget_loss in ("neg_ce", "unlikelihood"):
        batch = _loss(model, None, y, None, "misclassify", forget_loss, mask=True)
        active = _loss(model, None, y, None, "misclassify", forget_loss, mask=True, mean_active=True)
        assert torch.allclose(active, batch * 3 / 2)  # 2 of the 3 instances are still correct
    assert torch.allclose(_loss(model, None, y, None, "misclassify", "unlikelihood", mask=True, mean_active=True),
                          (ul_per[0] + ul_per[2]) / 2)
    # relabel mode ignores both: +CE towards the new labels
    rel = _loss(model, None, y, None, "relabel", "unlikelihood", mask=True)
    assert torch.allclose(rel, torch.nn.functional.cross_entropy(logits, y))


def test_a_strong_importance_anchor_keeps_test_accuracy_but_stops_at_the_epoch_cap(trained):
    d, model, fx, fy = trained
    out, metrics = _unlearn(L2UL(), model, fx, fy, lam=1.0, max_epochs=30)
    assert metrics["l2ul_goal_reached"] == 0.0 and metrics["l2ul_epochs"] == 30.0
    assert accuracy(out, d.test_x, d.test_y) > 0.8  # measured 0.878 (original 0.975)
    assert metrics["l2ul_goal_fraction"] == pytest.approx(1 - accuracy(out, fx, fy))


def test_relabel_mode_reaches_the_given_label(trained):
    d, model, fx, fy = trained
    keep = fy != 4
    out, metrics = _unlearn(L2ULAdv(), model, fx[keep], fy[keep], mode="relabel", relabel_to=4)
    assert metrics["l2ul_goal_reached"] == 1.0
    assert accuracy(out, fx[keep], torch.full_like(fy[keep], 4)) == 1.0
    out, metrics = _unlearn(L2ULAdv(), model, fx, fy, mode="relabel", relabel_to=-1, max_epochs=5)
    assert 0.0 <= metrics["l2ul_goal_fraction"] <= 1.0


def test_pgd_stays_in_the_eps_ball_and_hits_its_targets(trained):
    d, model, fx, fy = trained
    g = torch.Generator().manual_seed(0)
    weights = [p.detach().clone() for p in model.parameters()]
    rates = {}
    for eps in (0.5, 2.0):
        t = random_other_labels(fy, 10, g)
        xa = l2_pgd_targeted(model, fx, t, eps, 0.1, 100, torch.tensor(0.0), torch.tensor(1.0), g)
        norms = (xa - fx).flatten(1).norm(dim=1)
        assert (norms <= eps + 1e-5).all() and xa.min() >= 0 and xa.max() <= 1
        with torch.no_grad():
            rates[eps] = float((model(xa).argmax(1) == t).float().mean())
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    print(f"targeted L2 PGD success on 16 digits: eps 0.5 -> {rates[0.5]:.3f}, eps 2.0 -> {rates[2.0]:.3f}")
    assert rates[2.0] >= 0.9 and rates[0.5] < rates[2.0]
    _, metrics = _unlearn(L2UL(), model, fx, fy, max_epochs=1)
    assert metrics["l2ul_pgd_success"] >= 0.9


# -- regression tests for the released code's defects (spec §5) --------------------------------


def test_target_labels_avoid_the_true_label_and_are_uniform_over_the_others():
    """§5.4: the code's fallback ``(rand*C + C)//2`` always gave C//2 (and equals y when y = C//2)."""
    g = torch.Generator().manual_seed(0)
    C = 10
    y = torch.full((50_000,), C // 2)
    t = random_other_labels(y, C, g)
    assert (t != y).all()
    counts = torch.bincount(t, minlength=C).float()
    others = counts[torch.arange(C) != C // 2]
    assert others.min() / others.max() > 0.9  # uniform over the nine other classes
    # the released code's rule for comparison: class C//2 over-represented, and equal to y here
    raw = torch.randint(C, y.shape, generator=g)
    code = torch.where(raw == y, torch.full_like(raw, C // 2), raw)
    assert (code == y).float().mean() > 0.05


def test_mas_importance_clears_gradients_between_batches():
    """§5.5: the code zeroed the original model's gradients, so the copy's accumulated across batches."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    x = torch.randn(12, 6)
    got = mas_importance(model, x, batch_size=4)
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    accumulated = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    buggy = copy.deepcopy(model)
    for xb in x.split(4):
        fresh = copy.deepcopy(model)
        fresh(xb).norm(p=2, dim=1).mean().backward()
        buggy(xb).norm(p=2, dim=1).mean().backward()  # never zeroed, as in the released code
        for (n, p), (_, q) in zip(fresh.named_parameters(), buggy.named_parameters(), strict=True):
            expected[n] += p.grad.abs() * len(xb)
            accumulated[n] += q.grad.abs() * len(xb)
    for n in expected:
        assert torch.allclose(got[n], expected[n] / len(x), atol=1e-6), n
        assert not torch.allclose(got[n], accumulated[n] / len(x), atol=1e-6), n
    assert all(p.grad is None for p in model.parameters())  # computed on a copy


def test_inverted_importance_of_a_constant_tensor_is_one_not_nan():
    """§5.6: min-max normalisation divided by zero for a constant tensor (NaN loss)."""
    out = invert_importance({"const": torch.full((3, 3), 0.7), "zeros": torch.zeros(4), "v": torch.tensor([0.0, 1.0, 2.0])})
    assert torch.equal(out["const"], torch.ones(3, 3)) and torch.equal(out["zeros"], torch.ones(4))
    assert torch.allclose(out["v"], torch.tensor([1.0, 0.5, 0.0]))


class _WithUnusedParameter(torch.nn.Module):
    """An MLP plus a parameter the forward pass never uses: its MAS importance is constant (zero)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.unused = torch.nn.Parameter(torch.ones(5))

    def forward(self, x):
        return self.net(x)


def test_full_method_runs_with_a_constant_importance_tensor(trained):
    d, model, fx, fy = trained
    wrapped = _WithUnusedParameter(copy.deepcopy(model))
    out, metrics = _unlearn(L2UL(), wrapped, fx, fy, max_epochs=3)
    assert all(torch.isfinite(p).all() for p in out.parameters())
    assert metrics["l2ul_steps"] > 0


# -- plugin surface ------------------------------------------------------------------------------


def test_names_registered_using_only_the_forget_set_except_the_oracle():
    reg = get_registry()
    for name, variant in (("l2ul", "full"), ("l2ul-adv", "adv"), ("l2ul-naive", "naive")):
        obj = reg.get("method", name)
        assert obj.requires == frozenset({"forget"}) and obj.default_params["variant"] == variant
    assert "lam" in reg.get("method", "l2ul").search_space and "eps" in reg.get("method", "l2ul-adv").search_space
    assert "eps" not in reg.get("method", "l2ul-naive").default_params
    oracle = reg.get("method", "l2ul-oracle")
    assert oracle.requires == frozenset({"forget", "retain"}) and oracle.default_params["variant"] == "oracle"
    assert "eps" not in oracle.default_params and "lam" not in oracle.default_params


def test_per_dataset_defaults_and_user_values_win():
    from bench.experiment import MethodPlan, params_for_dataset

    obj = L2UL()
    plan = MethodPlan("l2ul", obj, {**obj.default_params, "lr": 0.5}, ("forget",), "builtin")
    cifar = params_for_dataset(plan, "cifar10", {"lr": "0.5"})
    assert cifar["eps"] == 4.0 and cifar["lam"] == 1.0 and cifar["max_epochs"] == 1000 and cifar["lr"] == 0.5
    assert params_for_dataset(plan, "synthetic:n=300", {}) == plan.params
    assert cifar["forget_loss"] == "neg_ce" and not cifar["mask_misclassified"]  # the paper's objective
    digits = params_for_dataset(plan, "digits", {})
    assert digits["forget_loss"] == "unlikelihood" and digits["mask_misclassified"] and digits["lam"] == 0.1


def test_bad_variant_mode_and_label_are_clear_errors(trained):
    _, model, fx, fy = trained
    for params, words in (({"variant": "adv+"}, "unknown variant"), ({"mode": "flip"}, "unknown mode"),
                          ({"mode": "relabel", "relabel_to": 10}, "not a class"),
                          ({"forget_loss": "ce"}, "unknown forget_loss"),
                          ({"forget_mean": "sum"}, "unknown forget_mean"),
                          ({"anchor_weight": -1.0}, "anchor_weight >= 0"),
                          ({"anchor_inputs": "gaussian"}, "unknown anchor_inputs"),
                          ({"anchor_loss": "l1"}, "unknown anchor_loss")):
        with pytest.raises(BenchError, match=words):
            _unlearn(L2UL(), model, fx, fy, **params)
    with pytest.raises(BenchError, match="needs the parameters"):
        _unlearn(L2ULNaive(), model, fx, fy, variant="full")


def test_empty_request_returns_the_model_unchanged(trained):
    _, model, fx, fy = trained
    out, metrics = _unlearn(L2UL(), model, fx[:0], fy[:0])
    assert metrics["l2ul_goal_reached"] == 1.0 and metrics["l2ul_steps"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(out.parameters(), model.parameters(), strict=True))


def test_pgd_domain_comes_from_the_request_when_given(trained):
    from types import SimpleNamespace

    from bench.methods.l2ul import _bounds

    _, _, fx, _ = trained
    lo, hi = _bounds(SimpleNamespace(input_bounds=(0.25, 0.75)), fx)
    assert (float(lo), float(hi)) == (0.25, 0.75)
    lo, hi = _bounds(SimpleNamespace(), fx)  # no domain given: the range of the forget inputs
    assert (float(lo), float(hi)) == (float(fx.min()), float(fx.max()))
