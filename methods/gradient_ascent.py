"""Gradient ascent (GA / NegGrad) and NegGrad+.

``variant="ga"``: minimise -CE(theta; D_f) by SGD over the forget set, as in
OPTML-Group/Unlearn-Sparse ``unlearn/GA.py`` (Thudi et al., EuroS&P 2022; Jia et al., NeurIPS
2023): SGD with momentum 0.9 and weight decay 5e-4, ``model.train()``.
The reference defaults (5 epochs, lr 1e-4) are tuned for class-wise forgetting of 4,500
CIFAR-10 images; on the small built-in datasets that is a handful of steps and forgets
nothing (measured on digits/mlp, class:3: forget accuracy 0.99 at lr 1e-3). GA also diverges
easily: at lr 1e-2 without a stop it drives retain accuracy to 0.11. Our defaults are
therefore lr 5e-3 with an early stop on forget accuracy (GA diverges easily): ``stop_forget_acc=0`` stops as
soon as the forget-set accuracy, checked after every step, is at or below it (every forget
point misclassified); -1 turns it off. The whole forget set is evaluated only when the step's own
batch allows the accuracy to be that low (a choice of cost, the same stopping step: until
2026-12-07 every step evaluated it, quadratic in |D_f|, 34.5 s against 1.7 s on 2,000 points). Measured on digits/mlp over seeds 0-2: class:3 ->
forget 0.000, retain 0.943, avg_gap 0.026 (the other classes' test accuracy 4.6 / 1.5 / 2.2 points
below the original's: seed 0 loses more than the 3 points the docs hold the class-request defaults
of other methods to; re-measured 2026-12-07); random:10% -> avg_gap 0.008. Tune lr on the grid
[1e-5, 1e-1] as the authors advise (Unlearn-Sparse issue #5). The batch size defaults to 64
rather than the reference's 256 (a choice, as for ``ft``: the built-in forget sets are 144-400
points, one or two batches of 256); it is a parameter.

``variant="neggrad+"`` (Kurmanji et al., NeurIPS 2023, "Towards Unbounded Machine Unlearning";
meghdadk/SCRUB ``small_scale_unlearning.ipynb``, ``run_neggrad_epoch``): iterate over D_r,
cycling D_f, minimising alpha*[CE(x_r) + (wd/2)*||theta - theta_o||^2] - (1-alpha)*CE(x_f), with
alpha = 0.95, 10 epochs, SGD lr 0.01 and the optimizer's own weight decay 0. One epoch is one
pass over D_r. It uses the retain set, and declares it only when selected. It shares the
parameters above (``stop_forget_acc`` applies to ``ga`` only): with lr 5e-3 and 5 epochs on
digits/mlp, class:3 -> forget 0.000, retain 0.966, avg_gap 0.018 (seeds 0-2), whereas the
reference's lr 1e-2 with 10 epochs collapses the model (retain 0.111) on class:3. ``train_mode=False``
reproduces the reference loops' ``model.eval()`` during training (frozen BatchNorm statistics).
"""

from __future__ import annotations

from bench.core import console, space
from bench.core.method import Method
from bench.core.params import (
    refuse_unused,
    require_bool,
    require_choice,
    require_int,
    require_range,
    require_sgd,
    require_stop_accuracy,
)

VARIANTS = ("ga", "neggrad+")


