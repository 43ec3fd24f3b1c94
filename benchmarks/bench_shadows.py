"""Shadow models trained together under torch.func.vmap vs one after another, same recipe.

Usage: python benchmarks/bench_shadows.py [--models 8] [--hidden 256,256] [--epochs 30]
                                          [--threads 2] [--repeats 1] [--device cpu]
Trains M MLP shadow models of the digits recipe (batch 64, SGD with momentum, cosine schedule) on
random halves of the digits pool (training + test split, 898 points each), the way
``bench.shadows`` trains them for LiRA/RMIA: once with ``train_models(vectorize=True)`` and once
with ``vectorize=False`` (``bench.training.fit`` per model), in the same run and interleaved when
repeated. Prints both wall clocks, their ratio (target >= 3x on the 2-core machine) and the
largest parameter difference between the two results (the same training up to float summation
order). Needs neither Ray nor MLflow.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--hidden", default="256,256")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()

    from bench.datasets.digits import Digits
    from bench.models import MLPModel
    from bench.recipe import build_recipe
    from bench.shadows import plan_set, train_models
    from bench.training import set_threads, warm_up
    from bench.trial import model_factory

    set_threads(a.threads)
    d = Digits().load(None, False, None)
    recipe = build_recipe(Digits.default_recipe, {"epochs": a.epochs})
    x = torch.cat([d.train_x, d.test_x]).to(a.device)
    y = torch.cat([d.train_y, d.test_y]).to(a.device)
    keep, seeds = plan_set("shadows", a.models, d.train_size, len(d.test_y), None, 0)
    subsets = [np.flatnonzero(k) for k in keep]
    model_obj = MLPModel()

    def new(seed):
        return model_factory(model_obj, a.hidden, d, seed, a.device)()

    warm_up(new(0), x[:64], y[:64])
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    t_v, t_s = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        vec, how = train_models(new, x, y, subsets, seeds, recipe, vectorize=True)
        sync()
        t_v.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        seq, _ = train_models(new, x, y, subsets, seeds, recipe, vectorize=False)
        sync()
        t_s.append(time.perf_counter() - t0)
    diff = max(float((p.detach() - q.detach()).abs().max()) for a_, b_ in zip(vec, seq) for p, q in zip(a_.parameters(), b_.parameters()))
    v, s = statistics.median(t_v), statistics.median(t_s)
    n_params = sum(p.numel() for p in vec[0].parameters())
    print(f"{a.models} shadow MLPs mlp:{a.hidden} ({n_params:,} params each) on {len(subsets[0])} digits points each, "
          f"{a.epochs} epochs, batch {recipe.batch_size}, {a.threads} thread(s), device {a.device}, {a.repeats} repeat(s)")
    print(f"vmap ({how})     : {v:.2f} s  (all: {', '.join(f'{t:.2f}' for t in t_v)})")
    print(f"one after another: {s:.2f} s  (all: {', '.join(f'{t:.2f}' for t in t_s)})")
    print(f"speed-up sequential/vmap = {s / v:.2f}x  (target >= 3x)")
    print(f"largest parameter difference between the two: {diff:.2e}")


if __name__ == "__main__":
    main()
