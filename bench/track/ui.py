"""The MLflow UI on the store ``bench run`` wrote: start, wait for, and stop an ``mlflow server``.

Used by ``bench ui`` and reusable from tests or notebooks::

    uri = resolve_ui_store(None)                       # same default as `bench run`
    with start_server(uri, port=choose_port("127.0.0.1", 5000)) as server:
        server.wait_ready()
        print(server.runs_url(find_experiment(uri, DEFAULT_EXPERIMENT)))

The server runs in a light configuration (``--workers 1``, ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``:
two processes and about 420 MiB instead of eleven and 1.4 GiB), bound to 127.0.0.1 unless a
host is given explicitly. It starts in its own session (Ctrl-C in the terminal reaches
``bench ui`` only, which then stops the whole tree in order) and, on Linux, receives SIGTERM if
the process that started it dies. Nothing here imports mlflow except :func:`find_experiment`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from bench.core.errors import BenchError
from bench.core.keys import DEFAULT_EXPERIMENT, is_loopback
from bench.track.store import resolve_tracking_uri, server_silent
from bench.track.tracking import configure_environment

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
PORT_ATTEMPTS = 50

# Server options MLflow also reads from the environment that would change where the UI lives or
# what it serves (the printed URL would be wrong): the child server never inherits them.
_DROPPED_ENV = ("MLFLOW_STATIC_PREFIX", "MLFLOW_ARTIFACTS_ONLY", "MLFLOW_GUNICORN_OPTS", "MLFLOW_UVICORN_OPTS",
                "MLFLOW_EXPOSE_PROMETHEUS")


# -- store and experiment ----------------------------------------------------------------------

def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative paths against the cwd), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///"):])
    return path if path.is_absolute() else Path.cwd() / path


def resolve_ui_store(uri: str | None) -> str:
    """The store ``bench run`` would use (``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > ``./mlflow.db``),
    which must already exist: the UI never creates an empty store."""
    raw = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if raw.startswith(("http://", "https://")):
        why = server_silent(raw)  # it said "is already an MLflow server" of an address where nothing listened
        if why is not None:
            raise BenchError(
                f"No MLflow server answers at {raw} ({why}). `bench ui` serves local stores (sqlite:///PATH, the "
                f"default ./mlflow.db); start that server, or pass the SQLite store `bench run` wrote."
            )
        raise BenchError(
            f"The tracking store {raw} is already an MLflow server: open {raw.rstrip('/')}/#/experiments in a "
            f"browser. `bench ui` serves local stores (sqlite:///PATH, the default ./mlflow.db)."
        )
    path = sqlite_path(raw)
    if path is not None and not path.is_file():
        raise BenchError(
            f"No MLflow store at {path}: run `bench run` first (it creates the store), or pass the store "
            f"`bench run` used with --tracking-uri sqlite:////ABSOLUTE/PATH/mlflow.db."
        )
    return resolve_tracking_uri(raw, existing=True)


def artifact_locations(tracking_uri: str) -> tuple[str | None, str]:
    """(``--default-artifact-root``, ``--artifacts-destination``) as file URIs.

    A SQLite store keeps its artifacts in ``<db dir>/mlartifacts`` (``bench.track.tracking.setup_experiment``
    pins the experiments there); for other stores MLflow's defaults apply, resolved against the
    caller's directory (the server itself runs in a private directory)."""
    path = sqlite_path(tracking_uri)
    if path is not None:
        root = (path.parent / "mlartifacts").as_uri()
        return root, root
    return None, (Path.cwd() / "mlartifacts").as_uri()


