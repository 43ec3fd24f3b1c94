"""Random Labels (RL): fine-tune on the forget set with random labels, then on the retain set.

Golatkar et al. (CVPR 2020) / Fan et al. (SalUn, ICLR 2024) baseline, as implemented in
OPTML-Group/Unlearn-Saliency ``Classification/unlearn/RL.py`` (CIFAR-10/SVHN branch; Fan et al.,
"SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency", ICLR 2024). Every epoch makes one pass over the forget set D_f whose
labels are drawn afresh for every batch with ``randint(0, K)`` (a draw may equal the true
label), then one pass over the retain set D_r with its true labels; cross-entropy, SGD with
momentum 0.9 and weight decay 5e-4 (``unlearn/impl.py``; its MultiStepLR milestones 91,136
never fire within 10 epochs, so the learning rate is constant), ``model.train()``.

Defaults: 10 epochs as in the reference; lr 0.01 from the reference's tuning range
[1e-4, 1e-1]. Deviation: batch size 64 rather than 256 because the built-in datasets are small
(the digits forget set of one class is about 145 points, i.e. one batch of 256). The
CIFAR-100/TinyImageNet branch (labels drawn once per epoch, D_f and D_r shuffled together) is
``variant="joint"``.

All randomness (batch order and random labels) comes from a ``torch.Generator`` seeded with
``ctx.seed``, so a trial is reproducible.
"""

from __future__ import annotations

import bench
from bench.core import space
from bench.core.params import require_non_negative, require_positive, require_range

VARIANTS = ("alternate", "joint")


class RandomLabels(bench.Method):
    name = "random-labels"
    description = "Random Labels (RL): train on the forget set with random labels, then on the retain set (Golatkar et al.; SalUn baseline)."
    requires = frozenset({"forget", "retain"})
    default_params = {
        "variant": "alternate",
        "epochs": 10,
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 64,
    }
    search_space = {"lr": space.loguniform(1e-4, 1e-1), "epochs": space.randint(1, 21)}

    def check_params(self, params):
        """Refuse a bad value at plan time, before any data is loaded or model trained (a
        ``ValueError`` naming the parameter, its value and what is expected)."""
        if params["variant"] not in VARIANTS:
            raise ValueError(f"variant={params['variant']!r}: unknown variant; expected one of {', '.join(VARIANTS)}")
        require_positive(params, "epochs", "batch_size", integer=True)
        require_positive(params, "lr")
        require_range(params, "momentum", 0.0, 1.0, high_open=True)
        require_non_negative(params, "weight_decay")

    def unlearn(self, model, request, params, ctx):
        import torch
        import torch.nn.functional as F

        from bench.core.method import check_params
        from bench.nn.training import batches, make_optimizer

        check_params(self.name, self, params)  # when called directly (the harness checked at plan time)
        variant = params["variant"]
        k = request.num_classes
        bs = int(params["batch_size"])
        xf, yf, xr, yr = request.forget_x, request.forget_y, request.retain_x, request.retain_y
        device = xf.device
        g = torch.Generator().manual_seed(ctx.seed)
        opt = make_optimizer(model.parameters(), "sgd", params["lr"], params["momentum"], params["weight_decay"])

        def step(x, y):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        model.train()
        for _ in range(int(params["epochs"])):
            if variant == "alternate":
                for idx in batches(len(yf), bs, g, device):
                    labels = torch.randint(0, k, (len(idx),), generator=g).to(device)
                    step(xf[idx], labels)
                for idx in batches(len(yr), bs, g, device):
                    step(xr[idx], yr[idx])
            else:
                x = torch.cat([xf, xr])
                y = torch.cat([torch.randint(0, k, (len(yf),), generator=g).to(device), yr])
                for idx in batches(len(y), bs, g, device):
                    step(x[idx], y[idx])
        return model
