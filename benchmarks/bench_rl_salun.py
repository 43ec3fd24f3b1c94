"""RL, SalUn and SalUn-soft on digits: how often each setting reaches the class-forgetting goal.

For each seed an original ``mlp`` (256,256) is trained on the digits training split with the
digits recipe and that seed, then every setting unlearns one class (default 3) with the same seed.
The goal: forget accuracy <= 0.05 and test accuracy on the other classes at most 3 points below
the original's. Printed per setting: N of the seeds that meet it, the worst forget accuracy, the
worst and mean drop on the other classes, and the seconds per call.

Settings: each method with its defaults and its digits ``dataset_params`` (what ``bench run``
uses), and the alternatives the defaults were chosen against (``salun-soft`` with the joint pass
of the reference's CIFAR-10 path; ``rl``/``salun`` with batch 64).

    .venv/bin/python benchmarks/bench_rl_salun.py                 # seeds 0-9, about 2 minutes on one thread
    .venv/bin/python benchmarks/bench_rl_salun.py --seeds 0-2 --forget-class 5
"""

from __future__ import annotations

import argparse
import time

import torch

SETTINGS = [
    ("rl", {}),
    ("salun", {}),
    ("salun-soft", {}),
    ("salun-soft", {"passes": "joint"}),
    ("rl", {"batch_size": 64}),
    ("salun", {"batch_size": 64}),
]


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--forget-class", type=int, default=3)
    args = ap.parse_args()

    from bench.datasets.digits import Digits
    from bench.methods.rl import RandomLabels
    from bench.methods.salun import SalUn, SalUnSoft

    from bench.core.contracts import ForgetRequest, MethodContext
    from bench.core.recipe import build_recipe
    from bench.nn.nets import MLP
    from bench.nn.training import accuracy, fit, set_threads

    set_threads(1)
    methods = {m.name: m for m in (RandomLabels(), SalUn(), SalUnSoft())}
    d = Digits().load(None, False, None)
    c = args.forget_class
    forget, test_other = d.train_y == c, d.test_y != c
    request = ForgetRequest(num_classes=d.num_classes, kind="class", forget_class=c,
                            forget_indices=torch.nonzero(forget).flatten().numpy(),
                            forget_x=d.train_x[forget], forget_y=d.train_y[forget],
                            retain_x=d.train_x[~forget], retain_y=d.train_y[~forget])
    recipe = build_recipe(Digits.default_recipe)
    seeds = _seeds(args.seeds)
    rows: dict[int, list] = {i: [] for i in range(len(SETTINGS))}
    for seed in seeds:
        def new_model(seed=seed):
            torch.manual_seed(seed)
            return MLP(64, (256, 256), d.num_classes)

        original = fit(new_model(), d.train_x, d.train_y, recipe, seed=seed)
        other0 = accuracy(original, d.test_x[test_other], d.test_y[test_other])
        for i, (name, overrides) in enumerate(SETTINGS):
            method = methods[name]
            params = {**method.default_params, **method.dataset_params.get("digits", {}), **overrides}
            model = new_model()
            model.load_state_dict(original.state_dict())
            start = time.perf_counter()
            out = method.unlearn(model, request, params, MethodContext(seed, "cpu", new_model))
            seconds = time.perf_counter() - start
            f = accuracy(out, request.forget_x, request.forget_y)
            drop = other0 - accuracy(out, d.test_x[test_other], d.test_y[test_other])
            rows[i].append((f, drop, seconds))
    print(f"digits / mlp / class:{c}, seeds {args.seeds}: goal forget_acc <= 0.05 and drop on the other classes <= 0.03")
    for i, (name, overrides) in enumerate(SETTINGS):
        r = rows[i]
        ok = sum(f <= 0.05 and drop <= 0.03 for f, drop, _ in r)
        label = name + (" " + ",".join(f"{k}={v}" for k, v in overrides.items()) if overrides else " (defaults)")
        print(f"  {label:<34} {ok}/{len(r)}  worst forget {max(x[0] for x in r):.3f}  "
              f"worst drop {max(x[1] for x in r):+.3f}  mean drop {sum(x[1] for x in r) / len(r):+.3f}  "
              f"{sum(x[2] for x in r) / len(r):.2f} s/call")


if __name__ == "__main__":
    main()
