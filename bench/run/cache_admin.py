"""``bench cache``: what the reference cache holds, and pruning what this bench can never reuse.

An entry (``bench.core.cache``) is reused only under its exact key, which holds what trained it
(``bench.run.trained_with``: bench's training code, torch's version, the device type and threads).
After bench's training code or torch changes, the entries trained before stay on disk and are
never hit again: they are *stale*. Next to the entries the cache keeps ``quarantine/`` (entries
that failed verification, kept for inspection), ``ray_results/`` (Ray Tune's state and log of
every run; MLflow holds the results and tracebacks) and ``locks/`` (one small lock file per key,
never deleted: ``bench.core.cache_lock``). Files that are not entries (a name other than
``<64 hex digits>.json|.safetensors``) are counted as foreign and never touched.

"Stale" is relative to the bench and torch running ``bench cache``: another installation sharing
the directory (another checkout, another torch) may still use them. It is also a lower bound:
an entry that the current code no longer reaches for another reason (a method's own original
after its method's code changed, a model plugin's new version) shows as ``ok`` and goes with
``--unused-days``. Last use is the metadata file's modification time, which every hit sets
(``ReferenceCache.check``).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.core.cache import ReferenceCache
from bench.core.cache_lock import key_lock_if_free

#: an entry's file name: its key (SHA-256, hex) and one of its two suffixes
ENTRY_FILE = re.compile(r"^([0-9a-f]{64})\.(json|safetensors)$")
#: the temporary file of an entry's write that a kill cut short (``bench.core.cache._write_atomic``:
#: ``.<12 hex digits of the key>.<random>.tmp``), listed and pruned as :data:`PARTIAL` (they were
#: counted as foreign and never removed; cache audit, 2026-12-07)
PARTIAL_FILE = re.compile(r"^\.[0-9a-f]{12}\..+\.tmp$")
PARTIAL = "unfinished writes"
#: the folders next to the entries (``mlflow-schema/``: bench's empty MLflow store per MLflow version,
#: ``bench.track.store``; listed, never pruned)
FOLDERS = ("quarantine", "ray_results", "locks", "mlflow-schema")


@dataclass
class Entry:
    key: str
    kind: str
    setting: str  # dataset / model / seed
    bytes: int
    created: str
    last_used: float  # seconds since the epoch
    #: why this bench can never hit it (stale), or what is wrong with it (corrupt); None: reusable
    stale: str | None = None
    corrupt: str | None = None


def size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder; links count as their own few bytes."""
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_symlink() or p.is_file())
    except OSError:  # gone meanwhile
        return 0


def stale_reason(document: dict, code: str, torch_version: str) -> str | None:
    """Why an entry with key document ``document`` is never hit by this bench and torch, or None."""
    made = document.get("trained_with")
    if not isinstance(made, dict):
        return "trained before cache keys held what trained them"
    if made.get("code") != code:
        return f"trained by other bench training code ({made.get('code')}; now {code})"
    if made.get("torch") != torch_version:
        return f"trained with torch {made.get('torch')} (now {torch_version})"
    return None


def _identity() -> tuple[str, str]:
    import torch

    from bench.run.trained_with import training_code_digest

    return training_code_digest(), torch.__version__


