"""What the ``upstream_*.py`` scripts share: patching a reference module for one call, the verdict
line, parameter snapshots, and the digits setup most comparisons run on (the 256-256 MLP the
harness trains by default, trained with the digits recipe, seed 0).

Imported by the scripts as ``from _upstream import ...`` (they run as ``python benchmarks/X.py``,
which puts this folder first on ``sys.path``)."""

from __future__ import annotations

import contextlib
import math

import torch


@contextlib.contextmanager
def patched(*triples):
    """Set ``obj.name = value`` for each ``(obj, name, value)``, restoring the old values on exit."""
    old = [(obj, name, getattr(obj, name)) for obj, name, _ in triples]
    for obj, name, value in triples:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, name, value in old:
            setattr(obj, name, value)


def verdict(diff: float, reason: str, tol: float = 1e-6) -> str:
    """``agree: bit-identical``, ``agree to 1e-N`` (N >= 6) within ``tol``, else ``differ: reason``."""
    if diff == 0:
        return "agree: bit-identical"
    if diff <= tol:
        return f"agree to 1e-{max(6, math.floor(-math.log10(diff)))}"
    return f"differ: {reason}"


def weights(model) -> dict:
    """A detached copy of ``model``'s named parameters."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def digits_original():
    """``(data, new_model, original)``: digits, a factory of the seeded ``MLP(64, (256, 256), 10)``
    (``torch.manual_seed(0)`` before each construction) and that MLP trained on all of digits' train
    split with the digits recipe, seed 0, in eval mode."""
    from bench.core.recipe import build_recipe
    from bench.datasets.digits import Digits
    from bench.nn.nets import MLP
    from bench.nn.training import fit

    d = Digits().load(None, False, None)
    new_model = lambda: (torch.manual_seed(0), MLP(64, (256, 256), d.num_classes))[1]  # noqa: E731
    original = fit(new_model(), d.train_x, d.train_y, build_recipe(Digits.default_recipe), seed=0)
    return d, new_model, original.eval()
