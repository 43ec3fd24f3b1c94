"""PRUNE (methods/prune): certificates checked independently, on models trained here.

The certificate is re-checked in this file with its own autograd region and its own scipy LP, not
with methods/prune's code. Figures (digits, mlp 256,256 trained 15 epochs, seed 0; 2-core CPU):
100 random forget points with gamma=2: forget accuracy 0.000, test accuracy 0.975 -> 0.975 (drop 0),
certified_fraction 1.0; class 3 with gamma=0.2: class-3 train/test accuracy 0.000/0.000, other
classes' test accuracy 0.966 -> 0.966.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from bench.core.contracts import ForgetRequest, MethodContext
from bench.datasets.digits import Digits
from bench.core.errors import BenchError
from bench.methods.prune import Prune
from bench.methods.prune.modules import PatchedModel
from bench.nn.nets import MLP, SmallCNN
from bench.core.recipe import build_recipe
from bench.nn.training import accuracy, fit, predict_logits

UNIT = (torch.tensor(0.0), torch.tensor(1.0))


@pytest.fixture(scope="module")
def digits():
    return Digits().load(None, False, None)


def _train(model, d, epochs, seed=0):
    torch.manual_seed(seed)
    return fit(model, d.train_x, d.train_y, build_recipe(Digits.default_recipe, {"epochs": epochs}), seed=seed).eval()


@pytest.fixture(scope="module")
def mlp(digits):
    torch.manual_seed(0)
    return _train(MLP(64, (256, 256), 10), digits, 15)


def _request(d, mask, kind="random", forget_class=None, bounds=UNIT):
    return ForgetRequest(num_classes=10, kind=kind, forget_class=forget_class,
                         forget_indices=torch.nonzero(mask).flatten().numpy(),
                         forget_x=d.train_x[mask].clone(), forget_y=d.train_y[mask].clone(), input_bounds=bounds)


def _unlearn(model, request, seed=0, **params):
    ctx = MethodContext(seed=seed, device="cpu", new_model=None)
    out = Prune().unlearn(model, request, {**Prune.default_params, **params}, ctx)
    return out, ctx


def _region(head, u0):
    """Rows of the linear region and the affine form of a ReLU MLP at u0, by autograd (one fresh
    Jacobian row per neuron), independent of methods/prune."""
    h = copy.deepcopy(head).double()
    lins = [m for m in h.modules() if isinstance(m, torch.nn.Linear)]

    def hidden(u):
        z, outs = u[None], []
        for lin in lins[:-1]:
            z = lin(z)
            outs.append(z)
            z = torch.relu(z)
        return torch.cat(outs, 1)[0]

    u0 = u0.double()
    W = torch.autograd.functional.jacobian(hidden, u0)
    z = hidden(u0)
    F = torch.autograd.functional.jacobian(lambda u: h(u[None])[0], u0)
    e = h(u0[None])[0] - F @ u0
    sign = torch.where(z >= 0, 1.0, -1.0).double()
    W, z, F, e = W.detach(), z.detach(), F.detach(), e.detach()
    return (-sign[:, None] * W).numpy(), (sign * (z - W @ u0)).numpy(), F.numpy(), e.numpy()


def _lp_max(obj, A, b):
    res = linprog(-obj, A_ub=A, b_ub=b, bounds=[(0.0, 1.0)] * len(obj), method="highs")
    assert res.status == 0, res.message
    return -res.fun


def test_single_point_moves_to_target_certified_and_zero_support_is_bit_identical(digits, mlp):
    mask = torch.zeros(len(digits.train_y), dtype=torch.bool)
    mask[7] = True
    x0, y0 = digits.train_x[7:8], int(digits.train_y[7])
    assert int(mlp(x0).argmax()) == y0
    out, ctx = _unlearn(copy.deepcopy(mlp), _request(digits, mask))
    assert isinstance(out, PatchedModel) and len(out.patches) == 1
    patch = out.patches[0]
    assert patch.label == y0 and patch.target != y0
    assert int(out(x0).argmax()) == patch.target
    # independent LP over the whole linear region: f + p (the support is 1 there) favours the target
    A, b, F, e = _region(mlp, x0.flatten())
    assert np.allclose(patch.A[0].numpy(), A, atol=1e-9) and np.allclose(patch.b[0].numpy(), b, atol=1e-9)
    Fh, eh = F + patch.c.numpy(), e + patch.d.numpy()
    t = patch.target
    worst = max(_lp_max(Fh[j] - Fh[t], A, b) + eh[j] - eh[t] for j in range(10) if j != t)
    assert worst < 0, worst
    assert ctx.metrics["certified_fraction"] == 1.0 and ctx.metrics["patches"] == 1.0
    assert ctx.metrics["patch_params"] == patch.A.numel() + patch.b.numel() + patch.c.numel() + patch.d.numel()
    # points whose support is zero: outputs unchanged bit for bit
    g = patch.support(digits.test_x.flatten(1).double())
    assert (g == 0).sum() > 300
    zero = digits.test_x[g == 0]
    assert torch.equal(out(zero), mlp(zero))
    summary = json.loads(ctx.artifacts["prune_patches.json"])
    assert summary["patches"] == 1 and summary["lp_solves"] > 0 and summary["lp_iterations"] > 0


def test_region_rows_are_true_per_neuron_gradients(digits, mlp):
    """[fix] The released code never zeroes gradients, so its rows are cumulative sums."""
    from bench.methods.prune.network import activation_region, split

    kind, head = split(mlp)
    assert kind == "mlp" and head.hidden == 512
    u0 = digits.train_x[3].flatten().double()
    reg = activation_region(head, u0.numpy(), np.zeros(64), np.ones(64))
    A, b, F, e = _region(mlp, u0)
    assert np.allclose(reg.A, A, atol=1e-10) and np.allclose(reg.b, b, atol=1e-10)
    assert np.allclose(reg.F, F, atol=1e-10) and np.allclose(reg.e, e, atol=1e-10)
    assert (reg.A @ u0.numpy() <= reg.b + 1e-12).all()
    cumulative = np.cumsum(A, 0)  # what never zeroing the gradient would give
    assert not np.allclose(reg.A[1:], cumulative[1:])


@pytest.mark.slow
def test_100_random_points_forgotten_with_small_test_drop(digits, mlp):
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(len(digits.train_y), dtype=torch.bool)
    mask[torch.randperm(len(digits.train_y), generator=g)[:100]] = True
    before = accuracy(mlp, digits.test_x, digits.test_y)
    out, ctx = _unlearn(copy.deepcopy(mlp), _request(digits, mask), gamma=2.0)
    forget = accuracy(out, digits.train_x[mask], digits.train_y[mask])
    after = accuracy(out, digits.test_x, digits.test_y)
    print(f"gamma=2: forget acc {forget:.3f}, test acc {before:.3f} -> {after:.3f}, metrics {ctx.metrics}")
    assert forget <= 0.05
    assert before - after <= 0.03
    assert ctx.metrics["certified_fraction"] == 1.0
    # [fix] every cluster draws its own target label
    assert len({p.target for p in out.patches}) > 1 and all(p.target != p.label for p in out.patches)
    # [fix] patches are computed against the current patched model: some later representatives lie in
    # a member region of an earlier patch (fully active there), and their certificates still hold
    from bench.methods.prune.engine import fully_active

    stacked = [(i, j) for i, later in enumerate(out.patches) for j, earlier in enumerate(out.patches[:i])
               if fully_active(earlier, later.A[0].numpy(), later.b[0].numpy())]
    assert stacked, "no representative inside an earlier patch's support: the composition path is untested"
    # the screened support (partial violation sums) equals the full computation, member by member,
    # on training, test and uniform random inputs, and the screen actually settles pairs
    from bench.methods.prune.modules import Patch

    u = torch.cat([digits.train_x, digits.test_x, torch.rand(500, *digits.train_x.shape[1:], generator=g)]).flatten(1)
    u = u.double()
    settled = 0
    for patch in out.patches:
        full = torch.relu(1 - patch._violation(u)).amax(1)
        assert torch.equal(patch.support(u), full)
        # the in-place clamp without autograd gives the autograd form's values, bit for bit
        assert torch.equal(torch.relu(1 - patch._violation(u.clone().requires_grad_())).amax(1).detach(), full)
        settled += int((patch._violation(u, slice(None, None, Patch.SCREEN_STRIDE)) >= 1 + 1e-9).sum())
    assert settled > 0.9 * len(u) * sum(p.A.shape[0] for p in out.patches)


@pytest.mark.slow
def test_whole_class_forgotten_other_classes_kept(digits, mlp):
    mask = digits.train_y == 3
    # wide supports that reach unseen points of the class: without separation (which would narrow
    # them until no certificate can be spoiled, and then the class's test points are not reached)
    out, ctx = _unlearn(copy.deepcopy(mlp), _request(digits, mask, "class", 3), gamma=0.2, certify=False,
                        separate=False)
    test3 = digits.test_y == 3
    assert accuracy(out, digits.train_x[mask], digits.train_y[mask]) <= 0.02
    assert accuracy(out, digits.test_x[test3], digits.test_y[test3]) <= 0.05
    drop = accuracy(mlp, digits.test_x[~test3], digits.test_y[~test3]) - accuracy(out, digits.test_x[~test3],
                                                                                   digits.test_y[~test3])
    assert drop <= 0.03


def test_continual_requests_add_patches_and_save_load_round_trips(digits, mlp, tmp_path):
    first = torch.zeros(len(digits.train_y), dtype=torch.bool)
    first[[1, 2]] = True
    out, _ = _unlearn(copy.deepcopy(mlp), _request(digits, first))
    n = len(out.patches)
    second = torch.zeros(len(digits.train_y), dtype=torch.bool)
    second[[40, 41]] = True
    again, ctx = _unlearn(out, _request(digits, second))
    assert again is out and isinstance(again.original, MLP) and len(again.patches) > n
    assert ctx.metrics["certified_fraction"] == 1.0
    both = first | second
    assert accuracy(again, digits.train_x[both], digits.train_y[both]) == 0.0
    path = tmp_path / "patched.safetensors"
    again.save(path)
    loaded = PatchedModel.load(path, MLP(64, (256, 256), 10)).eval()
    assert torch.equal(loaded(digits.test_x), again(digits.test_x))
    assert [p.target for p in loaded.patches] == [p.target for p in again.patches]


def test_minimal_lp_is_no_larger_than_the_per_row_patch(digits):
    torch.manual_seed(1)
    small = _train(MLP(64, (16,), 10), digits, 10)
    i = int(torch.nonzero(predict_logits(small, digits.train_x).argmax(1) == digits.train_y)[0])
    mask = torch.zeros(len(digits.train_y), dtype=torch.bool)
    mask[i] = True
    x0 = digits.train_x[i:i + 1]
    rows, _ = _unlearn(copy.deepcopy(small), _request(digits, mask), lp="rows", target="nearest")
    best, ctx = _unlearn(copy.deepcopy(small), _request(digits, mask), lp="minimal", target="nearest")
    assert ctx.metrics["certified_fraction"] == 1.0
    p_rows, p_min = rows.patches[0], best.patches[0]
    assert p_rows.target == p_min.target and int(best(x0).argmax()) == p_min.target
    A, b, _, _ = _region(small, x0.flatten())
    H = max(max(_lp_max(s * p_min.c[k].numpy(), A, b) + s * float(p_min.d[k]) for s in (1, -1)) for k in range(10))
    assert H <= float(p_rows.d.abs().max()) + 1e-6


def test_feature_space_cnn_and_timm_heads(digits):
    timm = pytest.importorskip("timm")
    sel = torch.arange(0, 600)
    small = copy.copy(digits)
    small.train_x, small.train_y = digits.train_x[sel], digits.train_y[sel]
    torch.manual_seed(0)
    cnn = _train(SmallCNN(1, 10, (8, 16), hidden=32), small, 5)
    torch.manual_seed(0)
    res = _train(timm.create_model("test_resnet", pretrained=False, num_classes=10, in_chans=1), small, 3)
    for model, region in ((cnn, "activation_box"), (res, "box")):
        preds = predict_logits(model, small.train_x).argmax(1)
        right = torch.nonzero(preds == small.train_y).flatten()[:4]
        one = torch.zeros(len(small.train_y), dtype=torch.bool)
        one[right[0]] = True
        out, ctx = _unlearn(copy.deepcopy(model), _request(small, one, bounds=None), region=region)
        assert out.kind in ("features_head", "timm") and out.patches[0].info["region"] == region
        assert accuracy(out, small.train_x[one], small.train_y[one]) == 0.0
        assert ctx.metrics["certified_fraction"] == 1.0
        keep = digits.test_x[:200]
        changed = (predict_logits(out, keep).argmax(1) != predict_logits(model, keep).argmax(1)).float().mean()
        assert changed <= 0.05, (region, changed)
        rest = torch.zeros(len(small.train_y), dtype=torch.bool)
        rest[right[1:]] = True
        out, ctx = _unlearn(out, _request(small, rest, bounds=None), region=region)  # continual: adds to the same model
        assert accuracy(out, small.train_x[one | rest], small.train_y[one | rest]) == 0.0
        # neighbouring regions in a small head's feature space can share a facet: there no two patches
        # with different targets can both be certified, and the check says so (docs/prune.md)
        assert 0.0 <= ctx.metrics["certified_fraction"] <= 1.0 and len(out.patches) == 4


def test_clear_errors(digits, mlp):
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)
            self.fc = torch.nn.Linear(72, 10)

        def forward(self, x):
            return self.fc(torch.tanh(self.conv(x)).flatten(1))

    mask = torch.zeros(len(digits.train_y), dtype=torch.bool)
    mask[0] = True
    with pytest.raises(BenchError, match="neither a ReLU MLP .* timm"):
        _unlearn(Odd(), _request(digits, mask))
    with pytest.raises(BenchError, match="region='box' is for heads without hidden ReLU"):
        _unlearn(copy.deepcopy(mlp), _request(digits, mask), region="box")
    with pytest.raises(BenchError, match=r"lp='exact' is invalid; expected one of rows, minimal"):
        _unlearn(copy.deepcopy(mlp), _request(digits, mask), lp="exact")
    with pytest.raises(BenchError, match=r"lp_threads=-1 is invalid; expected an integer >= 0"):
        _unlearn(copy.deepcopy(mlp), _request(digits, mask), lp_threads=-1)


@pytest.mark.slow
def test_harness_run_logs_prune_metrics_and_patch_artifact(workdir):
    """In process (--executor local): PRUNE gets only the forget set (+ the input box), and its
    metrics and prune_patches.json land in the trial's MLflow run."""
    import io

    import mlflow
    from rich.console import Console

    from bench.core.options import RunOptions
    from bench.run.runner import run

    opts = RunOptions(executor="local", cache_dir=str(workdir / "cache"),
                      tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", methods="prune", forgets=["random:5"],
                      recipe={"epochs": 10})
    out = io.StringIO()
    assert run(opts, Console(file=out, width=200)) == 0, out.getvalue()
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["unlearning-bench"])
    kid = runs[runs["tags.bench.role"] == "trial"].iloc[0]
    assert kid["params.data_access"] == "forget"
    assert kid["metrics.forget_acc"] == 0.0 and kid["metrics.certified_fraction"] == 1.0
    assert kid["metrics.patches"] >= 1 and kid["metrics.patch_params"] > 0 and kid["metrics.lp_seconds"] > 0
    summary = json.loads(mlflow.artifacts.load_text(f"runs:/{kid['run_id']}/prune_patches.json"))
    assert summary["patches"] == kid["metrics.patches"] and all(c["certified"] for c in summary["certificates"])


