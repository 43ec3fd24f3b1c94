"""Where results are kept: the MLflow tracking store a command writes or reads."""

from __future__ import annotations

import contextlib
import functools
import os
import time
from pathlib import Path
from urllib.parse import urlparse

from bench.core.errors import BenchError
from bench.core.fs import probe_write

#: Database stores MLflow opens through SQLAlchemy (a ``+driver`` suffix is allowed).
DB_SCHEMES = ("postgresql", "mysql", "mssql")
#: Every tracking URI scheme we accept, for the messages.
SCHEMES = "sqlite:///PATH, http(s)://HOST:PORT, postgresql://, mysql://, mssql:// or databricks"


#: The first 16 bytes of every SQLite database file (an empty file is a new database to SQLite).
SQLITE_HEADER = b"SQLite format 3\x00"
#: Tables every MLflow tracking store has (a newer MLflow adds more, and migrates older stores).
MLFLOW_TABLES = ("experiments", "runs")


def _check_database(uri: str, path: Path, existing: bool) -> None:
    """Refuse a file that is not an SQLite database (SQLAlchemy would fail later with a traceback),
    and one that is not an MLflow store: for ``existing`` (readers: ``bench compare``, ``bench ui``)
    any such database, for writers one holding other tables (MLflow would create its own among
    them); an empty file or an empty database becomes a new store."""
    import sqlite3

    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise BenchError(f"Tracking store {uri}: cannot read {path} ({exc.strerror or exc}). "
                         f"Fix its permissions or pass another --tracking-uri.") from None
    other = "the store `bench run` wrote" if existing else "an MLflow SQLite store, or of a new file to create one"
    if head and head != SQLITE_HEADER:
        raise BenchError(f"Tracking store {uri}: {path} is not an SQLite database (it does not start with "
                         f"'SQLite format 3'); bench leaves it unchanged. Pass --tracking-uri sqlite:///PATH of {other}.")
    if not head and not existing:
        return  # an empty file: SQLite and MLflow make it a new store
    tables: set[str] = set()
    schema = None
    if head:
        try:  # read-only: nothing is created or changed
            con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
            try:
                tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "alembic_version" in tables:
                    row = con.execute("SELECT version_num FROM alembic_version").fetchone()
                    schema = str(row[0]) if row else None
            finally:
                con.close()
        except sqlite3.OperationalError:  # locked by a writer, or a hot journal that a writer rolls back first
            return
        except sqlite3.DatabaseError as exc:  # not a database after all, or damaged
            raise BenchError(f"Tracking store {uri}: {path} is not a readable SQLite database ({exc}). "
                             f"Pass --tracking-uri sqlite:///PATH of {other}.") from None
    if existing and not set(MLFLOW_TABLES) <= tables:
        what = "is empty" if not head else "is an SQLite database but not an MLflow store (no 'experiments' and 'runs' tables)"
        raise BenchError(f"Tracking store {uri}: {path} {what}; nothing was recorded there and it is left unchanged. "
                         f"Pass --tracking-uri sqlite:///PATH of the store `bench run` wrote.")
    if schema is not None and set(MLFLOW_TABLES) <= tables:
        _check_schema(uri, path, schema)
    if not existing and tables and not set(MLFLOW_TABLES) <= tables:  # a writer: MLflow would add its tables to it
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise BenchError(f"Tracking store {uri}: {path} is an SQLite database of something else (tables {shown}), not "
                         f"an MLflow store; MLflow would add its tables to it, so bench leaves it unchanged. Pass "
                         f"--tracking-uri sqlite:///PATH of {other}.")


