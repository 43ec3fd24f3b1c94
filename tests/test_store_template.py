"""New SQLite MLflow stores are copies of a template MLflow created for the same version, with the
Default experiment's row written as MLflow would (bench/track/store.py, ``new_sqlite_store``)."""

from __future__ import annotations

import sqlite3
import time

import pytest

from bench.track import store, tracking


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _rows(db, sql):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _schema(db):
    return _rows(db, "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")


def test_a_new_store_is_a_copy_of_mlflows_own_with_the_default_experiment_row_of_this_directory(here, monkeypatch):
    import mlflow.store.db.utils as db_utils
    from mlflow.tracking import MlflowClient

    # the template is made in one working directory, the copy in another: the copy's Default row must
    # be this directory's (MLflow derives it from the working directory), with this creation's times
    (here / "a").mkdir()
    (here / "b").mkdir()
    monkeypatch.chdir(here / "a")
    first = here / "first.db"
    tracking.setup_experiment(f"sqlite:///{first}", "unlearning-bench")  # MLflow creates it, kept as template
    template = store.store_template()
    assert template is not None and template.is_file() and str(template).startswith(str(here / "xdg"))

    def no_creation(*a, **k):
        raise AssertionError("MLflow created the tables of a store that should be a copy of the template")

    monkeypatch.setattr(db_utils, "_initialize_tables", no_creation)
    monkeypatch.chdir(here / "b")
    second = here / "second.db"
    before = int(time.time() * 1000)
    eid = tracking.setup_experiment(f"sqlite:///{second}", "unlearning-bench")
    assert _schema(second) == _schema(first)
    assert _rows(second, "SELECT * FROM alembic_version") == _rows(first, "SELECT * FROM alembic_version")
    cols = "experiment_id, name, lifecycle_stage, workspace"
    assert _rows(second, f"SELECT {cols} FROM experiments WHERE experiment_id = 0") == \
        _rows(first, f"SELECT {cols} FROM experiments WHERE experiment_id = 0")
    assert _rows(first, "SELECT artifact_location FROM experiments WHERE experiment_id = 0") == \
        [(str(here / "a" / "mlruns" / "0"),)]  # what MLflow itself wrote there
    assert _rows(second, "SELECT artifact_location FROM experiments WHERE experiment_id = 0") == \
        [(str(here / "b" / "mlruns" / "0"),)]
    made, updated = _rows(second, "SELECT creation_time, last_update_time FROM experiments WHERE experiment_id = 0")[0]
    assert made == updated >= before
    client = MlflowClient(f"sqlite:///{second}")
    run = client.create_run(eid)
    client.log_metric(run.info.run_id, "forget_acc", 0.25)
    assert client.get_run(run.info.run_id).data.metrics == {"forget_acc": 0.25}
    assert sorted(e.name for e in client.search_experiments()) == ["Default", "unlearning-bench"]
    # the template itself is untouched: still one experiment and no run
    assert _rows(template, "SELECT COUNT(*) FROM experiments") == [(1,)] and _rows(template, "SELECT COUNT(*) FROM runs") == [(0,)]


@pytest.mark.parametrize("damage", ["garbage", "used", *(pytest.param(d, marks=pytest.mark.slow) for d in ("schema", "torn"))])
def test_a_template_that_is_not_an_empty_store_of_this_version_is_replaced_by_mlflows_creation(here, damage):
    import sqlite3

    from mlflow.tracking import MlflowClient

    template = store.store_template()
    template.parent.mkdir(parents=True)
    if damage == "garbage":
        template.write_bytes(b"not a database")
    elif damage in ("schema", "torn"):  # an empty store, then another revision under this version's name, or a
        fresh = here / "fresh.db"  # page of its tables' b-tree overwritten (both were copied into every new store)
        tracking.setup_experiment(f"sqlite:///{fresh}", "x")
        con = sqlite3.connect(fresh)
        with con:
            con.execute("DELETE FROM experiments WHERE experiment_id != 0")
            if damage == "schema":
                con.execute("UPDATE alembic_version SET version_num = '0000aaaa0000'")
        (size,), (root,) = con.execute("PRAGMA page_size").fetchone(), con.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'metrics'").fetchone()
        con.close()
        data = bytearray(fresh.read_bytes())
        if damage == "torn":  # the metrics table's root page: the schema and the experiments still read
            data[(root - 1) * size:(root - 1) * size + 100] = b"\xff" * 100
        template.write_bytes(bytes(data))
    else:  # a store with a run in it must not be copied into a new one
        used = here / "used.db"
        eid = tracking.setup_experiment(f"sqlite:///{used}", "x")
        MlflowClient(f"sqlite:///{used}").create_run(eid)
        template.write_bytes(used.read_bytes())
    db = here / "new.db"
    eid = tracking.setup_experiment(f"sqlite:///{db}", "unlearning-bench")
    client = MlflowClient(f"sqlite:///{db}")
    assert sorted(e.name for e in client.search_experiments()) == ["Default", "unlearning-bench"]
    assert client.search_runs([eid]) == []
    run = client.create_run(eid)  # the new store takes what a trial writes
    client.log_metric(run.info.run_id, "forget_acc", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"forget_acc": 0.5}
    assert _rows(template, "SELECT COUNT(*) FROM runs") == [(0,)]  # replaced by MLflow's new store
    assert not list(here.glob("new.db.new-*"))


@pytest.mark.slow  # MLflow's own creation of a store: 2 s
def test_mlflows_creation_happens_beside_the_store_and_lands_whole(here, monkeypatch):
    """Without a template MLflow migrates a new store step by step (16 s on a loaded machine): a
    command reading it meanwhile saw an older schema and was told to run `mlflow db upgrade`
    (params audit, 2026-12-07). The store appears only once MLflow has finished."""
    import mlflow.store.db.utils as db_utils

    db = here / "mlflow.db"
    real = db_utils._initialize_tables
    seen = []

    def initialize(engine, *a, **k):
        seen.append((db.exists(), str(engine.url)))
        return real(engine, *a, **k)

    monkeypatch.setattr(store, "store_template", lambda: None)
    monkeypatch.setattr(db_utils, "_initialize_tables", initialize)
    tracking.setup_experiment(f"sqlite:///{db}", "unlearning-bench")
    assert len(seen) == 1 and seen[0][0] is False and "mlflow.db.new-" in seen[0][1], seen
    known, latest = store.schema_revisions()
    assert _rows(db, "SELECT version_num FROM alembic_version") == [(latest,)]
    assert not list(here.glob("mlflow.db.new-*"))
