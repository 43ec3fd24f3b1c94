"""Retraining from scratch on the retain set: the gold standard of exact unlearning.

theta_r = Train(fresh init, D_r) with the recipe that produced the original model (same
optimizer, epochs, schedule, batch size; only the data changes), as in the ``retrain``
method of OPTML-Group/Unlearn-Sparse (``unlearn/retrain.py``; ../shared/specs/baselines.md A1).
The fresh initialisation is seeded by the trial seed, which also seeded the original model
and the harness's retrained reference: on the CPU this method reproduces that reference
exactly, so its gaps to retrain are 0 and its ``unlearn_seconds`` is the cost every other
method's ``speedup_vs_retrain`` is measured against.
"""

from __future__ import annotations


class Retrain:
    name = "retrain"
    description = "Retrain from scratch on the retain set with the original recipe (exact unlearning, the gold standard)."
    requires = frozenset({"retain", "recipe"})
    default_params: dict = {}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        from bench.training import fit

        fresh = ctx.new_model()
        return fit(fresh, request.retain_x, request.retain_y, ctx.recipe, seed=ctx.seed)