@functools.lru_cache(maxsize=1)
def schema_revisions() -> tuple[frozenset[str], str | None]:
    """(every store schema revision the installed MLflow knows, its latest), read from the headers
    of its migration scripts (``mlflow/store/db_migrations/versions``): MLflow's own way to get them
    imports SQLAlchemy and Alembic, 2.4 s, for a check every run makes. (frozenset(), None) where
    the scripts are not found or the latest is not one revision: nothing is checked then."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("mlflow")
    if spec is None or spec.origin is None:
        return frozenset(), None
    known, parents = set(), set()
    for script in (Path(spec.origin).parent / "store" / "db_migrations" / "versions").glob("*.py"):
        text = script.read_text(errors="replace")
        rev = re.search(r"^revision\s*=\s*[\"']([0-9a-zA-Z_]+)[\"']", text, re.M)
        down = re.search(r"^down_revision\s*=\s*(.+)$", text, re.M)
        if rev:
            known.add(rev.group(1))
            parents.update(re.findall(r"[\"']([0-9a-zA-Z_]+)[\"']", down.group(1)) if down else ())
    heads = known - parents
    return frozenset(known), (next(iter(heads)) if len(heads) == 1 else None)


def _check_schema(uri: str, path: Path, schema: str) -> None:
    """Refuse a store whose schema this MLflow does not read: MLflow raised it with a traceback after
    the data were loaded (an older schema) or gave the same "upgrade" advice for a newer one, and
    ``--dry-run`` called the plan valid (hostile-input audit, 2026-12-07)."""
    known, latest = schema_revisions()
    if latest is None or schema == latest:
        return
    from importlib.metadata import version

    mlflow = version("mlflow")
    if schema in known:
        raise BenchError(f"Tracking store {uri}: {path} was written by an older MLflow (schema {schema}; MLflow {mlflow} "
                         f"reads {latest}). Back it up and upgrade it with `mlflow db upgrade sqlite:///{path}`, or pass "
                         f"another --tracking-uri.")
    raise BenchError(f"Tracking store {uri}: {path} was written by a newer MLflow (schema {schema} is unknown to MLflow "
                     f"{mlflow}, which reads {latest}): open it with that MLflow version, or pass another --tracking-uri.")


def _sqlite(uri: str, writable: bool, existing: bool = False) -> str:
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
    if path.is_file():
        _check_database(uri, path, existing)
    if writable and not path.exists():
        try:  # a real write, not permission bits: a read-only filesystem or a root-owned directory
            probe_write(path.parent)
        except OSError as exc:
            raise BenchError(f"Tracking store {uri}: the directory {path.parent} is not writable ({exc.strerror or exc}). "
                             f"Pass another --tracking-uri, e.g. sqlite:///{Path.home() / 'mlflow.db'}.") from None
    elif writable and not os.access(path, os.W_OK):
        raise BenchError(f"Tracking store {uri}: the database file {path} is not writable. Pass another --tracking-uri.")
    return f"sqlite:///{path}"


def resolve_tracking_uri(uri: str | None, writable: bool = True, existing: bool = False) -> str:
    """The MLflow store: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///$PWD/mlflow.db``.
    ``bench compare`` passes ``writable=False``; readers that must never create a store (``bench
    compare``, ``bench ui``) pass ``existing=True``: an SQLite file there must hold MLflow's tables.
    Only stores we can use are accepted: SQLite (checked: its directory exists and takes a file, an
    existing file is an SQLite database), an MLflow server (it must answer), a database URI, Databricks. A plain path, ``file:`` (MLflow's file store is in
    maintenance mode and refuses to open) or anything else is refused, suggesting sqlite:///PATH."""
    given = uri if uri is not None else (os.environ.get("MLFLOW_TRACKING_URI") or None)
    try:
        return _resolve(given, writable, existing)
    except BenchError as exc:
        if given is None or given != os.environ.get("MLFLOW_TRACKING_URI"):
            raise
        # the CLI's --tracking-uri defaults to the variable: say where the value came from
        raise BenchError(f"{exc} (The store came from the environment variable MLFLOW_TRACKING_URI='{given}': "
                         f"correct or unset it, or pass --tracking-uri.)") from None


