"""An example ``unlearning-bench`` plugin: registers the Random Labels (``random-labels``) method.

Installed, this module is loaded through the ``bench`` entry point declared in
``pyproject.toml``; pluggy calls every function marked ``@bench.hookimpl`` whose name matches
a hook in ``bench.core.hookspecs`` (here ``register_methods``). Keep this module light: importing
it must not import torch, so ``bench --help`` and ``bench plugins`` stay fast.
"""

from __future__ import annotations

import bench

from .random_labels import RandomLabels

__all__ = ["RandomLabels", "register_methods", "__version__"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bench-example-plugin")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


__version__ = _version()


@bench.hookimpl
def register_methods(register):
    register(RandomLabels())