@pytest.mark.slow
def test_memoised_certificate_check_equals_a_fresh_one_and_solves_fewer_lps(digits, mlp):
    """The check memoises LP bounds on the model between requests (certify.py): on a model that
    gained patches, it must give exactly the records of a fresh check, with fewer LP solves."""
    from bench.methods.prune.certify import check
    from bench.methods.prune.lp import Clock

    out = copy.deepcopy(mlp)
    for points in ([3, 4, 5, 6], [50, 51, 52, 53]):
        mask = torch.zeros(len(digits.train_y), dtype=torch.bool)
        mask[points] = True
        out, ctx = _unlearn(out, _request(digits, mask))
        assert ctx.metrics["certify_seconds"] > 0
    assert out.__dict__.get("_certify_memo"), "the first request's check left no memo"
    lo, hi = out.lo.numpy(), out.hi.numpy()
    fresh = copy.deepcopy(out)
    fresh.__dict__.pop("_certify_memo")
    fresh.__dict__.pop("_witness")  # no LP multipliers from the construction either: every bound by LP
    c_memo, c_fresh = Clock(), Clock()
    memo_records, fresh_records = check(out, lo, hi, c_memo), check(fresh, lo, hi, c_fresh)
    # same verdicts; the LP optima agree to the solver's tolerance (HiGHS is warm-started, so the
    # last digits depend on what it solved before)
    assert [r["certified"] for r in memo_records] == [r["certified"] for r in fresh_records]
    for a, b in zip(memo_records, fresh_records):
        assert (a["delta"] is None) == (b["delta"] is None)
        assert a["delta"] is None or a["delta"] == pytest.approx(b["delta"], rel=1e-9, abs=1e-6)
        # the memo holds the first check's bounds, verified from the construction's LP multipliers
        # (valid upper bounds, a hair looser than the LP optimum the fresh check solves for)
        assert (a["margin"] is None) == (b["margin"] is None)
        assert a["margin"] is None or b["margin"] - 1e-6 <= a["margin"] <= b["margin"] + 1e-9
    assert c_memo.solves == 0 < c_fresh.solves  # nothing changed since the last request's check


