"""The ``bench`` console script's first module (and ``python -m bench``): it installs the stop
handling before the command line's modules import. A Ctrl-C in the first 0.1 s of a command, while
``bench.cli`` and click imported, was a raw traceback and status -2, and a SIGTERM or SIGHUP there
killed the process without a word (found in review, 2026-12-07); now either is "Interrupted." and
exit 130, as later. Importing ``bench`` itself is cheap (its attributes load on first use)."""

from __future__ import annotations

import os
import sys


def entry() -> None:
    try:
        from bench.core.stops import outlast_closed_output, sigterm_as_interrupt

        sigterm_as_interrupt()  # SIGTERM and SIGHUP as Ctrl-C for every command (run and tune install it again)
        outlast_closed_output()  # a line that cannot be printed (terminal gone, pipe closed) stops nothing
        from bench.cli import entry as command
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.stderr.flush()
        os._exit(130)
    command()


if __name__ == "__main__":
    entry()
