"""What a method is handed: the data of a forget request and the :class:`ForgetRequest` itself.

:func:`build_request` is the one place a ``ForgetRequest`` is made (trials, continual requests,
the attacks' ``unlearn`` and the conformance kit): it passes only the data the method declared
and always the input domain.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from bench.core.contracts import ForgetRequest
from bench.eval.evaluation import EvalData
from bench.nn.training import place


def split_data(splits, forget_idx, device: str):
    """Retain/forget/test tensors on ``device`` from the training split and the forget indices
    (retain and forget in training-split order)."""
    mask = torch.zeros(splits.train_size, dtype=torch.bool)
    mask[torch.tensor(np.asarray(forget_idx), dtype=torch.long)] = True  # a copy: the indices are read-only
    x, y = splits.train_x, splits.train_y
    rx, ry, fx, fy, tx, ty = place((x[~mask], y[~mask], x[mask], y[mask], splits.test_x, splits.test_y), device)
    return (rx, ry), (fx, fy), (tx, ty)


def step_data(splits, forget_idx, seen_idx, device: str, forget_class: int | None):
    """EvalData of one request (retain = every point not forgotten so far (``seen_idx``), forget =
    this request's points in ``forget_idx`` order) and the (inputs, labels) of every point
    forgotten so far. For a single request (``seen_idx`` = ``forget_idx``, sorted) this is exactly
    :func:`split_data`."""
    (rx, ry), (fax, fay), (tx, ty) = split_data(splits, seen_idx, device)
    if seen_idx is forget_idx:
        fx, fy = fax, fay
    else:
        sel = torch.tensor(np.asarray(forget_idx), dtype=torch.long)
        fx, fy = splits.train_x[sel].to(device), splits.train_y[sel].to(device)
    # a class request: the classes forgotten so far (seq:class:A,B,...: every earlier request's too)
    gone = () if forget_class is None else tuple(int(c) for c in torch.unique(fay).tolist())
    return EvalData(rx, ry, fx, fy, tx, ty, forget_class, gone), (fax, fay)


def input_bounds(splits, device: str):
    """(lo, hi) tensors broadcastable to one input: ``splits.info["input_bounds"]`` (floats, or lists
    per channel or per input feature), else the per-feature min/max of the training split."""
    shape = tuple(splits.input_shape)
    given = splits.info.get("input_bounds") if splits.info else None
    if given is None:
        return splits.train_x.min(0).values.to(device), splits.train_x.max(0).values.to(device)
    out = []
    for v in given:
        t = torch.as_tensor(v, dtype=splits.train_x.dtype)
        if t.dim() and t.numel() == shape[0] and t.numel() != math.prod(shape):
            t = t.view(shape[0], *[1] * (len(shape) - 1))
        elif t.dim():
            t = t.view(shape)
        out.append(t.to(device))
    return tuple(out)


def build_request(*, num_classes: int, kind: str, forget_indices: Any, forget_class: int | None,
                  forget: tuple[torch.Tensor, torch.Tensor], retain: tuple[torch.Tensor, torch.Tensor],
                  access: frozenset[str] | set[str], bounds: Any) -> ForgetRequest:
    """The request a method sees: the data it declared in ``requires`` (else ``None``), the forget
    points' training indices (sorted int64, the method's own copy) and the input domain ``bounds``."""
    fx, fy = forget if "forget" in access else (None, None)
    rx, ry = retain if "retain" in access else (None, None)
    # a copy: the run's own array selects every later trial's data (a method writing to it changed
    # their forget set while they were still compared with the references of the first one)
    indices = np.array(forget_indices, dtype=np.int64)
    return ForgetRequest(num_classes=num_classes, kind=kind, forget_indices=indices,
                         forget_class=forget_class, forget_x=fx, forget_y=fy, retain_x=rx, retain_y=ry, input_bounds=bounds)
