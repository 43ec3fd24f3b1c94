"""PRUNE certificates on the default setting, over seeds: how many runs certify every patch.

The setting of ``bench run --methods prune`` on digits: ``mlp`` (256,256) trained with the digits
default recipe (30 epochs) from the trial seed, the forget set drawn with the same seed, PRUNE's
default parameters. For every (forget spec, seed) it prints certified_fraction, the points the
method itself reports as impossible to certify (shared facets), forget accuracy, test accuracy
against the original's, the patches and the seconds; then, per forget spec, the count of seeds
(N of M) with certified_fraction 1.0, test accuracy within 0.005 of the original and forget
accuracy 0.

    python benchmarks/bench_prune_certify.py                       # seeds 0-4, random:100 random:10% class:3
    python benchmarks/bench_prune_certify.py --seeds 0 --specs random:100
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_prune  # noqa: E402,F401  (makes bench.methods importable from a plain checkout)


def setting(seed: int, spec: str):
    """(original model, ForgetRequest, test x, test y) as the harness builds them for ``seed``."""
    from bench.core.contracts import ForgetRequest
    from bench.core.forget import parse_forget
    from bench.core.recipe import build_recipe
    from bench.datasets.digits import Digits
    from bench.nn.nets import MLP
    from bench.nn.training import fit, seed_everything

    d = Digits().load(None, False, None)
    seed_everything(seed)
    torch.manual_seed(seed)
    model = fit(MLP(64, (256, 256), 10), d.train_x, d.train_y, build_recipe(Digits.default_recipe), seed=seed).eval()
    fs = parse_forget(spec)
    idx = fs.select(d.train_y.numpy(), 10, seed)
    req = ForgetRequest(num_classes=10, kind=fs.kind, forget_class=fs.label, forget_indices=idx,
                        forget_x=d.train_x[idx].clone(), forget_y=d.train_y[idx].clone(),
                        input_bounds=(torch.tensor(0.0), torch.tensor(1.0)))
    return model, req, d


def run(seed: int, spec: str, params: dict | None = None) -> dict:
    from bench.core.contracts import MethodContext
    from bench.methods.prune import Prune
    from bench.nn.training import accuracy

    model, req, d = setting(seed, spec)
    ctx = MethodContext(seed=seed, device="cpu", new_model=None)
    t0 = time.perf_counter()
    out = Prune().unlearn(copy.deepcopy(model), req, {**Prune.default_params, **(params or {})}, ctx)
    seconds = time.perf_counter() - t0
    tx, ty = d.test_x, d.test_y
    if req.kind == "class":
        keep = ty != req.forget_class
        tx, ty = tx[keep], ty[keep]
    return {"seed": seed, "spec": spec, "certified_fraction": ctx.metrics.get("certified_fraction", float("nan")),
            "uncertifiable": ctx.metrics.get("uncertifiable_points", 0.0),
            "forget_acc": accuracy(out, req.forget_x, req.forget_y),
            "test_orig": accuracy(model, tx, ty), "test": accuracy(out, tx, ty),
            "patches": int(ctx.metrics["patches"]), "seconds": seconds,
            "certify_seconds": ctx.metrics.get("certify_seconds", 0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--specs", default="random:100,random:10%,class:3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-p", action="append", default=[], help="prune parameter KEY=VALUE (python literal)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import ast

    params = {}
    for kv in args.p:
        k, v = kv.split("=", 1)
        try:
            params[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            params[k] = v
    seeds = [int(s) for s in args.seeds.split(",")]
    print("digits, mlp 256,256, default 30-epoch recipe; test accuracy on the retained classes for class:N")
    for spec in args.specs.split(","):
        ok = 0
        for seed in seeds:
            r = run(seed, spec, params)
            good = (r["certified_fraction"] == 1.0 and r["forget_acc"] == 0.0
                    and r["test"] >= r["test_orig"] - 0.005)
            ok += good
            print(f"  {spec:11s} seed {seed}: certified {r['certified_fraction']:.3f}  uncertifiable "
                  f"{int(r['uncertifiable'])}  forget acc {r['forget_acc']:.3f}  test {r['test_orig']:.4f} -> "
                  f"{r['test']:.4f}  patches {r['patches']:3d}  {r['seconds']:6.2f} s (check "
                  f"{r['certify_seconds']:.2f} s)  {'ok' if good else 'FAIL'}", flush=True)
        print(f"  {spec}: {ok} of {len(seeds)} seeds certify every patch with forget acc 0 and test within 0.005")


if __name__ == "__main__":
    main()
