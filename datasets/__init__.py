"""Built-in datasets plugin (installed as ``bench.datasets``): ``digits`` (the default) and ``synthetic``."""

from __future__ import annotations

import bench

from .digits import Digits
from .synthetic import Synthetic


@bench.hookimpl
def register_datasets(register):
    register(Digits())
    register(Synthetic())
