"""Checks of a method's ``default_params`` and ``search_space``: JSON values, and
``bench.core.space`` domains that are well-formed and contain the default (and any override)."""

from __future__ import annotations

import json
import numbers
from typing import Any, Mapping

from bench.core.space import Domain, domain_problem
from bench.testing.base import _fail, _name, _params


def _in_domain(value: Any, domain) -> bool:
    kind, args = domain.kind, domain.args
    if kind == "choice":
        return value in args[0]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if kind == "randint":
        return isinstance(value, numbers.Integral) and args[0] <= value < args[1]
    return args[0] <= value <= args[1]


def check_params_and_space(method, params: Mapping[str, Any] | None) -> None:
    """The body of :func:`bench.testing.check_params_and_search_space`."""
    if not isinstance(method.default_params, Mapping):
        _fail(f"default_params is a {type(method.default_params).__name__}, not a mapping.")
    try:
        json.dumps(dict(method.default_params), allow_nan=False)
    except (TypeError, ValueError) as exc:
        _fail(f"default_params {dict(method.default_params)!r} are not JSON-serialisable ({exc}); the harness records "
              f"them with every trial.", exc)
    if not all(isinstance(k, str) for k in method.default_params):
        _fail(f"default_params keys must be strings (they are set as -p {_name(method)}.KEY=VALUE).")
    if not isinstance(method.search_space, Mapping):
        _fail(f"search_space is a {type(method.search_space).__name__}, not a mapping.")
    merged = _params(method, params)
    for key, domain in method.search_space.items():
        if key not in method.default_params:
            _fail(f"search_space key '{key}' is not among default_params {sorted(method.default_params)}.")
        if not isinstance(domain, Domain):
            _fail(f"search_space['{key}'] is {domain!r}, not a bench.core.space Domain (use bench.core.space.loguniform, "
                  f"uniform, randint or choice; plugins never import ray).")
        problem = domain_problem(domain)
        if problem:
            _fail(f"search_space['{key}']: {problem}.")
        if not _in_domain(method.default_params[key], domain):
            _fail(f"the default {key}={method.default_params[key]!r} lies outside its search space "
                  f"{domain.describe()}.")
        if not _in_domain(merged[key], domain):
            _fail(f"the value {key}={merged[key]!r} given in params lies outside its search space {domain.describe()}.")
    _check_values(method, merged)


def _check_values(method, merged: dict) -> None:
    """The method's own ``check_params`` (as the harness calls it at plan time) accepts the
    parameters and every value at the edges of each search domain (as ``bench tune`` probes them):
    a default it refuses failed every ``bench run`` with a "Fix it with -p" aimed at the user, a
    space wider than it accepts every ``bench tune``, while the kit passed."""
    from bench.core.errors import BenchError
    from bench.core.method import check_params
    from bench.core.space import probes
    from bench.run.validate import coerce_param

    name = _name(method)
    try:
        check_params(name, method, dict(merged))
    except BenchError as exc:
        _fail(f"its check_params refuses the parameters bench run would use ({exc}).", exc)
    for key, domain in method.search_space.items():
        for probe in probes(domain):
            try:
                value = coerce_param(name, key, probe, method.default_params[key])
                check_params(name, method, {**merged, key: value})
            except BenchError as exc:
                _fail(f"search_space['{key}'] {domain.describe()} samples {key}={probe!r}, which bench tune refuses "
                      f"({exc}); narrow the domain to the values check_params accepts.", exc)
