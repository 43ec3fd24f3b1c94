"""Built-in methods plugin (installed as ``bench.methods``): ``retrain``, ``ft``, ``ga``, ``sisa``, ``fisher``, ``prune``,
``l2ul`` (and ``l2ul-adv``, ``l2ul-naive``, ``l2ul-oracle``)."""

from __future__ import annotations

import bench

from .finetune import FineTune
from .fisher import FisherForgetting
from .gradient_ascent import GradientAscent
from .l2ul import L2UL, L2ULAdv, L2ULNaive, L2ULOracle
from .prune import Prune
from .retrain import Retrain
from .sisa import Sisa


@bench.hookimpl
def register_methods(register):
    register(Retrain())
    register(FineTune())
    register(GradientAscent())
    register(Sisa())
    register(FisherForgetting())
    register(L2UL())
    register(L2ULAdv())
    register(L2ULNaive())
    register(L2ULOracle())
    register(Prune())
