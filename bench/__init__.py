"""unlearning-bench: compare machine-unlearning methods on the same model and forget request.

Importing ``bench`` is cheap (pluggy only): torch, ray and mlflow are imported by the
commands that need them, so ``bench --help`` and argument errors answer at once.
"""

from __future__ import annotations

import pluggy

__all__ = ["hookimpl", "__version__"]

hookimpl = pluggy.HookimplMarker("bench")
"""Marker for plugin hook implementations: ``@bench.hookimpl def register_methods(register): ...``."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unlearning-bench")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


__version__ = _version()
