"""The toy setting the method and attack checks run on: a small ReLU MLP trained on a fixed
500-point subset of scikit-learn's digits, and toy versions of what an attack's ``needs`` asks for
(shadow models, retrained models, the retrained reference, an exact ``unlearn``)."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.core.cache import state_to_bytes
from bench.core.recipe import build_recipe
from bench.eval.shadows import ShadowSet, pair_keep, shadow_seed, train_models
from bench.testing.base import _sandbox

TOY_PER_CLASS = 50  # training points per digit class
TOY_HIDDEN = (64, 64)
TOY_FORGET_CLASS = 3
TOY_SHADOWS = 4  # shadow models (and retrained models) an attack's ``needs`` gets


@dataclass(frozen=True)
class ToySetting:
    """A trained toy model and its data. Never hand these tensors or this model to a plugin:
    the checks pass clones (:meth:`data`) and deep copies (:meth:`original_copy`)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    recipe: Any  # bench.core.recipe.Recipe used to train ``original`` (what ctx.recipe holds)
    original: nn.Module
    forget_class: int

    def new_model(self, seed: int) -> nn.Module:
        """A fresh model of the toy architecture, initialised from ``seed`` (as the harness does)."""
        return _toy_model(seed, self.input_shape, self.num_classes)

    def original_copy(self) -> nn.Module:
        return copy.deepcopy(self.original)

    def data(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clones of (train_x, train_y, test_x, test_y)."""
        return self.train_x.clone(), self.train_y.clone(), self.test_x.clone(), self.test_y.clone()


def _toy_model(seed: int, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from bench.nn.nets import MLP, flat_size

    torch.manual_seed(seed)
    return MLP(flat_size(input_shape), TOY_HIDDEN, num_classes)


@functools.lru_cache(maxsize=1)
def toy_setting() -> ToySetting:
    """Digits, the first 50 training points of each class (500) and the 360 test points; a
    ``mlp:64,64`` trained on them with the digits default recipe (30 epochs, seed 0). Built
    once per process."""
    from bench.datasets.digits import Digits
    from bench.nn.training import fit

    with _sandbox():
        d = Digits().load(None, False, None)
        keep = torch.cat([torch.nonzero(d.train_y == c).flatten()[:TOY_PER_CLASS] for c in range(d.num_classes)])
        keep = keep.sort().values
        x, y = d.train_x[keep].clone(), d.train_y[keep].clone()
        recipe = build_recipe(Digits.default_recipe)
        model = fit(_toy_model(0, tuple(d.input_shape), d.num_classes), x, y, recipe, seed=0)
    return ToySetting(x, y, d.test_x.clone(), d.test_y.clone(), d.num_classes, tuple(d.input_shape), recipe, model,
                      TOY_FORGET_CLASS)


# -- toy versions of an attack's ``needs`` -------------------------------------------------------


class MLPFactory:
    """A picklable model plugin for ``mlp`` of given hidden widths (the toy setting's network)."""

    name = "toy-mlp"
    description = "ReLU MLP of the conformance kit"

    def __init__(self, hidden: tuple[int, ...]) -> None:
        self.hidden = tuple(hidden)

    def create(self, num_classes, input_shape, arg):
        from bench.nn.nets import MLP, flat_size

        return MLP(flat_size(input_shape), self.hidden, num_classes)


def toy_attack_extras(setting: ToySetting, forget_idx: np.ndarray, needs: set[str]) -> dict[str, Any]:
    """``AttackContext`` fields for the toy setting: 4 shadow models of the toy MLP with the toy
    recipe, 4 retrained on the retain points, the retrained reference, and an ``unlearn`` that
    retrains from scratch on the retain points (exact unlearning)."""
    from bench.nn.training import fit

    sets = _toy_sets(setting, tuple(int(i) for i in forget_idx))
    out: dict[str, Any] = {}
    if "shadows" in needs:
        out["shadows"] = sets["shadows"]
    if "retrain_shadows" in needs:
        out["retrain_shadows"] = sets["retrain_shadows"]
    if "reference" in needs:
        out["reference"] = lambda: sets["retrain_shadows"].model(0, "cpu")
    if "unlearn" in needs:
        pool_x = torch.cat([setting.train_x, setting.test_x])
        pool_y = torch.cat([setting.train_y, setting.test_y])

        def unlearn(model, forget_pos, retain_pos, seed):
            fresh = setting.new_model(int(seed))
            idx = torch.as_tensor(np.asarray(retain_pos, dtype=np.int64))
            return fit(fresh, pool_x[idx], pool_y[idx], setting.recipe, seed=int(seed))

        def original():
            net = MLPFactory(TOY_HIDDEN).create(setting.num_classes, setting.input_shape, None)
            state = {k: v.clone() for k, v in setting.original.state_dict().items()}
            net.load_state_dict(state)
            return net

        out["unlearn"] = unlearn
        out["original"] = original
    return out


_TOY_CACHE: dict = {}


def _toy_sets(setting: ToySetting, forget_idx: tuple[int, ...]) -> dict[str, ShadowSet]:
    key = (id(setting), forget_idx)
    if key in _TOY_CACHE:
        return _TOY_CACHE[key]
    n_train = len(setting.train_y)
    P = n_train + len(setting.test_y)
    x = torch.cat([setting.train_x, setting.test_x])
    y = torch.cat([setting.train_y, setting.test_y])
    factory = MLPFactory(TOY_HIDDEN)
    result = {}
    for kind in ("shadows", "retrain_shadows"):
        if kind == "shadows":
            keep = pair_keep(TOY_SHADOWS, P, 0)
        else:
            keep = np.zeros((TOY_SHADOWS, P), dtype=bool)
            keep[:, :n_train] = True
            keep[:, list(forget_idx)] = False
        seeds = [shadow_seed(0, m, kind) for m in range(TOY_SHADOWS)]
        models, _ = train_models(setting.new_model, x, y, [np.flatnonzero(k) for k in keep], seeds, setting.recipe)
        result[kind] = ShadowSet([state_to_bytes(m) for m in models], keep, seeds, n_train, factory, None,
                                 setting.num_classes, tuple(setting.input_shape))
    _TOY_CACHE[key] = result
    return result
