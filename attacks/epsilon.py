"""``epsilon``: the forgetting-quality score of the NeurIPS 2023 Machine Unlearning challenge
(Triantafillou et al., "Are we making progress in unlearning? Findings from the first NeurIPS
unlearning competition", arXiv 2406.09073; ``google-deepmind/unlearning_evaluation``
``metric.py`` and ``main.py``).

1. N unlearned models: the trial's own unlearned model plus N-1 more runs of the trial's method
   from the same original with other seeds; N retrained models on D_r with other seeds
   (``ctx.retrain_shadows``: method-independent, cached). N = ``--shadow-models`` (default 8;
   the challenge used 512, and the paper reports that rankings are stable for much smaller N).
2. Per forget example, the logit-scaled confidence phi = log p_y - log sum_{c!=y} p_c under each
   model: matrices U and R of shape N x |D_f|.
3. Per example, the "positive" side is the one with the larger median. If the smaller spread
   (max - min) is below 1% of the larger, epsilon = 50 (a degenerate distribution).
4. Otherwise, ``metric.py``'s two families of decision rules on its own thresholds, with FPR /
   FNR the rates of calling a negative positive / a positive negative:
   - single threshold: positive iff phi >= t, t on ``ceil(100 * range)`` points spanning the
     pooled range (``torch.linspace``);
   - double threshold: the peakier side (the smaller spread; with equal spreads the lower-median
     side, as the reference's swap has it) iff t_l <= phi <= t_r; t_r on a grid 0.01 apart from
     min + w - 2 to max + 2 of the peakier side (w = its spread), and for each t_r, 400 values of
     t_l from t_r - w - 2 to t_r - w + 2 (``np.linspace``, as the reference builds them).
   eps_t = max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR), delta = 1e-5,
   clipped at >= 0; thresholds where exactly one of FPR, FNR is 0 are dropped, both 0 gives inf;
   epsilon = max_t eps_t clipped to [0, 50]. The counts come from sorted scores (``searchsorted``)
   instead of the reference's [models x thresholds] comparison on a GPU: the same rates, in float64
   where the reference has float32. ``benchmarks/upstream_epsilon.py`` runs ``metric.py`` beside
   it (docs/reference-code.md). Both sides constant (the reference's 0/0 spread ratio, where it
   stops with an assertion): 0 for equal values, else 50. Until 2026-12-05 bench took every cut
   between observed values but only intervals of the higher-median side; that missed the
   reference's regions when the lower-median side was the peakier (a lower epsilon in 94 of 155
   random such cases) and found regions the grid does not have elsewhere (a fault of ours).
5. Points per example: 1 for epsilon in [0, 0.5), 1/2 for [0.5, 1), 1/4 for [1, 1.5), ... halving
   per bucket of 0.5, with buckets up to ceil(ln(N - 1)); beyond them 0.
6. ``forget_quality`` F = mean points over D_f (1 = indistinguishable from retraining).
7. ``score`` = F * (RA_u / RA_r) * (TA_u / TA_r), accuracies averaged over the N models each
   (recorded as ``unlearned_retain_acc``, ``retrained_retain_acc``, ``unlearned_test_acc`` and
   ``retrained_test_acc``).

Also logged: ``median_eps``. Cost: N-1 extra unlearning runs per trial, N retrainings per group.
"""

from __future__ import annotations

import math

import numpy as np

from . import signals

DELTA = 1e-5
CAP = 50.0
#: the reference's threshold grids: 100 thresholds per unit of score, intervals within 2 of the spread
STEPS_PER_UNIT = 100
BUFFER = 2.0


