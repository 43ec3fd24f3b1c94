"""Search-space domains that plugins declare without importing ray.

``search_space = {"lr": loguniform(1e-5, 1e-1), "epochs": randint(1, 20)}``; ``bench tune`` draws
each sample from them itself (``bench.run.tune_samples``), with Ray Tune's semantics (a float
range's upper end open, ``randint``'s high end excluded).
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


def probes(domain: Domain) -> list[Any]:
    """Values at the edges of what ``domain`` samples (every value of a ``choice``): what
    ``bench tune`` checks against the parameter's type and the method's ``check_params`` before any
    work. A float range's upper end is open in Ray Tune: probed just below it."""
    if domain.kind == "choice":
        return list(domain.args[0])
    if domain.kind == "randint":
        return [int(domain.args[0]), int(domain.args[1]) - 1]
    low, high = float(domain.args[0]), float(domain.args[1])
    below = high * (1 - 1e-9) if domain.kind == "loguniform" else high - (high - low) * 1e-9
    short = float(f"{below:.10g}")  # said in a refusal: 4.999999995, not 4.9999999950000005
    return [low, short if low <= short < high else below]
