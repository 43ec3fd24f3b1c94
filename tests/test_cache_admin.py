"""``bench cache``: the entries a run can reuse, those this bench never hits again (trained by other
training code or torch: they stayed on disk forever), corrupt ones, and pruning."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from safetensors.numpy import save

from bench.core.cache import ReferenceCache, cache_key
from bench.run.trained_with import trained_with


def _put(cache: ReferenceCache, seed: int, made=None, kind="original") -> str:
    doc = {"kind": kind, "dataset": "digits", "model": "mlp", "seed": seed}
    if made is not None:
        doc["trained_with"] = made
    key = cache_key(doc)
    weights = save({"w": np.full(1000 + seed, ord("w"), np.uint8)})  # a safetensors file: the cache refuses others
    cache.put(key, weights, {"document": doc, "created": "2026-12-06T00:00:00+00:00"})
    return key


@pytest.fixture
def filled(tmp_path):
    """A cache with one entry per case, and a quarantined item and a Ray Tune run folder."""
    root = tmp_path / "cache"
    cache = ReferenceCache(root)
    now = trained_with("cpu", 1)
    keys = {
        "ok": _put(cache, 0, now),
        "old": _put(cache, 1, now),
        "code": _put(cache, 2, {**now, "code": "0123456789abcdef"}),
        "torch": _put(cache, 3, {**now, "torch": "1.0.0"}),
        "unkeyed": _put(cache, 4),
        "corrupt": _put(cache, 5, now),
    }
    bad = root / f"{keys['corrupt']}.safetensors"
    bad.write_bytes(b"x" * bad.stat().st_size)  # same size, other bytes
    month = time.time() - 40 * 86400
    os.utime(root / f"{keys['old']}.json", (month, month))
    (root / "quarantine" / "20261201T000000Z-abc").mkdir(parents=True)
    (root / "quarantine" / "20261201T000000Z-abc" / "reason.txt").write_text("abc: corrupted\n")
    (root / "ray_results" / "bench-1").mkdir(parents=True)
    (root / "ray_results" / "bench-1" / "experiment_state.json").write_text("{}\n")
    (root / "ray_results" / "bench-1.log").write_text("log\n")
    for path in (root / "ray_results").rglob("*"):
        os.utime(path, (month, month))
    (root / "ray_results" / "bench-2-running").mkdir()  # changed now: a run may be writing it
    for name in ("notes.json", "mine.safetensors", "foo.bar.json"):  # not entries: never touched
        (root / name).write_text("{}")
    (root / "mlflow-schema").mkdir()  # bench's own empty store (bench.track.store): not foreign
    return root, keys


def test_list_says_which_entries_this_bench_can_reuse(filled, invoke_bench):
    root, keys = filled
    got = invoke_bench("cache", "list", "--verify", "--cache-dir", str(root))
    assert got.returncode == 0, got.stderr
    lines = {line.split()[0]: line for line in got.stdout.splitlines()[2:] if line.startswith("  ")}
    assert lines[keys["ok"][:12]].endswith(" ok") and lines[keys["old"][:12]].endswith(" ok")
    assert "stale: trained by other bench training code (0123456789abcdef; now " in lines[keys["code"][:12]]
    assert "stale: trained with torch 1.0.0 (now " in lines[keys["torch"][:12]]
    assert "stale: trained before cache keys held what trained them" in lines[keys["unkeyed"][:12]]
    assert "corrupt: weights SHA-256 does not match" in lines[keys["corrupt"][:12]]
    assert lines[keys["corrupt"][:12]].split()[1:6] == ["original", "digits", "/", "mlp", "/"]  # as its metadata says (it was "? / ? / ?")
    assert "6 entries" in got.stdout and "(4 that this bench can never reuse" in got.stdout
    assert "quarantine/ 1 item(s)" in got.stdout and "ray_results/ 3 item(s)" in got.stdout
    assert "foreign 3 file(s)" in got.stdout and "3 file(s) in " in got.stdout and "mlflow-schema/ 0 item(s)" in got.stdout
    # without --verify the weights' sizes are checked, not their bytes (a large cache listed in seconds)
    quick = invoke_bench("cache", "--cache-dir", str(root))
    line = next(x for x in quick.stdout.splitlines() if x.startswith(f"  {keys['corrupt'][:12]}"))
    assert line.endswith(" ok")
    data = json.loads(invoke_bench("cache", "list", "--json", "--cache-dir", str(root)).stdout)
    assert {e["key"] for e in data["entries"]} == set(keys.values())
    assert data["folders"]["ray_results"]["items"] == 3
    # the README's `bench cache [list] ... [--json] [--verify]`: the flags work without `list` too
    # (they were the subcommand's only: "No such option '--json'", exit 2)
    assert json.loads(invoke_bench("cache", "--json", "--cache-dir", str(root)).stdout) == data
    assert json.loads(invoke_bench("cache", "--json", "list", "--cache-dir", str(root)).stdout) == data
    verified = invoke_bench("cache", "--verify", "--cache-dir", str(root))
    assert verified.returncode == 0 and "corrupt: weights SHA-256 does not match" in verified.stdout, verified.stderr


def test_prune_removes_what_can_never_be_reused_and_keeps_the_rest(filled, invoke_bench):
    root, keys = filled
    before = sorted(p.name for p in root.rglob("*"))
    dry = invoke_bench("cache", "--cache-dir", str(root), "prune", "--dry-run")  # the group's option: this cache
    assert dry.returncode == 0 and "nothing removed" in dry.stdout, dry.stderr
    assert dry.stdout.count("would remove ") == 5  # 4 entries and the quarantine
    assert sorted(p.name for p in root.rglob("*")) == before

    done = invoke_bench("cache", "prune", "--cache-dir", str(root))
    assert done.returncode == 0, done.stderr
    assert "2 entries kept" in done.stdout
    left = {p.name.split(".")[0] for p in root.glob("*.json")} - {"notes", "foo"}
    assert left == {keys["ok"], keys["old"]}
    assert not any((root / "quarantine").iterdir()) and len(list((root / "ray_results").iterdir())) == 3
    assert ReferenceCache(root).inspect(keys["ok"])[0] is not None  # what stays still verifies
    assert sorted(p.name for p in root.glob("*.*")) == sorted(["foo.bar.json", "mine.safetensors", "notes.json", *(
        f"{keys[k]}.{ext}" for k in ("ok", "old") for ext in ("json", "safetensors"))])

    unused = invoke_bench("cache", "prune", "--unused-days", "30", "--ray-results", "--cache-dir", str(root))
    assert unused.returncode == 0, unused.stderr
    assert f"removed {keys['old'][:12]} original digits / mlp / 1" in unused.stdout and "unused since" in unused.stdout
    assert {p.name.split(".")[0] for p in root.glob("*.json")} - {"notes", "foo"} == {keys["ok"]}
    assert [p.name for p in (root / "ray_results").iterdir()] == ["bench-2-running"]
    assert "keeping 1 item(s) of ray_results/ changed in the last hour" in unused.stdout


def test_a_hit_is_a_use(tmp_path):
    """Runs look entries up with check() (references, shadows) and get(): both are uses; a listing is not."""
    cache = ReferenceCache(tmp_path)
    key = _put(cache, 0, trained_with("cpu", 1))
    month = time.time() - 40 * 86400
    meta = tmp_path / f"{key}.json"
    for use in (cache.check, cache.get):
        os.utime(meta, (month, month))
        assert cache.inspect(key)[0] is not None and meta.stat().st_mtime == pytest.approx(month)
        assert use(key) is not None
        assert time.time() - meta.stat().st_mtime < 60


def test_prune_keeps_an_entry_a_run_holds_and_survives_links(filled, invoke_bench):
    from bench.core.cache_lock import key_lock

    root, keys = filled
    (root / "ray_results" / "gone").symlink_to(root / "nowhere")  # dangling, from a month ago
    month = time.time() - 40 * 86400
    os.utime(root / "ray_results" / "gone", (month, month), follow_symlinks=False)
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine\n")
    (root / "quarantine" / "linked").symlink_to(outside, target_is_directory=True)
    with key_lock(root, keys["code"]):  # a run rebuilding it holds its lock
        got = invoke_bench("cache", "prune", "--ray-results", "--cache-dir", str(root))
    assert got.returncode == 0, got.stdout + got.stderr
    assert f"kept {keys['code'][:12]} original digits / mlp / 2: in use by a run" in got.stdout
    assert f"removed {keys['code'][:12]}" not in got.stdout and f"removing {keys['code'][:12]}" not in got.stdout
    assert (root / f"{keys['code']}.json").exists() and not (root / f"{keys['torch']}.json").exists()
    assert (outside / "keep.txt").read_text() == "mine\n"  # the link is removed, never what it points to
    assert not (root / "quarantine" / "linked").is_symlink() and not (root / "ray_results" / "gone").is_symlink()


@pytest.mark.parametrize("args, message", [
    (("prune", "--unused-days", "-1"), "Bad --unused-days -1.0: expected a number of days >= 0"),
    (("prune", "--unused-days", "nan"), "Bad --unused-days nan"),
    (("list", "--cache-dir", "/no/such/cache"), "--cache-dir /no/such/cache: no such directory"),
    (("prune", "--cache-dir", ""), "Empty --cache-dir"),
    (("--json", "prune"), "bench cache --json prune: --json belongs to the listing; drop it"),
    (("--verify", "--json", "prune"), "--json and --verify belong to the listing"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, invoke_bench, args, message):
    got = invoke_bench("cache", *args, *(() if "--cache-dir" in args else ("--cache-dir", str(tmp_path))))
    assert got.returncode == 2 and message in got.stderr and len(got.stderr.strip().splitlines()) == 1, got.stderr


def test_no_default_cache_yet_is_said_not_an_error(tmp_path, invoke_bench):
    got = invoke_bench("cache", env={"XDG_CACHE_HOME": str(tmp_path / "fresh")})
    assert got.returncode == 0 and "no reference cache yet at" in got.stderr


def test_an_entry_is_decided_again_under_its_lock(tmp_path):
    """Chosen at the scan, rebuilt by a run before prune took its lock: kept (it was deleted)."""
    from bench.run.cache_admin import remove_entry

    key = _put(ReferenceCache(tmp_path), 0, trained_with("cpu", 1))
    assert remove_entry(tmp_path, key, lambda e: False) == "changed since the scan (a run rebuilt or used it)"
    assert (tmp_path / f"{key}.json").exists()
    assert remove_entry(tmp_path, key, lambda e: e.stale is None and e.corrupt is None) is None
    assert not (tmp_path / f"{key}.json").exists() and not (tmp_path / f"{key}.safetensors").exists()


def test_unfinished_writes_are_listed_and_pruned_once_an_hour_old(tmp_path, invoke_bench):
    """An entry's temporary file left by a kill during its write was counted as foreign and never
    removed (cache audit, 2026-12-07); one changed in the last hour may be a write under way."""
    root = tmp_path / "cache"
    _put(ReferenceCache(root), 0, trained_with("cpu", 1))
    old, fresh = root / ".0123456789ab.k2j3h4.tmp", root / ".ba9876543210.x1y2z3.tmp"
    old.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y" * 10)
    month = time.time() - 40 * 86400
    os.utime(old, (month, month))
    listed = invoke_bench("cache", "list", "--cache-dir", str(root))
    assert "unfinished writes 2 file(s)" in listed.stdout and "foreign 0 file(s)" in listed.stdout, listed.stdout
    assert "bench cache prune" in listed.stdout
    pruned = invoke_bench("cache", "prune", "--cache-dir", str(root))
    assert pruned.returncode == 0, pruned.stderr
    assert "removing unfinished writes: 1 item(s)" in pruned.stdout
    assert "keeping 1 item(s) of unfinished writes changed in the last hour" in pruned.stdout, pruned.stdout
    assert not old.exists() and fresh.exists() and len(list(root.glob("*.json"))) == 1


def test_a_file_where_a_cache_folder_belongs_is_warned_about(tmp_path, invoke_bench):
    """A run stops in one line when "quarantine" or "locks" is a file; the listing said "0 item(s)"
    (diff review, 2026-12-07)."""
    root = tmp_path / "cache"
    _put(ReferenceCache(root), 0, trained_with("cpu", 1))
    (root / "quarantine").write_text("")
    listed = invoke_bench("cache", "list", "--cache-dir", str(root))
    assert listed.returncode == 0, listed.stderr
    assert f"warning: {root / 'quarantine'} is a file, not a folder: runs that need quarantine/ stop there" in listed.stdout
