"""``--trial-timeout``: stop a trial that runs past its time, so that one stuck trial (a method's
endless loop at some sampled parameters, say) cannot hold a run of hundreds of trials forever.

A watchdog thread raises :class:`TrialTimeout` in the trial's own thread when the time is up
(CPython's ``PyThreadState_SetAsyncExc``, the mechanism behind ``KeyboardInterrupt`` in threads):
the exception surfaces at the next Python instruction the trial runs, unwinds the trial like any
error (its ``with`` blocks close) and fails that trial only, with the traceback of where it was.
The worker then takes the next trial. An attack still running then loses its own numbers only
(:func:`disarm`, ``bench.run.attack_step``). In the main thread (``--executor local``) a signal
(:data:`WAKE_SIGNAL`) also wakes a trial blocked in a system call (a sleep, a socket, a lock, a
subprocess wait). A trial stuck inside one call into C that never returns (a deadlock in a native
library), or blocked in a Ray worker's thread, is not reached this way; every training loop, which
returns to Python each step, is.

The watchdog fires again each second while the trial goes on (a plugin's bare ``except:`` may
swallow one), and only while the trial's own frame (:func:`_guarded`) is on its thread's stack: a
timeout that surfaced in the clean-up after the trial (a trial ending just as its time ran out)
once left the watchdog firing into whatever the worker did next, every second, for good (the
next trials' metrics, MLflow's writes, the test runner's own code).
"""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, TypeVar

from bench.core import console
from bench.core.errors import BenchError

T = TypeVar("T")


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
    # the submodules a cut import had loaded before its package was dropped (by the import system's
    # own clean-up or above): left behind, the package's next import found them in sys.modules and
    # never bound them to itself, so every later trial failed ("partially initialized module
    # 'torch._dynamo' has no attribute 'decorators'"; found in review)
    cut = set(gone)
    for name in list(sys.modules):
        parts = name.split(".")
        missing = [".".join(parts[:k]) for k in range(1, len(parts)) if ".".join(parts[:k]) not in sys.modules]
        if missing:
            sys.modules.pop(name, None)
            cut.add(missing[0])  # the package whose import was cut, named once for all its submodules
    return sorted(cut)


def _on_stack(thread_id: int, frame: FrameType) -> bool:
    """Whether ``frame`` is running in thread ``thread_id`` (is on its stack)."""
    top = sys._current_frames().get(thread_id)
    while top is not None:
        if top is frame:
            return True
        top = top.f_back
    return False


#: what part of a trial its thread runs (:func:`phase`): the timeout's message names it
_phase = threading.local()


@contextmanager
def phase(text: str):
    """Mark the part of a trial that runs in this thread (``"method 'ft'"``, ``"attack 'lira'"``): a
    trial stopped by ``--trial-timeout`` says which part ran past it; the line on the terminal did
    not name a hanging attack, whose trial lost the method's numbers (plugins audit, 2026-12-07)."""
    before = getattr(_phase, "text", None)
    _phase.text = text
    console.set_phase(text)  # a heartbeat of the trial's progress says it too
    try:
        yield
    except TrialTimeout:  # left as it is: run_with_deadline names it (and clears it)
        raise
    except BaseException:
        _phase.text = before
        raise
    finally:
        console.set_phase(before)
    _phase.text = before


def disarm() -> float | None:
    """In a trial's thread, after catching the :class:`TrialTimeout` that stopped one part of it (an
    attack): stop its watchdog for the rest of the trial, drop a timeout it scheduled that has not
    surfaced yet and the imports it cut short. Returns the trial's limit in seconds, or None (and
    does nothing) where no watchdog guards this thread: the caller then lets the timeout go on.
    What ran before that part is kept: a hanging attack cost the trial its method's numbers."""
    stand_down = getattr(_phase, "disarm", None)
    if stand_down is None:
        return None
    _phase.disarm = None
    seconds = stand_down()
    drop_half_imported()
    return seconds


