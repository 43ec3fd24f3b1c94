"""Helpers shared by the built-in dataset plugins: spec options, normalisation, input bounds,
and the errors for missing or unreadable files. Imports no torch at module import time."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.core.errors import BenchError, DataFilesMissing


def parse_options(name: str, arg: str | None, defaults: Mapping[str, Any], *, path: bool = False,
                  example: str = "") -> dict[str, Any]:
    """Parse ``KEY=VALUE`` options of a dataset spec, typed like their defaults.

    With ``path=True`` the spec starts with a file path (``csv:data/x.csv,label=target``): the
    path is everything before the first ``,KEY=VALUE`` whose KEY is a known option (so a path may
    contain commas), returned under ``"path"``.
    """
    opts = dict(defaults)
    parts = arg.split(",") if arg else []
    if path:
        cut = len(parts)
        for i in range(1, len(parts)):
            key = parts[i].partition("=")[0].strip()
            if "=" in parts[i] and key in defaults:
                cut = i
                break
        opts["path"] = ",".join(parts[:cut]).strip()
        parts = parts[cut:]
        if not opts["path"]:
            raise BenchError(f"Dataset '{name}' needs a path: {example}")
    seen: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if sep and key in seen and seen[key] != value:  # csv:x.csv,label=a,label=b took b without a word
            raise BenchError(f"Bad {name} spec: {key} is set twice ({seen[key]!r}, {value!r}); give it once.")
        seen[key] = value
        if not sep or key not in defaults:
            raise BenchError(
                f"Bad {name} option '{part}': expected KEY=VALUE with KEY one of {', '.join(defaults) or '(none)'}"
                f"{', e.g. ' + example if example else ''}."
            )
        kind = type(defaults[key]) if defaults[key] is not None else str
        try:
            opts[key] = kind(value)
        except ValueError:
            raise BenchError(f"Bad {name} option '{part}': {key} must be {kind.__name__}.") from None
    return opts


def require_file(path: Path, dataset: str, how: str) -> Path:
    """``path`` if it is a file, else a :class:`DataFilesMissing` naming it and how to get it (for a
    dataset's own files under the data directory, not for a path the user gave in the spec)."""
    if not path.is_file():
        raise DataFilesMissing(f"Dataset '{dataset}': file not found: {path}. {how}")
    return path


def channel_bounds(mean: Sequence[float], std: Sequence[float], lo: float = 0.0, hi: float = 1.0):
    """Input bounds of ``(x - mean) / std`` for raw pixels in ``[lo, hi]``: one (lo, hi) list each,
    per channel (a float pair for a single channel)."""
    los = [(lo - m) / s for m, s in zip(mean, std, strict=True)]
    his = [(hi - m) / s for m, s in zip(mean, std, strict=True)]
    if len(los) == 1:
        return (float(los[0]), float(his[0]))
    return ([float(v) for v in los], [float(v) for v in his])


def channel_std(std) -> float:
    """A channel's standard deviation to divide by: 1 for a channel (near) constant over the training
    split, as the csv loader does. A floor of 1e-6 put its input bounds near +-1e6 (which the
    boundary methods, l2ul's anchor inputs and PRUNE's input box use) and, the float32 mean off in
    its seventh digit, its normalised value at -1.73, not 0 (dataset audit, 2026-12-07)."""
    return float(std) if float(std) > 1e-6 else 1.0


def normalize_images(x, mean: Sequence[float], std: Sequence[float]):
    """``(x - mean) / std`` per channel, in place, for a float tensor (N, C, H, W)."""
    import torch

    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def stratified_split(y, test_fraction: float, seed: int, dataset: str):
    """Sorted train and test indices, stratified by label, seeded (independent of the trial seed)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise BenchError(f"Dataset '{dataset}': test fraction must lie in (0, 1); got {test_fraction}.")
    idx = np.arange(len(y))
    counts = np.bincount(y)
    strat = y if counts[counts > 0].min() >= 2 else None
    try:
        tr, te = train_test_split(idx, test_size=test_fraction, stratify=strat, random_state=seed)
    except ValueError as exc:  # e.g. fewer test rows than classes: one of each class cannot be held out
        raise BenchError(f"Dataset '{dataset}': cannot split {len(y)} examples of {int((counts > 0).sum())} classes "
                         f"into train and test with test={test_fraction} ({exc}); give a larger test fraction (e.g. "
                         f"test=0.5) or more rows per class.") from None
    return np.sort(tr), np.sort(te)
