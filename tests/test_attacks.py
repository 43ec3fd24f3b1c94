"""Membership-inference attacks and privacy metrics (issue 5) on models trained in the test.

Must show: an overfit model leaks to the loss attack (AUC >= 0.6, train vs test); LiRA with 8
shadow models beats the loss attack's TPR at 1% FPR on it; the retrained reference does not leak
its forget set (loss AUC 0.5 +- 0.1, through the harness); MIA-Efficacy equals a hand-computed
value; the epsilon score is maximal for identical distributions and low for separated ones.
"""

from __future__ import annotations

import io
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.eval import scoring
from bench.attacks import LiRA, PopulationAttack, SVCEfficacy
from bench.attacks.epsilon import bucket_points, example_epsilon, final_score, forgetting_quality
from bench.attacks.population import best_threshold, class_threshold_accuracy
from bench.attacks.svc import mia_efficacy
from bench.core.contracts import AttackContext, Splits


# -- the overfit model and its shadows ------------------------------------------------------


@pytest.fixture(scope="module")
def overfit():
    """mlp:64 trained 40 epochs without weight decay on the first 300 digits training points
    (test accuracy ~0.9, training accuracy 1.0), its 8 shadow models on the pool of those 300 +
    the 360 test points, and an attack context with the 300 as members, the test set as
    non-members."""
    from bench.datasets.digits import Digits
    from bench.nn.models import MLPModel
    from bench.core.recipe import build_recipe
    from bench.eval.shadows import shadow_set
    from bench.nn.training import fit, set_threads
    from bench.nn.nets import model_factory

    set_threads(1)
    d = Digits().load(None, False, None)
    n = 300
    sp = Splits(d.train_x[:n].clone(), d.train_y[:n].clone(), d.test_x.clone(), d.test_y.clone(), d.num_classes, d.input_shape)
    recipe = build_recipe({"epochs": 40, "lr": 0.05, "batch_size": 32, "weight_decay": 0.0})
    model_obj, arg = MLPModel(), "64"
    target = fit(model_factory(model_obj, arg, sp, 1, "cpu")(), sp.train_x, sp.train_y, recipe, seed=1)
    shadows = shadow_set("shadows", 8, model_obj, arg, sp, recipe, seed=0)
    ctx = AttackContext(sp.train_x, sp.train_y, sp.train_x[:0], sp.train_y[:0], sp.test_x, sp.test_y, sp.num_classes, 0,
                        "cpu", forget_indices=np.arange(n), shadows=shadows)
    return target, ctx


def test_loss_attack_detects_training_points_of_an_overfit_model(overfit):
    target, ctx = overfit
    out = PopulationAttack("loss").evaluate(target, ctx)
    assert out["auc"] >= 0.6, out
    assert 0.5 < out["balanced_acc"] <= 1 and 0.5 < out["yeom_acc"] <= out["balanced_acc"] + 1e-9
    plot = ctx.artifacts["roc/loss.png"]  # drawn where the trial is recorded
    png = pickle.loads(pickle.dumps(plot)).render()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert set(plot.curves) == {"forget vs test"} and plot.title == "loss attack"
    # Ray Tune formats results into its debug messages even when they are not logged: the repr
    # names the curves, never prints their points
    n = len(plot.curves["forget vs test"][0])
    assert repr(plot) == f"RocPlot('loss attack', {{forget vs test: {n} points}})"


