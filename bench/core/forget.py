"""Forget requests: which training points a trial asks the method to forget.

Specs: ``random:10%`` (a fraction of the training set), ``random:100`` (a count),
``class:3`` (every training point of a class), ``indices:PATH`` (one training index per
line; ``#`` comments and blank lines ignored) and ``indices:RUN_ID`` (the forget set of an
earlier trial: every trial logs its indices as the MLflow artifact :data:`INDICES_ARTIFACT`, in
the ``indices:PATH`` format, see :func:`indices_text`; the run layer fetches it, so two groups can
run on exactly the same forget set). Indices refer to the dataset's training split. Random requests are drawn with ``numpy.random.default_rng(forget_seed)``. Every spec is
checked against the dataset before any training starts.

Continual (sequential) requests, applied one after the other to the model the previous one left
(``bench.run.continual``): ``seq:5x20`` (five requests of 20 distinct random training points, none
repeated across requests) and ``seq:class:1,3,5`` (every training point of class 1, then of 3,
then of 5). ``select`` returns the union of all requests; ``select_steps`` each request's indices.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError

SYNTAX = ("random:10%, random:100, class:3 or indices:PATH (a file, or indices:RUN_ID, the run id of a trial; or a "
          "sequence of requests: seq:5x20, seq:class:1,3,5)")
#: The artifact of every trial run holding its forget indices (format: :func:`indices_text`).
INDICES_ARTIFACT = "forget_indices.txt"
#: An MLflow run id: 32 lowercase hexadecimal digits.
RUN_ID = re.compile(r"[0-9a-f]{32}")
_DIGITS = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
SEQ_SYNTAX = "seq:NxK (N requests of K random training points, e.g. seq:5x20) or seq:class:A,B,... (e.g. seq:class:1,3,5)"


@dataclass(frozen=True)
class ForgetSpec:
    text: str
    kind: str  # random | class | indices | seq
    fraction: float | None = None
    count: int | None = None
    label: int | None = None
    path: str | None = None
    requests: int | None = None  # seq:NxK: N
    labels: tuple[int, ...] | None = None  # seq:class:A,B,...
    content: str | None = None  # indices:RUN_ID: the text of that run's INDICES_ARTIFACT (fetched by the run layer)
    source: str | None = None  # indices:RUN_ID: where ``content`` came from, for the messages

    @property
    def run_id(self) -> str | None:
        """The MLflow run id of an ``indices:RUN_ID`` request (no file of that name exists), else None."""
        if self.kind != "indices" or self.path is None or Path(self.path).expanduser().exists():
            return None
        return self.path if RUN_ID.fullmatch(self.path) else None

    def select_steps(self, train_y: np.ndarray, num_classes: int, forget_seed: int) -> list[np.ndarray]:
        """The requests of a ``seq:`` spec in order, each sorted int64 training indices, pairwise
        disjoint; a single request for any other spec. Raises BenchError if they don't fit."""
        if self.kind != "seq":
            return [self.select(train_y, num_classes, forget_seed)]
        n = len(train_y)
        if self.labels is not None:
            self._check_classes(train_y, num_classes)
            return [np.flatnonzero(train_y == c).astype(np.int64) for c in self.labels]
        total = self.requests * self.count
        if total >= n:
            raise BenchError(
                f"Forget request '{self.text}': {self.requests} request(s) of {self.count} point(s) need {total} distinct "
                f"training points but the training set has {n}; ask for fewer (at most {n - 1} in all)."
            )
        drawn = np.random.default_rng(forget_seed).choice(n, size=total, replace=False)
        return [np.sort(part).astype(np.int64) for part in np.split(drawn, self.requests)]

    def _check_classes(self, train_y: np.ndarray, num_classes: int) -> None:
        bad = [c for c in self.labels if not 0 <= c < num_classes]
        if bad:
            raise BenchError(f"Forget request '{self.text}': unknown class(es) {bad}; this dataset has classes 0..{num_classes - 1}.")
        empty = [c for c in self.labels if not (train_y == c).any()]
        if empty:
            raise BenchError(f"Forget request '{self.text}': class(es) {empty} have no training points.")
        if np.isin(train_y, self.labels).all():
            raise BenchError(f"Forget request '{self.text}' would forget the whole training set; leave at least one class.")

    def select(self, train_y: np.ndarray, num_classes: int, forget_seed: int, *, train_sha256: str | None = None) -> np.ndarray:
        """Sorted int64 indices into the training split (for ``seq:``, the union of its requests);
        raises BenchError if they don't fit. ``train_sha256`` (the training tensors' digest,
        ``bench.core.cache.tensor_digest``) is checked against an ``indices:`` file's header, which
        records the digest of the training set its indices were drawn from."""
        n = len(train_y)
        if self.kind == "seq":
            return np.sort(np.concatenate(self.select_steps(train_y, num_classes, forget_seed))).astype(np.int64)
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
        return self._read_indices(n, train_sha256)

    def _read_indices(self, n: int, train_sha256: str | None) -> np.ndarray:
        if self.content is not None:
            return self._parse_indices(self.content, self.source or self.path, n, train_sha256)
        path = Path(self.path).expanduser()
        if path.is_dir():  # it said "no file at DIR" (hostile audit, 2026-12-07)
            raise BenchError(f"Forget request '{self.text}': {path} is a directory. Give a text file in it with one "
                             f"training index per line, or the MLflow run id of a trial (its artifact {INDICES_ARTIFACT}).")
        if not path.is_file():
            hint = (" nor a run id the run layer resolved (an MLflow run id is 32 hexadecimal digits)"
                    if RUN_ID.fullmatch(self.path or "") else "")
            raise BenchError(f"Forget request '{self.text}': no file at {path}{hint}. Give a text file with one training "
                             f"index per line, or the MLflow run id of a trial (its artifact {INDICES_ARTIFACT}).")
        try:
            text = path.read_text(encoding="utf-8-sig")  # a leading byte-order mark is dropped
        except (OSError, UnicodeDecodeError) as exc:
            raise BenchError(
                f"Forget request '{self.text}': cannot read {path} as a text file ({exc}). "
                f"Give one training index per line, e.g. numpy.savetxt(path, idx, fmt='%d')."
            ) from None
        return self._parse_indices(text, path, n, train_sha256)

    def _parse_indices(self, text: str, path, n: int, train_sha256: str | None) -> np.ndarray:
        values: list[int] = []
        text = text.lstrip("\ufeff")
        where = f"Forget request '{self.text}': {path}"
        form = header_value(text, "format")
        ours = form is not None and form.startswith(INDICES_FORMAT.rsplit(" ", 1)[0])  # written by bench
        if ours and form != INDICES_FORMAT:
            raise BenchError(f"{where} says '# format: {form}'; this bench reads '{INDICES_FORMAT}' (a newer bench "
                             f"wrote it, or the line is wrong). Delete that line for a plain list of indices.")
        for key in ("train_size", "count") if ours else ():  # a hand-written file's headers are comments
            value = header_value(text, key)
            if value is not None and not (value.isascii() and value.isdigit()):
                raise BenchError(f"{where} has '# {key}: {value}', not a count of points. Fix or delete that line.")
        size = header_value(text, "train_size")
        if size is not None and size.isascii() and size.isdigit() and int(size) != n:
            raise BenchError(f"Forget request '{self.text}': {path} was drawn from a training set of {size} points "
                             f"(dataset {header_value(text, 'dataset') or '?'}); this dataset's has {n}. Use it with "
                             f"the dataset it came from.")
        drawn_from = header_value(text, "train_sha256")
        if train_sha256 is not None and drawn_from is not None and drawn_from != train_sha256:
            raise BenchError(f"Forget request '{self.text}': {path} was drawn from other training data (dataset "
                             f"{header_value(text, 'dataset') or '?'}, training-set digest {drawn_from[:12]}...; this "
                             f"dataset's is {train_sha256[:12]}...), so its indices name other points. Use it with the "
                             f"data it came from, or delete its '# train_sha256' line to apply the same indices anyway.")
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if not INDEX_LINE.fullmatch(line):  # int() also takes '1_0' (10) and non-ASCII digits
                raise BenchError(f"Forget request '{self.text}': line {lineno} of {path} is {line!r}, not an integer "
                                 f"index (ASCII digits, one per line).")
            values.append(int(line))
        if not values:
            raise BenchError(f"Forget request '{self.text}': {path} lists no indices (one training index per line expected).")
        count = header_value(text, "count") if ours else None
        if count is not None and int(count) != len(values):
            raise BenchError(f"{where} says '# count: {count}' and lists {len(values)} indices: it was cut short or "
                             f"edited. Write it again (or fix or delete the count line).")
        bad = [v for v in values if not 0 <= v < n]  # before int64: a 20-digit index would overflow it
        if bad:
            raise BenchError(
                f"Forget request '{self.text}': indices out of range {bad[:5]}; the training set has indices 0..{n - 1}."
            )
        arr = np.asarray(values, dtype=np.int64)
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise BenchError(f"Forget request '{self.text}': duplicate indices {uniq[counts > 1][:5].tolist()} in {path}.")
        if len(uniq) >= n:
            raise BenchError(f"Forget request '{self.text}' would forget the whole training set ({n} points).")
        return uniq