class GradientAscent(Method):
    name = "ga"
    description = "Gradient ascent on the forget set (NegGrad); variant=neggrad+ adds retain-set descent (Kurmanji et al.)."
    requires = frozenset({"forget", "retain"})
    default_params = {
        "variant": "ga",
        "epochs": 5,
        "lr": 0.005,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 64,
        "alpha": 0.95,
        "stop_forget_acc": 0.0,
        "train_mode": True,
    }
    search_space = {"lr": space.loguniform(1e-5, 1e-1), "epochs": space.randint(1, 11)}

    def check_params(self, params):
        require_choice(params, "variant", VARIANTS)
        require_int(params, "epochs", 1)
        require_int(params, "batch_size", 1)
        require_sgd(params)
        require_range(params, "alpha", 0.0, 1.0)
        refuse_unused(params, self, "alpha", params["variant"] == "neggrad+",
                      f"with variant={params['variant']} (alpha weighs NegGrad+'s retain loss): drop it, or set "
                      "variant=neggrad+")
        require_stop_accuracy(params)
        refuse_unused(params, self, "stop_forget_acc", params["variant"] == "ga",
                      f"with variant={params['variant']} (NegGrad+ runs every epoch, with no early stop): drop it, or "
                      "set variant=ga")
        require_bool(params, "train_mode")

    def requires_for(self, params):
        return frozenset({"forget", "retain"}) if params["variant"] == "neggrad+" else frozenset({"forget"})

    def unlearn(self, model, request, params, ctx):
        import torch

        if params["variant"] == "neggrad+":
            return neggrad_plus(model, request, params, ctx)
        from bench.nn.training import batches, make_optimizer

        x, y = request.forget_x, request.forget_y
        g = torch.Generator().manual_seed(ctx.seed)
        opt = make_optimizer(model.parameters(), "sgd", params["lr"], params["momentum"], params["weight_decay"])
        stop = params["stop_forget_acc"]
        for _ in console.epochs(params["epochs"]):  # the trial's progress
            for idx in batches(len(y), params["batch_size"], g, x.device):
                model.train(params["train_mode"])
                # .to: the data may sit in host memory where it is larger than the GPU's share (streamed)
                loss = -torch.nn.functional.cross_entropy(model(x[idx].to(ctx.device)), y[idx].to(ctx.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if stop >= 0 and _at_or_below(model, x, y, idx, stop):
                    return model
            if ctx.report is not None:
                ctx.report(model)
        return model


def _accuracy(model, x, y) -> float:
    from bench.nn.training import accuracy

    return accuracy(model, x, y)


def _at_or_below(model, x, y, idx, stop: float) -> bool:
    """Whether the forget-set accuracy is at or below ``stop``, the whole set evaluated only when the
    step's own batch allows it: its points still classified right after the step, more than
    ``stop`` x |D_f|, already keep the accuracy above ``stop``. The whole set after every step cost
    |D_f|/batch forward passes of |D_f| per epoch (quadratic: 34.5 s against 1.7 s without the stop
    on 2,000 forget points; scale audit, 2026-12-07)."""
    batch_right = _accuracy(model, x[idx], y[idx]) * len(idx)
    if batch_right > stop * len(y) + 0.5:  # (a count: the margin only absorbs the float of the mean)
        return False
    return _accuracy(model, x, y) <= stop


def neggrad_plus(model, request, params, ctx):
    """NegGrad+ (see the module docstring): the ``ga`` method's ``variant="neggrad+"`` and the
    ``neggrad+`` method (methods/neggrad_plus.py). Uses ``alpha``, ``weight_decay`` (the pull towards the
    original), ``lr``, ``momentum``, ``epochs``, ``batch_size`` and ``train_mode`` of ``params``."""
    import itertools

    import torch
    import torch.nn.functional as F

    from bench.nn.training import batches, make_optimizer

    alpha, wd = params["alpha"], params["weight_decay"]
    anchor = [p.detach().clone() for p in model.parameters()]
    g = torch.Generator().manual_seed(ctx.seed)
    opt = make_optimizer(model.parameters(), "sgd", params["lr"], params["momentum"], 0.0)
    xf, yf = request.forget_x, request.forget_y
    for _ in console.epochs(params["epochs"]):  # the trial's progress
        forget_batches = list(batches(len(yf), params["batch_size"], g, xf.device))
        forget_cycle = itertools.cycle(forget_batches)
        for idx in batches(len(request.retain_y), params["batch_size"], g, xf.device):
            model.train(params["train_mode"])
            drift = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
            retain_loss = F.cross_entropy(model(request.retain_x[idx].to(ctx.device)), request.retain_y[idx].to(ctx.device)) \
                + 0.5 * wd * drift
            loss = alpha * retain_loss
            if forget_batches:  # an empty forget set leaves only the retain term
                fidx = next(forget_cycle)
                loss = loss - (1 - alpha) * F.cross_entropy(model(xf[fidx].to(ctx.device)), yf[fidx].to(ctx.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if ctx.report is not None:
            ctx.report(model)
    return model
