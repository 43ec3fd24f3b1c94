"""Where results are kept: the MLflow tracking store a command writes or reads."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from bench.core.errors import BenchError


def resolve_tracking_uri(uri: str | None, writable: bool = True) -> str:
    """The MLflow store: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///$PWD/mlflow.db``.
    Readers (``bench compare``, ``bench ui``) pass ``writable=False``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not path.is_absolute():
            path = Path.cwd() / path
        if not path.parent.is_dir():
            raise BenchError(f"Tracking store {uri}: the directory {path.parent} does not exist. Create it or pass another --tracking-uri.")
        if writable and not os.access(path.parent, os.W_OK):
            raise BenchError(f"Tracking store {uri}: the directory {path.parent} is not writable.")
        return f"sqlite:///{path}"
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
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
    if parsed.scheme in ("file", "") or parsed.scheme.startswith(("postgresql", "mysql", "databricks")):
        return uri
    raise BenchError(f"Unsupported tracking URI '{uri}': use sqlite:///PATH, http(s)://HOST:PORT or another MLflow store URI.")


