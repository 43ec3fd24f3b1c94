"""The kit's machinery: the check registry, failures that name the object and the check, and the
sandbox every check runs in (one torch thread, global generators restored)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import pickle
import random
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from bench.core.errors import PluginError
from bench.core.method import dataset_params
from bench.core.plugins import builtin_registry
from bench.core.registry import Registry
from bench.nn.torch_state import restore_torch_globals, torch_globals

#: The options each kind of check accepts (all optional).
OPTIONS = {
    "method": ("params", "forgets"),  # overrides of default_params; False for a method not meant to forget
    "dataset": ("arg", "root", "download"),  # load(root, download, arg)
    "attack": (),
    "model": ("arg", "num_classes", "input_shape"),  # create(num_classes, input_shape, arg)
}
METHOD_CHECKS: list[Callable] = []
DATASET_CHECKS: list[Callable] = []
ATTACK_CHECKS: list[Callable] = []
MODEL_CHECKS: list[Callable] = []
_CHECKS = {"method": METHOD_CHECKS, "dataset": DATASET_CHECKS, "attack": ATTACK_CHECKS, "model": MODEL_CHECKS}

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
    """``method 'ga'``, ``method 'ga' (params variant='neggrad+')``, ``dataset 'synthetic:n=200'``,
    ``model 'mlp:32'``."""
    if kind in ("dataset", "model") and options.get("arg"):
        return f"{kind} '{_name(obj)}:{options['arg']}'"
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
                    # every check restores torch's process-wide settings and fails on a leak: restored
                    # by one check only, a grad mode or default dtype left changed by an earlier one
                    # passed that check and failed the next plugin's checks instead
                    saved, failed = torch_globals(), None
                    try:
                        body(obj, **{k: v for k, v in options.items() if k in accepted})
                    except Exception as exc:  # a later call in the check may have failed on the leak itself
                        failed = exc
                    leaked = restore_torch_globals(saved)
                    if leaked:
                        raise CheckFailure(f"the {kind} {leaked}; the harness runs other trials in the same process "
                                           f"after it.") from failed
                    if failed is not None:
                        raise failed
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


#: The toy setting's data are the digits dataset's: the kit applies a method's ``dataset_params``
#: for it, as the harness does on ``--dataset digits``.
TOY_DATASET = "digits"


def _params(method, params: Mapping[str, Any] | None) -> dict:
    """``default_params``, then the method's ``dataset_params`` for the toy data (digits), updated by
    ``params``; a ``TypeError`` for a key it does not have."""
    merged = dict(method.default_params)
    merged.update({k: v for k, v in dataset_params(method, TOY_DATASET).items() if k in merged})
    unknown = sorted(set(params or {}) - set(merged))
    if unknown:
        raise TypeError(f"params {unknown} are not among the default_params of method '{_name(method)}': "
                        f"{sorted(merged)}.")
    merged.update(params or {})
    return merged


# -- shared by the method and attack checks --------------------------------------------------


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


def _registers(kind: str, obj: Any) -> None:
    """The registry takes it, under a name no built-in of its kind has (the kit's own registry is
    empty: a method named ``ga`` passed it, and every bench command then refused the two ``ga``s)."""
    try:
        Registry().add(kind, obj, origin="bench.testing")
    except PluginError as exc:
        _fail(f"bench's registry refuses it: {exc}")
    builtins = builtin_registry()
    if obj.name in builtins.names(kind) and type(builtins.get(kind, obj.name)) is not type(obj):  # the kit checks built-ins too
        _fail(f"bench has a built-in {kind} named '{obj.name}' ({type(builtins.get(kind, obj.name)).__name__}); every "
              f"bench command refuses two {kind}s of one name while this plugin is installed: rename it.")
    desc = getattr(obj, "description", None)
    if not isinstance(desc, str) or not desc.strip():
        _fail(f"description is {desc!r}; give a one-line description for `bench list {kind}s`.")


def _picklable(obj: Any, kind: str) -> None:
    try:
        pickle.loads(pickle.dumps(obj))
    except Exception as exc:
        _fail(f"the {kind} object cannot be pickled ({_exc(exc)}); trials run in Ray workers, "
              f"which receive it pickled: make it an instance of a module-level class holding plain data.", exc)
