"""Tabular datasets: ``purchase20``, ``purchase100``, ``texas100`` (binary-feature ``.npz`` files
under the data directory) and ``csv:PATH`` (any numeric CSV file with a named label column).

Purchase (Shokri et al., "Membership Inference Attacks against Machine Learning Models",
IEEE S&P 2017): 600 binary features, one per product, for each shopper of Kaggle's "Acquire
Valued Shoppers" data, labelled by clustering into 20 or 100 classes. Texas-100 (same paper):
6,169 binary features of hospital discharge records, 100 classes of the main procedure. Purchase-20
is the setting of the PRUNE paper's experiments (Li et al., "PRUNE: A Patching Based Repair Framework
for Certifiable Unlearning of Neural Networks", arXiv 2505.06520).

The ``.npz`` format (documented in docs/datasets.md): ``features`` (N, F) binary (0/1, any numeric
dtype) and ``labels`` either integers (N,) in 0..K-1 or one-hot (N, K) (the layout of
github.com/xehartnort/Purchase100-Texas100-datasets; ``x``/``X`` and ``y``/``Y`` are accepted
too). The split is the PRUNE paper's: the first ``floor(0.8 N)`` rows train, the rows after the
next one test (for the 48,448-row Purchase-20: train 0-38757, test 38759-48447, row 38758 unused),
unless the file holds ``train_idx`` and ``test_idx`` arrays, which are used instead. Features are
used as they are (binary, no normalisation); ``info["input_bounds"]`` is (0, 1).
"""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import BenchError

from .common import parse_options, require_file, stratified_split

#: The PRUNE paper's training recipe for its Purchase-20 MLP 600-256-20 (Li et al., arXiv 2505.06520).
PURCHASE_RECIPE = {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.5, "batch_size": 64, "epochs": 150,
                   "weight_decay": 0.0, "schedule": "constant"}
TRAIN_FRACTION = 0.8
FEATURE_KEYS, LABEL_KEYS = ("features", "x", "X"), ("labels", "y", "Y")


def paper_split(n: int):
    """PRUNE's Purchase-20 split generalised to N rows: train [0, floor(0.8 N)), test
    [floor(0.8 N) + 1, N)."""
    import numpy as np

    cut = int(TRAIN_FRACTION * n)
    return np.arange(cut), np.arange(cut + 1, n)


def labels_from(raw, num_classes: int, where: str):
    """Integer labels from integer (N,) or one-hot (N, K) labels, or a BenchError."""
    import numpy as np

    raw = np.asarray(raw)
    if raw.ndim == 2:
        if raw.shape[1] != num_classes:
            raise BenchError(f"{where}: 2-D labels must be one-hot of shape (N, {num_classes}); got shape {raw.shape}.")
        rows = ~(np.all((raw == 0) | (raw == 1), axis=1) & (raw.sum(1) == 1))
        if rows.any():
            first = int(np.flatnonzero(rows)[0])
            raise BenchError(f"{where}: 2-D labels must be one-hot (a single 1 per row, the rest 0); {int(rows.sum())} of "
                             f"{len(raw)} rows are not, the first row {first}: {np.array2string(raw[first], threshold=8)}.")
        return raw.argmax(1).astype(np.int64)
    if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.number) or np.any(raw != np.round(raw)):
        raise BenchError(f"{where}: labels must be integers of shape (N,) or one-hot (N, {num_classes}); got "
                         f"dtype {raw.dtype}, shape {raw.shape}.")
    y = raw.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise BenchError(f"{where}: labels span [{y.min()}, {y.max()}]; expected 0..{num_classes - 1}.")
    return y


