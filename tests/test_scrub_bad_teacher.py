"""SCRUB (``scrub``) and Bad Teacher (``bad-teacher``): conformance, parameter checks, the presets,
SCRUB without its max steps and KL term being fine-tuning bit for bit, the batchmean KL, and the
methods' goals on digits through the harness."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from bench.methods.bad_teacher import BadTeacher, teacher_kl
from bench.methods.scrub import PRESETS, Scrub, decayed_lr, distill_kl, resolve

from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.errors import BenchError
from bench.core.method import check_params
from bench.testing import check_method, toy_setting

METHODS = [Scrub(), BadTeacher()]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _request(forget_class=3):
    s = toy_setting()
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
    """With the digits dataset_params (the toy setting is digits; bad-teacher's published defaults
    make three Adam steps there and forget nothing: see its docstring)."""
    check_method(method, params=dict(method.dataset_params.get("digits", {})))


def test_scrub_large_preset_conforms():
    """The large-scale set (SGD at lr 5e-4 for 3 epochs) is meant for CIFAR-sized sets; on the toy
    digits subset it moves too little to forget, so only the other checks run."""
    check_method(Scrub(), params={"preset": "large"}, forgets=False)


def test_registered_with_sources_in_their_docstrings():
    from bench.core.plugins import get_registry

    names = {e.obj.name for e in get_registry().entries("method")}
    assert {"scrub", "bad-teacher"} <= names
    import bench.methods.bad_teacher as bad_teacher
    import bench.methods.scrub as scrub

    for needle in ("small_scale_unlearning.ipynb", "large_scale_unlearning.ipynb", "train_distill", "DistillKL",
                   "issue #4", "NeurIPS 2023"):
        assert needle in scrub.__doc__, needle
    for needle in ("vikram2000b/bad-teaching-unlearning", "unlearn.py", "batchmean", "AAAI 2023"):
        assert needle in bad_teacher.__doc__, needle


@pytest.mark.parametrize("method,key,bad", [
    (Scrub(), "preset", "medium"), (Scrub(), "lr", 0.0), (Scrub(), "lr", float("inf")), (Scrub(), "lr_decay", 0.0),
    (Scrub(), "optimizer", "rmsprop"), (Scrub(), "momentum", 1.0), (Scrub(), "weight_decay", -0.5),
    (Scrub(), "temperature", 0.0), (Scrub(), "gamma", -2.0), (Scrub(), "alpha", float("nan")),
    (Scrub(), "msteps", -2), (Scrub(), "msteps", 1.5), (Scrub(), "epochs", 0), (Scrub(), "retain_batch_size", 0),
    (Scrub(), "forget_batch_size", -3), (Scrub(), "milestones", "5,x"), (Scrub(), "milestones", "0,3"),
    (BadTeacher(), "lr", -1e-4), (BadTeacher(), "epochs", 0), (BadTeacher(), "batch_size", 0),
    (BadTeacher(), "temperature", 0.0), (BadTeacher(), "retain_fraction", 1.5),
    (BadTeacher(), "retain_fraction", float("nan")),
])
def test_check_params_refuses_bad_values(method, key, bad):
    params = {**method.default_params, key: bad}
    with pytest.raises(ValueError, match=f"^{key}="):
        method.check_params(params)
    with pytest.raises(BenchError, match=f"-p {method.name}.{key}=VALUE"):
        check_params(method.name, method, params)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_resolve_to_the_published_sets_and_parameters_override_them(preset):
    p = resolve({**Scrub.default_params, "preset": preset})
    expected = dict(PRESETS[preset])
    expected["milestones"] = [int(m) for m in expected["milestones"].split(",")]
    assert {k: p[k] for k in expected} == expected
    assert p["lr"] == 5e-4 and p["lr_decay"] == 0.1
    over = resolve({**Scrub.default_params, "preset": preset, "alpha": 0.0, "msteps": 0, "milestones": "",
                    "optimizer": "sgd"})
    assert (over["alpha"], over["msteps"], over["milestones"], over["optimizer"]) == (0.0, 0, [], "sgd")
    assert over["temperature"] == PRESETS[preset]["temperature"]


def test_published_values():
    small, large = PRESETS["small"], PRESETS["large"]
    assert (small["optimizer"], small["temperature"], small["gamma"], small["alpha"], small["msteps"],
            small["epochs"], small["weight_decay"]) == ("adam", 2.0, 1.0, 0.5, 3, 10, 0.1)
    assert (large["optimizer"], large["momentum"], large["weight_decay"], large["temperature"], large["gamma"],
            large["alpha"], large["msteps"], large["epochs"], large["milestones"], large["retain_batch_size"],
            large["forget_batch_size"]) == ("sgd", 0.9, 5e-4, 4.0, 0.99, 0.001, 2, 3, "3,5,9", 128, 32)
    assert BadTeacher.default_params == {"lr": 1e-4, "epochs": 1, "batch_size": 256, "temperature": 1.0,
                                         "retain_fraction": 0.3}


def test_lr_decays_after_each_milestone():
    lrs = [decayed_lr(1.0, 0.1, [5, 8, 9], e) for e in range(1, 11)]
    assert lrs == pytest.approx([1, 1, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.001])


def test_distill_kl_is_repdistillers_and_batchmean_is_the_true_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    pt, ps = F.softmax(t / 2, 1), F.softmax(s / 2, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean()
    assert torch.allclose(distill_kl(s, t, 2.0), kl * 4, atol=1e-6)
    q = F.softmax(t, 1)
    assert torch.allclose(teacher_kl(s, q, 1.0), (q * (q.log() - F.log_softmax(s, 1))).sum(1).mean(), atol=1e-6)
    # the reference's element-mean ("mean": divided by B*K) is the same divided by K
    element_mean = F.kl_div(F.log_softmax(s, 1), q, reduction="sum") / q.numel()
    assert torch.allclose(element_mean, teacher_kl(s, q, 1.0) / 5, atol=1e-7)


# -- SCRUB without max steps and without the KL term is fine-tuning -----------------------------


def _plain_ce_loop(model, request, p, seed):
    """Plain CE fine-tuning on D_r: same optimiser, the same shuffles from the same seed, the same step decay."""
    from bench.nn.training import batches

    g = torch.Generator().manual_seed(seed)
    if p["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"])
    for epoch in range(1, p["epochs"] + 1):
        for group in opt.param_groups:
            group["lr"] = p["lr"] * p["lr_decay"] ** sum(epoch > m for m in p["milestones"])
        for idx in batches(len(request.retain_y), p["retain_batch_size"], g, "cpu"):
            model.train()
            loss = F.cross_entropy(model(request.retain_x[idx]), request.retain_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_scrub_without_max_steps_and_kl_is_fine_tuning_bit_for_bit(preset):
    params = {**Scrub.default_params, "preset": preset, "msteps": 0, "alpha": 0.0, "gamma": 1.0, "epochs": 4}
    s = toy_setting()
    out = Scrub().unlearn(s.original_copy(), _request(), params, _ctx(5))
    ref = _plain_ce_loop(s.original_copy(), _request(), resolve(params), 5)
    assert all(torch.equal(a, b) for a, b in zip(_weights(out), _weights(ref), strict=True))
    moved = any(not torch.equal(a, b) for a, b in zip(_weights(out), _weights(s.original_copy()), strict=True))
    assert moved


def test_scrub_without_max_steps_and_kl_equals_the_ft_method():
    """And the harness's own ``ft`` loop with the same optimiser, batches, constant lr and seed."""
    from bench.methods.finetune import FineTune

    params = {**Scrub.default_params, "msteps": 0, "alpha": 0.0, "gamma": 1.0, "epochs": 3, "milestones": "",
              "optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4, "lr": 0.01, "retain_batch_size": 64}
    s = toy_setting()
    out = Scrub().unlearn(s.original_copy(), _request(), params, _ctx(2))
    ft = FineTune().unlearn(s.original_copy(), _request(), {**FineTune.default_params, "epochs": 3}, _ctx(2))
    assert all(torch.equal(a, b) for a, b in zip(_weights(out), _weights(ft), strict=True))


def test_scrub_logs_the_values_it_resolved_from_its_preset():
    """The run's params keep -1 / "preset" as given; the trial's artifact holds what trained."""
    import json

    params = {**Scrub.default_params, "preset": "large", "epochs": 1, "alpha": 0.25}
    ctx = _ctx()
    Scrub().unlearn(toy_setting().original_copy(), _request(), params, ctx)
    logged = json.loads(ctx.artifacts["scrub-resolved-params.json"])
    assert logged == resolve(params) and logged["alpha"] == 0.25
    assert logged["temperature"] == PRESETS["large"]["temperature"] and logged["optimizer"] == "sgd"


def test_scrub_max_steps_push_the_forget_set_away_from_the_teacher():
    s = toy_setting()
    req = _request()
    original = s.original_copy().eval()
    params = {**Scrub.default_params, "msteps": 2, "epochs": 2, "alpha": 0.0, "lr": 1e-3}
    out = Scrub().unlearn(s.original_copy(), req, params, _ctx()).eval()
    no_max = Scrub().unlearn(s.original_copy(), req, {**params, "msteps": 0}, _ctx()).eval()
    with torch.no_grad():
        d_max = distill_kl(out(req.forget_x), original(req.forget_x), 2.0)
        d_min = distill_kl(no_max(req.forget_x), original(req.forget_x), 2.0)
    assert d_max > d_min


def test_bad_teacher_uses_the_incompetent_teacher_on_the_forget_set_only(monkeypatch):
    """With the retain fraction 0 the student only sees D_f and moves towards the random teacher."""
    s = toy_setting()
    req = _request()
    params = {**BadTeacher.default_params, "retain_fraction": 0.0, "lr": 1e-2, "epochs": 30}
    out = BadTeacher().unlearn(s.original_copy(), req, params, _ctx(4)).eval()
    bad = s.new_model(4).eval()
    original = s.original_copy().eval()
    with torch.no_grad():
        target = F.softmax(bad(req.forget_x), 1)
        after = teacher_kl(out(req.forget_x), target, 1.0)
        before = teacher_kl(original(req.forget_x), target, 1.0)
    assert after < 0.5 * before


def test_bad_teacher_is_deterministic_and_leaves_inputs_alone():
    s = toy_setting()
    req = _request()
    xf, xr = req.forget_x.clone(), req.retain_x.clone()
    a = BadTeacher().unlearn(s.original_copy(), req, dict(BadTeacher.default_params), _ctx(1))
    b = BadTeacher().unlearn(s.original_copy(), req, dict(BadTeacher.default_params), _ctx(1))
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b), strict=True))
    assert torch.equal(xf, req.forget_x) and torch.equal(xr, req.retain_x)


# -- through the harness (slow) ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # one shared run per forget request (conftest.baseline_trials)
def test_each_forgets_a_digits_class_and_keeps_the_other_classes(baseline_trials):
    """digits, default mlp, class:3, defaults (with their digits dataset_params): forget accuracy
    <= 0.05 and test accuracy on the other classes within 3 points of the original's."""
    code, out, kids = baseline_trials("class:3", attacks="")
    assert code == 0, out
    for name in ("scrub", "bad-teacher"):
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
    for name in ("scrub", "bad-teacher"):
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
    assert set(kids.index) >= {"scrub", "bad-teacher"}
    assert (kids["status"] == "FINISHED").all()
