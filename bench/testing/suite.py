"""Running every check that applies to an object: :func:`checks_for`, :func:`check_method`,
:func:`check_dataset`, :func:`check_attack` and :func:`check_model`."""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator

from bench.core.method import forget_kinds
from bench.testing.base import _CHECKS, OPTIONS
from bench.testing.methods import (
    check_empty_request,
    check_forgets,
    check_single_point_request,
)

#: The request kind a check hands to the method where it is not ``"class"`` (the toy forget class):
#: a method whose ``forget_kinds`` leaves it out is not given that check.
REQUEST_KIND = {check_empty_request: "indices", check_single_point_request: "random"}


def _kind_of(obj: Any) -> str:
    for kind, attr in (("method", "unlearn"), ("dataset", "load"), ("attack", "evaluate"), ("model", "create")):
        if callable(getattr(obj, attr, None)):
            return kind
    raise TypeError(f"{obj!r} is not a method (unlearn), dataset (load), attack (evaluate) or model (create).")


def checks_for(obj: Any, **options) -> Iterator[Callable[[Any], None]]:
    """The checks that apply to ``obj`` with ``options``, each with the options bound
    (``check(obj)`` runs it). ``forgets=False`` leaves ``check_forgets`` out; a method's
    ``forget_kinds`` leaves out the checks of request kinds it does not take (``REQUEST_KIND``)."""
    kind = _kind_of(obj)
    unknown = sorted(set(options) - set(OPTIONS[kind]))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)} for a {kind}; "
                        f"options: {', '.join(OPTIONS[kind]) or '(none)'}.")
    for check in _CHECKS[kind]:
        if check is check_forgets and options.get("forgets", True) is False:
            continue
        if kind == "method" and check in REQUEST_KIND and REQUEST_KIND[check] not in forget_kinds(obj):
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


def check_model(model, arg: str | None = None, *, collect: bool = False, **options) -> None:
    """Run every model check on ``model.create(num_classes, input_shape, arg)``; ``arg`` is the text
    after the colon of a model spec (``"512,256"`` for ``mlp:512,256``). Options: ``input_shape``
    (default ``(1, 8, 8)``; give the shape your model is for, e.g. ``(3, 32, 32)``) and
    ``num_classes`` (default 10)."""
    if _kind_of(model) != "model":
        raise TypeError(f"check_model: {model!r} has no create(); use check_{_kind_of(model)}.")
    _run_all(model, collect, {**options, **({"arg": arg} if arg is not None else {})})
