"""PRUNE's certificates: planted bad patches are rejected by the independent check, the support bounds
it relies on are sound, and on the default setting (digits, mlp trained with the default 30-epoch
recipe, random:100) every patch is certified (benchmarks/bench_prune_certify.py runs seeds 0-4 and
the other forget specs and reports the count).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.recipe import build_recipe
from bench.datasets.digits import Digits
from bench.methods.prune import Prune
from bench.methods.prune.certify import check
from bench.methods.prune.lp import Clock, PolytopeLP
from bench.methods.prune.modules import Patch
from bench.methods.prune.network import activation_region, split
from bench.methods.prune.violation import min_violation, violation_floor
from bench.nn.nets import MLP
from bench.nn.training import accuracy, fit

UNIT = (torch.tensor(0.0), torch.tensor(1.0))


@pytest.fixture(scope="module")
def digits():
    return Digits().load(None, False, None)


@pytest.fixture(scope="module")
def small(digits):
    """A toy model (64-32-32-10, 5 epochs): seconds to patch."""
    torch.manual_seed(0)
    return fit(MLP(64, (32, 32), 10), digits.train_x, digits.train_y,
               build_recipe(Digits.default_recipe, {"epochs": 5}), seed=0).eval()


def _request(d, idx, kind="random", forget_class=None):
    idx = np.asarray(idx)
    return ForgetRequest(num_classes=10, kind=kind, forget_class=forget_class, forget_indices=idx,
                         forget_x=d.train_x[idx].clone(), forget_y=d.train_y[idx].clone(), input_bounds=UNIT)


def _unlearn(model, request, seed=0, **params):
    ctx = MethodContext(seed=seed, device="cpu", new_model=None)
    out = Prune().unlearn(model, request, {**Prune.default_params, **params}, ctx)
    return out, ctx


def _correct(model, d, n):
    pred = model(d.train_x).argmax(1)
    return torch.nonzero(pred == d.train_y).flatten()[:n].numpy()


def test_planted_patches_are_rejected(digits, small):
    """The check rejects (a) a patch that flips the point but not its whole region, (b) a certified
    patch spoiled by a wide neighbour patch with another target whose support reaches its region,
    and (c) a patch whose support rows are not the point's region."""
    i = _correct(small, digits, 1)
    out, ctx = _unlearn(copy.deepcopy(small), _request(digits, i))
    assert ctx.metrics["certified_fraction"] == 1.0 and len(out.patches) == 1
    lo, hi = out.lo.numpy(), out.hi.numpy()
    good = out.patches[0]
    u0 = good.point.numpy()
    _, head = split(small)
    reg = activation_region(head, u0, lo, hi)
    t, y = good.target, good.label

    # (a) the smallest constant shift that flips the point: certified at the point, not on the region
    logit = reg.F @ u0 + reg.e
    shift = np.zeros(10)
    shift[t] = np.max(np.delete(logit, t)) - logit[t] + 1e-6
    weak = Patch(good.A, good.b, np.zeros_like(good.c.numpy()), shift, float(np.abs(shift).max()), 2.0, u0,
                 good.pattern, t, y, dict(good.info))
    planted = copy.deepcopy(out)
    planted.patches[0] = weak
    assert int(planted(digits.train_x[i]).argmax()) == t  # the point itself is flipped
    rec = check(planted, lo, hi)[0]
    assert not rec["certified"] and "max over the region" in rec["why"]

    # (b) a second patch, support on another forget point's region with a tiny gamma (it reaches
    # everywhere), pushing hard towards another label
    j = _correct(small, digits, 40)[-1]
    v = digits.train_x[j].flatten().double().numpy()
    rj = activation_region(head, v, lo, hi)
    other = (t + 1) % 10 if (t + 1) % 10 != y else (t + 2) % 10
    d = np.zeros(10)
    d[other] = 50.0
    wide = Patch(rj.A[None], rj.b[None], np.zeros((10, 64)), d, 50.0, 1e-3, v, rj.pattern.astype(np.uint8), other,
                 int(digits.train_y[j]), dict(good.info))
    spoiled = copy.deepcopy(out)
    spoiled.patches.append(wide)
    recs = check(spoiled, lo, hi)
    assert not recs[0]["certified"] and recs[0]["delta"] > 0

    # (c) the support of a slightly smaller polytope (offsets lowered by 1e-4, the point still
    # inside): g = 1 at the point but not on the whole region
    assert (reg.A @ u0 - reg.b < -1e-4).all()
    moved = Patch(good.A, good.b - 1e-4, good.c, good.d, good.K, good.gamma, u0, good.pattern, t, y, dict(good.info))
    wrong = copy.deepcopy(out)
    wrong.patches[0] = moved
    rec = check(wrong, lo, hi)[0]
    assert not rec["certified"] and "not the point's linear region" in rec["why"]


