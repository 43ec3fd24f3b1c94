"""PRUNE performance, measured in one run (no ray, no mlflow needed).

1. Per-point patch time on an MNIST-sized MLP (784-256-256-10, random weights, synthetic inputs in
   the unit box): region in closed form + REASSURE's per-row construction (C - 1 = 9 LPs), exact
   (every region row) and with ``relax_rows`` (only the rows nearest to the point: a sound, cheaper
   bound whose cost is a larger patch: the ratio of K is printed), and the exact patch again with the
   plain start (no guessed starting bases, methods/prune/crash.py) on the same points, for the
   speed-up of the guess measured in the same run. REASSURE reports about 21 s per
   point on 10 cores (Fu & Li, ICLR 2022, MNIST 100 points in 2117 s).
2. PRUNE vs retraining from scratch for 100 random forget points on digits (mlp 256,256, the digits
   recipe), wall time of each in this process, and the ratio.
3. Memory of the patched model (bytes of patch buffers) for 10, 100 (and 500 with --full) forget
   points on digits.
4. Where PRUNE wins (benchmarks/bench_prune_crossover.py): retraining time against the training-set
   size on MNIST-1D (default; or synthetic data with ``--cross-data synthetic``), every size's model
   trained to the same training accuracy (``--cross-fit 0.8``; ``--cross-fit 0`` for a fixed
   ``--cross-epochs``), PRUNE's time for 100 forget points, and the crossover size, measured or
   extrapolated from a linear fit of retraining time (``--cross-sizes``, ``--cross-data``,
   ``--cross-dim``; skip with ``--skip 4``).

    python benchmarks/bench_prune.py --skip 4         # short: parts 1-3 (3 points, sizes 10,100), minutes
    python benchmarks/bench_prune.py                  # with part 4, the crossover (MNIST-1D up to 64,000 points): long
    python benchmarks/bench_prune.py --full --points 10 --device cpu
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch


def _plugins_importable() -> None:
    """Make ``bench.methods`` / ``bench.datasets`` importable from a plain checkout (a machine with
    torch, scipy and scikit-learn but without this package installed, or without pluggy)."""
    try:
        import bench.methods.prune  # noqa: F401  (installed: nothing to do)
        return
    except ImportError:
        pass
    root = Path(__file__).resolve().parents[1]
    if "bench" not in sys.modules:
        try:
            sys.path.insert(0, str(root))
            import bench  # noqa: F401
        except ImportError:  # no pluggy: a bare package with a no-op hookimpl marker
            pkg = types.ModuleType("bench")
            pkg.__path__ = [str(root / "bench")]
            pkg.hookimpl = lambda f=None, **kw: f if f is not None else (lambda g: g)
            sys.modules["bench"] = pkg
    for name, folder in (("bench.datasets", "datasets"), ("bench.methods", "methods")):
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, root / folder / "__init__.py",
                                                          submodule_search_locations=[str(root / folder)])
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)


_plugins_importable()


def per_point(points: int, relax: int, threads: int) -> None:
    from bench.methods.prune.lp import Clock, PolytopeLP, highspy
    from bench.methods.prune.network import activation_region, split
    from bench.methods.prune.patches import bound_K, rows_patch
    from bench.nn.nets import MLP

    torch.manual_seed(0)
    model = MLP(784, (256, 256), 10)
    _, head = split(model)
    rng = np.random.default_rng(0)
    lo, hi = np.zeros(784), np.ones(784)
    print(f"[1] 784-256-256-10 MLP, {points} synthetic points, LP backend "
          f"{'highspy (warm-started re-solves)' if highspy is not None else 'scipy linprog'}, {threads} thread(s) "
          f"(the 9 margin LPs split over them, PRUNE's lp_threads)")
    us = [rng.random(784) for _ in range(points)]  # the same points for every row below
    real_min = PolytopeLP.CRASH_MIN_ENTRIES
    rows_of = (("exact (all rows)", 0, True), ("exact, plain start", 0, False), (f"relax_rows={relax}", relax, True))
    for label, rows, guessed in rows_of:
        # "plain start": each margin LP warm-started from the last one's basis, as before the
        # guessed starting bases of methods/prune/crash.py (the same patch, more simplex iterations)
        PolytopeLP.CRASH_MIN_ENTRIES = real_min if guessed else 10**18
        times, Ks, iters = [], [], []
        for u in us:
            t0 = time.perf_counter()
            reg = activation_region(head, u, lo, hi)
            t = int(np.argsort(reg.F @ u + reg.e)[-2])
            clock = Clock()
            lp = PolytopeLP(reg.A, reg.b, lo, hi, clock, point=u, threads=threads).relaxed(u, rows)
            c, d = rows_patch(lp, reg.F, reg.e, t, 1e-3)
            times.append(time.perf_counter() - t0)
            Ks.append(bound_K(c, d, lo, hi))
            iters.append(clock.iterations)
        PolytopeLP.CRASH_MIN_ENTRIES = real_min
        print(f"    {label:18s}: {np.mean(times):6.2f} s/point  ({21.0 / np.mean(times):5.1f}x faster than REASSURE's 21 s)"
              f"  mean K {np.mean(Ks):.3f}  simplex iterations {np.mean(iters):,.0f}/point")
        if label.startswith("exact (all"):
            exact_K, exact_t = np.mean(Ks), np.mean(times)
        elif rows == 0:
            print(f"    guessed starting bases: {np.mean(times) / exact_t:.2f}x faster than the plain start, same points")
    print(f"    locality cost of relax_rows={relax}: K x{np.mean(Ks) / exact_K:.2f} (a larger patch on the same region)")


def _digits_setup(device: str):
    from bench.datasets.digits import Digits
    from bench.nn.nets import MLP
    from bench.core.recipe import build_recipe
    from bench.nn.training import fit

    d = Digits().load(None, False, None)
    recipe = build_recipe(Digits.default_recipe)
    torch.manual_seed(0)
    model = fit(MLP(64, (256, 256), 10).to(device), d.train_x.to(device), d.train_y.to(device), recipe, seed=0)
    return d, recipe, model.eval()


def _forget(d, n: int, device: str):
    from bench.core.contracts import ForgetRequest

    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(len(d.train_y), dtype=torch.bool)
    mask[torch.randperm(len(d.train_y), generator=g)[:n]] = True
    req = ForgetRequest(num_classes=10, kind="random", forget_indices=torch.nonzero(mask).flatten().numpy(),
                        forget_x=d.train_x[mask].to(device), forget_y=d.train_y[mask].to(device),
                        input_bounds=(torch.tensor(0.0, device=device), torch.tensor(1.0, device=device)))
    return mask, req


def prune_vs_retrain(device: str) -> None:
    from bench.core.contracts import MethodContext
    from bench.methods.prune import Prune
    from bench.nn.nets import MLP
    from bench.nn.training import accuracy, fit

    d, recipe, model = _digits_setup(device)
    mask, req = _forget(d, 100, device)
    ctx = MethodContext(seed=0, device=device, new_model=None)
    t0 = time.perf_counter()
    out = Prune().unlearn(copy.deepcopy(model), req, dict(Prune.default_params), ctx)
    prune_s = time.perf_counter() - t0
    rx, ry = d.train_x[~mask].to(device), d.train_y[~mask].to(device)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    retrained = fit(MLP(64, (256, 256), 10).to(device), rx, ry, recipe, seed=0)
    retrain_s = time.perf_counter() - t0
    fx, fy = req.forget_x, req.forget_y
    tx, ty = d.test_x.to(device), d.test_y.to(device)
    print(f"[2] digits mlp 256,256, 100 random forget points, gamma={Prune.default_params['gamma']}")
    print(f"    PRUNE   {prune_s:6.2f} s (of which LP {ctx.metrics['lp_seconds']:.2f} s, certificate check "
          f"{ctx.metrics.get('certify_seconds', 0):.2f} s); forget acc {accuracy(out, fx, fy):.3f}, test acc "
          f"{accuracy(out, tx, ty):.3f}, certified_fraction {ctx.metrics['certified_fraction']:.2f}, "
          f"{int(ctx.metrics['patches'])} patches")
    print(f"    retrain {retrain_s:6.2f} s; forget acc {accuracy(retrained, fx, fy):.3f}, test acc "
          f"{accuracy(retrained, tx, ty):.3f}")
    print(f"    PRUNE / retrain wall time: {prune_s / retrain_s:.2f}")
    check_s = ctx.metrics.get("certify_seconds", 0.0)
    print(f"    per forget point: {prune_s / len(fy):.3f} s; the certificate check is {check_s / prune_s:.0%} of PRUNE's "
          f"time ({check_s:.2f} s against {prune_s - check_s:.2f} s of construction)")


def memory(sizes, device: str) -> None:
    from bench.core.contracts import MethodContext
    from bench.methods.prune import Prune

    d, _, model = _digits_setup(device)
    base = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    print(f"[3] patched-model memory on digits (original {base / 1e6:.2f} MB; patches are float64)")
    for n in sizes:
        _, req = _forget(d, n, device)
        ctx = MethodContext(seed=0, device=device, new_model=None)
        params = {**Prune.default_params, "certify": False}
        out = Prune().unlearn(copy.deepcopy(model), req, params, ctx)
        nbytes = sum(b.numel() * b.element_size() for p in out.patches for b in p.buffers())
        print(f"    {n:4d} forget points: {len(out.patches):4d} patches, {int(ctx.metrics['patch_params']):>10,d} "
              f"patch parameters, {nbytes / 1e6:8.2f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=3, help="synthetic points for the per-point timing (default 3)")
    ap.add_argument("--relax", type=int, default=64, help="relax_rows for the cheaper bound (default 64)")
    ap.add_argument("--full", action="store_true", help="memory curve up to 500 forget points")
    ap.add_argument("--device", default="cpu", help="torch device of the models (LPs run on the CPU)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: 1,2,3,4")
    ap.add_argument("--cross-data", choices=("mnist1d", "synthetic"), default="mnist1d",
                    help="part 4's data: MNIST-1D (default) or synthetic blobs of --cross-dim values")
    ap.add_argument("--cross-sizes", default="1000,16000,64000", help="training-set sizes of part 4")
    ap.add_argument("--cross-prune-sizes", default="1000,64000", help="sizes at which part 4 times PRUNE")
    ap.add_argument("--cross-dim", type=int, default=784, help="input dimension of part 4's MLP")
    ap.add_argument("--cross-epochs", type=int, default=5, help="epochs of part 4's (re)training with --cross-fit 0")
    ap.add_argument("--cross-fit", type=float, default=0.8,
                    help="part 4 trains every size to this training accuracy (the fewest epochs that reach it); "
                         "0: --cross-epochs epochs at every size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(args.skip.split(","))
    if "1" not in skip:
        per_point(args.points, args.relax, args.threads)
    if "2" not in skip:
        prune_vs_retrain(args.device)
    if "3" not in skip:
        memory([10, 100, 500] if args.full else [10, 100], args.device)
    if "4" not in skip:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_prune_crossover

        what = ("MNIST-1D, MLP 40-256-256-10" if args.cross_data == "mnist1d" else
                f"synthetic {args.cross_dim}-d data, MLP {args.cross_dim}-256-256-10")
        fit = args.cross_fit or None
        how = f"{args.cross_epochs} epochs" if fit is None else f"fixed fit: train accuracy >= {fit}"
        print(f"[4] crossover: {what}, {how}, 100 forget points")
        bench_prune_crossover.run([int(n) for n in args.cross_sizes.split(",")],
                                  {int(n) for n in args.cross_prune_sizes.split(",")}, args.cross_dim, args.cross_epochs,
                                  data=args.cross_data, fit=fit)


if __name__ == "__main__":
    main()
