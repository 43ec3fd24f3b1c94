"""Content-addressed cache of trained reference models (safetensors, never pickle).

A reference (the original model, or a model retrained on the retain set) is identified by
the SHA-256 of a canonical JSON document: the cache format version, the kind, the dataset
spec and the SHA-256 of its training tensors, the model spec, input shape and classes, the
training recipe, the seed and, for retrained models, the SHA-256 of the forget indices.
Each entry is ``<key>.safetensors`` (the state dict) plus ``<key>.json`` (that document, the
training time and when it was made), written atomically. Default directory:
``$XDG_CACHE_HOME/unlearning-bench`` (``~/.cache/unlearning-bench``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

FORMAT = 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
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
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return save(state)


def load_state(model, data: bytes) -> None:
    """Load safetensors bytes into ``model`` (strict: every key must match)."""
    from safetensors.torch import load

    state = load(data)
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=True)


class ReferenceCache:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.safetensors", self.root / f"{key}.json"

    def get(self, key: str) -> tuple[bytes, dict] | None:
        weights, meta = self._paths(key)
        if not (weights.is_file() and meta.is_file()):
            return None
        return weights.read_bytes(), json.loads(meta.read_text())

    def put(self, key: str, data: bytes, meta: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        weights, meta_path = self._paths(key)
        for path, payload in ((weights, data), (meta_path, json.dumps(meta, indent=1, sort_keys=True).encode())):
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{key[:12]}.")
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.replace(tmp, path)
