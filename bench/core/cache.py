"""Content-addressed, verified cache of trained reference models (safetensors, never pickle).

A reference (the original model, a model retrained on the retain set, a method's own original,
an attack's shadow model) is identified by the SHA-256 of a canonical JSON document: the key
format version, the kind, the dataset spec and the SHA-256 of its training tensors, the model
spec, input shape and classes, the training recipe, the seed, what it was trained with (bench's
training code, torch's version, the device type and CPU threads: ``bench.run.trained_with``) and,
for retrained models, the SHA-256 of the forget indices. Default directory: ``$XDG_CACHE_HOME/unlearning-bench``
(``~/.cache/unlearning-bench``).

Each entry is ``<key>.safetensors`` (the state dict) plus ``<key>.json``, the metadata: the
document, the training time, when it was made, and the integrity fields (``entry_format`` 2,
``key``, ``weights_sha256`` and ``weights_bytes`` of the weights file, and ``meta_sha256``
over the rest of the metadata). Both files are written atomically (temporary file, fsync,
rename), the weights first and the metadata last, so a crash in between leaves weights without
metadata: a miss, rebuilt. Every read is verified: the metadata must parse, its own digest and
its ``key`` must match, its document must hash to the key, and the weights must have the
recorded size and SHA-256. An entry that fails (zeroed, truncated or overwritten weights,
edited or unparsable metadata, one file missing, or a format-1 entry from before digests were
recorded, which cannot be verified) is never used: it is moved to
``<cache>/quarantine/<UTC time>-<key>/`` with a ``reason.txt``, reported in one line, and
rebuilt. A hit sets the metadata file's modification time: its last use (``bench cache``).
Writers hold a per-key lock (``bench.core.cache_lock``) so that concurrent runs
sharing the directory train each entry once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.core.cache_lock import holder, keys_locked
from bench.core.errors import BenchError

FORMAT = 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "")  # a relative value is ignored, as the XDG spec says
    base = base if os.path.isabs(base) else os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "unlearning-bench"


def sha256_bytes(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def tensor_digest(*tensors) -> str:
    """SHA-256 over dtype, shape and bytes of CPU tensors or NumPy arrays."""
    import numpy as np

    h = hashlib.sha256()
    for t in tensors:
        a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cache_key(document: dict[str, Any]) -> str:
    doc = {"format": FORMAT, **document}
    return sha256_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


def state_to_bytes(model) -> bytes:
    return model_bytes(model, None)


def model_bytes(model, metadata: dict[str, str] | None) -> bytes:
    """``model``'s state dict as safetensors bytes, with ``metadata`` (strings) in the file's header."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return save(state, metadata=metadata)


def load_state(model, data: bytes) -> None:
    """Load safetensors bytes into ``model`` (strict: every key must match)."""
    from safetensors.torch import load

    state = load(data)
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=True)


def safetensors_problem(data: bytes) -> str | None:
    """Why ``data`` is not a safetensors file (its 8-byte header length, then a JSON object of that
    length), None when it is one; the tensors themselves are read by :func:`load_state`."""
    if len(data) < 8:
        return f"weights are not a safetensors file ({len(data)} bytes)"
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        return "weights are not a safetensors file (their header length exceeds the file)"
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        return "weights are not a safetensors file (no JSON header)"
    return None


