"""Forget sets shared between runs: every trial logs its forget indices (``forget_indices.txt``) and
``--forget indices:RUN_ID`` (or the file) reuses exactly them (bench/core/forget.py,
bench/run/validate.py ``fetch_forget_run``)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.core.forget import INDICES_ARTIFACT, header_value, indices_text, parse_forget


def test_indices_text_reads_back_as_the_same_forget_set(tmp_path):
    idx = np.array([907, 3, 41, 12], dtype=np.int64)
    text = indices_text(idx, dataset="digits", forget="random:4", forget_seed=7, train_size=1437)
    assert text.splitlines()[:6] == ["# format: bench forget indices 1", "# dataset: digits", "# forget: random:4",
                                     "# forget_seed: 7", "# train_size: 1437", "# count: 4"]
    assert text.splitlines()[6:] == ["3", "12", "41", "907"]
    assert header_value(text, "forget") == "random:4" and header_value(text, "nope") is None
    path = tmp_path / "f.txt"
    path.write_text(text)
    train_y = np.zeros(1437, dtype=np.int64)
    assert parse_forget(f"indices:{path}").select(train_y, 10, 0).tolist() == [3, 12, 41, 907]
    # the training set it was drawn from must have the same size
    with pytest.raises(BenchError, match=r"drawn from a training set of 1437 points \(dataset digits\); this dataset's has 100"):
        parse_forget(f"indices:{path}").select(np.zeros(100, dtype=np.int64), 10, 0)


def test_run_id_is_told_from_a_path(tmp_path, monkeypatch):
    rid = "0123456789abcdef0123456789abcdef"
    assert parse_forget(f"indices:{rid}").run_id == rid
    assert parse_forget("indices:forget.txt").run_id is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / rid).write_text("1\n")  # a file of that name wins
    assert parse_forget(f"indices:{rid}").run_id is None


# -- through the harness -------------------------------------------------------------------------

def _artifact(workdir, run_id: str) -> str:
    """The forget_indices.txt a trial run of ``workdir``'s store logged."""
    import os

    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    dest = workdir / f"dl-{run_id}"
    dest.mkdir(exist_ok=True)
    with open(client.download_artifacts(run_id, INDICES_ARTIFACT, str(dest))) as fh:
        return fh.read()


