"""Built-in methods plugin (installed as ``bench.methods``): ``retrain``, ``ft``, ``ga``, ``prune``."""

from __future__ import annotations

import bench

from .finetune import FineTune
from .gradient_ascent import GradientAscent
from .prune import Prune
from .retrain import Retrain


@bench.hookimpl
def register_methods(register):
    register(Retrain())
    register(FineTune())
    register(GradientAscent())
    register(Prune())
