"""The training recipe: its learning-rate schedules (bench.nn.training.make_schedule) step by step,
and values it refuses (bench.core.recipe.build_recipe)."""

from __future__ import annotations

import pytest
import torch

from bench.core.errors import BenchError
from bench.core.recipe import build_recipe
from bench.nn.training import make_schedule


def _lrs(schedule: str, epochs: int, steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make_schedule(opt, schedule, epochs, steps)
    out = []
    for _ in range(epochs * steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("epochs,steps,expected", [
    # the SalUn code's milestones at epoch boundaries: int(0.5 E) and int(0.75 E) epochs
    (182, 1, {0: 1.0, 90: 1.0, 91: 0.1, 135: 0.1, 136: 0.01, 181: 0.01}),
    (4, 3, {0: 1.0, 5: 1.0, 6: 0.1, 8: 0.1, 9: 0.01, 11: 0.01}),
    (3, 2, {0: 1.0, 1: 1.0, 2: 0.1, 3: 0.1, 4: 0.01}),
    # 1 or 2 epochs: the epoch boundaries coincide (or are 0), so 50% and 75% of the steps
    (1, 8, {0: 1.0, 3: 1.0, 4: 0.1, 5: 0.1, 6: 0.01, 7: 0.01}),
    (2, 4, {0: 1.0, 3: 1.0, 4: 0.1, 5: 0.1, 6: 0.01, 7: 0.01}),
])
def test_step_schedule_drops_at_half_and_three_quarters(epochs, steps, expected):
    lrs = _lrs("step", epochs, steps)
    for step, lr in expected.items():
        assert lrs[step] == pytest.approx(lr), (step, lrs)


def test_cosine_and_constant():
    lrs = _lrs("cosine", 2, 5)
    assert lrs[0] == 1.0 and lrs[5] == pytest.approx(0.5) and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert _lrs("constant", 2, 3) == [1.0] * 6


def test_momentum_given_with_adam_is_refused():
    """Adam and AdamW ignore momentum (their betas are fixed): a momentum given with them, or
    above the layer that chose them (a dataset's adam, your momentum), is refused; one below is
    a lower layer's default the optimizer replaced."""
    for layers in (({"optimizer": "adam", "momentum": 0.5},), ({"optimizer": "adamw"}, {"momentum": 0.5})):
        with pytest.raises(BenchError, match=r"momentum=0\.5 has no effect with optimizer=adam"):
            build_recipe(*layers)
    assert build_recipe({"momentum": 0.5}, {"optimizer": "adam"}).optimizer == "adam"
    assert build_recipe({"optimizer": "sgd", "momentum": 0.5}).momentum == 0.5


def test_the_printed_recipe_names_momentum_only_for_sgd():
    """The plan prints momentum only where the optimizer reads it (the neurips23 preset with
    optimizer=adam printed momentum=0.9); the recorded and keyed recipe keeps every field, so
    records and cache keys stay comparable with older runs."""
    assert "momentum" not in build_recipe({"optimizer": "adam"}).shown()
    assert "momentum" not in build_recipe({"optimizer": "adamw"}).shown()
    assert build_recipe({"optimizer": "sgd", "momentum": 0.5}).shown()["momentum"] == 0.5
    assert build_recipe({"optimizer": "adam"}).as_dict()["momentum"] == 0.9  # recorded as before
