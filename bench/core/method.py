"""The method contract in one place: the optional :class:`Method` base class and the accessors the
harness uses for a method's optional members.

A method is any object with ``name``, ``description``, ``requires``, ``default_params``,
``search_space`` and ``unlearn(model, request, params, ctx)`` (``bench.core.contracts.REQUIRED``);
subclassing :class:`Method` is optional (as ``llm.Model`` is for llm's plugins) and gives every
optional member a documented default. The harness never asks ``hasattr`` itself: it reads the
optional members through the functions below, so a third-party object without the base class
keeps working and behaves exactly like a subclass that leaves the defaults alone.

A method that trains its own original model (SISA trains sharded constituents) implements
:class:`bench.core.contracts.OwnTraining` as well (``train``, ``save_trained``, ``load_trained``;
optional ``training_params`` and ``train_version``); see ``bench.run.method_training``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from bench.core.errors import BenchError, no_exit

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from bench.core.contracts import ForgetRequest, MethodContext, Setting

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Method:
    """Base class for unlearning methods; every member but ``name`` and ``unlearn`` has a default.

    Class attributes:
        name: unique name used on the command line (``--methods NAME``).
        description: one line shown by ``bench list methods``.
        requires: which of ``"forget"``, ``"retain"`` (data) and ``"recipe"`` (the original's
            training recipe) the method may use; undeclared data is ``None`` in its request.
        default_params: hyperparameters and their defaults (JSON-serialisable values; the type
            of each default is the type a ``-p METHOD.KEY=VALUE`` string is converted to).
        search_space: Ray Tune domains (``bench.core.space``) over some ``default_params`` keys.
        dataset_params: ``{dataset name: {param: value}}``, defaults per dataset applied to a
            trial on that dataset unless the user set the parameter.
        continual: ``False`` for a method that cannot take the next of a sequence of requests
            (``--forget seq:...``) on its own output; such runs are refused before any work.
        continual_note: one sentence saying why, shown with that refusal.
        forget_kinds: the kinds of forget request the method can take, among ``"random"``,
            ``"class"`` and ``"indices"`` (``ForgetRequest.kind``; a ``seq:`` request's steps are
            ``"random"`` or ``"class"``). A run with another kind is refused before any work.
            Default: all three.
        trains: ``False`` for a method that never takes an optimiser step and never calls
            ``torch.func`` (PRUNE): the harness then warms up only the forward and backward passes
            before timing it, not ``torch.optim``, whose first step imports ``torch._dynamo``
            (1.4 s or more in a fresh worker, spent on every such trial for nothing). Default
            ``True``. ``torch.func`` (vmap, grad, jacrev) imports ``torch._dynamo`` too, so a
            method using it keeps the default; one that says ``False`` wrongly pays that import
            inside its own ``unlearn_seconds``.

    Optional method:
        prepare(): one-off set-up of the process, such as importing the libraries ``unlearn``
            needs (PRUNE: scikit-learn's KMeans, HiGHS, SciPy's sparse matrices). The harness
            calls it in every trial after warming up torch and before the timed ``unlearn``, so
            ``unlearn_seconds`` measures the work, not a fresh worker's first imports. It must not
            depend on the request or change any state ``unlearn`` reads (the same numbers with or
            without it). Default: nothing.
        saved_header(model) -> dict[str, str]: for a method that returns another architecture
            than its input (PRUNE's patched network, SISA's ensemble), what rebuilding the
            returned model needs beyond its state dict (strings), written into the header of the
            ``model.safetensors`` that ``--save-models`` keeps. Default: nothing.
        load_saved(state, header, new_model) -> nn.Module: rebuild that model from its state dict,
            the file's header and ``new_model()`` (a fresh model of the run's architecture), for
            ``bench.run.saved_models.load_model``. Absent (the default): the file loads into the
            plain architecture.
    """

    name: str = ""
    description: str = ""
    requires: frozenset[str] = frozenset()
    default_params: Mapping[str, Any] = _EMPTY
    search_space: Mapping[str, Any] = _EMPTY
    dataset_params: Mapping[str, Mapping[str, Any]] = _EMPTY
    continual: bool = True
    continual_note: str = ""
    forget_kinds: frozenset[str] = frozenset({"random", "class", "indices"})
    trains: bool = True

    def requires_for(self, params: dict) -> frozenset[str]:
        """The subset of ``requires`` this run of the method uses (default: all of it)."""
        return frozenset(self.requires)

    def check_params(self, params: dict) -> None:
        """Refuse a bad parameter value before any work: raise ``ValueError`` (or ``BenchError``)
        with one line naming the parameter, the value and what is expected. ``params`` are the
        defaults merged with the user's values, already converted to the defaults' types. The
        harness calls this once per trial setting at plan time, before loading data or training;
        the default accepts everything."""

    def check_setting(self, params: dict, setting: Setting) -> None:
        """Refuse parameters that do not fit a trial setting (the data's size, the classes, the
        architecture: ``bench.core.contracts.Setting``), before any work: raise ``ValueError`` (or
        ``BenchError``) with one line, as in ``check_params``. The harness calls it at plan time,
        after ``check_params`` passed and the data are loaded, once per dataset, model and forget
        request with each parameter set the trials use; the default accepts everything."""

    def prepare(self) -> None:
        """One-off set-up before the timed ``unlearn`` (imports); see the class docstring."""

    def saved_header(self, model: nn.Module) -> dict[str, str]:
        """Header entries a saved returned model needs to be rebuilt; see the class docstring."""
        return {}

    def unlearn(self, model: nn.Module, request: ForgetRequest, params: dict, ctx: MethodContext) -> nn.Module:
        """Return the unlearned model; ``model`` is the trial's own copy of the original."""
        raise NotImplementedError(f"{type(self).__name__}.unlearn")


