"""The attacks at the end of a trial (called by ``bench.run.trial.run_trial``).

Builds the trial's :class:`bench.core.contracts.AttackContext` (with the shadow models, the method
and the references that the attacks declare in ``needs``), runs every attack on the unlearned
model and merges what they return: metrics as ``<attack>_<key>`` (keys in the attack's
``unprefixed`` as they are), files in ``ctx.artifacts`` as MLflow artifacts of the trial.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch

from bench.core.cache import load_state
from bench.core.contracts import AttackContext, MethodContext
from bench.core.errors import BenchError, no_exit
from bench.core.keys import ARTIFACTS_KEY
from bench.core.recipe import Recipe
from bench.core.spec import TrialSpec
from bench.nn.torch_state import restore_torch_globals, torch_globals
from bench.nn.training import content_digest, seed_everything
from bench.run.request import build_request


def make_unlearn(method, spec: TrialSpec, splits, new_model: Callable, bounds: Any) -> Callable:
    """``unlearn(model, forget_pos, retain_pos, seed)``: the trial's method on other models and
    forget requests, over the pool (training split followed by test split), with the data access
    the method declared, the same parameters, recipe and input domain."""

    def unlearn(model, forget_pos, retain_pos, seed: int):
        x = torch.cat([splits.train_x, splits.test_x])
        y = torch.cat([splits.train_y, splits.test_y])
        f = torch.as_tensor(np.asarray(forget_pos, dtype=np.int64))
        r = torch.as_tensor(np.asarray(retain_pos, dtype=np.int64))
        request = build_request(num_classes=splits.num_classes, kind="indices",
                                forget_indices=np.sort(np.asarray(forget_pos, dtype=np.int64)), forget_class=None,
                                forget=(x[f].to(spec.device), y[f].to(spec.device)),
                                retain=(x[r].to(spec.device), y[r].to(spec.device)), access=spec.data_access, bounds=bounds)
        ctx = MethodContext(seed=int(seed), device=spec.device, new_model=new_model,
                            recipe=Recipe(**spec.recipe) if spec.uses("recipe") else None)
        seed_everything(int(seed))
        out = method.unlearn(model, request, copy.deepcopy(dict(spec.params)), ctx)  # nested values too
        if not isinstance(out, torch.nn.Module):
            raise BenchError(f"Method '{spec.method}' returned {type(out).__name__}, not a torch.nn.Module.")
        return out

    return unlearn


def run_attacks(attacks: dict, model, metrics: dict, *, spec: TrialSpec, group, method, data, new_model: Callable,
                bounds: Any, original: Callable | None = None) -> None:
    """Run ``attacks`` on the trial's unlearned ``model``; ``original``: fresh copies of the model the
    method started from (default: the group's original; a method's own original for SISA)."""
    (rx, ry), (fx, fy), (tx, ty) = data
    extras: dict[str, Any] = group.attack_models or {}

    def fresh(state: bytes):
        def make():
            net = new_model()
            load_state(net, state)
            return net
        return make

    ctx = AttackContext(
        fx, fy, rx, ry, tx, ty, group.splits.num_classes, spec.seed, spec.device,
        forget_indices=None, shadows=extras.get("shadows"), retrain_shadows=extras.get("retrain_shadows"),  # indices: per attack
        unlearn=make_unlearn(method, spec, group.splits, new_model, bounds),
        original=original or fresh(group.original_state),
        reference=fresh(extras["reference"]) if "reference" in extras else None,
    )
    watched = {**{f"the unlearned model's {k}": t for k, t in [*model.named_parameters(), *model.named_buffers()]},
               **{f"ctx.{k}": t for k, t in zip(("forget_x", "forget_y", "retain_x", "retain_y", "test_x", "test_y"),
                                                (fx, fy, rx, ry, tx, ty)) if isinstance(t, torch.Tensor)}}
    # writes torch's version counter does not count (.data, a NumPy view): the model's and the data's
    # digests, each attack's "after" being the next one's "before" (one pass over the data per attack)
    digests = {k: content_digest(t) for k, t in watched.items()}
    for name, attack in attacks.items():
        ctx.forget_indices = np.array(group.forget_idx)  # each attack its own copy (one writing to it changed the next's)
        unprefixed = set(getattr(attack, "unprefixed", ()))
        versions = {k: t._version for k, t in watched.items()}
        saved = torch_globals()
        try:
            with no_exit(f"Attack '{name}' (evaluate)"):
                found = attack.evaluate(model, ctx)
        finally:
            leaked = restore_torch_globals(saved)
        if leaked:
            raise BenchError(f"Attack '{name}' {leaked}. The attacks and trials after it would have run with it.")
        changed = [k for k, t in watched.items() if t._version != versions[k]]
        after = {k: content_digest(t) for k, t in watched.items()}
        changed += [k for k in watched if k not in changed and after[k] != digests[k]]
        digests = after
        if changed:  # the next attacks would measure another model, or on other data
            raise BenchError(f"Attack '{name}' changed {changed[0]} in place; every attack must leave the model and "
                             "the data as it found them (work on a copy: copy.deepcopy(model), x.clone()). Running a "
                             "model in train mode updates its batch-norm statistics: use model.eval().")
        for key, value in found.items():
            full = key if key in unprefixed else f"{name}_{key}"
            if key in unprefixed and full in metrics:
                raise BenchError(f"Attack '{name}' reported metric '{key}', which is already measured; rename it.")
            metrics[full] = float(value)
    check_artifacts("An attack", ctx.artifacts)
    if ctx.artifacts:
        metrics.setdefault(ARTIFACTS_KEY, {}).update(ctx.artifacts)


def check_artifacts(who: str, artifacts: dict) -> None:
    """Artifacts (of a method or an attack) are ``str``, ``bytes`` or a ``Rendered`` (an object with
    ``render()``, ``bench.core.contracts``) under a relative file name."""
    for name, content in artifacts.items():
        parts = str(name).split("/")
        file_like = isinstance(content, (str, bytes)) or callable(getattr(content, "render", None))
        if not file_like or not isinstance(name, str) or not name or name.startswith("/") or ".." in parts:
            raise BenchError(f"{who} reported artifact '{name}' of type {type(content).__name__}; "
                             "artifacts are str, bytes or an object with render() under a relative file name.")
