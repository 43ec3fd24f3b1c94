"""Conformance checks for plugin authors, modelled on scikit-learn's ``check_estimator``.

Run every check on a plugin object, failing at the first with an ``AssertionError`` that names
the object and the check::

    from bench.testing import check_method, check_dataset, check_attack
    check_method(MyMethod())                   # options: params={...}, forgets=False
    check_dataset(MyDataset(), "n=500")        # the argument after the colon; root=, download=
    check_attack(MyAttack())

or, under pytest, one test per (object, check), with ids like ``ga-check_deterministic_under_seed``::

    from bench.testing import parametrize_with_checks

    @parametrize_with_checks([MyMethod(), (MyMethod(), {"params": {"variant": "b"}}), MyDataset()])
    def test_conformance(plugin, check):
        check(plugin)

Every check is also a plain function, ``check_<property>(obj, **options)``. Method and attack
checks run on a toy setting built once per process (:func:`toy_setting`): a small ReLU MLP
trained with :func:`bench.training.fit` on a fixed 500-point subset of scikit-learn's digits.
Each check runs on one torch thread and restores the global random-number generators and the
thread count it found. ``docs/testing.md`` lists what every check asserts.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import json
import math
import numbers
import pickle
import random
import re
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from .contracts import DATA_ACCESS, AttackContext, ForgetRequest, MethodContext, Splits
from .errors import PluginError
from .registry import Registry

__all__ = [
    "check_method", "check_dataset", "check_attack", "checks_for", "parametrize_with_checks", "toy_setting",
    "ToySetting", "METHOD_CHECKS", "DATASET_CHECKS", "ATTACK_CHECKS",
]

#: The options each kind of check accepts (all optional).
OPTIONS = {
    "method": ("params", "forgets"),  # overrides of default_params; False for a method not meant to forget
    "dataset": ("arg", "root", "download"),  # load(root, download, arg)
    "attack": (),
}
METHOD_CHECKS: list[Callable] = []
DATASET_CHECKS: list[Callable] = []
ATTACK_CHECKS: list[Callable] = []
_CHECKS = {"method": METHOD_CHECKS, "dataset": DATASET_CHECKS, "attack": ATTACK_CHECKS}

SEED = 0  # ctx.seed of the calls a check makes
_SCRAMBLE = (1234, 98765)  # global RNG seeds set before two calls that must agree anyway


# -- failures ------------------------------------------------------------------------------


class CheckFailure(AssertionError):
    """Raised inside a check; the wrapper adds the object's and the check's names."""


def _fail(message: str, cause: BaseException | None = None):
    raise CheckFailure(message) from cause


def _exc(exc: BaseException) -> str:
    """``TypeError: message``, or just the type for an exception without a message (StopIteration)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _name(obj: Any) -> str:
    return str(getattr(obj, "name", None) or type(obj).__name__)


def _label(kind: str, obj: Any, options: Mapping[str, Any]) -> str:
    """``method 'ga'``, ``method 'ga' (params variant='neggrad+')``, ``dataset 'synthetic:n=200'``."""
    if kind == "dataset" and options.get("arg"):
        return f"dataset '{_name(obj)}:{options['arg']}'"
    text = f"{kind} '{_name(obj)}'"
    if options.get("params"):
        text += " (params " + ", ".join(f"{k}={v!r}" for k, v in options["params"].items()) + ")"
    return text


def _check(kind: str):
    """Register a check body for ``kind``; the wrapper validates options and names failures."""

    def decorate(body):
        accepted = set(list(inspect.signature(body).parameters)[1:])

        @functools.wraps(body)
        def check(obj, **options):
            unknown = sorted(set(options) - set(OPTIONS[kind]))
            if unknown:
                raise TypeError(
                    f"{body.__name__}() got unknown option(s) {', '.join(unknown)}; "
                    f"options for a {kind}: {', '.join(OPTIONS[kind]) or '(none)'}."
                )
            if options.get("params"):
                _params(obj, options["params"])  # a TypeError for a misspelt key: a mistake in the test
            label = _label(kind, obj, options)
            try:
                with _sandbox():
                    body(obj, **{k: v for k, v in options.items() if k in accepted})
            except CheckFailure as exc:
                raise AssertionError(f"{label} failed {body.__name__}: {exc}") from exc.__cause__
            except Exception as exc:  # e.g. a missing attribute the check reads
                raise AssertionError(f"{label} failed {body.__name__}: {_exc(exc)}") from exc

        _CHECKS[kind].append(check)
        return check

    return decorate