def server_silent(uri: str) -> str | None:
    """Why the MLflow server at ``uri`` (http(s)://HOST:PORT) does not answer its ``/health``
    endpoint within 5 s (refused, timed out, not HTTP), or None when it answers."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as resp:
            resp.read()
    except Exception as exc:  # noqa: BLE001 -- any failure is the answer: said in one line by the callers
        return str(exc)
    return None


#: The port of a database server when the URI names none.
DB_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


def shown_uri(uri: str) -> str:
    """``uri`` with its password, if any, as ``***``: what the progress lines print
    (``postgresql://u:SECRET@host/db`` reached the terminal and the logs)."""
    import re

    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@]*@", r"\1:***@", uri, count=1)


def masked_options(options: dict) -> dict:
    """Options as recorded with a run (params, ``experiment.json``, ``resumed/*.json``): the
    tracking URI's password as ``***`` (a database store's ``USER:PASSWORD@`` was recorded)."""
    uri = options.get("tracking_uri")
    return {**options, "tracking_uri": shown_uri(uri)} if isinstance(uri, str) else dict(options)


def _check_database_server(uri: str) -> None:
    """A database store (postgresql://, mysql://, mssql://): SQLAlchemy's driver for it is installed
    and its server takes a TCP connection, before any work. Both failed inside MLflow with a
    100-line traceback after the data were loaded (hostile-input audit, 2026-12-07)."""
    import socket

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = shown_uri(uri)
    try:
        url = make_url(uri)
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise BenchError(f"Bad tracking URI '{shown}': {exc}. Expected e.g. postgresql://USER:PASSWORD@HOST:PORT/DB.") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise BenchError(f"Tracking store {shown}: its database driver is not installed ({exc}). Install it in this "
                         f"environment (psycopg for postgresql://, mysqlclient for mysql://, pyodbc for mssql://; or "
                         f"name another driver: postgresql+psycopg2://, mysql+pymysql://).") from None
    if url.host:
        port = url.port or DB_PORTS[url.get_backend_name()]
        try:
            socket.create_connection((url.host, port), timeout=5).close()
        except OSError as exc:
            raise BenchError(f"Tracking store {shown}: no database server answers at {url.host}:{port} "
                             f"({exc.strerror or exc}). Start it, or drop --tracking-uri to use a local SQLite "
                             f"store.") from None


def _resolve(given: str | None, writable: bool, existing: bool) -> str:
    if given is not None and not given.strip():
        raise BenchError(f"Empty --tracking-uri: expected {SCHEMES}; drop it to use sqlite:///{Path.cwd() / 'mlflow.db'}.")
    uri = given or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        return _sqlite(uri, writable, existing)
    try:
        parsed = urlparse(uri)
        parsed.port  # noqa: B018 -- parses the port: a bad one raises here, not inside MLflow
    except ValueError as exc:  # 'postgresql://u:p@[::1/db': a raw "Invalid IPv6 URL" traceback (diff review)
        raise BenchError(f"Bad tracking URI '{shown_uri(uri)}': {exc}. Expected {SCHEMES}.") from None
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        if not parsed.netloc:
            raise BenchError(f"Bad tracking URI '{uri}': expected {scheme}://HOST:PORT of an MLflow server.")
        why = server_silent(uri)
        if why is not None:
            raise BenchError(
                f"MLflow tracking server {uri} does not answer ({why}). Start it (mlflow server --host 127.0.0.1 ...) "
                f"or drop --tracking-uri to use a local SQLite store."
            )
        return uri
    if scheme.partition("+")[0] in DB_SCHEMES and parsed.netloc:
        _check_database_server(uri)
        return uri
    if scheme in ("databricks", "databricks-uc") or uri in ("databricks", "databricks-uc"):  # MLflow's own forms
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


# -- new SQLite stores from a template ------------------------------------------------------------
# MLflow creates a new SQLite store by creating its tables and running every schema migration
# (about 2.5 s on the 2-core machine, in every first run on a store: each test of the suite, each
# new project). The result is the same file for one MLflow version but for one row: the "Default"
# experiment (id 0), whose artifact location MLflow derives from the working directory and whose
# times are the creation's. So the first store MLflow creates for a version is kept as a template
# in bench's cache directory, and later new stores are copies of it with that row written as MLflow
# would write it (copy and update: a few milliseconds). Anything unexpected (another artifact root,
# MLflow workspaces, a template that is not a SQLite store of this version) falls back to MLflow.


