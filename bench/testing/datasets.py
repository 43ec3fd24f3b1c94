"""The dataset checks: ``load`` returns well-formed, deterministic :class:`bench.core.contracts.Splits`."""

from __future__ import annotations

import numbers

import torch

from bench.core.contracts import Splits
from bench.run.validate import default_data_dir
from bench.testing.base import _SCRAMBLE, _check, _exc, _fail, _registers, _seed_globals


def _load(dataset, arg, root, download) -> Splits:
    if root is None:
        root = str(default_data_dir())
    try:
        splits = dataset.load(root, download, arg)
    except Exception as exc:
        _fail(f"load(root={root!r}, download={download}, arg={arg!r}) raised {_exc(exc)}", exc)
    if not isinstance(splits, Splits):
        _fail(f"load returned {type(splits).__name__}, not bench.core.contracts.Splits.")
    return splits


_TENSORS = ("train_x", "train_y", "test_x", "test_y")


@_check("dataset")
def check_dataset_attributes(dataset) -> None:
    """The registry accepts it (a valid name, a callable ``load``) and it has a description."""
    _registers("dataset", dataset)


@_check("dataset")
def check_load_returns_splits(dataset, arg=None, root=None, download=False) -> None:
    """``load`` returns :class:`bench.core.contracts.Splits` whose four fields are torch tensors on the
    CPU, with an integer ``num_classes`` >= 2 and ``input_shape`` a tuple (or list) of positive
    integers (NumPy integers too: bench makes them plain), and no tensor requires grad."""
    s = _load(dataset, arg, root, download)
    for key in _TENSORS:
        value = getattr(s, key)
        if not isinstance(value, torch.Tensor):
            _fail(f"Splits.{key} is a {type(value).__name__}, not a torch.Tensor.")
        if value.device.type != "cpu":
            _fail(f"Splits.{key} is on {value.device}; return CPU tensors (the harness moves them).")
        if value.requires_grad:
            _fail(f"Splits.{key} requires grad; return plain data (x.detach()): every model trained on it "
                  f"would back-propagate into the dataset.")
    if isinstance(s.num_classes, bool) or not isinstance(s.num_classes, numbers.Integral) or s.num_classes < 2:
        _fail(f"num_classes is {s.num_classes!r}; expected an integer >= 2.")
    shape = s.input_shape
    if (not isinstance(shape, (tuple, list)) or not shape
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in shape)):
        _fail(f"input_shape is {shape!r}; expected a tuple of positive ints, e.g. (1, 8, 8).")


@_check("dataset")
def check_dtypes(dataset, arg=None, root=None, download=False) -> None:
    """Inputs are float32 and labels int64."""
    s = _load(dataset, arg, root, download)
    for key, dtype in zip(_TENSORS, (torch.float32, torch.int64) * 2, strict=True):
        value = getattr(s, key)
        if getattr(value, "dtype", None) != dtype:
            _fail(f"Splits.{key} has dtype {getattr(value, 'dtype', type(value).__name__)}; expected {dtype}.")


@_check("dataset")
def check_shapes_consistent(dataset, arg=None, root=None, download=False) -> None:
    """Inputs have shape ``(N, *input_shape)``, labels ``(N,)`` with the same N, and neither
    train nor test is empty."""
    s = _load(dataset, arg, root, download)
    for part in ("train", "test"):
        x, y = getattr(s, f"{part}_x"), getattr(s, f"{part}_y")
        if tuple(x.shape[1:]) != tuple(s.input_shape):
            _fail(f"{part}_x has shape {tuple(x.shape)}, not (N, *input_shape) with input_shape {s.input_shape}.")
        if y.dim() != 1 or len(y) != len(x):
            _fail(f"{part}_y has shape {tuple(y.shape)}; expected ({len(x)},), one label per {part} input.")
        if len(y) == 0:
            _fail(f"the {part} split is empty.")


@_check("dataset")
def check_labels_in_range(dataset, arg=None, root=None, download=False) -> None:
    """Every train and test label lies in ``[0, num_classes)``."""
    s = _load(dataset, arg, root, download)
    for key in ("train_y", "test_y"):
        y = getattr(s, key)
        bad = y[(y < 0) | (y >= s.num_classes)]
        if len(bad):
            _fail(f"{key} holds {len(bad)} label(s) outside [0, {s.num_classes}) (num_classes={s.num_classes}), "
                  f"e.g. {sorted(set(bad.tolist()))[:5]}.")


@_check("dataset")
def check_every_class_in_train(dataset, arg=None, root=None, download=False) -> None:
    """Every class ``0..num_classes-1`` has at least one training point (class forget requests
    and per-class metrics need it)."""
    s = _load(dataset, arg, root, download)
    missing = sorted(set(range(int(s.num_classes))) - set(s.train_y.unique().tolist()))
    if missing:
        _fail(f"classes {missing[:10]} have no training point (num_classes={s.num_classes}).")


@_check("dataset")
def check_inputs_finite(dataset, arg=None, root=None, download=False) -> None:
    """No NaN or infinite input value."""
    s = _load(dataset, arg, root, download)
    for key in ("train_x", "test_x"):
        if not torch.isfinite(getattr(s, key)).all():
            _fail(f"{key} holds NaN or infinite values.")


@_check("dataset")
def check_load_deterministic(dataset, arg=None, root=None, download=False) -> None:
    """Two loads (with the global generators in different states) give identical tensors,
    ``num_classes`` and ``input_shape``: the splits are fixed, independent of the trial seed."""
    loads = []
    for global_seed in _SCRAMBLE:
        _seed_globals(global_seed)
        loads.append(_load(dataset, arg, root, download))
    a, b = loads
    if (a.num_classes, tuple(a.input_shape)) != (b.num_classes, tuple(b.input_shape)):
        _fail(f"two loads gave num_classes/input_shape {a.num_classes}/{a.input_shape} and "
              f"{b.num_classes}/{b.input_shape}.")
    for key in _TENSORS:
        x, y = getattr(a, key), getattr(b, key)
        if x.shape != y.shape or not torch.equal(x, y):
            _fail(f"two loads gave different {key}; seed every random split or shuffle with a fixed seed.")


@_check("dataset")
def check_accepted_by_bench(dataset, arg=None, root=None, download=False) -> None:
    """What ``bench run`` refuses before any work, found here first: a test split of training rows
    (more than 10% exact copies), ``info['input_bounds']`` that are not a pair of finite low <= high,
    too few rows (``bench.run.checks.check_splits``; the kit passed a train/test overlap and reversed
    bounds that every run refused; plugins audit, 2026-12-07)."""
    from bench.core.errors import BenchError
    from bench.run.checks import check_splits

    s = _load(dataset, arg, root, download)
    try:
        check_splits(getattr(dataset, "name", "dataset"), s)
    except BenchError as exc:
        _fail(f"bench run refuses these splits: {exc}")