# -- accessors for the optional members (objects with or without the base class) ----------------

def requires_for(method: Any, params: dict) -> frozenset[str]:
    """What ``method`` uses with ``params``: ``requires_for(params)`` if it defines it, else ``requires``."""
    fn = getattr(method, "requires_for", None)
    return frozenset(fn(dict(params)) if callable(fn) else method.requires)


def dataset_params(method: Any, dataset: str) -> Mapping[str, Any]:
    """The method's defaults for dataset ``dataset`` (a dataset name, no argument)."""
    return (getattr(method, "dataset_params", None) or {}).get(dataset, {})


def continual_support(method: Any) -> tuple[bool, str]:
    """(whether the method takes continual requests, the sentence saying why not)."""
    ok = getattr(method, "continual", True) is not False
    return ok, "" if ok else (getattr(method, "continual_note", "") or "it says it cannot continue from its own output")


FORGET_KINDS = frozenset({"random", "class", "indices"})


def forget_kinds(method: Any) -> frozenset[str]:
    """The request kinds the method takes (``forget_kinds``; default all)."""
    return frozenset(getattr(method, "forget_kinds", FORGET_KINDS))


def trains(method: Any) -> bool:
    """Whether the method may take optimiser steps (``trains``; default True)."""
    return getattr(method, "trains", True) is not False


def prepare(method: Any) -> None:
    """Call the method's ``prepare`` (if any): its one-off set-up, outside the timed call."""
    fn = getattr(method, "prepare", None)
    if callable(fn):
        with no_exit(f"Method '{getattr(method, 'name', '?')}' (prepare)"):  # sys.exit there ended a local run, exit 0
            fn()