def store_template() -> Path | None:
    """The empty store kept for this MLflow version (``<cache>/mlflow-schema/``), or None where
    MLflow's own creation must be used (workspaces or a server artifact root configured)."""
    try:
        import mlflow
        from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
        from mlflow.tracking._tracking_service.utils import _SERVER_ARTIFACT_ROOT_ENV_VAR
    except ImportError:
        return None
    if MLFLOW_ENABLE_WORKSPACES.get() or os.environ.get(_SERVER_ARTIFACT_ROOT_ENV_VAR):
        return None
    from bench.core.cache import default_cache_dir

    return default_cache_dir() / "mlflow-schema" / f"empty-mlflow-{mlflow.__version__}.db"


def _default_experiment_row(path: Path) -> None:
    """Write the Default experiment's artifact location and times as MLflow's own creation of a
    store in this working directory would (``SqlAlchemyStore._create_default_experiment``)."""
    import sqlite3

    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.utils.uri import append_to_uri_path, resolve_uri_if_local

    from mlflow.store.db.utils import _get_latest_schema_revision

    location = str(append_to_uri_path(resolve_uri_if_local(DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH), "0"))
    now = int(time.time() * 1000)
    con = sqlite3.connect(path)
    try:
        # a damaged template (torn pages, another schema under this version's name) was copied into every
        # new store: SQLite's own check and MLflow's schema revision first (found in review, 2026-12-07)
        if con.execute("PRAGMA quick_check").fetchone() != ("ok",):
            raise ValueError("a damaged SQLite file")
        if con.execute("SELECT version_num FROM alembic_version").fetchall() != [(_get_latest_schema_revision(),)]:
            raise ValueError("another MLflow schema")
        with con:
            rows = con.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                               "WHERE experiment_id = 0 AND name = 'Default'", (location, now, now)).rowcount
            (count,) = con.execute("SELECT COUNT(*) FROM experiments").fetchone()
            (runs,) = con.execute("SELECT COUNT(*) FROM runs").fetchone()
        if rows != 1 or count != 1 or runs:
            raise ValueError("not an empty MLflow store")
    finally:
        con.close()


def new_sqlite_store(db: Path) -> None:
    """Create the SQLite store ``db`` if it is absent (and its directory exists): a copy of this MLflow
    version's template when there is one, else MLflow's own creation, kept as the template for the
    next new store (see above). Runs under ``tracking.store_lock``, so two processes never create the
    same store at once."""
    import shutil

    if db.exists() or not db.parent.is_dir():
        return

    template = store_template()
    if template is not None and template.is_file():
        tmp = db.with_name(f"{db.name}.new-{os.getpid()}")
        try:
            shutil.copyfile(template, tmp)
            _default_experiment_row(tmp)
            os.replace(tmp, db)
            return
        except Exception:  # an unreadable or foreign template: MLflow creates the store
            tmp.unlink(missing_ok=True)
    from mlflow.tracking import MlflowClient

    # built beside it and renamed into place: a command reading the store while MLflow migrated it
    # (16 s on a loaded machine) saw an older schema and was told to `mlflow db upgrade` (params audit)
    building = db.with_name(f"{db.name}.new-{os.getpid()}")
    try:
        client = MlflowClient(f"sqlite:///{building}")
        client.get_experiment("0")  # MLflow creates the tables and the Default experiment
        with contextlib.suppress(Exception):  # its connections to the file about to be renamed
            client._tracking_client.store.engine.dispose()
        os.replace(building, db)
    except BaseException:  # a full disk: no half-migrated store left for the next run to trip over
        building.unlink(missing_ok=True)
        raise
    if template is None:
        return
    tmp = template.with_name(f"{template.name}.new-{os.getpid()}")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(db, tmp)
        os.replace(tmp, template)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError:  # a read-only or full cache: every new store is MLflow's own creation
        with contextlib.suppress(OSError):  # a partial copy left on a full disk filled it (cache audit, 2026-12-07)
            tmp.unlink(missing_ok=True)
