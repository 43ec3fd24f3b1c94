"""Where a parent run came from, recorded as tags when it is created (``bench.track.tracking.start_parent``),
and whether the process that drives it still runs (``process_alive``: a dead driver's runs are reaped)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench import __version__
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


def _cpu_and_torch_build() -> dict[str, str]:
    """The CPU's model and the kernel level torch runs on it (AVX2, AVX512...: references trained on
    another level differ in their last digits), and torch's build (``2.14.1+cu130``: the package
    metadata says ``2.14.1``); neither was recorded until 2026-12-06, so a reproduction that differed
    by them could not say why."""
    import torch

    cpu = platform_cpu()
    out = {"host.cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch.build": torch.__version__}
    return {"host.cpu": cpu, **out} if cpu else out


def platform_cpu() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere), "" if unknown."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return " ".join(line.partition(":")[2].split())
    except OSError:
        pass
    return platform.processor()


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import platform

    out = {"python": sys.version.split()[0], "unlearning-bench": __version__,
           # the machine: numbers can differ in their last digits across CPUs and BLAS builds
           "host.platform": platform.platform(), "host.machine": platform.machine(), "host.cpus": str(os.cpu_count()),
           **_cpu_and_torch_build()}
    for pkg in ("torch", "torchvision", "timm", "ray", "mlflow", "scikit-learn", "numpy", "scipy", "highspy", "pluggy",
                "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# -- the process driving a parent run (its pid and start time name it: pids are reused) ----------

def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a Linux process, or None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


def process_started(pid: int) -> str:
    """The start time of process ``pid`` as /proc records it ("" where unknown): with the pid, it
    names one process (pids are reused)."""
    stat = _proc_stat(pid)
    return stat[1] if stat else ""


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` (started at ``started``, if known) still runs; a zombie does not."""
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass
    except OSError:  # ProcessLookupError: no such process
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        if stat[0] in ("Z", "X"):
            return False
        if started and stat[1] != started:
            return False
    return True