def _rates(inside_pos: np.ndarray, n_pos: int, inside_neg: np.ndarray, n_neg: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (FPR, FNR) of rules that call "positive" the scores inside them, from the counts
    of positives and negatives inside each rule (at most (n_pos + 1)(n_neg + 1) distinct pairs)."""
    seen = np.flatnonzero(np.bincount(inside_pos * (n_neg + 1) + inside_neg, minlength=(n_pos + 1) * (n_neg + 1)))
    return (seen % (n_neg + 1)) / n_neg, 1.0 - (seen // (n_neg + 1)) / n_pos


def single_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``metric.py`` ``_get_single_threshold_rates``: positive iff score >= t."""
    import torch

    both = np.r_[pos, neg]
    lo, hi = float(both.min()), float(both.max())
    t = torch.linspace(lo, hi, int(math.ceil((hi - lo) * STEPS_PER_UNIT)), dtype=torch.float64).numpy()

    def at_or_above(v):
        return len(v) - np.searchsorted(np.sort(v), t, side="left")

    return _rates(at_or_above(pos), len(pos), at_or_above(neg), len(neg))


def double_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``metric.py`` ``_get_double_threshold_rates``: the peakier side positive iff t_l <= score <= t_r.
    The eps formula is symmetric in (FPR, FNR), so the peakier side's own rates serve as they are.

    The grid is the reference's (``right`` x ``left``, 400 ``t_l`` per ``t_r``), but along a row of
    ``t_l`` the counts inside change only where ``t_l`` passes a score, so each row is counted at its
    first ``t_l`` and around each score's place in it (found from the row's start and step, then
    read from the grid itself): the same set of (FPR, FNR) as counting all 400, in a quarter to a third of
    the time (``tests/test_attacks.py`` checks them equal to the full count)."""
    spread_p, spread_n = float(np.ptp(pos)), float(np.ptp(neg))
    width = spread_n if spread_p > spread_n else spread_p
    if spread_p >= spread_n:  # the reference's positive: the peakier side
        pos, neg = neg, pos
    lo, hi = pos.min() + width - BUFFER, pos.max() + BUFFER
    right = np.linspace(lo, hi, num=int(np.ceil((hi - lo) * STEPS_PER_UNIT)))
    n_left = int(np.ceil(2 * BUFFER * STEPS_PER_UNIT))
    left = np.linspace(right - width - BUFFER, right - width + BUFFER, num=n_left, axis=1)  # rows ascending
    scores = np.r_[pos, neg]
    step = (left[:, -1] - left[:, 0]) / (n_left - 1)
    near = np.floor((scores[None, :] - left[:, :1]) / step[:, None]).astype(np.int64)  # about where each score falls in each row
    cols = np.concatenate([np.zeros((len(right), 1), np.int64), near - 1, near, near + 1, near + 2], axis=1)
    cols = np.clip(cols, 0, n_left - 1)
    t_left = np.take_along_axis(left, cols, axis=1).reshape(-1)
    t_right = np.repeat(right, cols.shape[1])

    def inside(v):
        v = np.sort(v)
        return np.maximum(np.searchsorted(v, t_right, side="right") - np.searchsorted(v, t_left, side="left"), 0)

    return _rates(inside(pos), len(pos), inside(neg), len(neg))


def example_epsilon(u: np.ndarray, r: np.ndarray, delta: float = DELTA, cap: float = CAP) -> float:
    """Per-example epsilon from the unlearned (``u``) and retrained (``r``) models' scores."""
    u, r = np.asarray(u, np.float64), np.asarray(r, np.float64)
    pos, neg = (u, r) if np.median(u) >= np.median(r) else (r, u)
    spreads = sorted([float(np.ptp(u)), float(np.ptp(r))])
    if spreads[1] == 0.0:
        return 0.0 if np.median(u) == np.median(r) else cap
    if spreads[0] / spreads[1] < 0.01:
        return cap
    (fpr_d, fnr_d), (fpr_s, fnr_s) = double_threshold_rates(pos, neg), single_threshold_rates(pos, neg)
    fpr, fnr = np.r_[fpr_d, fpr_s], np.r_[fnr_d, fnr_s]
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.log(np.maximum(1 - delta - fpr, 0)) - np.log(fnr)
        e2 = np.log(np.maximum(1 - delta - fnr, 0)) - np.log(fpr)
    eps = np.nan_to_num(np.maximum(e1, e2), nan=0.0, posinf=np.inf, neginf=0.0)
    one_zero = (fpr == 0) ^ (fnr == 0)
    both_zero = (fpr == 0) & (fnr == 0)
    eps = np.where(both_zero, np.inf, eps)
    eps = eps[~one_zero]
    best = float(np.max(eps)) if len(eps) else 0.0
    return float(min(max(best, 0.0), cap))


