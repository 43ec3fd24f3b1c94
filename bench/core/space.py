"""Search-space domains that plugins declare without importing ray.

``search_space = {"lr": loguniform(1e-5, 1e-1), "epochs": randint(1, 20)}``; the executor
turns each into the matching ``ray.tune`` domain with :func:`to_tune`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Domain:
    kind: str
    args: tuple

    def describe(self) -> str:
        return f"{self.kind}{self.args}"


def uniform(low: float, high: float) -> Domain:
    return Domain("uniform", (low, high))


def loguniform(low: float, high: float) -> Domain:
    return Domain("loguniform", (low, high))


def randint(low: int, high: int) -> Domain:
    """Integers in [low, high) as in ``ray.tune.randint``."""
    return Domain("randint", (low, high))


def choice(values: Sequence[Any]) -> Domain:
    return Domain("choice", (tuple(values),))


def to_tune(domain: Domain):
    """The ``ray.tune`` search domain for ``domain``."""
    from ray import tune

    if domain.kind == "choice":
        return tune.choice(list(domain.args[0]))
    return getattr(tune, domain.kind)(*domain.args)
