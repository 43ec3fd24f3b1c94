"""The Ray processes a bench driver starts: their shutdown (:func:`stop_ray`), and found again after
the driver died (:func:`reap_leftover_ray`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from bench.run.interrupts import held_interrupts
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


def shutdown_ray() -> None:
    """``ray.shutdown()``, SIGTERM's handler kept: destroying its core worker puts SIGTERM back to the
    default in C while Python goes on reporting bench's handler (measured, ray 2.60), so a SIGTERM in
    the rest of the shutdown or just after it (the session folder's removal) killed bench by the
    signal, status -15, over a search recorded FINISHED (1 in 4 tries 0.3 s after `bench tune`'s last
    line, 2026-12-07). The handler is put back as soon as that step returns (Ray's next step, its
    global state's ``disconnect``, is wrapped for it; a Ray without it: after the shutdown)."""
    import ray

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is None:
        ray.shutdown()
        return
    term = signal.getsignal(signal.SIGTERM)
    state = getattr(sys.modules.get("ray._private.state"), "state", None)
    step = getattr(state, "disconnect", None)

    def disconnect(*args, **kwargs):
        signal.signal(signal.SIGTERM, term)  # in C again
        return step(*args, **kwargs)

    if step is not None:
        state.disconnect = disconnect
    try:
        ray.shutdown()
    finally:
        if step is not None:
            vars(state).pop("disconnect", None)
        signal.signal(signal.SIGTERM, term)


def stop_ray(clean: bool) -> None:
    """``ray.shutdown()``; with ``clean``, the session folder of a local Ray this process started
    (``/tmp/ray/session_*``: Ray's logs and sockets, 2-8 MB a run, which Ray leaves behind) goes too.
    A joined cluster's is never touched; a run that did not finish cleanly keeps its worker logs."""
    import ray

    session = None
    with contextlib.suppress(Exception):  # private: a Ray without it keeps its folders
        node = ray._private.worker._global_node
        session = node.get_session_dir_path() if clean and node is not None and node.head else None
    # once the run is recorded, one Ctrl-C or SIGTERM waits for the shutdown: cut short, it left Ray's
    # agents running and ended with "Interrupted." and status 1 over a run recorded FINISHED (found in
    # review 2026-12-07: 6 of 8 tries 0.1-0.3 s after the summary under load)
    with held_interrupts("shutting down Ray"):
        shutdown_ray()
    if session and os.path.basename(session).startswith("session_"):
        shutil.rmtree(session, ignore_errors=True)
        latest = os.path.join(os.path.dirname(session), "session_latest")
        if os.path.islink(latest) and not os.path.exists(latest):  # it pointed to that one
            with contextlib.suppress(OSError):
                os.unlink(latest)


@contextlib.contextmanager
def own_process_group():
    """While our local Ray head starts, its processes (GCS, raylet, and the workers the raylet starts
    after) go into a process group of their own: a SIGTERM to the whole group of a background job
    (`timeout`, a batch script's job control) killed them with bench, and the driver, its GCS gone,
    printed Ray's C++ error and ended with its runs RUNNING instead of the interrupt (scale audit,
    2026-12-07). bench alone then takes the signal and shuts Ray down as for Ctrl-C. Ray does the
    same on Windows where the kernel kills the children with their parent (``fate_share``: on Linux,
    ``PR_SET_PDEATHSIG``), so they still die with a driver killed outright. A Ray without this
    internal layout, or a Python without ``process_group`` (3.11), starts unchanged."""
    try:
        from ray._private import services, utils

        original = services.ConsolePopen
        fate_shared = sys.platform.startswith("linux") and utils.detect_fate_sharing_support()
    except Exception:  # noqa: BLE001
        original, fate_shared = None, False
    if original is None or not fate_shared or sys.version_info < (3, 11):
        yield
        return

    class GroupedPopen(original):
        def __init__(self, *args, **kwargs):
            if "start_new_session" not in kwargs:
                kwargs.setdefault("process_group", 0)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = GroupedPopen
    try:
        yield
    finally:
        services.ConsolePopen = original