@contextlib.contextmanager
def _sandbox():
    """One torch thread; the global torch, NumPy and Python generators restored afterwards."""
    threads = torch.get_num_threads()
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    if threads != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _seed_globals(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


# -- the toy setting -----------------------------------------------------------------------

TOY_PER_CLASS = 50  # training points per digit class
TOY_HIDDEN = (64, 64)
TOY_FORGET_CLASS = 3


@dataclass(frozen=True)
class ToySetting:
    """A trained toy model and its data. Never hand these tensors or this model to a plugin:
    the checks pass clones (:meth:`data`) and deep copies (:meth:`original_copy`)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    recipe: Any  # bench.recipe.Recipe used to train ``original`` (what ctx.recipe holds)
    original: nn.Module
    forget_class: int

    def new_model(self, seed: int) -> nn.Module:
        """A fresh model of the toy architecture, initialised from ``seed`` (as the harness does)."""
        return _toy_model(seed, self.input_shape, self.num_classes)

    def original_copy(self) -> nn.Module:
        return copy.deepcopy(self.original)

    def data(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clones of (train_x, train_y, test_x, test_y)."""
        return self.train_x.clone(), self.train_y.clone(), self.test_x.clone(), self.test_y.clone()


def _toy_model(seed: int, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from .nets import MLP, flat_size

    torch.manual_seed(seed)
    return MLP(flat_size(input_shape), TOY_HIDDEN, num_classes)


@functools.lru_cache(maxsize=1)
def toy_setting() -> ToySetting:
    """Digits, the first 50 training points of each class (500) and the 360 test points; a
    ``mlp:64,64`` trained on them with the digits default recipe (30 epochs, seed 0). Built
    once per process."""
    from .datasets.digits import Digits
    from .recipe import build_recipe
    from .training import fit

    with _sandbox():
        d = Digits().load(None, False, None)
        keep = torch.cat([torch.nonzero(d.train_y == c).flatten()[:TOY_PER_CLASS] for c in range(d.num_classes)])
        keep = keep.sort().values
        x, y = d.train_x[keep].clone(), d.train_y[keep].clone()
        recipe = build_recipe(Digits.default_recipe)
        model = fit(_toy_model(0, tuple(d.input_shape), d.num_classes), x, y, recipe, seed=0)
    return ToySetting(x, y, d.test_x.clone(), d.test_y.clone(), d.num_classes, tuple(d.input_shape), recipe, model,
                      TOY_FORGET_CLASS)


def _params(method, params: Mapping[str, Any] | None) -> dict:
    merged = dict(method.default_params)
    unknown = sorted(set(params or {}) - set(merged))
    if unknown:
        raise TypeError(f"params {unknown} are not among the default_params of method '{_name(method)}': "
                        f"{sorted(merged)}.")
    merged.update(params or {})
    return merged


def _access(method, params: dict) -> frozenset[str]:
    """What the harness passes: ``requires_for(params)`` when defined, else ``requires``."""
    if hasattr(method, "requires_for"):
        try:
            return frozenset(method.requires_for(params))
        except Exception as exc:
            _fail(f"requires_for(params) raised {_exc(exc)} (params {params}).", exc)
    return frozenset(method.requires)


def _request(setting: ToySetting, kind: str, access: frozenset[str]) -> ForgetRequest:
    """A request as the harness builds it: only the declared data, the rest ``None``.

    ``class``: every training point of the toy forget class; ``empty``: forget tensors of shape
    ``(0, 1, 8, 8)`` and ``(0,)`` (kind ``"indices"``), retain = the whole training set;
    ``single``: the first training point of the forget class (kind ``"random"``), retain = the rest.
    """
    x, y, _, _ = setting.data()
    mask = torch.zeros(len(y), dtype=torch.bool)
    forget_class = None
    if kind == "class":
        mask = y == setting.forget_class
        forget_class, req_kind = setting.forget_class, "class"
    elif kind == "single":
        mask[int(torch.nonzero(y == setting.forget_class)[0])] = True
        req_kind = "random"
    elif kind == "empty":
        req_kind = "indices"
    else:  # pragma: no cover
        raise ValueError(kind)
    fx, fy, rx, ry = x[mask], y[mask], x[~mask], y[~mask]
    return ForgetRequest(
        num_classes=setting.num_classes, kind=req_kind, forget_class=forget_class,
        forget_indices=torch.nonzero(mask).flatten().numpy(),
        forget_x=fx if "forget" in access else None, forget_y=fy if "forget" in access else None,
        retain_x=rx if "retain" in access else None, retain_y=ry if "retain" in access else None,
        input_bounds=(torch.tensor(0.0), torch.tensor(1.0)),  # digits pixels lie in [0, 1]
    )


def _ctx(setting: ToySetting, access: frozenset[str], seed: int = SEED) -> MethodContext:
    return MethodContext(seed=seed, device="cpu", new_model=lambda: setting.new_model(seed),
                         recipe=setting.recipe if "recipe" in access else None)


def _undeclared(request: ForgetRequest, ctx: MethodContext, access: frozenset[str]) -> list[str]:
    names = [f"request.{f}_{xy}" for f in ("forget", "retain") if f not in access for xy in "xy"]
    return names + (["ctx.recipe"] if "recipe" not in access else [])


def _unlearn(method, setting: ToySetting, request: ForgetRequest, params: dict, ctx: MethodContext,
             access: frozenset[str], *, global_seed: int | None = None, what: str = "") -> Any:
    """Call ``unlearn`` on a deep copy of the toy original after seeding the global generators
    (with ``ctx.seed`` as the harness does, unless ``global_seed`` says otherwise)."""
    _seed_globals(ctx.seed if global_seed is None else global_seed)
    try:
        return method.unlearn(_original_copy(method, setting, params), request, params, ctx)
    except Exception as exc:
        hint = ""
        if isinstance(exc, (AttributeError, TypeError)) and "None" in str(exc):
            hint = (f" This looks like a data-access violation: it declared {sorted(access)}, so "
                    f"{', '.join(_undeclared(request, ctx, access))} are None.")
        _fail(f"unlearn raised {_exc(exc)}{' on ' + what if what else ''}.{hint}", exc)


def _has_train_hook(method) -> bool:
    return callable(getattr(method, "train", None))


_OWN_ORIGINALS: dict[tuple, bytes] = {}


def _original_copy(method, setting: ToySetting, params: dict) -> nn.Module:
    """A fresh copy of the toy original. For a method with the optional ``train`` hook (SISA), the
    model that hook trains on the toy training set instead (seed 0, the toy recipe), trained once
    per method class and training params and, as in the harness, passed through
    ``save_trained``/``load_trained`` for every copy."""
    if not _has_train_hook(method):
        return setting.original_copy()
    from .method_training import training_params

    key = (type(method).__module__, type(method).__qualname__,
           json.dumps(training_params(method, params), sort_keys=True, default=str))
    if key not in _OWN_ORIGINALS:
        x, y, _, _ = setting.data()
        ctx = MethodContext(seed=SEED, device="cpu", new_model=lambda: setting.new_model(SEED), recipe=setting.recipe)
        with _sandbox():
            _seed_globals(SEED)
            try:
                _OWN_ORIGINALS[key] = method.save_trained(method.train(x, y, copy.deepcopy(params), ctx))
            except Exception as exc:
                _fail(f"its train hook (train, then save_trained) raised {_exc(exc)} on the toy training set.", exc)
    ctx = MethodContext(seed=SEED, device="cpu", new_model=lambda: setting.new_model(SEED))
    return method.load_trained(_OWN_ORIGINALS[key], copy.deepcopy(params), ctx)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _first_difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> str | None:
    if list(a) != list(b):
        return f"the state_dict keys differ ({sorted(set(a) ^ set(b))[:4]})"
    for key in a:
        if a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
            return (f"'{key}' has shape/dtype {tuple(a[key].shape)}/{a[key].dtype} vs "
                    f"{tuple(b[key].shape)}/{b[key].dtype}")
        if not torch.equal(a[key], b[key]):
            diff = (a[key].double() - b[key].double()).abs().max().item() if a[key].is_floating_point() else "n/a"
            return f"'{key}' differs (max |diff| {diff})"
    return None


def _check_module(out: Any, setting: ToySetting, what: str) -> None:
    """``out`` is an ``nn.Module`` mapping toy inputs to finite ``(B, num_classes)`` logits."""
    if not isinstance(out, nn.Module):
        _fail(f"unlearn returned {type(out).__name__} on {what}; it must return the unlearned torch.nn.Module.")
    x = setting.test_x[:32].clone()
    was_training = out.training
    try:
        out.eval()
        with torch.no_grad():
            logits = out(x)
    except Exception as exc:
        _fail(f"the returned model raised {_exc(exc)} on a batch of shape {tuple(x.shape)} ({what}).", exc)
    finally:
        out.train(was_training)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(x), setting.num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        _fail(f"the returned model maps a batch of shape {tuple(x.shape)} to {shape}, not logits of shape "
              f"{(len(x), setting.num_classes)} ({what}).")
    if not torch.isfinite(logits).all():
        _fail(f"the returned model gives non-finite logits (NaN or inf) on the toy test inputs ({what}).")


def _registers(kind: str, obj: Any) -> None:
    try:
        Registry().add(kind, obj, origin="bench.testing")
    except PluginError as exc:
        _fail(f"bench's registry refuses it: {exc}")
    desc = getattr(obj, "description", None)
    if not isinstance(desc, str) or not desc.strip():
        _fail(f"description is {desc!r}; give a one-line description for `bench list {kind}s`.")


def _picklable(obj: Any, kind: str) -> None:
    try:
        pickle.loads(pickle.dumps(obj))
    except Exception as exc:
        _fail(f"the {kind} object cannot be pickled ({_exc(exc)}); trials run in Ray workers, "
              f"which receive it pickled: make it an instance of a module-level class holding plain data.", exc)


# -- method checks -------------------------------------------------------------------------


@_check("method")
def check_method_attributes(method) -> None:
    """The registry accepts it (name, description, requires within DATA_ACCESS, search_space keys
    among default_params) and it survives pickling (Ray ships it to the workers)."""
    _registers("method", method)
    if isinstance(method.requires, str) or not all(isinstance(r, str) for r in method.requires):
        _fail(f"requires is {method.requires!r}; expected a frozenset of {', '.join(DATA_ACCESS)}.")
    _picklable(method, "method")


def _in_domain(value: Any, domain) -> bool:
    kind, args = domain.kind, domain.args
    if kind == "choice":
        return value in args[0]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if kind == "randint":
        return isinstance(value, numbers.Integral) and args[0] <= value < args[1]
    return args[0] <= value <= args[1]


def _domain_problem(domain) -> str | None:
    kind, args = domain.kind, domain.args
    if kind == "choice":
        return None if len(args) == 1 and len(args[0]) > 0 else "choice() needs a non-empty sequence"
    if kind not in ("uniform", "loguniform", "randint"):
        return f"unknown domain kind {kind!r}; build domains with bench.space"
    if len(args) != 2 or not all(isinstance(a, numbers.Real) and not isinstance(a, bool) for a in args):
        return f"{kind} needs two numbers, got {args!r}"
    low, high = args
    if not low < high:
        return f"{kind}({low}, {high}) is empty: need low < high"
    if kind == "loguniform" and low <= 0:
        return f"loguniform({low}, {high}) needs low > 0"
    if kind == "randint" and not all(isinstance(a, numbers.Integral) for a in args):
        return f"randint({low}, {high}) needs integers"
    return None


@_check("method")
def check_params_and_search_space(method, params=None) -> None:
    """default_params is a mapping of JSON values; search_space maps some of its keys to
    ``bench.space`` domains that are well-formed and contain the default (and any override)."""
    from .space import Domain

    if not isinstance(method.default_params, Mapping):
        _fail(f"default_params is a {type(method.default_params).__name__}, not a mapping.")
    try:
        json.dumps(dict(method.default_params), allow_nan=False)
    except (TypeError, ValueError) as exc:
        _fail(f"default_params {dict(method.default_params)!r} are not JSON-serialisable ({exc}); the harness records "
              f"them with every trial.", exc)
    if not all(isinstance(k, str) for k in method.default_params):
        _fail(f"default_params keys must be strings (they are set as -p {_name(method)}.KEY=VALUE).")
    if not isinstance(method.search_space, Mapping):
        _fail(f"search_space is a {type(method.search_space).__name__}, not a mapping.")
    merged = _params(method, params)
    for key, domain in method.search_space.items():
        if key not in method.default_params:
            _fail(f"search_space key '{key}' is not among default_params {sorted(method.default_params)}.")
        if not isinstance(domain, Domain):
            _fail(f"search_space['{key}'] is {domain!r}, not a bench.space Domain (use bench.space.loguniform, "
                  f"uniform, randint or choice; plugins never import ray).")
        problem = _domain_problem(domain)
        if problem:
            _fail(f"search_space['{key}']: {problem}.")
        if not _in_domain(method.default_params[key], domain):
            _fail(f"the default {key}={method.default_params[key]!r} lies outside its search space "
                  f"{domain.describe()}.")
        if not _in_domain(merged[key], domain):
            _fail(f"the value {key}={merged[key]!r} given in params lies outside its search space {domain.describe()}.")


@_check("method")
def check_data_access(method, params=None) -> None:
    """``requires_for(params)`` (if defined) is a subset of ``requires``, itself a subset of
    forget/retain/recipe; and ``unlearn`` runs on a class request that holds exactly the
    declared data, the undeclared fields (and ``ctx.recipe`` unless declared) being ``None``."""
    params = _params(method, params)
    access = _access(method, params)
    if not access <= set(DATA_ACCESS):
        _fail(f"it asks for {sorted(access - set(DATA_ACCESS))}; a method may require only {', '.join(DATA_ACCESS)}.")
    if not access <= set(method.requires):
        _fail(f"requires_for(params) returned {sorted(access)}, beyond its declared requires "
              f"{sorted(method.requires)}; "
              f"requires must list everything any params may need.")
    setting = toy_setting()
    request, ctx = _request(setting, "class", access), _ctx(setting, access)
    _seed_globals(SEED)
    try:
        method.unlearn(_original_copy(method, setting, params), request, params, ctx)
    except Exception as exc:
        # the same call with every field filled tells a data-access violation from another failure
        everything = frozenset(DATA_ACCESS)
        _seed_globals(SEED)
        try:
            method.unlearn(_original_copy(method, setting, params), _request(setting, "class", everything), copy.deepcopy(params),
                           _ctx(setting, everything))
        except Exception:
            _fail(f"unlearn raised {_exc(exc)} on a class request (it fails with all data too, so this is not "
                  f"about data access).", exc)
        _fail(f"data-access violation: it declares {sorted(access)}, and with "
              f"{', '.join(_undeclared(request, ctx, access)) or 'nothing'} set to None (as the harness passes "
              f"undeclared data) unlearn raised {_exc(exc)}; given all data it runs. Add what it reads to "
              f"requires (or to what requires_for returns for these params).", exc)


@_check("method")
def check_returns_module(method, params=None) -> None:
    """``unlearn`` returns a ``torch.nn.Module`` that maps a toy batch ``(B, 1, 8, 8)`` to finite
    logits of shape ``(B, num_classes)``."""
    params = _params(method, params)
    access, setting = _access(method, params), toy_setting()
    out = _unlearn(method, setting, _request(setting, "class", access), params, _ctx(setting, access), access,
                   what="a class request")
    _check_module(out, setting, "a class request")


@_check("method")
def check_leaves_inputs_untouched(method, params=None) -> None:
    """``unlearn`` may change the model it is given (the harness passes a copy) but nothing else:
    the request's tensors (the harness evaluates on the same tensors) and fields, ``params``,
    ``ctx`` and the method's own ``default_params`` are unchanged after the call; and a second
    call on a fresh copy of the original, with the same seed, gives bit-identical weights (no
    state kept between calls)."""
    params = _params(method, params)
    access, setting = _access(method, params), toy_setting()
    request, ctx = _request(setting, "class", access), _ctx(setting, access)
    given = {f.name: getattr(request, f.name) for f in fields(request)}
    snap = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in given.items()}
    params_before, defaults_before = copy.deepcopy(params), copy.deepcopy(dict(method.default_params))
    ctx_before = {f.name: getattr(ctx, f.name) for f in fields(ctx)}
    first = _unlearn(method, setting, request, params, ctx, access, what="a class request")
    _check_module(first, setting, "a class request")
    for key, value in given.items():
        if isinstance(value, torch.Tensor):
            if value.shape != snap[key].shape or value.dtype != snap[key].dtype or not torch.equal(value, snap[key]):
                _fail(f"unlearn modified request.{key} in place; the harness evaluates the unlearned model on these "
                      f"very tensors. Work on a copy (x = request.{key}.clone()) or use out-of-place operations.")
        if getattr(request, key) is not value:
            _fail(f"unlearn reassigned request.{key}; keep what you derive from the request in local variables.")
    if params != params_before:
        _fail(f"unlearn changed its params dict ({params_before} -> {params}); copy it before changing it.")
    if dict(method.default_params) != defaults_before:
        _fail(f"unlearn changed the method's default_params ({defaults_before} -> {dict(method.default_params)}).")
    changed = [k for k, v in ctx_before.items() if getattr(ctx, k) is not v]
    if changed:
        _fail(f"unlearn changed the MethodContext it was given ({', '.join(f'ctx.{k}' for k in changed)}).")
    second = _unlearn(method, setting, _request(setting, "class", access), copy.deepcopy(params_before),
                      _ctx(setting, access), access, what="a second class request")
    _check_module(second, setting, "a second class request")
    diff = _first_difference(_state(first), _state(second))
    if diff:
        _fail(f"a second call on a fresh copy of the original, with the same seed and the same global RNG state, gave "
              f"different weights ({diff}): the method keeps state between calls (on self, in module globals) or "
              f"reads something the first call changed.")


@_check("method")
def check_deterministic_under_seed(method, params=None) -> None:
    """Two calls with the same ``ctx.seed`` on identical copies give bit-identical weights on the
    CPU, even though the global torch/NumPy/Python generators are in different states before
    each call: all randomness must come from ``ctx.seed``. (Different seeds may differ.)"""
    params = _params(method, params)
    access, setting = _access(method, params), toy_setting()
    outs = []
    for global_seed in _SCRAMBLE:
        out = _unlearn(method, setting, _request(setting, "class", access), copy.deepcopy(params),
                       _ctx(setting, access), access, global_seed=global_seed, what="a class request")
        _check_module(out, setting, "a class request")
        outs.append(_state(out))
    diff = _first_difference(*outs)
    if diff:
        _fail(f"two calls with ctx.seed={SEED} on identical copies of the original gave different weights ({diff}). "
              f"Draw every random number from ctx.seed, e.g. g = torch.Generator().manual_seed(ctx.seed) and "
              f"torch.randn(..., generator=g); do not rely on torch's global generator.")


@_check("method")
def check_forgets(method, params=None, forgets=True) -> None:
    """With its default params (updated by ``params``), on the trained toy model and a class
    request, the forget-set accuracy after unlearning is below the original's. Skipped with
    ``forgets=False`` (a method not meant to forget, e.g. a no-op baseline)."""
    if not forgets:
        return
    from .training import accuracy

    params = _params(method, params)
    access, setting = _access(method, params), toy_setting()
    x, y, _, _ = setting.data()
    fx, fy = x[y == setting.forget_class], y[y == setting.forget_class]
    before = accuracy(_original_copy(method, setting, params), fx, fy)
    if not before > 0.9 and not _has_train_hook(method):  # pragma: no cover - the kit's own toy model
        raise RuntimeError(f"bench.testing: the toy model's forget accuracy is {before:.3f}; the kit is broken.")
    out = _unlearn(method, setting, _request(setting, "class", access), params, _ctx(setting, access), access,
                   what="a class request")
    _check_module(out, setting, "a class request")
    after = accuracy(out, fx, fy)
    if not after < before:
        _fail(f"it did not forget: on the toy digits model, forgetting class {setting.forget_class} "
              f"({len(fy)} points) with params {params} left the forget accuracy at {after:.3f} "
              f"(original {before:.3f}). A method not meant to forget passes forgets=False.")


@_check("method")
def check_empty_request(method, params=None) -> None:
    """An empty request (forget tensors of shape ``(0, 1, 8, 8)`` and ``(0,)``, kind
    ``"indices"``, no forget class; retain = the whole training set) does not crash and gives a
    model as in :func:`check_returns_module`."""
    params = _params(method, params)
    access, setting = _access(method, params), toy_setting()
    what = "an empty request (0 forget points, retain = all)"
    out = _unlearn(method, setting, _request(setting, "empty", access), params, _ctx(setting, access), access,
                   what=what)
    _check_module(out, setting, what)


@_check("method")
def check_single_point_request(method, params=None) -> None:
    """A request to forget one training point (kind ``"random"``) does not crash and gives a
    model as in :func:`check_returns_module`."""
    params = _params(method, params)
    access, setting = _access(method, params), toy_setting()
    what = "a single-point request"
    out = _unlearn(method, setting, _request(setting, "single", access), params, _ctx(setting, access), access,
                   what=what)
    _check_module(out, setting, what)


# -- dataset checks ------------------------------------------------------------------------


def _load(dataset, arg, root, download) -> Splits:
    if root is None:
        from .experiment import default_data_dir

        root = str(default_data_dir())
    try:
        splits = dataset.load(root, download, arg)
    except Exception as exc:
        _fail(f"load(root={root!r}, download={download}, arg={arg!r}) raised {_exc(exc)}", exc)
    if not isinstance(splits, Splits):
        _fail(f"load returned {type(splits).__name__}, not bench.contracts.Splits.")
    return splits


_TENSORS = ("train_x", "train_y", "test_x", "test_y")


@_check("dataset")
def check_dataset_attributes(dataset) -> None:
    """The registry accepts it (a valid name, a callable ``load``) and it has a description."""
    _registers("dataset", dataset)


@_check("dataset")
def check_load_returns_splits(dataset, arg=None, root=None, download=False) -> None:
    """``load`` returns :class:`bench.contracts.Splits` whose four fields are torch tensors on the
    CPU, with an integer ``num_classes`` >= 2 and ``input_shape`` a tuple of positive integers."""
    s = _load(dataset, arg, root, download)
    for key in _TENSORS:
        value = getattr(s, key)
        if not isinstance(value, torch.Tensor):
            _fail(f"Splits.{key} is a {type(value).__name__}, not a torch.Tensor.")
        if value.device.type != "cpu":
            _fail(f"Splits.{key} is on {value.device}; return CPU tensors (the harness moves them).")
    if isinstance(s.num_classes, bool) or not isinstance(s.num_classes, numbers.Integral) or s.num_classes < 2:
        _fail(f"num_classes is {s.num_classes!r}; expected an integer >= 2.")
    shape = s.input_shape
    if not isinstance(shape, tuple) or not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        _fail(f"input_shape is {shape!r}; expected a tuple of positive ints, e.g. (1, 8, 8).")


@_check("dataset")
def check_dtypes(dataset, arg=None, root=None, download=False) -> None:
    """Inputs are float32 and labels int64."""
    s = _load(dataset, arg, root, download)
    for key, dtype in zip(_TENSORS, (torch.float32, torch.int64) * 2, strict=True):
        value = getattr(s, key)
        if getattr(value, "dtype", None) != dtype:
            _fail(f"Splits.{key} has dtype {getattr(value, 'dtype', type(value).__name__)}; expected {dtype}.")


@_check("dataset")
def check_shapes_consistent(dataset, arg=None, root=None, download=False) -> None:
    """Inputs have shape ``(N, *input_shape)``, labels ``(N,)`` with the same N, and neither
    train nor test is empty."""
    s = _load(dataset, arg, root, download)
    for part in ("train", "test"):
        x, y = getattr(s, f"{part}_x"), getattr(s, f"{part}_y")
        if tuple(x.shape[1:]) != tuple(s.input_shape):
            _fail(f"{part}_x has shape {tuple(x.shape)}, not (N, *input_shape) with input_shape {s.input_shape}.")
        if y.dim() != 1 or len(y) != len(x):
            _fail(f"{part}_y has shape {tuple(y.shape)}; expected ({len(x)},), one label per {part} input.")
        if len(y) == 0:
            _fail(f"the {part} split is empty.")


@_check("dataset")
def check_labels_in_range(dataset, arg=None, root=None, download=False) -> None:
    """Every train and test label lies in ``[0, num_classes)``."""
    s = _load(dataset, arg, root, download)
    for key in ("train_y", "test_y"):
        y = getattr(s, key)
        bad = y[(y < 0) | (y >= s.num_classes)]
        if len(bad):
            _fail(f"{key} holds {len(bad)} label(s) outside [0, {s.num_classes}) (num_classes={s.num_classes}), "
                  f"e.g. {sorted(set(bad.tolist()))[:5]}.")


@_check("dataset")
def check_every_class_in_train(dataset, arg=None, root=None, download=False) -> None:
    """Every class ``0..num_classes-1`` has at least one training point (class forget requests
    and per-class metrics need it)."""
    s = _load(dataset, arg, root, download)
    missing = sorted(set(range(int(s.num_classes))) - set(s.train_y.unique().tolist()))
    if missing:
        _fail(f"classes {missing[:10]} have no training point (num_classes={s.num_classes}).")


@_check("dataset")
def check_inputs_finite(dataset, arg=None, root=None, download=False) -> None:
    """No NaN or infinite input value."""
    s = _load(dataset, arg, root, download)
    for key in ("train_x", "test_x"):
        if not torch.isfinite(getattr(s, key)).all():
            _fail(f"{key} holds NaN or infinite values.")


@_check("dataset")
def check_load_deterministic(dataset, arg=None, root=None, download=False) -> None:
    """Two loads (with the global generators in different states) give identical tensors,
    ``num_classes`` and ``input_shape``: the splits are fixed, independent of the trial seed."""
    loads = []
    for global_seed in _SCRAMBLE:
        _seed_globals(global_seed)
        loads.append(_load(dataset, arg, root, download))
    a, b = loads
    if (a.num_classes, tuple(a.input_shape)) != (b.num_classes, tuple(b.input_shape)):
        _fail(f"two loads gave num_classes/input_shape {a.num_classes}/{a.input_shape} and "
              f"{b.num_classes}/{b.input_shape}.")
    for key in _TENSORS:
        x, y = getattr(a, key), getattr(b, key)
        if x.shape != y.shape or not torch.equal(x, y):
            _fail(f"two loads gave different {key}; seed every random split or shuffle with a fixed seed.")


# -- attack checks -------------------------------------------------------------------------

TOY_ATTACK_FORGET = 50  # random training points treated as the forget set of the attack context
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_\-./ ]+$")  # what MLflow accepts in a metric name


