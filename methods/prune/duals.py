"""Closed-form bounds of PRUNE's LPs by weak LP duality: any multipliers lam >= 0 of the rows of a
region {A u <= b, lo <= u <= hi} bound max c.u over it from above (``dual_upper``, with a rounding
allowance; ``floor_from_witness`` for a total violation), the same arithmetic the independent check
uses to verify witnesses. The multipliers come from an LP solve, from a short Lagrangian dual
ascent (``dual_ascent``, ``dual_ascent_many``) or from earlier solves on the same region
(``DualBank``, part of ``PolytopeLP``); a bound from them can only prove what a caller needs,
never decide against it (``violation.py`` uses them as screens before its LPs).
"""

from __future__ import annotations

import numpy as np


def dual_upper(c: np.ndarray, A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray,
               lam: np.ndarray | None) -> float:
    """An upper bound of max c.u over {A u <= b, lo <= u <= hi} from any multipliers lam >= 0 (weak
    LP duality: c.u = (c - A^T lam).u + lam.(A u) <= max over the box of (c - A^T lam).u + lam.b),
    less nothing and plus a rounding allowance. Sound whatever lam is: an LP solver's duals make it
    the optimum, anything else only a weaker bound. Negative entries of lam are taken as 0."""
    if lam is None or not len(A):
        r, top = c, 0.0
        lam = np.zeros(0)
    else:
        lam = np.maximum(lam, 0.0)
        r = c - lam @ A
        top = float(lam @ b)
    box = float(np.maximum(r * lo, r * hi).sum())
    scale = np.maximum(np.abs(lo), np.abs(hi))
    size = np.abs(c) @ scale + (lam @ np.abs(b) + lam @ (np.abs(A) @ scale) if len(lam) else 0.0)
    return top + box + 1e-12 * (len(c) + len(lam) + 1) * float(size)


def floor_from_witness(A: np.ndarray, b: np.ndarray, RA: np.ndarray, Rb: np.ndarray, lo: np.ndarray,
                       hi: np.ndarray, mu: np.ndarray, lam: np.ndarray | None) -> float:
    """A lower bound of min over {RA u <= Rb, lo <= u <= hi} of V(u) = sum_j [a_j u - b_j]_+ from a
    witness (mu in [0, 1]^rows of A, lam >= 0): [v]_+ >= mu_j v for mu_j in [0, 1], so
    V(u) >= mu.(A u - b) >= -dual_upper(-A^T mu, ...) - mu.b; and V >= 0."""
    mu = np.clip(mu, 0.0, 1.0)
    return max(0.0, -dual_upper(-(mu @ A), RA, Rb, lo, hi, lam) - float(mu @ b)
               - 1e-12 * len(b) * float(np.abs(b) @ mu + 1.0))


def dual_ascent(a: np.ndarray, A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray, want: float,
                iters: int = 100, patience: int = 25):
    """Multipliers lam >= 0 whose Lagrangian bound of min a.u over {A u <= b, lo <= u <= hi},
    g(lam) = min over the box of (a + A^T lam).u - lam.b (weak duality: g(lam) <= the minimum for
    every lam >= 0), reaches ``want``; None if ``iters`` steps do not get there.

    Projected supergradient ascent with Polyak's step towards ``want`` + 1 (B. T. Polyak,
    "Minimization of unsmooth functionals", USSR Comput. Math. & Math. Phys. 9, 1969; the
    Lagrangian relaxation of M. L. Fisher, Management Science 27, 1981): the box minimiser x(lam)
    is closed form and A x(lam) - b a supergradient, so a step costs two products with A and no LP.
    It gives up after ``iters`` steps, or when ``patience`` steps raised the best bound by less
    than 5% of the remaining gap. Whatever it returns, the caller re-derives the bound with ``dual_upper`` (sound for any
    lam >= 0, with a rounding allowance), so this only decides whether an LP is needed."""
    lam, ok = dual_ascent_many(np.asarray(a, np.float64)[None], A, b, lo, hi, np.array([float(want)]), iters, patience)
    return lam[0] if ok[0] else None