def test_the_roc_plot_labels_its_decades_without_mathtext(monkeypatch):
    """Tick labels are plain text (10⁻³): matplotlib's mathtext parser took a third of a plot's time."""
    from matplotlib import mathtext

    from bench.eval import scoring
    from bench.eval.scoring import roc, roc_png

    def refuse(*args, **kwargs):
        raise AssertionError("mathtext used")

    monkeypatch.setattr(mathtext.MathTextParser, "parse", refuse)
    monkeypatch.setattr(scoring, "_painted", {})  # the fixed parts (the tick labels) are painted anew
    rng = np.random.default_rng(0)
    png = roc_png({"x": roc(rng.normal(1, 1, 200), rng.normal(0, 1, 200))}, "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_roc_plot_is_painted_over_its_fixed_parts_with_the_pixels_of_a_full_draw():
    """roc_png paints the axes and tick labels once per process and only the curves, spines, title and
    legend per plot: every plot, whatever came before it and from whichever thread, has the pixels of
    the same plot drawn whole (roc_figure + savefig)."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from bench.eval.scoring import roc, roc_figure, roc_png

    rng = np.random.default_rng(0)
    cases = [({"forget vs test": roc(rng.normal(1, 1, 500), rng.normal(0, 1, 500))}, "loss attack"),
             ({"a": roc(rng.normal(1, 1, 300), rng.normal(0, 1, 300)), "b": roc(rng.normal(0.3, 1, 900), rng.normal(0, 1, 400)),
               "c": roc(rng.normal(3, 1, 40), rng.normal(0, 1, 40))}, ""),
             ({"x": roc(rng.normal(2, 1, 50), rng.normal(0, 1, 50))}, "lira, 8 shadow models"),
             ({"perfect": (np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]))}, "")]

    def pixels(png: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))

    def whole(curves, title) -> np.ndarray:
        buf = io.BytesIO()
        roc_figure(curves, title).savefig(buf, format="png")
        return pixels(buf.getvalue())

    expected = [whole(*case) for case in cases]
    assert not np.array_equal(expected[0], expected[2])  # the cases differ (the comparison can fail)
    for case, want in list(zip(cases, expected)) * 2:  # titled and untitled interleaved, each twice
        assert np.array_equal(pixels(roc_png(*case)), want), case[1]
    with ThreadPoolExecutor(4) as pool:  # the trial recorder's thread and the main thread may both draw
        got = list(pool.map(lambda i: pixels(roc_png(*cases[i % 4])), range(16)))
    assert all(np.array_equal(g, expected[i % 4]) for i, g in enumerate(got))


@pytest.mark.slow  # a fresh interpreter (the quick loop was at 120 s)
def test_an_attack_in_a_trial_worker_never_imports_matplotlib():
    """The ROC plot is a RocPlot: drawn by the process that records the trial, not the worker."""
    code = (
        "import sys, numpy as np, torch\n"
        "from bench.core.contracts import AttackContext\n"
        "from bench.attacks.population import PopulationAttack\n"
        "g = torch.Generator().manual_seed(0)\n"
        "x, y = torch.randn(60, 5, generator=g), torch.randint(0, 3, (60,), generator=g)\n"
        "ctx = AttackContext(x[:20], y[:20], x[20:40], y[20:40], x[40:], y[40:], 3, 0, 'cpu')\n"
        "out = PopulationAttack('loss').evaluate(torch.nn.Linear(5, 3), ctx)\n"
        "assert 0 <= out['auc'] <= 1 and 'roc/loss.png' in ctx.artifacts\n"
        "print('matplotlib' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_lira_with_8_shadows_beats_the_loss_attack_at_low_fpr(overfit):
    target, ctx = overfit
    loss = PopulationAttack("loss").evaluate(target, ctx)
    online = LiRA().evaluate(target, ctx)
    offline = LiRA(offline=True).evaluate(target, ctx)
    assert len(ctx.shadows) == 8
    assert online["tpr_at_1fpr"] > loss["tpr_at_1fpr"], (online, loss)
    assert offline["tpr_at_1fpr"] > loss["tpr_at_1fpr"], (offline, loss)
    assert online["auc"] > 0.6 and offline["auc"] > 0.6
    # each pool point is IN exactly half of the models (complementary pairs; the pool is even)
    assert (ctx.shadows.keep.sum(0) == 4).all()


@pytest.mark.parametrize("offline", [False, True])
def test_lira_fixed_variance_scores_every_set_with_one_std(offline):
    """The same target column scores the same in the forget set and in the test set, whatever else
    each set holds: one std for all targets (plot.py's fix_variance). A std per set (the bug) gave
    the column -4.2 among the forget points and -0.1 among noisier test points."""
    rng = np.random.default_rng(0)
    M = 8
    keep_col = np.arange(M) % 2 == 0  # complementary pairs: IN in half of the shadows

    def columns(n, spread):
        sh = rng.normal(0, spread, (M, n)) + np.where(keep_col[:, None], 2.0, 0.0)
        return rng.normal(0.5, 1, n), sh, np.repeat(keep_col[:, None], n, axis=1)

    obs_c, sh_c, keep_c = columns(1, 0.5)
    obs_f, sh_f, keep_f = columns(30, 0.5)
    obs_t, sh_t, keep_t = columns(30, 5.0)  # noisier targets in the test set only
    obs = {"f": np.r_[obs_c, obs_f], "r": obs_f[:0], "t": np.r_[obs_c, obs_t]}
    sh = {"f": np.c_[sh_c, sh_f], "r": sh_f[:, :0], "t": np.c_[sh_c, sh_t]}
    keep = {"f": np.c_[keep_c, keep_f], "r": keep_f[:, :0], "t": np.c_[keep_c, keep_t]}
    attack = LiRA(offline=offline)
    sc, sc2 = attack.score_sets(obs, sh, keep, fixed=True)
    assert sc["f"][0] == pytest.approx(sc["t"][0], rel=1e-12)
    if offline:
        assert sc2["f"][0] == pytest.approx(sc2["t"][0], rel=1e-12)
    # and the std is the one pooled over every target column of every set
    shared = attack.shared_sd(np.c_[sh["f"], sh["t"]], np.c_[keep["f"], keep["t"]])
    assert sc["f"][1:] == pytest.approx(attack.scores(obs_f, sh_f, keep_f, shared), rel=1e-12)


DOCS = (Path(__file__).resolve().parents[1] / "docs" / "attacks.md").read_text()


def test_every_attack_metric_is_documented(overfit):
    target, ctx = overfit
    for attack in [*(PopulationAttack(s) for s in ("loss", "confidence", "entropy", "mentropy")), LiRA(), LiRA(offline=True)]:
        for key in attack.evaluate(target, ctx):
            assert f"`{attack.name}_{key}`" in DOCS, f"{attack.name}_{key}"


def test_lira_needs_shadows(overfit):
    from bench.core.errors import BenchError

    target, ctx = overfit
    bare = AttackContext(ctx.forget_x, ctx.forget_y, ctx.retain_x, ctx.retain_y, ctx.test_x, ctx.test_y, 10, 0, "cpu")
    with pytest.raises(BenchError, match=r"needs shadow models.*--attacks lira"):
        LiRA().evaluate(target, bare)


# -- shadows: vectorized training is the same training ---------------------------------------


def test_vmap_training_matches_sequential_training():
    from bench.datasets.synthetic import Synthetic
    from bench.nn.models import MLPModel
    from bench.core.recipe import build_recipe
    from bench.eval.shadows import train_models
    from bench.nn.nets import model_factory

    sp = Synthetic().load(None, False, "n=400,features=8,classes=3")
    recipe = build_recipe({"epochs": 3, "batch_size": 32, "optimizer": "sgd", "lr": 0.1})
    subsets = [np.random.default_rng(i).choice(sp.train_size, 150, replace=False) for i in range(4)]

    def new(seed):
        return model_factory(MLPModel(), "16", sp, seed, "cpu")()

    seq, how_s = train_models(new, sp.train_x, sp.train_y, subsets, [5, 6, 7, 8], recipe, vectorize=False)
    stk, how_k = train_models(new, sp.train_x, sp.train_y, subsets, [5, 6, 7, 8], recipe)
    vec, how_v = train_models(new, sp.train_x, sp.train_y, subsets, [5, 6, 7, 8], recipe, vectorize=True, force_vmap=True)
    assert (how_s, how_k, how_v) == ("sequential", "stacked", "vmap")
    for other in (stk, vec):
        for a, b in zip(seq, other):
            for (name, p), q in zip(a.named_parameters(), b.parameters()):
                torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=name)
    # different seeds and subsets give different models
    assert not torch.allclose(seq[0].net[1].weight, seq[1].net[1].weight)


def test_vmap_trains_a_cnn_like_sequential_training():
    from bench.nn.models import CNNModel
    from bench.core.recipe import build_recipe
    from bench.eval.shadows import linear_chain, train_models

    x, y = torch.randn(48, 1, 8, 8), torch.randint(0, 3, (48,))

    def new(seed):
        torch.manual_seed(seed)
        return CNNModel().create(3, (1, 8, 8), "4,8")

    assert linear_chain(new(0)) is None
    subsets = [np.arange(0, 24), np.arange(24, 48)]
    recipe = build_recipe({"epochs": 2, "batch_size": 8})
    seq, _ = train_models(new, x, y, subsets, [1, 2], recipe, vectorize=False)
    auto, how_auto = train_models(new, x, y, subsets, [1, 2], recipe)
    vec, how = train_models(new, x, y, subsets, [1, 2], recipe, vectorize=True)
    assert how == "vmap" and how_auto == "sequential"  # on the CPU vmap does not pay for convolutions
    for a, b in zip(seq, vec):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("force_vmap", [False, True])
def test_vectorized_shadows_use_the_recipes_augmentation(force_vmap):
    """Stacked and vmap training augment each model's batches as ``fit`` does (they skipped the
    augmentation: shadows trained without crop-flip attacked models trained with it)."""
    from bench.core.recipe import build_recipe
    from bench.eval.shadows import train_models
    from bench.nn.nets import MLP

    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 3, (64,))

    def new(seed):
        torch.manual_seed(seed)
        return MLP(64, (16,), 3)

    subsets = [np.arange(0, 32), np.arange(32, 64)]
    plain = build_recipe({"epochs": 2, "batch_size": 8})
    recipe = build_recipe({"epochs": 2, "batch_size": 8, "augment": "crop-flip"})
    seq, _ = train_models(new, x, y, subsets, [1, 2], recipe, vectorize=False)
    vec, how = train_models(new, x, y, subsets, [1, 2], recipe, vectorize=True, force_vmap=force_vmap)
    bare, _ = train_models(new, x, y, subsets, [1, 2], plain, vectorize=True, force_vmap=force_vmap)
    assert how == ("vmap" if force_vmap else "stacked")
    for a, b, c in zip(seq, vec, bare):
        for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=name)
        assert not all(torch.allclose(p, r) for p, r in zip(a.parameters(), c.parameters()))


def test_batchnorm_models_train_sequentially():
    from bench.core.recipe import build_recipe
    from bench.eval.shadows import train_models, vectorizable

    def new(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    assert not vectorizable(new(0))
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    models, how = train_models(new, x, y, [np.arange(20), np.arange(20, 40)], [0, 1], build_recipe({"epochs": 1}))
    assert how == "sequential" and len(models) == 2
    with pytest.raises(ValueError, match="cannot vectorize"):
        train_models(new, x, y, [np.arange(20), np.arange(20, 40)], [0, 1], build_recipe({"epochs": 1}), vectorize=True)


# -- MIA-Efficacy on a hand-built example ------------------------------------------------------


class Lookup(nn.Module):
    """Input i (a one-hot row) -> the logits (0, log(c_i / (1 - c_i))): class-1 confidence c_i."""

    def __init__(self, conf):
        super().__init__()
        c = torch.tensor(conf, dtype=torch.float64)
        self.w = nn.Parameter(torch.stack([torch.zeros_like(c), torch.log(c / (1 - c))]).float())

    def forward(self, x):
        return x @ self.w.T


def test_mia_efficacy_matches_a_hand_computed_value():
    retain = [0.97, 0.95, 0.99, 0.96]  # members: confident
    test = [0.30, 0.20, 0.25, 0.35]  # non-members: unsure
    forget = [0.98, 0.22, 0.28, 0.94, 0.31]  # two look like members, three like non-members
    conf = retain + test + forget
    eye = torch.eye(len(conf))
    ones = torch.ones(len(conf), dtype=torch.long)  # every true label is class 1
    r, t, f = slice(0, 4), slice(4, 8), slice(8, 13)
    ctx = AttackContext(eye[f], ones[f], eye[r], ones[r], eye[t], ones[t], 2, 0, "cpu")
    # SVC(C=3, rbf, gamma='auto') on confidence: 0.98 and 0.94 -> member, 0.22/0.28/0.31 -> non-member
    assert SVCEfficacy().evaluate(Lookup(conf), ctx)["mia_efficacy"] == pytest.approx(3 / 5)
    assert mia_efficacy(np.array(retain), np.array(test), np.array(forget)) == pytest.approx(3 / 5)
    # the reference slices retain[:|D_t|]: an extra, non-member-looking retain point is not used
    assert mia_efficacy(np.array(retain[:2]), np.array(test[:2]), np.array([0.99, 0.2])) == pytest.approx(1 / 2)


# -- the NeurIPS 2023 epsilon score ------------------------------------------------------------


def test_epsilon_score_is_maximal_for_identical_and_low_for_separated_distributions():
    rng = np.random.default_rng(0)
    N, n = 16, 40
    R = rng.normal(0.0, 1.0, (N, n))
    F_same, eps_same = forgetting_quality(R.copy(), R)
    assert F_same == 1.0 and (eps_same == 0).all()
    assert final_score(F_same, 0.9, 0.9, 0.8, 0.8) == pytest.approx(1.0)
    F_far, eps_far = forgetting_quality(R + 10.0, R)  # every unlearned score above every retrained one
    assert F_far == 0.0 and (eps_far == 50).all()
    # overlapping but shifted: in between, and monotone in the shift
    F_mid, _ = forgetting_quality(R + 1.0, R)
    assert 0.0 < F_mid < 1.0
    # the utility adjustment scales it
    assert final_score(1.0, 0.45, 0.9, 0.8, 0.8) == pytest.approx(0.5)


def test_epsilon_uses_the_references_rules_and_thresholds():
    """metric.py's own values (google-deepmind/unlearning_evaluation, run beside ours by
    benchmarks/upstream_epsilon.py): 1.9459 = log(7/8 - 1e-5) - log(1/8) in both cases."""
    expected = np.log(7 / 8 - 1e-5) - np.log(1 / 8)
    # the lower-median side (r) is the peakier: the interval around it, predicted "retrained",
    # holds all of r and one of u's eight; an interval of the higher-median side cannot do as well
    u = np.array([-4, -3, -2, 0.02, 1, 2, 3, 4.5])
    r = np.array([0, 0.01, 0.03, 0.05, 0.06, 0.07, 0.08, 0.09])
    assert example_epsilon(u, r) == pytest.approx(expected, abs=1e-6)
    # thresholds 0.01 apart do not split 0.605 from 0.606: no perfect separation (not 50)
    pos = np.array([-0.77, -0.265, 0.606, 1.622, 1.652, 1.815, 3.836, 4.487])
    neg = np.array([0.432, 0.47, 0.474, 0.476, 0.536, 0.556, 0.558, 0.605])
    assert example_epsilon(pos, neg) == pytest.approx(expected, abs=1e-6)
    assert example_epsilon(neg, pos) == pytest.approx(expected, abs=1e-6)


def _double_threshold_rates_full_grid(pos, neg):
    """Every one of the reference's 400 t_l per t_r counted (what ``double_threshold_rates`` skips)."""
    from bench.attacks.epsilon import BUFFER, STEPS_PER_UNIT

    spread_p, spread_n = float(np.ptp(pos)), float(np.ptp(neg))
    width = min(spread_p, spread_n)
    if spread_p >= spread_n:
        pos, neg = neg, pos
    lo, hi = pos.min() + width - BUFFER, pos.max() + BUFFER
    right = np.linspace(lo, hi, num=int(np.ceil((hi - lo) * STEPS_PER_UNIT)))
    left = np.linspace(right - width - BUFFER, right - width + BUFFER, num=int(2 * BUFFER * STEPS_PER_UNIT), axis=1)

    def inside(v):  # [rows, 400]: how many of v lie in [t_l, t_r], by comparing each
        return ((v[None, None, :] >= left[:, :, None]) & (v[None, None, :] <= right[:, None, None])).sum(axis=2)

    pairs = set(zip(inside(pos).ravel().tolist(), inside(neg).ravel().tolist()))
    return {(n_in / len(neg), 1.0 - p_in / len(pos)) for p_in, n_in in pairs}