def test_patch_output_memo_is_exact_and_follows_the_patches(digits, mlp):
    """The patched model memoises sum_i h_i per input: a repeated input gives exactly the recomputed
    output, and changing a patch in place (gamma, as separation does) or adding one invalidates it."""
    mask = torch.zeros(len(digits.train_y), dtype=torch.bool)
    mask[[3, 4, 5]] = True
    out, _ = _unlearn(copy.deepcopy(mlp), _request(digits, mask))
    u = torch.cat([digits.train_x[mask], digits.test_x]).flatten(1).double()
    with torch.no_grad():
        first = out.patch_output(u)
        again = out.patch_output(u)
        fresh = sum(p(u) for p in out.patches)
        assert torch.equal(first, again) and torch.equal(again, fresh)
        out.patches[0].d.mul_(2.0)  # a patch changed in place
        narrowed = out.patch_output(u)
        assert torch.equal(narrowed, sum(p(u) for p in out.patches))
        assert not torch.equal(narrowed, first)
        assert len(out.__dict__["_output_memo"]) <= PatchedModel.CACHE


def test_dual_ascent_bound_is_sound_against_the_exact_lp(digits, mlp):
    """Any multipliers lam >= 0 give a lower bound of min a.u over the region (weak duality), so the
    bound dual_upper derives from dual_ascent's multipliers never exceeds the LP's exact minimum."""
    from bench.methods.prune.duals import dual_ascent, dual_upper
    from bench.methods.prune.network import activation_region, split

    _, head = split(mlp)
    lo, hi = np.zeros(64), np.ones(64)
    xs = digits.train_x.flatten(1).double().numpy()
    reg = activation_region(head, xs[0], lo, hi)
    proved = 0
    for k in range(1, 13):
        other = activation_region(head, xs[k], lo, hi)
        S = (other.A @ xs[0] - other.b) > 0
        a, c0 = other.A[S].sum(0), other.b[S].sum()
        exact = -_lp_max(-a, reg.A, reg.b)  # min over the region of a.u; the violation floor is exact - c0
        for want in (c0 + 0.5, exact + 1.0):  # as violation_floor asks: "is the floor >= 0.5?"; and too much
            lam = dual_ascent(a, reg.A, reg.b, lo, hi, want)
            if lam is not None:  # giving up is allowed; a returned lam must prove ``want``, soundly
                bound = -dual_upper(-a, reg.A, reg.b, lo, hi, lam)
                assert want - 1e-9 <= bound <= exact + 1e-7
                proved += 1
    assert proved >= 1


