"""Where results are kept: the MLflow tracking store a command writes or reads."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from bench.core.errors import BenchError
from bench.core.fs import probe_write

#: Database stores MLflow opens through SQLAlchemy (a ``+driver`` suffix is allowed).
DB_SCHEMES = ("postgresql", "mysql", "mssql")
#: Every tracking URI scheme we accept, for the messages.
SCHEMES = "sqlite:///PATH, http(s)://HOST:PORT, postgresql://, mysql://, mssql:// or databricks"


def _sqlite(uri: str, writable: bool) -> str:
    raw = uri[len("sqlite:///"):]
    if not raw:
        raise BenchError(f"Tracking store '{uri}' names no file: expected sqlite:///PATH, e.g. sqlite:///{Path.cwd() / 'mlflow.db'}.")
    path = Path(raw)
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.parent.is_dir():
        raise BenchError(f"Tracking store {uri}: the directory {path.parent} does not exist. Create it or pass another --tracking-uri.")
    if path.exists() and not path.is_file():
        raise BenchError(f"Tracking store {uri}: {path} is not a file (a directory?). Pass sqlite:///PATH of a database file.")
    if writable and not path.exists():
        try:  # a real write, not permission bits: a read-only filesystem or a root-owned directory
            probe_write(path.parent)
        except OSError as exc:
            raise BenchError(f"Tracking store {uri}: the directory {path.parent} is not writable ({exc.strerror or exc}). "
                             f"Pass another --tracking-uri, e.g. sqlite:///{Path.home() / 'mlflow.db'}.") from None
    elif writable and not os.access(path, os.W_OK):
        raise BenchError(f"Tracking store {uri}: the database file {path} is not writable. Pass another --tracking-uri.")
    return f"sqlite:///{path}"


def resolve_tracking_uri(uri: str | None, writable: bool = True) -> str:
    """The MLflow store: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///$PWD/mlflow.db``.
    Readers (``bench compare``, ``bench ui``) pass ``writable=False``. Only stores we can use are
    accepted: SQLite (checked: its directory exists and takes a file), an MLflow server (it must
    answer), a database URI, Databricks. A plain path, ``file:`` (MLflow's file store is in
    maintenance mode and refuses to open) or anything else is refused, suggesting sqlite:///PATH."""
    given = uri if uri is not None else (os.environ.get("MLFLOW_TRACKING_URI") or None)
    if given is not None and not given.strip():
        raise BenchError(f"Empty --tracking-uri: expected {SCHEMES}; drop it to use sqlite:///{Path.cwd() / 'mlflow.db'}.")
    uri = given or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        return _sqlite(uri, writable)
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        if not parsed.netloc:
            raise BenchError(f"Bad tracking URI '{uri}': expected {scheme}://HOST:PORT of an MLflow server.")
        import urllib.request

        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as resp:
                resp.read()
        except Exception as exc:
            raise BenchError(
                f"MLflow tracking server {uri} does not answer ({exc}). Start it (mlflow server --host 127.0.0.1 ...) "
                f"or drop --tracking-uri to use a local SQLite store."
            ) from None
        return uri
    if scheme.partition("+")[0] in DB_SCHEMES and parsed.netloc:
        return uri
    if scheme in ("databricks", "databricks-uc"):
        return uri
    local = len(scheme) <= 1  # no scheme, or a Windows drive letter
    if local or scheme == "file":
        path = Path(parsed.path if scheme == "file" else uri).expanduser().absolute()
        db = path if path.suffix == ".db" else (path / "mlflow.db" if path.is_dir() else path.with_suffix(".db"))
        what = "a file: URI (MLflow's file store is in maintenance mode and refuses new runs)" if scheme == "file" else "a plain path"
        raise BenchError(f"Unsupported tracking URI '{uri}': {what}; expected {SCHEMES}. "
                         f"For a local store pass --tracking-uri sqlite:///{db}.")
    if scheme == "sqlite":
        raise BenchError(f"Bad tracking URI '{uri}': a SQLite store is sqlite:///PATH (three slashes), e.g. sqlite:///{Path.cwd() / 'mlflow.db'}.")
    raise BenchError(f"Unsupported tracking URI '{uri}': expected {SCHEMES} (e.g. sqlite:///{Path.cwd() / 'mlflow.db'}).")
