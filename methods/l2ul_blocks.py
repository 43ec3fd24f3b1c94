"""Building blocks of L2UL (``l2ul.py``; Cha, Cho, Hwang, Lee, Moon, Lee, AAAI 2024, released code
github.com/csm9493/L2UL at ``5fb777b``): the loss of one step (:func:`_loss`), the function-space
anchor on random inputs (:class:`_RandomInputAnchor`, a documented deviation), targeted L2 PGD
adversarial examples (:func:`l2_pgd_targeted`, after advertorch's ``L2PGDAttack``) and inverted MAS
weight importance (:func:`mas_importance`, :func:`invert_importance`). Three defects of the released
code are fixed here (:func:`random_other_labels`, :func:`mas_importance`, :func:`invert_importance`);
docs/l2ul.md has the details.
"""

from __future__ import annotations

#: the values of ``anchor_inputs`` and ``anchor_loss`` (:class:`_RandomInputAnchor`)
ANCHOR_INPUTS = ("uniform", "forget_pixels", "mixed")
ANCHOR_LOSSES = ("mse", "kl")


def _predict(model, x):
    from bench.nn.training import predict_logits

    return predict_logits(model, x).argmax(1)


def _loss(model, bx, by, second, mode, forget_loss="neg_ce", mask=False, mean_active=False):
    """The L2UL loss of one step (the paper's objective; the code's ``main_unlearn_*.py``), without the
    importance term. ``second`` is the
    step's second batch (x, y), weighted n/(n_f+n) against the forget term's n_f/(n_f+n): the
    adversarial batch, or the remaining-data batch of ``l2ul-oracle``; None for ``l2ul-naive``.

    In misclassify mode the forget term is the paper's -CE(f(x_f), y_f) (``forget_loss="neg_ce"``)
    or the bounded unlikelihood loss -log(1 - p_y) (``"unlikelihood"``, Welleck et al. 2020); with
    ``mask`` the instances this forward pass already misclassifies contribute 0, and the mean is
    over the whole forget batch, or with ``mean_active`` over the instances still correct (so the
    push on the last ones does not fade as the others flip). In relabel mode it is +CE towards
    the new labels.
    """
    import torch
    import torch.nn.functional as F

    logits = model(bx)
    if mode == "misclassify":
        if forget_loss == "unlikelihood":
            others = logits.masked_fill(F.one_hot(by, logits.shape[1]).bool(), float("-inf"))
            per = torch.logsumexp(logits, 1) - torch.logsumexp(others, 1)  # -log(1 - p_y) >= 0
        else:
            per = -F.cross_entropy(logits, by, reduction="none")
        if mask:
            active = (logits.detach().argmax(1) == by).to(per.dtype)
            per = per * active
            term = per.sum() / active.sum().clamp(min=1) if mean_active else per.mean()
        else:
            term = per.mean()
    else:
        term = F.cross_entropy(logits, by)
    if second is None:
        return term
    xa, ya = second
    nf, na = len(by), len(ya)
    return (nf / (nf + na)) * term + (na / (nf + na)) * F.cross_entropy(model(xa), ya)


