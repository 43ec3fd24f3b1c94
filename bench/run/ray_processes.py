"""The Ray processes a bench driver starts, found again after it died (:func:`reap_leftover_ray`)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from bench.track.tracking import process_alive

#: Set in the environment of every Ray process a local ``bench`` driver starts: ``PID:START`` of the driver.
DRIVER_ENV = "BENCH_RAY_DRIVER"


def reap_leftover_ray() -> list[int]:
    """SIGKILL the Ray processes (``ray::...`` or under ``.../ray/``) that a bench driver now dead
    started (:data:`DRIVER_ENV` in their environment, same user; Linux /proc). Returns their pids."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        return []
    mine, uid, key = {os.getpid(), os.getppid()}, os.getuid(), f"{DRIVER_ENV}=".encode()
    killed = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            env = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        value = next((v[len(key):].decode(errors="replace") for v in env if v.startswith(key)), None)
        if value is None or not (cmd.startswith(b"ray::") or b"/ray/" in cmd):
            continue
        driver, _, started = value.partition(":")
        if not driver.isdigit() or int(driver) == int(entry.name) or process_alive(int(driver), started):
            continue
        try:
            os.kill(int(entry.name), signal.SIGKILL)
            killed.append(int(entry.name))
        except OSError:
            pass
    return killed
