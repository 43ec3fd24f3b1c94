"""Shadow models trained together (stacked, or under torch.func.vmap) vs one after another, same recipe.

Usage: python benchmarks/bench_shadows.py [--models 8] [--hidden 64 --hidden 256,256] [--epochs 30]
                                          [--threads 2] [--repeats 1] [--device cpu]
Trains M MLP shadow models of the digits recipe (batch 64, SGD with momentum, cosine schedule) on
random halves of the digits pool (training + test split, 898 points each), the way
``bench.eval.shadows`` trains them for LiRA/RMIA, three ways in the same run (interleaved when
repeated): ``stacked`` (stacked parameters, one batched matrix multiply per layer: what the harness
uses for MLPs), ``vmap`` (stacked parameters through ``torch.func.vmap(functional_call)``: what it
uses for other architectures) and ``sequential`` (``bench.nn.training.fit`` per model). Prints both wall clocks and CPU times, their ratios (target >= 3x on the 2-core machine) and the
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
    ap.add_argument("--hidden", action="append", help="MLP hidden sizes, repeatable [default: 64 and 256,256]")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    for hidden in a.hidden or ["64", "256,256"]:
        bench_one(a, hidden)


def bench_one(a, hidden: str) -> None:
    from bench.datasets.digits import Digits
    from bench.nn.models import MLPModel
    from bench.core.recipe import build_recipe
    from bench.eval.shadows import plan_set, train_models
    from bench.nn.training import set_threads, warm_up
    from bench.nn.nets import model_factory

    set_threads(a.threads)
    d = Digits().load(None, False, None)
    recipe = build_recipe(Digits.default_recipe, {"epochs": a.epochs})
    x = torch.cat([d.train_x, d.test_x]).to(a.device)
    y = torch.cat([d.train_y, d.test_y]).to(a.device)
    keep, seeds = plan_set("shadows", a.models, d.train_size, len(d.test_y), None, 0)
    subsets = [np.flatnonzero(k) for k in keep]
    model_obj = MLPModel()

    def new(seed):
        return model_factory(model_obj, hidden, d, seed, a.device)()

    warm_up(new(0), x[:64], y[:64])
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    ways = {"stacked": dict(vectorize=True), "vmap": dict(vectorize=True, force_vmap=True), "sequential": dict(vectorize=False)}
    wall = {k: [] for k in ways}
    cpu = {k: [] for k in ways}
    out = {}
    for _ in range(a.repeats):
        for key, kw in ways.items():
            t0, c0 = time.perf_counter(), time.process_time()
            out[key], how = train_models(new, x, y, subsets, seeds, recipe, **kw)
            sync()
            wall[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - c0)
            assert how == key, (how, key)
    n_params = sum(p.numel() for p in out["sequential"][0].parameters())
    print(f"{a.models} shadow MLPs mlp:{hidden} ({n_params:,} params each) on {len(subsets[0])} digits points each, "
          f"{a.epochs} epochs, batch {recipe.batch_size}, {a.threads} thread(s), device {a.device}, {a.repeats} repeat(s)")
    w = {k: statistics.median(v) for k, v in wall.items()}
    c = {k: statistics.median(v) for k, v in cpu.items()}
    for key in ways:
        print(f"{key:<11}: wall {w[key]:6.2f} s  CPU {c[key]:6.2f} s  (wall of each repeat: {', '.join(f'{t:.2f}' for t in wall[key])})")
    for key in ("stacked", "vmap"):
        diff = max(float((p.detach() - q.detach()).abs().max())
                   for a_, b_ in zip(out[key], out["sequential"]) for p, q in zip(a_.parameters(), b_.parameters()))
        print(f"speed-up sequential/{key} = {w['sequential'] / w[key]:.2f}x wall, {c['sequential'] / c[key]:.2f}x CPU time "
              f"(target >= 3x); largest parameter difference to sequential {diff:.1e}")
    print("(on a shared, loaded machine trust the CPU-time ratio)")
    roofline(a, out["sequential"][0], len(subsets[0]), recipe, w)


def roofline(a, model, n_points: int, recipe, wall: dict) -> None:
    """The matrix-multiply work of the training against what the CPU can do: a speed-up over
    sequential above peak / (sequential's achieved rate) is impossible on this hardware."""
    import math

    sizes = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    per_sample = 6 * sum(i * o for i, o in sizes)  # forward 2, backward 4 multiply-adds x2 per weight
    steps = math.ceil(n_points / recipe.batch_size) * recipe.epochs
    flops = per_sample * n_points * recipe.epochs * a.models
    # the machine's rate on the same threads: a square sgemm, and the stacked shape of one layer
    peak = 0.0
    for shape in ((1024, 1024, 1024), (a.models * recipe.batch_size, max(o for _, o in sizes), max(i for i, _ in sizes))):
        m_, n_, k_ = shape
        x, w_ = torch.randn(m_, k_), torch.randn(k_, n_)
        torch.mm(x, w_)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 0.5:
            torch.mm(x, w_)
            reps += 1
        rate = 2 * m_ * n_ * k_ * reps / (time.perf_counter() - t0)
        peak = max(peak, rate)
        print(f"roofline: sgemm {m_}x{k_} @ {k_}x{n_} on {a.threads} thread(s): {rate / 1e9:.1f} GFLOP/s")
    print(f"roofline: {flops / 1e9:.1f} GFLOP of matrix multiplies in all ({a.models} models x {steps} steps, "
          f"{per_sample / 1e6:.2f} MFLOP per sample); at the peak of {peak / 1e9:.1f} GFLOP/s at least {flops / peak:.2f} s")
    for key, t in wall.items():
        print(f"roofline: {key:<10} achieves {flops / t / 1e9:6.1f} GFLOP/s = {100 * flops / t / peak:5.1f}% of peak")
    print(f"roofline: the largest speed-up over sequential this CPU allows is {wall['sequential'] * peak / flops:.2f}x")


if __name__ == "__main__":
    main()
