"""How much memory this machine has free, and a check that a size a user asked for fits it: a
dataset of 40 images at ``size=100000`` asked for terabytes, and the kernel killed ``bench run
--dry-run`` without a word (exit 137); ``mnist1d:n=2000000000`` generated for minutes before it."""

from __future__ import annotations

from bench.core.errors import BenchError


def available_bytes() -> int | None:
    """The memory free for a new allocation (psutil's ``available``: Linux's ``MemAvailable``), None
    where the system does not tell."""
    import psutil

    try:
        return int(psutil.virtual_memory().available)
    except (OSError, RuntimeError, AttributeError):
        return None


def size_text(nbytes: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 1e3:.1f} kB"


def check_fits(what: str, nbytes: float, fix: str) -> None:
    """Refuse, in one line, ``what`` needing ``nbytes`` when that is more than the free memory."""
    free = available_bytes()
    if free is not None and nbytes > free:
        raise BenchError(f"{what} needs about {size_text(nbytes)} of memory, more than this machine has free "
                         f"({size_text(free)}); {fix}.")
