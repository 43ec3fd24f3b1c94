"""Time and peak memory of one call.

``peak_memory_mb``: on CUDA, ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats`` (the allocator's peak during the call; ``peak_memory_reserved_mb``
adds the caching allocator's reserve); on the CPU, the peak resident set size (RSS) of the
process while the call runs, and ``memory_delta_mb``, that peak minus the RSS when the call
started (what the call itself added). ``getrusage`` is not used: its peak covers the whole life of
the (reused) worker.

On Linux the peak is the kernel's own high-water mark: writing ``5`` to ``/proc/self/clear_refs``
resets it to the current RSS (Linux >= 4.0, ``Documentation/filesystems/proc.rst``), and
``VmHWM`` in ``/proc/self/status`` reads it after the call: exact, and free while the call runs.
Elsewhere (or where ``clear_refs`` is not writable) a background thread samples the RSS with
psutil every 10 ms, which can miss a peak shorter than that. An earlier version always sampled
every 2 ms; the sampling thread competed with the training thread for the GIL and, with every core
busy, for the CPU: two concurrent digits trials each ran about 10% slower with it.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Measurement:
    seconds: float = 0.0
    memory: dict[str, float] = field(default_factory=dict)


_PROC = "/proc/self"


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process; False where that is not possible."""
    try:
        with open(f"{_PROC}/clear_refs", "w") as f:
            f.write("5")
        return _peak_rss() is not None
    except OSError:
        return False


_LIBC: list = []


def _release_freed_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the system (glibc's
    ``malloc_trim``), so that a call's RSS starts from what is live, not from what trials before it
    in the same worker freed but the allocator kept. Measured (2026-12-05, one worker, digits, 19 built-in
    methods (all but prune, sisa, unsir, l2ul, l2ul-adv) forwards then reversed, epochs 2):
    without it a method's ``peak_memory_mb`` moved by up to 50.5 MB with the order, and
    ``memory_delta_mb`` read 0.00-0.01 MB for 10 of the 19 in one order (their allocations reused
    pages earlier trials had freed); with it, by at most 9.7 MB, and every delta 2.3 MB or more.

    Inside :func:`frozen_between_calls` (the executors' trial loops) what survives the collection is
    then frozen (``gc.freeze``): the next call's collection scans only what was allocated since,
    where a full one over torch's, MLflow's and bench's objects took 0.2-0.5 s per trial
    (2026-12-07; a digits trial of ``ga`` takes 0.1 s)."""
    import ctypes
    import gc

    gc.collect()
    if _FREEZING:
        gc.freeze()
    if not _LIBC:
        try:
            _LIBC.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):  # not glibc
            _LIBC.append(None)
    if _LIBC[0] is not None:
        _LIBC[0](0)


#: open :func:`frozen_between_calls` scopes
_FREEZING: list[bool] = []


@contextmanager
def frozen_between_calls(thaw: bool = True):
    """Within the block, :func:`measure` freezes what is alive once it has collected the garbage, so
    that the next call's collection is cheap. A frozen object is still freed when its last reference
    goes; one that becomes cyclic garbage waits for the end of the outermost block, which hands every
    frozen object back to the collector (``gc.unfreeze``) unless ``thaw`` is False (a Ray worker of
    bench's own, whose next trial goes on from there)."""
    import gc

    _FREEZING.append(True)
    try:
        yield
    finally:
        _FREEZING.pop()
        if thaw and not _FREEZING:
            gc.unfreeze()


def _peak_rss() -> int | None:
    """The kernel's RSS high-water mark of this process in bytes (``VmHWM``), or None."""
    try:
        with open(f"{_PROC}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@contextmanager
def measure(device: str):
    import psutil
    import torch

    m = Measurement()
    cuda = str(device).startswith("cuda")
    proc = psutil.Process()
    start_rss = 0  # the CPU's starting RSS, read below once freed memory is returned
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.01)

    sampler = None
    kernel_peak = False
    if cuda:
        torch.cuda.synchronize(device)
        # the peak starts from what is reserved now: cached blocks of earlier work (a previous trial in
        # a local run, the warm-up) counted in peak_memory_reserved_mb until they are returned (found in review)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _release_freed_memory()
        kernel_peak = _reset_peak_rss()
        start_rss = peak[0] = proc.memory_info().rss
        if not kernel_peak:
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        if cuda:
            torch.cuda.synchronize(device)
        m.seconds = time.perf_counter() - t0
        if cuda:
            m.memory = {
                "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "peak_memory_reserved_mb": torch.cuda.max_memory_reserved(device) / 2**20,
            }
        else:
            if sampler is not None:
                stop.set()
                sampler.join()
            peak[0] = max(peak[0], start_rss, proc.memory_info().rss)
            if kernel_peak:
                peak[0] = max(peak[0], _peak_rss() or 0)
            m.memory = {"peak_memory_mb": peak[0] / 2**20, "memory_delta_mb": (peak[0] - start_rss) / 2**20}
