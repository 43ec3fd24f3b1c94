"""Training and prediction on in-memory tensors: the loop behind the original model, the
retrained references and methods that train (retrain, fine-tuning).

The loop is the plain PyTorch one (shuffle with a seeded generator, mini-batch SGD/Adam,
cross-entropy), with no DataLoader and no worker processes for data that sits in memory;
``benchmarks/bench_training.py`` measures it against a hand-written loop. A final batch of one
example is skipped (BatchNorm cannot train on it).
"""

from __future__ import annotations

import math
import random
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .recipe import Recipe


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
        m1, m2 = int(0.5 * epochs) * steps_per_epoch, int(0.75 * epochs) * steps_per_epoch
        fn = lambda step: 0.01 if step >= m2 else (0.1 if step >= m1 else 1.0)  # noqa: E731
    else:
        fn = lambda step: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def batches(n: int, batch_size: int, generator: torch.Generator | None, device) -> Iterable[torch.Tensor]:
    """Index batches over ``range(n)``, shuffled with ``generator`` (in order when None)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) == 1 and n > 1:
            continue
        yield idx


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, seed: int) -> nn.Module:
    """Train ``model`` in place on (x, y) with ``recipe``; shuffling is seeded by ``seed``."""
    return train_epochs(
        model, x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, optimizer=recipe.optimizer, lr=recipe.lr,
        momentum=recipe.momentum, weight_decay=recipe.weight_decay, schedule=recipe.schedule, seed=seed,
    )


def train_epochs(model, x, y, *, epochs, batch_size, optimizer, lr, momentum, weight_decay, schedule, seed,
                 on_epoch=None) -> nn.Module:
    """Mini-batch training; ``on_epoch(model)``, if given, is called after every epoch."""
    g = torch.Generator().manual_seed(seed)
    n = len(y)
    steps = max(1, sum(1 for s in range(0, n, batch_size) if min(batch_size, n - s) > 1 or n == 1))
    opt = make_optimizer(model.parameters(), optimizer, lr, momentum, weight_decay)
    sched = make_schedule(opt, schedule, epochs, steps)
    model.train()
    for _ in range(epochs):
        for idx in batches(n, batch_size, g, x.device):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if on_epoch is not None:
            on_epoch(model)
    return model


def warm_up(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One throwaway forward, backward and optimizer step on a copy of ``model``.

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
    for opt_name in ("sgd", "adam"):
        opt = make_optimizer(probe.parameters(), opt_name, 0.0, 0.9, 0.0)
        probe.train()
        loss = F.cross_entropy(probe(x[:n]), y[:n])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    predict_logits(probe, x[:n])


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, in large batches."""
    was_training = model.training
    model.eval()
    out = [model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    if not out:
        return torch.empty(0, device=x.device)
    return torch.cat(out).float()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    return float((predict_logits(model, x).argmax(1) == y).float().mean())