def test_impossible_certificate_is_refused_per_point_and_counted(digits, small):
    """A forget point in a region that is already certified to map to its own label cannot get a
    certificate (the two would contradict each other on the whole region): PRUNE refuses it, says why
    in the artifact, and certified_fraction counts it as not certified."""
    import json

    i = int(_correct(small, digits, 1)[0])
    x, y = digits.train_x[i:i + 1], int(digits.train_y[i])
    first, _ = _unlearn(copy.deepcopy(small), _request(digits, [i]))
    t = first.patches[0].target
    req = ForgetRequest(num_classes=10, kind="random", forget_indices=np.array([i, i]), forget_x=torch.cat([x, x]),
                        forget_y=torch.tensor([y, t]), input_bounds=UNIT)
    out, ctx = _unlearn(copy.deepcopy(small), req)
    assert len(out.patches) == 1 and out.patches[0].target == t
    assert ctx.metrics["uncertifiable_points"] == 1 and ctx.metrics["certified_fraction"] == 0.5
    refused = json.loads(ctx.artifacts["prune_patches.json"])["uncertifiable"]
    assert len(refused) == 1 and refused[0]["label"] == t and "certified on" in refused[0]["why"]


def test_violation_floor_is_a_sound_lower_bound(digits, small):
    """violation_floor <= the exact minimum (min_violation) <= the violation at points of the region."""
    _, head = split(small)
    lo, hi = np.zeros(64), np.ones(64)
    idx = _correct(small, digits, 12)
    rng = np.random.default_rng(0)
    checked = 0
    for a, b in zip(idx[::2], idx[1::2]):
        ua, ub = (digits.train_x[k].flatten().double().numpy() for k in (a, b))
        ra, rb = activation_region(head, ua, lo, hi), activation_region(head, ub, lo, hi)
        lp = PolytopeLP(ra.A, ra.b, lo, hi, Clock(), point=ua)
        floor = violation_floor(rb.A, rb.b, lp, ua, exact=False)
        exact = min_violation(rb.A, rb.b, lp)[0]
        assert 0.0 <= floor <= exact + 1e-7
        assert violation_floor(rb.A, rb.b, lp, ua) == pytest.approx(exact, abs=1e-7)
        # points of region a: the point itself and small random steps that keep its pattern
        for _ in range(20):
            u = np.clip(ua + rng.normal(0, 0.02, 64), 0, 1)
            if (ra.A @ u <= ra.b).all():
                assert np.maximum(rb.A @ u - rb.b, 0).sum() >= exact - 1e-9
                checked += 1
    assert checked > 0


@pytest.fixture(scope="module")
def default_model(digits):
    """The original of ``bench run --methods prune`` on digits, seed 0: mlp 256,256, default recipe."""
    from bench.nn.training import seed_everything

    seed_everything(0)
    return fit(MLP(64, (256, 256), 10), digits.train_x, digits.train_y, build_recipe(Digits.default_recipe),
               seed=0).eval()


