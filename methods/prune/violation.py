"""Separation bounds of PRUNE: lower bounds of a support's total violation over a region
(``violation_floor``; exactly, ``min_violation``), so that no patch can spoil another's certificate
(docs/prune.md, "Overlapping patches (separation)").

Before any LP, ``violation_floor`` tries two closed-form screens that can only prove a bound, never
decide against one: the multipliers of earlier solves on the same region (``PolytopeLP.bank_floor``)
and a short Lagrangian dual ascent (``dual_ascent``), and on large regions the smoothed dual's
multipliers (``PolytopeLP.dual_guesses``; ``violation_guess`` before the exact LP); every bound they
give is re-derived with ``dual_upper`` (weak duality, with a rounding allowance), the same
arithmetic the independent check uses to verify witnesses. An LP is solved only where none proves
what the caller needs.
"""

from __future__ import annotations

import time

import numpy as np

from .duals import dual_ascent, dual_ascent_many, dual_upper, floor_from_witness
from .lp import LPError, PolytopeLP, _new_highs, highspy


def violation_screens(pairs: list, need: np.ndarray, chunk: int = 64) -> list:
    """Closed-form screens of many ``violation_floor`` questions at once: ``pairs`` is a list of
    (A, b, lp, point) (support rows, region, a point of the region), ``need`` the bound each must
    reach. Each pair gets the first round of ``violation_floor`` (S = the rows violated at the point:
    the bound over the input box, then the Lagrangian dual ascent over the region's 128 nearest rows,
    batched by ``dual_ascent_many``); returns per pair (L, (mu, lam)) where that proves L >= need
    (L re-derived by ``dual_upper``, a witness ``floor_from_witness`` verifies), else None: the
    caller asks ``violation_floor`` (its other screen, then LPs). A screen only proves: the decision
    for a pair it proves is the one the LP would give."""
    out: list = [None] * len(pairs)
    todo = []  # (pair index, a, c0, S)
    for k, (A, b, lp, point) in enumerate(pairs):
        S = (A @ point - b) > 0
        if not S.any() or not np.isfinite(need[k]):
            continue
        a, c0 = A[S].sum(0), b[S].sum()
        low = float(np.minimum(a * lp.lo, a * lp.hi).sum() - c0)
        if low >= need[k]:
            out[k] = (low, (S.astype(np.float64), None))
        else:
            todo.append((k, a, c0, S))
    if not todo:
        return out
    groups: dict = {}  # one dual ascent per region shared by several pairs, else stacked rows
    for item in todo:
        groups.setdefault(id(pairs[item[0]][2]), []).append(item)
    shared = [g for g in groups.values() if len(g) > 1]
    single = [g[0] for g in groups.values() if len(g) == 1]
    batches = [(g, True) for g in shared] + [(single[i:i + chunk], False) for i in range(0, len(single), chunk)]
    for part, same in batches:
        lps = [pairs[k][2] for k, *_ in part]
        nears = [lp.nearest(lp.ASCENT_ROWS) for lp in lps]
        a = np.stack([it[1] for it in part])
        want = np.array([need[k] + c0 for k, _, c0, _ in part])
        lo, hi = lps[0].lo, lps[0].hi
        if same:
            lam, ok = dual_ascent_many(a, lps[0].A[nears[0]], lps[0].b[nears[0]], lo, hi, want)
        else:
            m = max(len(n) for n in nears)
            As = np.zeros((len(part), m, a.shape[1]))
            bs = np.zeros((len(part), m))
            for j, (lp, near) in enumerate(zip(lps, nears)):
                if not (np.array_equal(lp.lo, lo) and np.array_equal(lp.hi, hi)):
                    raise ValueError("violation_screens: the regions of one batch must share the input box")
                As[j, :len(near)], bs[j, :len(near)] = lp.A[near], lp.b[near]
            lam, ok = dual_ascent_many(a, As, bs, lo, hi, want)
        for j in np.nonzero(ok)[0]:
            k, aj, c0, S = part[j]
            lp, near = lps[j], nears[j]
            full = np.zeros(lp.n_rows)
            full[lp.rows[near]] = lam[j, :len(near)]
            value = -dual_upper(-aj, lp.A, lp.b, lp.lo, lp.hi, full[lp.rows]) - c0
            if value >= need[k]:
                out[k] = (value, (S.astype(np.float64), full))
    return out


