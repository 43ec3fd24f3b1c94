"""Building patches against the current patched model (REASSURE's point-wise repair, Fu & Li,
ICLR 2022, and PRUNE's representatives, released code ``purchase_multipoint.py``).

Composition of overlapping patches: every new patch is computed against the *current* f_hat
([fix]: the released code computes every patch against the original f), and overlapping patches are
*separated* (``Builder.build`` says how): gamma is raised until a support is provably 0 (by LP) on
every region another patch is certified on, the exact affine part is added for patches fully active
on the new region, and supports that touch a region (no gamma separates them) either agree on the
target, enter the new patch's margin, are left out (members) or make the representative refused.
Every certificate then holds on the final model, as the independent check (``certify.py``)
confirms; the LP multipliers of these bounds are recorded as witnesses the check can verify.

We chose this over REASSURE's telescoping ``MultiPNN`` (sort regions, use p_i - p_{i-1} gated by
max_{j>=i} g_j) because telescoping keeps a certificate only when no later support reaches the
region either, needs every region up front, and cannot extend a PatchedModel returned earlier
(continual requests) without recomputing all patches. An earlier version added a worst-case margin
for partially active patches bounded over the region's bounding box: too loose, and each margin
inflated the next patch's K geometrically (K ~ 1e5 after ten patches on digits).
"""

from __future__ import annotations

import numpy as np
import torch

from .lp import PolytopeLP
from .modules import Patch
from .network import Head, Region, activation_box_region, activation_region, box_region
from .patches import bound_K, minimal_patch, rows_patch
from .violation import violation_floor, violation_screens


def fully_active(patch: Patch, A: np.ndarray, b: np.ndarray, atol: float = 0.0) -> bool:
    """One of the patch's supports has the rows (A, b) (to ``atol``): g = 1 on that region."""
    return _member(patch, A, b, atol) is not None


def _member(patch: Patch, A: np.ndarray, b: np.ndarray, atol: float = 0.0):
    """Index of the patch's support with the rows (A, b) (to ``atol``), or None."""
    if tuple(patch.A.shape[1:]) != A.shape:
        return None
    PA, Pb = patch.A.numpy(), patch.b.numpy()
    close = np.abs(Pb - b).max(1) <= atol  # offsets first: cheap, and they rule out most members
    for m in np.nonzero(close)[0]:
        if np.abs(PA[m] - A).max() <= atol:
            return int(m)
    return None


def patched_affine(patches, point: np.ndarray):
    """Jacobian and offset of sum_i h_i at ``point`` (zeros without patches): the linearisation of
    the patches at the point, exact on the region only where none is partially active there (used
    with ``separate=False``)."""
    u0 = torch.as_tensor(point, dtype=torch.float64)
    with torch.no_grad():  # where g = 0 and |p| < K (K bounds |p|), h = 0 around the point: no Jacobian
        patches = [p for p in patches if float(p.support(u0[None])[0]) > 0]

    def total(u):
        return sum(p(u[None])[0] for p in patches)

    if not patches:
        return 0.0, 0.0
    J = torch.autograd.functional.jacobian(total, u0).numpy()
    value = total(u0).detach().numpy()
    return J, value - J @ point


def _effect(patch: Patch, target: int, others: list) -> np.ndarray:
    """Per j in ``others``, the most a patch whose support may be anything in [0, 1] adds to
    h_j - h_target: a constant patch gives soft_threshold(d, tau), tau in [0, K], non-decreasing in
    d, so the maximum over tau of the difference is at tau = 0 or at a kink; else 2 K."""
    K = float(patch.K)
    if bool((patch.c != 0).any()):
        return np.full(len(others), 2.0 * K)
    d = patch.d.numpy()
    soft = lambda x, tau: np.sign(x) * max(0.0, abs(x) - tau)  # noqa: E731
    return np.array([max(soft(d[j], tau) - soft(d[target], tau) for tau in (0.0, K, abs(d[j]), abs(d[target])))
                     for j in others])


class Refusal(Exception):
    """A representative whose certificate cannot hold together with an existing one (its region is
    an already certified region, or touches one: see ``Builder.build``); ``why`` says which."""

    def __init__(self, why: str, patch: int):
        super().__init__(why)
        self.why, self.patch = why, patch