def test_batched_dual_ascent_takes_the_same_steps_as_one_objective_at_a_time():
    """dual_ascent_many is dual_ascent vectorised: for shared rows and for one set of rows per
    objective (padded with zero rows), each objective reaches ``want`` exactly when dual_ascent
    does, with the same multipliers."""
    from bench.methods.prune.duals import dual_ascent_many

    def dual_ascent(a, A, b, lo, hi, want, iters=100, patience=25):  # one objective, written out here
        lam, best, mark = np.zeros(len(A)), -np.inf, -np.inf
        for step in range(iters):
            r = a + lam @ A
            x = np.where(r > 0, lo, hi)
            g = float(r @ x - lam @ b)
            if g >= want:
                return lam
            best = max(best, g)
            if step and step % patience == 0:
                if best - mark < 0.05 * (want - best):
                    return None
                mark = best
            sub = A @ x - b
            sub[(lam <= 0) & (sub < 0)] = 0.0
            norm = float(sub @ sub)
            if norm == 0.0:
                return None
            lam = np.maximum(0.0, lam + (want + 1.0 - g) / norm * sub)
        return None

    rng = np.random.default_rng(0)
    d, m, B = 12, 30, 40
    lo, hi = np.zeros(d), np.ones(d)
    A, b = rng.normal(size=(m, d)), rng.normal(size=m) + 2.0
    As, bs = rng.normal(size=(B, m, d)), rng.normal(size=(B, m)) + 2.0
    As[::3, -5:], bs[::3, -5:] = 0.0, 0.0  # padding rows
    a = rng.normal(size=(B, d))
    want = np.quantile([-np.abs(x).sum() for x in a], 0.6) + rng.normal(size=B)
    want[::2] += 20.0  # out of reach for some
    reached = 0
    for rows, rhs in ((A, b), (As, bs)):
        lam, ok = dual_ascent_many(a, rows, rhs, lo, hi, want)
        for k in range(B):
            one = dual_ascent(a[k], rows if rows.ndim == 2 else rows[k], rhs if rhs.ndim == 1 else rhs[k], lo, hi, want[k])
            assert (one is not None) == bool(ok[k])
            if one is not None:
                reached += 1
                np.testing.assert_allclose(lam[k], one, rtol=1e-9, atol=1e-12)
            else:
                assert not lam[k].any()
    assert 0 < reached < 2 * B  # both outcomes exercised