class BinaryNpz:
    """A binary-feature ``.npz`` set at ``<data dir>/<folder>/<file>``."""

    def __init__(self, name: str, folder: str, file: str, num_features: int, num_classes: int, description: str) -> None:
        self.name, self.folder, self.file = name, folder, file
        self.num_features, self.num_classes = num_features, num_classes
        self.description = description
        self.default_recipe = dict(PURCHASE_RECIPE)

    def path(self, root: str) -> Path:
        return Path(root).expanduser() / self.folder / self.file

    def load(self, root, download, arg=None):
        if arg:
            raise BenchError(f"Dataset '{self.name}' takes no options (got '{self.name}:{arg}').")
        import numpy as np
        import torch

        from bench.core.contracts import Splits

        path = require_file(
            self.path(root), self.name,
            f"This dataset is not downloaded by the harness (--download does not fetch it): place the .npz file there "
            f"(format in docs/datasets.md: 'features' ({self.num_features} binary columns) and 'labels'), or point "
            f"--data-dir at the directory holding {self.folder}/{self.file}.",
        )
        where = f"Dataset '{self.name}' ({path})"
        how = "save it with np.savez(path, features=..., labels=...) (format in docs/datasets.md)"
        try:
            with open(path, "rb") as f:
                head = f.read(4)
        except OSError as exc:
            raise BenchError(f"{where}: not a readable .npz file ({type(exc).__name__}: {exc}).") from None
        if head[:2] != b"PK":  # an .npz is a zip archive; NumPy takes anything else for a pickle and
            # answered "load it unsafely using allow_pickle=" about a text or .npy file
            kind = "a .npy array" if head == b"\x93NUM" else "empty" if not head else "not a zip archive"
            raise BenchError(f"{where}: not an .npz file ({kind}); {how}.")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as exc:
            if isinstance(exc, ValueError) and "pickle" in str(exc):
                raise BenchError(f"{where}: holds object arrays (pickled Python objects), which bench does not load; "
                                 f"{how}, from numeric arrays.") from None
            raise BenchError(f"{where}: not a readable .npz file ({type(exc).__name__}: {exc}).") from None
        fkey = next((k for k in FEATURE_KEYS if k in arrays), None)
        lkey = next((k for k in LABEL_KEYS if k in arrays), None)
        if fkey is None or lkey is None:
            raise BenchError(f"{where}: expected arrays 'features' and 'labels' (or x/y); the file holds "
                             f"{sorted(arrays) or 'no arrays'}.")
        x, y = np.asarray(arrays[fkey]), labels_from(arrays[lkey], self.num_classes, where)
        if x.ndim != 2 or x.shape[1] != self.num_features or len(x) != len(y):
            raise BenchError(f"{where}: features have shape {x.shape} for {len(y)} labels; expected "
                             f"(N, {self.num_features}) with one label per row.")
        if x.dtype != np.bool_ and not np.issubdtype(x.dtype, np.number):  # bool 0/1 features are binary too
            raise BenchError(f"{where}: features must be binary (0/1) numbers or booleans; the array holds {x.dtype}.")
        if not np.all((x == 0) | (x == 1)):
            raise BenchError(f"{where}: features must be binary (0/1); found other values.")
        given = [k for k in ("train_idx", "test_idx") if k in arrays]
        if len(given) == 1:  # the paper split in its place would not be the split the file names
            raise BenchError(f"{where}: the file holds {given[0]} but not {'test_idx' if given[0] == 'train_idx' else 'train_idx'}; "
                             "give both (disjoint row indices) or neither (the PRUNE paper's split).")
        if given:
            kinds = {k: np.asarray(arrays[k]).dtype for k in ("train_idx", "test_idx")}
            floats = [f"{k} ({d})" for k, d in kinds.items() if d == np.bool_ or not np.issubdtype(d, np.integer)]
            if floats:  # cast to int64 they were cut (3.7 -> row 3) without a word
                raise BenchError(f"{where}: {', '.join(floats)} must hold integer row indices; save them as an "
                                 "integer array (e.g. np.int64).")
            tr, te = (np.asarray(arrays[k], np.int64) for k in ("train_idx", "test_idx"))
            if tr.ndim != 1 or te.ndim != 1 or min(tr.min(initial=0), te.min(initial=0)) < 0 or \
                    max(tr.max(initial=0), te.max(initial=0)) >= len(y) or np.intersect1d(tr, te).size:
                raise BenchError(f"{where}: train_idx/test_idx must be disjoint row indices in [0, {len(y)}).")
            if len(np.unique(tr)) != len(tr) or len(np.unique(te)) != len(te):  # a repeated training row
                raise BenchError(f"{where}: train_idx/test_idx repeat a row; each row may appear once (a forgotten "
                                 "row repeated elsewhere in the training split would stay in the retain set).")
            split = "train_idx/test_idx from the file"
        else:
            tr, te = paper_split(len(y))
            split = f"PRUNE paper: rows [0, {len(tr)}) train, [{len(tr) + 1}, {len(y)}) test"
        if len(tr) == 0 or len(te) == 0:
            raise BenchError(f"{where}: {len(y)} rows give an empty train or test split.")
        x = x.astype(np.float32)
        return Splits(
            train_x=torch.from_numpy(x[tr]), train_y=torch.from_numpy(y[tr]),
            test_x=torch.from_numpy(x[te]), test_y=torch.from_numpy(y[te]),
            num_classes=self.num_classes, input_shape=(self.num_features,),
            info={"source": str(path), "split": split, "normalize": "none (binary features)", "input_bounds": (0.0, 1.0)},
        )


def builtin_tabular_datasets() -> list[BinaryNpz]:
    return [
        BinaryNpz("purchase20", "purchase", "purchase20.npz", 600, 20,
                  "Purchase-20 (PRUNE paper setting): 600 binary features, 20 classes, from <data-dir>/purchase/purchase20.npz."),
        BinaryNpz("purchase100", "purchase", "purchase100.npz", 600, 100,
                  "Purchase-100 (Shokri et al. 2017): 600 binary features, 100 classes, from <data-dir>/purchase/purchase100.npz."),
        BinaryNpz("texas100", "texas", "texas100.npz", 6169, 100,
                  "Texas-100 (Shokri et al. 2017): 6,169 binary features, 100 classes, from <data-dir>/texas/texas100.npz."),
    ]


