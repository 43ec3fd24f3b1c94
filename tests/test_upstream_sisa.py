"""Regressions from running SISA's reference code beside ours (benchmarks/upstream_sisa.py); no checkout needed.

Two places where cleverhans-lab/machine-unlearning (50a3ada) and ours part ways, ours being the fix:

- ``sisa.py`` builds one optimizer per process, before its slice loop, so a stateful optimizer (Adam, SGD
  with momentum) carries its state from slice to slice in training, but starts afresh at the slice an
  unlearning run resumes from: its retrained constituent is not what its own training gives. Ours builds a
  new optimizer for every slice, so resuming at any slice with nothing removed gives back the trained
  constituent bit for bit.
- ``sisa.py`` names the last slice's checkpoint by the hash of the shard's first R * (size // R) points
  (``getShardHash(until=...)``), so a request for one of the last size % R points of a shard finds every
  checkpoint in its cache and retrains nothing. Ours retrains the last slice.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.recipe import build_recipe
from bench.datasets.digits import Digits
from bench.methods.sisa import Sisa, _train_from
from bench.nn.nets import MLP


@pytest.fixture(scope="module")
def digits():
    return Digits().load(None, False, None)


def _new_model():
    torch.manual_seed(0)
    return MLP(64, (32,), 10)


def _ensemble(digits, optimizer: str):
    torch.set_num_threads(1)
    recipe = build_recipe(Digits.default_recipe, {"epochs": 3, "optimizer": optimizer})  # momentum 0.9 for sgd
    sisa = Sisa()
    params = dict(sisa.default_params, shards=5, slices=2)
    ctx = MethodContext(seed=0, device="cpu", new_model=_new_model, recipe=recipe)
    return sisa, params, sisa.train(digits.train_x, digits.train_y, params, ctx)


def _same(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resuming_at_a_slice_with_nothing_removed_gives_the_trained_constituent(digits, optimizer):
    sisa, params, ens = _ensemble(digits, optimizer)
    trained = {k: v.clone() for k, v in ens.constituents[1].state_dict().items()}
    ens.constituents[1].load_state_dict(ens.checkpoints[1][0])  # anything: _train_from reloads its start
    _train_from(ens, 1, 1, digits.train_x, digits.train_y, torch.arange(len(digits.train_y)))
    assert _same(trained, ens.constituents[1].state_dict())  # a carried optimizer state would change slice 2


def test_forgetting_a_point_of_the_shards_remainder_retrains_the_last_slice(digits):
    sisa, params, ens = _ensemble(digits, "sgd")
    assert [len(s) for s in ens.slice_indices[0]] == [143, 144]  # 287 // 2, the last slice takes the remainder
    before = {k: v.clone() for k, v in ens.checkpoints[0][0].items()}  # slice 2's state: the constituent itself
    last = {k: v.clone() for k, v in ens.constituents[0].state_dict().items()}
    point = int(ens.slice_indices[0][1][-1])
    n = len(digits.train_y)
    keep = torch.ones(n, dtype=torch.bool)
    keep[point] = False
    request = ForgetRequest(num_classes=10, kind="indices", forget_indices=np.array([point]),
                            retain_x=digits.train_x[keep], retain_y=digits.train_y[keep])
    ctx = MethodContext(seed=0, device="cpu", new_model=_new_model)
    out = sisa.unlearn(ens, request, params, ctx)
    assert ctx.metrics["sisa_shards_retrained"] == 1.0
    assert _same(before, out.checkpoints[0][0])  # resumed after slice 1
    assert not _same(last, out.constituents[0].state_dict())  # slice 2 retrained without the point
    assert point not in set(out.shard_indices(0).tolist())
