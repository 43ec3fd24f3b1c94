"""CF-k (``cf-k``), EU-k (``eu-k``) (methods/last_k.py) and NegGrad+ (``neggrad+``, methods/neggrad_plus.py).

Fast: the conformance kit, the parameter checks, the blocks found per architecture, frozen parameters
bit-identical after unlearning, an unknown architecture refused, ``neggrad+`` equal to ``ga``'s variant.
Slow: digits ``class:3`` and ``random:10%`` through the harness in process."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from bench.methods.gradient_ascent import GradientAscent
from bench.methods.last_k import (
    CatastrophicForgettingK,
    ExactUnlearningK,
    find_blocks,
    lr_at,
)
from bench.methods.neggrad_plus import NegGradPlus
from torch import nn

from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.errors import BenchError
from bench.core.method import check_params, dataset_params
from bench.nn.nets import MLP, SmallCNN
from bench.nn.resnet_cifar import resnet18_cifar
from bench.testing import check_method

CFK, EUK, NGP = CatastrophicForgettingK(), ExactUnlearningK(), NegGradPlus()
NAN, INF = math.nan, math.inf


# -- conformance and parameters ------------------------------------------------------------------

@pytest.mark.parametrize("method", [EUK, NGP], ids=["eu-k", "neggrad+"])
def test_conformance(method):
    check_method(method)


def test_conformance_cf_k():
    # CF-k fine-tunes on D_r only: on a class request its forget accuracy stays at the original's
    # (documented in methods/last_k.py with the digits numbers), so the forgetting check is skipped.
    check_method(CFK, forgets=False)


_SGD_BAD = [("epochs", 0), ("epochs", 2.5), ("batch_size", 0), ("lr", 0.0), ("lr", -0.1), ("lr", NAN), ("lr", INF),
            ("momentum", -0.1), ("momentum", 1.0), ("weight_decay", -1e-4), ("weight_decay", INF),
            ("train_mode", "yes")]


@pytest.mark.parametrize("method, key, value", [
    *[(m, k, v) for m in (CFK, EUK) for k, v in [*_SGD_BAD, ("k", 0), ("k", -1), ("k", 1.5), ("lr_decay", 0.0),
                                                  ("lr_decay", 1.5), ("lr_decay", NAN)]],
    *[(NGP, k, v) for k, v in [*_SGD_BAD, ("alpha", -0.1), ("alpha", 1.5), ("alpha", NAN)]],
], ids=lambda v: v.name if hasattr(v, "unlearn") else repr(v))
def test_bad_parameters_are_refused_with_one_line(method, key, value):
    params = {**method.default_params, key: value}
    with pytest.raises(BenchError) as err:
        check_params(method.name, method, params)
    text = str(err.value)
    assert f"method '{method.name}'" in text and key in text and "\n" not in text, text


def test_defaults_and_sources_are_published():
    import bench.methods.last_k as last_k
    import bench.methods.neggrad_plus as ngp

    for method in (CFK, EUK, NGP):
        check_params(method.name, method, dict(method.default_params))
        check_params(method.name, method, {**method.default_params, **dataset_params(method, "digits")})
        assert set(method.search_space) <= set(method.default_params) and method.continual is not False
    for source in ("xcadet/deepunlearn", "catastrophic_forgetting_k.py", "exact_unlearning_k.py", "Goel et al."):
        assert source in last_k.__doc__
    for source in ("xcadet/deepunlearn", "neggradplus.py", "NeurIPS 2023", "ga.variant=neggrad+"):
        assert source in ngp.__doc__
    for m in (CFK, EUK):
        d = m.default_params
        assert (d["k"], d["epochs"], d["lr"], d["batch_size"], d["weight_decay"], d["lr_decay"]) == (1, 10, 0.01, 256, 0.1, 0.1)
        assert m.requires == {"retain"}
    d = NGP.default_params
    assert (d["alpha"], d["lr"], d["momentum"], d["epochs"], d["batch_size"]) == (0.95, 0.01, 0.9, 10, 256)
    assert NGP.requires == {"forget", "retain"}


def test_deepunlearn_step_schedule():
    assert [lr_at(e, 10, 0.01, 0.1) for e in range(10)] == pytest.approx([0.01] * 6 + [1e-3] * 3 + [1e-4])


# -- blocks per architecture ---------------------------------------------------------------------

def test_blocks_of_the_built_in_architectures():
    blocks, head = find_blocks(MLP(64, (256, 256), 10), 10)
    assert [b for b, _ in blocks] == ["net.1", "net.3"] and head[0] == "net.5"
    blocks, head = find_blocks(SmallCNN(1, 10), 10)
    assert [b for b, _ in blocks] == ["features.0", "features.2", "head.0"] and head[0] == "head.2"
    blocks, head = find_blocks(resnet18_cifar(10, 3), 10)
    assert [b for b, _ in blocks] == ["layer1", "layer2", "layer3", "layer4"] and head[0] == "fc"


@pytest.mark.parametrize("arch, stages, head", [
    ("resnet18", ["layer1", "layer2", "layer3", "layer4"], "fc"),
    ("test_convnext", ["stages.0", "stages.1", "stages.2", "stages.3"], "head.fc"),
    ("test_vit", None, "head"),
])
def test_blocks_of_timm_models(arch, stages, head):
    import timm

    if not timm.is_model(arch):
        pytest.skip(f"timm has no {arch}")
    model = timm.create_model(arch, pretrained=False, num_classes=10, in_chans=1)
    blocks, found = find_blocks(model, 10)
    assert found[0] == head
    if stages is not None:
        assert [b for b, _ in blocks] == stages
    else:
        assert [b for b, _ in blocks] == [f"blocks.{i}" for i in range(len(model.blocks))]


def test_an_unknown_architecture_is_refused_with_the_message():
    model = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    req = _request(n=8, shape=(1, 8, 8))
    for method in (CFK, EUK):
        with pytest.raises(BenchError, match=r"does not know the blocks of Sequential.*mlp, cnn, resnet18-cifar"):
            method.unlearn(model, req, dict(method.default_params), MethodContext(0, "cpu", lambda: copy.deepcopy(model)))


# -- frozen parameters and the re-initialisation -------------------------------------------------

def _request(n=32, shape=(1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((2 * n, *shape), generator=g)
    y = torch.randint(0, 10, (2 * n,), generator=g)
    return ForgetRequest(num_classes=10, kind="random", forget_x=x[:n], forget_y=y[:n], retain_x=x[n:], retain_y=y[n:])


def _factory(make, seed):
    def new():
        torch.manual_seed(seed)
        return make()
    return new


@pytest.mark.parametrize("method", [CFK, EUK], ids=["cf-k", "eu-k"])
@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet18-cifar", "resnet18"])
def test_frozen_parameters_are_bit_identical_and_the_chosen_blocks_change(method, arch):
    import timm

    make = {"mlp": lambda: MLP(64, (32, 32), 10), "cnn": lambda: SmallCNN(1, 10, (4, 8), 16),
            "resnet18-cifar": lambda: resnet18_cifar(10, 1),
            "resnet18": lambda: timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1)}[arch]
    shape = (1, 16, 16) if "resnet" in arch else (1, 8, 8)
    torch.manual_seed(123)
    original = make()
    model = copy.deepcopy(original)
    req = _request(n=8, shape=shape)
    x_before = req.retain_x.clone()
    params = {**method.default_params, "epochs": 1, "batch_size": 4, "lr": 0.05}
    ctx = MethodContext(0, "cpu", _factory(make, 7))
    out = method.unlearn(model, req, params, ctx)
    blocks, head = find_blocks(original, 10)
    trained = {n for _, names in blocks[-1:] + [head] for n in names}
    before, after = dict(original.state_dict()), dict(out.state_dict())
    assert torch.equal(req.retain_x, x_before)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(any(k.startswith(t + ".") for t in trained) for k in changed), sorted(changed)[:5]
    assert any(k.startswith(head[0] + ".") for k in changed)
    assert all(p.requires_grad for p in out.parameters())  # the flags are restored
    assert ctx.metrics[f"{method.name.replace('-', '')}_blocks"] == 1.0


def test_eu_k_starts_the_chosen_blocks_from_the_seeded_fresh_model():
    from bench.methods.last_k import reinitialise

    torch.manual_seed(0)
    model = MLP(64, (32, 32), 10)
    fresh = _factory(lambda: MLP(64, (32, 32), 10), 5)()
    reinitialise(model, fresh, ["net.3", "net.5"])
    assert torch.equal(model.net[3].weight, fresh.net[3].weight) and torch.equal(model.net[5].bias, fresh.net[5].bias)
    assert not torch.equal(model.net[1].weight, fresh.net[1].weight)


def test_a_k_beyond_the_blocks_trains_them_all():
    model = MLP(64, (16,), 10)
    ctx = MethodContext(0, "cpu", _factory(lambda: MLP(64, (16,), 10), 1))
    CFK.unlearn(model, _request(n=8), {**CFK.default_params, "k": 4, "epochs": 1}, ctx)
    assert ctx.metrics["cfk_blocks"] == 1.0 and ctx.metrics["cfk_trained_fraction"] == 1.0


def test_the_harness_refuses_a_k_beyond_the_blocks():
    """`-p cf-k.k=100` ran, trained the 2 blocks of the MLP and recorded k=100 (cfk_blocks=2)."""
    from bench.core.contracts import Setting
    from bench.core.method import check_setting

    net = MLP(64, (32, 32), 10)
    setting = Setting("digits", "mlp:32,32", "random:10%", 1437, 144, 10, (64,), net)
    for method in (CFK, EUK):
        check_setting(method.name, method, {**method.default_params, "k": 2}, setting)
        with pytest.raises(BenchError, match=rf"Method '{method.name}' cannot run on digits / mlp:32,32 / random:10%: "
                                             r"k=3: mlp:32,32 has 2 block\(s\) before its classifier, so k is at most 2"):
            check_setting(method.name, method, {**method.default_params, "k": 3}, setting)


def test_deterministic_under_the_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = MLP(64, (16, 16), 10)
        ctx = MethodContext(3, "cpu", _factory(lambda: MLP(64, (16, 16), 10), 3))
        outs.append(EUK.unlearn(model, _request(n=16), {**EUK.default_params, "epochs": 2, "batch_size": 8}, ctx))
    assert all(torch.equal(a, b) for a, b in zip(outs[0].state_dict().values(), outs[1].state_dict().values()))


# -- neggrad+ is ga's variant --------------------------------------------------------------------

def test_neggrad_plus_equals_the_ga_variant_with_the_same_numbers():
    torch.manual_seed(0)
    original = MLP(64, (16,), 10)
    req = _request(n=16)
    a = NGP.unlearn(copy.deepcopy(original), req, {**NGP.default_params, "epochs": 2, "batch_size": 8},
                    MethodContext(1, "cpu", lambda: None))
    ga_params = {**GradientAscent.default_params, "variant": "neggrad+", "lr": 0.01, "epochs": 2, "batch_size": 8,
                 "weight_decay": 0.0, "train_mode": False, "momentum": 0.9, "alpha": 0.95}
    b = GradientAscent().unlearn(copy.deepcopy(original), req, ga_params, MethodContext(1, "cpu", lambda: None))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# -- digits through the harness (slow) -----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_digits_class_3_each_forgets_the_class_and_keeps_the_other_classes(baseline_trials):
    code, out, kids = baseline_trials("class:3", attacks="")
    assert code == 0, out
    for name in ("cf-k", "eu-k", "neggrad+"):
        row = kids.loc[name]
        drop = row["metrics.original_test_retain_class_acc"] - row["metrics.test_retain_class_acc"]
        assert drop <= 0.03, (name, drop)
        if name == "cf-k":  # documented: fine-tuning on D_r alone does not forget a class on digits
            assert row["metrics.forget_acc"] > 0.05, row["metrics.forget_acc"]
        else:
            assert row["metrics.forget_acc"] <= 0.05, (name, row["metrics.forget_acc"])
    assert float(kids.loc["eu-k", "params.params.lr"]) == 0.1 and float(kids.loc["neggrad+", "params.params.alpha"]) == 0.96


@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_digits_random_10_percent_end_to_end_with_the_default_attacks(baseline_trials):
    code, out, kids = baseline_trials("random:10%")
    assert code == 0, out
    for name in ("cf-k", "eu-k", "neggrad+"):
        row = kids.loc[name]
        assert row["status"] == "FINISHED"
        for key in ("forget_acc", "retain_acc", "test_acc", "avg_gap", "unlearn_seconds", "loss_auc", "entropy_auc",
                    "mia_efficacy"):
            assert not math.isnan(row[f"metrics.{key}"]), (name, key)
    table = out[out.index("attacks on the forget set"):]
    assert all(h in table for h in ("loss_auc", "entropy_auc", "mia_efficacy")), table
    for name in ("cf-k", "eu-k", "neggrad+"):
        assert any(f"│ {name} " in line for line in table.splitlines()), name


def test_tune_narrows_k_to_the_blocks_of_the_model(tmp_path):
    """bench tune -m cf-k sampled k in 1..4 on the 2-block MLP: 3 of 4 samples failed. The space is
    narrowed to 1..2 and a note says so."""
    from bench.core.options import RunOptions
    from bench.core.plugins import get_registry, plugin_versions
    from bench.core.space import randint
    from bench.run.plan import make_plan
    from bench.run.tune_space import fit_space

    notes = []
    for method in ("cf-k", "eu-k"):
        opts = RunOptions(methods=method, attacks="", executor="local", cache_dir=str(tmp_path / "c"),
                          tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
        plan = make_plan(get_registry(), opts, {}, plugin_versions())
        domains = fit_space(plan.methods[0], plan, {}, lambda text, **kw: notes.append(text))
        assert domains["k"] == randint(1, 3) and domains["lr"] == plan.methods[0].obj.search_space["lr"]
    assert notes[0].startswith("note: cf-k searches k over randint(1, 3), not its declared randint(1, 5): this "
                               "setting refuses k=3, 4 (Method 'cf-k' cannot run on digits / mlp / random:10%: k=3: ")