def saved_header(method: Any, model: Any, reserved: Iterable[str]) -> dict[str, str]:
    """The method's extra header entries for its saved returned model (``saved_header``; none by
    default), as strings; a key of the harness's own header (``reserved``) or a value that is not
    a string fails the trial naming the hook."""
    fn = getattr(method, "saved_header", None)
    if not callable(fn):
        return {}
    name = getattr(method, "name", "?")
    try:
        with no_exit(f"Method '{name}' (saved_header)"):
            extra = fn(model)
    except Exception as exc:  # the trial fails (a plugin's bug, its traceback kept), naming the hook
        raise RuntimeError(f"Method '{name}': saved_header raised {type(exc).__name__}: {exc} (with --save-models the "
                           f"harness asks it how to rebuild the returned model)") from exc
    if extra is None:
        return {}
    if not isinstance(extra, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise TypeError(f"Method '{name}': saved_header must return a dict of strings, not {type(extra).__name__} "
                        f"{extra!r:.80}.")
    clash = sorted(set(extra) & set(reserved))
    if clash:
        raise ValueError(f"Method '{name}': saved_header sets the harness's own header entries {', '.join(clash)}; "
                         f"name its entries after the method (e.g. '{name}').")
    return dict(extra)


def load_saved(method: Any):
    """The method's ``load_saved(state, header, new_model)``, or None (the plain architecture)."""
    fn = getattr(method, "load_saved", None)
    return fn if callable(fn) else None


def _refusal(exc: Exception, params: dict) -> tuple[str, str | None]:
    """A method's refusal as (its message on one line, the parameter it names): messages start
    ``KEY=VALUE:``."""
    message = " ".join(str(exc).split()).rstrip(".")
    key = message.partition("=")[0] if "=" in message else ""
    return message, key if key in params else None


def check_params(name: str, method: Any, params: dict, given: Any = None) -> None:
    """Call the method's ``check_params`` (if any) and turn its refusal into one clear line.
    ``given``: the names of the parameters the user set (``bench.core.params.refuse_unused`` refuses
    only those where another parameter leaves them without effect; None: decided by the defaults)."""
    from bench.core.params import GIVEN

    fn = getattr(method, "check_params", None)
    if not callable(fn):
        return
    token = GIVEN.set(None if given is None else frozenset(given))
    try:
        fn(dict(params))
    except (ValueError, TypeError, BenchError) as exc:
        message, key = _refusal(exc, params)
        fix = f"-p {name}.{key or 'NAME'}=VALUE"
        defaults = getattr(method, "default_params", None) or {}
        if key and key in defaults and params.get(key) == defaults[key] and key not in (given or ()):  # the plugin's value
            fix += (f"; {key}={defaults[key]!r} is the method's own default, which its check_params refuses: a bug "
                    f"of the plugin to report to its author")
        now = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "(none)"
        raise BenchError(f"Bad parameters for method '{name}': {message}. Fix it with {fix} "
                         f"(its parameters now: {now}).") from None
    except (Exception, SystemExit) as exc:  # a bug of the plugin's check, not a refusal: one line, naming it
        raise BenchError(_check_failed(name, "check_params", exc)) from None
    finally:
        GIVEN.reset(token)


def check_setting(name: str, method: Any, params: dict, setting: Setting) -> None:
    """Call the method's ``check_setting`` (if any) and turn its refusal into one clear line that
    names the setting."""
    fn = getattr(method, "check_setting", None)
    if not callable(fn):
        return
    try:
        fn(dict(params), setting)
    except (ValueError, TypeError, BenchError) as exc:
        message, key = _refusal(exc, params)
        message = message.removeprefix(f"Method '{name}' ")  # its own line names it too: said once (found in review)
        # every parameter the refusal names (sisa's "shards=5 x slices=1000 needs ..." said to fix shards
        # when slices was the one given; hostile audit, 2026-12-07)
        import re

        named = list(dict.fromkeys(k for k in re.findall(r"\b(\w+)=", message) if k in params))
        fix = " or ".join(f"-p {name}.{k}=VALUE" for k in named) if named else "its parameters or the setting"
        raise BenchError(f"Method '{name}' cannot run on {setting.dataset} / {setting.model} / {setting.forget}: "
                         f"{message}. Fix it with {fix}.") from None
    except (Exception, SystemExit) as exc:  # sys.exit() there ended bench run at plan time with exit 0, no word
        raise BenchError(_check_failed(name, "check_setting", exc)) from None


def _check_failed(name: str, hook: str, exc: BaseException) -> str:
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
    text = " ".join(str(exc).split())
    return (f"Method '{name}': its {hook} failed with {type(exc).__name__}{': ' + text if text else ''}{where}. A "
            f"refusal raises ValueError with a message; this is a bug in the method plugin: fix it (or report it to "
            f"its authors).")


def has_own_training(method: Any) -> bool:
    """Whether the method trains its own original (defines a callable ``train``)."""
    return callable(getattr(method, "train", None))


OWN_TRAINING = ("train", "save_trained", "load_trained")


def check_own_training(name: str, method: Any) -> None:
    missing = [h for h in OWN_TRAINING if not callable(getattr(method, h, None))]
    if missing:
        raise BenchError(f"Method '{name}' defines train() but not {', '.join(missing)}: a method with its own training "
                         f"must also define save_trained(model) -> bytes and load_trained(data, params, ctx) so the "
                         f"harness can cache what it trained.")


def training_params(method: Any, params: dict) -> dict:
    """The params that change what ``train`` produces (all of them unless the method says)."""
    fn = getattr(method, "training_params", None)
    return dict(fn(dict(params))) if callable(fn) else dict(params)


def train_version(method: Any) -> str:
    return str(getattr(method, "train_version", ""))
