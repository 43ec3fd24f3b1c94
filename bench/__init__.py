"""unlearning-bench: compare machine-unlearning methods on the same model and forget request.

Importing ``bench`` is cheap (milliseconds, the standard library only): torch, ray and mlflow are
imported by the commands that need them, so ``bench --help`` and argument errors answer at once.

The plugin author's API, importable from here (each loaded on first use):
``hookimpl``; ``Method`` (optional base class of methods); ``BenchError``; the contract types
``ForgetRequest``, ``MethodContext``, ``AttackContext``, ``Splits``, ``OwnTraining``; the search
space builders ``space``; the conformance kit ``testing``. The package layout, bottom to top:
``bench.core`` (contracts, plugins, keys, recipe, forget requests, cache), ``bench.nn`` (torch
helpers and networks), ``bench.eval`` (measurements), ``bench.track`` (MLflow, reports),
``bench.run`` (one ``bench run``), ``bench.cli``; ``bench.testing`` sits on top and nothing in
the harness imports it (see docs/architecture.md).
"""

from __future__ import annotations

import importlib

__all__ = ["hookimpl", "__version__", "Method", "BenchError", "ForgetRequest", "MethodContext", "AttackContext",
           "Splits", "OwnTraining", "space", "testing"]

#: ``hookimpl``: the marker for plugin hook implementations (``@bench.hookimpl def register_methods(register):
#: ...``), and ``__version__``: both made on first use, as the names below are imported on first use,
#: so that ``import bench`` (the ``bench`` command's first step) takes milliseconds (it took 40 ms,
#: pluggy's import and the installed version's metadata)
_MADE = {"hookimpl": lambda: __import__("pluggy").HookimplMarker("bench"), "__version__": lambda: _version()}

_LAZY = {
    "Method": ("bench.core.method", "Method"),
    "BenchError": ("bench.core.errors", "BenchError"),
    "ForgetRequest": ("bench.core.contracts", "ForgetRequest"),
    "MethodContext": ("bench.core.contracts", "MethodContext"),
    "AttackContext": ("bench.core.contracts", "AttackContext"),
    "Splits": ("bench.core.contracts", "Splits"),
    "OwnTraining": ("bench.core.contracts", "OwnTraining"),
    "space": ("bench.core.space", None),
    "testing": ("bench.testing", None),
}


def __getattr__(name: str):
    if name in _MADE:
        value = globals()[name] = _MADE[name]()  # made once
        return value
    if name not in _LAZY:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unlearning-bench")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"

