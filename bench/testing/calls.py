"""How the kit calls a method, as the harness does: the data it may see, toy requests built by
:func:`bench.run.request.build_request`, its context, ``unlearn`` on a fresh copy of the original
(or of the original its own ``train`` hook made), and the checks on the model it returns."""

from __future__ import annotations

import copy
import json
from typing import Any

import torch
from torch import nn

from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.method import has_own_training, requires_for, training_params
from bench.run.request import build_request
from bench.testing.base import SEED, _exc, _fail, _sandbox, _seed_globals
from bench.testing.toy import ToySetting


def _access(method, params: dict) -> frozenset[str]:
    """What the harness passes: ``requires_for(params)`` when defined, else ``requires``."""
    frozenset(method.requires)  # a missing or malformed ``requires`` fails here, not as requires_for's failure
    try:
        return requires_for(method, params)
    except Exception as exc:
        _fail(f"requires_for(params) raised {_exc(exc)} (params {params}).", exc)


def _request(setting: ToySetting, kind: str, access: frozenset[str]) -> ForgetRequest:
    """A request as the harness builds it: only the declared data, the rest ``None``.

    ``class``: every training point of the toy forget class; ``empty``: forget tensors of shape
    ``(0, 1, 8, 8)`` and ``(0,)`` (kind ``"indices"``), retain = the whole training set;
    ``single``: the first training point of the forget class (kind ``"random"``), retain = the rest.
    """
    x, y, _, _ = setting.data()
    mask = torch.zeros(len(y), dtype=torch.bool)
    forget_class = None
    if kind == "class":
        mask = y == setting.forget_class
        forget_class, req_kind = setting.forget_class, "class"
    elif kind == "single":
        mask[int(torch.nonzero(y == setting.forget_class)[0])] = True
        req_kind = "random"
    elif kind == "empty":
        req_kind = "indices"
    else:  # pragma: no cover
        raise ValueError(kind)
    return build_request(num_classes=setting.num_classes, kind=req_kind, forget_indices=torch.nonzero(mask).flatten().numpy(),
                         forget_class=forget_class, forget=(x[mask], y[mask]), retain=(x[~mask], y[~mask]), access=access,
                         bounds=(torch.tensor(0.0), torch.tensor(1.0)))  # digits pixels lie in [0, 1]


def _ctx(setting: ToySetting, access: frozenset[str], seed: int = SEED) -> MethodContext:
    return MethodContext(seed=seed, device="cpu", new_model=lambda: setting.new_model(seed),
                         recipe=setting.recipe if "recipe" in access else None)


def _undeclared(request: ForgetRequest, ctx: MethodContext, access: frozenset[str]) -> list[str]:
    names = [f"request.{f}_{xy}" for f in ("forget", "retain") if f not in access for xy in "xy"]
    return names + (["ctx.recipe"] if "recipe" not in access else [])


def _unlearn(method, setting: ToySetting, request: ForgetRequest, params: dict, ctx: MethodContext,
             access: frozenset[str], *, global_seed: int | None = None, what: str = "", nudged: bool = False) -> Any:
    """Call ``unlearn`` on a deep copy of the toy original after seeding the global generators
    (with ``ctx.seed`` as the harness does, unless ``global_seed`` says otherwise); ``nudged``: on
    another original, the toy original with every floating-point weight moved by 1% noise."""
    _seed_globals(ctx.seed if global_seed is None else global_seed)
    original = _original_copy(method, setting, params)
    if nudged:
        noise = torch.Generator().manual_seed(SEED + 1)
        with torch.no_grad():
            for weight in original.parameters():
                if weight.is_floating_point():
                    weight.add_(0.01 * weight.abs().mean() * torch.randn(weight.shape, generator=noise, dtype=weight.dtype))
    try:
        return method.unlearn(original, request, params, ctx)
    except Exception as exc:
        hint = ""
        if isinstance(exc, (AttributeError, TypeError)) and "None" in str(exc):
            hint = (f" This looks like a data-access violation: it declared {sorted(access)}, so "
                    f"{', '.join(_undeclared(request, ctx, access))} are None.")
        _fail(f"unlearn raised {_exc(exc)}{' on ' + what if what else ''}.{hint}", exc)


_OWN_ORIGINALS: dict[tuple, bytes] = {}


def _original_copy(method, setting: ToySetting, params: dict) -> nn.Module:
    """A fresh copy of the toy original. For a method with the optional ``train`` hook (SISA), the
    model that hook trains on the toy training set instead (seed 0, the toy recipe), trained once
    per method class and training params and, as in the harness, passed through
    ``save_trained``/``load_trained`` for every copy."""
    if not has_own_training(method):
        return setting.original_copy()
    key = (type(method).__module__, type(method).__qualname__,
           json.dumps(training_params(method, params), sort_keys=True, default=str))
    if key not in _OWN_ORIGINALS:
        x, y, _, _ = setting.data()
        ctx = MethodContext(seed=SEED, device="cpu", new_model=lambda: setting.new_model(SEED), recipe=setting.recipe)
        with _sandbox():
            _seed_globals(SEED)
            try:
                _OWN_ORIGINALS[key] = method.save_trained(method.train(x, y, copy.deepcopy(params), ctx))
            except Exception as exc:
                _fail(f"its train hook (train, then save_trained) raised {_exc(exc)} on the toy training set.", exc)
    ctx = MethodContext(seed=SEED, device="cpu", new_model=lambda: setting.new_model(SEED))
    return method.load_trained(_OWN_ORIGINALS[key], copy.deepcopy(params), ctx)


def _check_module(out: Any, setting: ToySetting, what: str) -> None:
    """``out`` is an ``nn.Module`` mapping toy inputs to finite ``(B, num_classes)`` logits."""
    if not isinstance(out, nn.Module):
        _fail(f"unlearn returned {type(out).__name__} on {what}; it must return the unlearned torch.nn.Module.")
    x = setting.test_x[:32].clone()
    was_training = out.training
    try:
        out.eval()
        with torch.no_grad():
            logits = out(x)
    except Exception as exc:
        _fail(f"the returned model raised {_exc(exc)} on a batch of shape {tuple(x.shape)} ({what}).", exc)
    finally:
        out.train(was_training)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(x), setting.num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        _fail(f"the returned model maps a batch of shape {tuple(x.shape)} to {shape}, not logits of shape "
              f"{(len(x), setting.num_classes)} ({what}).")
    if not torch.isfinite(logits).all():
        _fail(f"the returned model gives non-finite logits (NaN or inf) on the toy test inputs ({what}).")
    from bench.run.model_probe import EVAL_FLAWS, eval_flaw

    try:  # (the harness refuses a random one too: a dropout hook passed the kit blamed on saved_header)
        out.eval()
        with torch.random.fork_rng(devices=[]):
            flaw = eval_flaw(out, x[:8])
    finally:
        out.train(was_training)
    if flaw is not None:
        _fail(f"the returned model {EVAL_FLAWS[flaw]} ({what}).")
    from bench.eval.evaluation import returns_probabilities

    if returns_probabilities(logits):  # bench run fails such a trial (bench.run.trial): the kit passed it
        _fail(f"the returned model gives probabilities (non-negative rows summing to 1), not logits ({what}); "
              f"bench applies softmax itself: drop the final softmax.")
