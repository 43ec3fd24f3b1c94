"""Every built-in method refuses its bad parameter values in ``check_params``, at plan time.

Fast: no Ray, no subprocess, no training. The harness calls ``method.check_params(params)`` with the
defaults merged with the user's values (already converted to the defaults' types), once per dataset
(``dataset_params`` merged), before loading data; a refusal becomes one line and exit code 2.
"""

from __future__ import annotations

import math
import time

import pytest
from bench.methods import FineTune, FisherForgetting, GradientAscent, Retrain, Sisa
from bench.methods.l2ul import L2UL, L2ULAdv, L2ULNaive, L2ULOracle
from bench.methods.prune import Prune
from bench.methods.l1_sparse import L1Sparse
from bench.methods.last_k import CatastrophicForgettingK, ExactUnlearningK
from bench.methods.scrub import Scrub
from bench.methods.ssd import SelectiveSynapticDampening as SSD
from bench.methods.unsir import Unsir

from bench.core.errors import BenchError
from bench.core.method import Method, check_params, requires_for

METHODS = [Retrain(), FineTune(), GradientAscent(), Sisa(), FisherForgetting(), L2UL(), L2ULAdv(), L2ULNaive(),
           L2ULOracle(), Prune()]
BY_NAME = {m.name: m for m in METHODS}
NAN, INF = math.nan, math.inf

_SGD = [("lr", 0.0), ("lr", -0.1), ("lr", NAN), ("lr", INF), ("momentum", -0.1), ("momentum", 1.0),
        ("momentum", NAN), ("weight_decay", -1e-4), ("weight_decay", NAN), ("weight_decay", INF)]
_L2UL_COMMON = [
    ("variant", "adv+"), ("mode", "flip"), ("relabel_to", -2), ("relabel_to", 1.5), *_SGD,
    ("forget_batch_size", 0), ("forget_batch_size", -32), ("max_epochs", 0), ("max_epochs", 2.5),
    ("train_mode", "yes"), ("mask_misclassified", 1), ("forget_loss", "ce"), ("forget_mean", "sum"),
    ("anchor_weight", -1.0), ("anchor_weight", INF), ("anchor_weight", NAN), ("anchor_samples", 0),
    ("anchor_inputs", "gaussian"), ("anchor_loss", "l1"),
]
_L2UL_ADV = [("eps", 0.0), ("eps", -1.0), ("eps", INF), ("pgd_step", 0.0), ("pgd_steps", 0), ("pgd_steps", -1),
             ("adv_per_instance", 0), ("adv_batch_size", 0)]

#: (method name, parameter, bad value): every row is refused, with a message naming parameter and value.
BAD = [
    ("retrain", "epochs", 3),
    *[("ft", k, v) for k, v in [("epochs", 0), ("epochs", -5), ("epochs", 2.5), ("batch_size", 0), ("batch_size", -1),
                                *_SGD, ("optimizer", "rmsprop"), ("optimizer", "SGD")]],
    *[("ga", k, v) for k, v in [("variant", "bogus"), ("epochs", 0), ("epochs", -1), ("batch_size", 0), *_SGD,
                                ("alpha", -0.1), ("alpha", 1.5), ("alpha", NAN), ("stop_forget_acc", -0.5),
                                ("stop_forget_acc", -2.0), ("stop_forget_acc", 1.5), ("stop_forget_acc", NAN),
                                ("train_mode", "yes"), ("train_mode", 1)]],
    *[("sisa", k, v) for k, v in [("shards", 0), ("shards", -1), ("shards", 1.5), ("slices", 0), ("epochs", -1),
                                  ("aggregation", "mean"), ("weighting", "size")]],
    *[("fisher", k, v) for k, v in [("fisher", "exact"), ("alpha", -1.0), ("alpha", NAN), ("alpha", INF),
                                    ("chunk_size", -1), ("chunk_size", 2.5)]],
    *[("l2ul", k, v) for k, v in [*_L2UL_COMMON, *_L2UL_ADV, ("lam", -1.0), ("lam", NAN), ("variant", "oracle")]],
    *[("l2ul-adv", k, v) for k, v in [*_L2UL_COMMON, *_L2UL_ADV, ("variant", "full"), ("variant", "oracle")]],
    *[("l2ul-naive", k, v) for k, v in [*_L2UL_COMMON, ("variant", "adv"), ("variant", "full"), ("variant", "oracle")]],
    *[("l2ul-oracle", k, v) for k, v in [*_L2UL_COMMON, ("retain_batch_size", 0), ("variant", "adv"),
                                         ("variant", "full")]],
    *[("prune", k, v) for k, v in [("gamma", 0.0), ("gamma", -1.0), ("gamma", INF), ("gamma", NAN), ("k", 0),
                                   ("k", 2.5), ("max_iter", 0), ("target", "worst"), ("region", "ball"),
                                   ("box_radius", 0.0), ("lp", "exact"), ("relax_rows", -1), ("eps", 0.0),
                                   ("eps", -1e-3), ("feature_margin", -0.1), ("feature_margin", INF),
                                   ("stop_forget_acc", -0.1), ("stop_forget_acc", 1.5), ("certify", "yes"),
                                   ("lp_backend", "gurobi")]],
]