def bucket_points(eps: np.ndarray, n_models: int) -> np.ndarray:
    """1 for [0, 0.5), 1/2 for [0.5, 1), ...; 0 from ceil(ln(N - 1)) on."""
    eps = np.asarray(eps, np.float64)
    limit = math.ceil(math.log(n_models - 1)) if n_models > 2 else 0
    k = np.floor(eps / 0.5)
    return np.where(eps < limit, 0.5 ** k, 0.0)


def forgetting_quality(U: np.ndarray, R: np.ndarray) -> tuple[float, np.ndarray]:
    """(F, per-example epsilons) from N x n score matrices of unlearned and retrained models."""
    U, R = np.asarray(U, np.float64), np.asarray(R, np.float64)
    eps = np.array([example_epsilon(U[:, i], R[:, i]) for i in range(U.shape[1])])
    return float(bucket_points(eps, min(len(U), len(R))).mean()) if len(eps) else float("nan"), eps


def final_score(F: float, ra_u: float, ra_r: float, ta_u: float, ta_r: float) -> float:
    """The challenge's utility-adjusted score F * RA_u/RA_r * TA_u/TA_r."""
    return float(F * (ra_u / max(ra_r, 1e-12)) * (ta_u / max(ta_r, 1e-12)))


class EpsilonScore:
    name = "epsilon"
    description = "NeurIPS'23 unlearning-challenge forgetting quality: N unlearned vs N retrained models (N = --shadow-models)."
    needs = frozenset({"retrain_shadows", "unlearn"})
    #: N >= 3 models per side (the challenge's bucket rule); --shadow-models is even, so 4.
    min_shadow_models = 4

    def evaluate(self, model, ctx) -> dict[str, float]:
        from bench.core.errors import BenchError

        from .population import require_sets

        require_sets(self.name, ctx)
        rs = ctx.retrain_shadows
        if rs is None or ctx.unlearn is None or ctx.original is None or ctx.forget_indices is None:
            raise BenchError("Attack 'epsilon' needs retrained models and the trial's method: run it through "
                             "`bench run --attacks epsilon` (N = --shadow-models).")
        N = len(rs)
        if N < 3:
            raise BenchError(f"Attack 'epsilon' needs N >= 3 models per side (got {N}); raise --shadow-models.")
        f_pos = np.asarray(ctx.forget_indices, dtype=np.int64)
        r_pos = np.setdiff1d(np.arange(rs.train_size), f_pos)
        unlearned = [model] + [ctx.unlearn(ctx.original(), f_pos, r_pos, ctx.seed * 1000 + 1 + j) for j in range(N - 1)]
        retrained = rs.models(ctx.device)

        def phis(models):
            return np.stack([signals.logit_conf(signals.logits_of(m, ctx.forget_x), ctx.forget_y) for m in models])

        def acc(models, x, y):
            yy = y.cpu().numpy()
            return float(np.mean([(signals.logits_of(m, x).argmax(1) == yy).mean() for m in models])) if len(y) else float("nan")

        F, eps = forgetting_quality(phis(unlearned), phis(retrained))
        accs = {"unlearned_retain_acc": acc(unlearned, ctx.retain_x, ctx.retain_y),
                "retrained_retain_acc": acc(retrained, ctx.retain_x, ctx.retain_y),
                "unlearned_test_acc": acc(unlearned, ctx.test_x, ctx.test_y),
                "retrained_test_acc": acc(retrained, ctx.test_x, ctx.test_y)}
        score = final_score(F, accs["unlearned_retain_acc"], accs["retrained_retain_acc"], accs["unlearned_test_acc"],
                            accs["retrained_test_acc"])
        # the four mean accuracies too: the score is recomputable from the record (found in review)
        return {"score": score, "forget_quality": F, "median_eps": float(np.median(eps)), **accs}