class _RandomInputAnchor:
    """The function-space anchor (a DEVIATION, off unless ``anchor_weight`` > 0): a distance
    between the outputs of the model being updated and of the model as given, on ``shape[0]``
    random inputs drawn afresh at every step (logit matching, Ba & Caruana, NeurIPS 2014, and
    distillation, Hinton, Vinyals & Dean 2015, here on random inputs instead of data, so that
    the method still uses only the model and the forget set). It keeps the function the same
    away from the forget instances, where L2UL's adversarial examples and weight importance give
    no signal.

    ``inputs``: ``"uniform"`` draws every input uniformly in the input box; ``"forget_pixels"``
    draws every pixel (input feature) independently from the same pixel of a random forget
    instance, i.e. from the product of the forget set's per-pixel marginals (inputs with the
    forget set's pixel statistics but none of its images); ``"mixed"`` draws half of each kind.
    ``loss``: ``"mse"``, the mean squared difference of the logits; ``"kl"``, KL(p_orig || p_new)
    of the softmax outputs, averaged over the inputs (it leaves logit shifts that do not change
    the probabilities free). Both models run in eval mode on these inputs, so BatchNorm
    statistics never see them and the two outputs are computed alike."""

    def __init__(self, model, bounds, shape: tuple, generator, inputs: str = "uniform", loss: str = "mse",
                 forget_x=None) -> None:
        import copy

        if inputs not in ANCHOR_INPUTS or loss not in ANCHOR_LOSSES:
            raise ValueError(f"anchor inputs {inputs!r} / loss {loss!r}: expected {ANCHOR_INPUTS} / {ANCHOR_LOSSES}")
        if inputs != "uniform" and (forget_x is None or len(forget_x) == 0):
            raise ValueError(f"anchor inputs {inputs!r} are drawn from the forget instances: give forget_x")
        self.original = copy.deepcopy(model).eval().requires_grad_(False)
        self.bounds, self.shape, self.generator = bounds, tuple(shape), generator  # bounds: tensors, one input's shape
        self.inputs, self.loss = inputs, loss
        self.forget_flat = None if forget_x is None else forget_x.detach().flatten(1)

    def draw(self):
        """One step's anchor inputs (all drawn from ``generator`` on the CPU)."""
        import torch

        lo, hi = self.bounds
        n = self.shape[0]
        n_uniform = {"uniform": n, "forget_pixels": 0, "mixed": n // 2}[self.inputs]
        parts = [_uniform(lo, hi, (n_uniform, *self.shape[1:]), self.generator, like=lo)] if n_uniform else []
        if n_uniform < n:
            flat = self.forget_flat
            pick = torch.randint(len(flat), (n - n_uniform, flat.shape[1]), generator=self.generator).to(flat.device)
            parts.append(flat.gather(0, pick).view(n - n_uniform, *self.shape[1:]).to(lo.dtype))
        return torch.cat(parts)

    def __call__(self, model):
        import torch
        import torch.nn.functional as F

        u = self.draw()
        with torch.no_grad():
            target = self.original(u)
        training = model.training
        model.eval()
        try:
            out = model(u)
        finally:
            model.train(training)
        if self.loss == "kl":
            return F.kl_div(out.log_softmax(1), target.log_softmax(1), log_target=True, reduction="batchmean")
        return ((out - target) ** 2).mean()


def _uniform(lo, hi, shape, generator, like):
    """Inputs drawn uniformly in the box [lo, hi] from ``generator`` (on the CPU, so the draws are
    the same on every device), on ``like``'s device and dtype."""
    import torch

    return lo + (hi - lo) * torch.rand(shape, generator=generator).to(like.device, like.dtype)


def _bounds(request, x):
    """The input domain (lo, hi): ``request.input_bounds`` when the harness gives it, else the
    range of the forget inputs."""
    import torch

    bounds = getattr(request, "input_bounds", None)
    if bounds is not None:
        lo, hi = bounds
        return torch.as_tensor(lo, dtype=x.dtype, device=x.device), torch.as_tensor(hi, dtype=x.dtype, device=x.device)
    return x.min().detach(), x.max().detach()


def random_other_labels(y, num_classes: int, generator):
    """A uniformly random label different from each ``y`` (CPU tensors).

    Fixes the released code's fallback (``utils.py`` ``adv_attack``: a random target equal to the label became
    ``C//2``, over-representing that class and equal to the label when y = C//2): a draw equal to
    the label is shifted by a uniform offset in 1..C-1, mod C, so the target is uniform over the
    C-1 other classes.
    """
    import torch

    if num_classes < 2:
        raise ValueError("random_other_labels needs at least two classes")
    t = torch.randint(num_classes, y.shape, generator=generator)
    shift = torch.randint(1, num_classes, y.shape, generator=generator)
    return torch.where(t == y, (t + shift) % num_classes, t)


def _project(d, eps):
    """Each row of ``d`` scaled onto the L2 ball of radius eps (unchanged inside it)."""
    norms = d.flatten(1).norm(dim=1).clamp_min(1e-12)
    return d * (eps / norms).clamp(max=1.0).view(-1, *[1] * (d.dim() - 1))


def _clamp(x, lo, hi):
    import torch

    return torch.maximum(torch.minimum(x, hi), lo)


def l2_pgd_targeted(model, x, target, eps: float, step: float, steps: int, lo, hi, generator):
    """Targeted L2 projected gradient descent (Madry et al. 2018), after advertorch's
    ``L2PGDAttack(targeted=True, rand_init=True)`` (summed CE minimised towards ``target``).

    Random start: u ~ U[lo, hi] (drawn from ``generator``), δ = u − x shrunk into the eps ball; then
    ``steps`` times: δ ← δ − step·∇/‖∇‖₂, clamp x+δ to [lo, hi], project δ onto ‖δ‖₂ ≤ eps. The
    model is put in eval mode and its parameters receive no gradient. Returns x+δ, detached.

    ``eps`` and ``step`` are in units of the input box, per feature (δ/(hi − lo)): the L2UL code
    attacks pixels in [0, 1] with the normalisation inside its model, and on normalised images
    (box = the image of [0, 1]) these are its pixel units; on a [0, 1] box (digits, Purchase) the
    inputs' own. A fix of ours: until 2026-12-06 they were in normalised units, so CIFAR-10's eps 4
    was about 1 in pixels, 4x weaker than the code's (found in review).
    """
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    shape = (-1, *[1] * (x.dim() - 1))
    width = torch.broadcast_to(hi - lo, x.shape[1:]).clamp_min(1e-12)  # box units per input unit

    def project(d):  # onto the eps ball in box units
        return _project(d / width, eps) * width

    d = project(_clamp(_uniform(lo, hi, x.shape, generator, like=x), lo, hi) - x)
    for _ in range(steps):
        d.requires_grad_(True)
        loss = F.cross_entropy(model(x + d), target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, d)
        g = grad * width  # the gradient with respect to δ in box units
        d = d.detach() - step * width * g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape)
        d = project(_clamp(x + d, lo, hi) - x)
    model.train(was_training)
    return _clamp(x + d, lo, hi).detach()


