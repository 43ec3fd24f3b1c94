"""Hook specifications of the ``bench`` plugin system (pluggy project name ``bench``).

Each hook receives a ``register`` callback and calls it once per object it contributes.
Every implementation is called (no first-result short cut); ``register`` validates the
object, refuses duplicate names and records which plugin registered it. Arguments are
passed by keyword, so an implementation may accept any subset of them.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("bench")


@hookspec
def register_methods(register):
    """Register unlearning methods: ``register(method)`` for each (see ``bench.core.contracts.Method``)."""


@hookspec
def register_datasets(register):
    """Register datasets: ``register(dataset)`` for each (see ``bench.core.contracts.Dataset``)."""


@hookspec
def register_models(register):
    """Register model architectures: ``register(model)`` for each (see ``bench.core.contracts.Model``)."""


@hookspec
def register_attacks(register):
    """Register membership-inference attacks: ``register(attack)`` for each (see ``bench.core.contracts.Attack``)."""
