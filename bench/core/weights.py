"""Reading model weights from a file, safely: safetensors, or a torch state dict read with
``torch.load(weights_only=True)`` (tensors and plain containers only: an arbitrary pickle is
refused, never run). A checkpoint that wraps the state dict under ``state_dict``, ``model`` or
``model_state_dict`` is unwrapped. Used by ``--original`` (``bench.run.original``) and by timm
models started from a local pretrained file (``bench.nn.models``). Every failure is one
:class:`BenchError` line naming the file (``where``) and what to do."""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.cache import sha256_bytes
from bench.core.errors import BenchError

#: Keys of a checkpoint dict that may hold the state dict itself ("net": kuangliu/pytorch-cifar's
#: ``{'net': ..., 'acc': ..., 'epoch': ...}``, the training code ``resnet18-cifar`` follows).
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")

USAGE = ("Give the state dict of the same architecture: safetensors.torch.save_file(model.state_dict(), PATH) "
         "or torch.save(model.state_dict(), PATH)")


@dataclass(frozen=True)
class Weights:
    """A weights file as read: its absolute path, the SHA-256 of its bytes, format and tensors."""

    path: str
    sha256: str
    format: str  # "safetensors" or "torch"
    state: dict  # name -> tensor (CPU)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    return sha256_bytes(Path(path).read_bytes())


def shown(names, limit: int = 4) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def read_weights(path: str | Path, where: str) -> Weights:
    """Read ``path`` as safetensors or as a ``weights_only`` torch state dict; refuse anything else.
    ``where`` starts every error line (e.g. ``"--original PATH (for --model mlp)"``)."""
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        what = "a directory, not a file" if p.is_dir() else "no such file"
        raise BenchError(f"{where}: {what}. Give the path of a .safetensors or torch state-dict file.")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BenchError(f"{where}: cannot read it ({exc.strerror or exc}). Check the path and its permissions.") from None
    state, fmt = _safetensors(data), "safetensors"
    if state is None and len(data) >= 10 and data[8:9] == b"{":  # a safetensors header whose tensors do not follow
        raise BenchError(f"{where}: a damaged safetensors file (its header does not match the bytes after it: "
                         f"truncated?). Save the weights again. {USAGE}.")
    if state is None:
        fmt = "torch"
        if not (data[:4] == b"PK\x03\x04" or data[:1] == b"\x80"):  # torch.save's zip, or a bare pickle
            raise BenchError(f"{where}: neither a safetensors file nor a torch state dict (it starts with "
                             f"{data[:8]!r}). {USAGE}.")
        try:
            with warnings.catch_warnings():  # torch warns about legacy pickles before refusing them: one line, below
                warnings.simplefilter("ignore")
                state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln]
            why = f" ({lines[0][:160]})" if lines else ""
            raise BenchError(f"{where}: the file holds objects other than tensors, which are never unpickled: it is "
                             f"read with torch.load(weights_only=True){why}. {USAGE}.") from None
        except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, AttributeError, ImportError) as exc:
            raise BenchError(f"{where}: neither a safetensors file nor a torch state dict ({type(exc).__name__}: "
                             f"{str(exc)[:160]}). {USAGE}.") from None
    state = _unwrap(state, where)
    return Weights(path=str(p.resolve()), sha256=sha256_bytes(data), format=fmt, state=state)


def _safetensors(data: bytes) -> dict | None:
    """The tensors of a safetensors file, or None when ``data`` is not one."""
    if len(data) < 10 or data[8:9] != b"{":  # an 8-byte header length, then the JSON header
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError):
        return None


def _unwrap(state: Any, where: str) -> dict:
    import torch

    if isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
        if inner is not None:
            state = inner
    if not isinstance(state, dict) or not state:
        raise BenchError(f"{where}: expected a state dict (tensor name -> tensor), found "
                         f"{'an empty dict' if isinstance(state, dict) else type(state).__name__}. {USAGE}.")
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BenchError(f"{where}: entries {shown(bad)} are not tensors; expected a state dict of tensors only. {USAGE}.")
    return {str(k): v for k, v in state.items()}


