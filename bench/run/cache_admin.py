"""``bench cache``: what the reference cache holds, and pruning what this bench can never reuse.

An entry (``bench.core.cache``) is reused only under its exact key, which holds what trained it
(``bench.run.trained_with``: bench's training code, torch's version, the device type and threads).
After bench's training code or torch changes, the entries trained before stay on disk and are
never hit again: they are *stale*. Next to the entries the cache keeps ``quarantine/`` (entries
that failed verification, kept for inspection), ``ray_results/`` (Ray Tune's state and log of
every run; MLflow holds the results and tracebacks) and ``locks/`` (empty lock files, never
deleted: ``bench.core.cache_lock``).

"Stale" is relative to the bench and torch running ``bench cache``: another installation sharing
the directory (another checkout, another torch) may still use them. Last use is the metadata
file's modification time, which every cache hit sets (``ReferenceCache.get``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bench.core.cache import ReferenceCache
from bench.core.cache_lock import key_lock


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
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


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


def scan(root: Path) -> tuple[list[Entry], dict[str, tuple[int, int]]]:
    """The entries under ``root`` (verified, as a run would) and, for ``quarantine`` and
    ``ray_results``, (items, bytes)."""
    import torch

    from bench.run.trained_with import training_code_digest

    code, version = training_code_digest(), torch.__version__
    cache = ReferenceCache(root)
    entries = []
    keys = {p.name.split(".", 1)[0] for p in root.glob("*.json")} | {p.name.split(".", 1)[0] for p in root.glob("*.safetensors")}
    for key in sorted(keys):
        meta_path = root / f"{key}.json"
        nbytes = sum(size(p) for p in (meta_path, root / f"{key}.safetensors") if p.exists())
        entry, problem = cache.check(key)
        meta = entry[1] if entry is not None else {}
        if entry is None and problem is None:
            problem = "weights without metadata (a write that did not finish)"
        doc = meta.get("document", {})
        setting = " / ".join(str(doc.get(k, "?")) for k in ("dataset", "model", "seed"))
        used = next((p.stat().st_mtime for p in (meta_path, root / f"{key}.safetensors") if p.exists()), 0.0)
        entries.append(Entry(key, str(doc.get("kind", "?")), setting, nbytes, str(meta.get("created", "?")), used,
                             stale=stale_reason(doc, code, version) if entry is not None else None, corrupt=problem))
    extras = {}
    for name in ("quarantine", "ray_results"):
        folder = root / name
        items = list(folder.iterdir()) if folder.is_dir() else []
        extras[name] = (len(items), sum(size(p) for p in items))
    return entries, extras


def remove_entry(root: Path, key: str) -> None:
    """Delete ``key``'s files, holding its lock (no run is writing it meanwhile); the metadata
    first, so that a reader never sees weights-less metadata as an entry."""
    with key_lock(root, key):
        for path in (root / f"{key}.json", root / f"{key}.safetensors"):
            path.unlink(missing_ok=True)


def select(entries: list[Entry], unused_days: float | None) -> list[Entry]:
    """The entries ``bench cache prune`` removes: stale and corrupt ones, and with ``unused_days``
    those not used for that many days."""
    cutoff = None if unused_days is None else time.time() - unused_days * 86400
    return [e for e in entries if e.stale or e.corrupt or (cutoff is not None and e.last_used < cutoff)]


#: Ray Tune's folders changed this recently (seconds) are kept: a run may be writing them
LIVE_SECONDS = 3600


def _changed(path: Path) -> float:
    return max([path.stat().st_mtime, *(p.stat().st_mtime for p in path.rglob("*"))] if path.is_dir() else [path.stat().st_mtime])


def folder_items(root: Path, name: str) -> list[Path]:
    """What pruning folder ``name`` removes: its items, less ``ray_results`` items changed in the
    last :data:`LIVE_SECONDS` (a running run's state and log)."""
    folder = root / name
    items = sorted(folder.iterdir()) if folder.is_dir() else []
    if name == "ray_results":
        items = [p for p in items if time.time() - _changed(p) > LIVE_SECONDS]
    return items


def prune(root: Path, entries: list[Entry], items: list[Path]) -> int:
    """Remove ``entries`` and the files or folders ``items``; the bytes freed."""
    freed = 0
    for e in entries:
        remove_entry(root, e.key)
        freed += e.bytes
    for item in items:
        freed += size(item)
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()
    return freed


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def as_json(entries: list[Entry], extras: dict) -> str:
    return json.dumps({"entries": [e.__dict__ for e in entries],
                       "folders": {k: {"items": n, "bytes": b} for k, (n, b) in extras.items()}}, indent=1)
