"""Harness training vs a plain torch loop on the same data, model, epochs and threads.

Usage: python benchmarks/bench_training.py [--epochs 30] [--repeats 5] [--threads 1]
Prints the median seconds of each and their ratio (harness / plain); the target is <= 1.10.
The two are interleaved so that drifts in machine load hit both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bench.datasets.digits import Digits
from bench.nn.nets import MLP
from bench.core.recipe import build_recipe
from bench.nn.training import fit, set_threads, warm_up


def plain_loop(x, y, epochs, bs, lr, momentum, wd, seed):
    """What a researcher would write by hand: same optimiser, cosine schedule per step, same shuffling."""
    torch.manual_seed(seed)
    model = MLP(64, (256, 256), 10)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    n = len(y)
    steps = epochs * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model


def harness(x, y, recipe, seed):
    torch.manual_seed(seed)
    return fit(MLP(64, (256, 256), 10), x, y, recipe, seed=seed)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    set_threads(a.threads)
    d = Digits().load(None, False, None)
    recipe = build_recipe(Digits.default_recipe, {"epochs": a.epochs})
    x, y = d.train_x, d.train_y
    warm_up(MLP(64, (256, 256), 10), x, y)
    t_h, t_p = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        harness(x, y, recipe, 0)
        t_h.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain_loop(x, y, recipe.epochs, recipe.batch_size, recipe.lr, recipe.momentum, recipe.weight_decay, 0)
        t_p.append(time.perf_counter() - t0)
    h, p = statistics.median(t_h), statistics.median(t_p)
    print(f"digits MLP 64-256-256-10, {len(y)} examples, {a.epochs} epochs, batch {recipe.batch_size}, {a.threads} thread(s), {a.repeats} repeats")
    print(f"harness fit : median {h:.3f} s  (all: {', '.join(f'{t:.3f}' for t in t_h)})")
    print(f"plain loop  : median {p:.3f} s  (all: {', '.join(f'{t:.3f}' for t in t_p)})")
    print(f"ratio harness/plain = {h / p:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
