"""Errors the harness reports to the user as a message, without a traceback."""

from __future__ import annotations


class BenchError(Exception):
    """Bad input or configuration: the message says what was wrong and what to do."""


class PluginError(BenchError):
    """A plugin registered something invalid, or two plugins registered the same name."""