def _attack_ctx(setting: ToySetting, seed: int = SEED, attack: Any = None) -> AttackContext:
    """The toy context; for an attack that declares ``needs``, with toy shadow models, retrained
    models, reference and an exact ``unlearn`` (retraining), from ``bench.shadows.toy_attack_extras``."""
    x, y, tx, ty = setting.data()
    idx = np.random.default_rng(0).choice(len(y), size=TOY_ATTACK_FORGET, replace=False)
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[torch.as_tensor(idx)] = True
    ctx = AttackContext(x[mask], y[mask], x[~mask], y[~mask], tx, ty, setting.num_classes, seed, "cpu",
                        forget_indices=np.sort(idx))
    needs = set(getattr(attack, "needs", ()) or ())
    if needs:
        from .shadows import toy_attack_extras

        for key, value in toy_attack_extras(setting, np.sort(idx), needs).items():
            setattr(ctx, key, value)
    return ctx


def _evaluate(attack, model, ctx, global_seed: int) -> Any:
    _seed_globals(global_seed)
    try:
        return attack.evaluate(model, ctx)
    except Exception as exc:
        _fail(f"evaluate raised {_exc(exc)} on the toy model.", exc)


@_check("attack")
def check_attack_attributes(attack) -> None:
    """The registry accepts it, it has a description and it survives pickling."""
    _registers("attack", attack)
    _picklable(attack, "attack")


