"""The baselines added for the field's comparisons run on a timm model as well as on the MLP and
the CNN their own tests use: one short call each on timm's ``test_resnet`` (BatchNorm, a
``get_classifier()`` head) with digits-shaped inputs, returning a module of the same outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core.contracts import MethodContext
from bench.core.plugins import get_registry
from bench.nn.models import TimmModels
from bench.run.request import build_request

pytestmark = pytest.mark.slow  # a small ResNet per method: seconds each

#: method -> overrides that keep the call short (one epoch, few steps); everything else is default
SHORT = {
    "rl": {"epochs": 1}, "salun": {"epochs": 1}, "salun-soft": {"epochs": 1}, "l1-sparse": {"epochs": 1},
    "iu": {"max_retain": 16}, "bs": {"epochs": 1}, "be": {"epochs": 1}, "scrub": {"epochs": 1},
    "bad-teacher": {"epochs": 1}, "ssd": {}, "lfssd": {}, "unsir": {"noise_steps": 2, "samples_per_class": 4},
    "cf-k": {"epochs": 1}, "eu-k": {"epochs": 1}, "neggrad+": {"epochs": 1},
}


@pytest.fixture(scope="module")
def digits():
    from bench.datasets.digits import Digits

    return Digits().load(None, False, None)


def _model(seed: int):
    torch.manual_seed(seed)
    return TimmModels().create(10, (1, 8, 8), "test_resnet")


@pytest.mark.parametrize("name", sorted(SHORT))
def test_runs_on_a_timm_model(name, digits):
    method = get_registry().get("method", name)
    params = {**method.default_params, **{k: v for k, v in SHORT[name].items() if k in method.default_params}}
    x, y = digits.train_x[:120], digits.train_y[:120]
    forget = (y == 3).nonzero().flatten().numpy()
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[torch.as_tensor(forget)] = True
    access = set(method.requires)
    request = build_request(num_classes=10, kind="class", forget_indices=np.sort(forget), forget_class=3,
                            forget=(x[mask], y[mask]), retain=(x[~mask], y[~mask]), access=access,
                            bounds=(torch.tensor(0.0), torch.tensor(1.0)))
    ctx = MethodContext(seed=0, device="cpu", new_model=lambda: _model(0), recipe=None)
    out = method.unlearn(_model(0), request, params, ctx)
    assert isinstance(out, torch.nn.Module)
    out.eval()
    with torch.no_grad():
        logits = out(digits.test_x[:4])
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
