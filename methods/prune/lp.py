"""Linear programs of PRUNE: bounds of affine functions over a region, and the affine patch.

``PolytopeLP`` holds one region {lo <= u <= hi, A u <= b} and maximises many objectives over it.
It first drops rows the box already implies (max over the box of a.u <= b: closed form, so those
rows are redundant and sound to drop), keeps the box as column bounds, and solves by lazy
constraint generation: start from the 64 rows nearest to the point, add the rows the optimum
violates, re-solve, until the optimum satisfies every row (then it is the exact maximum over the
region; before that every value is already a sound upper bound, the LP being over a superset).
With ``highspy`` installed the model is loaded once and re-solved with the objective changed or
rows added: HiGHS restarts from the previous optimal basis (warm start). Without ``highspy`` every
solve is a fresh ``scipy.optimize.linprog(method="highs")`` call (same solver, no warm start).

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

try:  # optional: warm-started re-solves; scipy's linprog (the same HiGHS) otherwise
    import highspy
except ImportError:  # pragma: no cover - depends on the environment
    highspy = None


class LPError(RuntimeError):
    pass


class Clock:
    """Accumulates the seconds spent in LP solves (the trial metric ``lp_seconds``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.solves = 0


def box_redundant(A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``A u <= b`` that hold on the whole box [lo, hi] (so add nothing)."""
    if len(A) == 0:
        return np.zeros(0, dtype=bool)
    top = np.maximum(A * lo, A * hi).sum(1)
    return top <= b


class PolytopeLP:
    """max c.u over {lo <= u <= hi, A u <= b} for many objectives c (see the module docstring)."""

    def __init__(self, A, b, lo, hi, clock: Clock | None = None, backend: str = "auto", point=None,
                 lazy: bool = True) -> None:
        keep = ~box_redundant(A, b, lo, hi)
        self.A, self.b = np.ascontiguousarray(A[keep]), np.asarray(b[keep])
        self.lo, self.hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        self.dropped = int((~keep).sum())
        self.clock = clock or Clock()
        self.backend = "highspy" if backend in ("auto", "highspy") and highspy is not None else "scipy"
        self._h = None
        self.point = None if point is None else np.asarray(point, np.float64)
        # lazy constraint generation: solve on a subset of the rows (a superset of the region, so every
        # value is already a sound upper bound), add the rows the optimum violates, re-solve; exact at
        # the end. Starts from the rows nearest to ``point`` when given.
        m = len(self.A)
        self.active = np.ones(m, dtype=bool)
        if lazy and m > self.LAZY_START:
            self.active[:] = False
            if self.point is not None:
                norms = np.linalg.norm(self.A, axis=1)
                slack = (self.b - self.A @ self.point) / np.where(norms > 0, norms, 1.0)
                self.active[np.argsort(slack, kind="stable")[: self.LAZY_START]] = True

    LAZY_START = 64  # rows to start from
    LAZY_ADD = 64  # most violated rows added per round

    def _load(self):
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        lp = highspy.HighsLp()
        A, b = self.A[self.active], self.b[self.active]
        m, d = A.shape
        lp.num_col_, lp.num_row_ = d, m
        lp.col_cost_ = np.zeros(d)
        lp.col_lower_, lp.col_upper_ = self.lo, self.hi
        lp.row_lower_ = np.full(m, -highspy.kHighsInf)
        lp.row_upper_ = b
        lp.sense_ = highspy.ObjSense.kMaximize
        if m:
            from scipy.sparse import csc_matrix

            M = csc_matrix(A)
            lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
            lp.a_matrix_.start_ = M.indptr
            lp.a_matrix_.index_ = M.indices
            lp.a_matrix_.value_ = M.data
            lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = d, m
        h.passModel(lp)
        self._h = h

    def _add_rows(self, rows: np.ndarray) -> None:
        self.active[rows] = True
        if self._h is not None:
            from scipy.sparse import csr_matrix

            M = csr_matrix(self.A[rows])
            self._h.addRows(len(rows), np.full(len(rows), -highspy.kHighsInf), self.b[rows], M.nnz,
                            M.indptr[:-1].astype(np.int32), M.indices.astype(np.int32), M.data)

    def _solve(self, obj: np.ndarray) -> tuple[float, np.ndarray]:
        if self.backend == "highspy":
            if self._h is None:
                self._load()
            d = self.A.shape[1]
            self._h.changeColsCost(d, np.arange(d, dtype=np.int32), obj)
            self._h.run()
            if self._h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                raise LPError(f"HiGHS: {self._h.modelStatusToString(self._h.getModelStatus())}")
            return self._h.getInfo().objective_function_value, np.asarray(self._h.getSolution().col_value)
        from scipy.optimize import linprog

        A, b = self.A[self.active], self.b[self.active]
        res = linprog(-obj, A_ub=A if len(A) else None, b_ub=b if len(A) else None,
                      bounds=np.stack([self.lo, self.hi], 1), method="highs")
        if res.status != 0:
            raise LPError(f"linprog: {res.message}")
        return -res.fun, res.x

    def maximize(self, objectives: np.ndarray) -> np.ndarray:
        """max over the region of each row of ``objectives`` (k, d) -> (k,)."""
        objectives = np.atleast_2d(np.asarray(objectives, np.float64))
        start = time.perf_counter()
        out = np.empty(len(objectives))
        try:
            for i, obj in enumerate(objectives):
                while True:
                    value, x = self._solve(obj)
                    self.clock.solves += 1
                    idle = np.nonzero(~self.active)[0]
                    if not len(idle):
                        break
                    viol = self.A[idle] @ x - self.b[idle]
                    bad = viol > 1e-9
                    if not bad.any():
                        break
                    order = np.argsort(-viol[bad], kind="stable")[: self.LAZY_ADD]
                    self._add_rows(idle[bad][order])
                out[i] = value
        finally:
            self.clock.seconds += time.perf_counter() - start
        return out

    def relaxed(self, point: np.ndarray, rows: int) -> "PolytopeLP":
        """The region without all but the ``rows`` constraints nearest to ``point`` (smallest slack
        b - a.u over |a|): a superset of the region, so maxima over it are sound upper bounds and
        minima sound lower bounds, from a much smaller LP."""
        if rows <= 0 or rows >= len(self.A):
            return self
        norms = np.linalg.norm(self.A, axis=1)
        slack = (self.b - self.A @ point) / np.where(norms > 0, norms, 1.0)
        keep = np.sort(np.argsort(slack, kind="stable")[:rows])
        return PolytopeLP(self.A[keep], self.b[keep], self.lo, self.hi, self.clock, self.backend, point)


def rows_patch(lp: PolytopeLP, F: np.ndarray, e: np.ndarray, target: int, eps: float):
    """REASSURE's per-row construction for "argmax = target with margin eps on the region":
    returns (c, d) with c = 0 (see the module docstring)."""
    C, dim = F.shape
    others = [j for j in range(C) if j != target]
    upper = lp.maximize(F[others] - F[target]) + (e[others] - e[target])
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
