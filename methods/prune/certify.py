"""Independent check of PRUNE's certificates (the guarantee of REASSURE's point-wise repair, Fu & Li,
ICLR 2022, as PRUNE uses it), independent of how the patches were built.

For every patch of a PatchedModel and the point it was built for (its representative, in the
patched space), the check re-derives everything from the final model, not from the construction:

1. f_hat(x_u) != y_u, evaluating the patched model itself.
2. The linear region R of the original head at x_u, from autograd: one fresh Jacobian row per hidden
   neuron (``torch.autograd.functional.jacobian`` of the pre-activations), intersected with the
   patch's recorded input box; for an l_inf-box region, the box of the recorded radius (and both
   for ``activation_box``).
3. The patch's own support must be 1 on R: one of its supports must have R's rows (to 1e-9).
4. f_hat on R: the head's Jacobian and offset at x_u, plus the affine part of every patch fully
   active on R (one of its supports has R's rows), plus a bound delta = sum K_i gbar_i on every
   other patch, |h_i| <= K_i g_i <= K_i gbar_i, with gbar_i an upper bound of its support over R:
   per support member, g_m <= max(0, 1 - gamma L_m) with L_m a lower bound of the member's total
   violation sum_j [a_j u - b_j]_+ over R (usually proving g_i = 0 on R). A partially active patch
   adds at most ``_partial_effect`` to f_hat_j - f_hat_t (2 K_i gbar_i in general; for a constant
   patch the exact maximum over its soft threshold, which is 0 for a patch towards t itself).
5. max_u over R of (f_hat_j(u) - f_hat_t(u)) + (the partial patches' effect on j) < 0 for every
   j != t.

Steps 4 and 5 need lower/upper bounds of linear functions over R. Every such bound is computed by
the check from R's rows (its own, step 2) and the final patches' buffers, in one of two ways:

- From a *witness*: multipliers lam >= 0 on R's rows (and mu in [0, 1] on a support's rows) that
  the construction recorded from its LP duals (``PatchedModel._witness``, saved with the patches by
  ``PatchedModel.save`` and read back by ``load``, so a loaded model is checked as fast). Weak LP
  duality turns any such multipliers into a valid bound by plain arithmetic (``duals.dual_upper``,
  ``duals.floor_from_witness``): c.u <= lam.b + max over the box of (c - A^T lam).u for every u in R.
  Nothing the construction computed is trusted: a wrong witness gives a weak bound, never a wrong
  one, and the check then falls back to
- its own LPs over R (``violation.violation_floor`` and ``PolytopeLP.maximize``, HiGHS), as before.

Verifying a witness is a few matrix-vector products, so the check costs a fraction of the
construction when the witnesses are there (without them, e.g. a file written before witnesses
were saved, it solves every LP: about 10x slower on the README's main job).

``certified_fraction`` is the fraction of patches (points) for which 1-5 pass.

Step 4's bounds and step 5's LP are memoised on the PatchedModel (``_certify_memo``, in memory
only, holding what the last check used): the bound of patch j's support over region R depends only on R's rows, j's support rows and
gamma, and the input box, and the margin LP only on R, the box and the affine f_hat on R, so each
is keyed by a SHA-256 of exactly those arrays (``bench.core.cache.tensor_digest``). A model that gains patches request
after request (``--forget seq:...``) then solves LPs only for the pairs that involve a new patch or a
changed box, instead of for every pair of patches again (which made the check, and PRUNE, cost
grow with the square of the number of patches: 20 s for the 10th request of 10 digits points).
"""

from __future__ import annotations

import numpy as np
import torch

from bench.core.cache import tensor_digest

from .duals import dual_upper, floor_from_witness
from .engine import fully_active
from .lp import Clock, PolytopeLP
from .modules import PatchedModel
from .network import head_module
from .violation import violation_floor


def _jacobian(f, u0: torch.Tensor, n: int) -> torch.Tensor:
    """The n x d Jacobian at u0 of u -> f(u[None])[0], where f maps a batch (m, d) to (m, n) row by row
    (the head in eval mode), by reverse-mode autograd in one backward pass: row k is the gradient
    of output k of the k-th of n copies of u0. The values of ``autograd.functional.jacobian(vectorize=True)``,
    whose ``grad_outputs`` path imports ``torch.fx``'s symbolic shapes with sympy (0.6 s of the first
    check in a fresh worker, measured); a scalar's backward pass does not."""
    x = u0.detach().expand(n, -1).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x).diagonal().sum(), x)
    return grad


