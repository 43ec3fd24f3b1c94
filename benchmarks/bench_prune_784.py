"""PRUNE on 784-dimensional inputs: where its time goes on an MNIST-sized MLP trained on real images.

Real MNIST files cannot be had on this machine, so digits' 8x8 images are upsampled to 28x28
(bilinear, clipped to [0, 1]): 784 inputs, an ``mlp`` 784-256-256-10 trained with the digits
default recipe (30 epochs, seed 0), N random forget points (seed 1), PRUNE's default parameters.
It prints PRUNE's wall time, its LP seconds, the certificate check's, forget and test accuracy and
the test predictions changed, and with ``--profile`` the construction's functions by cumulative
time (cProfile): the margin LPs of the patches (``rows_patch``), the separation bounds
(``violation_floor``, ``min_violation``) and the rest.

    python benchmarks/bench_prune_784.py                 # 8 forget points
    python benchmarks/bench_prune_784.py --points 20 --profile
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_prune  # noqa: E402,F401  (makes bench.methods importable from a plain checkout)


def setting(points: int):
    """(model, ForgetRequest, train x, train y, test x, test y) on digits upsampled to 28x28."""
    import torch.nn.functional as F

    from bench.core.contracts import ForgetRequest
    from bench.core.recipe import build_recipe
    from bench.datasets.digits import Digits
    from bench.nn.nets import MLP
    from bench.nn.training import fit

    d = Digits().load(None, False, None)

    def up(x):
        return F.interpolate(x.reshape(-1, 1, 8, 8), size=28, mode="bilinear", align_corners=False).reshape(len(x), -1).clamp(0, 1)

    x, y, tx, ty = up(d.train_x), d.train_y, up(d.test_x), d.test_y
    torch.manual_seed(0)
    model = fit(MLP(784, (256, 256), 10), x, y, build_recipe(Digits.default_recipe), seed=0).eval()
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))[:points]] = True
    req = ForgetRequest(num_classes=10, kind="random", forget_class=None, forget_indices=torch.nonzero(mask).flatten().numpy(),
                        forget_x=x[mask].clone(), forget_y=y[mask].clone(),
                        input_bounds=(torch.tensor(0.0), torch.tensor(1.0)))
    return model, req, x, y, tx, ty


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=8, help="random forget points (default 8)")
    ap.add_argument("--profile", action="store_true", help="print the construction's functions by cumulative time")
    args = ap.parse_args()

    from bench.core.contracts import MethodContext
    from bench.methods.prune import Prune
    from bench.nn.training import predict_logits

    model, req, x, y, tx, ty = setting(args.points)
    before = predict_logits(model, tx).argmax(1)
    print(f"digits upsampled to 28x28, mlp 784-256-256-10 (30 epochs): train acc "
          f"{(predict_logits(model, x).argmax(1) == y).float().mean():.3f}, test acc {(before == ty).float().mean():.3f}; "
          f"{args.points} random forget points, PRUNE's defaults")
    ctx = MethodContext(seed=0, device="cpu", new_model=None)
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    out = Prune().unlearn(copy.deepcopy(model), req, dict(Prune.default_params), ctx)
    seconds = time.perf_counter() - t0
    if prof is not None:
        prof.disable()
    after = predict_logits(out, tx).argmax(1)
    m = ctx.metrics
    print(f"PRUNE {seconds:.1f} s ({seconds / args.points:.2f} s per point): LPs {m['lp_seconds']:.1f} s, "
          f"certificate check {m.get('certify_seconds', float('nan')):.2f} s; {int(m['patches'])} patches, "
          f"certified_fraction {m.get('certified_fraction', float('nan')):.2f}; forget acc "
          f"{(predict_logits(out, req.forget_x).argmax(1) == req.forget_y).float().mean():.3f}, test acc "
          f"{(after == ty).float().mean():.3f}, test predictions changed {(after != before).float().mean():.4f}")
    if prof is not None:
        import pstats

        stats = pstats.Stats(prof)
        stats.sort_stats("cumulative")
        print("the construction's calls by cumulative time (methods/prune):")
        for (file, line, func), row in sorted(stats.stats.items(), key=lambda kv: -kv[1][3]):
            if "methods/prune" in file or "bench/methods/prune" in file:
                calls, cum = row[1], row[3]
                if cum >= 0.02 * seconds:
                    print(f"  {cum:8.2f} s  {calls:6d} calls  {Path(file).name}:{line} {func}")


if __name__ == "__main__":
    main()