# -- csv:PATH ------------------------------------------------------------------------------

CSV_DEFAULTS = {"label": "label", "test": 0.2, "seed": 0, "normalize": "standard"}
NORMALIZERS = ("standard", "minmax", "none")


class CSVDataset:
    """``csv:PATH[,label=COL][,test=0.2][,seed=0][,normalize=standard|minmax|none]``.

    A header row, then one example per row: numeric feature columns and the label column
    ``label`` (any values, mapped to 0..K-1 in sorted order, numerically when all are numbers).
    A relative PATH is looked up in the current directory, then under the data directory.
    The split is stratified, ``test`` of the rows, seeded by ``seed``. ``standard`` scales each
    feature by the training split's mean and standard deviation, ``minmax`` to [0, 1] by its
    minimum and maximum. ``info["input_bounds"]``: (0, 1) for ``minmax``, else each feature's
    range on the training split.
    """

    name = "csv"
    description = "A CSV file with a header and a named label column: csv:PATH,label=target (see docs/datasets.md)."
    default_recipe = {"epochs": 30, "lr": 0.05, "batch_size": 64}

    def load(self, root, download, arg=None):
        example = "csv:data/train.csv,label=target"
        opts = parse_options(self.name, arg, CSV_DEFAULTS, path=True, example=example)
        if opts["normalize"] not in NORMALIZERS:
            raise BenchError(f"Bad csv option normalize={opts['normalize']}: expected one of {', '.join(NORMALIZERS)}.")
        path = Path(opts["path"]).expanduser()
        if not path.is_absolute() and not path.is_file() and (Path(root) / path).is_file():
            path = Path(root) / path
        if not path.is_file():  # a path given in the spec: bad input, not a dataset's files still to place
            what = "is a folder, not a file" if path.is_dir() else "file not found"
            raise BenchError(f"Dataset 'csv': {what}: {path}. Give an existing CSV file: {example} (relative "
                             f"paths: the current directory, then {root}).")
        import numpy as np
        import torch

        from bench.core.contracts import Splits

        header, rows = _read_csv(path)
        where = f"Dataset 'csv' ({path})"
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:  # accepted silently: the label or a feature was whichever came first (hostile audit, 2026-12-07)
            raise BenchError(f"{where}: the header names column(s) {', '.join(map(repr, twice))} more than once; give "
                             f"each column its own name.")
        data_like = [c for c in header if _fractional(c)]
        if data_like:  # a file without a header: its first row was read as one and lost (dataset audit, 2026-12-07)
            raise BenchError(f"{where}: the first line holds {', '.join(map(repr, data_like[:3]))}, numbers rather than "
                             f"column names: the file has no header line? Add one naming the columns (and the label "
                             f"column, csv:{opts['path']},label=COLUMN).")
        if opts["label"] not in header:
            raise BenchError(f"{where}: no label column '{opts['label']}'. Columns: {', '.join(header)}. Name it with "
                             f"csv:{opts['path']},label=COLUMN.")
        li = header.index(opts["label"])
        feats = [c for i, c in enumerate(header) if i != li]
        if not feats:
            raise BenchError(f"{where}: no feature columns besides the label '{opts['label']}'.")
        x = np.empty((len(rows), len(feats)), np.float64)
        raw_labels = []
        for r, row in enumerate(rows):
            if len(row) != len(header):
                raise BenchError(f"{where}: line {r + 2} has {len(row)} fields; the header has {len(header)}.")
            raw_labels.append(row[li].strip())
            if raw_labels[-1].lower() in ("", "nan"):  # a missing label became a class of its own
                raise BenchError(f"{where}: line {r + 2} has no label (column '{opts['label']}' is "
                                 f"{row[li]!r}); every row needs its class: fill it in or drop the row.")
            for j, value in enumerate(v for i, v in enumerate(row) if i != li):
                try:
                    if "_" in value or not value.isascii():  # float() also takes '1_000' and non-ASCII digits
                        raise ValueError
                    x[r, j] = float(value)
                except ValueError:
                    raise BenchError(f"{where}: line {r + 2}, column '{feats[j]}': {value!r} is not a number "
                                     f"(feature columns must be numeric: ASCII digits, an optional sign, decimal "
                                     f"point and exponent).") from None
        if not np.isfinite(x).all():
            raise BenchError(f"{where}: feature values must be finite (found NaN or infinity).")
        classes, y = _label_codes(raw_labels)
        if len(classes) < 2:
            raise BenchError(f"{where}: the label column '{opts['label']}' has {len(classes)} distinct value(s); need 2 or more.")
        once = [classes[c] for c in np.flatnonzero(np.bincount(y, minlength=len(classes)) < 2)]
        if len(classes) > 2 and 2 * len(once) > len(classes):  # a continuous column taken for labels: "classes 9,
            # 11, ... have no training rows. Fix the dataset plugin" (found in review)
            raise BenchError(f"{where}: {len(once)} of the {len(classes)} values of the label column '{opts['label']}' "
                             f"occur in one row only ({', '.join(map(str, once[:3]))}{', ...' if len(once) > 3 else ''}); "
                             f"a class needs 2 rows or more (one to train on, one to test). Is '{opts['label']}' the "
                             f"class column? Name it with csv:{opts['path']},label=COLUMN.")
        tr, te = stratified_split(y, opts["test"], opts["seed"], "csv")
        if opts["normalize"] in ("standard", "minmax"):
            with np.errstate(over="ignore", invalid="ignore"):
                spread = x[tr].std(0) if opts["normalize"] == "standard" else x[tr].max(0) - x[tr].min(0)
            if not np.isfinite(spread).all():  # values near 1e308: the std overflowed to inf and standardising
                # made the column zeros (hostile audit, 2026-12-07); each column over its largest magnitude first
                scale = np.abs(x[tr]).max(0)
                x = x / np.where(scale > 0, scale, 1.0)
        with np.errstate(over="ignore", invalid="ignore"):  # a test row far out overflows: refused just below
            if opts["normalize"] == "standard":
                mean, std = x[tr].mean(0), x[tr].std(0)
                x = (x - mean) / np.where(std > 0, std, 1.0)
            elif opts["normalize"] == "minmax":
                lo, hi = x[tr].min(0), x[tr].max(0)
                x = (x - lo) / np.where(hi > lo, hi - lo, 1.0)
            beyond = ~(np.abs(x) <= np.finfo(np.float32).max)  # NaN/inf too: a test row far outside the training rows'
        if beyond.any():  # range overflowed here with a raw NumPy warning, then was blamed on the plugin (diff review)
            row, col = (int(v[0]) for v in np.nonzero(beyond))
            raise BenchError(f"{where}: column '{feats[col]}' of line {row + 2} lies beyond float32's range, which the "
                             f"models compute in, once normalized ({opts['normalize']}) by the training rows "
                             f"(value {float(x[row, col]):.3g}); rescale the column, or drop the row.")
        x = x.astype(np.float32)
        if opts["normalize"] == "minmax":
            bounds = (0.0, 1.0)
        else:
            bounds = ([float(v) for v in x[tr].min(0)], [float(v) for v in x[tr].max(0)])
        return Splits(
            train_x=torch.from_numpy(x[tr]), train_y=torch.from_numpy(y[tr]),
            test_x=torch.from_numpy(x[te]), test_y=torch.from_numpy(y[te]),
            num_classes=len(classes), input_shape=(len(feats),),
            info={"source": str(path), "label": opts["label"], "classes": classes, "features": feats,
                  "normalize": opts["normalize"], "test_fraction": opts["test"], "split_seed": opts["seed"],
                  "input_bounds": bounds},
        )


