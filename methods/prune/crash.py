"""A starting basis for PRUNE's large region LPs, guessed from a smoothed dual.

The LP max c.u over {A u <= b, lo <= u <= hi} has the dual function

    g(lam) = b.lam + max over the box of (c - A^T lam).u,   lam >= 0,

whose minimum is the LP's maximum (strong duality). Replacing max(0, r) by the softplus
tau * log(1 + exp(r / tau)) makes g smooth, and a projected L-BFGS (``dual_guesses``) minimises it
for all of a region's objectives at once, in float32. Its multipliers name the rows likely tight at
the optimum (lam > 0) and its reduced costs r = c - A^T lam the columns likely strictly inside their
bounds (|r| smallest); ``guess_basis`` turns them into a simplex basis for HiGHS, which then finishes the
LP exactly from there. The guess changes where the simplex starts, never what it returns: the
maximum is HiGHS's optimum over the whole region, as without the guess.

Why: on the 784-256-256-10 MLP of ``benchmarks/bench_prune.py`` each of the 9 margin LPs takes
700-1,100 dual-simplex iterations from the slack basis or from the previous objective's optimum
(the optimal bases of the 9 objectives share little), and an iteration costs ~0.25 ms whatever the
row count. ``PolytopeLP.maximize(guessed_start=True)`` (the patch's margin LPs) hands an objective
over to a guessed basis once its lazy rounds pass ``PolytopeLP.LAZY_BUDGET`` iterations; from the
guessed basis it takes 80-220 (docs/prune.md, "A guessed starting basis").
This is a choice of ours, not in the released PRUNE or REASSURE code (both solve from scratch).
"""

from __future__ import annotations

import numpy as np

#: the softplus width, relative to the mean |c| of each objective
TAU = 3e-4
#: iterations of the projected L-BFGS (its cost ~0.8 ms each for 9 objectives on 512 x 784 rows;
#: 150: 150-360 simplex iterations left per LP, 300: 80-220, 600: 50-200 on the benchmark's regions)
ITERATIONS = 300
MEMORY = 10  # L-BFGS pairs kept


def dual_guesses(C: np.ndarray, A32: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 iterations: int = ITERATIONS) -> np.ndarray:
    """Multipliers (k, rows) >= 0 that nearly minimise the smoothed dual function of each objective
    (row of ``C``) over the region {A u <= b, lo <= u <= hi} (finite bounds; ``A32``: A in float32).

    All k objectives are minimised together by a projected L-BFGS (two-loop recursion on the
    variables not held at 0 by a positive gradient, a projected Armijo backtracking, one history
    per objective), in float32: each step's products are (k, rows) x (rows, cols) matrix products,
    so k objectives cost little more than one. An objective stops when its line search finds no
    decrease (float32's resolution). Deterministic for given inputs and thread count.
    scipy's L-BFGS-B gives comparable guesses but costs ~0.45 ms per evaluation for one objective
    and ~10 ms for nine stacked (scipy 1.17), against ~0.4 ms for nine here."""
    k = len(C)
    scale = np.abs(C).mean(1)
    tau = (TAU * np.where(scale > 0, scale, 1.0)).astype(np.float32)[:, None]
    C32 = np.asarray(C, np.float32)
    lo32, w32 = np.asarray(lo, np.float32), np.asarray(hi - lo, np.float32)
    b32 = np.asarray(b, np.float32)
    half, one = np.float32(0.5), np.float32(1)

    def value_grad(L: np.ndarray):
        R = C32 - L @ A32  # reduced costs
        z = R / tau
        # max over [lo, hi] of r u = r lo + (hi - lo) max(0, r), the max smoothed by a softplus
        soft = np.logaddexp(np.float32(0), z) * tau
        value = (L @ b32).astype(np.float64) + (R * lo32 + w32 * soft).sum(1, dtype=np.float64)
        sig = half * (one + np.tanh(z * half))
        return value, b32[None, :] - (lo32 + w32 * sig) @ A32.T

    x = np.zeros((k, len(b32)), np.float32)
    f, g = value_grad(x)
    hist: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (s, y, 1 / s.y) per step
    going = np.ones(k, dtype=bool)
    for _ in range(iterations):
        free = (x > 0) | (g < 0)  # a variable at 0 with a positive gradient stays there
        q = np.where(free, g, 0)
        alphas = []
        for s, y, rho in reversed(hist):
            a = rho * (s * q).sum(1)
            q = q - a[:, None] * y
            alphas.append(a)
        gnorm = np.maximum(np.linalg.norm(g, axis=1), 1e-30)
        if hist:
            s, y, _ = hist[-1]
            sy, yy = (s * y).sum(1), (y * y).sum(1)
            gamma = np.where((sy > 0) & (yy > 0), sy / np.where(yy > 0, yy, 1), 1 / gnorm)
        else:
            gamma = 1 / gnorm
        q = q * gamma.astype(np.float32)[:, None]
        for (s, y, rho), a in zip(hist, reversed(alphas)):
            q = q + s * (a - rho * (y * q).sum(1))[:, None]
        p = -np.where(free, q, 0)
        uphill = (p * g).sum(1) >= 0  # not a descent direction: the scaled projected gradient
        p[uphill] = -(np.where(free, g, 0) * gamma.astype(np.float32)[:, None])[uphill]
        step = np.ones(k, np.float32)
        done = ~going
        xn, fn, gn = x.copy(), f.copy(), g.copy()
        for _ in range(20):
            trial = np.maximum(0, x + step[:, None] * p)
            ft, gt = value_grad(trial)
            ok = (ft <= f + 1e-4 * (g * (trial - x)).sum(1)) & ~done
            xn[ok], fn[ok], gn[ok] = trial[ok], ft[ok], gt[ok]
            done |= ok
            if done.all():
                break
            step = np.where(done, step, step * half)
        going &= done  # no decrease found: at float32's resolution
        s, y = xn - x, gn - g
        sy = (s * y).sum(1)
        hist.append((s, y, np.where(sy > 1e-20, 1 / np.where(sy > 1e-20, sy, 1), 0).astype(np.float32)))
        hist = hist[-MEMORY:]
        x, f, g = xn, fn, gn
        if not going.any():
            break
    lam = x.astype(np.float64)
    top = lam.max(1, keepdims=True)
    return np.where(lam > 1e-6 * top, lam, 0.0)


def guess_basis(c: np.ndarray, A: np.ndarray, lam: np.ndarray):
    """(column statuses, row statuses) of HiGHS for the guess ``lam`` (rows in HiGHS's order):
    the rows with lam > 0 nonbasic at their upper bound b (tight; at most one per column, the
    largest lam), as many columns basic (those
    with the smallest |reduced cost|), every other column at the bound its reduced cost prefers
    and every other row's slack basic. A basis HiGHS finds singular it repairs itself."""
    import highspy

    S = highspy.HighsBasisStatus
    r = c - lam @ A
    tight = np.nonzero(lam > 0)[0]
    if len(tight) > len(c):  # a basis has at most one basic column per column
        tight = tight[np.argsort(-lam[tight], kind="stable")[: len(c)]]
    cols = np.where(r > 0, S.kUpper, S.kLower).astype(object)
    cols[np.argsort(np.abs(r), kind="stable")[: len(tight)]] = S.kBasic
    rows = np.full(len(lam), S.kBasic, dtype=object)
    rows[tight] = S.kUpper
    return list(cols), list(rows)
