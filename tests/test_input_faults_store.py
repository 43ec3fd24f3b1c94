"""Bad inputs around the store and the run's files, each refused with one line and exit status 2
before any work (docs/reliability.md): ``bench compare --plot`` with an extension the plot cannot be
written in (and a path without one, which gets ``.png``); a tracking store file that is not an SQLite
database (``run``, ``compare``, ``ui``) or, for the readers, not an MLflow store; an ``indices:FILE``
index too large for int64; an ``--original`` whose weights are finite but whose outputs overflow.

One module-scoped store: a one-epoch ``bench run`` of ft (local executor, no attacks) written into
an empty file, which SQLite and MLflow take as a new store."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUICK = ["--methods", "ft", "--executor", "local", "--attacks", "", "-r", "epochs=1"]


@pytest.fixture(autouse=True)
def _no_env_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(root, uri) of a store holding one finished `bench run`, created in an empty file."""
    from bench.cli import main

    root = tmp_path_factory.mktemp("store")
    db = root / "mlflow.db"
    db.touch()  # an empty file is a new SQLite database
    res = CliRunner().invoke(main, ["run", *QUICK, "--cache-dir", str(root / "cache"), "--tracking-uri",
                                    f"sqlite:///{db}", "-q"], env={"MLFLOW_TRACKING_URI": None})
    assert res.exit_code == 0, (res.output, res.exception)
    return root, f"sqlite:///{db}"


