"""How the ``bench`` process takes a stop (Ctrl-C, SIGTERM, SIGHUP) and output it cannot write:
SIGTERM and SIGHUP as Ctrl-C (:func:`sigterm_as_interrupt`), the terminal's streams after a hang-up
(:func:`leave_hung_up_terminal`) and a closed output (:func:`outlast_closed_output`), the status a
command's recorded outcome keeps (:func:`decide_status`), and an interrupt Python could not raise
left unprinted (:func:`lost_stops_unprinted`). Standard library only: the console script imports it
before anything else (``bench.__main__``)."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator


#: lists :func:`sigterm_as_interrupt`'s handler appends each SIGTERM (or SIGHUP) to
#: (``bench.run.interrupts.noted_interrupts`` registers one): the KeyboardInterrupt it raises is lost
#: where the signal lands inside a weakref callback or a finalizer, and a background job (SIGINT
#: ignored) has no SIGINT handler to note it
TERM_LISTENERS: list[list[int]] = []


#: the command's exit status once its outcome is recorded (``bench run``, ``tune`` and ``reproduce``
#: set it when they return): a stop that lands after it (the ``with`` that puts the signal handlers
#: back, click's return, the wait for other threads) ends the process with it, without the
#: "Interrupted." line (a SIGTERM just after `bench tune`'s last line gave "Interrupted." and 130
#: over a FINISHED search, or death by the signal, found in review 2026-12-07)
_DECIDED: list[int] = []


def decide_status(code: int) -> int:
    """Note ``code`` as the command's exit status, its outcome recorded (see :data:`_DECIDED`)."""
    _DECIDED[:] = [code]
    return code


def decided_status() -> int | None:
    """The status :func:`decide_status` noted in this command, else None."""
    return _DECIDED[0] if _DECIDED else None


def forget_status() -> None:
    """A new command starts (in-process callers run several)."""
    _DECIDED.clear()


def _stops():
    import signal

    return tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def stop_signals() -> tuple:
    """Every signal bench takes as a stop: SIGINT (Ctrl-C), SIGTERM and SIGHUP (where the platform has them)."""
    import signal

    return (signal.SIGINT, *_stops())


def _to_devnull(fd: int) -> None:
    """Point file descriptor ``fd`` at /dev/null (what C code or a child writes there is dropped too)."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def leave_hung_up_terminal() -> None:
    """Point the standard streams that were a terminal (a character device other than /dev/null) at
    /dev/null: after a hang-up (the terminal window closed, the ssh connection dropped) a write to it
    fails (EIO), and the clean-up that follows must still mark the runs and shut Ray down. A stream
    redirected to a file or a pipe keeps its target: its lines are still read."""
    import stat

    try:
        null = os.stat(os.devnull).st_rdev
    except OSError:
        return
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev != null:
                _to_devnull(fd)
        except OSError:  # closed: nothing to write to
            continue


class _Outlasting:
    """A standard stream whose writes never fail: the first write or flush that does (a hung-up
    terminal's EIO, a closed pipe's EPIPE: ``bench run ... | tee log`` whose ``tee`` the hang-up
    killed) points the file descriptor at /dev/null and drops the rest. A progress line that could
    not be printed aborted the work it reported on: a sample's run left RUNNING by a hang-up during
    `bench tune` (3 of 6 tries), a run FAILED with exit 1 and no word when stdout closed (found in
    review, 2026-12-07). Everything else is the stream's own."""

    def __init__(self, stream, fd: int) -> None:
        self._stream, self._fd, self._lock = stream, fd, threading.Lock()

    def write(self, text):
        try:
            return self._stream.write(text)
        except (OSError, ValueError):
            self._gone()
            return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._gone()

    def _gone(self) -> None:
        with self._lock:
            if getattr(self._stream, "name", None) == os.devnull:
                return
            try:
                _to_devnull(self._fd)
                self._stream = open(os.devnull, "w")  # noqa: SIM115 -- for the rest of the process
            except OSError:
                pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def outlast_closed_output() -> None:
    """``sys.stdout`` and ``sys.stderr`` as :class:`_Outlasting` streams (the ``bench`` command's
    process only: in-process callers keep theirs)."""
    import sys

    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _Outlasting):
            setattr(sys, name, _Outlasting(stream, fd))


def sigterm_as_interrupt():
    """Handle SIGTERM (``kill PID``, a batch scheduler ending a job) and SIGHUP (the terminal closed,
    the ssh connection dropped) as Ctrl-C: whatever handles SIGINT at that moment gets it (Python's
    KeyboardInterrupt, Ray Tune's graceful stop), so a terminated run keeps its finished trials, marks
    the rest KILLED and exits 130. Before, the local executor died at once (143, its parent run left
    RUNNING) and under Ray the driver exited 1 through Ray's own handler (``sys.exit``), its cut-off
    trials left RUNNING; a SIGHUP killed either at once (129), the parent run RUNNING and Ray's agents
    alive, until 2026-12-07 (found in review). On a SIGHUP the standard streams that were the terminal
    go to /dev/null first (:func:`leave_hung_up_terminal`). Ray's ``ray.init`` installs its SIGTERM
    handler again: call this after it too. Main thread only. Returns ``{signal: the handler it
    replaced}`` (to put back with ``signal.signal``), empty where it did nothing."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return {}

    def term(signum, frame):
        if signum == getattr(signal, "SIGHUP", None):
            leave_hung_up_terminal()
        for pressed in TERM_LISTENERS:
            pressed.append(signum)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIGINT ignored (a background job of a shell) or the default: stop all the same
            raise KeyboardInterrupt

    # a SIGHUP ignored from the start (`nohup bench run ... &`, kept alive past a logout) stays ignored:
    # taken as a stop, it ended such runs at the logout (130, KILLED; found in review, 2026-12-07)
    return {stop: signal.signal(stop, term) for stop in _stops()
            if not (stop == getattr(signal, "SIGHUP", None) and signal.getsignal(stop) == signal.SIG_IGN)}


@contextmanager
def sigterm_handled_as_ctrl_c() -> Iterator[None]:
    """``bench run`` / ``bench tune`` / ``bench reproduce``: :func:`sigterm_as_interrupt` for the
    command, the previous SIGTERM and SIGHUP handlers put back after it (in-process callers, such as
    the tests, keep theirs)."""
    import signal

    previous = sigterm_as_interrupt()
    try:
        yield
    finally:
        for stop, handler in previous.items():
            if handler is not None:
                signal.signal(stop, handler)


@contextmanager
def lost_stops_unprinted(*kinds: type[BaseException]) -> Iterator[None]:
    """Within the block, an interrupt (KeyboardInterrupt, or one of ``kinds``) that Python could not
    raise, because its signal handler ran inside a weakref callback or a finalizer, is not printed as
    "Exception ignored in ..." with a traceback: the caller notes the signal itself and stops (a
    Ctrl-C or SIGTERM landing in ``gc.collect()`` at a trial's start printed matplotlib's callback
    and the traceback, found in review). Any other unraisable exception is printed as before."""
    import sys

    stops = (KeyboardInterrupt, *kinds)
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, stops):
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