@pytest.mark.parametrize("seed", range(3))
def test_epsilon_counts_the_rows_of_thresholds_where_they_change(seed):
    """double_threshold_rates counts each row of t_l only around the scores: the same (FPR, FNR)
    as counting every threshold of the reference's grid (fails if a count is skipped)."""
    from bench.attacks.epsilon import double_threshold_rates

    rng = np.random.default_rng(seed)
    for _ in range(20):
        n, scale = int(rng.choice([2, 4, 8])), float(rng.choice([0.05, 0.5, 2.0]))
        u = rng.normal(rng.normal(0, 1), scale, n)
        r = rng.normal(rng.normal(0, 1), scale * float(rng.choice([0.05, 1.0, 3.0])), n)
        if rng.random() < 0.5:  # ties with the 0.01 grid
            u, r = np.round(u, int(rng.choice([2, 3])) ), np.round(r, 3)
        if np.ptp(u) == 0 or np.ptp(r) == 0:
            continue
        fpr, fnr = double_threshold_rates(u, r)
        assert set(zip(fpr.tolist(), fnr.tolist())) == _double_threshold_rates_full_grid(u, r)


def test_epsilon_definition_details():
    # one point of probability mass each side, same value: indistinguishable
    assert example_epsilon(np.ones(8), np.ones(8)) == 0.0
    # a degenerate side (spread < 1% of the other's) is capped
    assert example_epsilon(np.full(8, 0.5), np.linspace(0, 1, 8)) == 50.0
    # N=8: buckets of 0.5 up to ceil(ln 7) = 2 -> 1, 1/2, 1/4, 1/8, then 0
    pts = bucket_points(np.array([0.0, 0.49, 0.5, 1.2, 1.9, 2.0, 50.0]), 8)
    assert pts.tolist() == [1.0, 1.0, 0.5, 0.25, 0.125, 0.0, 0.0]
    # one unlearned score inside the retrained range: an interval catches it with FPR 1/8
    u = np.r_[np.full(7, 5.0), 0.45]
    r = np.linspace(0.0, 1.0, 8)
    e = example_epsilon(u + np.linspace(0, 0.01, 8), r)
    assert 0 < e <= 50