def _readable_metadata(path: Path) -> dict:
    """The JSON object of an entry's metadata file as it is, unverified ({} when unreadable): what a
    corrupt entry lists as (it showed "? / ? / ?" when only its weights were damaged)."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def describe(root: Path, key: str, verify: bool, identity: tuple[str, str]) -> Entry:
    """The entry ``key`` as this bench sees it; ``verify``: hash the weights too (else their size)."""
    meta_path, weights = root / f"{key}.json", root / f"{key}.safetensors"
    nbytes = sum(size(p) for p in (meta_path, weights) if p.exists())
    entry, problem = ReferenceCache(root).inspect(key, weights_digest=verify)
    if entry is None and problem is None:
        problem = "weights without metadata (a write that did not finish)"
    meta = entry[1] if entry is not None else _readable_metadata(meta_path)  # a corrupt entry: what it says it is
    doc = meta.get("document", {}) if isinstance(meta.get("document"), dict) else {}
    setting = " / ".join(str(doc.get(k, "?")) for k in ("dataset", "model", "seed"))
    try:
        used = (meta_path if meta_path.exists() else weights).stat().st_mtime
    except OSError:
        used = 0.0
    return Entry(key, str(doc.get("kind", "?")), setting, nbytes, str(meta.get("created", "?")), used,
                 stale=stale_reason(doc, *identity) if entry is not None else None, corrupt=problem)


def scan(root: Path, verify: bool = True) -> tuple[list[Entry], dict[str, tuple[int, int]]]:
    """The entries under ``root`` and, for each of :data:`FOLDERS` and the foreign files,
    (items, bytes). ``verify``: hash every weights file (as a run does) rather than check its size."""
    identity = _identity()
    keys, foreign, partial = set(), [], []
    for path in root.iterdir():
        match = ENTRY_FILE.match(path.name)
        if match and not path.is_dir():
            keys.add(match.group(1))
        elif PARTIAL_FILE.match(path.name) and path.is_file() and not path.is_symlink():
            partial.append(path)
        elif path.name not in FOLDERS:
            foreign.append(path)
    entries = [describe(root, key, verify, identity) for key in sorted(keys)]
    extras = {}
    for name in FOLDERS:
        folder = root / name
        items = list(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else []
        extras[name] = (len(items), sum(size(p) for p in items))
    extras[PARTIAL] = (len(partial), sum(size(p) for p in partial))
    extras["foreign"] = (len(foreign), sum(size(p) for p in foreign))
    return entries, extras


def remove_entry(root: Path, key: str, still: Callable[[Entry], bool]) -> str | None:
    """Delete ``key``'s files if no run holds its lock and ``still`` holds for the entry as it is
    now, under the lock (a run may have rebuilt it since the scan); the metadata first, so that a
    reader never takes weights for an entry. None when removed, else why it was kept."""
    with key_lock_if_free(root, key) as free:
        if not free:
            return "in use by a run (it holds the entry's lock)"
        if not still(describe(root, key, True, _identity())):
            return "changed since the scan (a run rebuilt or used it)"
        for path in (root / f"{key}.json", root / f"{key}.safetensors"):
            path.unlink(missing_ok=True)
    return None


def select(entries: list[Entry], unused_days: float | None) -> tuple[list[Entry], Callable[[Entry], bool]]:
    """The entries ``bench cache prune`` removes (stale and corrupt ones, and with ``unused_days``
    those not used for that many days), and the rule, to apply again under each entry's lock."""
    cutoff = None if unused_days is None else time.time() - unused_days * 86400

    def rule(e: Entry) -> bool:
        return bool(e.stale or e.corrupt or (cutoff is not None and e.last_used < cutoff))

    return [e for e in entries if rule(e)], rule


#: Ray Tune's folders changed this recently (seconds) are kept: a run may be writing them
LIVE_SECONDS = 3600


def _changed(path: Path) -> float:
    """The latest modification time under ``path`` (links: their own; vanished files: none)."""
    times = []
    for p in [path, *(path.rglob("*") if path.is_dir() and not path.is_symlink() else ())]:
        try:
            times.append(p.lstat().st_mtime)
        except OSError:
            continue
    return max(times, default=0.0)


def folder_items(root: Path, name: str) -> list[Path]:
    """What pruning folder ``name`` (or :data:`PARTIAL`) removes: its items, less ``ray_results``
    items and unfinished writes changed in the last :data:`LIVE_SECONDS` (a running run's state and
    log, a write under way)."""
    if name == PARTIAL:
        items = sorted(p for p in root.iterdir() if PARTIAL_FILE.match(p.name) and p.is_file() and not p.is_symlink())
        return [p for p in items if time.time() - _changed(p) > LIVE_SECONDS]
    folder = root / name
    items = sorted(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else []
    if name == "ray_results":
        items = [p for p in items if time.time() - _changed(p) > LIVE_SECONDS]
    return items


def remove_item(item: Path) -> str | None:
    """Delete a file, a link (never what it points to) or a folder; None, or what went wrong."""
    try:
        if item.is_symlink() or not item.is_dir():
            item.unlink(missing_ok=True)
        else:
            shutil.rmtree(item)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def as_json(entries: list[Entry], extras: dict) -> str:
    return json.dumps({"entries": [e.__dict__ for e in entries],
                       "folders": {k: {"items": n, "bytes": b} for k, (n, b) in extras.items()}}, indent=1)