#: Layout of an entry's metadata; 1 had no digests (its entries are rebuilt), 2 records them.
ENTRY_FORMAT = 2
_INTEGRITY = ("entry_format", "key", "weights_sha256", "weights_bytes", "meta_sha256")


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same directory: write, fsync,
    rename, fsync the directory. A reader sees the old file, or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:12]}.", suffix=".tmp")
    try:
        # mkstemp's 0600 made another user of a shared cache quarantine and retrain every entry: the
        # mode a plain open() gives, under this process's umask (cache audit, 2026-12-07)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    """This process's umask: from /proc (Linux), else by setting it and putting it back (a moment in
    which another thread's new file would get 022)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class ReferenceCache:
    """The cache at ``root``. :meth:`get` returns a verified entry or None (a corrupt one is moved
    aside and reported through ``say``); :meth:`put` writes one; :meth:`locked` holds the per-key
    locks around a check-train-put."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.safetensors", self.root / f"{key}.json"

    def check(self, key: str) -> tuple[tuple[bytes, dict] | None, str | None]:
        """Read and verify ``key`` for use: ``(entry, None)`` when it is intact, ``(None, None)``
        when there is no entry, ``(None, what is wrong)`` otherwise. An intact entry is a hit, so
        its metadata file's modification time, its last use, is set (``bench cache``; a read-only
        cache keeps none); :meth:`inspect` reads without that."""
        found = self.inspect(key)
        if found[0] is not None:
            with contextlib.suppress(OSError):
                os.utime(self._paths(key)[1])
        return found

    def inspect(self, key: str, weights_digest: bool = True) -> tuple[tuple[bytes, dict] | None, str | None]:
        """:meth:`check` without side effects. Without ``weights_digest`` the weights' size is
        checked but their bytes are neither read nor hashed (``bench cache list``; the entry's
        first element is then ``b""``)."""
        weights, meta_path = self._paths(key)
        try:
            raw = meta_path.read_bytes()
        except FileNotFoundError:
            return None, None  # no entry, or weights whose metadata was never written: a miss
        except OSError as e:
            return None, f"metadata unreadable ({e.strerror or e})"
        try:
            meta = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            return None, f"metadata is not valid JSON ({e})"
        if not isinstance(meta, dict):
            return None, "metadata is not a JSON object"
        if "weights_sha256" not in meta:
            return None, "format-1 entry without a recorded digest (unverifiable)"
        body = {k: v for k, v in meta.items() if k != "meta_sha256"}
        if meta.get("meta_sha256") != sha256_bytes(_canonical(body)):
            return None, "metadata was modified (its digest does not match)"
        if meta.get("key") != key:
            return None, f"metadata belongs to key {str(meta.get('key'))[:12]}"
        if "document" in meta and cache_key(meta["document"]) != key:
            return None, "metadata document does not hash to the key"
        if not weights_digest:
            try:
                size = weights.stat().st_size
            except FileNotFoundError:
                return None, "weights file missing"
            except OSError as e:
                return None, f"weights unreadable ({e.strerror or e})"
            if size != meta.get("weights_bytes"):
                return None, f"weights are {size} bytes, {meta.get('weights_bytes')} recorded (truncated or overwritten)"
            return (b"", meta), None
        try:
            data = weights.read_bytes()
        except FileNotFoundError:
            return None, "weights file missing"
        except OSError as e:
            return None, f"weights unreadable ({e.strerror or e})"
        if len(data) != meta.get("weights_bytes"):
            return None, f"weights are {len(data)} bytes, {meta.get('weights_bytes')} recorded (truncated or overwritten)"
        if sha256_bytes(data) != meta["weights_sha256"]:
            return None, "weights SHA-256 does not match the recorded digest (corrupted)"
        problem = safetensors_problem(data)
        if problem:  # written so (a pickle put through put()): a raw traceback in every run, `ok` to --verify
            return None, problem
        return (data, meta), None

    def get(self, key: str, say: Callable[[str], None] | None = None) -> tuple[bytes, dict] | None:
        """The verified entry ``(weights bytes, metadata)``, or None. An entry that fails
        verification is moved to the quarantine and reported in one line through ``say``, so the
        caller rebuilds it; call it holding the key's lock (:meth:`locked`) when others may write."""
        entry, problem = self.check(key)
        if problem is None:
            return entry
        where = self.quarantine(key, problem)
        if say is not None:
            moved = f"moved to {where}" if where is not None else "already moved by another process"
            say(f"cache entry {key[:12]} is corrupt: {problem}; {moved}; rebuilding it")
        return None

    def quarantine(self, key: str, reason: str) -> Path | None:
        """Move whatever files ``key`` has to ``<root>/quarantine/<UTC time>-<key>/`` with a
        ``reason.txt``; the folder, or None when nothing was left to move."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        dest = self.root / "quarantine" / f"{stamp}-{key}"
        moved = False
        for path in self._paths(key)[::-1]:  # the metadata first: without it the entry is a miss
            try:
                dest.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest / path.name)
                moved = True
            except FileNotFoundError:
                continue
            except OSError as exc:  # "quarantine" a file, not a folder: a traceback (cache audit, 2026-12-07)
                raise BenchError(f"Cannot move corrupt cache entry {key[:12]} to {dest} ({exc.strerror or exc}). "
                                 f"Check {self.root / 'quarantine'}: it must be a folder bench can write "
                                 f"(remove whatever is there), or point --cache-dir elsewhere.") from None
        if not moved:
            with contextlib.suppress(OSError):
                dest.rmdir()
            return None
        (dest / "reason.txt").write_text(f"{key}: {reason}\n")
        return dest

    def put(self, key: str, data: bytes, meta: dict) -> dict:
        """Write an entry atomically: the weights, then the metadata with their digest (what a
        later :meth:`get` verifies). Returns the metadata as written."""
        self.root.mkdir(parents=True, exist_ok=True)
        weights, meta_path = self._paths(key)
        body = {k: v for k, v in meta.items() if k not in _INTEGRITY}
        body.update(entry_format=ENTRY_FORMAT, key=key, weights_sha256=sha256_bytes(data), weights_bytes=len(data))
        full = {**body, "meta_sha256": sha256_bytes(_canonical(body))}
        try:
            with contextlib.suppress(FileNotFoundError):
                meta_path.unlink()  # an old entry stops being one before its weights change
            _write_atomic(weights, data)
            _write_atomic(meta_path, json.dumps(full, indent=1, sort_keys=True).encode())
        except OSError as exc:  # a full disk was a traceback (cache audit, 2026-12-07)
            raise BenchError(f"Cannot write cache entry {key[:12]} in {self.root} ({exc.strerror or exc}). Free space "
                             f"there, or point --cache-dir (or XDG_CACHE_HOME) at a disk with room; the trials "
                             f"recorded before are kept.") from None
        return full

    def locked(self, keys: Iterable[str], say: Callable[[str], None] | None = None):
        """Context manager holding the locks of ``keys`` (sorted; see ``bench.core.cache_lock``);
        says once per key it has to wait for."""
        def on_wait(key: str) -> None:
            if say is not None:
                pid = holder(self.root, key)
                say(f"waiting     for another process{f' (pid {pid})' if pid else ''} building cache entry {key[:12]}")

        return keys_locked(self.root, keys, on_wait)
