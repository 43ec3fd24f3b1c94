"""Linear programs of PRUNE: bounds of affine functions over a region (``PolytopeLP``).

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

The rest of PRUNE's LP work lives beside it: the closed-form bounds from multipliers by weak duality
and the bank of earlier solves' multipliers that ``PolytopeLP`` keeps (``duals.py``), the bounds of
a support's total violation for the separation (``violation.py``) and the affine patch
constructions (``patches.py``).
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

from .duals import DualBank


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


class PolytopeLP(DualBank):
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