#: the ``# format`` header of the files :func:`indices_text` writes
INDICES_FORMAT = "bench forget indices 1"
#: one index line of an indices file (after its comment is cut)
INDEX_LINE = re.compile(r"[+-]?[0-9]+")


def indices_text(idx, *, dataset: str, forget: str, forget_seed: int, train_size: int,
                 train_sha256: str | None = None, request: str | None = None) -> str:
    """A forget set as the text of :data:`INDICES_ARTIFACT` and of an ``indices:PATH`` file: ``#``
    header lines (``# key: value``: what made it, with the digest of the training tensors the
    indices point into; ``request``: "T of N", one request of a ``seq:`` sequence), then one
    training index per line, ascending."""
    values = np.sort(np.asarray(idx, dtype=np.int64))
    head = {"format": INDICES_FORMAT, "dataset": dataset, "forget": forget, "forget_seed": forget_seed,
            **({"request": request} if request else {}),
            "train_size": train_size, **({"train_sha256": train_sha256} if train_sha256 else {}), "count": len(values)}
    return "".join(f"# {k}: {v}\n" for k, v in head.items()) + "".join(f"{int(i)}\n" for i in values)


def header_value(text: str, key: str) -> str | None:
    """The value of a ``# key: value`` header line of :func:`indices_text`, or None."""
    for line in text.splitlines():
        if not line.startswith("#"):
            if line.strip():
                break
            continue
        k, sep, v = line[1:].partition(":")
        if sep and k.strip() == key:
            return v.strip()
    return None