def test_violation_screens_only_prove_what_the_exact_lp_confirms(digits, mlp):
    """A pair the batched screens settle has a witness whose bound floor_from_witness re-derives,
    reaches the need, and never exceeds the exact minimum violation (min_violation)."""
    from bench.methods.prune.duals import floor_from_witness
    from bench.methods.prune.lp import PolytopeLP
    from bench.methods.prune.network import activation_region, split
    from bench.methods.prune.violation import min_violation, violation_screens

    _, head = split(mlp)
    lo, hi = np.zeros(64), np.ones(64)
    xs = digits.train_x.flatten(1).double().numpy()
    reg = activation_region(head, xs[0], lo, hi)
    lp = PolytopeLP(reg.A, reg.b, lo, hi, point=xs[0])
    others = [activation_region(head, xs[k], lo, hi) for k in range(1, 16)]
    need = np.full(len(others), 0.5)
    found = violation_screens([(o.A, o.b, lp, xs[0]) for o in others], need)
    proved = 0
    for o, f in zip(others, found):
        if f is None:
            continue
        proved += 1
        low, (mu, lam) = f
        assert low >= 0.5
        again = floor_from_witness(o.A, o.b, reg.A, reg.b, lo, hi, mu, None if lam is None else lam)
        assert again >= low - 1e-6 * (1.0 + low)  # the check's own rounding allowance
        exact, _, _ = min_violation(o.A, o.b, lp)
        assert low <= exact + 1e-7
    assert proved >= 5


