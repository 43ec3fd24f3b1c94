"""Building patches against the current patched model (REASSURE's point-wise repair, Fu & Li,
ICLR 2022, and PRUNE's representatives, released code ``purchase_multipoint.py``).

Composition of overlapping patches: every new patch is computed against the *current* f_hat
([fix]: the released code computes every patch against the original f): the linearisation on the
new point's region R is the original head's closed form plus the Jacobian and value of the existing
patches at the point (autograd). Where the earlier patches are constant in their activation pattern
over R (zero there, which is the usual case, or fully active because R is one of their members'
regions), this is f_hat on all of R and the new certificate is exact.

We chose this over REASSURE's telescoping ``MultiPNN`` (sort regions, use p_i - p_{i-1} gated by
max_{j>=i} g_j) because telescoping keeps a certificate only when no later support reaches the
region either, needs every region up front, and cannot extend a PatchedModel returned earlier
(continual requests) without recomputing all patches. We also tried adding a sound worst-case
margin for partially active patches at construction (bounding their support over the region's
bounding box): the box bound is too loose in practice, and each patch's margin inflated the next
one's K geometrically (K ~ 1e5 after ten patches on digits), so we dropped it. What holds is decided
by the independent check of the final model (``certify.py``: exact LPs, and a sound bound for the
patches it cannot prove zero on a region), reported as ``certified_fraction``.
"""

from __future__ import annotations

import numpy as np
import torch

from .lp import PolytopeLP, bound_K, minimal_patch, rows_patch
from .modules import Patch
from .network import Head, Region, activation_box_region, activation_region, box_region


def zero_bound(patch: Patch, lp: PolytopeLP, point: np.ndarray, relaxed: PolytopeLP | None = None) -> float:
    """An upper bound of the patch's support g over the region of ``lp`` (which contains ``point``).

    For each member m, with S the rows violated at ``point``: sum_j min(1, gamma [v_j]_+) >=
    min(1, gamma sum_{j in S} v_j), and the minimum over the region of the linear function
    sum_{j in S} v_j is one LP (a closed-form bound over the input box first, then an LP over
    ``relaxed``, a superset of the region with few rows, then the exact LP). So
    g_m <= max(0, 1 - gamma * min_R sum_S v_j), and g <= the maximum over members."""
    A, b = patch.A.numpy(), patch.b.numpy()
    gamma = float(patch.gamma)
    worst = 0.0
    for m in range(A.shape[0]):
        v = A[m] @ point - b[m]
        S = v > 0
        if not S.any():
            return 1.0
        a, c0 = A[m][S].sum(0), b[m][S].sum()
        low = np.minimum(a * lp.lo, a * lp.hi).sum() - c0  # min over the input box
        if gamma * low < 1 and relaxed is not None:  # over a superset of the region: a small LP
            low = -relaxed.maximize(-a[None])[0] - c0
        if gamma * low < 1:
            low = -lp.maximize(-a[None])[0] - c0
        worst = max(worst, max(0.0, 1.0 - gamma * low))
        if worst >= 1.0:
            return 1.0
    return worst


def fully_active(patch: Patch, A: np.ndarray, b: np.ndarray, atol: float = 0.0) -> bool:
    """One of the patch's supports has the rows (A, b) (to ``atol``): g = 1 on that region."""
    if tuple(patch.A.shape[1:]) != A.shape:
        return False
    PA, Pb = patch.A.numpy(), patch.b.numpy()
    return any(np.allclose(PA[m], A, rtol=0, atol=atol) and np.allclose(Pb[m], b, rtol=0, atol=atol)
               for m in range(PA.shape[0]))


def patched_affine(patches, point: np.ndarray):
    """Jacobian and offset of sum_i h_i at ``point`` (zeros without patches)."""
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


class Builder:
    """Makes patches for one PatchedModel (see the module docstring)."""

    def __init__(self, head: Head, lo, hi, params: dict, clock):
        self.head, self.lo, self.hi, self.params, self.clock = head, lo, hi, params, clock
        self.region_kind = params["region"]
        if self.region_kind == "auto":
            self.region_kind = "activation" if head.hidden else "box"

    def region(self, u: np.ndarray) -> Region:
        if self.region_kind == "activation":
            return activation_region(self.head, u, self.lo, self.hi)
        if self.region_kind == "activation_box":
            return activation_box_region(self.head, u, self.lo, self.hi, float(self.params["box_radius"]))
        return box_region(self.head, u, self.lo, self.hi, float(self.params["box_radius"]))

    def build(self, patches, u_rep: np.ndarray, label: int, target: int, members: list[np.ndarray]) -> Patch:
        reg = self.region(u_rep)
        lp = PolytopeLP(reg.A, reg.b, self.lo, self.hi, self.clock, self.params.get("lp_backend", "auto"), u_rep)
        lp = lp.relaxed(u_rep, int(self.params.get("relax_rows", 0)))
        dF, de = patched_affine(patches, u_rep)
        F, e = reg.F + dF, reg.e + de
        eps = float(self.params["eps"])
        variant = self.params["lp"]
        c, d = (rows_patch if variant == "rows" else minimal_patch)(lp, F, e, target, eps)
        K = bound_K(c, d, self.lo, self.hi)
        rows = [reg.A]
        bs = [reg.b]
        for m in members:
            r = self.region(m)
            rows.append(r.A)
            bs.append(r.b)
        info = {"variant": variant, "region": self.region_kind, "eps": eps, "lp_rows": int(lp.active.sum()),
                "box_radius": float(self.params["box_radius"]) if "box" in self.region_kind else None,
                "dropped_rows": lp.dropped}
        return Patch(np.stack(rows), np.stack(bs), c, d, K, float(self.params["gamma"]), u_rep,
                     reg.pattern.astype(np.uint8), target, label, info)
