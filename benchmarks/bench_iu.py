"""``l1-sparse`` and ``iu`` on digits ``class:3``: how many of 10 originals reach the class goal.

Usage: python benchmarks/bench_iu.py [--seeds 0-9] [--l1 3e-3,4e-3,5e-3,6e-3,7e-3,1e-2] [--iu 0.2,10,12,13,15,20]
       [--hidden 256,256] [--threads 1]

For each seed s, the digits MLP (default ``mlp``: 64-256-256-10) is trained as the harness trains
the original (``torch.manual_seed(s)``, then ``fit`` with the digits default recipe and seed s).
Each method then forgets class 3 with its defaults and the ``alpha`` of each grid point (``ctx.seed``
= s). Per setting it prints the mean forget accuracy, the mean change of test accuracy on the
other nine classes (points), the mean seconds per call, and N/10: how many seeds reach the goal
(forget accuracy <= 0.05 and test accuracy on the other classes within 3 points of the
original's). The default grids hold the shipped digits values (l1-sparse 6e-3, iu 13) and their
neighbours. Needs no ray or mlflow; about 80 s on one thread (2026-12-07, under load).
"""

from __future__ import annotations

import argparse
import time

import torch
from bench.datasets.digits import Digits
from bench.methods.influence import InfluenceUnlearning
from bench.methods.l1_sparse import L1Sparse

from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.recipe import build_recipe
from bench.nn.nets import MLP
from bench.nn.training import accuracy, fit, set_threads


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--l1", default="3e-3,4e-3,5e-3,6e-3,7e-3,1e-2",
                    help="l1-sparse alpha grid (6e-3: the shipped digits value)")
    ap.add_argument("--iu", default="0.2,10,12,13,15,20", help="iu alpha grid (13: the shipped digits value)")
    ap.add_argument("--hidden", default="256,256")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_threads(args.threads)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    d = Digits().load(None, False, None)
    forget = d.train_y == 3
    other = d.test_y != 3
    request = ForgetRequest(num_classes=10, kind="class", forget_class=3, forget_x=d.train_x[forget],
                            forget_y=d.train_y[forget], retain_x=d.train_x[~forget], retain_y=d.train_y[~forget])
    recipe = build_recipe(Digits.default_recipe)
    settings = [(L1Sparse(), float(a)) for a in args.l1.split(",")] + [(InfluenceUnlearning(), float(a))
                                                                       for a in args.iu.split(",")]
    rows = {(m.name, a): [] for m, a in settings}
    for seed in _seeds(args.seeds):
        def new_model(seed=seed):
            torch.manual_seed(seed)
            return MLP(64, hidden, 10)

        original = fit(new_model(), d.train_x, d.train_y, recipe, seed=seed)
        base = accuracy(original, d.test_x[other], d.test_y[other])
        for method, alpha in settings:
            model = new_model()
            model.load_state_dict(original.state_dict())
            params = {**method.default_params, "alpha": alpha}
            start = time.perf_counter()
            out = method.unlearn(model, request, params, MethodContext(seed, "cpu", new_model))
            secs = time.perf_counter() - start
            f = accuracy(out, request.forget_x, request.forget_y)
            t = accuracy(out, d.test_x[other], d.test_y[other])
            rows[(method.name, alpha)].append((f, 100 * (t - base), secs, f <= 0.05 and t >= base - 0.03))
        print(f"seed {seed} done (original test acc on other classes {base:.3f})", flush=True)
    print(f"\n{'method':10} {'alpha':>8} {'forget acc':>10} {'d test (pts)':>12} {'s/call':>7} {'goal':>6}")
    for (name, alpha), r in rows.items():
        n = len(r)
        print(f"{name:10} {alpha:8.2g} {sum(x[0] for x in r) / n:10.3f} {sum(x[1] for x in r) / n:12.2f} "
              f"{sum(x[2] for x in r) / n:7.2f} {sum(x[3] for x in r):>3}/{n}")


if __name__ == "__main__":
    main()
