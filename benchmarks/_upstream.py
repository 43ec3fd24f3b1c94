"""What the ``upstream_*.py`` scripts share: patching a reference module for one call, the verdict
line, parameter snapshots, the check of a reference checkout, and the digits setups the comparisons
run on (the 256-256 MLP the harness trains by default, trained with the digits recipe, seed 0).

Imported by the scripts as ``from _upstream import ...`` (they run as ``python benchmarks/X.py``,
which puts this folder first on ``sys.path``)."""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import types
from pathlib import Path

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


def checkout(root: str | None, files: dict[str, str], what: str, flag: str = "--upstream",
             commit: str | None = None) -> Path:
    """The reference checkout at ``root``: each of ``files`` (path: a string it must hold) present,
    and, where ``root`` is a git work tree, at ``commit``. Otherwise exit status 2 with one line on
    stderr saying what was expected (``what``: the repository, e.g. ``csm9493/L2UL``)."""
    at = f" at {commit}" if commit else ""
    if not root:
        _stop(f"{flag} DIR is required (a checkout of {what}{at})")
    base = Path(root)
    for rel, marker in files.items():
        f = base / rel
        if not f.is_file() or marker not in f.read_text(errors="replace"):
            _stop(f"{flag} {root!r} is not a {what} checkout ({rel} with '{marker}' not found); fetch it and pass its directory")
    if commit and (base / ".git").exists():
        head = subprocess.run(["git", "-C", str(base), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        if head != commit:
            _stop(f"{flag} {root!r} is at commit {head or '?'}, not {commit}")
    return base.resolve()


def _stop(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def attack_setup(n_shadows: int, threads: int) -> types.SimpleNamespace:
    """The attack comparisons' common ground: digits, its random:10% request (forget seed 0), the
    harness's default MLP trained on all of it (``original``) and on the retain set (``retrained``),
    ``n_shadows`` shadow models, the AttackContext (seed 0) and the targets' shadow positions."""
    from bench.attacks.lira import target_positions
    from bench.core.contracts import AttackContext
    from bench.core.forget import parse_forget
    from bench.core.recipe import build_recipe
    from bench.datasets.digits import Digits
    from bench.eval.shadows import shadow_set
    from bench.nn.models import MLPModel
    from bench.nn.nets import model_factory
    from bench.nn.training import fit, set_threads
    from bench.run.request import split_data

    set_threads(threads)
    d = Digits().load(None, False, None)
    forget_idx = parse_forget("random:10%").select(d.train_y.numpy(), d.num_classes, 0)
    (rx, ry), (fx, fy), (tx, ty) = split_data(d, forget_idx, "cpu")
    recipe = build_recipe(Digits.default_recipe)
    model_obj, arg = MLPModel(), None
    new_model = model_factory(model_obj, arg, d, 0, "cpu")
    targets = {"original": fit(new_model(), d.train_x, d.train_y, recipe, seed=0),
               "retrained": fit(new_model(), rx, ry, recipe, seed=0)}
    shadows = shadow_set("shadows", n_shadows, model_obj, arg, d, recipe, seed=0)
    ctx = AttackContext(fx, fy, rx, ry, tx, ty, d.num_classes, 0, "cpu", forget_idx, shadows=shadows)
    f_pos, _, t_pos = target_positions(ctx, shadows)
    return types.SimpleNamespace(d=d, fx=fx, fy=fy, tx=tx, ty=ty, recipe=recipe, model_obj=model_obj, arg=arg,
                                 targets=targets, shadows=shadows, ctx=ctx, f_pos=f_pos, t_pos=t_pos)