@pytest.mark.slow
def test_default_setting_certifies_every_patch(digits, default_model):
    """Default setting of ``bench run --methods prune`` on digits (mlp 256,256, the default 30-epoch
    recipe, random:100, seed 0): certified_fraction 1.0, forget accuracy 0, test accuracy within
    0.005 of the original. Seeds 0-4 and random:10%, class:3: benchmarks/bench_prune_certify.py."""
    from bench.core.forget import parse_forget

    model = default_model
    idx = parse_forget("random:100").select(digits.train_y.numpy(), 10, 0)
    out, ctx = _unlearn(copy.deepcopy(model), _request(digits, idx))
    assert ctx.metrics["certified_fraction"] == 1.0 and ctx.metrics["uncertifiable_points"] == 0
    assert accuracy(out, digits.train_x[idx], digits.train_y[idx]) == 0.0
    assert accuracy(out, digits.test_x, digits.test_y) >= accuracy(model, digits.test_x, digits.test_y) - 0.005
    # the construction narrowed some supports (raised gamma) so that no certificate is spoiled
    assert any(p.info.get("gamma_raised") for p in out.patches)


@pytest.mark.slow
def test_released_code_equivalent_setting(digits, default_model):
    """The released code's protocol (k = 2, T = 2, its gamma = 0.1 on cumulative-sum rows, which acts
    like gamma ~ 2 on true rows: docs/prune.md) as ``gamma=2, k=2, max_iter=2``: like the released
    code, two patches per iteration (4) and no test prediction changed; the forget set is only partly
    forgotten (0.39 here), every patch certified."""
    from bench.core.forget import parse_forget

    model = default_model
    idx = parse_forget("random:100").select(digits.train_y.numpy(), 10, 0)
    out, ctx = _unlearn(copy.deepcopy(model), _request(digits, idx), gamma=2.0, k=2, max_iter=2)
    assert ctx.metrics["patches"] == 4 and ctx.metrics["prune_iterations"] == 2
    with torch.no_grad():
        changed = (out(digits.test_x).argmax(1) != model(digits.test_x).argmax(1)).sum().item()
    assert changed == 0
    forget = accuracy(out, digits.train_x[idx], digits.train_y[idx])
    assert 0.2 <= forget <= 0.6, forget  # 0.39: two rounds of two representatives leave most points
    assert ctx.metrics["certified_fraction"] == 1.0


@pytest.mark.slow  # runs the harness (or many LPs): full suite only, the quick loop stays under 2 min
def test_saved_witnesses_let_a_loaded_model_be_checked_without_lps_and_altered_ones_cannot_fool_it(digits, small,
                                                                                                  tmp_path):
    """``PatchedModel.save`` writes the construction's LP multipliers with the patches; the check of
    the loaded model verifies them (no LP where the in-memory check needed none) and certifies the
    same patches. A file whose witnesses are altered (NaN, negated, scaled up) is checked from the
    check's own LPs instead: the same verdicts, never a certificate the patches do not earn."""
    from bench.methods.prune.modules import PatchedModel

    idx = _correct(small, digits, 40)
    out, ctx = _unlearn(copy.deepcopy(small), _request(digits, idx), k=4, max_iter=3)
    assert len(out.patches) >= 4
    lo, hi = out.lo.numpy(), out.hi.numpy()
    memory = out.__dict__["_witness"]
    assert any(k[0] == "floor" for k in memory) and any(k[0] == "margin" for k in memory)
    out.__dict__.pop("_certify_memo", None)
    fresh = [r["certified"] for r in check(out, lo, hi)]
    assert any(fresh)
    stats_memory = dict(out.__dict__["_certify_stats"])

    path = tmp_path / "patched.safetensors"
    out.save(path)
    loaded = PatchedModel.load(path, MLP(64, (32, 32), 10))
    got = loaded.__dict__["_witness"]
    assert got.keys() == memory.keys()
    for key, value in memory.items():
        pairs = zip(value, got[key]) if key[0] == "floor" else [(value, got[key])]
        for a, b in pairs:
            assert (a is None and b is None) or np.array_equal(np.asarray(a, np.float64), b), key
    assert [r["certified"] for r in check(loaded, lo, hi)] == fresh
    assert loaded.__dict__["_certify_stats"] == stats_memory

    without = PatchedModel.load(path, MLP(64, (32, 32), 10))
    without.__dict__["_witness"] = {}
    assert [r["certified"] for r in check(without, lo, hi)] == fresh
    lp_bounds = without.__dict__["_certify_stats"]["lp_bounds"]
    assert lp_bounds > stats_memory["lp_bounds"]  # what the saved witnesses spare

    for alter in (lambda v: np.full_like(v, np.nan), lambda v: -v, lambda v: 1e6 * v + 1.0):
        bad = PatchedModel.load(path, MLP(64, (32, 32), 10))
        bad.__dict__["_witness"] = {
            k: (tuple(None if x is None else alter(x) for x in v) if k[0] == "floor" else alter(v))
            for k, v in bad.__dict__["_witness"].items()}
        assert [r["certified"] for r in check(bad, lo, hi)] == fresh