#: (method name, parameter, good value at an edge of its range): accepted.
GOOD = [
    ("ft", "epochs", 1), ("ft", "momentum", 0.0), ("ft", "weight_decay", 0.0), ("ft", "optimizer", "adamw"),
    ("ga", "variant", "neggrad+"), ("ga", "stop_forget_acc", -1.0), ("ga", "stop_forget_acc", 1.0),
    ("ga", "alpha", 0.0), ("ga", "alpha", 1.0), ("ga", "train_mode", False),
    ("sisa", "epochs", 0), ("sisa", "shards", 1), ("sisa", "aggregation", "softmax"),
    ("sisa", "weighting", "proportional"),
    ("fisher", "alpha", 0.0), ("fisher", "fisher", "mc"), ("fisher", "chunk_size", 0), ("fisher", "chunk_size", 64),
    ("l2ul", "relabel_to", -1), ("l2ul", "relabel_to", 3), ("l2ul", "lam", 0.0), ("l2ul", "anchor_weight", 0.0),
    ("l2ul", "variant", "adv"), ("l2ul", "variant", "naive"), ("l2ul-adv", "variant", "naive"),
    ("l2ul-oracle", "variant", "naive"), ("l2ul", "mode", "relabel"), ("l2ul", "forget_loss", "unlikelihood"),
    ("l2ul", "anchor_inputs", "mixed"), ("l2ul", "anchor_loss", "kl"), ("l2ul", "forget_mean", "active"),
    ("prune", "relax_rows", 0), ("prune", "feature_margin", 0.0), ("prune", "stop_forget_acc", 1.0),
    ("prune", "certify", False), ("prune", "region", "activation_box"), ("prune", "lp", "minimal"),
]


def _id(row) -> str:
    return f"{row[0]}.{row[1]}={row[2]!r}"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_every_builtin_method_subclasses_the_base_class(method):
    assert isinstance(method, Method)
    assert type(method).check_params is not Method.check_params  # each has its own check
    assert requires_for(method, dict(method.default_params)) <= frozenset(method.requires)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_defaults_are_accepted_on_every_dataset(method):
    method.check_params(dict(method.default_params))
    for dataset, per in (method.dataset_params or {}).items():
        params = {**method.default_params, **{k: v for k, v in per.items() if k in method.default_params}}
        method.check_params(params)  # e.g. l2ul's cifar10 / digits settings


#: the parameter that makes a GOOD row's parameter have an effect (alone it is refused: see below)
ENABLED_BY = {("ga", "alpha"): {"variant": "neggrad+"}, ("l2ul", "relabel_to"): {"mode": "relabel"},
              ("l2ul", "anchor_inputs"): {"anchor_weight": 1.0}, ("l2ul", "anchor_loss"): {"anchor_weight": 1.0},
              ("l2ul", "forget_mean"): {"mask_misclassified": True}}


@pytest.mark.parametrize("row", GOOD, ids=_id)
def test_edge_values_are_accepted(row):
    name, key, value = row
    method = BY_NAME[name]
    assert key in method.default_params
    method.check_params({**method.default_params, **ENABLED_BY.get((name, key), {}), key: value})


