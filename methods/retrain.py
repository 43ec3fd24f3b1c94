"""Retraining from scratch on the retain set: the gold standard of exact unlearning.

theta_r = Train(fresh init, D_r) with the recipe that produced the original model (same
optimizer, epochs, schedule, batch size; only the data changes), as in the ``retrain``
method of OPTML-Group/Unlearn-Sparse (``unlearn/retrain.py``; Jia et al., NeurIPS 2023).
The fresh initialisation is seeded by the trial seed, which also seeded the original model
and the harness's retrained reference: on the CPU this method reproduces that reference
exactly, so its gaps to retrain are 0. Its ``unlearn_seconds`` is retraining timed beside the
other methods of the same run; ``speedup_vs_retrain`` is not measured against it but against the
reference's ``retrain_seconds``, timed once when the reference was trained (cached, possibly
under another load), so on a cached run this method's own speed-up can be far from 1 (0.5x-7.8x
measured on a shared 2-core machine, 2026-12-07). For times measured side by side, include
``retrain`` in the run and compare ``unlearn_seconds``.
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
