"""The plugin's own conformance tests, with unlearning-bench's kit ``bench.testing``.

One test per (method, check), with ids like ``random-labels-check_deterministic_under_seed``
and ``random-labels(variant=joint)-check_forgets``. Run from this folder once the plugin is
installed next to unlearning-bench::

    pip install -e . pytest
    pytest tests
"""

from __future__ import annotations

from bench_example_plugin import RandomLabels

from bench.testing import parametrize_with_checks


@parametrize_with_checks([RandomLabels(), (RandomLabels(), {"params": {"variant": "joint"}})])
def test_random_labels_conforms(plugin, check):
    check(plugin)