def _indices(text: str) -> list[int]:
    return [int(line) for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.slow  # three in-process runs
def test_a_second_run_reuses_the_forget_set_of_a_trial(tmp_path, run_harness, trial_runs):
    from bench.datasets.digits import Digits

    common = dict(methods="ga", attacks="", recipe={"epochs": 2}, cache_dir=str(tmp_path / "cache"))
    code, out = run_harness(tmp_path, forgets=["random:16"], seeds=[0], **common)
    assert code == 0, out
    rid = trial_runs(tmp_path).iloc[0]["run_id"]
    text = _artifact(tmp_path, rid)
    train_y = Digits().load(None, False, None).train_y.numpy()
    drawn = parse_forget("random:16").select(train_y, 10, 0)
    assert _indices(text) == drawn.tolist()  # the artifact is the trial's forget set
    assert header_value(text, "forget") == "random:16" and header_value(text, "train_size") == str(len(train_y))
    from bench.core.cache import tensor_digest
    sp = Digits().load(None, False, None)
    assert header_value(text, "train_sha256") == tensor_digest(sp.train_x, sp.train_y)

    # seed 1 would draw another set; indices:RUN_ID forgets exactly the same points
    assert parse_forget("random:16").select(train_y, 10, 1).tolist() != drawn.tolist()
    code, out = run_harness(tmp_path, forgets=[f"indices:{rid}"], seeds=[1], **common)
    assert code == 0, out
    runs = trial_runs(tmp_path)
    second = runs[runs["params.forget"] == f"indices:{rid}"].iloc[0]
    assert _indices(_artifact(tmp_path, second["run_id"])) == drawn.tolist()
    assert float(second["metrics.forget_size"]) == 16

    # the artifact saved as a file works the same way (indices:PATH)
    path = tmp_path / "shared.txt"
    path.write_text(text)
    code, out = run_harness(tmp_path, forgets=[f"indices:{path}"], seeds=[1], **common)
    assert code == 0, out
    runs = trial_runs(tmp_path)
    third = runs[runs["params.forget"] == f"indices:{path}"].iloc[0]
    assert _indices(_artifact(tmp_path, third["run_id"])) == drawn.tolist()
    # same forget set, same seed: the same retrained reference (its key holds the indices' digest) and metrics
    assert "references: 0 trained, 2 from cache" in out
    for m in ("forget_acc", "test_acc", "retain_acc", "avg_gap"):
        assert third[f"metrics.{m}"] == second[f"metrics.{m}"]


# -- refused at plan time ------------------------------------------------------------------------

def _store_with_runs(workdir, artifacts: dict[str, str | None], parent: bool = False) -> dict[str, str]:
    """A SQLite store holding one trial run per entry (its forget_indices.txt, or none)."""
    from mlflow.tracking import MlflowClient

    from bench.track.tracking import configure_environment

    configure_environment()
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.create_experiment("shared", artifact_location=str(workdir / "artifacts"))
    ids = {}
    for name, text in artifacts.items():
        run = client.create_run(exp, tags={"bench.role": "parent" if name == "parent" else "trial"})
        if text is not None:
            client.log_text(run.info.run_id, text, INDICES_ARTIFACT)
        client.set_terminated(run.info.run_id, status="FAILED" if name == "failed" else "FINISHED")
        ids[name] = run.info.run_id
    return ids


def _text(values, train_size=1437):
    return indices_text(np.asarray(values), dataset="digits", forget="random:3", forget_seed=0, train_size=train_size)


BAD_RUNS = {
    "out-of-range": ("2, 99999", r"indices out of range \[99999\]; the training set has indices 0\.\.1436"),
    "duplicate": ("dup", r"duplicate indices \[5\] in the forget set of run [0-9a-f]{32}"),
    "other-size": ("size", r"drawn from a training set of 500 points \(dataset digits\); this dataset's has 1437"),
    "no-artifact": (None, r"run [0-9a-f]{32} has no artifact forget_indices\.txt \(trials log it since"),
    # a trial that failed before logging its forget set is not "an older run" (hostile audit, 2026-12-07)
    "failed": (None, r"run [0-9a-f]{32} has no artifact forget_indices\.txt \(it failed before it logged its forget set\)"),
    "parent": ("parent", r"is the parent run of a bench run, not a trial"),
    "unknown-run": ("unknown", r"no file named 0{32} and no run 0{32} in the tracking store"),
}


#: the cases that need no earlier run in the store stay in the quick loop
QUICK_BAD_RUNS = ("out-of-range", "unknown-run")


@pytest.mark.parametrize("case", [c if c in QUICK_BAD_RUNS else pytest.param(c, marks=pytest.mark.slow) for c in BAD_RUNS])
def test_bad_forget_runs_are_refused_before_work(case, tmp_path, invoke_bench):
    kind, pattern = BAD_RUNS[case]
    texts = {"out-of-range": _text([2, 99999]), "duplicate": _text([5, 5, 9]), "other-size": _text([1, 2], 500),
             "no-artifact": None, "failed": None, "parent": _text([1]), "unknown-run": _text([1])}
    ids = _store_with_runs(tmp_path, {("parent" if case == "parent" else case): texts[case]})
    rid = "0" * 32 if case == "unknown-run" else next(iter(ids.values()))
    proc = invoke_bench("run", "--executor", "local", "-m", "ga", "--forget", f"indices:{rid}", "--cache-dir",
                        str(tmp_path / "cache"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and "trial(s)" not in out
    assert re.search(pattern, proc.stderr), (pattern, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1  # one line
    assert not list((tmp_path / "cache").rglob("*.safetensors")) if (tmp_path / "cache").exists() else True


def test_indices_drawn_from_other_training_data_are_refused(tmp_path, invoke_bench):
    """Two training sets of one size (mnist and fashion-mnist, a rewritten CSV): the header's digest
    of the training tensors tells them apart; without the line the indices apply as written."""
    text = indices_text(np.array([3, 9]), dataset="csv:old.csv", forget="random:2", forget_seed=0, train_size=1437,
                        train_sha256="0" * 64)
    assert header_value(text, "train_sha256") == "0" * 64
    train_y = np.zeros(1437, dtype=np.int64)
    spec = parse_forget("indices:x")
    with pytest.raises(BenchError, match=r"drawn from other training data \(dataset csv:old.csv, training-set digest "
                                         r"000000000000\.\.\.; this dataset's is abcabcabcabc\.\.\.\)"):
        spec._parse_indices(text, "x", 1437, "abc" * 20)
    assert spec._parse_indices(text, "x", 1437, "0" * 64).tolist() == [3, 9]  # the same data
    assert spec._parse_indices(text, "x", 1437, None).tolist() == [3, 9]  # no digest to compare with
    path = tmp_path / "f.txt"
    path.write_text(text)
    proc = invoke_bench("run", "--executor", "local", "-m", "ga", "--forget", f"indices:{path}", "--cache-dir",
                        str(tmp_path / "cache"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "was drawn from other training data" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = invoke_bench("run", "--dry-run", "-m", "ga", "--forget", f"indices:{path}", cwd=tmp_path)
    assert proc.returncode == 2 and "was drawn from other training data" in proc.stderr, proc.stdout + proc.stderr
    path.write_text("".join(line + "\n" for line in text.splitlines() if "train_sha256" not in line))
    proc = invoke_bench("run", "--dry-run", "-m", "ga", "--forget", f"indices:{path}", cwd=tmp_path)
    assert proc.returncode == 0 and "forget indices:" in proc.stdout, proc.stdout + proc.stderr


def test_run_id_with_a_store_not_yet_created(tmp_path, invoke_bench):
    rid = "ab" * 16
    proc = invoke_bench("run", "-m", "ga", "--forget", f"indices:{rid}", "--cache-dir", str(tmp_path / "cache"),
                        "--tracking-uri", f"sqlite:///{tmp_path / 'new.db'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"the tracking store sqlite:///{tmp_path / 'new.db'} does not exist yet, so it holds no run {rid}" in proc.stderr
    assert not (tmp_path / "new.db").exists()


def test_a_parent_run_id_is_refused_naming_its_trials(tmp_path, invoke_bench):
    """`indices:PARENT_ID` (the id bench run prints) says which trial ids to use instead."""
    from mlflow.tracking import MlflowClient

    from bench.track.tracking import configure_environment

    configure_environment()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("shared", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(exp, tags={"bench.role": "parent"}).info.run_id
    kid = client.create_run(exp, tags={"bench.role": "trial", "mlflow.parentRunId": parent, "bench.method": "ga",
                                       "bench.seed": "0", "bench.forget": "random:16"}).info.run_id
    proc = invoke_bench("run", "--executor", "local", "-m", "ga", "--forget", f"indices:{parent}", "--cache-dir",
                        str(tmp_path / "cache"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is the parent run of a bench run, not a trial" in proc.stderr
    assert f"Its trials: ga seed 0 random:16: {kid}." in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text,pattern", [
    ("# format: bench forget indices 1\n# count: 5\n1\n2\n", r"says '# count: 5' and lists 2 indices: it was cut short"),
    ("1_0\n", r"line 1 of .* is '1_0', not an integer index \(ASCII digits"),
    ("\u0661\u0662\n", r"line 1 of .* is '\u0661\u0662', not an integer index"),
    ("# format: bench forget indices 2\n1\n", r"says '# format: bench forget indices 2'; this bench reads 'bench forget "
                                              r"indices 1'"),
    ("# format: bench forget indices 1\n# train_size: abc\n1\n", r"has '# train_size: abc', not a count of points"),
])
def test_an_indices_file_that_is_cut_short_or_odd_is_refused(text, pattern, tmp_path):
    """Each was accepted: a truncated file forgot what was left, '1_0' read as 10 and Arabic-Indic
    digits as numbers (Python's int() takes both), unknown headers passed without a word."""
    path = tmp_path / "f.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BenchError, match=pattern):
        parse_forget(f"indices:{path}").select(np.zeros(100, dtype=np.int64), 10, 0)


def test_an_indices_file_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"\xef\xbb\xbf1\n-0\n+2\n")  # saved by an editor that writes a BOM
    assert parse_forget(f"indices:{path}").select(np.zeros(100, dtype=np.int64), 10, 0).tolist() == [0, 1, 2]


def test_a_hand_written_files_headers_are_comments(tmp_path):
    """Only a file bench wrote (its '# format' line) has its headers checked: '# count: 10 indices'
    or '# train_size: 1,437' in a hand-written list are comments."""
    path = tmp_path / "f.txt"
    path.write_text("# format: one per line\n# count: 10 indices\n# train_size: 1,437\n3\n4\n")
    assert parse_forget(f"indices:{path}").select(np.zeros(100, dtype=np.int64), 10, 0).tolist() == [3, 4]
