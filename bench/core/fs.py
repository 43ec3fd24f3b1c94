"""Filesystem helpers shared by the checks that run before any work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def probe_write(directory: Path) -> None:
    """Create and delete a file in ``directory``: raises ``OSError`` where nothing can be written
    (a read-only filesystem, a root-owned directory), which permission bits do not always tell."""
    fd, probe = tempfile.mkstemp(prefix=".bench-probe-", dir=directory)
    os.close(fd)
    os.unlink(probe)