def violation_floor(A: np.ndarray, b: np.ndarray, lp: PolytopeLP, point: np.ndarray, need: float = np.inf,
                    rounds: int = 1, exact: bool = True, witness: bool = False, ascent: bool = True):
    """A lower bound L >= 0 of min over the region of ``lp`` of V(u) = sum_j [a_j u - b_j]_+ (the
    total violation of the support rows (A, b)); it stops as soon as L >= ``need``. With
    ``witness``, returns (L, (mu, lam)) such that ``floor_from_witness`` re-derives L (up to
    rounding) from the region's rows alone (the independent check verifies it that way).

    For any subset S of the rows, sum_{j in S} (a_j u - b_j) <= V(u), so min_R sum_S (a_j u - b_j)
    (one LP) is a lower bound of min_R V, and so is 0. Start from S = the rows violated at
    ``point`` (a point of the region); with ``rounds`` > 1, each further round takes S = the rows
    violated at the previous LP's minimiser, which raises the bound where the first S let the
    minimiser escape through rows outside S. One round is the default: where it does not prove
    ``need``, the exact LP below is cheaper than more rounds (on the conformance kit's class
    request, 649 of 736 such pairs went on to the exact LP after four rounds anyway; the decisions
    are the same, since a round only proves ``need`` and the exact LP gives the minimum). Each bound is tried first in closed form over the input box, then by LP over the
    region with lazily added rows (stopping as soon as the rows so far prove ``need``: a superset of
    the region gives a valid bound); the best is returned.
    If the bound is still under ``need`` and ``exact``, ``min_violation`` solves for min_R V itself.
    ``ascent=False`` skips the first round's dual ascent (``violation_screens`` already ran it).
    A support g = max(0, 1 - sum_j min(1, gamma [v_j]_+)) <= max(0, 1 - gamma L) on the region,
    since sum_j min(1, gamma [v_j]_+) >= min(1, gamma V).
    """
    best, proof = 0.0, (np.zeros(len(b)), None)
    S = (A @ point - b) > 0
    tried = []
    for _ in range(rounds):
        if not S.any() or any(np.array_equal(S, t) for t in tried):
            break
        tried.append(S)
        a, c0 = A[S].sum(0), b[S].sum()
        low, lam = np.minimum(a * lp.lo, a * lp.hi).sum() - c0, None  # over the input box
        x = None
        if low < need and np.isfinite(need):
            # multipliers of earlier solves on this region (other objectives): weak duality makes
            # each a valid bound in closed form; one of them often proves ``need`` without an LP
            screen, prev = lp.bank_floor(a)
            if prev is not None and screen - c0 > low:
                value = -dual_upper(-a, lp.A, lp.b, lp.lo, lp.hi, prev[lp.rows]) - c0
                if value > low:
                    low, lam = value, prev
        if low < need and np.isfinite(need) and (ascent or tried[1:]):
            # a few projected supergradient steps on the Lagrangian dual (``dual_ascent``): on
            # digits they prove ``need`` for about 9 pairs in 10 at a third of an LP's cost
            near = lp.nearest(lp.ASCENT_ROWS)
            lam_a = dual_ascent(a, lp.A[near], lp.b[near], lp.lo, lp.hi, need + c0)
            if lam_a is not None:
                full = np.zeros(lp.n_rows)
                full[lp.rows[near]] = lam_a
                lam_a = full[lp.rows]
                value = -dual_upper(-a, lp.A, lp.b, lp.lo, lp.hi, lam_a) - c0
                if value > low:
                    low, lam = value, full
        if low < need and np.isfinite(need) and lp.crash:
            # large regions: the smoothed dual's near-optimal multipliers (crash.py), a bound within
            # a few % of the minimum in a fraction of an LP's time
            lam_g = lp.dual_guesses(-a)[0]
            value = -dual_upper(-a, lp.A, lp.b, lp.lo, lp.hi, lam_g) - c0
            if value > low:
                low, lam = value, np.zeros(lp.n_rows)
                lam[lp.rows] = lam_g
        if low < need:  # lazy rows: stops once the bound over the rows so far reaches need
            value, where = lp.maximize(-a[None], points=True, enough=-need - c0 if np.isfinite(need) else None)
            low, x, lam = -value[0] - c0, where[0], lp.multipliers()
            lp.bank_add(lam)
        if low > best:
            best, proof = low, (S.astype(np.float64), lam)
        if best >= need or x is None:
            break
        S = (A @ x - b) > 0
    if best < need and exact and lp.crash:
        # large regions: a witness (mu, lam) from the smoothed dual of min_violation's LP, checked
        # by floor_from_witness (the check's own arithmetic); often proves ``need`` without that LP
        mu, lam = violation_guess(A, b, lp)
        value = floor_from_witness(A, b, lp.A, lp.b, lp.lo, lp.hi, mu, lam[lp.rows])
        if value > best:
            best, proof = value, (mu, lam)
    if best < need and exact:
        value, mu, lam = min_violation(A, b, lp)
        if value > best:
            best, proof = value, (mu, lam)
    return (best, proof) if witness else best


