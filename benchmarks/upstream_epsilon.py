"""Our ``epsilon`` attack's per-example epsilon and forgetting quality beside the reference code.

The reference is google-deepmind/unlearning_evaluation ``metric.py`` (commit ffae0ff), the NeurIPS
2023 unlearning challenge's metric, imported from a checkout given on the command line and run
on the CPU (its ``.cuda()`` calls are made no-ops for the run: it has no CPU path) with one line
fixed: its ``assert thr_eps`` on a NumPy array raises for any example with more than one surviving
threshold (a bug upstream; :data:`ASSERT_LINE`).
Both get the same score matrices U, R (N models x n forget examples, the logit-scaled confidences):

- per example: our ``example_epsilon(U[:, i], R[:, i])`` against the reference's
  ``_get_epsilons`` on the positive/negative sides that ``compute_forget_score_from_confs`` picks
  (the side with the larger median is positive), clipped as it clips;
- per matrix: our ``forgetting_quality(U, R)[0]`` against ``compute_forget_score_from_confs``.

Ours builds the reference's thresholds the same way and counts with sorted scores; its rates are
float64 where the reference's are float32, so the epsilons should agree to float32 rounding
(within 1e-5 here) and the forgetting qualities exactly (the buckets are 0.5 wide). The script
counts the examples that agree and prints the largest difference. Cases: columns drawn as
Gaussians with random medians and spreads (either side the peakier), ties of the two medians, and
near-degenerate spreads (epsilon capped at 50). About 50 s for the defaults, most of it the
reference's threshold grids.

Usage: python benchmarks/upstream_epsilon.py --ref DIR [--columns 100] [--models 8,16] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


#: float32 rounding of the reference's rates and logs
TOLERANCE = 1e-5


def _check_dir(root: str | None) -> Path:
    f = Path(root or "") / "metric.py"
    if not root or not f.is_file() or "def _get_epsilons(" not in f.read_text(errors="replace"):
        print(f"error: --ref {root!r} is not a google-deepmind/unlearning_evaluation checkout (metric.py with "
              f"'def _get_epsilons(' not found); fetch it and pass its directory", file=sys.stderr)
        sys.exit(2)
    return Path(root)


#: the one line of metric.py changed for the run: ``assert thr_eps`` on a NumPy array of more than
#: one element raises "truth value ... is ambiguous" in every NumPy, so the published file stops at
#: the first example with more than one surviving threshold; its intent (some threshold survived)
#: is kept
ASSERT_LINE = ("assert thr_eps, ", "assert len(thr_eps), ")


def load_reference(root: Path):
    """``metric`` from ``root``, run on the CPU: ``torch.Tensor.cuda`` a no-op (the reference has no
    CPU path) and its ``assert thr_eps`` fixed (:data:`ASSERT_LINE`); nothing else is changed."""
    import types

    import torch

    torch.Tensor.cuda = lambda self, *a, **k: self
    path = root / "metric.py"
    source = path.read_text()
    if source.count(ASSERT_LINE[0]) != 1:
        print(f"error: {path} does not have the one line '{ASSERT_LINE[0]}...' this script fixes; another "
              "version of the reference?", file=sys.stderr)
        sys.exit(2)
    module = types.ModuleType("metric")
    module.__file__ = str(path)
    exec(compile(source.replace(*ASSERT_LINE), str(path), "exec"), module.__dict__)
    return module


def columns(rng, n_models: int, n: int):
    """U, R [n_models, n]: Gaussian columns with random medians and spreads, a fifth of them with equal
    medians (a tie), a tenth with one side almost constant (the reference's spread-ratio cap)."""
    import numpy as np

    U = np.empty((n_models, n))
    R = np.empty((n_models, n))
    for i in range(n):
        su, sr = rng.uniform(0.05, 3.0, 2)
        mu, mr = rng.normal(0, 2, 2)
        kind = rng.uniform()
        if kind < 0.1:
            su = sr * 1e-3
        U[:, i] = rng.normal(mu, su, n_models)
        R[:, i] = rng.normal(mr, sr, n_models)
        if 0.1 <= kind < 0.3:  # equal medians
            R[:, i] += np.median(U[:, i]) - np.median(R[:, i])
    return U, R


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", help="checkout of google-deepmind/unlearning_evaluation (metric.py)")
    ap.add_argument("--columns", type=int, default=100)
    ap.add_argument("--models", default="8,16", help="N models per side, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    root = _check_dir(a.ref)
    import numpy as np

    from bench.attacks.epsilon import example_epsilon, forgetting_quality

    metric = load_reference(root)
    print(f"reference: {root / 'metric.py'}")
    rng = np.random.default_rng(a.seed)
    faults = 0
    for n_models in (int(x) for x in a.models.split(",")):
        U, R = columns(rng, n_models, a.columns)
        r_pos = np.median(R, 0) > np.median(U, 0)  # the reference's positive side per example
        pos = np.where(r_pos, R, U)
        neg = np.where(r_pos, U, R)
        with warnings.catch_warnings():  # the reference's log(0) on rates of 0 (its thresholds are dropped)
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = np.asarray(metric._get_epsilons(pos, neg, delta=metric.DELTA), float)
            f_ref = float(metric.compute_forget_score_from_confs(U, R))
        ours = np.array([example_epsilon(U[:, i], R[:, i]) for i in range(U.shape[1])])
        diff = ours - ref
        lower_peakier = np.ptp(neg, 0) <= np.ptp(pos, 0)
        agree = np.abs(diff) <= TOLERANCE
        faults += int((~agree).sum())
        print(f"N = {n_models}, {a.columns} examples: epsilon agrees (within {TOLERANCE:g}) on {agree.sum()}, "
              f"largest |difference| {np.abs(diff).max():.2e}; the lower-median side the peakier in "
              f"{lower_peakier.sum()} (agrees on {(agree & lower_peakier).sum()}), capped at 50 by the reference in "
              f"{(ref == 50).sum()}")
        if not agree.all():
            i = int(np.argmax(np.abs(diff)))
            print(f"  largest difference: example {i}, ours {ours[i]:.6f}, reference {ref[i]:.6f}")
        f_ours = forgetting_quality(U, R)[0]
        print(f"  forgetting quality: ours {f_ours:.6f}, reference {f_ref:.6f}, difference {f_ours - f_ref:+.6f}")
        faults += int(f_ours != f_ref)
    print("verdict:", "equal (epsilon to float32 rounding, forgetting quality exactly)" if not faults
          else f"{faults} disagreement(s)")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
