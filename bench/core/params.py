"""Small checks to build a method's ``check_params`` from (``bench.core.method.Method.check_params``).

Each raises ``ValueError`` with one line that starts with ``KEY=VALUE:`` and says what is expected;
the harness adds the method's name and how to fix it. Numbers must be finite: ``-p lr=inf``
converts to a float, and no built-in method can use it; and within float32's range (``FLOAT32_MAX``):
the harness refuses a larger ``-p`` value for every method (``bench.run.validate``).
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from typing import Any, Iterable, Mapping


#: The largest float32 (``torch.finfo(torch.float32).max``): the models compute in float32, and torch
#: refuses a larger Python number mixed into a float32 tensor ("cannot be converted ... without overflow").
FLOAT32_MAX = 3.4028234663852886e38


def fits_float32(value: Any) -> bool:
    """A number torch can use with float32 tensors: not beyond float32's range (NaN and inf pass:
    ``require_finite`` and the others refuse them with their own message)."""
    return not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                and abs(value) > FLOAT32_MAX)


def number_from_text(text: str, integer: bool) -> int | float:
    """A command-line number (``-p``, ``-r``): Python's ``int``/``float`` but for ``_`` digit
    separators (``0_01`` was read as 1, not 0.01; params audit), and for an integer, any whole
    number in float notation (``5.0``, ``1e3``), as a TOML or JSON file gives it. Raises ValueError."""
    if "_" in text:
        raise ValueError(text)
    if not integer:
        return float(text)
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not (math.isfinite(value) and value.is_integer()):
            raise ValueError(text) from None
        return int(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and fits_float32(value)


def require_finite(params: Mapping[str, Any], *keys: str) -> None:
    """Each of ``keys`` is a finite number."""
    for key in keys:
        if not _number(params[key]):
            raise ValueError(f"{key}={params[key]!r}: expected a finite number")


def require_positive(params: Mapping[str, Any], *keys: str, integer: bool = False) -> None:
    """Each of ``keys`` is a finite number > 0 (a whole number when ``integer``)."""
    for key in keys:
        value = params[key]
        if not (_number(value) and value > 0 and (not integer or int(value) == value)):
            raise ValueError(f"{key}={value!r}: expected a positive {'integer' if integer else 'number'}")


def require_non_negative(params: Mapping[str, Any], *keys: str) -> None:
    """Each of ``keys`` is a finite number >= 0."""
    for key in keys:
        if not (_number(params[key]) and params[key] >= 0):
            raise ValueError(f"{key}={params[key]!r}: expected a number >= 0")


def require_int(params: Mapping[str, Any], key: str, low: int, note: str = "") -> None:
    """``params[key]`` is a whole number >= ``low`` (``note``, if given, follows in parentheses)."""
    value = params[key]
    if not (_number(value) and value >= low and int(value) == value):
        raise ValueError(f"{key}={value!r}: expected an integer >= {low}" + (f" ({note})" if note else ""))


def require_range(params: Mapping[str, Any], key: str, low: float, high: float, *, low_open: bool = False,
                  high_open: bool = False) -> None:
    """``low <= params[key] <= high`` (strict on an open end)."""
    value = params[key]
    ok = _number(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{key}={value!r}: expected a number in {lo}{low}, {high}{hi}")


def require_choice(params: Mapping[str, Any], key: str, choices: Iterable[Any]) -> None:
    """``params[key]`` is one of ``choices``."""
    choices = tuple(choices)
    if params[key] not in choices:
        raise ValueError(f"{key}={params[key]!r}: expected one of {', '.join(map(str, choices))}")


def require_stop_accuracy(params: Mapping[str, Any], key: str = "stop_forget_acc") -> None:
    """An early-stop threshold: a forget accuracy in [0, 1] at or below which to stop, or -1 (off)."""
    value = params[key]
    if value == -1:
        return
    try:
        require_range(params, key, 0.0, 1.0)
    except ValueError:
        raise ValueError(f"{key}={value!r}: expected a forget accuracy in [0, 1] at or below which "
                         f"to stop, or -1 (no early stop)") from None


def require_bool(params: Mapping[str, Any], *keys: str) -> None:
    """Each of ``keys`` is ``True`` or ``False``."""
    for key in keys:
        if not isinstance(params[key], bool):
            raise ValueError(f"{key}={params[key]!r}: expected true or false")


def require_sgd(params: Mapping[str, Any]) -> None:
    """The optimiser trio: ``lr`` > 0, ``momentum`` in [0, 1), ``weight_decay`` >= 0."""
    require_positive(params, "lr")
    require_range(params, "momentum", 0.0, 1.0, high_open=True)
    require_non_negative(params, "weight_decay")


#: the parameters the user set for the method being checked (``bench.core.method.check_params``'s
#: ``given``); None: not known (a direct call), and the defaults decide
GIVEN: ContextVar[frozenset[str] | None] = ContextVar("bench_given_params", default=None)


class UnusedParam(ValueError):
    """A value refused because other parameters leave it without effect (:func:`refuse_unused`): a
    refusal of a combination, which ``bench tune`` answers by leaving out the samples that make it."""


def refuse_unused(params: Mapping[str, Any], method: Any, key: str, used: bool, why: str) -> None:
    """``key`` set where another parameter makes it have no effect (``used`` false; ``why`` says
    which and how to fix it): refused, as the recipe refuses momentum with Adam; the run would be
    the default's while its record said the value given. Set: among the parameters the user gave
    (:data:`GIVEN`, which the harness passes), else (a direct call) away from the method's
    ``default_params`` and every dataset's ``dataset_params`` value."""
    if used:
        return
    given = GIVEN.get()
    if given is not None:
        if key not in given:
            return
    else:
        per_dataset = (getattr(method, "dataset_params", None) or {}).values()
        if any(params[key] == d for d in (method.default_params[key], *(p[key] for p in per_dataset if key in p))):
            return
    raise UnusedParam(f"{key}={params[key]!r}: has no effect {why}")