def violation_guess(A: np.ndarray, b: np.ndarray, lp: PolytopeLP):
    """Multipliers (mu in [0, 1] per row of A, lam >= 0 per row of the region as given) for
    ``floor_from_witness``, from ``crash.dual_guesses`` on ``min_violation``'s LP written as a
    maximum over a box: max -sum_j s_j subject to a_j u - s_j <= b_j and the region's rows, with
    s_j in [0, max over the box of [a_j u - b_j]_+] (a bound no optimum exceeds, so the same LP)."""
    from .crash import dual_guesses

    n, dim = A.shape
    s_max = np.maximum(0.0, np.maximum(A * lp.lo, A * lp.hi).sum(1) - b)
    G = np.zeros((n + len(lp.A), dim + n), np.float32)
    G[:n, :dim], G[n:, :dim] = A, lp.A
    G[np.arange(n), dim + np.arange(n)] = -1.0
    c = np.concatenate([np.zeros(dim), -np.ones(n)])
    guess = dual_guesses(c[None], G, np.concatenate([b, lp.b]), np.concatenate([lp.lo, np.zeros(n)]),
                         np.concatenate([lp.hi, s_max]))[0]
    lam = np.zeros(lp.n_rows)
    lam[lp.rows] = guess[n:]
    return np.clip(guess[:n], 0.0, 1.0), lam


def min_violation(A: np.ndarray, b: np.ndarray, lp: PolytopeLP):
    """min over the region of ``lp`` of V(u) = sum_j [a_j u - b_j]_+, exactly, as one LP with a slack
    s_j >= max(0, a_j u - b_j) per row (HiGHS through scipy): min sum_j s_j subject to
    a_j u - s_j <= b_j, the region's rows and its box, s >= 0. Returns (a value >= 0, less the
    solver's tolerance, clipped at 0; mu; lam): the duals as a witness for ``floor_from_witness``."""
    n, dim = A.shape
    R = lp.A  # every row of the region (not only the lazily active ones)
    if lp.backend == "highspy":
        return _min_violation_highs(A, b, lp)
    from scipy import sparse
    from scipy.optimize import linprog

    A_ub = sparse.vstack([sparse.hstack([sparse.csr_matrix(A), -sparse.eye(n)]),
                          sparse.hstack([sparse.csr_matrix(R), sparse.csr_matrix((len(R), n))])]).tocsr()
    b_ub = np.concatenate([b, lp.b])
    bounds = np.concatenate([np.stack([lp.lo, lp.hi], 1), np.tile([0.0, np.inf], (n, 1))])
    start = time.perf_counter()
    res = linprog(np.concatenate([np.zeros(dim), np.ones(n)]), A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
    lp.clock.seconds += time.perf_counter() - start
    lp.clock.solves += 1
    if res.status != 0:
        raise LPError(f"violation LP: {res.message}")
    marg = np.abs(res.ineqlin.marginals)
    lam = np.zeros(lp.n_rows)
    lam[lp.rows] = marg[n:]
    # HiGHS's optimum is feasible to ~1e-9 and optimal to its dual tolerance; report a bound under it
    return max(0.0, float(res.fun) - 1e-9 * (1.0 + abs(float(res.fun)))), np.clip(marg[:n], 0, 1), lam


def _min_violation_highs(A: np.ndarray, b: np.ndarray, lp: PolytopeLP):
    """``min_violation``'s LP passed to highspy directly: the same model, without scipy's input
    checks and sparse-matrix assembly (half of each call's time for the small LPs of PRUNE), solved
    by the dual simplex without presolve."""
    n, dim = A.shape
    R = lp.A
    start = time.perf_counter()
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("presolve", "off")
    h.setOptionValue("simplex_strategy", 1)
    model = highspy.HighsLp()
    model.num_col_, model.num_row_ = dim + n, n + len(R)
    model.col_cost_ = np.concatenate([np.zeros(dim), np.ones(n)])
    model.col_lower_ = np.concatenate([lp.lo, np.zeros(n)])
    model.col_upper_ = np.concatenate([lp.hi, np.full(n, highspy.kHighsInf)])
    model.row_lower_ = np.full(n + len(R), -highspy.kHighsInf)
    model.row_upper_ = np.concatenate([b, lp.b])
    from scipy.sparse import csc_matrix, hstack, vstack

    M = csc_matrix(hstack([vstack([csc_matrix(A), csc_matrix(R)]),
                           vstack([-csc_matrix(np.eye(n)), csc_matrix((len(R), n))])]))
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.start_ = M.indptr
    model.a_matrix_.index_ = M.indices
    model.a_matrix_.value_ = M.data
    model.a_matrix_.num_col_, model.a_matrix_.num_row_ = dim + n, n + len(R)
    model.sense_ = highspy.ObjSense.kMinimize
    h.passModel(model)
    h.run()
    status = h.getModelStatus()
    lp.clock.seconds += time.perf_counter() - start
    lp.clock.solves += 1
    if status != highspy.HighsModelStatus.kOptimal:
        raise LPError(f"violation LP: HiGHS {h.modelStatusToString(status)}")
    marg = np.abs(np.asarray(h.getSolution().row_dual))
    value = float(h.getInfo().objective_function_value)
    lam = np.zeros(lp.n_rows)
    lam[lp.rows] = marg[n:]
    return max(0.0, value - 1e-9 * (1.0 + abs(value))), np.clip(marg[:n], 0, 1), lam