def run_with_deadline(seconds: float | None, what: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` with at most ``seconds`` (None or 0: no limit); past them, stop it with a
    BenchError saying ``what`` ran too long, and in which :func:`phase` (chained to the TrialTimeout
    that shows where it was)."""
    if not seconds:
        return fn(*args)
    _phase.text = None
    try:
        return _guarded(seconds, fn, args)
    except TrialTimeout as exc:  # from the body, or surfaced in _guarded's clean-up (the watchdog has stopped)
        dropped = drop_half_imported()
        where = f" in {_phase.text}" if getattr(_phase, "text", None) else ""
        raise BenchError(f"{what} ran longer than --trial-timeout {seconds:g} s{where} and was stopped (the traceback "
                         "shows where it was)." + (f" It stopped an import: {', '.join(dropped)} will be imported "
                                                   "again by the next trial." if dropped else "")) from exc
    finally:
        _phase.text = None


#: The signal that wakes a trial blocked in a system call in the main thread (``--executor local``).
WAKE_SIGNAL = getattr(signal, "SIGALRM", None)


def _waker(target: int, frame: list, fired: threading.Event):
    """In the main thread, where nothing else handles :data:`WAKE_SIGNAL`: install a handler that
    raises :class:`TrialTimeout` once the time is up, and return (that handler, the one it replaced)
    for :func:`_put_back`; else None. The exception alone waits for the blocked call to return, as
    a signal's handler runs only between Python instructions and a system call interrupted by a
    signal whose handler returns is resumed (PEP 475): a trial sleeping 120 s under
    ``--trial-timeout 8`` was stopped after 134 s (found in review, 2026-12-07). A Ray trial runs
    in a thread of its worker: the exception alone reaches it."""
    if (WAKE_SIGNAL is None or not hasattr(signal, "pthread_kill") or not hasattr(signal, "sigtimedwait")
            or threading.current_thread() is not threading.main_thread()):
        return None
    previous = signal.getsignal(WAKE_SIGNAL)
    if previous not in (signal.SIG_DFL, None) and not getattr(previous, "bench_waker", False):
        return None  # someone else's (pytest-timeout's, a plugin's alarm): left alone

    def stop(signum, here) -> None:
        if fired.is_set() and frame and _on_stack(target, frame[0]):
            raise TrialTimeout

    stop.bench_waker = True  # (one a clean-up cut short left installed: inert, and taken again)
    signal.signal(WAKE_SIGNAL, stop)
    return stop, (signal.SIG_DFL if previous is None or getattr(previous, "bench_waker", False) else previous)


def _put_back(wake) -> None:
    """Put the handler :func:`_waker` replaced back for :data:`WAKE_SIGNAL` once the watchdog has
    ended, taking first a signal it sent that is not delivered yet (put back to the default with one
    pending, the process would be killed by it); unless the trial installed a handler of its own
    meanwhile (a plugin's alarm, its timer maybe still armed: the default put over it killed the
    process with "Alarm clock" between trials, found in review 2026-12-07), which stays."""
    stop, handler = wake
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {WAKE_SIGNAL})
    try:
        if signal.getsignal(WAKE_SIGNAL) is stop:
            if WAKE_SIGNAL in signal.sigpending():
                signal.sigtimedwait({WAKE_SIGNAL}, 0)
            signal.signal(WAKE_SIGNAL, handler)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _guarded(seconds: float, fn: Callable[..., T], args: tuple) -> T:
    """Run ``fn`` with the watchdog on; the watchdog fires only while this frame is on the stack."""
    target, frame = threading.get_ident(), [sys._getframe()]  # (a list: emptied after, no cycle kept)
    done, fired = threading.Event(), threading.Event()
    wake = _waker(target, frame, fired)

    def watch() -> None:
        wait = seconds
        while not done.wait(wait):  # again each second: a plugin's bare ``except:`` may swallow one
            if not frame or not _on_stack(target, frame[0]):  # the trial is over, its clean-up cut short
                if fired.is_set():
                    _raise_in(target, None)
                return
            fired.set()
            _raise_in(target, TrialTimeout)
            if wake is not None:  # a blocking call (sleep, a socket, a lock) returns to Python at once
                signal.pthread_kill(target, WAKE_SIGNAL)
            wait = 1.0

    def stop_watching(keep_frame: bool = False) -> float:
        # the body may have ended just as the time ran out: stop and wait for the watchdog, then
        # drop an exception it scheduled that has not surfaced yet (or swallow it if it surfaces here)
        while True:
            try:
                done.set()
                watcher.join()
                if fired.is_set():
                    _raise_in(target, None)
                    fired.clear()  # the waker's handler raises no more (disarm: the trial goes on)
                if not keep_frame:
                    frame.clear()
                return seconds
            except TrialTimeout:
                continue

    watcher = threading.Thread(target=watch, name="bench-trial-deadline", daemon=True)
    watcher.start()
    _phase.disarm = lambda: stop_watching(keep_frame=True)
    try:
        return fn(*args)
    finally:
        _phase.disarm = None
        stop_watching()
        if wake is not None:  # the watchdog has ended: no signal comes after this
            _put_back(wake)