def mas_importance(model, x, batch_size: int) -> dict:
    """MAS importance (Aljundi et al., ECCV 2018) of every parameter on ``x``, as the L2UL code
    computes it (utils.py): on a copy of the model in train mode, per batch of B inputs the
    loss is the mean over the batch of the L2 norm of the logits, and Ω_p += |∇_p|·B; finally
    Ω_p /= N. Fix of the code (``utils.py``): the copy's gradients are cleared before every batch (the code
    cleared the original model's, so they accumulated across batches)."""
    import copy

    import torch

    m = copy.deepcopy(model)
    m.train()
    acc = {n: torch.zeros_like(q) for n, q in m.named_parameters() if q.requires_grad}
    for xb in x.split(batch_size):
        m.zero_grad(set_to_none=True)
        m(xb).norm(p=2, dim=1).mean().backward()
        for n, q in m.named_parameters():
            if q.grad is not None:
                acc[n] += q.grad.abs() * len(xb)
    return {n: a / max(len(x), 1) for n, a in acc.items()}


def invert_importance(omega: dict) -> dict:
    """Ω' = 1 − (Ω − min Ω)/(max Ω − min Ω) per tensor. Fix of the code (``main_unlearn_*.py``, which
    divides by zero for a constant tensor): the range is clamped to
    1e-12, so a constant tensor gets Ω' = 1 (anchored) instead of NaN."""
    out = {}
    for n, a in omega.items():
        lo, hi = a.min(), a.max()
        out[n] = 1 - (a - lo) / (hi - lo).clamp_min(1e-12)
    return out
