"""Search-space domains that plugins declare without importing ray.

``search_space = {"lr": loguniform(1e-5, 1e-1), "epochs": randint(1, 20)}``; ``bench tune`` draws
each sample from them itself (``bench.run.tune_samples``), with Ray Tune's semantics (a float
range's upper end open, ``randint``'s high end excluded).
"""

from __future__ import annotations

import math
import numbers
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


def domain_problem(domain: Any) -> str | None:
    """What makes ``domain`` impossible to sample (an empty or reversed range, a log range from 0, a
    non-integer randint, an empty choice, not a Domain at all), or None: what the plugin kit and
    ``bench tune`` check before any sample is drawn."""
    if not isinstance(domain, Domain):
        return f"{domain!r} is not a bench.core.space Domain (use loguniform, uniform, randint or choice)"
    kind, args = domain.kind, domain.args
    if kind == "choice":
        ok = len(args) == 1 and isinstance(args[0], Sequence) and len(args[0]) > 0
        return None if ok else "choice() needs a non-empty sequence"
    if kind not in ("uniform", "loguniform", "randint"):
        return f"unknown domain kind {kind!r}; build domains with bench.core.space"
    if len(args) != 2 or not all(isinstance(a, numbers.Real) and not isinstance(a, bool) for a in args):
        return f"{kind} needs two numbers, got {args!r}"
    low, high = args
    if not all(math.isfinite(a) for a in args):
        return f"{kind}({low}, {high}) needs finite bounds"
    if not low < high:
        return f"{kind}({low}, {high}) is empty: need low < high"
    if kind == "loguniform" and low <= 0:
        return f"loguniform({low}, {high}) needs low > 0"
    if kind == "randint" and not all(isinstance(a, numbers.Integral) for a in args):
        return f"randint({low}, {high}) needs integers"
    return None


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