# -- the shared scoring and the threshold search -----------------------------------------------


def test_score_metrics_definitions():
    out = scoring.score_metrics([3, 4, 5], [0, 1, 2])
    assert out == {"auc": 1.0, "tpr_at_1fpr": 1.0, "tpr_at_0.1fpr": 1.0, "balanced_acc": 1.0}
    out = scoring.score_metrics([0, 1, 2], [3, 4, 5])
    assert out["auc"] == 0.0 and out["balanced_acc"] == 0.5 and out["tpr_at_1fpr"] == 0.0
    # 200 non-members, one of them above every member: TPR at FPR < 1% is that of the strict top
    members = np.arange(300, 350)
    non = np.r_[np.arange(0, 199), 1000]
    out = scoring.score_metrics(members, non)
    assert out["tpr_at_1fpr"] == 1.0 and out["tpr_at_0.1fpr"] == 0.0
    # ties: the ROC points (0, 0.1), (0.005, 0.2), (0.01, 0.3) are collinear, and scikit-learn's
    # default drop_intermediate removed the middle one, the largest TPR at FPR < 1% (0.1 was reported)
    non = np.r_[[10.0, 9.0], np.zeros(198)]
    members = np.r_[[11.0, 10.0, 9.0], -np.ones(7)]
    brute = max(np.mean(members >= t) for t in np.r_[members, non, np.inf] if np.mean(non >= t) < 0.01)
    assert scoring.score_metrics(members, non)["tpr_at_1fpr"] == brute == 0.2
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 1, 300), rng.normal(0, 1, 400)
    assert scoring.score_metrics(a, b)["auc"] == pytest.approx(roc_auc_score(np.r_[np.ones(300), np.zeros(400)], np.r_[a, b]))
    assert scoring.score_metrics([np.inf, 1.0], [0.0, -np.inf])["auc"] == 1.0


