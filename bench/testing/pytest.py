"""The pytest glue: :func:`parametrize_with_checks`, one test per (object, check)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from bench.testing.base import _name
from bench.testing.suite import checks_for


def _object_id(obj: Any, options: Mapping[str, Any]) -> str:
    text = _name(obj)
    if options.get("arg"):
        text += f":{options['arg']}"
    if options.get("params"):
        text += "(" + ",".join(f"{k}={v}" for k, v in options["params"].items()) + ")"
    return text


def parametrize_with_checks(objects: Iterable[Any], *,
                            expected_failed_checks: Mapping[str, Mapping[str, str]] | None = None):
    """A ``pytest.mark.parametrize`` over ``("plugin", "check")``: one test per object and check,
    with ids like ``ga-check_deterministic_under_seed`` (``pytest -k check_forgets`` picks one
    check). Each item of ``objects`` is a plugin object or a pair ``(object, options)``, e.g.
    ``(GradientAscent(), {"params": {"variant": "neggrad+"}})`` (id ``ga(variant=neggrad+)``) or
    ``(Synthetic(), {"arg": "n=500"})`` (id ``synthetic:n=500``).

    ``expected_failed_checks`` maps an object id to ``{check_name: reason}``; those tests are
    marked ``xfail(strict=True)``, so they fail again once the check passes (as in scikit-learn).

    The decorated test runs the check::

        @parametrize_with_checks([MyMethod()])
        def test_conformance(plugin, check):
            check(plugin)
    """
    import pytest

    expected = {k: dict(v) for k, v in (expected_failed_checks or {}).items()}
    cases, seen = [], set()
    for item in objects:
        obj, options = item if isinstance(item, tuple) else (item, {})
        object_id = _object_id(obj, options)
        seen.add(object_id)
        names = []
        for check in checks_for(obj, **options):
            name = getattr(check, "func", check).__name__
            names.append(name)
            reason = expected.get(object_id, {}).get(name)
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            cases.append(pytest.param(obj, check, id=f"{object_id}-{name}", marks=marks))
        unknown = sorted(set(expected.get(object_id, {})) - set(names))
        if unknown:
            raise ValueError(f"expected_failed_checks for '{object_id}' names {unknown}, which are not among its "
                             f"checks: {names}.")
    if set(expected) - seen:
        raise ValueError(f"expected_failed_checks names {sorted(set(expected) - seen)}, which are not among the "
                         f"objects' ids {sorted(seen)}.")
    return pytest.mark.parametrize(("plugin", "check"), cases)
