"""Filesystem helpers shared by the checks that run before any work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.core.errors import BenchError


def probe_write(directory: Path) -> None:
    """Create and delete a file in ``directory``: raises ``OSError`` where nothing can be written
    (a read-only filesystem, a root-owned directory), which permission bits do not always tell."""
    fd, probe = tempfile.mkstemp(prefix=".bench-probe-", dir=directory)
    os.close(fd)
    os.unlink(probe)


def check_writable_file(given: str, flag: str, fix: str, what: str = "a file") -> Path:
    """Where ``flag`` (``--output``, ``--plot``) writes, checked before any work and without creating
    anything: an existing regular file we can open for writing, or a new file in a directory that
    exists (or can be created under its nearest existing parent) and takes a new file. A path ending
    in a separator, a directory, a device (``/dev/null``), a name over 255 bytes, or a file in the
    way of its directory are refused in one line ending with ``fix``."""
    path = Path(given).expanduser().absolute()
    if len(path.name.encode()) > 255:  # before any stat: the system refuses the name itself
        raise BenchError(f"Bad {flag} {given[:60]}...: its file name is {len(path.name.encode())} bytes long, over "
                         f"the 255 a file system takes. {fix}")
    try:
        if given.endswith(("/", os.sep)) or path.is_dir():
            raise BenchError(f"Bad {flag} {given}: it names a directory; expected {what}. {fix}")
        if path.exists() and not path.is_file():
            raise BenchError(f"Bad {flag} {given}: it is not a regular file (a device or a pipe?); expected {what}. {fix}")
        if path.exists():
            with path.open("a"):  # neither truncates nor changes it
                pass
            return path
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise BenchError(f"Bad {flag} {given}: cannot write there ({blocker} is a file, not a directory). {fix}")
        probe_write(next(p for p in path.parents if p.exists()))
    except OSError as exc:
        raise BenchError(f"Bad {flag} {given}: cannot write there ({exc.strerror or exc}). {fix}") from None
    return path
