"""Fisher information: torch.func (vmap of per-class gradients, in chunks) vs the notebook's loop.

Usage: python benchmarks/bench_fisher.py [--model mlp|cnn] [--hidden 64,64] [--n 1437] [--chunk 0]
       [--repeats 3] [--threads 1] [--device cpu]

Both compute the diagonal "true" Fisher of the same model on the same digits training points
(``bench.methods.fisher.fisher_diagonal`` and ``fisher_diagonal_loop``, the latter literally the
``hessian`` cell of Golatkar et al.'s ``Forgetting.ipynb``: batch of one, K backward passes per
example). Prints the median seconds of each (interleaved repeats, after one warm-up of each),
their ratio (target: vmap at least 5x faster) and the largest relative difference. Needs no ray
or mlflow.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.datasets.digits import Digits
from bench.methods.fisher import auto_chunk, fisher_diagonal, fisher_diagonal_loop
from bench.nn.nets import MLP, SmallCNN
from bench.nn.training import set_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    ap.add_argument("--n", type=int, default=1437)
    ap.add_argument("--hidden", default="64,64", help="hidden widths of the mlp")
    ap.add_argument("--chunk", type=int, default=0, help="examples per vmap chunk; 0: the method's automatic size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
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

    def fast():
        return fisher_diagonal(model, x, args.chunk)

    def loop():
        return fisher_diagonal_loop(model, x, 10)

    fisher_diagonal(model, x[: args.chunk], args.chunk)  # warm-up of each path
    fisher_diagonal_loop(model, x[:4], 10)
    t_fast, t_loop = [], []
    for _ in range(args.repeats):
        s, a = timed(fast)
        t_fast.append(s)
        s, b = timed(loop)
        t_loop.append(s)
    rel = max(float((a[k] - b[k]).abs().max() / b[k].abs().max()) for k in b)
    params = sum(p.numel() for p in model.parameters())
    name = f"mlp:{args.hidden}" if args.model == "mlp" else "cnn"
    print(f"digits, {len(x)} points, {name} ({params} params), device {dev}, {args.threads} thread(s), chunk {args.chunk}")
    print(f"vmap  : median {statistics.median(t_fast):.3f}s  {[round(t, 3) for t in t_fast]}")
    print(f"loop  : median {statistics.median(t_loop):.3f}s  {[round(t, 3) for t in t_loop]}")
    print(f"ratio loop/vmap: {statistics.median(t_loop) / statistics.median(t_fast):.1f}x (target >= 5x); "
          f"max relative difference {rel:.1e}")


if __name__ == "__main__":
    main()