@_check("attack")
def check_attack_returns_finite_floats(attack) -> None:
    """On the toy model (trained on the context's forget and retain points) and the toy
    ``AttackContext``, ``evaluate`` returns a non-empty dict of metric names (letters, digits,
    ``_-./`` and spaces, as MLflow accepts) to finite real numbers."""
    setting = toy_setting()
    out = _evaluate(attack, setting.original_copy(), _attack_ctx(setting, attack=attack), SEED)
    if not isinstance(out, Mapping) or not out:
        _fail(f"evaluate returned {out!r}; expected a non-empty dict of metric name -> float.")
    for key, value in out.items():
        if not isinstance(key, str) or not _METRIC_NAME.match(key):
            _fail(f"metric name {key!r} is not a string of letters, digits, '_-./' and spaces.")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            _fail(f"metric '{key}' is {type(value).__name__} {value!r}, not a float (return float(value)).")
        if not math.isfinite(float(value)):
            _fail(f"metric '{key}' is {value}, not finite.")


@_check("attack")
def check_attack_leaves_inputs_untouched(attack) -> None:
    """``evaluate`` changes neither the model's weights nor the context's tensors."""
    setting = toy_setting()
    model, ctx = setting.original_copy(), _attack_ctx(setting, attack=attack)
    before = _state(model)
    tensors = {f.name: getattr(ctx, f.name) for f in fields(ctx) if isinstance(getattr(ctx, f.name), torch.Tensor)}
    snap = {k: v.clone() for k, v in tensors.items()}
    _evaluate(attack, model, ctx, SEED)
    diff = _first_difference(before, _state(model))
    if diff:
        _fail(f"evaluate changed the model it evaluates ({diff}); work on a copy (copy.deepcopy(model)).")
    for key, value in tensors.items():
        if getattr(ctx, key) is not value or not torch.equal(value, snap[key]):
            _fail(f"evaluate changed ctx.{key}; the harness shares these tensors with the other attacks.")