def parse_forget(text: str) -> ForgetSpec:
    kind, sep, arg = text.partition(":")
    kind = kind.strip()
    arg = arg.strip()
    if not sep or not arg:
        raise BenchError(f"Bad forget request '{text}': expected {SYNTAX}.")
    if kind == "seq":
        return _parse_seq(text, arg)
    if kind == "random":
        if not _NUMBER.fullmatch(arg.removesuffix("%").strip()):  # float() also takes "1_0", "١٠" and "nan"
            what = f"'{arg}' is not a percentage" if arg.endswith("%") else "expected random:10% or random:100"
            raise BenchError(f"Bad forget request '{text}': {what} (ASCII digits, e.g. random:10%).")
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
            if not _DIGITS.fullmatch(arg.removeprefix("-")):
                raise ValueError
            return ForgetSpec(text, "class", label=int(arg))
        except ValueError:
            raise BenchError(f"Bad forget request '{text}': expected an integer class label, e.g. class:3.") from None
    if kind == "indices":
        return ForgetSpec(text, "indices", path=arg)
    raise BenchError(f"Unknown forget request kind '{kind}' in '{text}': expected {SYNTAX}.")


def _parse_seq(text: str, arg: str) -> ForgetSpec:
    """``seq:NxK`` or ``seq:class:A,B,...`` (see the module docstring)."""
    if arg.startswith("class:"):
        items = [v.strip() for v in arg[len("class:"):].split(",")]
        try:
            if not all(_DIGITS.fullmatch(v.lstrip("-")) for v in items):
                raise ValueError
            labels = tuple(int(v) for v in items)
        except ValueError:
            raise BenchError(f"Bad forget request '{text}': the classes must be integers; expected {SEQ_SYNTAX}.") from None
        if len(set(labels)) != len(labels):
            raise BenchError(f"Bad forget request '{text}': a class is repeated; each request forgets a different class.")
        return ForgetSpec(text, "seq", labels=labels, requests=len(labels))
    n_text, x, k_text = arg.lower().partition("x")
    if not (_DIGITS.fullmatch(n_text.strip()) and _DIGITS.fullmatch(k_text.strip())):  # int() takes "5_0" and "١"
        raise BenchError(f"Bad forget request '{text}': expected {SEQ_SYNTAX}.")
    requests, count = int(n_text), int(k_text)
    if not x or requests < 1 or count < 1:
        raise BenchError(f"Bad forget request '{text}': the number of requests and their size must be at least 1; expected {SEQ_SYNTAX}.")
    return ForgetSpec(text, "seq", count=count, requests=requests)
