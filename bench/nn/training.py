"""Training and prediction on in-memory tensors: the loop behind the original model, the
retrained references and methods that train (retrain, fine-tuning).

The loop is the plain PyTorch one (shuffle with a seeded generator, mini-batch SGD/Adam,
cross-entropy), with no DataLoader and no worker processes for data that sits in memory;
``benchmarks/bench_training.py`` measures it against a hand-written loop. A final batch of one
example left over from larger batches is skipped (BatchNorm cannot train on it).

Placement: a dataset whose tensors fit in ``DEVICE_DATA_FRACTION`` of the GPU's memory lives on
the GPU; a larger one stays in (pinned) host memory and its batches stream to the device through
a DataLoader with worker processes, in the same seeded order, so both paths train on the same
batches (``benchmarks/bench_data.py`` compares them). On the CPU the tensors are already in memory
and are used as they are. The recipe's ``augment`` (``bench/nn/augment.py``) runs on each batch on
the device.
"""

from __future__ import annotations

import math
import os
import random
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core import console
from bench.core.recipe import Recipe
from bench.nn.augment import augment_batch

#: Data larger than this fraction of a trial's share of the GPU's total memory streams from host
#: memory instead of living on the GPU: a quarter of the GPU for a trial holding a whole one, a
#: sixteenth for each of four trials packed with --gpus-per-trial 0.25 (:func:`device_data_limit`).
DEVICE_DATA_FRACTION = 0.25
#: DataLoader worker processes for data that streams from host memory.
STREAM_WORKERS = min(4, os.cpu_count() or 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible trial."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    """Fix torch's intra-op threads so results do not depend on where a trial runs."""
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


_DIGEST_CHUNK = 1 << 21  # elements per step: 16 MB of int64 temporaries whatever the tensor's size
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def content_digest(t: torch.Tensor) -> tuple:
    """A digest of a tensor's contents: its shape, dtype and two sums of its elements' bit
    patterns, one weighted by position (int64, wrapping), so that a changed, added or swapped
    element changes it. For the changes torch's version counter does not see (writes through
    ``.data`` or a NumPy view, ``t.data = other``); not cryptographic. One pass over the memory,
    about 0.4 s for CIFAR-10's 45,000 training images in float32 on one CPU thread."""
    x = t.detach()
    if x.is_complex():
        x = torch.view_as_real(x)
    x = x.reshape(-1)
    bits = x.view(torch.uint8) if x.dtype == torch.bool else x.view(_BITS[x.element_size()])
    plain = weighted = 0
    w = torch.arange(1, min(_DIGEST_CHUNK, bits.numel()) + 1, dtype=torch.int64, device=x.device)
    for start in range(0, bits.numel(), _DIGEST_CHUNK):
        c = bits[start:start + _DIGEST_CHUNK].to(torch.int64)
        total = int(c.sum())
        plain += total
        weighted += int((c * w[: len(c)]).sum()) + start * total
    return tuple(t.shape), t.dtype, plain, weighted


def nonfinite_state(model: nn.Module) -> str | None:
    """The name of the model's first floating-point parameter or buffer holding a NaN or an
    infinity (the mark of a training that diverged), or None."""
    return next((n for n, t in [*model.named_parameters(), *model.named_buffers()]
                 if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)


def check_trained(model: nn.Module, x: torch.Tensor, what: str, recipe) -> None:
    """Refuse a model whose training diverged: non-finite weights or buffers, or non-finite logits
    on the first 256 training inputs. Every metric computed from it, or compared with it, would be
    NaN (and blamed on a method), so the caller fails the job instead and caches nothing: the
    references, a method's own original, the attacks' shadow models."""
    from bench.core.errors import BenchError

    bad = nonfinite_state(model)
    problem = f"non-finite values in {bad}" if bad else None
    if problem is None:
        with torch.no_grad():
            if not bool(torch.isfinite(predict_logits(model, x[:256])).all()):
                problem = "non-finite outputs on the training data"
    if problem:
        lr = getattr(recipe, "lr", None)
        raise BenchError(f"{what} diverged in training ({problem}){f' at lr={lr:g}' if lr else ''}: lower the "
                         "recipe's learning rate (--recipe lr=...), or check the model plugin.")


def make_optimizer(params: Iterable[nn.Parameter], name: str, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def make_schedule(optimizer, schedule: str, epochs: int, steps_per_epoch: int):
    total = max(1, epochs * steps_per_epoch)
    if schedule == "cosine":
        fn = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    elif schedule == "step":
        # x0.1 at 50% and x0.01 from 75% of the epochs, at epoch boundaries int(0.5 E) and int(0.75 E)
        # (the SalUn code's MultiStepLR milestones: 91 and 136 of 182); where those coincide or fall
        # at 0 (1 or 2 epochs: the whole run at 1% of lr, or no x0.1 phase), at 50% and 75% of the steps
        e1, e2 = int(0.5 * epochs), int(0.75 * epochs)
        if 1 <= e1 < e2:
            m1, m2 = e1 * steps_per_epoch, e2 * steps_per_epoch
        else:
            m1, m2 = int(0.5 * total), int(0.75 * total)
        fn = lambda step: 0.01 if step >= m2 else (0.1 if step >= m1 else 1.0)  # noqa: E731
    else:
        fn = lambda step: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def batches(n: int, batch_size: int, generator: torch.Generator | None, device) -> Iterable[torch.Tensor]:
    """Index batches over ``range(n)``, shuffled with ``generator`` (in order when None). A final
    batch of one left over from larger batches is skipped (BatchNorm cannot train on it); with
    ``batch_size`` 1 every example is its own batch (skipping those skipped every step: a method
    at batch size 1 returned its input untrained, exit 0; a model with BatchNorm now fails its
    trial with PyTorch's own error instead)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) == 1 and n > 1 and batch_size > 1:
            continue
        yield idx


def gpu_share() -> float:
    """The fraction of a GPU this process holds: the GPU resource Ray assigned to the task or actor
    it runs (``--gpus-per-trial``, at most one GPU's worth, as the data lives on one), 1 outside Ray
    (the driver, ``--executor local``). Ray is only looked up where this process imported it."""
    import sys

    ray = sys.modules.get("ray")
    try:
        if ray is not None and ray.is_initialized():
            assigned = float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0) or 0)
            if assigned > 0:
                return min(1.0, assigned)
    except Exception:  # noqa: BLE001 -- a driver, or a Ray without the call: the whole GPU's rule
        return 1.0
    return 1.0


def device_data_limit(device) -> int | None:
    """Bytes of data that may live on ``device``: :data:`DEVICE_DATA_FRACTION` of this process's
    share of the GPU (:func:`gpu_share`; trials packed four to a GPU each keep a sixteenth, so
    together their data takes a quarter of it, as one trial's would); ``None`` (no limit) off the GPU."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    return int(DEVICE_DATA_FRACTION * gpu_share() * torch.cuda.get_device_properties(dev).total_memory)


def place(tensors: Iterable[torch.Tensor], device) -> list[torch.Tensor]:
    """Move ``tensors`` to ``device`` when together they fit under :func:`device_data_limit`;
    otherwise keep them in pinned host memory, to be streamed batch by batch."""
    tensors = list(tensors)
    limit = device_data_limit(device)
    if limit is None or sum(t.numel() * t.element_size() for t in tensors) <= limit:
        return [t.to(device) for t in tensors]
    return [t.cpu().pin_memory() for t in tensors]


def model_device(model: nn.Module, default) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device(default)


class _Rows(torch.utils.data.Dataset):
    """Rows of (x, y), fetched a whole batch at a time (``__getitems__``) by DataLoader workers."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitems__(self, idx: list[int]):
        i = torch.as_tensor(idx, dtype=torch.long)
        return self.x[i], self.y[i]


def _as_batch(batch):
    return batch


def stream_batches(x, y, index_batches, device, workers: int = STREAM_WORKERS):
    """(x, y) batches for ``index_batches`` fetched from host memory by a DataLoader with
    ``workers`` processes, moved to ``device``."""
    device = torch.device(device)
    loader = torch.utils.data.DataLoader(
        _Rows(x, y), batch_sampler=[b.tolist() for b in index_batches], num_workers=workers,
        collate_fn=_as_batch, pin_memory=device.type == "cuda",
    )
    for xb, yb in loader:
        yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, seed: int) -> nn.Module:
    """Train ``model`` in place on (x, y) with ``recipe``; shuffling is seeded by ``seed``."""
    return train_epochs(
        model, x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, optimizer=recipe.optimizer, lr=recipe.lr,
        momentum=recipe.momentum, weight_decay=recipe.weight_decay, schedule=recipe.schedule, seed=seed,
        augment=recipe.augment,
    )


def train_epochs(model, x, y, *, epochs, batch_size, optimizer, lr, momentum, weight_decay, schedule, seed,
                 on_epoch=None, augment="none", workers=None) -> nn.Module:
    """Mini-batch training; ``on_epoch(model)``, if given, is called after every epoch, and so is
    ``bench.core.console.epoch`` (the per-epoch progress of the enclosing task, when one reports).

    ``augment`` is the recipe's on-device augmentation, drawn from its own generator seeded by
    ``seed``. Batches stream through a DataLoader with ``workers`` processes when ``x`` is not
    on the model's device (:func:`place` kept it in host memory) or when ``workers`` is given.
    """
    g = torch.Generator().manual_seed(seed)
    n = len(y)
    steps = max(1, sum(1 for s in range(0, n, batch_size) if min(batch_size, n - s) > 1 or n == 1))
    opt = make_optimizer(model.parameters(), optimizer, lr, momentum, weight_decay)
    sched = make_schedule(opt, schedule, epochs, steps)
    device = model_device(model, x.device)
    stream = workers is not None or x.device != device
    aug_gen = torch.Generator(device=device).manual_seed(seed) if augment != "none" else None
    model.train()
    console.epoch(0, epochs)  # progress of the enclosing task, if any (bench.core.console); no effect on training
    for done in range(1, epochs + 1):
        if stream:
            pairs = stream_batches(x, y, list(batches(n, batch_size, g, "cpu")), device,
                                   STREAM_WORKERS if workers is None else workers)
        else:
            pairs = ((x[idx], y[idx]) for idx in batches(n, batch_size, g, x.device))
        for xb, yb in pairs:
            if aug_gen is not None:
                xb = augment_batch(xb, augment, aug_gen)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if on_epoch is not None:
            on_epoch(model)
        console.epoch(done, epochs)
    return model


def warm_up(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: bool = True) -> None:
    """One throwaway forward, backward and optimizer step on a copy of ``model`` (without
    ``optimizer``, the forward and backward passes only: the first ``torch.optim`` step imports
    ``torch._dynamo``, 1.4 s or more, which a method that never steps an optimiser need not pay).

    A fresh worker process pays a one-off cost on its first autograd pass and optimizer step
    (lazy initialisation, kernel selection): up to a second on the CPU, more than a whole
    gradient-ascent run on digits. Timed calls are preceded by this so that
    ``unlearn_seconds`` and reference training times measure the work, not the process.
    """
    import copy

    probe = copy.deepcopy(model)
    n = min(len(y), 8)
    if n < 2:
        return
    device = model_device(probe, x.device)
    x, y = x[:n].to(device), y[:n].to(device)
    if not optimizer:
        probe.train()
        loss = F.cross_entropy(probe(x), y)
        if loss.requires_grad:
            loss.backward()
    for opt_name in ("sgd", "adam") if optimizer else ():
        opt = make_optimizer(probe.parameters(), opt_name, 0.0, 0.9, 0.0)
        probe.train()
        loss = F.cross_entropy(probe(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    predict_logits(probe, x[:n])


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, in large batches. Each batch the model sees is its
    own copy: a model whose forward changes its input in place (an in-place normalisation, a
    ``ReLU(inplace=True)`` first) would otherwise write into ``x`` through the slice, on the CPU,
    where ``.to`` returns the slice itself; ``x`` is the data every later evaluation uses (the test
    set is shared by the trials of a worker)."""
    was_training = model.training
    model.eval()
    device = model_device(model, x.device)  # x may sit in host memory (see place)
    out = [model(x[i : i + batch_size].to(device, non_blocking=True, copy=True)) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    if not out:
        return torch.empty(0, device=x.device)
    return torch.cat(out).float()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    return float((predict_logits(model, x).argmax(1).to(y.device) == y).float().mean())
