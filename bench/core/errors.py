"""Errors the harness reports to the user as a message, without a traceback."""

from __future__ import annotations


class BenchError(Exception):
    """Bad input or configuration: the message says what was wrong and what to do."""


class PluginError(BenchError):
    """A plugin registered something invalid, or two plugins registered the same name."""


class RecordError(Exception):
    """A measurement was made but could not be recorded (the tracking store refused a write): the
    run fails with this message (exit status 1), never reports success without its record."""