@_check("attack")
def check_attack_deterministic_under_seed(attack) -> None:
    """Two evaluations with the same ``ctx.seed`` give identical dicts, even though the global
    generators are in different states before each."""
    setting = toy_setting()
    outs = [_evaluate(attack, setting.original_copy(), _attack_ctx(setting, attack=attack), s) for s in _SCRAMBLE]
    if outs[0] != outs[1]:
        _fail(f"two evaluations with ctx.seed={SEED} gave {outs[0]} and {outs[1]}. Draw every random number from "
              f"ctx.seed (torch.Generator().manual_seed(ctx.seed), numpy.random.default_rng(ctx.seed)).")


# -- running all checks --------------------------------------------------------------------


def _kind_of(obj: Any) -> str:
    for kind, attr in (("method", "unlearn"), ("dataset", "load"), ("attack", "evaluate")):
        if callable(getattr(obj, attr, None)):
            return kind
    raise TypeError(f"{obj!r} is not a method (unlearn), dataset (load) or attack (evaluate); "
                    f"model plugins have no conformance checks yet.")


def checks_for(obj: Any, **options) -> Iterator[Callable[[Any], None]]:
    """The checks that apply to ``obj`` with ``options``, each with the options bound
    (``check(obj)`` runs it). ``forgets=False`` leaves ``check_forgets`` out."""
    kind = _kind_of(obj)
    unknown = sorted(set(options) - set(OPTIONS[kind]))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)} for a {kind}; "
                        f"options: {', '.join(OPTIONS[kind]) or '(none)'}.")
    for check in _CHECKS[kind]:
        if check is check_forgets and options.get("forgets", True) is False:
            continue
        yield functools.partial(check, **options) if options else check


