"""Interrupts around what must not be cut in half: a finished trial's record (``--executor local``)
and Ray Tune's own SIGINT handler, which it leaves installed after a search."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable

from bench.core import stops


@contextmanager
def finish_writing(name: str, say: Callable[..., None]):
    """Hold off a Ctrl-C while a finished trial is written: its measurement is not lost (an interrupt
    mid-write left a child run without its metrics, and ``--resume`` ran the trial again). The
    yielded list is non-empty once Ctrl-C was pressed; a second Ctrl-C interrupts the write."""
    with held_interrupts(f"writing finished trial {name} to the MLflow store", say) as pressed:
        yield pressed


@contextmanager
def held_interrupts(doing: str, say: Callable[..., None] | None = None):
    """The first Ctrl-C (or SIGTERM, which bench's handler passes to SIGINT's) waits for the block,
    saying so through ``say``; a second interrupts it. The yielded list is non-empty once one came."""
    pressed: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or (
            previous not in (signal.default_int_handler, signal.SIG_IGN) and not getattr(previous, "noting", False)):
        yield pressed  # not ours to change (a thread, or a caller that handles SIGINT itself)
        return

    def hold(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)
        if say is not None:
            say(f"interrupt: {doing} first (Ctrl-C again to abort it)", always=True)

    signal.signal(signal.SIGINT, hold)  # also where SIGINT is ignored (a background job): SIGTERM comes here
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def noted_interrupts():
    """Ctrl-C (and SIGTERM, which comes through the SIGINT handler) raises KeyboardInterrupt as
    usual, and is noted: the yielded list is non-empty once pressed. Python prints and swallows an
    exception raised inside a finalizer or a weakref callback (``gc.collect()`` freeing the previous
    trial's matplotlib figures); a Ctrl-C landing there printed a raw "Exception ignored in ..."
    traceback, and the local executor ran every remaining trial and exited 0 (found in review).
    Its caller stops after the trial running at that moment (which finished: recorded). A SIGTERM
    is noted by bench's own handler, also where SIGINT is ignored (a background job, which ran on
    to exit 0 when it landed there, 2026-12-07), and the lost interrupt is not printed."""
    pressed: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    # a SIGTERM (bench's handler, stops.sigterm_as_interrupt) is noted too, SIGINT ignored or not
    stops.TERM_LISTENERS.append(pressed)
    try:
        with stops.lost_stops_unprinted():
            if threading.current_thread() is not threading.main_thread() or previous is not signal.default_int_handler:
                yield pressed  # a thread, a caller with its own handler, or SIGINT ignored (a background job)
                return

            def note(signum, frame):
                pressed.append(signum)
                raise KeyboardInterrupt

            note.noting = True  # finish_writing may hold it off while a finished trial is written
            signal.signal(signal.SIGINT, note)
            try:
                yield pressed
            finally:
                signal.signal(signal.SIGINT, previous)
    finally:
        stops.TERM_LISTENERS[:] = [other for other in stops.TERM_LISTENERS if other is not pressed]


def restore_sigint(handler) -> None:
    """Put back the SIGINT handler ``handler`` (``signal.getsignal`` before Ray Tune's ``fit``, which
    installs one that only sets a flag and leaves it there), main thread only."""
    if threading.current_thread() is threading.main_thread() and handler is not None:
        signal.signal(signal.SIGINT, handler)
