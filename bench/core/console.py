"""Terminal output of a run: progress lines with the elapsed time, silenced by ``--quiet``."""

from __future__ import annotations

import time


class Printer:
    """``say(msg)`` prints a progress line prefixed with the seconds since the start;
    ``say(msg, always=True)`` (failures, where the results went) prints even when quiet."""

    def __init__(self, console, quiet: bool = False) -> None:
        self.console, self.quiet, self.t0 = console, quiet, time.perf_counter()

    def __call__(self, msg: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        self.console.print(f"{time.perf_counter() - self.t0:6.1f}s  {msg}", highlight=False, markup=False)