def refused(proc, pattern: str) -> None:
    """Exit status 2, ``Error: ...`` matching ``pattern`` on one line of stderr, no traceback."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, (proc.returncode, out)
    assert "Traceback" not in out, out
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1 and re.search(pattern, lines[0]), (pattern, proc.stderr)


# -- bench compare --plot --------------------------------------------------------------------------

@pytest.mark.xdist_group("input_faults_store")  # one worker builds the store
def test_plot_with_an_unsupported_extension_is_refused_before_the_store_is_read(store, tmp_path, invoke_bench):
    root, uri = store
    proc = invoke_bench("compare", "--tracking-uri", uri, "--plot", str(tmp_path / "p.txt"), cwd=tmp_path)
    refused(proc, r"--plot .*p\.txt: cannot write the plot as '\.txt'; expected a file ending in \.png, \.pdf, "
                  r"\.svg.*Pass e\.g\. --plot .*p\.png\.")
    assert proc.stdout == ""  # no table: refused before the comparison
    assert not list(tmp_path.iterdir())


@pytest.mark.xdist_group("input_faults_store")  # one worker builds the store
@pytest.mark.parametrize("where,pattern", [
    ("afile/p.png", r"Bad --plot .*afile/p\.png: cannot write there \(.*afile is a file, not a directory\)"),
    ("/dev/null", r"--plot /dev/null: it is not a regular file.*or --no-plot to write none"),
    (".png", r"--plot \.png: names an extension, not a file\. Pass e\.g\. --plot pareto\.png"),
    ("x" * 300 + ".png", r"its file name is 304 bytes long, over the 255"),
    ("plots/", r"Bad --plot .*plots/: it names a directory"),
])
def test_plot_where_it_cannot_be_written_is_refused_before_the_store_is_read(store, tmp_path, invoke_bench, where,
                                                                             pattern):
    """Each printed the table, then a raw FileExistsError/FileNotFoundError/OSError traceback (exit
    1), or wrote /dev/null.png and .png.png."""
    root, uri = store
    (tmp_path / "afile").write_text("x")
    proc = invoke_bench("compare", "--tracking-uri", uri, "--plot", where, cwd=tmp_path)
    refused(proc, pattern)
    assert proc.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.xdist_group("input_faults_store")  # one worker builds the store
def test_plot_without_extension_is_written_and_logged_as_png(store, tmp_path, invoke_bench):
    root, uri = store
    proc = invoke_bench("compare", "--tracking-uri", uri, "--plot", str(tmp_path / "p"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / "p.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and not (tmp_path / "p").exists()
    assert f"written to {png.resolve()}\n" in proc.stderr
    assert "warning" not in proc.stderr and "logged to run" in proc.stderr, proc.stderr


@pytest.mark.xdist_group("input_faults_store")  # one worker builds the store
def test_plot_as_pdf_logs_a_png_artifact(store, tmp_path, invoke_bench):
    root, uri = store
    proc = invoke_bench("compare", "--tracking-uri", uri, "--plot", str(tmp_path / "p.pdf"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.pdf").read_bytes()[:5] == b"%PDF-"
    (artifact,) = (root / "mlartifacts").rglob("pareto.png")
    assert artifact.read_bytes()[:8] == PNG_MAGIC  # the MLflow UI shows a PNG, never PDF bytes named .png


# -- the tracking store file -----------------------------------------------------------------------

def _text_file(path: Path) -> Path:
    path.write_text("these are notes, not a database\n")
    return path


def _other_sqlite(path: Path) -> Path:
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE notes (x)")
    con.close()
    return path


def _tables(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


@pytest.mark.parametrize("command", [["run", "--dry-run", *QUICK], ["run", *QUICK], ["compare"], ["ui"]],
                         ids=["dry-run", "run", "compare", "ui"])
def test_a_store_that_is_not_sqlite_is_refused(command, tmp_path, invoke_bench):
    db = _text_file(tmp_path / "garbage.db")
    before = db.read_bytes()
    proc = invoke_bench(*command, "--tracking-uri", f"sqlite:///{db}",
                        *(["--cache-dir", str(tmp_path / "cache")] if command[0] == "run" else []), cwd=tmp_path)
    refused(proc, rf"Tracking store sqlite:///{re.escape(str(db))}: {re.escape(str(db))} is not an SQLite database "
                  r"\(it does not start with 'SQLite format 3'\); bench leaves it unchanged\. Pass --tracking-uri")
    assert "plan is valid" not in proc.stdout and "trial(s)" not in proc.stdout
    assert db.read_bytes() == before
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.safetensors"))


@pytest.mark.parametrize("command", [["run", "--dry-run", *QUICK], ["compare"], ["ui"]], ids=["dry-run", "compare", "ui"])
def test_a_store_of_another_mlflow_schema_is_refused(command, store, tmp_path, invoke_bench):
    """A store written by an older or newer MLflow: every command raised MLflow's traceback ("run
    mlflow db upgrade", for a newer store too) after loading the data, and --dry-run called the plan
    valid (hostile-input audit, 2026-12-07). One line, exit 2, the advice that fits."""
    import shutil

    from bench.track.store import schema_revisions

    known, latest = schema_revisions()
    assert latest is not None and latest in known and len(known) > 10
    older = next(iter(sorted(known - {latest})))
    for schema, message in ((older, rf"written by an older MLflow \(schema {older}; MLflow .* reads {latest}\)\. Back it "
                                    r"up and upgrade it with `mlflow db upgrade sqlite:///"),
                            ("ffffffffffff", r"written by a newer MLflow \(schema ffffffffffff is unknown to MLflow .*: "
                                             r"open it with that MLflow version, or pass another --tracking-uri")):
        db = tmp_path / f"{schema}.db"
        shutil.copy(store[0] / "mlflow.db", db)
        con = sqlite3.connect(db)
        con.execute("UPDATE alembic_version SET version_num = ?", (schema,))
        con.commit()
        con.close()
        proc = invoke_bench(*command, "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
        refused(proc, message)
        assert "plan is valid" not in proc.stdout


def test_a_damaged_sqlite_file_is_refused(tmp_path, invoke_bench):
    db = tmp_path / "half.db"
    db.write_bytes(b"SQLite format 3\x00" + b"garbage" * 20)
    proc = invoke_bench("run", "--dry-run", *QUICK, "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
    refused(proc, r"half\.db is not a readable SQLite database \(file is not a database\)")


@pytest.mark.parametrize("command", ["compare", "ui"])
def test_readers_refuse_an_sqlite_database_that_is_not_an_mlflow_store(command, tmp_path, invoke_bench):
    db = _other_sqlite(tmp_path / "other.db")
    proc = invoke_bench(command, "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
    refused(proc, r"other\.db is an SQLite database but not an MLflow store \(no 'experiments' and 'runs' tables\); "
                  r"nothing was recorded there and it is left unchanged\. Pass --tracking-uri sqlite:///PATH of the "
                  r"store `bench run` wrote\.")
    assert _tables(db) == {"notes"}  # MLflow's tables were not created in it


@pytest.mark.parametrize("command", [["run", "--dry-run", *QUICK], ["run", *QUICK]], ids=["dry-run", "run"])
def test_writers_refuse_an_sqlite_database_of_something_else(command, tmp_path, invoke_bench):
    """bench run on another application's database added MLflow's 66 tables to it, exit 0."""
    db = _other_sqlite(tmp_path / "app.db")
    proc = invoke_bench(*command, "--tracking-uri", f"sqlite:///{db}", "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    refused(proc, r"app\.db is an SQLite database of something else \(tables notes\), not an MLflow store; MLflow would "
                  r"add its tables to it, so bench leaves it unchanged\.")
    assert _tables(db) == {"notes"}
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.safetensors"))


def test_a_store_left_with_a_hot_journal_is_not_refused(tmp_path, invoke_bench):
    """A writer killed mid-transaction leaves a journal that only a writer rolls back (a read-only look
    fails with "attempt to write a readonly database"): the store is a database, MLflow recovers it."""
    import subprocess
    import sys

    db = tmp_path / "mlflow.db"
    _other_sqlite(db)
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"con = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "con.execute('PRAGMA cache_size=1'); con.execute('BEGIN')\n"
        "for i in range(5000): con.execute('INSERT INTO notes VALUES (?)', ('x' * 200,))\n"
        "print('ready', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
    finally:
        writer.kill()
        writer.wait()
    assert (tmp_path / "mlflow.db-journal").stat().st_size > 0
    proc = invoke_bench("run", "--dry-run", *QUICK, "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
    assert proc.returncode == 0 and "plan is valid" in proc.stdout, proc.stdout + proc.stderr


def test_compare_refuses_an_empty_file(tmp_path, invoke_bench):
    db = tmp_path / "empty.db"
    db.touch()
    proc = invoke_bench("compare", "--tracking-uri", f"sqlite:///{db}", cwd=tmp_path)
    refused(proc, r"empty\.db is empty; nothing was recorded there")
    assert db.stat().st_size == 0


# -- forget indices and --original -----------------------------------------------------------------

@pytest.mark.parametrize("value", ["99999999999999999999999", "-99999999999999999999999"])
def test_an_index_beyond_int64_is_out_of_range(value, tmp_path, invoke_bench):
    path = tmp_path / "forget.txt"
    path.write_text(f"3\n{value}\n")
    proc = invoke_bench("run", *QUICK, "-f", f"indices:{path}", "--cache-dir", str(tmp_path / "cache"),
                        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
    refused(proc, rf"Forget request 'indices:.*forget\.txt': indices out of range \[{value}\]; the training set has "
                  r"indices 0\.\.1436\.")
    assert "trial(s)" not in proc.stdout


def test_an_original_whose_outputs_overflow_is_refused_at_plan_time(tmp_path, invoke_bench):
    import torch
    from safetensors.torch import save_file

    from bench.nn.nets import MLP

    torch.manual_seed(0)
    state = {k: (v * 1e30).contiguous() for k, v in MLP(64, (256, 256), 10).state_dict().items()}
    assert all(bool(torch.isfinite(v).all()) for v in state.values())  # finite weights, overflowing outputs
    path = tmp_path / "huge.safetensors"
    save_file(state, str(path))
    proc = invoke_bench("run", *QUICK, "--original", str(path), "--cache-dir", str(tmp_path / "cache"),
                        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
    refused(proc, rf"--original {re.escape(str(path))} \(for --model mlp on dataset 'digits'\): its outputs on the test "
                  r"set are not finite \(NaN logits for 360 of 360 test rows\), though its weights are \(largest "
                  r"magnitude 1\.\d+e\+29\); expected a trained model with finite outputs\.")
    assert "test accuracy" not in proc.stdout + proc.stderr and "trial(s)" not in proc.stdout
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


def test_a_database_store_needs_its_server_and_its_password_is_not_printed(monkeypatch):
    """With its driver installed (stood in here: none is), a database store whose server does not
    answer is one line before any work; one that answers is taken; the password never shows."""
    import socket

    from sqlalchemy.dialects.mssql.pyodbc import MSDialect_pyodbc

    from bench.core.errors import BenchError
    from bench.track.store import resolve_tracking_uri, shown_uri

    monkeypatch.setattr(MSDialect_pyodbc, "import_dbapi", classmethod(lambda cls: object()))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with pytest.raises(BenchError, match=rf"Tracking store mssql://u:\*\*\*@127\.0\.0\.1:{port}/db: no database server "
                                         rf"answers at 127\.0\.0\.1:{port}") as info:
        resolve_tracking_uri(f"mssql://u:secret@127.0.0.1:{port}/db")
    assert "secret" not in str(info.value)
    server.listen()
    try:
        assert resolve_tracking_uri(f"mssql://u:secret@127.0.0.1:{port}/db") == f"mssql://u:secret@127.0.0.1:{port}/db"
    finally:
        server.close()
    assert shown_uri("postgresql://me:pa:ss@h:5432/db") == "postgresql://me:***@h:5432/db"
    assert shown_uri("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"
    assert resolve_tracking_uri("databricks") == "databricks"  # MLflow's form without '://' (refused as a path)


def test_ui_on_a_server_address_where_nothing_listens_says_so(tmp_path, invoke_bench):
    """It said the address "is already an MLflow server: open ..." (hostile audit, 2026-12-07)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = invoke_bench("ui", "--tracking-uri", f"http://127.0.0.1:{port}", cwd=tmp_path)
    refused(proc, rf"No MLflow server answers at http://127\.0\.0\.1:{port} ")
    assert "already an MLflow server" not in proc.stderr


def test_a_default_store_under_a_folder_that_is_not_utf8_is_one_line(tmp_path, invoke_bench):
    """The options were checked for bytes that are not UTF-8, the resolved default store was not: a
    traceback after loading the data (diff review, 2026-12-07)."""
    import os

    folder = tmp_path / os.fsdecode(b"u\xffdir")
    folder.mkdir()
    proc = invoke_bench("run", "--dry-run", *QUICK, "--cache-dir", str(tmp_path / "cache"), cwd=folder)
    refused(proc, r"Bad --tracking-uri 'sqlite:///.*u\\xffdir/mlflow\.db' \(as resolved here, from the defaults or the environment\): it holds a byte that "
                  r"is not UTF-8")
