"""Built-in attacks plugin (installed as ``bench.attacks``).

Membership-inference attacks register here through ``register_attacks`` exactly like
third-party ones (see ``bench.core.contracts.Attack``): ``loss``, ``confidence``, ``entropy``,
``mentropy`` (population threshold attacks), ``svc`` (MIA-Efficacy), ``lira``,
``lira_offline``, ``ulira``, ``rmia`` (shadow models) and ``epsilon`` (the NeurIPS 2023
forgetting-quality score). docs/attacks.md describes each. The modules import torch, sklearn and
scipy only inside the calls, so listing plugins stays fast.
"""

from __future__ import annotations

import bench

from .epsilon import EpsilonScore
from .lira import RMIA, LiRA, ULiRA
from .population import PopulationAttack
from .svc import SVCEfficacy

#: The attacks ``bench run`` selects when --attacks is not given (one forward pass each; SVC fit).
CHEAP = ("loss", "entropy", "svc")


@bench.hookimpl
def register_attacks(register):
    for signal in ("loss", "confidence", "entropy", "mentropy"):
        register(PopulationAttack(signal))
    register(SVCEfficacy())
    register(LiRA())
    register(LiRA(offline=True))
    register(ULiRA())
    register(RMIA())
    register(EpsilonScore())
