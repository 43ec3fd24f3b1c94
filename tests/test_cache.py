"""The reference cache under faults: every entry is verified against the digest recorded when it
was written, a corrupt one is reported, moved to the quarantine and rebuilt (to the same bytes a
clean run trains), and concurrent runs sharing a cache directory train each key once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

import bench
from bench.core.cache import ENTRY_FORMAT, ReferenceCache, cache_key, sha256_bytes
from bench.core.cache_lock import lock_path

# -- a real, tiny reference: mlp:32 on digits, 2 epochs ------------------------------------------


@pytest.fixture(scope="module")
def digits():
    from bench.datasets.digits import Digits

    return Digits().load(None, False, None)


def _ref_job(digits, seed: int = 0):
    from bench.core.recipe import build_recipe
    from bench.nn.models import MLPModel
    from bench.run.references import RefJob

    recipe = build_recipe({"epochs": 2})
    doc = {"kind": "original", "dataset": "digits", "model": "mlp:32", "recipe": recipe.as_dict(), "seed": seed}
    return RefJob(key=cache_key(doc), doc=doc, model_obj=MLPModel(), arg="32", splits=digits, train_idx=None,
                  recipe=recipe, seed=seed, device="cpu", threads=1)


def _ensure(jobs, cache: ReferenceCache, lines: list[str] | None = None):
    from bench.run.references import ensure_references, train_job

    return ensure_references(jobs, cache, lambda js, done=None: [train_job(j) for j in js],
                             (lines if lines is not None else []).append, {"bench": "test"})


@pytest.fixture(scope="module")
def clean(digits, tmp_path_factory):
    """(job, weights bytes) of a clean run: what every rebuild must reproduce."""
    job = _ref_job(digits)
    refs, trained = _ensure([job], ReferenceCache(tmp_path_factory.mktemp("clean")))
    assert trained == 1
    return job, refs[job.key][0]


def _zero_8k(weights: Path, meta: Path) -> None:
    data = bytearray(weights.read_bytes())
    assert len(data) > 8192 + 1024
    data[1024 : 1024 + 8192] = bytes(8192)  # past the safetensors header: still loads, wrong weights
    weights.write_bytes(bytes(data))


def _truncate(weights: Path, meta: Path) -> None:
    weights.write_bytes(weights.read_bytes()[:-100])


def _random(weights: Path, meta: Path) -> None:
    weights.write_bytes(os.urandom(len(weights.read_bytes())))


def _tamper_meta(weights: Path, meta: Path) -> None:
    doc = json.loads(meta.read_text())
    doc["train_seconds"] = 0.001  # edited by hand: the metadata digest no longer matches
    meta.write_text(json.dumps(doc))


def _unparsable_meta(weights: Path, meta: Path) -> None:
    meta.write_text(meta.read_text()[:-40])


def _digest_swapped(weights: Path, meta: Path) -> None:
    """Weights overwritten AND a metadata re-signed for them, but under another document."""
    other = json.loads(meta.read_text())
    other["document"] = {**other["document"], "seed": 99}
    body = {k: v for k, v in other.items() if k != "meta_sha256"}
    other["meta_sha256"] = sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    meta.write_text(json.dumps(other))


def _pickle_signed(weights: Path, meta: Path) -> None:
    """A pickle written with digests that match it (as put() writes any bytes): a raw traceback in
    every run, exit 1, and `ok` to bench cache --verify until 2026-12-06 (found in review)."""
    import pickle

    data = pickle.dumps({"net.0.weight": [0.0] * 64})
    doc = json.loads(meta.read_text())
    doc.update(weights_sha256=sha256_bytes(data), weights_bytes=len(data))
    body = {k: v for k, v in doc.items() if k != "meta_sha256"}
    doc["meta_sha256"] = sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    weights.write_bytes(data)
    meta.write_text(json.dumps(doc))


def _format1(weights: Path, meta: Path) -> None:
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps({k: doc[k] for k in ("document", "train_seconds", "created", "versions")}))


def _weights_missing(weights: Path, meta: Path) -> None:
    weights.unlink()


def _st(payload: bytes) -> bytes:
    """``payload`` as the one uint8 tensor of a safetensors file: the cache refuses anything else."""
    import numpy as np
    from safetensors.numpy import save

    return save({"w": np.frombuffer(payload, np.uint8)})


CORRUPTIONS = {
    "zeroed": (_zero_8k, "SHA-256 does not match"),
    "truncated": (_truncate, "truncated"),
    "random": (_random, "SHA-256 does not match"),
    "tampered-meta": (_tamper_meta, "metadata was modified"),
    "unparsable-meta": (_unparsable_meta, "not valid JSON"),
    "document-mismatch": (_digest_swapped, "does not hash to the key"),
    "format-1": (_format1, "format-1 entry"),
    "pickle-signed": (_pickle_signed, "not a safetensors file"),
    "weights-missing": (_weights_missing, "weights file missing"),
}


@pytest.mark.parametrize("fault", list(CORRUPTIONS))
def test_corrupt_entry_is_reported_quarantined_and_rebuilt_to_the_clean_bytes(tmp_path, clean, fault):
    job, clean_bytes = clean
    cache = ReferenceCache(tmp_path)
    refs, trained = _ensure([job], cache)
    assert trained == 1 and refs[job.key][0] == clean_bytes  # deterministic under the seed
    weights, meta = tmp_path / f"{job.key}.safetensors", tmp_path / f"{job.key}.json"
    corrupt, expected = CORRUPTIONS[fault]
    corrupt(weights, meta)
    lines: list[str] = []
    refs, trained = _ensure([job], cache, lines)
    assert trained == 1, lines
    assert refs[job.key][0] == clean_bytes
    report = [line for line in lines if "corrupt" in line]
    assert len(report) == 1 and job.key[:12] in report[0] and expected in report[0], lines
    [moved] = (tmp_path / "quarantine").iterdir()
    assert str(moved) in report[0] and moved.name.endswith(job.key)
    assert expected in (moved / "reason.txt").read_text()
    assert (moved / meta.name).exists() or fault == "weights-missing"
    # the rebuilt entry is intact, and a third run uses it
    assert weights.read_bytes() == clean_bytes
    lines.clear()
    refs, trained = _ensure([job], cache, lines)
    assert trained == 0 and refs[job.key][0] == clean_bytes and any("cache hit" in x for x in lines)


def test_metadata_records_the_weights_digest(tmp_path):
    cache = ReferenceCache(tmp_path)
    doc = {"kind": "original", "seed": 0}
    key = cache_key(doc)
    written = cache.put(key, _st(b"weights"), {"document": doc, "train_seconds": 1.5})
    on_disk = json.loads((tmp_path / f"{key}.json").read_text())
    assert on_disk == written
    assert on_disk["weights_sha256"] == sha256_bytes(_st(b"weights")) and on_disk["weights_bytes"] == len(_st(b"weights"))
    assert on_disk["entry_format"] == ENTRY_FORMAT and on_disk["key"] == key
    assert cache.get(key) == (_st(b"weights"), written)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_weights_without_metadata_are_a_miss_and_are_overwritten(tmp_path):
    """A crash between the two renames leaves weights without metadata: a miss, rebuilt."""
    cache = ReferenceCache(tmp_path)
    doc = {"kind": "original", "seed": 0}
    key = cache_key(doc)
    (tmp_path / f"{key}.safetensors").write_bytes(b"half-written")
    assert cache.check(key) == (None, None)
    cache.put(key, _st(b"good"), {"document": doc, "train_seconds": 0.0})
    assert cache.get(key)[0] == _st(b"good")


def test_a_corrupt_entry_is_never_returned_by_get(tmp_path):
    cache = ReferenceCache(tmp_path)
    doc = {"kind": "original", "seed": 0}
    key = cache_key(doc)
    cache.put(key, _st(b"x" * 100), {"document": doc, "train_seconds": 0.0})
    (tmp_path / f"{key}.safetensors").write_bytes(_st(b"y" * 100))
    said: list[str] = []
    assert cache.get(key, said.append) is None
    assert len(said) == 1 and "SHA-256" in said[0]
    assert not (tmp_path / f"{key}.json").exists() and cache.get(key) is None


# -- concurrency: a job whose run() appends to a file, so training calls can be counted ----------

JOB_MODULE = textwrap.dedent('''
    import os, sys, time
    from dataclasses import dataclass

    @dataclass
    class CountingJob:
        key: str
        doc: dict
        log: str
        delay: float

        def describe(self):
            return f"counting {self.doc['seed']}"

        def run(self):
            with open(self.log, "a") as fh:
                fh.write(f"{self.key} {os.getpid()}\\n")
            time.sleep(self.delay)
            import numpy as np
            from safetensors.numpy import save

            return (save({"w": np.frombuffer(f"weights of {self.key}".encode(), np.uint8)}), self.delay)

    def train_many(jobs, done=None):
        return [j.run() for j in jobs]

    def jobs(log, seeds, delay):
        from bench.core.cache import cache_key
        out = []
        for s in seeds:
            doc = {"kind": "original", "dataset": "counting", "seed": s}
            out.append(CountingJob(cache_key(doc), doc, log, delay))
        return out
''')

WORKER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from counting_job import jobs, train_many
    from bench.core.cache import ReferenceCache
    from bench.run.references import ensure_references

    root, log, name, seeds = Path(sys.argv[2]), sys.argv[3], sys.argv[4], [int(s) for s in sys.argv[5].split(",")]
    (root / f"ready-{name}").touch()
    while len(list(root.glob("ready-*"))) < 2:  # start together
        time.sleep(0.01)
    refs, trained = ensure_references(jobs(log, seeds, 1.0), ReferenceCache(root / "cache"), train_many, print, {})
    print("TRAINED", trained, sorted(v[0].decode() for v in refs.values()))
''')


def _counting(tmp_path: Path):
    (tmp_path / "counting_job.py").write_text(JOB_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        import counting_job

        return importlib.reload(counting_job)
    finally:
        sys.path.remove(str(tmp_path))


def test_a_full_disk_or_a_wrong_file_in_the_caches_folders_is_one_line(tmp_path, monkeypatch):
    """A full disk while writing a reference, "quarantine" or "locks" a file, a lock a folder: each
    was a raw traceback (cache audit, 2026-12-07); now a BenchError naming the path."""
    import errno

    import bench.core.cache as cache_module
    from bench.core.cache_lock import keys_locked
    from bench.core.errors import BenchError

    cache = ReferenceCache(tmp_path)
    doc = {"kind": "original", "seed": 0}
    key = cache_key(doc)

    def full(path, payload):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cache_module, "_write_atomic", full)
    with pytest.raises(BenchError, match=rf"^Cannot write cache entry {key[:12]} in {tmp_path} \(No space left on "
                                         r"device\)\. Free space there, or point --cache-dir"):
        cache.put(key, _st(b"x"), {"document": doc, "train_seconds": 0.0})
    monkeypatch.undo()
    cache.put(key, _st(b"x"), {"document": doc, "train_seconds": 0.0})
    (tmp_path / "quarantine").write_text("")
    with pytest.raises(BenchError, match=r"^Cannot move corrupt cache entry .* Check .*quarantine: it must be a folder"):
        cache.quarantine(key, "test")
    (tmp_path / "locks").mkdir(exist_ok=True)
    lock_path(tmp_path, key).mkdir(parents=True)
    with pytest.raises(BenchError, match=r"^Cannot open the cache lock .*\.lock \(Is a directory\)"):
        with keys_locked(tmp_path, [key]):
            pass


def test_a_failed_copy_of_the_store_template_leaves_no_partial_file(tmp_path, monkeypatch):
    """A new store's copy kept as the template, cut by a full disk, left its partial file, which
    filled the disk of every later run (cache audit, 2026-12-07)."""
    import shutil

    from bench.track import store

    template = tmp_path / "schema" / "empty.db"
    monkeypatch.setattr(store, "store_template", lambda: template)
    real = shutil.copyfile

    def full(src, dst, **kw):
        Path(dst).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    store.new_sqlite_store(tmp_path / "mlflow.db")
    monkeypatch.setattr(shutil, "copyfile", real)
    assert (tmp_path / "mlflow.db").is_file() and not template.exists()
    assert list(template.parent.iterdir()) == []


@pytest.mark.slow  # a run of the harness or a process: the quick loop stays under 2 min
def test_two_processes_sharing_a_cache_train_each_key_once(tmp_path):
    _counting(tmp_path)  # writes the job module the workers import
    (tmp_path / "worker.py").write_text(WORKER)
    log = tmp_path / "trained.log"
    # overlapping key sets in different orders: the sorted locking cannot deadlock
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(tmp_path), str(tmp_path), str(log), name,
                               seeds], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, seeds in (("a", "0,1"), ("b", "1,0"))]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and len({c.split()[0] for c in calls}) == 2, calls  # each key trained once
    trained = sorted(int(line.split()[1]) for out in outs for line in out.splitlines() if line.startswith("TRAINED"))
    assert trained == [0, 2], outs  # one trained both, the other waited and found them
    assert "waiting" in "".join(outs) and "cache hit" in "".join(outs)
    results = {line.split(" ", 2)[2] for out in outs for line in out.splitlines() if line.startswith("TRAINED")}
    assert len(results) == 1  # both got the same weights


def test_two_threads_sharing_a_cache_train_each_key_once(tmp_path):
    mod = _counting(tmp_path)
    from bench.run.references import ensure_references

    log = tmp_path / "trained.log"
    results, lines = {}, []

    def worker(name, seeds):
        results[name] = ensure_references(mod.jobs(str(log), seeds, 0.5), ReferenceCache(tmp_path / "cache"),
                                          mod.train_many, lines.append, {})

    threads = [threading.Thread(target=worker, args=a) for a in (("a", [0, 1, 2]), ("b", [2, 1, 0]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(log.read_text().splitlines()) == 3, lines
    assert sorted(r[1] for r in results.values()) == [0, 3]
    assert results["a"][0].keys() == results["b"][0].keys()
    assert all(results["a"][0][k][0] == results["b"][0][k][0] for k in results["a"][0])


def test_a_reference_is_unlocked_once_cached_not_when_the_whole_batch_is(tmp_path):
    """A run held every key of its batch until the last was trained: another run needing only an
    entry already cached waited for the whole batch (concurrency audit, 2026-12-07: 22.7 s on
    digits, hours on CIFAR). Here the batch's second job cannot end until the other run has its
    entry: holding the first key to the end of the batch makes that job give up."""
    from safetensors.torch import save

    from bench.run.references import ensure_references

    waiting, other_done = threading.Event(), threading.Event()

    class Job:
        def __init__(self, seed: int, gate: threading.Event | None) -> None:
            self.doc = {"kind": "original", "dataset": "gated", "seed": seed}
            self.key, self.gate = cache_key(self.doc), gate

        def describe(self) -> str:
            return f"gated {self.doc['seed']}"

        def run(self):
            if self.gate is not None and not self.gate.wait(15):
                raise TimeoutError(f"job {self.doc['seed']}: the other run never got its entry")
            return save({"w": torch.tensor([float(self.doc["seed"])])}), 0.0

    def train_many(jobs, done):  # as bench's do: each result handed over as it ends
        out = []
        for i, job in enumerate(jobs):
            out.append(job.run())
            done(i, out[-1])
        return out

    cache, lines, outcome = ReferenceCache(tmp_path / "cache"), [], {}

    def run(name: str, jobs: list) -> None:
        def say(line: str, always: bool = False) -> None:
            lines.append(line)
            if line.startswith("waiting"):
                waiting.set()  # the batch's first job may end now
        try:
            outcome[name] = ensure_references(jobs, cache, train_many, say, {})
        except Exception as exc:  # noqa: BLE001
            outcome[name] = exc
        if name == "second":
            other_done.set()

    batch = [Job(0, waiting), Job(1, other_done)]
    first = threading.Thread(target=run, args=("first", batch))
    first.start()
    deadline = time.monotonic() + 30
    while not any(line.startswith("training") for line in lines):  # its locks are taken
        assert first.is_alive() and time.monotonic() < deadline, lines
        time.sleep(0.01)
    second = threading.Thread(target=run, args=("second", [Job(0, None)]))  # misses, then waits on key 0
    second.start()
    for thread in (first, second):
        thread.join(timeout=60)
    assert not isinstance(outcome["first"], Exception), (outcome, lines)
    assert outcome["first"][1] == 2 and outcome["second"][1] == 0, lines  # the second run's entry: a hit
    said = next(line for line in lines if line.startswith("waiting"))
    assert said == f"waiting     for another process (pid {os.getpid()}) building cache entry {batch[0].key[:12]}"


HOLDER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from bench.core.cache_lock import key_lock
    with key_lock(sys.argv[1], sys.argv[2]):
        Path(sys.argv[3]).touch()
        time.sleep(600)
''')


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path):
    import fcntl

    mod = _counting(tmp_path)
    from bench.run.references import ensure_references

    log = tmp_path / "trained.log"
    [job] = mod.jobs(str(log), [7], 0.0)
    cache_dir, held = tmp_path / "cache", tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(cache_dir), job.key, str(held)])
    try:
        deadline = time.monotonic() + 60
        while not held.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        fd = os.open(lock_path(cache_dir, job.key), os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # held while the holder lives
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: no release, no cleanup
        holder.wait(timeout=30)
    assert lock_path(cache_dir, job.key).exists()  # the lock file stays behind ...
    fd = os.open(lock_path(cache_dir, job.key), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ... unlocked: this would raise if it blocked
    finally:
        os.close(fd)
    lines: list[str] = []
    refs, trained = ensure_references([job], ReferenceCache(cache_dir), mod.train_many, lines.append, {})
    assert trained == 1 and not any("waiting" in x for x in lines)


# -- the attack models' entries go through the same verified, locked path ------------------------


def test_corrupt_shadow_entry_is_quarantined_and_retrained(tmp_path, digits):
    from bench.core.recipe import build_recipe
    from bench.eval.shadows import ensure_shadow_set
    from bench.nn.models import MLPModel

    cache = ReferenceCache(tmp_path)
    kw = dict(model_obj=MLPModel(), arg="16", splits=digits, recipe=build_recipe({"epochs": 1}), group_seed=0,
              base_doc={"dataset": "digits", "model": "mlp:16", "data_sha256": "d" * 64}, forget_idx=None,
              device="cpu", cache=cache, versions={})
    lines: list[str] = []
    first = ensure_shadow_set("shadows", 2, say=lines.append, **kw)
    entries = sorted(tmp_path.glob("*.safetensors"))
    assert len(entries) == 2
    entries[0].write_bytes(entries[0].read_bytes()[:-10])
    lines.clear()
    again = ensure_shadow_set("shadows", 2, say=lines.append, **kw)
    assert any("corrupt" in x and "truncated" in x for x in lines), lines
    assert any("trained     1 shadows" in x for x in lines), lines
    # retrained alone, stacked as with its pair: the same bytes (trained sequentially it differed in the
    # last digits, and so did every later run's lira numbers from a run on an empty cache; found in review)
    assert again.states == first.states
    assert sorted(e.read_bytes() for e in entries) == sorted(first.states)
    assert len(list((tmp_path / "quarantine").iterdir())) == 1


# -- end to end ------------------------------------------------------------------------------------


def _trial_runs(workdir: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["unlearning-bench"])
    df = df[df["tags.bench.role"] == "trial"].sort_values("start_time")
    return df


@pytest.mark.slow
def test_run_with_a_zeroed_cached_original_reports_it_and_gives_the_same_metrics(workdir, run_bench, store_args):
    args = ["run", "--executor", "local", "--methods", "ft", "--recipe", "epochs=5", *store_args(workdir)]
    first = run_bench(*args, cwd=workdir)
    assert first.returncode == 0, first.stdout + first.stderr
    cache = workdir / "cache"
    [original] = [p for p in cache.glob("*.json") if json.loads(p.read_text())["document"]["kind"] == "original"]
    weights = original.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[1024 : 1024 + 8192] = bytes(8192)
    weights.write_bytes(bytes(data))
    second = run_bench(*args, cwd=workdir)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    assert f"cache entry {original.stem[:12]} is corrupt" in out and "quarantine" in out, out
    runs = _trial_runs(workdir)
    assert len(runs) == 2
    cols = [c for c in runs.columns if c.startswith("metrics.") and "seconds" not in c and "memory" not in c
            and "time" not in c and "_mb" not in c and "speedup" not in c]
    a, b = runs.iloc[0], runs.iloc[1]
    assert {c: a[c] for c in cols if a[c] == a[c]} == {c: b[c] for c in cols if b[c] == b[c]}
    assert "metrics.avg_gap" in cols


def test_the_code_digest_follows_code_and_ignores_docstrings_comments_and_layout():
    from bench.run.trained_with import code_digest

    base = code_digest('"""Module."""\ndef f(x):\n    """Doc."""\n    return x * 0.1\n')
    assert code_digest('def f(x):\n\n    # a comment\n    return (x *\n            0.1)\n') == base
    assert code_digest('"""Other words."""\ndef f(x):\n    return x * 0.1\n') == base
    assert code_digest('def f(x):\n    return x * 0.01\n') != base  # a fixed schedule: another key


def _keys(workdir, monkeypatch=None, **options):
    from bench.core.options import RunOptions
    from bench.core.plugins import get_registry, plugin_versions
    from bench.run.plan import make_plan

    opts = RunOptions(methods="sisa", attacks="", recipe={"epochs": 2}, executor="local",
                      cache_dir=str(workdir / "cache"), tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", **options)
    plan = make_plan(get_registry(), opts, {}, plugin_versions())
    g = plan.groups[0]
    return g.original_key, g.retrain_key, g, plan.trials[0]


def test_cache_keys_change_with_what_the_weights_depend_on_beyond_the_recipe(tmp_path, monkeypatch):
    """A cached model is reused only where the same code, torch version, device type and (on the CPU)
    thread count and kernel level would train the same weights: a reference cached before a fix of the training code
    (the 1-epoch step schedule, 2026-12-05) was reused after it, and a GPU-trained one by CPU runs."""
    import torch

    import bench.run.trained_with as tw

    first = _keys(tmp_path)
    doc = first[2].retrain_doc["trained_with"]
    assert doc == {"code": tw.training_code_digest(), "torch": torch.__version__, "device": "cpu", "threads": 1,
                   "cpu": torch.backends.cpu.get_cpu_capability()}
    assert _keys(tmp_path)[:2] == first[:2]  # stable
    changed = {"threads": _keys(tmp_path, cpus_per_trial=2)[:2]}
    monkeypatch.setattr(tw, "training_code_digest", lambda: "0" * 16)
    changed["code"] = _keys(tmp_path)[:2]
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    changed["torch"] = _keys(tmp_path)[:2]
    monkeypatch.undo()
    # the CPU kernel level: AVX2 and AVX512 kernels give other last digits (one key on both until
    # 2026-12-06, so a cache shared across CPUs mixed their references; found in review)
    other = "AVX2" if torch.backends.cpu.get_cpu_capability() != "AVX2" else "AVX512"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: other)
    changed["cpu"] = _keys(tmp_path)[:2]
    monkeypatch.undo()
    for what, keys in changed.items():
        assert keys[0] != first[0] and keys[1] != first[1], what
    # the shadow models' documents are the group's original document's (bench.run.prepare)
    assert first[2].original_doc["trained_with"] == doc
    own = first[3].own_original
    import bench.run.plan as plan_mod

    monkeypatch.setattr(plan_mod, "object_code_digest", lambda obj: "f" * 16)
    assert _keys(tmp_path)[3].own_original.key != own.key  # SISA's own code changed, train_version the same


def test_a_method_s_seeds_share_one_code_identity_and_its_own_training_enters_it(tmp_path, monkeypatch):
    """SISA's code identity held its own original's cache key, which holds the seed: bench compare
    showed its two seeds as two variants of different code, each ranked alone (found in review)."""
    from bench.core.options import RunOptions
    from bench.core.plugins import get_registry, plugin_versions
    from bench.run.plan import make_plan

    def plan(**params):
        opts = RunOptions(methods="sisa", attacks="", recipe={"epochs": 2}, executor="local", seeds=[0, 1],
                          cache_dir=str(tmp_path / "cache"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                          params={"sisa": params} if params else {})
        return make_plan(get_registry(), opts, {}, plugin_versions()).trials

    first = plan()
    assert first[0].own_original.key != first[1].own_original.key  # each seed trains its own
    assert first[0].measured_with == first[1].measured_with
    assert plan(shards=4)[0].measured_with != first[0].measured_with  # its training params
    import bench.run.plan as plan_mod

    monkeypatch.setattr(plan_mod, "train_version", lambda obj: "99")
    assert plan()[0].measured_with != first[0].measured_with


def test_device_type_and_model_plugin_enter_the_trained_with_entry():
    from bench.run.trained_with import model_provenance, trained_with

    cpu, gpu = trained_with("cpu", 2), trained_with("cuda:1", 2)
    assert cpu["device"] == "cpu" and cpu["threads"] == 2 and cpu["cpu"] == torch.backends.cpu.get_cpu_capability()
    assert gpu["device"] == "cuda" and "threads" not in gpu and trained_with("cuda:0", 8) == gpu
    from types import SimpleNamespace

    import bench.run.trained_with as tw

    assert model_provenance(SimpleNamespace(name="mlp"), "bench.nn.models", {}, {"timm": "1.0.9"}) == ""
    assert model_provenance(SimpleNamespace(name="timm"), "bench.nn.models", {}, {"timm": "1.0.9"}) == "timm 1.0.9"
    wide = SimpleNamespace(name="wide")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tw, "object_code_digest", lambda obj: "c0de" if obj is wide else "")
        assert model_provenance(wide, "my-plugin", {"my-plugin": "2.1"}, {}) == "my-plugin 2.1 c0de"
        # its code enters the references' keys: an edit under the same version (an auditor's
        # finding: the cached references of the old code were reused, exit 0) trains them again
        mp.setattr(tw, "object_code_digest", lambda obj: "beef")
        assert model_provenance(wide, "my-plugin", {"my-plugin": "2.1"}, {}) == "my-plugin 2.1 beef"
    assert trained_with("cpu", 1, "my-plugin 2.1")["model"] == "my-plugin 2.1"


def test_the_gpu_enters_the_trained_with_entry(monkeypatch):
    """On the CPU the kernel level is in the key; on a GPU only "cuda" was, so a cache shared by A100
    and H100 nodes mixed their weights under one key (found in review). A fake GPU: names only."""
    from bench.run.trained_with import trained_with

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (9, 0))
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    names = {0: "NVIDIA H100 80GB HBM3", 1: "NVIDIA A100-SXM4-80GB"}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: names[i])
    h100, a100 = trained_with("cuda", 1), trained_with("cuda:1", 1)
    assert h100["gpu"] == "NVIDIA H100 80GB HBM3 sm_90 cudnn 91002" and a100["gpu"].startswith("NVIDIA A100")
    assert h100 != a100 and trained_with("cuda:0", 4) == h100  # threads do not matter on a GPU


class _Flat:
    """A third-party model plugin (in process): a linear layer on the flattened input."""

    name = "flatlin"
    description = "test model: one linear layer"

    def create(self, num_classes, input_shape, arg=None):
        import math

        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(math.prod(input_shape), num_classes))


class _FlatPlugin:
    @bench.hookimpl
    def register_models(self, register):
        register(_Flat())


def test_a_model_plugins_code_enters_the_reference_and_trial_keys(tmp_path, monkeypatch, plugged):
    """A model plugin edited under the same version (its create() now computing 1 - x) reused the
    references cached with its old code: an original at 0.000 beside a trial at 0.974, exit 0; and
    --resume kept the trials measured with it (an auditor's finding)."""
    import bench.run.trained_with as tw

    with plugged(_FlatPlugin()):
        first = _keys(tmp_path, models=["flatlin"])
        assert first[2].original_doc["trained_with"]["model"].startswith("tests.test_cache._FlatPlugin ")  # the plugin, its code
        monkeypatch.setattr(tw, "object_code_digest", lambda obj: "e" * 16)  # its code edited, its version not
        edited = _keys(tmp_path, models=["flatlin"])
    assert edited[0] != first[0] and edited[1] != first[1]  # the references train again
    assert edited[3].measured_with != first[3].measured_with  # --resume runs its trials again


#: what _Thin's create builds through, standing for another package's network code
_THIN_BUILD = {"act": torch.nn.ReLU}


class _ForeignBlock(torch.nn.Module):
    """A module class of "another package" (its code digest is monkeypatched below)."""

    def __init__(self, n):
        super().__init__()
        self.fc = torch.nn.Linear(n, n)

    def forward(self, x):
        return self.fc(x)


class _Thin:
    """A thin model plugin over another codebase: create() builds what that codebase defines."""

    name = "thin"
    description = "test model built through another module"

    def create(self, num_classes, input_shape, arg=None):
        import math

        n = math.prod(input_shape)
        return torch.nn.Sequential(torch.nn.Flatten(), _ForeignBlock(n), _THIN_BUILD["act"](), torch.nn.Linear(n, num_classes))


class _ThinPlugin:
    @bench.hookimpl
    def register_models(self, register):
        register(_Thin())


def test_a_network_built_through_another_package_enters_the_keys(tmp_path, monkeypatch, plugged):
    """A plugin whose create() builds its network through another package kept its cached
    references when that package changed (ReLU to Tanh: cache hits, the retrain method 2.3e-4 from
    its own reference, exit 0; found in review): the network's structure, its state dict's layout
    and the code of its module classes outside torch, timm and bench are in the keys. bench's own
    models' keys hold none of it (their code is in bench's training digest)."""
    import bench.run.trained_with as tw

    digests = {"_ForeignBlock": "a" * 16}
    real = tw.object_code_digest
    monkeypatch.setattr(tw, "object_code_digest",
                        lambda obj: digests.get(getattr(obj, "__name__", ""), "") or real(obj))
    with plugged(_ThinPlugin()):
        first = _keys(tmp_path, models=["thin"])
        assert _keys(tmp_path, models=["thin"])[:2] == first[:2]  # stable
        monkeypatch.setitem(_THIN_BUILD, "act", torch.nn.Tanh)  # the other package's network changed
        tanh = _keys(tmp_path, models=["thin"])
        monkeypatch.setitem(_THIN_BUILD, "act", torch.nn.ReLU)
        digests["_ForeignBlock"] = "b" * 16  # the code of a module class of the other package changed
        edited = _keys(tmp_path, models=["thin"])
    for changed in (tanh, edited):
        assert changed[0] != first[0] and changed[1] != first[1]  # the references train again
        assert changed[3].measured_with != first[3].measured_with  # --resume runs the trials again
    assert "model" not in _keys(tmp_path)[2].original_doc["trained_with"]  # the built-in mlp: unchanged keys


@pytest.mark.slow
def test_a_reference_on_read_only_indices_warns_nothing():
    """Ray's object store hands a worker read-only arrays: training a retrained reference on them
    printed PyTorch's "The given NumPy array is not writable ..." warning into every Ray run's output.
    In a fresh process (PyTorch says it once per process) with warnings as errors."""
    import subprocess
    import sys

    code = (
        "import numpy as np, warnings\n"
        "warnings.simplefilter('error')\n"
        "from bench.core.recipe import build_recipe\n"
        "from bench.datasets.digits import Digits\n"
        "from bench.nn.models import MLPModel\n"
        "from bench.run.references import RefJob, train_reference\n"
        "idx = np.arange(0, 1000, dtype=np.int64); idx.setflags(write=False)\n"
        "recipe = build_recipe({'epochs': 1})\n"
        "job = RefJob(key='k', doc={'kind': 'retrained', 'dataset': 'digits', 'model': 'mlp:16', 'seed': 0}, model_obj=MLPModel(), arg='16', "
        "splits=Digits().load(None, False, None), train_idx=idx, recipe=recipe, seed=0, device='cpu', threads=1)\n"
        "blob, seconds = train_reference(job)\n"
        "print('trained', len(blob) > 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "trained True" in proc.stdout, proc.stderr[-2000:]


def test_entries_get_the_mode_a_plain_open_gives(tmp_path):
    """Entries were 0600 (mkstemp's): another user sharing the cache found them unreadable,
    quarantined and retrained them (cache audit, 2026-12-07)."""
    old = os.umask(0o022)
    try:
        cache = ReferenceCache(tmp_path)
        doc = {"kind": "original", "seed": 0}
        key = cache_key(doc)
        cache.put(key, _st(b"x"), {"document": doc, "train_seconds": 0.0})
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.glob(f"{key}.*")} == {oct(0o644)}