def find_experiment(tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``; a BenchError naming the experiments there when it is unknown."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    configure_environment()
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None and exp.lifecycle_stage != "deleted":
        return exp.experiment_id
    if exp is not None:
        raise BenchError(f"The experiment '{name}' in {tracking_uri} is deleted. `bench run -e '{name}'` restores it, "
                         f"or `mlflow experiments restore --experiment-id {exp.experiment_id}`.")
    names = [e.name for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    others = [n for n in names if n != "Default"]
    if not others:
        raise BenchError(f"The store {tracking_uri} has no experiment '{name}' yet: run `bench run` first"
                         f"{'' if name == DEFAULT_EXPERIMENT else f' (with -e {name!r})'}.")
    raise BenchError(f"Unknown experiment '{name}' in {tracking_uri}. Experiments there: "
                     f"{', '.join(repr(n) for n in names)}. Pass one with --experiment NAME.")


# -- host and port -----------------------------------------------------------------------------

def check_host(host: str, explicit: bool) -> str | None:
    """Refuse a non-loopback host unless it was given explicitly; then return a warning to print."""
    if is_loopback(host):
        return None
    if not explicit:
        raise BenchError(
            f"Refusing to bind the MLflow UI to {host}: that exposes every run to the network, and the UI "
            f"lets anyone who reaches it edit and delete runs. Pass --host {host} on the command line to mean it."
        )
    where = f"{host} (every interface)" if host in ("0.0.0.0", "::") else host
    return (f"Warning: the MLflow UI is exposed on {where}: anyone who can reach this port can read, edit and "
            f"delete runs (MLflow has no login by default). Prefer the default 127.0.0.1 with an SSH tunnel.")


def url_host(host: str) -> str:
    """Where a browser on this machine reaches a server bound to ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (same SO_REUSEADDR semantics as uvicorn)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BenchError(f"Cannot resolve --host {host}: {exc}.") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError:
            return False
    return True


def choose_port(host: str, port: int, attempts: int = PORT_ATTEMPTS) -> int:
    """``port`` if free, else the next free one above it."""
    for candidate in range(port, min(port + attempts, 65536)):
        if port_is_free(host, candidate):
            return candidate
    raise BenchError(f"No free port in {port}-{min(port + attempts, 65536) - 1} on {host}: pass another with --port.")


# -- the server ----------------------------------------------------------------------------------

def mlflow_command() -> list[str]:
    """The venv's ``mlflow`` script when present, else ``python -m mlflow``."""
    script = shutil.which("mlflow", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "mlflow"]


def server_command(tracking_uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    root, destination = artifact_locations(tracking_uri)
    cmd = [*mlflow_command(), "server", "--backend-store-uri", tracking_uri, "--host", host, "--port", str(port),
           "--workers", str(workers), "--serve-artifacts", "--artifacts-destination", destination]
    if root:
        cmd += ["--default-artifact-root", root]
    return cmd


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _DROPPED_ENV}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job runner: 2 processes instead of 11
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # the server (and the uvicorn worker it starts with `python -m`) must not import from the cwd:
    # from a checkout, the top-level `datasets/` folder would shadow Hugging Face's `datasets`
    env["PYTHONSAFEPATH"] = "1"
    return env


def _die_with_parent_hook():
    """A preexec_fn asking Linux to SIGTERM the server when the thread that started it dies
    (``bench ui`` killed with SIGKILL leaves no orphan server). Only while single-threaded:
    a preexec_fn is unsafe in a process with threads."""
    if sys.platform != "linux" or threading.active_count() != 1:
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    sigterm = int(signal.SIGTERM)

    def hook() -> None:  # runs in the child between fork and exec: no imports, no allocation-heavy work
        prctl(1, sigterm)  # PR_SET_PDEATHSIG

    return hook


def stop_processes(procs, timeout: float = 5.0) -> None:
    """SIGTERM to each ``psutil.Process`` still running, then SIGKILL to those left after ``timeout``."""
    import psutil

    def signal_all(alive, send):
        for p in alive:
            try:
                send(p)
            except psutil.NoSuchProcess:
                pass
        return psutil.wait_procs(alive, timeout=timeout)[1]

    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    alive = signal_all(alive, lambda p: p.terminate())
    signal_all(alive, lambda p: p.kill())


@dataclass
class UIServer:
    """A running ``mlflow server``; stop it with :meth:`stop` (or use it as a context manager)."""

    proc: subprocess.Popen
    host: str
    port: int
    tracking_uri: str
    workdir: Path
    started: float = field(default_factory=time.monotonic)
    ready_seconds: float | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}"

    def runs_url(self, experiment_id: str) -> str:
        """The runs table (``#/experiments/<id>`` alone opens the GenAI traces overview)."""
        return f"{self.base_url}/#/experiments/{experiment_id}/runs"

    def trials_url(self, experiment_id: str, order_by: str = "metrics.`avg_gap`") -> str:
        """The runs table sorted by a metric: MLflow nests child runs under their (collapsed) parent
        only when sorting by start time, so this lists every trial as its own row, best first."""
        return f"{self.runs_url(experiment_id)}?orderByKey={quote(order_by)}&orderByAsc=true"

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.rstrip().splitlines()[-lines:]) or "(the server printed nothing)"

    def _failure(self, what: str) -> BenchError:
        return BenchError(f"{what}\n  command: {' '.join(self.proc.args)}\n  server log ({self.log_path}), last lines:\n"
                          + "\n".join(f"    {line}" for line in self.log_tail().splitlines()))

    def health(self, timeout: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=timeout) as resp:
                return resp.status == 200 and resp.read().strip() == b"OK"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Poll ``GET /health`` until it answers OK; returns the seconds since the start."""
        deadline = self.started + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self._failure(f"The MLflow server exited (code {code}) before answering on {self.base_url}.")
            # still running after the answer: it came from our server, not from one that took the port
            if self.health() and self.proc.poll() is None:
                self.ready_seconds = time.monotonic() - self.started
                return self.ready_seconds
            if time.monotonic() > deadline:
                raise self._failure(f"The MLflow server did not answer {self.base_url}/health within {timeout:.0f} s.")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        """The server process and its descendants."""
        import psutil

        try:
            parent = psutil.Process(self.proc.pid)
            return [parent.pid, *(c.pid for c in parent.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to ``mlflow server`` (it stops its worker), then whatever is left of the tree."""
        import psutil

        try:
            tree = [psutil.Process(p) for p in self.pids()]
        except psutil.NoSuchProcess:
            tree = []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        stop_processes(tree)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> UIServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if exc[0] is None:
            self.cleanup()


def start_server(tracking_uri: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, workers: int = 1) -> UIServer:
    """Start ``mlflow server`` on the store (does not wait: call :meth:`UIServer.wait_ready`).

    It runs in a private directory (which also holds ``server.log``), in its own session."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    cmd = server_command(tracking_uri, host, port, workers)
    preexec = _die_with_parent_hook()
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, env=server_env(), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec)
    return UIServer(proc=proc, host=host, port=port, tracking_uri=tracking_uri, workdir=workdir)


__all__ = ["UIServer", "start_server", "resolve_ui_store", "find_experiment", "choose_port", "check_host",
           "port_is_free", "server_command", "server_env", "artifact_locations", "DEFAULT_HOST", "DEFAULT_PORT"]