@pytest.mark.parametrize("method, given, enabling", [
    (FineTune(), {"optimizer": "adam", "momentum": 0.5}, {"optimizer": "sgd"}),
    (GradientAscent(), {"alpha": 0.1}, {"variant": "neggrad+"}),
    (L2ULNaive(), {"relabel_to": 5}, {"mode": "relabel"}),
    (L2UL(), {"relabel_to": 0}, {"mode": "relabel"}),
    (Scrub(), {"momentum": 0.5}, {"preset": "large"}),  # the small preset trains with Adam
    (Scrub(), {"momentum": 0.5}, {"optimizer": "sgd"}),
    (GradientAscent(), {"variant": "neggrad+", "stop_forget_acc": 0.5}, {"variant": "ga"}),
    (Scrub(), {"msteps": 0, "forget_batch_size": 8}, {"msteps": 1}),
    (Unsir(), {"noise_steps": 0, "noise_lr": 1.0}, {"noise_steps": 2}),
    (Unsir(), {"noise_steps": 0, "noise_reg": 2.0}, {"noise_steps": 2}),
    (Unsir(), {"repair_epochs": 0, "repair_batch_size": 16}, {"repair_epochs": 1}),
    (L1Sparse(), {"alpha": 0.0, "no_l1_epochs": 1}, {"alpha": 1e-4}),
    (SSD(), {"chunk_size": 3}, {"batch_size": 1}),
    (Scrub(), {"preset": "large", "lr_decay": 0.5}, {"epochs": 4}),  # milestones 3,5,9 and 3 epochs
    (Scrub(), {"milestones": "", "lr_decay": 0.5}, {"milestones": "2"}),
    (Scrub(), {"msteps": 0, "alpha": 0.0, "temperature": 3.0}, {"alpha": 0.1}),
    (Scrub(), {"msteps": 0, "alpha": 0.0, "temperature": 3.0}, {"msteps": 1}),
    (CatastrophicForgettingK(), {"epochs": 2, "lr_decay": 0.5}, {"epochs": 3}),
    (ExactUnlearningK(), {"epochs": 1, "lr_decay": 0.5}, {"epochs": 3}),
    (L2UL(), {"anchor_samples": 16}, {"anchor_weight": 1.0}),
    (L2ULNaive(), {"mode": "relabel", "forget_loss": "unlikelihood"}, {"mode": "misclassify"}),
    (L2UL(), {"forget_mean": "active"}, {"mask_misclassified": True}),
    (L2UL(), {"variant": "naive", "eps": 3.0}, {"variant": "adv"}),
    (L2UL(), {"variant": "adv", "lam": 5.0}, {"variant": "full"}),
    (L2ULOracle(), {"variant": "naive", "retain_batch_size": 16}, {"variant": "oracle"}),
], ids=lambda v: getattr(v, "name", None) or ",".join(f"{k}={x}" for k, x in v.items()))
def test_a_value_another_parameter_makes_unused_is_refused(method, given, enabling):
    """A value that changes nothing at the other parameters' values (momentum under Adam, GA's alpha
    outside NegGrad+, relabel_to outside mode=relabel, ...) ran the default's numbers while the record
    said the value given (found in review); refused, as the recipe refuses momentum with Adam, when
    the user gave it (the harness passes the names given), and accepted with the parameter that gives
    it an effect, or when it is only a default (the method's or a dataset's: L2UL's digits defaults
    set its loss shape, which mode=relabel leaves unused)."""
    key = list(given)[-1]  # the value refused; the ones before it set the condition
    params = {**method.default_params, **given}
    with pytest.raises(BenchError, match=rf"{key}={given[key]!r}: has no effect with .*: drop it, or ") as refused:
        check_params(method.name, method, params, given=given.keys())
    assert "a bug of the plugin" not in str(refused.value)  # the user's value, even where it equals a default
    check_params(method.name, method, {**params, **enabling}, given=[*given, *enabling])
    check_params(method.name, method, params, given=[k for k in given if k != key])  # a default, not the user's
    # a direct call (no names given): decided by the defaults
    if all(params[key] != per.get(key, method.default_params[key]) for per in [{}, *(method.dataset_params or {}).values()]):
        with pytest.raises(ValueError, match=rf"^{key}={given[key]!r}: has no effect"):
            method.check_params(params)


@pytest.mark.parametrize("row", BAD, ids=_id)
def test_bad_value_is_refused_naming_parameter_and_value(row):
    name, key, value = row
    method = BY_NAME[name]
    assert key in method.default_params or name == "retrain", f"{name} has no parameter {key}"
    with pytest.raises((ValueError, BenchError)) as exc:
        method.check_params({**method.default_params, key: value})
    message = str(exc.value)
    assert "\n" not in message
    assert f"{key}={value!r}" in message, message
    assert "expected" in message or "use the method" in message, message
    # through the harness's accessor: one BenchError line naming the method
    with pytest.raises(BenchError) as wrapped:
        check_params(name, method, {**method.default_params, key: value})
    assert "\n" not in str(wrapped.value) and f"method '{name}'" in str(wrapped.value)


def test_requires_for_only_says_what_data_is_used():
    """Validation lives in check_params; requires_for no longer raises on a bad value."""
    ga = GradientAscent()
    assert ga.requires_for({**ga.default_params, "variant": "neggrad+"}) == {"forget", "retain"}
    assert ga.requires_for({**ga.default_params, "variant": "bogus"}) == {"forget"}
    assert requires_for(Sisa(), {**Sisa.default_params, "shards": 0}) == {"retain"}
    assert requires_for(FisherForgetting(), {**FisherForgetting.default_params, "fisher": "exact"}) == {"retain"}


def test_direct_unlearn_calls_are_refused_before_any_work():
    """Methods that validated inside unlearn still refuse a bad value there (one BenchError line),
    before touching the model or the request."""
    for method, key, value in ((Prune(), "lp", "exact"), (FisherForgetting(), "alpha", -1.0),
                               (L2UL(), "mode", "flip")):
        with pytest.raises(BenchError, match=f"method '{method.name}'.*{key}="):
            method.unlearn(None, None, {**method.default_params, key: value}, None)


