"""Built-in methods plugin (installed as ``bench.methods``): ``retrain``, ``ft``, ``ga``, ``sisa``, ``fisher``."""

from __future__ import annotations

import bench

from .finetune import FineTune
from .fisher import FisherForgetting
from .gradient_ascent import GradientAscent
from .retrain import Retrain
from .sisa import Sisa


@bench.hookimpl
def register_methods(register):
    register(Retrain())
    register(FineTune())
    register(GradientAscent())
    register(Sisa())
    register(FisherForgetting())