def test_highs_prints_no_banner(tmp_path):
    """HiGHS prints its banner on the first construction in a process, before options can be set;
    PRUNE's LPs keep it off the terminal."""
    import subprocess
    import sys

    code = ("import numpy as np\nfrom bench.methods.prune.lp import PolytopeLP\n"
            "lp = PolytopeLP(np.array([[1.0, 1.0]]), np.array([1.0]), np.zeros(2), np.ones(2), backend='highspy')\n"
            "print('max', lp.maximize(np.array([[1.0, 0.0]]))[0])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "max 1.0", out.stdout
    assert "HiGHS" not in out.stderr


def test_exact_violation_lp_is_the_same_through_highspy_and_scipy(digits, mlp):
    """min_violation's LP passed to highspy directly gives scipy's optimum (same HiGHS, same model)."""
    from bench.methods.prune.lp import PolytopeLP
    from bench.methods.prune.network import activation_region, split
    from bench.methods.prune.violation import min_violation

    _, head = split(mlp)
    lo, hi = np.zeros(64), np.ones(64)
    xs = digits.train_x.flatten(1).double().numpy()
    reg = activation_region(head, xs[0], lo, hi)
    fast = PolytopeLP(reg.A, reg.b, lo, hi, backend="highspy", point=xs[0])
    slow = PolytopeLP(reg.A, reg.b, lo, hi, backend="scipy", point=xs[0])
    values = []
    for k in range(1, 9):
        other = activation_region(head, xs[k], lo, hi)
        a, b = min_violation(other.A, other.b, fast)[0], min_violation(other.A, other.b, slow)[0]
        assert a == pytest.approx(b, rel=1e-6, abs=1e-7)
        values.append(a)
    assert max(values) > 0


def test_margin_lps_split_over_threads_give_the_serial_maxima(digits, mlp, monkeypatch):
    """``lp_threads``: the C - 1 margin LPs of a patch split over two HiGHS copies of the region, in
    two threads, give the serial maxima (to the LP's rounding), maximisers inside the region, every
    solve counted; and PRUNE's construction with lp_threads=2 gives the serial patches."""
    from bench.methods.prune.lp import PolytopeLP
    from bench.methods.prune.network import activation_region, split

    _, head = split(mlp)
    lo, hi = np.zeros(64), np.ones(64)
    xs = digits.train_x.flatten(1).double().numpy()
    reg = activation_region(head, xs[3], lo, hi)
    objectives = reg.F[1:] - reg.F[0]
    serial = PolytopeLP(reg.A, reg.b, lo, hi, point=xs[3], threads=1)
    split_lp = PolytopeLP(reg.A, reg.b, lo, hi, point=xs[3], threads=2)
    copies = []
    real_copy = PolytopeLP._copy
    monkeypatch.setattr(PolytopeLP, "_copy", lambda self: copies.append(1) or real_copy(self))
    one, where1 = serial.maximize(objectives, points=True)
    small = PolytopeLP(reg.A, reg.b, lo, hi, point=xs[3], threads=2).maximize(objectives)
    assert copies == [] and reg.A.size < PolytopeLP.THREAD_MIN_ENTRIES  # a digits region is solved serially
    np.testing.assert_allclose(small, one, rtol=0, atol=1e-9)
    monkeypatch.setattr(PolytopeLP, "THREAD_MIN_ENTRIES", 0)  # split it anyway, as a 784-input region would be
    two, where2 = split_lp.maximize(objectives, points=True)
    assert copies == [1]  # one copy of the region: the second group ran on it
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-9)
    assert (reg.A @ where2.T - reg.b[:, None]).max() <= 1e-7  # every maximiser is in the region
    np.testing.assert_allclose(np.einsum("ij,ij->i", objectives, where2), two, rtol=0, atol=1e-7)
    assert split_lp.clock.solves >= len(objectives)

    mask = torch.zeros(len(digits.train_y), dtype=torch.bool)
    mask[torch.randperm(len(digits.train_y), generator=torch.Generator().manual_seed(4))[:12]] = True
    req = _request(digits, mask)
    a, _ = _unlearn(copy.deepcopy(mlp), req, lp_threads=1, k=4, max_iter=2)
    b, _ = _unlearn(copy.deepcopy(mlp), req, lp_threads=2, k=4, max_iter=2)
    assert len(a.patches) == len(b.patches) > 0
    for p, q in zip(a.patches, b.patches):
        assert p.target == q.target
        np.testing.assert_allclose(q.d.numpy(), p.d.numpy(), rtol=0, atol=1e-8)


