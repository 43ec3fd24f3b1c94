"""Forget requests: which training points a trial asks the method to forget.

Specs: ``random:10%`` (a fraction of the training set), ``random:100`` (a count),
``class:3`` (every training point of a class), ``indices:PATH`` (one training index per
line; ``#`` comments and blank lines ignored). Indices refer to the dataset's training
split. Random requests are drawn with ``numpy.random.default_rng(forget_seed)``. Every spec is
checked against the dataset before any training starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BenchError

SYNTAX = "random:10%, random:100, class:3 or indices:PATH"


@dataclass(frozen=True)
class ForgetSpec:
    text: str
    kind: str  # random | class | indices
    fraction: float | None = None
    count: int | None = None
    label: int | None = None
    path: str | None = None

    def select(self, train_y: np.ndarray, num_classes: int, forget_seed: int) -> np.ndarray:
        """Sorted int64 indices into the training split; raises BenchError if they don't fit."""
        n = len(train_y)
        if self.kind == "class":
            if not 0 <= self.label < num_classes:
                raise BenchError(
                    f"Forget request '{self.text}': unknown class {self.label}; this dataset has classes 0..{num_classes - 1}."
                )
            idx = np.flatnonzero(train_y == self.label)
            if len(idx) == 0:
                raise BenchError(f"Forget request '{self.text}': class {self.label} has no training points.")
            if len(idx) == n:
                raise BenchError(f"Forget request '{self.text}' would forget the whole training set.")
            return idx.astype(np.int64)
        if self.kind == "random":
            k = int(round(self.fraction * n)) if self.fraction is not None else self.count
            if self.count is not None and self.count >= n:
                raise BenchError(
                    f"Forget request '{self.text}': {self.count} points requested but the training set has {n}; "
                    f"ask for fewer than {n} (or a fraction, e.g. random:10%)."
                )
            k = max(1, min(k, n - 1))
            rng = np.random.default_rng(forget_seed)
            return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
        return self._read_indices(n)

    def _read_indices(self, n: int) -> np.ndarray:
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise BenchError(f"Forget request '{self.text}': no file at {path}. Give a text file with one training index per line.")
        values: list[int] = []
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BenchError(
                f"Forget request '{self.text}': cannot read {path} as a text file ({exc}). "
                f"Give one training index per line, e.g. numpy.savetxt(path, idx, fmt='%d')."
            ) from None
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                values.append(int(line))
            except ValueError:
                raise BenchError(f"Forget request '{self.text}': line {lineno} of {path} is '{line}', not an integer index.") from None
        if not values:
            raise BenchError(f"Forget request '{self.text}': {path} lists no indices (one training index per line expected).")
        arr = np.asarray(values, dtype=np.int64)
        bad = arr[(arr < 0) | (arr >= n)]
        if len(bad):
            raise BenchError(
                f"Forget request '{self.text}': indices out of range {bad[:5].tolist()}; the training set has indices 0..{n - 1}."
            )
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise BenchError(f"Forget request '{self.text}': duplicate indices {uniq[counts > 1][:5].tolist()} in {path}.")
        if len(uniq) >= n:
            raise BenchError(f"Forget request '{self.text}' would forget the whole training set ({n} points).")
        return uniq


def parse_forget(text: str) -> ForgetSpec:
    kind, sep, arg = text.partition(":")
    kind = kind.strip()
    arg = arg.strip()
    if not sep or not arg:
        raise BenchError(f"Bad forget request '{text}': expected {SYNTAX}.")
    if kind == "random":
        if arg.endswith("%"):
            try:
                pct = float(arg[:-1])
            except ValueError:
                raise BenchError(f"Bad forget request '{text}': '{arg}' is not a percentage; expected e.g. random:10%.") from None
            if not 0 < pct < 100:
                raise BenchError(f"Bad forget request '{text}': the fraction must lie strictly between 0% and 100%.")
            return ForgetSpec(text, "random", fraction=pct / 100)
        try:
            value = float(arg)
        except ValueError:
            raise BenchError(f"Bad forget request '{text}': expected random:10% or random:100.") from None
        if not math.isfinite(value):
            raise BenchError(f"Bad forget request '{text}': expected random:10% or random:100.")
        if value != int(value) or "." in arg:
            if 0 < value < 1:
                return ForgetSpec(text, "random", fraction=value)
            raise BenchError(
                f"Bad forget request '{text}': a fraction must lie strictly between 0 and 1 (e.g. random:0.1 or random:10%)."
            )
        if value < 1:
            raise BenchError(f"Bad forget request '{text}': the count must be at least 1.")
        return ForgetSpec(text, "random", count=int(value))
    if kind == "class":
        try:
            return ForgetSpec(text, "class", label=int(arg))
        except ValueError:
            raise BenchError(f"Bad forget request '{text}': expected an integer class label, e.g. class:3.") from None
    if kind == "indices":
        return ForgetSpec(text, "indices", path=arg)
    raise BenchError(f"Unknown forget request kind '{kind}' in '{text}': expected {SYNTAX}.")
