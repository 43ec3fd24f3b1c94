"""``--trial-timeout``: stop a trial that runs past its time, so that one stuck trial (a method's
endless loop at some sampled parameters, say) cannot hold a run of hundreds of trials forever.

A watchdog thread raises :class:`TrialTimeout` in the trial's own thread when the time is up
(CPython's ``PyThreadState_SetAsyncExc``, the mechanism behind ``KeyboardInterrupt`` in threads):
the exception surfaces at the next Python instruction the trial runs, unwinds the trial like any
error (its ``with`` blocks close) and fails that trial only, with the traceback of where it was.
The worker then takes the next trial. A trial stuck inside one call into C that never returns (a
deadlock in a native library) is not reached this way; every training loop, which returns to
Python each step, is.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from bench.core.errors import BenchError


class TrialTimeout(BaseException):
    """Raised in the trial's thread by the watchdog (never by the trial itself). A BaseException,
    as KeyboardInterrupt is: code's own ``except Exception`` does not swallow it. As an Exception it
    was swallowed by a library's guarded import (``try: import x except Exception``) that it hit,
    which went on half-initialised; the next trial in the worker then failed on it ("partially
    initialized module 'torch._dynamo'")."""

    def __str__(self) -> str:
        return "the trial ran past --trial-timeout and was stopped"


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Schedule ``exc`` in thread ``thread_id`` (None clears a scheduled one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


def drop_half_imported() -> list[str]:
    """Remove from ``sys.modules`` the modules whose import the timeout cut short (their spec still
    marked initialising: the import machinery's own clean-up may itself have been cut), so that
    the next trial imports them afresh instead of failing on a half-initialised one."""
    gone = sorted(name for name, module in list(sys.modules.items())
                  if getattr(getattr(module, "__spec__", None), "_initializing", False))
    for name in gone:
        sys.modules.pop(name, None)
    return gone


@contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Run the body with at most ``seconds`` (None: no limit); past them, stop it with a BenchError
    saying ``what`` ran too long (chained to the TrialTimeout that shows where it was)."""
    if not seconds:
        yield
        return
    target = threading.get_ident()
    done, fired = threading.Event(), threading.Event()

    def watch() -> None:
        wait = seconds
        while not done.wait(wait):  # again each second: a plugin's bare ``except:`` may swallow one
            fired.set()
            _raise_in(target, TrialTimeout)
            wait = 1.0

    watcher = threading.Thread(target=watch, name="bench-trial-deadline", daemon=True)
    watcher.start()
    try:
        yield
    except TrialTimeout as exc:
        done.set()
        dropped = drop_half_imported()
        raise BenchError(f"{what} ran longer than --trial-timeout {seconds:g} s and was stopped (the traceback "
                         "shows where it was)." + (f" It stopped an import: {', '.join(dropped)} will be imported "
                                                   "again by the next trial." if dropped else "")) from exc
    finally:
        done.set()
        # the body may have ended just as the time ran out: wait for the watchdog, and drop an
        # exception it scheduled that has not surfaced yet (or swallow it if it surfaces here)
        while True:
            try:
                watcher.join()
                if fired.is_set():
                    _raise_in(target, None)
                break
            except TrialTimeout:
                continue
