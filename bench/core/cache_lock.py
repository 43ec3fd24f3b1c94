"""Per-key locks of the reference cache, so that concurrent runs sharing a cache directory train
each reference once.

A lock is an exclusive ``fcntl.flock`` on ``<cache>/locks/<key>.lock``. The kernel drops it when
the holder's file descriptor closes, including when the process dies (killed, crashed, OOM), so a
lock left by a dead process never blocks: the file stays, unlocked, and the next caller takes it.
Lock files are never deleted (deleting one while another process waits on it would let two holders
in); they are empty and one per key. ``flock`` locks belong to an open file description, so two
threads of one process that each call :func:`key_lock` exclude each other as processes do.

Where ``fcntl`` is missing (Windows) the locks are no-ops: entries are still verified, so a race
there costs duplicate training, never a wrong model.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator


def lock_path(root: str | os.PathLike, key: str) -> Path:
    return Path(root) / "locks" / f"{key}.lock"


@contextlib.contextmanager
def key_lock(root: str | os.PathLike, key: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the exclusive lock of ``key`` in the cache at ``root``; ``on_wait(key)`` is called once
    if another holder makes this call wait (it then blocks until that holder releases or dies)."""
    with _lock(root, key, on_wait, wait=True):
        yield


@contextlib.contextmanager
def _lock(root: str | os.PathLike, key: str, on_wait: Callable[[str], None] | None, wait: bool) -> Iterator[bool]:
    """Take ``key``'s lock, waiting for another holder when ``wait`` (saying so once through
    ``on_wait``); yields whether it is held (False only without ``wait``, when another holds it)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    path = lock_path(root, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:  # "locks" a file, or a lock a folder: a traceback (cache audit, 2026-12-07)
        from bench.core.errors import BenchError

        raise BenchError(f"Cannot open the cache lock {path} ({exc.strerror or exc}). {path.parent} must be a folder "
                         f"of lock files bench can write: remove whatever else is there, or point --cache-dir "
                         f"elsewhere.") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if on_wait is not None:
                on_wait(key)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a person looking; never read
        except OSError:
            pass
        yield True
    finally:
        os.close(fd)  # releases the lock


class HeldKeys(list):
    """The sorted, de-duplicated keys :func:`keys_locked` holds; ``release(key)`` lets one go as soon
    as its entry is settled (found, or put in the cache), before the others: a run that held every
    key of its batch until the last was trained kept a second run, needing one entry already in
    the cache, waiting for the whole batch (concurrency audit, 2026-12-07). Releasing never
    deadlocks; the keys are still taken in sorted order."""

    def __init__(self, keys: Iterable[str]) -> None:
        super().__init__(sorted(set(keys)))
        self._open: dict[str, contextlib.AbstractContextManager] = {}

    def release(self, key: str) -> None:
        held = self._open.pop(key, None)
        if held is not None:
            held.__exit__(None, None, None)


@contextlib.contextmanager
def keys_locked(root: str | os.PathLike, keys: Iterable[str],
                on_wait: Callable[[str], None] | None = None) -> Iterator[HeldKeys]:
    """Hold the locks of every key (taken in sorted order, so two callers wanting overlapping sets
    cannot deadlock) until the block ends or :meth:`HeldKeys.release` lets one go earlier."""
    held = HeldKeys(keys)
    try:
        for key in held:
            lock = key_lock(root, key, on_wait)
            lock.__enter__()
            held._open[key] = lock
        yield held
    finally:
        for key in reversed(list(held._open)):
            held.release(key)


def holder(root: str | os.PathLike, key: str) -> str:
    """The pid the holder of ``key``'s lock wrote into its file ("" where unknown), for the line
    that says a run waits: which process to look at."""
    try:
        text = lock_path(root, key).read_text().strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


@contextlib.contextmanager
def key_lock_if_free(root: str | os.PathLike, key: str) -> Iterator[bool]:
    """Hold ``key``'s lock if no one holds it (yields True), else yield False at once: for work
    that must not wait for, or run beside, a process building the entry (``bench cache prune``)."""
    with _lock(root, key, None, wait=False) as held:
        yield held