def dual_ascent_many(a: np.ndarray, A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     want: np.ndarray, iters: int = 100, patience: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """``dual_ascent`` for many objectives at once: a (B, d); the rows A (m, d) and b (m,) shared by
    all, or A (B, m, d) and b (B, m) one set per objective (rows of zeros with b = 0 pad a shorter
    set: they keep their multiplier at 0); want (B,). Returns (lam (B, m), ok (B,)): the multipliers
    of each objective where its bound reached ``want`` (``ok``), the same steps and stopping rules
    as ``dual_ascent`` applied to each objective on its own, as a few matrix products per step
    instead of a Python loop per objective (the screens of many pairs cost little more than one)."""
    a = np.asarray(a, np.float64)
    B = len(a)
    shared = A.ndim == 2
    lam_out = np.zeros((B, A.shape[-2]))
    ok = np.zeros(B, dtype=bool)
    # the objectives still stepping, compacted whenever some stop (gathering the stacked rows of
    # every objective at every step would cost more than the steps)
    idx = np.arange(B)
    lam = np.zeros((B, A.shape[-2]))
    aa, ww = a, np.asarray(want, np.float64)
    Ai, bi = A, b
    best = np.full(B, -np.inf)
    mark = np.full(B, -np.inf)
    for step in range(iters):
        if shared:
            r = aa + lam @ Ai
        else:
            r = aa + np.matmul(lam[:, None, :], Ai)[:, 0]
        x = np.where(r > 0, lo, hi)
        g = (r * x).sum(1) - (lam @ bi if shared else (lam * bi).sum(1))
        stop = g >= ww
        ok[idx[stop]] = True
        lam_out[idx[stop]] = lam[stop]
        np.maximum(best, g, out=best)
        if step and step % patience == 0:  # give up (to the LP) when the bound stalls
            stop |= (best - mark) < 0.05 * (ww - best)
            mark = best.copy()
        sub = (x @ Ai.T - bi) if shared else (np.matmul(Ai, x[:, :, None])[:, :, 0] - bi)
        sub[(lam <= 0) & (sub < 0)] = 0.0  # the projection keeps these at 0
        norm = (sub * sub).sum(1)
        stop |= norm == 0.0
        move = ~stop
        lam = np.maximum(0.0, lam + ((ww + 1.0 - g) / np.where(move, norm, 1.0))[:, None] * sub)
        if stop.any():
            if not move.any():
                break
            idx, lam, aa, ww, best, mark = idx[move], lam[move], aa[move], ww[move], best[move], mark[move]
            if not shared:
                Ai, bi = Ai[move], bi[move]
    return lam_out, ok


class DualBank:
    """The multipliers of earlier ``violation_floor`` solves on one region, a part of ``PolytopeLP``
    (whose constructor starts the bank empty: ``_bank_lam``, ``_bank_M``, ``_bank_b``)."""

    BANK = 256  # multipliers of earlier solves kept for violation_floor's closed-form bounds
    #: scalings of a banked multiplier vector tried for a new objective (a dual-feasible lam stays
    #: dual-feasible scaled by s >= 0; the best scale depends on the objective's size)
    BANK_SCALES = np.array([0.25, 0.5, 1.0, 2.0, 4.0])

    def bank_add(self, lam: np.ndarray) -> None:
        """Keep the multipliers ``lam`` (over the rows as given, as ``multipliers`` returns them)."""
        own = np.asarray(lam, np.float64)[self.rows]
        if not own.any():
            return
        self._bank_lam = np.concatenate([own[None], self._bank_lam])[: self.BANK]
        self._bank_M = np.concatenate([(own @ self.A)[None], self._bank_M])[: self.BANK]
        self._bank_b = np.concatenate([[own @ self.b], self._bank_b])[: self.BANK]

    def bank_floor(self, a: np.ndarray):
        """A lower bound of min over the region of a.u from the banked multipliers, without an LP:
        for lam >= 0, a.u = (a + A^T lam).u - lam.(A u) >= min over the box of (a + A^T lam).u - lam.b
        on the region (weak duality), for every banked lam and every scale in ``BANK_SCALES``.
        Returns (a screening value, the multipliers over the rows as given) or (-inf, None); the
        caller re-derives the bound with ``dual_upper`` (with its rounding allowance) from them."""
        if not len(self._bank_b):
            return -np.inf, None
        s = self.BANK_SCALES[:, None, None]
        r = a[None, None, :] + s * self._bank_M[None]  # (scales, bank, d)
        vals = np.minimum(r * self.lo, r * self.hi).sum(-1) - s[..., 0] * self._bank_b[None]
        k = np.unravel_index(int(np.argmax(vals)), vals.shape)
        lam = np.zeros(self.n_rows)
        lam[self.rows] = self.BANK_SCALES[k[0]] * self._bank_lam[k[1]]
        return float(vals[k]), lam
