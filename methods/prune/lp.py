"""Linear programs of PRUNE: bounds of affine functions over a region, and the affine patch.

``PolytopeLP`` holds one region {lo <= u <= hi, A u <= b} and maximises many objectives over it.
It first drops rows the box already implies (max over the box of a.u <= b: closed form, so those
rows are redundant and sound to drop), keeps the box as column bounds, and solves by lazy
constraint generation: start from the 64 rows nearest to the point, add the rows the optimum
violates, re-solve, until the optimum satisfies every row (then it is the exact maximum over the
region; before that every value is already a sound upper bound, the LP being over a superset).
With ``highspy`` installed the model is loaded once and re-solved with the objective changed or
rows added: HiGHS restarts from the previous optimal basis (warm start), with the dual simplex. On
large regions the patch's margin LPs that the lazy rounds do not settle quickly start instead from
a basis guessed by a smoothed dual (``crash.py``), on every row, and the separation bounds try that
dual's multipliers as screens before their LPs (``violation_floor``). Without ``highspy`` every
solve is a fresh ``scipy.optimize.linprog(method="highs")`` call (same solver, no warm start).

Before any LP, ``violation_floor`` tries two closed-form screens that can only prove a bound, never
decide against one: the multipliers of earlier solves on the same region (``PolytopeLP.bank_floor``)
and a short Lagrangian dual ascent (``dual_ascent``), and on large regions the smoothed dual's
multipliers (``PolytopeLP.dual_guesses``; ``violation_guess`` before the exact LP); every bound they
give is re-derived with ``dual_upper`` (weak duality, with a rounding allowance), the same
arithmetic the independent check uses to verify witnesses. An LP is solved only where none proves
what the caller needs.

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

import copy
import threading
import time

import numpy as np

try:  # optional: warm-started re-solves; scipy's linprog (the same HiGHS) otherwise
    import highspy
except ImportError:  # pragma: no cover - depends on the environment
    highspy = None


class LPError(RuntimeError):
    pass


_banner_done = False
_banner_lock = threading.Lock()


def _new_highs():
    """``highspy.Highs()`` without its banner: HiGHS 1.16 prints "Running HiGHS ..." to the process's
    standard output when the first instance of a process is constructed, before any option (even
    ``output_flag``) can be set. That one construction runs with file descriptor 1 pointed at
    /dev/null; later ones print nothing."""
    global _banner_done
    if _banner_done:
        return highspy.Highs()
    with _banner_lock:  # PolytopeLP.maximize may build instances in two threads at once
        if _banner_done:
            return highspy.Highs()
        return _first_highs()


def _first_highs():
    global _banner_done
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _banner_done = True
    return h


class Clock:
    """Accumulates the seconds spent in LP solves (the trial metric ``lp_seconds``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.solves = 0
        self.iterations = 0  # simplex iterations (highspy backend)


def box_redundant(A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``A u <= b`` that hold on the whole box [lo, hi] (so add nothing)."""
    if len(A) == 0:
        return np.zeros(0, dtype=bool)
    top = np.maximum(A * lo, A * hi).sum(1)
    return top <= b


class PolytopeLP:
    """max c.u over {lo <= u <= hi, A u <= b} for many objectives c (see the module docstring)."""

    def __init__(self, A, b, lo, hi, clock: Clock | None = None, backend: str = "auto", point=None,
                 lazy: bool = True, threads: int = 1) -> None:
        #: threads for ``maximize`` over several objectives (the objectives split into that many
        #: groups, each solved on its own HiGHS copy of the region: highspy releases the GIL in run)
        self.threads = max(1, int(threads))
        keep = ~box_redundant(A, b, lo, hi)
        self.A, self.b = np.ascontiguousarray(A[keep]), np.asarray(b[keep])
        self.n_rows = len(A)  # rows of the region as given; ``rows`` maps ours to them
        # multipliers of earlier violation_floor solves on this region (``bank``): each one is a
        # dual-feasible point of the region's LP for *any* objective, so weak duality turns it into a
        # sound bound for a new objective in closed form (``bank_floor``)
        self._bank_lam = np.zeros((0, len(A) - int((~keep).sum())))
        self._bank_M = np.zeros((0, A.shape[1]))
        self._bank_b = np.zeros(0)
        self.rows = np.nonzero(keep)[0]
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
        #: on large regions ``maximize(guessed_start=True)`` starts each solve from a basis guessed
        #: by a smoothed dual (``crash``), on all the rows at once (so without lazy rounds)
        self.crash = (self.backend == "highspy" and self.A.size >= self.CRASH_MIN_ENTRIES
                      and bool(np.isfinite(self.lo).all() and np.isfinite(self.hi).all()))
        if lazy and m > self.LAZY_START:
            self.active[:] = False
            if self.point is not None:
                norms = np.linalg.norm(self.A, axis=1)
                slack = (self.b - self.A @ self.point) / np.where(norms > 0, norms, 1.0)
                self.active[np.argsort(slack, kind="stable")[: self.LAZY_START]] = True

    BANK = 256  # multipliers of earlier solves kept for violation_floor's closed-form bounds
    #: scalings of a banked multiplier vector tried for a new objective (a dual-feasible lam stays
    #: dual-feasible scaled by s >= 0; the best scale depends on the objective's size)
    BANK_SCALES = np.array([0.25, 0.5, 1.0, 2.0, 4.0])
    LAZY_START = 64  # rows to start from
    LAZY_ADD = 64  # most violated rows added per round
    #: ``threads`` > 1 splits the objectives only over regions of at least this many row entries: on
    #: small regions a copy's own lazy rounds cost what the split saves (digits, 512 x 64 rows: the
    #: main job's PRUNE call 3.75-4.13 s on one thread, 4.17-4.40 s on two; 512 x 784 rows of
    #: benchmarks/bench_prune.py part 1: 3.26 -> 2.08 s per point)
    THREAD_MIN_ENTRIES = 100_000
    #: regions of at least this many row entries start every solve from ``crash.guess_basis``: on
    #: the 512 x 784 regions of benchmarks/bench_prune.py part 1 the 9 margin LPs take 150-300
    #: simplex iterations each from it against 700-1,100 cold or warm; digits' 512 x 64 regions
    #: (the README main job) stay below it and are solved as before
    CRASH_MIN_ENTRIES = 100_000
    #: simplex iterations an objective's lazy rounds may take under ``guessed_start`` before the
    #: guessed bases take over (a trained 784-256-256-10 MLP's margin LPs: 130 of 135 within 300,
    #: docs/prune.md)
    LAZY_BUDGET = 300

    def _load(self):
        h = _new_highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        # dual simplex (HiGHS simplex_strategy 1) rather than HiGHS's own choice: a lazy round adds
        # rows the last optimum violates, which keeps the basis dual feasible, and a new objective
        # is a warm start either way. Counted simplex iterations, same LPs, one process: the exact
        # 784-256-256-10 patch of benchmarks/bench_prune.py 10,648 (dual) against 33,156 (HiGHS's
        # choice) and 50,876 (primal); 300 digits separation pairs 15,879 against 17,557 (primal).
        h.setOptionValue("simplex_strategy", 1)
        lp = highspy.HighsLp()
        A, b = self.A[self.active], self.b[self.active]
        self._order = list(np.nonzero(self.active)[0])  # our row of each HiGHS row
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
            self._order.extend(rows.tolist())
            from scipy.sparse import csr_matrix

            M = csr_matrix(self.A[rows])
            self._h.addRows(len(rows), np.full(len(rows), -highspy.kHighsInf), self.b[rows], M.nnz,
                            M.indptr[:-1].astype(np.int32), M.indices.astype(np.int32), M.data)

    def _solve(self, obj: np.ndarray, guess: np.ndarray | None = None, limit: int | None = None):
        """(max, maximiser) over the rows loaded so far; with ``guess`` (multipliers), HiGHS starts
        from the basis they suggest; with ``limit`` (simplex iterations, highspy only), None when
        HiGHS stops at that limit before the optimum."""
        if self.backend == "highspy":
            if self._h is None:
                self._load()
            d = self.A.shape[1]
            self._h.changeColsCost(d, np.arange(d, dtype=np.int32), obj)
            if guess is not None:
                self._start_from(obj, guess)
            if limit is not None:
                self._h.setOptionValue("simplex_iteration_limit", max(1, int(limit)))
            try:
                self._h.run()
            finally:
                if limit is not None:
                    self._h.setOptionValue("simplex_iteration_limit", highspy.kHighsIInf)
            if guess is not None and self._h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                self._h.clearSolver()  # the guessed start went wrong: solve from scratch
                self._h.run()
            self.clock.iterations += int(self._h.getInfo().simplex_iteration_count)
            if limit is not None and self._h.getModelStatus() == highspy.HighsModelStatus.kIterationLimit:
                return None
            if self._h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                raise LPError(f"HiGHS: {self._h.modelStatusToString(self._h.getModelStatus())}")
            sol = self._h.getSolution()
            lam = np.zeros(len(self.A))
            lam[np.asarray(self._order, dtype=np.int64)] = np.asarray(sol.row_dual)
            self._lam = lam
            return self._h.getInfo().objective_function_value, np.asarray(sol.col_value)
        from scipy.optimize import linprog

        A, b = self.A[self.active], self.b[self.active]
        res = linprog(-obj, A_ub=A if len(A) else None, b_ub=b if len(A) else None,
                      bounds=np.stack([self.lo, self.hi], 1), method="highs")
        if res.status != 0:
            raise LPError(f"linprog: {res.message}")
        lam = np.zeros(len(self.A))
        if len(A):
            lam[np.nonzero(self.active)[0]] = res.ineqlin.marginals
        self._lam = lam
        return -res.fun, res.x

    def dual_guesses(self, objectives: np.ndarray) -> np.ndarray:
        """``crash.dual_guesses`` for ``objectives`` (k, d) over all our rows: multipliers (k, our
        rows) >= 0; with ``dual_upper`` each is a sound upper bound of its objective's maximum."""
        from .crash import dual_guesses

        if "_A32" not in self.__dict__:
            self._A32 = self.A.astype(np.float32)
        return dual_guesses(np.atleast_2d(objectives), self._A32, self.b, self.lo, self.hi)

    def _guesses(self, objectives: np.ndarray) -> np.ndarray:
        """``dual_guesses``, with every row loaded into HiGHS for the solves that start from them."""
        if not self.active.all():
            self._add_rows(np.nonzero(~self.active)[0])
        return self.dual_guesses(objectives)

    def _start_from(self, obj: np.ndarray, lam: np.ndarray) -> None:
        """Set HiGHS's starting basis from the multipliers ``lam`` (over our rows) for ``obj``.
        Only the start: the solve that follows is HiGHS's exact simplex either way."""
        from .crash import guess_basis

        if not self.active.all():
            self._add_rows(np.nonzero(~self.active)[0])
        cols, rows = guess_basis(obj, self.A, lam)
        basis = self._h.getBasis()
        basis.col_status, basis.row_status = cols, [rows[i] for i in self._order]
        basis.valid = True
        self._h.setBasis(basis)

    #: rows (nearest to the point) that ``dual_ascent`` works on: multipliers on a subset of the
    #: rows are multipliers of the whole region (0 on the rest), and fewer rows make each step cheap;
    #: on digits 128 of 512 proved as many pairs as all rows in fewer steps
    ASCENT_ROWS = 128

    def nearest(self, rows: int) -> np.ndarray:
        """Indices (into our rows) of the ``rows`` rows with the smallest slack at the point (all
        rows without a point)."""
        key = ("nearest", rows)
        if key not in self.__dict__:
            if self.point is None or rows >= len(self.A):
                self.__dict__[key] = np.arange(len(self.A))
            else:
                norms = np.linalg.norm(self.A, axis=1)
                slack = (self.b - self.A @ self.point) / np.where(norms > 0, norms, 1.0)
                self.__dict__[key] = np.sort(np.argsort(slack, kind="stable")[:rows])
        return self.__dict__[key]

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

    def multipliers(self) -> np.ndarray:
        """Multipliers lambda >= 0 of the last solve, one per row of the region as given (zero for
        rows dropped or never added), sign-normalised: a hint for ``dual_upper`` (which accepts any
        lambda >= 0), taken from the solver's row duals."""
        lam = np.zeros(self.n_rows)
        lam[self.rows] = np.abs(self._lam)
        return lam

    def maximize(self, objectives: np.ndarray, points: bool = False, duals: bool = False,
                 enough: np.ndarray | float | None = None, guessed_start: bool = False):
        """max over the region of each row of ``objectives`` (k, d) -> (k,); with ``points``, also
        the maximisers (k, d); with ``duals``, also the multipliers (k, rows) of each solve. With
        ``enough`` (one per objective, or one for all), the lazy rounds of an objective stop as soon
        as its value is at most ``enough``: the value is then an upper bound over a superset of the
        region (sound, and all the caller needs), not necessarily the maximum. With
        ``guessed_start`` on a region of at least ``CRASH_MIN_ENTRIES`` row entries (HiGHS, a finite
        box), the lazy rounds run until the first objective that needs more than ``LAZY_BUDGET``
        simplex iterations; that one and the rest are then solved on every row, exactly, each from
        the basis ``crash.dual_guesses`` suggests (the same maxima, in fewer iterations)."""
        enough = np.broadcast_to(np.asarray(-np.inf if enough is None else enough, np.float64),
                                 (len(np.atleast_2d(objectives)),))
        objectives = np.atleast_2d(np.asarray(objectives, np.float64))
        start = time.perf_counter()
        out = np.empty(len(objectives))
        where = np.empty_like(objectives)
        lams = np.zeros((len(objectives), self.n_rows)) if duals else None
        groups = (min(self.threads, len(objectives))
                  if self.backend == "highspy" and self.A.size >= self.THREAD_MIN_ENTRIES else 1)
        todo, guesses = np.arange(len(objectives)), None
        try:
            if guessed_start and self.crash:
                # lazy rounds first, which settle most objectives of a trained model's region in a
                # few dozen iterations; from the first objective that needs more than
                # ``LAZY_BUDGET``, that one and the rest start from guessed bases instead
                todo = np.asarray(self._maximize_into(objectives, enough, todo, out, where, lams,
                                                      budget=self.LAZY_BUDGET), dtype=np.int64)
                if len(todo):
                    guesses = np.zeros((len(objectives), len(self.A)))
                    guesses[todo] = self._guesses(objectives[todo])
                groups = min(groups, len(todo))
            if len(todo) and groups <= 1:
                self._maximize_into(objectives, enough, todo, out, where, lams, guesses)
            elif len(todo):
                # one HiGHS copy of the region per group of objectives, each warm-started only from
                # its own group's solves; the groups (and so every value) depend on the thread
                # count alone, not on the scheduling
                from concurrent.futures import ThreadPoolExecutor

                parts = np.array_split(todo, groups)
                lps = [self] + [self._copy() for _ in parts[1:]]
                with ThreadPoolExecutor(groups) as pool:
                    jobs = [pool.submit(lp._maximize_into, objectives, enough, idx, out, where, lams, guesses)
                            for lp, idx in zip(lps, parts)]
                    for job in jobs:
                        job.result()
                self.clock.solves += sum(lp.clock.solves for lp in lps[1:])
                self.clock.iterations += sum(lp.clock.iterations for lp in lps[1:])
        finally:
            self.clock.seconds += time.perf_counter() - start
        extra = ((where,) if points else ()) + ((lams,) if duals else ())
        return (out, *extra) if extra else out

    def _maximize_into(self, objectives, enough, idx, out, where, lams, guesses=None, budget=None) -> list:
        """``maximize``'s lazy rounds for the objectives ``idx``, written into ``out``, ``where`` and
        ``lams`` (rows ``idx`` only: the groups of a threaded call write disjoint rows); with
        ``guesses`` (multipliers per objective), each solve starts from the basis they suggest. With
        ``budget`` (simplex iterations per objective), stops at the first objective whose rounds
        pass it and returns that one and those after it (unsolved); otherwise returns []."""
        for n, i in enumerate(idx):
            obj = objectives[i]
            spent = self.clock.iterations
            while True:
                limit = None if budget is None else budget - (self.clock.iterations - spent)
                got = self._solve(obj, None if guesses is None else guesses[i], limit)
                self.clock.solves += 1
                if got is None:
                    return list(idx[n:])
                value, x = got
                idle = np.nonzero(~self.active)[0]
                if not len(idle) or value <= enough[i]:
                    break
                viol = self.A[idle] @ x - self.b[idle]
                bad = viol > 1e-9
                if not bad.any():
                    break
                order = np.argsort(-viol[bad], kind="stable")[: self.LAZY_ADD]
                self._add_rows(idle[bad][order])
            out[i] = value
            where[i] = x
            if lams is not None:
                lams[i] = self.multipliers()
        return []

    def _copy(self) -> "PolytopeLP":
        """The same region and lazy rows so far, with its own HiGHS model (loaded at its first
        solve) and solve count: for another thread."""
        twin = copy.copy(self)
        twin.active = self.active.copy()
        twin._h, twin.clock, twin.threads = None, Clock(), 1
        return twin

    def relaxed(self, point: np.ndarray, rows: int) -> "PolytopeLP":
        """The region without all but the ``rows`` constraints nearest to ``point`` (smallest slack
        b - a.u over |a|): a superset of the region, so maxima over it are sound upper bounds and
        minima sound lower bounds, from a much smaller LP."""
        if rows <= 0 or rows >= len(self.A):
            return self
        norms = np.linalg.norm(self.A, axis=1)
        slack = (self.b - self.A @ point) / np.where(norms > 0, norms, 1.0)
        keep = np.sort(np.argsort(slack, kind="stable")[:rows])
        sub = PolytopeLP(self.A[keep], self.b[keep], self.lo, self.hi, self.clock, self.backend, point,
                         threads=self.threads)
        sub.n_rows, sub.rows = self.n_rows, self.rows[keep][sub.rows]
        return sub


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


def bound_K(c: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """K = max_k max_{u in [lo, hi]} |c_k u + d_k| in closed form on a box."""
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    return float(np.max(np.abs(c) @ half + np.abs(c @ mid + d))) if len(d) else 0.0