def test_best_threshold_equals_the_quadratic_search():
    rng = np.random.default_rng(2)
    for _ in range(20):
        a = np.round(rng.normal(0.5, 1, rng.integers(1, 30)), 1)  # ties on purpose
        b = np.round(rng.normal(0, 1, rng.integers(1, 30)), 1)
        t, acc = best_threshold(a, b)
        brute = max(0.5 * ((a >= v).mean() + (b < v).mean()) for v in np.r_[a, b])
        assert acc == pytest.approx(max(brute, 0.5))
        if acc > 0.5:
            assert 0.5 * ((a >= t).mean() + (b < t).mean()) == pytest.approx(acc)
    # per-class thresholds separate what a global one cannot
    s_m = np.r_[np.full(20, 0.9), np.full(20, 0.4)]
    y_m = np.r_[np.zeros(20, int), np.ones(20, int)]
    s_n = np.r_[np.full(20, 0.7), np.full(20, 0.2)]
    y_n = y_m.copy()
    assert class_threshold_accuracy(s_m, y_m, s_n, y_n, 2, seed=0) == 1.0


# -- through the harness: the retrained model does not leak its forget set -----------------------


@pytest.mark.slow
def test_harness_runs_attacks_on_the_retrained_model(workdir):
    import mlflow
    from rich.console import Console

    from bench.core.options import RunOptions
    from bench.run.runner import run

    opts = RunOptions(executor="local", methods="retrain", models=["mlp:64"], recipe={"epochs": 10}, shadow_models=4,
                      attacks="loss,svc,lira,ulira,rmia,epsilon", cache_dir=str(workdir / "cache"),
                      tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    out = io.StringIO()
    assert run(opts, Console(file=out, width=200)) == 0, out.getvalue()
    assert "trained     4 shadows (stacked)" in out.getvalue() and "4 retrain shadows (stacked)" in out.getvalue()
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    kids = mlflow.search_runs(experiment_names=["unlearning-bench"])
    kid = kids[kids["tags.bench.role"] == "trial"].iloc[0]
    m = {k[len("metrics."):]: v for k, v in kid.items() if k.startswith("metrics.") and v == v}
    # retraining from scratch on D_r: the forget set looks like test data
    assert abs(m["loss_auc"] - 0.5) <= 0.1, m
    assert abs(m["lira_auc"] - 0.5) <= 0.1 and abs(m["ulira_auc"] - 0.5) <= 0.15 and abs(m["rmia_auc"] - 0.5) <= 0.1, m
    # the retrain method reproduces the reference: MIA-Efficacy equal, SalUn's 4-term gap 0
    assert 0 <= m["mia_efficacy"] <= 1 and m["avg_gap_mia"] == pytest.approx(0.0, abs=1e-9)
    assert m["loss_retain_auc"] > 0.5 and 0 <= m["epsilon_score"] <= 1 and 0 <= m["epsilon_forget_quality"] <= 1
    ratios = (m["epsilon_unlearned_retain_acc"] / m["epsilon_retrained_retain_acc"]
              * m["epsilon_unlearned_test_acc"] / m["epsilon_retrained_test_acc"])
    assert m["epsilon_score"] == pytest.approx(m["epsilon_forget_quality"] * ratios, rel=1e-12)
    assert kid["params.shadow_models"] == "4"
    for key in m:
        if key.split("_")[0] in ("loss", "svc", "lira", "ulira", "rmia", "epsilon") or key in ("mia_efficacy", "avg_gap_mia"):
            assert f"`{key}`" in DOCS, key
    files = {f.path for f in mlflow.tracking.MlflowClient().list_artifacts(kid["run_id"], "roc")}
    assert {"roc/loss.png", "roc/lira.png", "roc/ulira.png", "roc/rmia.png"} <= files
    # the attack table after the summary: each attack's headline, the trial's logged value; the
    # summary files carry the same columns
    text = out.getvalue()
    table = text[text.index("attacks on the forget set"):]
    heads = ("loss_auc", "mia_efficacy", "lira_auc", "ulira_auc", "rmia_auc", "epsilon_score")
    assert all(h in table for h in heads) and "retrain_auc" not in table and "(reference)" not in table, table
    retrain_line = next(line for line in table.splitlines() if "│ retrain " in line)
    assert f"{m['loss_auc']:.3f}" in retrain_line and f"{m['mia_efficacy']:.3f}" in retrain_line, retrain_line
    summary = mlflow.artifacts.load_text(f"runs:/{kid['tags.mlflow.parentRunId']}/summary.md")
    assert all(f" {h} |" in summary for h in heads), summary
    # a second run trains no shadow model again
    out2 = io.StringIO()
    assert run(opts, Console(file=out2, width=200)) == 0
    assert "cache hit   4 shadows" in out2.getvalue() and "trained     4" not in out2.getvalue()


@pytest.mark.parametrize("bad", [0, 3, -2, True, "8"])
def test_shadow_models_must_be_an_even_count(bad, tmp_path):
    from bench.core.errors import BenchError
    from bench.core.options import RunOptions
    from bench.run.validate import validate_options
    from bench.core.plugins import get_registry

    opts = RunOptions(executor="local", shadow_models=bad, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(BenchError, match=r"--shadow-models must be an even integer >= 2"):
        validate_options(get_registry(), opts)


class _Table(nn.Module):
    """Input i (a one-hot row) -> row i of a fixed table of two-class logits."""

    def __init__(self, points):  # (confidence in the true label, true label) per input
        super().__init__()
        rows = [[0.0, math.log(c / (1 - c))] if y == 1 else [math.log(c / (1 - c)), 0.0] for c, y in points]
        self.w = nn.Parameter(torch.tensor(rows, dtype=torch.float32).T.contiguous())

    def forward(self, x):
        return x @ self.w.T


def test_svc_on_a_class_request_leaves_the_forgotten_class_out_of_the_test_set():
    """SalUn's and Unlearn-Sparse's class-wise runs drop the forgotten class from the test set that
    feeds both SVC_MIA's non-members and TA (utils/dataset.py cifar10_dataloaders); the harness
    used the whole test set (ga on digits class:3: MIA-Efficacy 1.00 against the protocol's 0.00,
    found in review 2026-12-07). A request of points keeps the whole test set."""
    retain = [(0.99, 0), (0.98, 0), (0.97, 1), (0.99, 1)]  # members: the first |D_t| are used
    test = [(0.10, 0), (0.15, 0), (0.60, 1), (0.59, 1)]  # the forgotten class 1 looks like D_f here
    forget = [(0.60, 1), (0.59, 1), (0.595, 1)]
    points = retain + test + forget
    eye, labels = torch.eye(len(points)), torch.tensor([y for _, y in points])
    r, t, f = slice(0, 4), slice(4, 8), slice(8, 11)
    model = _Table(points)
    # the retrained reference: the same, but for the forgotten class's test points, which it misclassifies
    reference = _Table(retain + test[:2] + [(0.30, 1), (0.30, 1)] + forget)

    def ctx(classes):
        return AttackContext(eye[f], labels[f], eye[r], labels[r], eye[t], labels[t], 2, 0, "cpu",
                             reference=lambda: reference, forgotten_classes=classes)

    conf = np.array([c for c, _ in points])
    whole, kept = SVCEfficacy().evaluate(model, ctx(())), SVCEfficacy().evaluate(model, ctx((1,)))
    assert whole["mia_efficacy"] == mia_efficacy(conf[0:4], conf[4:8], conf[8:11]) == 1.0
    assert kept["mia_efficacy"] == mia_efficacy(conf[0:2], conf[4:6], conf[8:11]) == 0.0  # retain[:2]: |D_t| is 2
    # TA over the classes kept: the reference's misses on class 1 count only with the whole test set
    assert kept["avg_gap_mia"] == pytest.approx(0.0, abs=1e-12)
    assert whole["avg_gap_mia"] > 0.1


def test_shadow_attacks_on_a_method_that_trains_its_own_original_are_warned_about():
    """LiRA and RMIA compared SISA's ensemble (a vote share) with single-network shadows: scores near
    0.5 from its output format, not forgetting, with no word (found in review, 2026-12-07)."""
    from types import SimpleNamespace

    from bench.core.plugins import get_registry
    from bench.run.references import warn_shadow_attacks_on_own_originals

    registry = get_registry()
    attacks = {name: registry.get("attack", name) for name in ("loss", "lira", "rmia")}
    said = []

    def plan(*methods):
        return SimpleNamespace(attacks=attacks, methods=[SimpleNamespace(name=m, obj=registry.get("method", m))
                                                         for m in methods])

    lines = warn_shadow_attacks_on_own_originals(plan("ft", "sisa"), lambda line, **k: said.append(line))
    assert lines == said and len(lines) == 1
    assert lines[0].startswith("warning: the attack(s) lira, rmia compare sisa's model, which it trains itself")
    assert warn_shadow_attacks_on_own_originals(plan("ft", "ga"), said.append) == []
    attacks.pop("lira"), attacks.pop("rmia")
    assert warn_shadow_attacks_on_own_originals(plan("sisa"), said.append) == []
