"""The attack checks, on the toy model and a toy :class:`bench.core.contracts.AttackContext`."""

from __future__ import annotations

import math
import numbers
from dataclasses import fields
from typing import Any, Mapping

import numpy as np
import torch

from bench.core.contracts import AttackContext
from bench.eval.metrics import HARNESS_METRICS
from bench.run.attack_step import is_rate, valid_metric_name
from bench.testing.base import (
    _SCRAMBLE,
    SEED,
    _check,
    _exc,
    _fail,
    _first_difference,
    _picklable,
    _registers,
    _seed_globals,
    _state,
)
from bench.testing.toy import TOY_SHADOWS, ToySetting, toy_attack_extras, toy_setting

TOY_ATTACK_FORGET = 50  # random training points treated as the forget set of the attack context


def _attack_ctx(setting: ToySetting, seed: int = SEED, attack: Any = None) -> AttackContext:
    """The toy context; for an attack that declares ``needs``, with toy shadow models, retrained
    models, reference and an exact ``unlearn`` (retraining), from :func:`bench.testing.toy.toy_attack_extras`."""
    x, y, tx, ty = setting.data()
    idx = np.random.default_rng(0).choice(len(y), size=TOY_ATTACK_FORGET, replace=False)
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[torch.as_tensor(idx)] = True
    ctx = AttackContext(x[mask], y[mask], x[~mask], y[~mask], tx, ty, setting.num_classes, seed, "cpu",
                        forget_indices=np.sort(idx))
    needs = set(getattr(attack, "needs", ()) or ())
    if needs:
        for key, value in toy_attack_extras(setting, np.sort(idx), needs).items():
            setattr(ctx, key, value)
    return ctx


def _evaluate(attack, model, ctx, global_seed: int) -> Any:
    _seed_globals(global_seed)
    try:
        return attack.evaluate(model, ctx)
    except Exception as exc:
        _fail(f"evaluate raised {_exc(exc)} on the toy model.", exc)


@_check("attack")
def check_attack_attributes(attack) -> None:
    """The registry accepts it, it has a description, it survives pickling, and an optional
    ``min_shadow_models`` is an integer from 2 to the toy context's shadow count (4)."""
    _registers("attack", attack)
    _picklable(attack, "attack")
    need = getattr(attack, "min_shadow_models", 2)
    if isinstance(need, bool) or not isinstance(need, int) or not 2 <= need <= TOY_SHADOWS:
        _fail(f"min_shadow_models={need!r}: expected an integer from 2 to {TOY_SHADOWS} (bench run refuses "
              f"--shadow-models below it; the kit's toy context has {TOY_SHADOWS} shadow models).")


@_check("attack")
def check_attack_returns_finite_floats(attack) -> None:
    """On the toy model (trained on the context's forget and retain points) and the toy
    ``AttackContext``, ``evaluate`` returns a non-empty dict of metric names (letters, digits,
    ``_-.:/`` and spaces, no path that normalises to another, as MLflow accepts) to finite real
    numbers, none of which makes (as ``<attack>_<key>``, or as declared ``unprefixed``) a metric
    bench itself measures."""
    setting = toy_setting()
    out = _evaluate(attack, setting.original_copy(), _attack_ctx(setting, attack=attack), SEED)
    if not isinstance(out, Mapping) or not out:
        _fail(f"evaluate returned {out!r}; expected a non-empty dict of metric name -> float.")
    for key, value in out.items():
        if not valid_metric_name(key):
            _fail(f"metric name {key!r} is not one MLflow takes: letters, digits, '_-.:/' and spaces, up to 250, "
                  f"and no path that normalises to another ('a/', 'a/./b', '/a').")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            _fail(f"metric '{key}' is {type(value).__name__} {value!r}, not a float (return float(value)).")
        if not math.isfinite(float(value)):
            _fail(f"metric '{key}' is {value}, not finite.")
        full = key if key in set(getattr(attack, "unprefixed", ())) else f"{attack.name}_{key}"
        if is_rate(full) and not 0.0 <= float(value) <= 1.0:  # bench drops the attack's numbers in every trial
            _fail(f"metric '{key}' (as '{full}') is {value:g}; a name ending in _auc, _acc or _efficacy or holding "
                  f"_tpr_at_ is a rate in [0, 1] (not a percentage): bench refuses it in every trial.")
        if full in HARNESS_METRICS:  # an attack named `retain` reporting `acc`: refused by bench in every trial
            _fail(f"metric '{key}' makes '{full}', a metric bench itself measures in every trial; bench drops this "
                  f"attack's numbers in each trial: rename the metric or the attack.")


def _with_batch_norm(model: torch.nn.Module, features: int) -> torch.nn.Module:
    """``model`` behind a BatchNorm layer over the ``features`` of a flattened input that is the
    identity in eval mode (running mean 0, variance 1): a forward in train mode moves its running
    statistics, which the toy MLP alone does not have."""
    bn = torch.nn.BatchNorm1d(features)
    with torch.no_grad():
        bn.running_var.fill_(1.0 - bn.eps)  # sqrt(var + eps) = 1
    return torch.nn.Sequential(torch.nn.Flatten(), bn, model).eval()


@_check("attack")
def check_attack_leaves_inputs_untouched(attack) -> None:
    """``evaluate`` changes neither the model's weights and buffers nor the context's tensors, on
    the toy model and on the toy model behind a batch-norm layer (an attack that calls
    ``model.train()`` and runs a forward moves its running statistics: bench drops that attack's
    numbers and every later attack's; the toy MLP alone has none to move)."""
    setting = toy_setting()
    for model in (setting.original_copy(), _with_batch_norm(setting.original_copy(), math.prod(setting.input_shape))):
        ctx = _attack_ctx(setting, attack=attack)
        before = _state(model)
        tensors = {f.name: getattr(ctx, f.name) for f in fields(ctx) if isinstance(getattr(ctx, f.name), torch.Tensor)}
        snap = {k: v.clone() for k, v in tensors.items()}
        _evaluate(attack, model, ctx, SEED)
        diff = _first_difference(before, _state(model))
        if diff:
            _fail(f"evaluate changed the model it evaluates ({diff}); work on a copy (copy.deepcopy(model)), and "
                  f"evaluate in eval mode (a forward in train mode moves batch-norm statistics).")
        for key, value in tensors.items():
            if getattr(ctx, key) is not value or not torch.equal(value, snap[key]):
                _fail(f"evaluate changed ctx.{key}; the harness shares these tensors with the other attacks.")


@_check("attack")
def check_attack_deterministic_under_seed(attack) -> None:
    """Two evaluations with the same ``ctx.seed`` give identical dicts, even though the global
    generators are in different states before each."""
    setting = toy_setting()
    outs = [_evaluate(attack, setting.original_copy(), _attack_ctx(setting, attack=attack), s) for s in _SCRAMBLE]
    nonfinite = sorted(k for out in outs if isinstance(out, Mapping) for k, v in out.items()
                       if isinstance(v, numbers.Real) and not math.isfinite(float(v)))
    if nonfinite:  # NaN != NaN: the comparison below blamed the seed
        _fail(f"metric(s) {', '.join(map(repr, dict.fromkeys(nonfinite)))} are not finite (see "
              f"check_attack_returns_finite_floats); determinism cannot be compared.")
    if outs[0] != outs[1]:
        _fail(f"two evaluations with ctx.seed={SEED} gave {outs[0]} and {outs[1]}. Draw every random number from "
              f"ctx.seed (torch.Generator().manual_seed(ctx.seed), numpy.random.default_rng(ctx.seed)).")