def test_clipped_sum_without_autograd_is_the_support_networks_relu_form():
    from bench.methods.prune.modules import _clipped_sum

    gv = torch.tensor([[-3.0, -0.0, 0.0, 1e-300, 0.25, 1 - 2**-53, 1.0, 1 + 2**-52, 3.0, 7.5e12, 2.0**52]],
                      dtype=torch.float64)
    relu_form = torch.relu(gv) - torch.relu(gv - 1)
    for k in range(1, gv.shape[1] + 1):
        assert torch.equal(_clipped_sum(gv[:, :k].clone()), relu_form[:, :k].sum(-1)), k
    # under autograd, the relu form: derivative 1 on (0, 1], 0 elsewhere
    x = gv.clone().requires_grad_()
    _clipped_sum(x).sum().backward()
    assert x.grad.tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]


def test_save_model_gives_the_patched_model_as_an_artifact_an_auditor_can_check_again(digits, mlp, tmp_path):
    from bench.methods.prune.certify import check

    mask = torch.zeros(len(digits.train_y), dtype=torch.bool)
    mask[[3, 4, 5]] = True
    out, ctx = _unlearn(copy.deepcopy(mlp), _request(digits, mask))
    assert "prune_model.safetensors" not in ctx.artifacts  # off by default (tens of MB per trial)
    out, ctx = _unlearn(copy.deepcopy(mlp), _request(digits, mask), save_model=True)
    path = tmp_path / "prune_model.safetensors"
    path.write_bytes(ctx.artifacts["prune_model.safetensors"])
    loaded = PatchedModel.load(path, MLP(64, (256, 256), 10)).eval()  # a fresh model of the architecture
    assert torch.equal(loaded(digits.test_x), out.eval()(digits.test_x))
    records = check(loaded, loaded.lo.numpy(), loaded.hi.numpy())
    assert len(records) == len(out.patches) > 0 and all(r["certified"] for r in records)
    assert ctx.metrics["certified_fraction"] == 1.0
    with pytest.raises(BenchError, match=r"save_model='yes' is invalid; expected true or false"):
        _unlearn(copy.deepcopy(mlp), _request(digits, mask), save_model="yes")


def test_a_safetensors_file_that_is_not_a_patched_model_is_refused_by_load_and_read_info(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file(MLP(64, (16,), 10).state_dict(), str(path))
    for read in (lambda: PatchedModel.read_info(path), lambda: PatchedModel.load(path, MLP(64, (16,), 10))):
        with pytest.raises(BenchError, match="is not a PRUNE patched model"):
            read()
