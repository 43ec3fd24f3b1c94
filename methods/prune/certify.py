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
   other patch, |h_i| <= K_i g_i <= K_i gbar_i, with gbar_i an upper bound of its support over R
   (``engine.zero_bound``: one LP per support member, usually proving g_i = 0 on R).
5. By LP over R: max_u (f_hat_j(u) - f_hat_t(u)) + 2 delta < 0 for every j != t.

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

from .engine import fully_active, zero_bound
from .lp import Clock, PolytopeLP
from .modules import PatchedModel
from .network import head_module


def _autograd_region(head: torch.nn.Module, u0: torch.Tensor):
    """(rows W, offsets beta, pattern, F, e) of the head at u0 (float64 copy of the head)."""
    import copy

    h = copy.deepcopy(head).double().eval()
    linears = [m for m in h.modules() if isinstance(m, torch.nn.Linear)]
    pre = []

    def hidden(u):
        pre.clear()
        hooks = [lin.register_forward_hook(lambda m, i, o: pre.append(o)) for lin in linears[:-1]]
        try:
            h(u[None])
        finally:
            for hk in hooks:
                hk.remove()
        return torch.cat([p.flatten() for p in pre]) if pre else u.new_zeros(0)

    u0 = u0.double()
    z = hidden(u0)
    # vectorize: one batched backward pass (vmap over the rows) instead of one per row
    W = torch.autograd.functional.jacobian(hidden, u0, vectorize=True) if len(z) else u0.new_zeros(0, len(u0))
    F = torch.autograd.functional.jacobian(lambda u: h(u[None])[0], u0, vectorize=True)
    out = h(u0[None])[0]
    e = out - F @ u0
    beta = z - W @ u0
    return W.detach().numpy(), beta.detach().numpy(), (z >= 0).numpy(), F.detach().numpy(), e.detach().numpy()


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
        near = None
        for j in partial:
            key = region + supports[j]
            if key not in memo:
                if near is None:
                    near = lp.relaxed(u0.numpy(), 96)
                memo[key] = zero_bound(patches[j], lp, u0.numpy(), near)
            used[key] = memo[key]
            delta += float(patches[j].K) * used[key]
        t = patch.target
        others = [j for j in range(len(eh)) if j != t]
        objective, offset = Fh[others] - Fh[t], eh[others] - eh[t]
        key = region + "margin" + tensor_digest(objective, offset)
        if key not in memo:
            memo[key] = float(np.max(lp.maximize(objective) + offset))
        worst = used[key] = memo[key]
        rec["margin"], rec["delta"] = -worst, delta
        rec["certified"] = bool(worst + 2 * delta < 0)
        if not rec["certified"]:
            rec["why"] = f"max over the region of f_hat_j - f_hat_t is {worst:.3g} with delta {delta:.3g}"
    model.__dict__["_certify_memo"] = used
    return records
