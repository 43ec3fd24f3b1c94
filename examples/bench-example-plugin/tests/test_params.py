"""The plugin's ``check_params``: the defaults pass, each bad value is refused with one line naming it."""

from __future__ import annotations

import math

import pytest
from bench_example_plugin import RandomLabels

import bench


def test_random_labels_is_a_bench_method_and_accepts_its_defaults():
    method = RandomLabels()
    assert isinstance(method, bench.Method)
    method.check_params(dict(method.default_params))
    method.check_params({**method.default_params, "variant": "joint", "momentum": 0.0, "weight_decay": 0.0})


@pytest.mark.parametrize("key, value", [
    ("variant", "nope"), ("epochs", 0), ("epochs", -5), ("batch_size", 0), ("lr", 0.0), ("lr", -0.1),
    ("lr", math.inf), ("lr", math.nan), ("momentum", 1.0), ("momentum", -0.5), ("weight_decay", -1e-4),
])
def test_random_labels_refuses_bad_values(key, value):
    method = RandomLabels()
    with pytest.raises(ValueError) as exc:
        method.check_params({**method.default_params, key: value})
    assert f"{key}={value!r}" in str(exc.value) and "\n" not in str(exc.value)
