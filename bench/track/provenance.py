"""Where a parent run came from, recorded as tags when it is created (``bench.track.tracking.start_parent``)."""

from __future__ import annotations

import os
from pathlib import Path

from bench.core.keys import Tag


def provenance_tags() -> dict[str, str]:
    """Where a parent run came from: the command line and its directory (``bench.command``,
    ``bench.cwd``), the user and source MLflow's UI shows (``mlflow.user``, ``mlflow.source.*``;
    ``create_run`` sets none), and bench's git commit when bench runs from a checkout
    (``bench.git_dirty``: its tracked files had changes). The code that measured is also recorded
    as a digest per trial (``bench.measured_with``)."""
    import getpass

    from bench.core.options import command_line

    out = {"mlflow.source.type": "LOCAL", "mlflow.source.name": "bench", Tag.CWD: os.getcwd()}
    command = command_line()
    if command:
        out[Tag.COMMAND] = command[:5000]
    try:
        out["mlflow.user"] = getpass.getuser()
    except Exception:  # no user name in this environment (a container without one)
        pass
    commit = bench_git_commit()
    if commit:
        out[Tag.GIT_COMMIT], dirty = commit
        if dirty:
            out[Tag.GIT_DIRTY] = "true"
    return out


def bench_git_commit() -> tuple[str, bool] | None:
    """(commit, whether tracked files differ from it) of the git checkout bench's package lies in,
    or None: an installed wheel, no git, or a slow answer."""
    import subprocess

    import bench

    root = Path(bench.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip(), bool(dirty.returncode == 0 and dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None