class Builder:
    """Makes patches for one PatchedModel (see the module docstring)."""

    #: a lower bound of a total violation at or below this counts as touching (no gamma separates)
    TOUCH = 1e-6
    #: gamma is set to SAFETY / L, so the proof g = 0 keeps a 5% margin over the LP's rounding
    SAFETY = 1.05

    def __init__(self, head: Head, lo, hi, params: dict, clock, witness: dict | None = None):
        self.head, self.lo, self.hi, self.params, self.clock = head, lo, hi, params, clock
        # hints for the independent check (LP multipliers it verifies on its own rows, certify.py):
        # ("margin", i) -> multipliers of patch i's C - 1 margin LPs; ("floor", i, j, m) -> (mu, lam)
        # for support m of patch j over the region patch i is certified on
        self.witness = witness if witness is not None else {}
        self.region_kind = params["region"]
        if self.region_kind == "auto":
            self.region_kind = "activation" if head.hidden else "box"
        self.backend = params.get("lp_backend", "auto")
        # threads for the margin LPs of a patch (0: the trial's, which the harness fixes per trial)
        self.threads = int(params.get("lp_threads", 1)) or torch.get_num_threads()
        self.separate = bool(params.get("separate", True))
        self._cert: dict = {}  # id(patch) -> the LP of the region the patch is certified on
        self._regions: dict = {}  # point bytes -> Region
        self.stats = {"narrowed": 0, "touching": 0, "dropped_members": 0, "bounds": 0}

    def region(self, u: np.ndarray) -> Region:
        key = np.asarray(u, np.float64).tobytes()
        if key not in self._regions:
            self._regions[key] = self._region(u)
        return self._regions[key]

    def _region(self, u: np.ndarray) -> Region:
        if self.region_kind == "activation":
            return activation_region(self.head, u, self.lo, self.hi)
        if self.region_kind == "activation_box":
            return activation_box_region(self.head, u, self.lo, self.hi, float(self.params["box_radius"]))
        return box_region(self.head, u, self.lo, self.hi, float(self.params["box_radius"]))

    def _lp(self, A, b, point) -> PolytopeLP:
        return PolytopeLP(A, b, self.lo, self.hi, self.clock, self.backend, point, threads=self.threads)

    def _certified_region(self, patch: Patch):
        key = id(patch)
        if key not in self._cert:
            self._cert[key] = self._lp(patch.A[0].numpy(), patch.b[0].numpy(), patch.point.numpy())
        return self._cert[key]

    def build(self, patches, u_rep: np.ndarray, label: int, target: int, members: list[np.ndarray]) -> Patch:
        """The patch for representative ``u_rep`` (certified on its region R) gated by the supports of
        R and of the ``members``' regions, computed against the current patched model.

        With ``separate`` (the default), every certificate, earlier or new, holds on the final model:

        1. Earlier patches on R: one fully active on R (a support with R's rows) adds its affine part
           exactly. For every other, each support's total violation over R is bounded below by LP
           (``violation_floor``: L, with its multipliers kept as a witness for the check); if L > 0,
           raising that patch's gamma to SAFETY / L makes it 0 on R (a larger gamma only shrinks a
           support: g = 1 on its own regions stays, and every certificate that bounded it stays
           valid). Supports that touch R (L = 0) remain.
        2. If the region an earlier patch is certified on touches R, both supports are 1 on the
           common face: the new patch takes that patch's target (not if it is the label, or if two
           such targets differ: ``Refusal``). Touching supports of another target enter the margin,
           per class j, with their largest possible effect on h_j - h_t (``_effect``).
        3. The new patch's supports against every earlier certified region R_i: L > 0 sets the new
           patch's gamma to at least SAFETY / L, so it is 0 on R_i; a member whose region is or
           touches some R_i of another target is left out of the support (the point stays
           unforgotten, to be handled as a representative later).
        """
        reg = self.region(u_rep)
        lp = self._lp(reg.A, reg.b, u_rep)
        new = len(patches)  # the index the new patch will have
        hints = {}
        F, e = reg.F.copy(), reg.e.copy()  # (the cached region stays untouched)
        separate = self.separate
        touching = []  # (patch index, member) of earlier supports that touch R (no gamma makes them 0)
        apart_from = []  # earlier patches not fully active on R: their supports are bounded over R
        for i, q in enumerate(patches):
            m = _member(q, reg.A, reg.b, 1e-12)
            if m is not None:
                if m == 0:
                    raise Refusal(f"its linear region is the region patch {i} is certified on (target {q.target}), "
                                  "which the patched model must map to that target", i)
                F, e = F + q.c.numpy(), e + q.d.numpy()
            elif separate:
                apart_from.append((i, q))
        # the closed-form screens of every (support, R) pair at once; LPs for the pairs they leave
        floors_of = {}  # (patch index, member) -> (L, witness)

        def bound(keys):
            needs = np.array([self.SAFETY / float(patches[i].gamma) for i, _ in keys])
            found = violation_screens([(patches[i].A[mm].numpy(), patches[i].b[mm].numpy(), lp, u_rep)
                                       for i, mm in keys], needs)
            for (i, mm), got, need in zip(keys, found, needs):
                self.stats["bounds"] += 1
                if got is None:
                    got = violation_floor(patches[i].A[mm].numpy(), patches[i].b[mm].numpy(), lp, u_rep, need=need,
                                          witness=True, ascent=False)
                floors_of[(i, mm)] = got

        # the certified regions (member 0) first: one touching R with a target the new patch cannot
        # take refuses the representative before the other supports are bounded
        bound([(i, 0) for i, _ in apart_from])
        meets = [i for i, _ in apart_from if floors_of[(i, 0)][0] <= self.TOUCH]
        early = {patches[i].target for i in meets}
        if len(early) > 1 or label in early:
            raise Refusal(f"its linear region touches the region patch {meets[0]} is certified on (targets "
                          f"{sorted(early)}): both supports are 1 on the common face", meets[0])
        bound([(i, mm) for i, q in apart_from for mm in range(1, q.A.shape[0])])
        for i, q in apart_from:
            gq = float(q.gamma)
            floors = np.array([floors_of[(i, mm)][0] for mm in range(q.A.shape[0])])
            for mm in range(q.A.shape[0]):
                hints[("floor", new, i, mm)] = floors_of[(i, mm)][1]
            touching += [(i, int(mm)) for mm in np.nonzero(floors <= self.TOUCH)[0]]
            apart = floors[floors > self.TOUCH]
            if len(apart) and gq * apart.min() < self.SAFETY:
                q.gamma.fill_(self.SAFETY / apart.min())
                q.info["gamma_raised"] = q.info.get("gamma_raised", 0) + 1
                self.stats["narrowed"] += 1
        # a certified region touching R (member 0 of its patch): on the common face both supports
        # are 1, so both certificates can hold only with the same target: take it (if it is not the
        # label), refuse otherwise
        forced = {patches[i].target for i, mm in touching if mm == 0}
        if len(forced) > 1 or label in forced:
            i = next(i for i, mm in touching if mm == 0)
            raise Refusal(f"its linear region touches the region patch {i} is certified on (targets "
                          f"{sorted(forced)}): both supports are 1 on the common face", i)
        target_rule = None
        if forced:
            target, target_rule = forced.pop(), "touching certified region"
        others = [j for j in range(len(e)) if j != target]
        extra = np.zeros(len(others))  # bound of the touching supports' h_j - h_t (engine's own formula)
        for i, mm in touching:
            if patches[i].target != target:
                self.stats["touching"] += 1
                extra += _effect(patches[i], target, others)
        if not separate:  # the earlier behaviour: the patches at the point, linearised there
            dF, de = patched_affine(patches, u_rep)
            F, e = reg.F + dF, reg.e + de
        lpp = lp.relaxed(u_rep, int(self.params.get("relax_rows", 0)))
        eps = float(self.params["eps"])
        variant = self.params["lp"]
        if variant == "rows":
            lams: list = []
            c, d = rows_patch(lpp, F, e, target, eps + extra, lams)
            hints[("margin", new)] = lams[0]
        else:
            c, d = minimal_patch(lpp, F, e, target, eps + float(extra.max(initial=0.0)))
        K = bound_K(c, d, self.lo, self.hi)
        gamma = float(self.params["gamma"])
        rows, bs, dropped = [reg.A], [reg.b], 0
        regions = [reg] + [self.region(m) for m in members]
        screens, gamma0 = {}, gamma
        if separate and patches:  # closed-form screens at the first need (a later need is only lower)
            certified = [self._certified_region(q) for q in patches]
            keys = [(r_i, i) for r_i in range(len(regions)) for i in range(len(patches))]
            found = violation_screens([(regions[r_i].A, regions[r_i].b, certified[i], patches[i].point.numpy())
                                       for r_i, i in keys], np.full(len(keys), self.SAFETY / gamma))
            screens = dict(zip(keys, found))
        for r_i, r in enumerate(regions):
            keep = True
            proofs = {}
            if separate:
                for i, q in enumerate(patches):
                    qA, qb = q.A[0].numpy(), q.b[0].numpy()
                    if r_i and qA.shape == r.A.shape and np.allclose(qA, r.A, rtol=0, atol=1e-12) and \
                            np.allclose(qb, r.b, rtol=0, atol=1e-12):
                        keep = False
                        break
                    qlp = self._certified_region(q)
                    self.stats["bounds"] += 1
                    if screens.get((r_i, i)) is not None:
                        low, proofs[i] = screens[(r_i, i)]
                    else:
                        low, proofs[i] = violation_floor(r.A, r.b, qlp, q.point.numpy(), need=self.SAFETY / gamma,
                                                         witness=True,
                                                         ascent=(r_i, i) not in screens or gamma > gamma0)
                    if gamma * low >= self.SAFETY:
                        continue
                    if low <= self.TOUCH:
                        if q.target == target:  # same target on the common face: no conflict
                            continue
                        if not r_i:
                            raise Refusal(f"its linear region touches the region patch {i} is certified on (target "
                                          f"{q.target}): both supports are 1 on the common face", i)
                        keep = False
                        break
                    gamma = self.SAFETY / low
            if not keep:
                dropped += 1
                continue
            for i, proof in proofs.items():
                hints[("floor", i, new, len(rows) if r_i else 0)] = proof
            if r_i:
                rows.append(r.A)
                bs.append(r.b)
        self.stats["dropped_members"] += dropped
        info = {"variant": variant, "region": self.region_kind, "eps": eps, "lp_rows": int(lpp.active.sum()),
                "box_radius": float(self.params["box_radius"]) if "box" in self.region_kind else None,
                "dropped_rows": lpp.dropped, "touching_margin": float(extra.max(initial=0.0)),
                "members_left_out": dropped}
        if target_rule:
            info["target_rule"] = target_rule
        self.witness.update(hints)
        return Patch(np.stack(rows), np.stack(bs), c, d, K, gamma, u_rep, reg.pattern.astype(np.uint8), target,
                     label, info)