def test_the_checks_region_rows_are_autograds_jacobian():
    """The check's rows W and head Jacobian F (one backward pass over copies of the point) equal
    torch.autograd.functional.jacobian(vectorize=True)'s, what the check used before, bit for bit."""
    from bench.methods.prune.certify import _autograd_region

    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 5))
    u0 = torch.randn(12)
    W, beta, pattern, F, e = _autograd_region(head, u0)
    h = head.double()

    def hidden(u):
        return torch.cat([h[0](u), h[2](h[1](h[0](u)))])

    u = u0.double()
    assert np.array_equal(W, torch.autograd.functional.jacobian(hidden, u, vectorize=True).numpy())
    assert np.array_equal(F, torch.autograd.functional.jacobian(h, u, vectorize=True).numpy())
    assert np.allclose(W @ u.numpy() + beta, hidden(u).detach().numpy()) and np.array_equal(pattern, hidden(u).detach().numpy() >= 0)
    assert np.allclose(F @ u.numpy() + e, h(u).detach().numpy())


@pytest.mark.slow
def test_an_auditor_rechecks_a_runs_saved_patched_model(invoke_bench, tmp_path):
    """docs/prune.md, "Checking a run's certificates yourself": `-p prune.save_model=true` stores
    the patched model with the trial's run; loaded onto a fresh model of the run's architecture, the
    independent check certifies every patch again, matching the recorded certified_fraction."""
    from mlflow.tracking import MlflowClient

    from bench.core.plugins import get_registry
    from bench.methods.prune.modules import PatchedModel

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = invoke_bench("run", "--methods", "prune", "-p", "prune.save_model=true", "-f", "random:20", "--executor",
                       "local", "--attacks", "", "--cache-dir", str(tmp_path / "cache"), "--tracking-uri", uri,
                       cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    run = client.search_runs(exps, filter_string="tags.`bench.role` = 'trial' and tags.`bench.method` = 'prune'")[0]
    path = client.download_artifacts(run.info.run_id, "prune_model.safetensors", str(tmp_path))
    name, _, arg = run.data.tags["bench.model"].partition(":")
    info = PatchedModel.read_info(path)
    assert (info["num_classes"], info["input_shape"]) == (10, [1, 8, 8])  # digits: 8x8 grey images
    fresh = get_registry().get("model", name).create(info["num_classes"], tuple(info["input_shape"]), arg or None)
    pm = PatchedModel.load(path, fresh)
    records = check(pm, pm.lo.numpy(), pm.hi.numpy())
    assert records and all(r["certified"] for r in records)
    assert run.data.metrics["certified_fraction"] == 1.0
