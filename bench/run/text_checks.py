"""Option text MLflow can record: UTF-8 throughout (:func:`check_utf8_options`)."""

from __future__ import annotations

from typing import Any

from bench.core.errors import BenchError


def undecodable(value: Any) -> str | None:
    """The first text in ``value`` (a string, or lists/dicts of them) holding a byte that is not UTF-8
    (Python keeps such command-line bytes as lone surrogates, ``\\udcff``), or None."""
    if isinstance(value, str):
        return value if any("\udc80" <= ch <= "\udcff" for ch in value) else None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple)):
        return next((found for v in value if (found := undecodable(v)) is not None), None)
    return None


def check_utf8_options(options: dict[str, Any], resolved: bool = False) -> None:
    """Every option's text is UTF-8: MLflow records options, paths and names as UTF-8 text, and a
    non-UTF-8 byte in a path passed the dry run, then failed the run as "opening the run in the
    MLflow store failed ... surrogates not allowed" (exit 1; hostile audit, 2026-12-07)."""
    from bench.core.options import OPTION_BY_NAME

    for name, value in options.items():
        found = undecodable(value)
        if found is not None:
            flag = OPTION_BY_NAME[name].flags[0] if name in OPTION_BY_NAME else name
            shown = found.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            given = f"Bad {flag} '{shown}'" + (" (as resolved here, from the defaults or the environment)" if resolved else "")
            raise BenchError(f"{given}: it holds a byte that is not UTF-8, and MLflow records options, paths and names "
                             f"as UTF-8 text; rename the file or folder it names, or give other text.")