def _autograd_region(head: torch.nn.Module, u0: torch.Tensor):
    """(rows W, offsets beta, pattern, F, e) of the head at u0 (float64 copy of the head)."""
    import copy

    h = copy.deepcopy(head).double().eval()
    linears = [m for m in h.modules() if isinstance(m, torch.nn.Linear)]
    pre = []

    def hidden(x):  # (m, d) -> the pre-activations of every hidden linear layer, (m, N)
        pre.clear()
        hooks = [lin.register_forward_hook(lambda m, i, o: pre.append(o)) for lin in linears[:-1]]
        try:
            h(x)
        finally:
            for hk in hooks:
                hk.remove()
        return torch.cat([p.reshape(len(x), -1) for p in pre], dim=1) if pre else x.new_zeros(len(x), 0)

    u0 = u0.double()
    z = hidden(u0[None])[0]
    out = h(u0[None])[0]
    W = _jacobian(hidden, u0, len(z)) if len(z) else u0.new_zeros(0, len(u0))
    F = _jacobian(h, u0, len(out))
    e = out - F @ u0
    beta = z - W @ u0
    return W.detach().numpy(), beta.detach().numpy(), (z >= 0).numpy(), F.detach().numpy(), e.detach().numpy()


def _support_bound(patch, i: int, j: int, A, b, lo, hi, lp: PolytopeLP, point, witness: dict,
                   stats: dict) -> float:
    """An upper bound of the support of patch j (index) over R = {A u <= b, lo <= u <= hi}, the region
    of patch i: per member, a witness's bound first, the check's own LP bound if that is too weak."""
    PA, Pb = patch.A.numpy(), patch.b.numpy()
    gamma = float(patch.gamma)
    worst = 0.0
    for m in range(PA.shape[0]):
        hint = witness.get(("floor", i, j, m))
        low = 0.0
        if hint is not None and len(hint[0]) == len(Pb[m]) and (hint[1] is None or len(hint[1]) == len(b)):
            low = floor_from_witness(PA[m], Pb[m], A, b, lo, hi, *hint)
            stats["witness_bounds"] += 1
        if gamma * low < 1.0:
            low = max(low, violation_floor(PA[m], Pb[m], lp, point, need=1.0 / gamma))
            stats["lp_bounds"] += 1
        worst = max(worst, min(1.0, max(0.0, 1.0 - gamma * low)))
        if worst >= 1.0:
            break
    return worst


def soft_threshold(x: np.ndarray, tau):
    """sign(x) max(0, |x| - tau): a patch network's output h = relu(p - tau) - relu(-p - tau) with
    tau = K (1 - g) >= 0."""
    return np.sign(x) * np.maximum(0.0, np.abs(x) - tau)


def _partial_effect(patch, gbar: float, t: int, others: list) -> np.ndarray:
    """Per j in ``others``, an upper bound of h_j - h_t for a patch whose support is at most ``gbar``
    on the region. A constant patch (c = 0: h = soft_threshold(d, tau), tau = K (1 - g) in
    [K (1 - gbar), K]): the exact maximum over tau of the difference, a piecewise-linear function of
    tau, taken at the ends and at the kinks |d_j|, |d_t| (so a patch pushing towards t itself adds
    nothing: soft_threshold is non-decreasing in x). Otherwise |h_k| <= K g gives 2 K gbar."""
    K = float(patch.K)
    if gbar <= 0.0:
        return np.zeros(len(others))
    if bool((patch.c != 0).any()):
        return np.full(len(others), 2.0 * K * gbar)
    d = patch.d.numpy()
    lo_tau = K * (1.0 - gbar)
    out = np.empty(len(others))
    for r, j in enumerate(others):
        taus = [tau for tau in (lo_tau, K, abs(d[j]), abs(d[t])) if lo_tau <= tau <= K]
        out[r] = max(float(soft_threshold(d[j], tau) - soft_threshold(d[t], tau)) for tau in taus)
    return out + 1e-12 * (abs(K) + 1.0)


def _support_digest(patch) -> str:
    """Digest of what a patch's support is: its rows, offsets and gamma (not K, not the patch)."""
    return tensor_digest(patch.A, patch.b, patch.gamma)


