"""Built-in methods plugin (installed as ``bench.methods``): ``retrain``, ``ft``, ``ga``, ``sisa``, ``fisher``, ``prune``,
``l2ul`` (and ``l2ul-adv``, ``l2ul-naive``, ``l2ul-oracle``), ``rl``, ``salun``, ``salun-soft``, ``l1-sparse``, ``iu``,
``bs``, ``be``, ``scrub``, ``bad-teacher``, ``ssd``, ``lfssd``, ``unsir``, ``cf-k``, ``eu-k``, ``neggrad+``
(docs/methods.md)."""

from __future__ import annotations

import bench

from .bad_teacher import BadTeacher
from .boundary import BoundaryExpanding, BoundaryShrink
from .finetune import FineTune
from .fisher import FisherForgetting
from .gradient_ascent import GradientAscent
from .influence import InfluenceUnlearning
from .l1_sparse import L1Sparse
from .l2ul import L2UL, L2ULAdv, L2ULNaive, L2ULOracle
from .last_k import CatastrophicForgettingK, ExactUnlearningK
from .neggrad_plus import NegGradPlus
from .prune import Prune
from .retrain import Retrain
from .rl import RandomLabels
from .salun import SalUn, SalUnSoft
from .scrub import Scrub
from .sisa import Sisa
from .ssd import LabelFreeSSD, SelectiveSynapticDampening
from .unsir import Unsir


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
    register(RandomLabels())
    register(SalUn())
    register(SalUnSoft())
    register(L1Sparse())
    register(InfluenceUnlearning())
    register(BoundaryShrink())
    register(BoundaryExpanding())
    register(Scrub())
    register(BadTeacher())
    register(SelectiveSynapticDampening())
    register(LabelFreeSSD())
    register(Unsir())
    register(CatastrophicForgettingK())
    register(ExactUnlearningK())
    register(NegGradPlus())
