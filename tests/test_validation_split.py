"""``--validation F`` (bench.run.validation_split): trials measured on training examples kept aside, never on
the test set, so that ``bench tune`` selects without it (tune audit, 2026-12-07)."""

from __future__ import annotations

import pytest
import torch

from bench.core.contracts import Splits
from bench.core.errors import BenchError
from bench.run.validation_split import check_validation, validation_splits


def _splits():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(torch.tensor([10, 20, 5]))
    return Splits(torch.randn(35, 4, generator=g), y, torch.randn(6, 4, generator=g), torch.zeros(6, dtype=torch.long),
                  3, (4,), {"source": "test"})


def test_a_stratified_part_of_the_training_set_replaces_the_test_set():
    sp = _splits()
    v = validation_splits("toy", sp, 0.2)
    assert len(v.test_y) == 2 + 4 + 1 and len(v.train_y) == 35 - 7  # round(0.2 n_c), at least one per class
    assert torch.bincount(v.test_y).tolist() == [2, 4, 1]
    rows = {tuple(r.tolist()) for r in sp.train_x}
    assert all(tuple(r.tolist()) in rows for r in v.test_x)  # training examples, not the test set's
    kept = {tuple(r.tolist()) for r in v.train_x}
    assert not kept & {tuple(r.tolist()) for r in v.test_x}  # disjoint
    assert v.info == {"source": "test", "validation": 0.2, "validation_size": 7, "validation_seed": 0}
    again = validation_splits("toy", sp, 0.2)  # the same draw every time (every seed of a setting)
    assert torch.equal(again.test_x, v.test_x) and torch.equal(again.train_y, v.train_y)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), True, "0.2"])
def test_bad_fractions_are_refused(value):
    with pytest.raises(BenchError, match="Bad --validation"):
        check_validation(value)


def test_a_class_left_without_training_examples_is_refused():
    with pytest.raises(BenchError, match="leaves no training example of class 0 of dataset .toy. \(10 in all\)"):
        validation_splits("toy", _splits(), 0.95)


@pytest.mark.slow  # runs the harness
def test_a_run_with_validation_is_measured_on_it(workdir, run_harness, trial_runs):
    code, out = run_harness(workdir, methods="ga", attacks="", recipe={"epochs": 3}, validation=0.2)
    assert code == 0, out
    assert "--validation 0.2: digits is measured on 287 training examples kept aside, not on its test set" in out, out
    row = trial_runs(workdir).loc["ga"]
    assert row["params.data.validation"] == "0.2" and row["params.data.validation_size"] == "287"
    assert float(row["metrics.test_acc"]) * 287 == pytest.approx(round(float(row["metrics.test_acc"]) * 287), abs=1e-4)
    assert float(row["metrics.forget_size"]) == 115  # random:10% of the 1,150 kept