def check(model: PatchedModel, lo: np.ndarray, hi: np.ndarray, clock: Clock | None = None) -> list[dict]:
    """One record per patch: ``{"index", "target", "label", "certified", "margin", "delta", "why"}``."""
    import copy

    clock = clock or Clock()
    # the check runs on the CPU in float64, whatever device the model lives on
    head = copy.deepcopy(head_module(model.kind, model.original)).cpu()
    records = []
    patches = list(model.patches)
    memo = model.__dict__.get("_certify_memo", {})
    used: dict = {}  # what this check needed; it replaces the memo at the end (stale pairs dropped)
    box = tensor_digest(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
    witness = model.__dict__.get("_witness", {})
    stats = {"witness_bounds": 0, "lp_bounds": 0}
    supports = [_support_digest(p) for p in patches]
    for i, patch in enumerate(patches):
        rec = {"index": i, "target": patch.target, "label": patch.label, "certified": False, "margin": None,
               "delta": None, "why": ""}
        records.append(rec)
        u0 = patch.point.clone()
        with torch.no_grad():
            logits = head(u0[None].to(next(head.parameters()).dtype)).double() + model.patch_output(u0[None])
        if int(logits.argmax(1)) == patch.label:
            rec["why"] = "the patched model still predicts the label at the point"
            continue
        if patch.info.get("region") == "box":
            r = float(patch.info["box_radius"])
            d = len(u0)
            A = np.concatenate([np.eye(d), -np.eye(d)])
            b = np.concatenate([u0.numpy() + r, -(u0.numpy() - r)])
            _, _, _, F, e = _autograd_region(head, u0)
        else:
            W, beta, active, F, e = _autograd_region(head, u0)
            sigma = np.where(active, 1.0, -1.0)
            A, b = -sigma[:, None] * W, sigma * beta
            if patch.info.get("region") == "activation_box":
                r, p0 = float(patch.info["box_radius"]), u0.numpy()
                A = np.concatenate([A, np.eye(len(p0)), -np.eye(len(p0))])
                b = np.concatenate([b, p0 + r, -(p0 - r)])
        if not fully_active(patch, A, b, atol=1e-9):
            rec["why"] = "the patch's support rows are not the point's linear region"
            continue
        lp = PolytopeLP(A, b, lo, hi, clock, point=u0.numpy())
        Fh, eh, delta, partial = F.copy(), e.copy(), 0.0, []
        for j, other in enumerate(patches):
            if j == i or fully_active(other, A, b, atol=1e-9):
                Fh, eh = Fh + other.c.numpy(), eh + other.d.numpy()
            else:
                partial.append(j)
        region = tensor_digest(A, b, u0) + box
        t = patch.target
        others = [j for j in range(len(eh)) if j != t]
        extra = np.zeros(len(others))  # bound of sum over partial patches of h_j - h_t, per j != t
        for j in partial:
            key = region + supports[j]
            if key not in memo:
                memo[key] = _support_bound(patches[j], i, j, A, b, lo, hi, lp, u0.numpy(), witness, stats)
            used[key] = memo[key]
            extra += _partial_effect(patches[j], used[key], t, others)
        delta = float(extra.max()) if len(extra) else 0.0
        objective, offset = Fh[others] - Fh[t], eh[others] - eh[t]
        key = region + "margin" + tensor_digest(objective, offset)
        if key not in memo:
            hint = witness.get(("margin", i))
            value = None
            if hint is not None and hint.shape == (len(others), len(b)):
                value = np.array([dual_upper(objective[r], A, b, lo, hi, hint[r]) for r in range(len(others))]) + offset
                stats["witness_bounds"] += 1
            if value is None or not np.isfinite(value).all() or (value + extra).max() >= 0:
                value = lp.maximize(objective) + offset
                stats["lp_bounds"] += 1
            memo[key] = value
        tops = used[key] = memo[key]
        worst = float(np.max(tops + extra))
        rec["margin"], rec["delta"] = -float(np.max(tops)), delta
        rec["certified"] = bool(worst < 0)
        if not rec["certified"]:
            rec["why"] = (f"max over the region of f_hat_j - f_hat_t is {worst:.3g} (affine part {float(np.max(tops)):.3g}, "
                          f"patches partially active on the region up to {delta:.3g})")
    model.__dict__["_certify_memo"] = used
    model.__dict__["_certify_stats"] = stats
    return records