def _read_csv(path: Path):
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM is not part of the first header
            sample = f.read(65536)
            f.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            rows = [r for r in csv.reader(f, dialect) if r and any(v.strip() for v in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BenchError(f"Dataset 'csv': cannot read {path} as CSV text ({type(exc).__name__}: {exc}).") from None
    if len(rows) < 2:
        raise BenchError(f"Dataset 'csv': {path} needs a header row and at least one data row.")
    return [h.strip() for h in rows[0]], rows[1:]


def _fractional(text: str) -> bool:
    """Whether a header cell is a number with a fraction or an exponent ("0.1257", "-3e-2"): data, not
    a column's name (integer names such as "0", "1", ... "783" are common column names)."""
    try:
        float(text)
    except ValueError:
        return False
    return any(ch in text for ch in ".eE")


def _label_codes(values: list[str]):
    """(class names, int64 codes): numeric labels are classes by value, in numeric order ("2" and
    "2.0" are one class, named as first written); any other labels by text, in sorted order."""
    import math

    import numpy as np

    try:
        nums = [float(v) for v in values]
    except ValueError:
        nums = None
    if nums is not None and all(math.isfinite(n) for n in nums):
        first: dict[float, str] = {}
        for v, n in zip(values, nums):
            first.setdefault(n, v)
        order = sorted(first)
        index = {n: i for i, n in enumerate(order)}
        return [first[n] for n in order], np.array([index[n] for n in nums], np.int64)
    names = sorted(set(values))
    index = {v: i for i, v in enumerate(names)}
    return names, np.array([index[v] for v in values], np.int64)