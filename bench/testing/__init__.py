"""Conformance checks for plugin authors, modelled on scikit-learn's ``check_estimator``.

Run every check on a plugin object, failing at the first with an ``AssertionError`` that names
the object and the check::

    from bench.testing import check_method, check_dataset, check_attack, check_model
    check_method(MyMethod())                   # options: params={...}, forgets=False
    check_dataset(MyDataset(), "n=500")        # the argument after the colon; root=, download=
    check_attack(MyAttack())
    check_model(MyModel(), input_shape=(3, 32, 32))  # and arg=, num_classes=

or, under pytest, one test per (object, check), with ids like ``ga-check_deterministic_under_seed``::

    from bench.testing import parametrize_with_checks

    @parametrize_with_checks([MyMethod(), (MyMethod(), {"params": {"variant": "b"}}), MyDataset()])
    def test_conformance(plugin, check):
        check(plugin)

Every check is also a plain function, ``check_<property>(obj, **options)``. Method and attack
checks run on a toy setting built once per process (:func:`toy_setting`): a small ReLU MLP
trained with :func:`bench.nn.training.fit` on a fixed 500-point subset of scikit-learn's digits.
Each check runs on one torch thread and restores the global random-number generators and the
thread count it found. ``docs/testing.md`` lists what every check asserts.
"""

from __future__ import annotations

# Submodules, one concern each: base (registry, failures, sandbox), toy (the toy setting and attack extras),
# calls (calling a method as the harness does), space (params and search space), methods, datasets and
# attacks and models (the checks; importing them registers the checks, in the order they run), suite (running them),
# pytest (parametrize_with_checks). Every name below was importable from the single module bench.testing
# (``_attack_ctx`` too: tests/test_conformance.py builds the toy attack context with it).
from bench.testing.attacks import (  # noqa: F401
    TOY_ATTACK_FORGET,
    _attack_ctx,
    check_attack_attributes,
    check_attack_deterministic_under_seed,
    check_attack_leaves_inputs_untouched,
    check_attack_returns_finite_floats,
)
from bench.testing.base import (  # noqa: F401
    ATTACK_CHECKS,
    DATASET_CHECKS,
    METHOD_CHECKS,
    MODEL_CHECKS,
    OPTIONS,
    SEED,
    CheckFailure,
)
from bench.testing.datasets import (  # noqa: F401
    check_accepted_by_bench,
    check_dataset_attributes,
    check_dtypes,
    check_every_class_in_train,
    check_inputs_finite,
    check_labels_in_range,
    check_load_deterministic,
    check_load_returns_splits,
    check_shapes_consistent,
)
from bench.testing.methods import (  # noqa: F401
    check_data_access,
    check_deterministic_under_seed,
    check_empty_request,
    check_forgets,
    check_leaves_inputs_untouched,
    check_method_attributes,
    check_params_and_search_space,
    check_returns_module,
    check_single_point_request,
)
from bench.testing.models import (  # noqa: F401
    check_create_fresh_and_seeded,
    check_create_returns_module,
    check_deepcopy,
    check_gradients_reach_parameters,
    check_leaves_input_untouched,
    check_model_attributes,
    check_outputs_logits,
    check_rows_independent_in_eval,
    check_state_survives_the_cache,
)
from bench.testing.pytest import parametrize_with_checks
from bench.testing.suite import check_attack, check_dataset, check_method, check_model, checks_for
from bench.testing.toy import (  # noqa: F401
    TOY_FORGET_CLASS,
    TOY_HIDDEN,
    TOY_PER_CLASS,
    ToySetting,
    toy_setting,
)

__all__ = [
    "check_method", "check_dataset", "check_attack", "check_model", "checks_for", "parametrize_with_checks",
    "toy_setting", "ToySetting", "METHOD_CHECKS", "DATASET_CHECKS", "ATTACK_CHECKS", "MODEL_CHECKS",
]
