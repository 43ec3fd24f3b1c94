"""SISA unlearning time vs retraining from scratch, beside the theoretical speed-up S*3R/(2R+1).

Usage: python benchmarks/bench_sisa.py [--shards 2,5,10] [--slices 1,4] [--requests 5]
       [--epochs 30] [--threads 1] [--device cpu]

On digits with the ``mlp`` model and the digits recipe: for each (S, R) the ensemble is trained
once, then ``--requests`` single-point requests (uniformly drawn training points, each applied to
a fresh copy of the ensemble) are unlearned; the retrain time is the median of ``--requests``
from-scratch trainings on D minus one point with the same recipe. Prints the median times, the
measured ratio retrain/unlearn and the theory (baselines.md A2: the expected cost of a uniformly
placed request is (e|D|/S)(2R+1)/(3R) example passes against e|D|). Needs no ray or mlflow.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from bench.core.contracts import ForgetRequest, MethodContext
from bench.datasets.digits import Digits
from bench.methods.sisa import Sisa
from bench.nn.nets import MLP
from bench.core.recipe import build_recipe
from bench.nn.training import accuracy, fit, set_threads, warm_up


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", default="2,5,10")
    ap.add_argument("--slices", default="1,4")
    ap.add_argument("--requests", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    set_threads(args.threads)
    dev = args.device
    d = Digits().load(None, False, None)
    x, y = d.train_x.to(dev), d.train_y.to(dev)
    n = len(y)
    recipe = build_recipe(Digits.default_recipe, {"epochs": args.epochs})

    def new_model():
        torch.manual_seed(0)
        return MLP(64, (64, 64), 10).to(dev)

    warm_up(new_model(), x, y)
    rng = np.random.default_rng(0)
    points = rng.choice(n, size=args.requests, replace=False)

    def time_retrain(p) -> float:
        keep = torch.ones(n, dtype=torch.bool, device=dev)
        keep[int(p)] = False
        _sync(dev)
        t0 = time.perf_counter()
        fit(new_model(), x[keep], y[keep], recipe, seed=0)
        _sync(dev)
        return time.perf_counter() - t0

    mono = fit(new_model(), x, y, recipe, seed=0)
    print(f"digits/mlp, {n} training points, {args.epochs} epochs, device {dev}, {args.threads} thread(s); "
          f"monolithic test acc {accuracy(mono, d.test_x.to(dev), d.test_y.to(dev)):.3f}")
    print("retrain = median time of retraining from scratch without the point, interleaved with the unlearning runs")
    print(f"{'S':>3} {'R':>3} {'train s':>8} {'retrain s':>10} {'unlearn s':>10} {'measured':>9} {'theory':>7} {'ens acc':>8}")
    sisa = Sisa()
    for S in (int(s) for s in args.shards.split(",")):
        for R in (int(r) for r in args.slices.split(",")):
            params = dict(sisa.default_params, shards=S, slices=R)
            ctx = MethodContext(seed=0, device=dev, new_model=new_model, recipe=recipe)
            _sync(dev)
            t0 = time.perf_counter()
            ens = sisa.train(x, y, params, ctx)
            _sync(dev)
            t_train = time.perf_counter() - t0
            acc = accuracy(ens, d.test_x.to(dev), d.test_y.to(dev))
            times, retrain = [], []
            for p in points:
                retrain.append(time_retrain(p))
                keep = torch.ones(n, dtype=torch.bool, device=dev)
                keep[int(p)] = False
                req = ForgetRequest(num_classes=10, kind="indices", forget_indices=np.array([p]),
                                    retain_x=x[keep], retain_y=y[keep])
                copy_ = copy.deepcopy(ens)
                _sync(dev)
                t0 = time.perf_counter()
                sisa.unlearn(copy_, req, params, MethodContext(seed=0, device=dev, new_model=new_model))
                _sync(dev)
                times.append(time.perf_counter() - t0)
            t_unlearn, t_retrain = statistics.median(times), statistics.median(retrain)
            print(f"{S:>3} {R:>3} {t_train:>8.3f} {t_retrain:>10.4f} {t_unlearn:>10.4f} {t_retrain / t_unlearn:>8.2f}x "
                  f"{S * 3 * R / (2 * R + 1):>6.2f}x {acc:>8.3f}")


if __name__ == "__main__":
    main()