def _run_all(obj: Any, collect: bool, options: dict) -> None:
    failures = []
    for check in checks_for(obj, **options):
        try:
            check(obj)
        except AssertionError as exc:
            if not collect:
                raise
            failures.append(str(exc))
    if failures:
        raise AssertionError(f"{len(failures)} check(s) failed:\n" + "\n".join(f"- {f}" for f in failures))


def check_method(method, *, collect: bool = False, **options) -> None:
    """Run every method check on ``method``; raise ``AssertionError`` at the first failure, or,
    with ``collect=True``, after all of them, listing every failure.

    Options: ``params`` (dict of overrides of ``default_params``, e.g. ``{"variant": "b"}``) and
    ``forgets`` (``False`` skips :func:`check_forgets`, for a method not meant to forget).
    """
    if _kind_of(method) != "method":
        raise TypeError(f"check_method: {method!r} has no unlearn(); use check_{_kind_of(method)}.")
    _run_all(method, collect, options)


def check_dataset(dataset, arg: str | None = None, *, collect: bool = False, **options) -> None:
    """Run every dataset check on ``dataset.load(root, download, arg)``; ``arg`` is the text after
    the colon of a dataset spec (``"n=500"`` for ``synthetic:n=500``). Options: ``root`` (default
    the harness's data directory) and ``download`` (default False)."""
    if _kind_of(dataset) != "dataset":
        raise TypeError(f"check_dataset: {dataset!r} has no load(); use check_{_kind_of(dataset)}.")
    _run_all(dataset, collect, {**options, **({"arg": arg} if arg is not None else {})})


