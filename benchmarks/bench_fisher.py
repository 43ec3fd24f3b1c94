"""Fisher information: what the method uses (closed form for MLPs, else vmap of per-class
gradients in chunks) vs the notebook's loop (sequential: one example, K backward passes at a time).

Usage: python benchmarks/bench_fisher.py [--model mlp|cnn] [--hidden 256,256] [--n 1437] [--chunk 0]
       [--repeats 3] [--threads 2] [--device cpu]

All compute the diagonal "true" Fisher of the same model on the same digits training points:
``bench.methods.fisher.fisher_diagonal`` (for the default MLP the closed form
``linear_fisher_diagonal``), ``vmap_fisher_diagonal`` (vmap of jacrev, any architecture) and
``fisher_diagonal_loop`` (literally the ``hessian`` cell of Golatkar et al.'s ``Forgetting.ipynb``).
Prints the median seconds of each (interleaved repeats, after one warm-up of each), the ratios to
the loop (target on the default MLP, 2 threads: at least 2x) and the largest relative differences.
Needs no ray or mlflow. Timings on a shared machine are only comparable within one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.datasets.digits import Digits
from bench.methods.fisher import CHUNK_BUDGET, auto_chunk, fisher_diagonal, fisher_diagonal_loop, vmap_fisher_diagonal
from bench.nn.nets import MLP, SmallCNN
from bench.nn.training import set_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    ap.add_argument("--n", type=int, default=1437)
    ap.add_argument("--hidden", default="256,256", help="hidden widths of the mlp")
    ap.add_argument("--chunk", type=int, default=0, help="examples per vmap chunk; 0: the method's automatic size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    set_threads(args.threads)
    dev = args.device
    d = Digits().load(None, False, None)
    x = d.train_x[: args.n].to(dev)
    torch.manual_seed(0)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    model = (MLP(64, hidden, 10) if args.model == "mlp" else SmallCNN(1, 10)).to(dev)
    args.chunk = args.chunk or auto_chunk(model, 10)

    def timed(fn):
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    n_params = sum(p.numel() for p in model.parameters())
    vchunk = max(1, min(512, CHUNK_BUDGET // (10 * n_params)))  # the vmap path's automatic chunk

    def fast():
        return fisher_diagonal(model, x, args.chunk)

    def vmapped():
        return vmap_fisher_diagonal(model, x, vchunk)

    def loop():
        return fisher_diagonal_loop(model, x, 10)

    fisher_diagonal(model, x[: args.chunk], args.chunk)  # warm-up of each path
    vmap_fisher_diagonal(model, x[:vchunk], vchunk)
    fisher_diagonal_loop(model, x[:4], 10)
    times = {"method": [], "vmap": [], "loop": []}
    outs = {}
    for _ in range(args.repeats):
        for key, fn in (("method", fast), ("vmap", vmapped), ("loop", loop)):
            s, outs[key] = timed(fn)
            times[key].append(s)
    params = sum(p.numel() for p in model.parameters())
    name = f"mlp:{args.hidden}" if args.model == "mlp" else "cnn"
    print(f"digits, {len(x)} points, {name} ({params} params), device {dev}, {args.threads} thread(s), "
          f"chunk {args.chunk} (vmap {vchunk})")
    med = {k: statistics.median(v) for k, v in times.items()}
    for key, label in (("method", "method (closed form)" if args.model == "mlp" else "method (vmap)"), ("vmap", "vmap"), ("loop", "loop")):
        print(f"{label:<21}: median {med[key]:.3f}s  {[round(t, 3) for t in times[key]]}")
    b = outs["loop"]
    for key in ("method", "vmap"):
        rel = max(float((outs[key][k] - b[k]).abs().max() / b[k].abs().max()) for k in b)
        ratio = med["loop"] / med[key]
        print(f"ratio loop/{key}: {ratio:.1f}x (target >= 2x: {'met' if ratio >= 2 else 'NOT met'}); "
              f"max relative difference to the loop {rel:.1e}")


if __name__ == "__main__":
    main()
