"""Affine patches of PRUNE over a region (``PolytopeLP``), and the bound K of a patch on a box.

Patch constructions (REASSURE's point-wise repair, Fu & Li, ICLR 2022: the LP of ``Repair.py`` or
the per-row construction of its ``ICLR/tools`` code), for target t and margin eps:

- ``rows`` (REASSURE's per-row construction, ``LinearPatchNN``/``OneDimLinearTransform`` in
  BU-DEPEND-Lab/REASSURE ``ICLR/tools/build_PNN.py``): the specification rows are
  P_j = e_j - e_t (j != t), with q_l = -inf and q_u = -eps. With q_l = -inf the one-dimensional map
  of row j has scale 1 and shift beta_j = min(0, -eps - max_R P_j f), so only the upper bound of each
  row is needed (C - 1 LPs, not 2 (C - 1)). Completing P with the all-ones row (its orthogonal
  complement) and inverting gives a constant patch d with d_j - d_t = beta_j and sum(d) = 0; c = 0.
- ``minimal`` (REASSURE's LP, ``repair_via_LP`` in ``REASSURE/Repair.py``): minimise H subject to
  |c_k u + d_k| <= H and P((F + c) u + e + d) <= -eps for all u in R, each "for all" written with
  LP duality (lambda >= 0, A^T lambda = alpha, b^T lambda <= gamma0), solved with scipy's HiGHS.
"""

from __future__ import annotations

import time

import numpy as np

from .lp import LPError, PolytopeLP


def rows_patch(lp: PolytopeLP, F: np.ndarray, e: np.ndarray, target: int, eps: float, duals: list | None = None):
    """REASSURE's per-row construction for "argmax = target with margin eps on the region":
    returns (c, d) with c = 0 (see the module docstring). If ``duals`` is a list, the multipliers of
    the C - 1 LPs (rows j != target in order) are appended to it (hints for the check)."""
    C, dim = F.shape
    others = [j for j in range(C) if j != target]
    # a row whose maximum is at most -eps needs no correction (beta = 0) whatever the exact value:
    # its lazy rounds stop at the first upper bound that shows it (the same patch, fewer solves)
    margin = np.broadcast_to(np.asarray(eps, np.float64), (len(others),))
    top, lams = lp.maximize(F[others] - F[target], duals=True, enough=-margin - (e[others] - e[target]),
                            guessed_start=True)
    if duals is not None:
        duals.append(lams)
    upper = top + (e[others] - e[target])
    beta = np.minimum(0.0, -eps - upper)
    d = np.zeros(C)
    d[target] = -beta.sum() / C
    d[others] = beta + d[target]
    return np.zeros((C, dim)), d


def minimal_patch(lp: PolytopeLP, F: np.ndarray, e: np.ndarray, target: int, eps: float):
    """REASSURE's minimal affine patch by LP duality (see the module docstring): returns (c, d)."""
    from scipy import sparse
    from scipy.optimize import linprog

    C, dim = F.shape
    A = np.concatenate([lp.A, np.eye(dim), -np.eye(dim)])
    b = np.concatenate([lp.b, lp.hi, -lp.lo])
    m = len(A)
    others = [j for j in range(C) if j != target]
    nb = 2 * C + len(others)  # dual blocks: |p_k| <= H upper and lower, then one per spec row
    n_c, n_d = C * dim, C
    i_d, i_h, i_lam = n_c, n_c + n_d, n_c + n_d + 1
    nvar = i_lam + nb * m
    lam_eq = sparse.kron(sparse.eye(nb), sparse.csr_matrix(A.T))  # (nb*dim, nb*m)
    # coefficient of c in each block's equality A^T lambda (+-) c_k ... = rhs
    rows_c = []
    for k in range(C):
        rows_c.append(sparse.kron(sparse.csr_matrix(([1.0], ([0], [k])), shape=(1, C)), -sparse.eye(dim)))
    for k in range(C):
        rows_c.append(sparse.kron(sparse.csr_matrix(([1.0], ([0], [k])), shape=(1, C)), sparse.eye(dim)))
    for j in others:
        sel = sparse.csr_matrix(([-1.0, 1.0], ([0, 0], [j, target])), shape=(1, C))
        rows_c.append(sparse.kron(sel, sparse.eye(dim)))
    c_eq = sparse.vstack(rows_c)  # (nb*dim, C*dim)
    A_eq = sparse.hstack([c_eq, sparse.csr_matrix((nb * dim, n_d + 1)), lam_eq]).tocsr()
    b_eq = np.concatenate([np.zeros(2 * C * dim)] + [F[j] - F[target] for j in others])
    # inequalities: b^T lambda_k (+ d terms) - H <= rhs
    A_ub = sparse.lil_matrix((nb, nvar))
    b_ub = np.zeros(nb)
    for k in range(nb):
        A_ub[k, i_lam + k * m: i_lam + (k + 1) * m] = b
    for k in range(C):
        A_ub[k, i_d + k], A_ub[k, i_h] = 1.0, -1.0
        A_ub[C + k, i_d + k], A_ub[C + k, i_h] = -1.0, -1.0
    for r, j in enumerate(others):
        A_ub[2 * C + r, i_d + j], A_ub[2 * C + r, i_d + target] = 1.0, -1.0
        b_ub[2 * C + r] = -eps - e[j] + e[target]
    bounds = [(None, None)] * (n_c + n_d) + [(0, None)] + [(0, None)] * (nb * m)
    cost = np.zeros(nvar)
    cost[i_h] = 1.0
    start = time.perf_counter()
    res = linprog(cost, A_ub=A_ub.tocsr(), b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    lp.clock.seconds += time.perf_counter() - start
    lp.clock.solves += 1
    if res.status != 0:
        raise LPError(f"minimal patch LP: {res.message}")
    x = res.x
    return x[:n_c].reshape(C, dim), x[i_d:i_d + n_d]


def bound_K(c: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """K = max_k max_{u in [lo, hi]} |c_k u + d_k| in closed form on a box."""
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    return float(np.max(np.abs(c) @ half + np.abs(c @ mid + d))) if len(d) else 0.0