def test_cli_refuses_a_bad_value_at_once_without_training(tmp_path):
    from click.testing import CliRunner

    from bench.cli import main

    cache = tmp_path / "c"
    start = time.perf_counter()
    result = CliRunner().invoke(main, ["run", "--methods", "ft", "-p", "ft.epochs=-5",
                                       "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--cache-dir", str(cache)])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and "method 'ft'" in lines[0] and "epochs=-5" in lines[0], lines[0]
    assert "positive" in lines[0] or ">= 1" in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not cache.exists() and not (tmp_path / "m.db").exists()  # no reference trained, no run logged
    assert elapsed < 5, elapsed


class _Plain:
    """A third-party method without the base class and without check_params."""

    name = "plain-method"
    description = "A plain object: no base class, no check_params."
    requires = frozenset({"forget"})
    default_params = {"epochs": 3}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):  # pragma: no cover - never run here
        return model


def test_a_plain_object_without_the_base_class_still_registers_and_validates(tmp_path):
    from bench.core.options import RunOptions
    from bench.core.plugins import build_registry, make_plugin_manager
    from bench.run.validate import validate_options

    registry = build_registry(make_plugin_manager())[0]
    registry.add("method", _Plain(), "test-plugin")
    assert registry.get("method", "plain-method").name == "plain-method"
    check_params("plain-method", _Plain(), {"epochs": -5})  # no check_params: everything is accepted
    opts = RunOptions(methods="plain-method", params={"plain-method": {"epochs": "-5"}},
                      tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    methods, _, _ = validate_options(registry, opts)
    assert [(m.name, m.params) for m in methods] == [("plain-method", {"epochs": -5})]


def test_a_method_that_takes_only_class_requests_is_refused_other_kinds_before_any_work():
    from bench.core.forget import parse_forget
    from bench.core.method import Method
    from bench.run.validate import MethodPlan, check_forget_kinds

    class ClassOnly(Method):
        name = "class-only"
        forget_kinds = frozenset({"class"})

    plan = [MethodPlan("class-only", ClassOnly(), {}, (), "test")]
    check_forget_kinds(plan, [parse_forget("class:3"), parse_forget("seq:class:1,3")])
    for spec in ("random:10%", "indices:/tmp/x.npy", "seq:3x10"):
        with pytest.raises(BenchError, match=r"Method 'class-only' cannot take (random|indices) requests .* class requests only"):
            check_forget_kinds(plan, [parse_forget(spec)])
    plain = [MethodPlan("ft", object(), {}, (), "test")]  # no forget_kinds: every kind
    check_forget_kinds(plain, [parse_forget("random:10%"), parse_forget("class:3")])


def test_a_wildcard_leaves_out_methods_that_cannot_take_the_request_and_a_name_is_refused(tmp_path):
    from bench.core.options import RunOptions
    from bench.core.plugins import get_registry
    from bench.run.validate import validate_options

    def selected(methods, forgets):
        opts = RunOptions(methods=methods, forgets=forgets, tracking_uri=f"sqlite:///{tmp_path}/m.db",
                          cache_dir=str(tmp_path / "c"))
        return [m.name for m in validate_options(get_registry(), opts)[0]]

    every = get_registry().names("method")
    assert selected("*", ["class:3"]) == every
    assert selected("*", ["random:10%"]) == [n for n in every if n != "unsir"]  # class requests only
    with pytest.raises(BenchError, match="No method selected by 'u\\*' can take the forget requests random:10%"):
        selected("u*", ["random:10%"])
    with pytest.raises(BenchError, match="Method 'unsir' cannot take random requests"):
        selected("unsir,ft", ["random:10%"])


def test_tuned_parameters_are_saved_without_the_tuned_datasets_defaults():
    """neggrad+ tuned over lr on digits: every parameter of the best sample was saved, its digits
    default alpha (0.97 then) among them, and overrode alpha on every other dataset the file was reused on."""
    from bench.core.plugins import get_registry
    from bench.run.tune_params import saved_params
    from bench.run.validate import MethodPlan, params_for_dataset

    method = get_registry().get("method", "neggrad+")
    given = {"epochs": 2}
    plan = MethodPlan("neggrad+", method, {**method.default_params, **given}, (), "builtin")
    sample = {**params_for_dataset(plan, "digits", given), "lr": 0.01}
    assert sample["alpha"] == 0.96 != method.default_params["alpha"]  # the digits default, in the sample
    saved = saved_params(sample, {"lr": None}, given)
    assert saved == {"lr": 0.01, "epochs": 2}
    reused = MethodPlan("neggrad+", method, {**method.default_params, **saved}, (), "builtin")
    assert params_for_dataset(reused, "mnist1d", saved)["alpha"] == method.default_params["alpha"]
