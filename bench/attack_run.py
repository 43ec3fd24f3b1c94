"""Running the selected attacks at the end of a trial (called by ``bench.trial.run_trial``).

Builds the trial's :class:`bench.contracts.AttackContext` (with the shadow models, the method
and the references that the attacks declare in ``needs``), runs every attack on the unlearned
model and merges what they return: metrics as ``<attack>_<key>`` (keys in the attack's
``unprefixed`` as they are), files in ``ctx.artifacts`` as MLflow artifacts of the trial.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .errors import BenchError


def make_unlearn(method, params: dict, access: set, spec: dict, splits, new_model: Callable, device: str) -> Callable:
    """``unlearn(model, forget_pos, retain_pos, seed)``: the trial's method on other models and
    forget requests, over the pool (training split followed by test split), with the data access
    the method declared, the same parameters and recipe."""

    def unlearn(model, forget_pos, retain_pos, seed: int):
        import torch

        from .contracts import ForgetRequest, MethodContext
        from .recipe import Recipe
        from .training import seed_everything

        x = torch.cat([splits.train_x, splits.test_x])
        y = torch.cat([splits.train_y, splits.test_y])
        f = torch.as_tensor(np.asarray(forget_pos, dtype=np.int64))
        r = torch.as_tensor(np.asarray(retain_pos, dtype=np.int64))
        request = ForgetRequest(
            num_classes=splits.num_classes, kind="indices", forget_indices=np.sort(np.asarray(forget_pos, dtype=np.int64)),
            forget_x=x[f].to(device) if "forget" in access else None, forget_y=y[f].to(device) if "forget" in access else None,
            retain_x=x[r].to(device) if "retain" in access else None, retain_y=y[r].to(device) if "retain" in access else None,
        )
        ctx = MethodContext(seed=int(seed), device=device, new_model=new_model,
                            recipe=Recipe(**spec["recipe"]) if "recipe" in access else None)
        seed_everything(int(seed))
        out = method.unlearn(model, request, dict(params), ctx)
        if not isinstance(out, torch.nn.Module):
            raise BenchError(f"Method '{spec['method']}' returned {type(out).__name__}, not a torch.nn.Module.")
        return out

    return unlearn


def run_attacks(attacks: dict, model, metrics: dict, *, spec: dict, group, method, params: dict, access: set,
                data, new_model: Callable) -> None:
    from .cache import load_state
    from .contracts import AttackContext
    from .trial import ARTIFACTS_KEY

    (rx, ry), (fx, fy), (tx, ty) = data
    device = spec["device"]
    extras: dict[str, Any] = getattr(group, "attack_models", None) or {}

    def fresh(state: bytes):
        def make():
            net = new_model()
            load_state(net, state)
            return net
        return make

    ctx = AttackContext(
        fx, fy, rx, ry, tx, ty, group.splits.num_classes, spec["seed"], device,
        forget_indices=group.forget_idx, shadows=extras.get("shadows"), retrain_shadows=extras.get("retrain_shadows"),
        unlearn=make_unlearn(method, params, access, spec, group.splits, new_model, device),
        original=fresh(group.original_state),
        reference=fresh(extras["reference"]) if "reference" in extras else None,
    )
    for name, attack in attacks.items():
        unprefixed = set(getattr(attack, "unprefixed", ()))
        for key, value in attack.evaluate(model, ctx).items():
            full = key if key in unprefixed else f"{name}_{key}"
            if key in unprefixed and full in metrics:
                raise BenchError(f"Attack '{name}' reported metric '{key}', which is already measured; rename it.")
            metrics[full] = float(value)
    if ctx.artifacts:
        for fname, content in ctx.artifacts.items():
            parts = str(fname).split("/")
            if not isinstance(content, (str, bytes)) or not fname or fname.startswith("/") or ".." in parts:
                raise BenchError(f"An attack reported artifact '{fname}' of type {type(content).__name__}; "
                                 "artifacts are str or bytes under a relative file name.")
        metrics.setdefault(ARTIFACTS_KEY, {}).update(ctx.artifacts)
