"""``ssd`` / ``lfssd`` (Selective Synaptic Dampening, Foster et al., AAAI 2024; label-free variant)
and ``unsir`` (Tarun et al., IEEE TNNLS): the conformance kit, SSD's importances against literal
loops, the no-selection identity, UNSIR's class-only refusal at plan time, bad parameters, and
digits class 3 / random 10% through the harness (slow)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from bench.methods.ssd import (
    LabelFreeSSD,
    SelectiveSynapticDampening,
    dampen,
    importances,
)
from bench.methods.unsir import Unsir, learn_noise, retain_subset
from torch import nn

from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.errors import BenchError
from bench.core.method import check_params, dataset_params, forget_kinds
from bench.testing import check_method

NAN, INF = math.nan, math.inf
SSD, LFSSD, UNSIR = SelectiveSynapticDampening(), LabelFreeSSD(), Unsir()


def _tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _request(kind="class", n=30, seed=1):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)
    f = y == 1 if kind == "class" else torch.arange(n) < n // 5
    return ForgetRequest(num_classes=3, kind=kind, forget_class=1 if kind == "class" else None,
                         forget_x=x[f], forget_y=y[f], retain_x=x[~f], retain_y=y[~f])


def _ctx(seed=0):
    return MethodContext(seed, "cpu", _tiny)


# -- conformance ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", [SSD, LFSSD], ids=["ssd", "lfssd"])
@pytest.mark.parametrize("params", [{"selection_weighting": 5.0}, {"batch_size": 1, "selection_weighting": 2.0}],
                         ids=["batches", "per-example"])
def test_ssd_conformance(method, params):
    # The kit's toy set (500 points, 50 of the forget class, D_r then D_f in batches of 64) bounds
    # I_f / I_D below 8.9 for every weight (ssd 8.83, lfssd 8.32), so the published alpha 10 and
    # the digits setting (measured on the 1,437-point split) select nothing there and the
    # forgetting check would fail by construction: the kit runs with alpha 5 (2 for the
    # per-example importances, whose ratios are lower still).
    check_method(method, params={**method.default_params, **params})


def test_unsir_conformance():
    # the kit leaves out the random (single-point) and indices (empty) checks by forget_kinds
    check_method(UNSIR, params={**UNSIR.default_params, **dataset_params(UNSIR, "digits")})


# -- SSD importances against literal loops --------------------------------------------------------

def _loop_importance(model, x, y, batch_size, label_free):
    """The reference ``calc_importance`` literally: backward per batch, h(grad) summed, / #batches."""
    model = copy.deepcopy(model).eval()
    acc = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    nb = 0
    for s in range(0, len(x), batch_size):
        model.zero_grad()
        out = model(x[s:s + batch_size])
        loss = torch.norm(out, p="fro", dim=1).pow(2).mean() if label_free else F.cross_entropy(out, y[s:s + batch_size])
        loss.backward()
        for k, p in model.named_parameters():
            acc[k] += p.grad.abs() if label_free else p.grad.pow(2)
        nb += 1
    return {k: v / nb for k, v in acc.items()}


@pytest.mark.parametrize("label_free", [False, True], ids=["ssd", "lfssd"])
@pytest.mark.parametrize("batch_size,chunk", [(1, 0), (1, 7), (8, 0), (64, 0)])
def test_importances_equal_a_naive_loop(label_free, batch_size, chunk):
    model, req = _tiny(), _request(n=37)
    model.eval()
    got = importances(model, req.retain_x, req.retain_y, batch_size, label_free, chunk)
    want = _loop_importance(model, req.retain_x, req.retain_y, batch_size, label_free)
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-7)


def test_importances_leave_the_model_and_its_grads_untouched():
    model, req = _tiny(), _request()
    before = copy.deepcopy(model.state_dict())
    importances(model, req.forget_x, req.forget_y, 4)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_dampening_rule_is_the_papers():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, 3.0]]))
    imp_f = {"weight": torch.tensor([[10.0, 1.0]])}
    imp_d = {"weight": torch.tensor([[0.5, 1.0]])}
    # I_f > alpha·I_D only for the first weight (10 > 4·0.5): scaled by lambda·I_D/I_f = 2·0.5/10
    assert dampen(model, imp_f, imp_d, alpha=4.0, lam=2.0) == 1
    torch.testing.assert_close(model.weight, torch.tensor([[2.0 * 0.1, 3.0]]))
    # the factor is bounded by 1: a huge lambda never grows a weight
    assert dampen(model, imp_f, imp_d, alpha=4.0, lam=1e6) == 1
    torch.testing.assert_close(model.weight, torch.tensor([[2.0 * 0.1, 3.0]]))


@pytest.mark.parametrize("method", [SSD, LFSSD], ids=["ssd", "lfssd"])
@pytest.mark.parametrize("kind", ["class", "random"])
def test_a_threshold_that_selects_nothing_returns_the_original_bit_for_bit(method, kind):
    model, req = _tiny(), _request(kind)
    before = copy.deepcopy(model.state_dict())
    ctx = _ctx()
    out = method.unlearn(model, req, {**method.default_params, "selection_weighting": 1e30}, ctx)
    assert ctx.metrics["ssd_selected_fraction"] == 0.0
    after = out.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_ssd_dampens_on_a_class_request_and_leaves_the_request_untouched():
    model, req = _tiny(), _request()
    saved = [t.clone() for t in (req.forget_x, req.forget_y, req.retain_x, req.retain_y)]
    ctx = _ctx()
    SSD.unlearn(model, req, {**SSD.default_params, "selection_weighting": 1.5}, ctx)
    assert ctx.metrics["ssd_selected_fraction"] > 0
    assert all(torch.equal(a, b) for a, b in zip(saved, (req.forget_x, req.forget_y, req.retain_x, req.retain_y)))


