"""Retraining from scratch on the retain set: the gold standard of exact unlearning.

theta_r = Train(fresh init, D_r) with the recipe that produced the original model (same
optimizer, epochs, schedule, batch size; only the data changes), as in the ``retrain``
method of OPTML-Group/Unlearn-Sparse (``unlearn/retrain.py``; Jia et al., NeurIPS 2023).
The fresh initialisation is seeded by the trial seed, which also seeded the original model
and the harness's retrained reference: on the CPU this method reproduces that reference
exactly, so its gaps to retrain are 0 and its ``unlearn_seconds`` is the cost every other
method's ``speedup_vs_retrain`` is measured against.
"""

from __future__ import annotations

from bench.core.method import Method


class Retrain(Method):
    name = "retrain"
    description = "Retrain from scratch on the retain set with the original recipe (exact unlearning, the gold standard)."
    requires = frozenset({"retain", "recipe"})

    def check_params(self, params):
        if params:
            given = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise ValueError(f"{given}: expected no parameters (retrain takes the original's recipe, set with --recipe)")

    def unlearn(self, model, request, params, ctx):
        from bench.nn.training import fit

        fresh = ctx.new_model()
        return fit(fresh, request.retain_x, request.retain_y, ctx.recipe, seed=ctx.seed)