def check_attack(attack, *, collect: bool = False, **options) -> None:
    """Run every attack check on ``attack`` (see :func:`check_method` for ``collect``). Attack
    checks take no options yet; an unknown one raises ``TypeError``."""
    if _kind_of(attack) != "attack":
        raise TypeError(f"check_attack: {attack!r} has no evaluate(); use check_{_kind_of(attack)}.")
    _run_all(attack, collect, options)


def _object_id(obj: Any, options: Mapping[str, Any]) -> str:
    text = _name(obj)
    if options.get("arg"):
        text += f":{options['arg']}"
    if options.get("params"):
        text += "(" + ",".join(f"{k}={v}" for k, v in options["params"].items()) + ")"
    return text


def parametrize_with_checks(objects: Iterable[Any], *,
                            expected_failed_checks: Mapping[str, Mapping[str, str]] | None = None):
    """A ``pytest.mark.parametrize`` over ``("plugin", "check")``: one test per object and check,
    with ids like ``ga-check_deterministic_under_seed`` (``pytest -k check_forgets`` picks one
    check). Each item of ``objects`` is a plugin object or a pair ``(object, options)``, e.g.
    ``(GradientAscent(), {"params": {"variant": "neggrad+"}})`` (id ``ga(variant=neggrad+)``) or
    ``(Synthetic(), {"arg": "n=500"})`` (id ``synthetic:n=500``).

    ``expected_failed_checks`` maps an object id to ``{check_name: reason}``; those tests are
    marked ``xfail(strict=True)``, so they fail again once the check passes (as in scikit-learn).

    The decorated test runs the check::

        @parametrize_with_checks([MyMethod()])
        def test_conformance(plugin, check):
            check(plugin)
    """
    import pytest

    expected = {k: dict(v) for k, v in (expected_failed_checks or {}).items()}
    cases, seen = [], set()
    for item in objects:
        obj, options = item if isinstance(item, tuple) else (item, {})
        object_id = _object_id(obj, options)
        seen.add(object_id)
        names = []
        for check in checks_for(obj, **options):
            name = getattr(check, "func", check).__name__
            names.append(name)
            reason = expected.get(object_id, {}).get(name)
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            cases.append(pytest.param(obj, check, id=f"{object_id}-{name}", marks=marks))
        unknown = sorted(set(expected.get(object_id, {})) - set(names))
        if unknown:
            raise ValueError(f"expected_failed_checks for '{object_id}' names {unknown}, which are not among its "
                             f"checks: {names}.")
    if set(expected) - seen:
        raise ValueError(f"expected_failed_checks names {sorted(set(expected) - seen)}, which are not among the "
                         f"objects' ids {sorted(seen)}.")
    return pytest.mark.parametrize(("plugin", "check"), cases)