# -- UNSIR ----------------------------------------------------------------------------------------

def test_unsir_takes_class_requests_only():
    assert forget_kinds(UNSIR) == {"class"} and UNSIR.requires == {"retain"}
    with pytest.raises(ValueError, match="class requests only"):
        UNSIR.unlearn(_tiny(), _request("random"), dict(UNSIR.default_params), _ctx())


def test_unsir_noise_raises_the_forget_class_loss_and_leaves_the_model_alone():
    model = _tiny()
    before = copy.deepcopy(model.state_dict())
    labels = torch.full((8,), 1)
    start = torch.randn((8, 6), generator=torch.Generator().manual_seed(0))
    noise = learn_noise(model, 1, (8, 6), 25, 0.1, 0.1, 0, "cpu", torch.float32)
    assert F.cross_entropy(model(noise), labels) > F.cross_entropy(model(start), labels)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())  # nothing leaks into the impair step (fix)
    again = learn_noise(model, 1, (8, 6), 25, 0.1, 0.1, 0, "cpu", torch.float32)
    assert torch.equal(noise, again)


def test_unsir_retain_subset_keeps_the_first_per_class_in_order():
    y = torch.tensor([2, 0, 2, 2, 0, 1, 2])
    assert retain_subset(y, 2).tolist() == [0, 1, 2, 4, 5]
    assert retain_subset(y, 500).tolist() == list(range(7))


def test_unsir_changes_the_model_deterministically():
    outs = []
    for _ in range(2):
        model, req = _tiny(), _request()
        outs.append(UNSIR.unlearn(model, req, {**UNSIR.default_params, "noise_copies": 2}, _ctx(3)).state_dict())
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])
    assert any(not torch.equal(outs[0][k], _tiny().state_dict()[k]) for k in outs[0])


def test_unsir_on_a_random_request_is_refused_before_any_work(invoke_bench, store_args, workdir):
    proc = invoke_bench("run", "--methods", "unsir", "--forget", "random:10%", "--attacks", "", *store_args(workdir),
                        cwd=workdir)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "unsir" in lines[0], proc.stderr
    assert "trial(s)" not in proc.stdout  # the plan was never announced
    assert list((workdir / "cache").iterdir()) == []  # nothing trained or cached
    assert not (workdir / "mlflow.db").exists()  # nothing recorded


# -- parameters -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method,key,value", [
    (SSD, "selection_weighting", 0.0), (SSD, "selection_weighting", -1.0), (SSD, "selection_weighting", NAN),
    (SSD, "dampening_constant", 0.0), (SSD, "dampening_constant", INF), (SSD, "batch_size", 0),
    (SSD, "batch_size", 2.5), (SSD, "chunk_size", -1), (LFSSD, "selection_weighting", -2.0),
    (LFSSD, "batch_size", 0), (UNSIR, "lr", 0.0), (UNSIR, "lr", NAN), (UNSIR, "noise_lr", -0.1),
    (UNSIR, "noise_reg", -1.0), (UNSIR, "noise_steps", -1), (UNSIR, "noise_batch_size", 0),
    (UNSIR, "noise_copies", 0), (UNSIR, "samples_per_class", 0), (UNSIR, "batch_size", 0),
    (UNSIR, "repair_batch_size", 1.5), (UNSIR, "impair_epochs", -1), (UNSIR, "repair_epochs", 0.5),
])
def test_bad_parameters_are_refused(method, key, value):
    with pytest.raises(BenchError, match=key):
        check_params(method.name, method, {**method.default_params, key: value})


@pytest.mark.parametrize("method", [SSD, LFSSD, UNSIR], ids=["ssd", "lfssd", "unsir"])
def test_defaults_and_digits_setting_are_accepted(method):
    check_params(method.name, method, dict(method.default_params))
    check_params(method.name, method, {**method.default_params, **dataset_params(method, "digits")})
    assert set(method.search_space) <= set(method.default_params)


# -- through the harness --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_digits_class_3_through_the_harness(baseline_trials):
    code, out, kids = baseline_trials("class:3", attacks="")
    assert code == 0, out
    for name in ("ssd", "lfssd", "unsir"):
        row = kids.loc[name]
        assert row["metrics.original_forget_acc"] > 0.95
        assert row["metrics.forget_acc"] <= 0.05, (name, row["metrics.forget_acc"])
        drop = row["metrics.original_test_retain_class_acc"] - row["metrics.test_retain_class_acc"]
        assert drop <= 0.03, (name, drop)


@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_digits_random_10_percent_end_to_end_with_the_default_attacks(baseline_trials):
    code, out, kids = baseline_trials("random:10%")
    assert code == 0, out
    for name in ("ssd", "lfssd"):
        row = kids.loc[name]
        assert row["status"] == "FINISHED"
        for key in ("forget_acc", "retain_acc", "test_acc", "avg_gap", "unlearn_seconds", "loss_auc", "entropy_auc",
                    "mia_efficacy", "ssd_selected_fraction"):
            value = row[f"metrics.{key}"]
            assert value == value, (name, key)  # logged, not NaN
        assert row["metrics.test_acc"] >= 0.9, (name, row["metrics.test_acc"])
    table = out[out.index("attacks on the forget set"):]
    assert all(h in table for h in ("loss_auc", "entropy_auc", "mia_efficacy")), table
    lines = table.splitlines()
    assert any("│ ssd " in line for line in lines) and any("│ lfssd " in line for line in lines), table
