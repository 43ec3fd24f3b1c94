"""NegGrad+ (``neggrad+``): descend on the retain set while ascending on the forget set.

Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023 (the NegGrad+ baseline; code
meghdadk/SCRUB ``small_scale_unlearning.ipynb``), with the defaults of xcadet/deepunlearn
``munl/unlearning/neggradplus.py`` (Cadet et al., "Deep Unlearn", arXiv 2410.01276, which advises
always including a tuned NG+): each epoch is one pass over D_r in shuffled batches, the forget batches
cycled alongside, each step minimising

    alpha·[CE(x_r) + (weight_decay/2)·||θ − θ_original||²] − (1 − alpha)·CE(x_f)

by SGD. Defaults (``NegGradPlus.ORIGINAL_*`` and ``neggradplus_default_optimizer``): ``alpha`` 0.95,
``lr`` 0.01, ``momentum`` 0.9, ``epochs`` 10, ``batch_size`` 256, ``weight_decay`` 0 (the config's pull
towards the original, and the optimiser's own weight decay, are both 0), ``train_mode`` false (the
loop runs under ``model.eval()``: frozen BatchNorm statistics). Search space: ``lr`` loguniform
1e-4..1e-1, ``epochs`` randint 1..20, ``alpha`` uniform 0.5..1.

The algorithm is the one of ``ga -p ga.variant=neggrad+`` (methods/gradient_ascent.py); both call the
same function, ``neggrad_plus``. Only the defaults differ: ``ga`` uses lr 5e-3, 5 epochs, batch 64,
weight_decay 5e-4 and ``train_mode`` true, so ``bench run -m ga -p ga.variant=neggrad+ -p ga.lr=0.01
-p ga.epochs=10 -p ga.batch_size=256 -p ga.weight_decay=0 -p ga.train_mode=false`` gives the same
model as ``-m neggrad+`` with its defaults (``stop_forget_acc`` does not apply to the variant).

Deviations, each a fix or a choice:

- choice, the forget batches are drawn from one shuffled pass over D_f per epoch (the reference's
  ``cycle(forget_loader)`` re-created every epoch does the same); an empty forget set leaves only the
  retain term.
- choice, ``dataset_params`` on digits: ``alpha`` 0.96 (measured on the MLP, class:3, originals of seeds
  0-9, trained as the harness does; goal: forget accuracy 0 and at most 3 points of test accuracy
  lost on the other classes): the published 0.95 forgets class 3 on 10 of 10 seeds but loses 1.2-5.6
  points on the other classes (within 3 on 3 of 10); 0.96 forgets on 10 of 10 and loses 0.3-2.5
  points on 9 of them (4.0 on seed 8); 0.97, the value until 2026-12-07 (chosen on seeds 0-2),
  loses nothing but leaves 3-36% of the class on 6 of 10 seeds (found in review). 8 epochs at 0.95:
  1.5 / 4.0 / 5.0 points on seeds 0-2; 5 epochs or lr 5e-3 do not forget (0.71-0.82 / 0.36-0.66).

Takes continual requests; calls ``ctx.report`` once per epoch.
"""

from __future__ import annotations

from bench.core import space
from bench.core.method import Method
from bench.core.params import (
    require_bool,
    require_int,
    require_non_negative,
    require_range,
    require_sgd,
)

from .gradient_ascent import neggrad_plus


class NegGradPlus(Method):
    name = "neggrad+"
    description = "NegGrad+ (Kurmanji et al., NeurIPS'23): retain-set descent plus forget-set ascent, weighted by alpha."
    requires = frozenset({"forget", "retain"})
    default_params = {"alpha": 0.95, "lr": 0.01, "momentum": 0.9, "epochs": 10, "batch_size": 256,
                      "weight_decay": 0.0, "train_mode": False}
    dataset_params = {"digits": {"alpha": 0.96}}
    search_space = {"lr": space.loguniform(1e-4, 1e-1), "epochs": space.randint(1, 21),
                    "alpha": space.uniform(0.5, 1.0)}

    def check_params(self, params):
        require_range(params, "alpha", 0.0, 1.0)
        require_int(params, "epochs", 1)
        require_int(params, "batch_size", 1)
        require_sgd(params)
        require_non_negative(params, "weight_decay")
        require_bool(params, "train_mode")

    def unlearn(self, model, request, params, ctx):
        return neggrad_plus(model, request, params, ctx)
