"""Bad Teacher (Chundawat, Tarun, Mandal and Kankanhalli, "Can Bad Teaching Induce Forgetting?
Unlearning in Deep Networks Using an Incompetent Teacher", AAAI 2023): the student, a copy of the
original, distils from a competent teacher (the original) on retained data and from an
incompetent one (a randomly initialised model of the same architecture) on the forget set.

Reference code: vikram2000b/bad-teaching-unlearning ``unlearn.py`` (``UnlearnerLoss``,
``unlearning_step``, ``blindspot_unlearner``) with ``dataset.py::UnLearningData`` (the forget set
labelled 1 and a retain subset labelled 0, shuffled together) and the README's usage (the retain
subset is a random 30 % of the retain set).

Algorithm. Build D_u = D_f ∪ S, with S a random ``retain_fraction`` (30 %) of D_r, each point
flagged forget or retain. For each of ``epochs`` passes over shuffled D_u in batches of
``batch_size``: target = softmax(t(x)/τ) where t is the incompetent teacher for forget points and
the original for retain points (both ``eval()``, no gradients); loss = KL(target ‖ softmax(s(x)/τ))
with reduction ``batchmean``; one Adam step (no weight decay, as the reference). The student trains
in ``train()`` mode.

Defaults (``unlearn.py`` and the README): τ 1, Adam lr 1e-4, 1 epoch, batch 256, retain fraction
0.3. Search space: lr log-uniform over [1e-5, 1e-2] and epochs in 1..10 (the paper's knobs).

Deviations:

- fix: the KL uses ``reduction="batchmean"`` (the true KL divergence averaged over the batch); the
  reference calls ``F.kl_div`` with its default ``reduction="mean"``, which also divides by the
  number of classes K (PyTorch documents ``"mean"`` as not the KL divergence). Under Adam the
  factor K barely changes a step (Adam is invariant to a constant loss scale up to its ε).
- choice: the incompetent teacher is ``ctx.new_model()``, a fresh initialisation seeded by the
  trial's seed (the reference builds an untrained model from the global random state); the retain
  subset and the shuffles come from one ``torch.Generator`` seeded by ``ctx.seed``; a final batch
  of one example is skipped, as everywhere in the harness.
- choice: on ``digits`` the published 1 epoch at lr 1e-4 makes 3 Adam steps (D_u holds about 530
  points) and forgets nothing, so ``dataset_params`` sets lr 1e-3 and 10 epochs for digits
  (measured; see docs/methods.md).
- choice: no data augmentation during unlearning; the method does not read the training recipe.

Continual requests work (the competent teacher is the model it receives).
"""

from __future__ import annotations

from bench.core import console, space
from bench.core.method import Method, check_params
from bench.core.params import require_int, require_positive, require_range


#: The smallest ``temperature`` accepted (the reference uses 1; 1e-30 made every Adam update 0).
MIN_TEMPERATURE = 1e-3


def teacher_kl(student_logits, target_probs, temperature: float):
    """KL(target ‖ softmax(student/τ)) averaged over the batch (``batchmean``)."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(student_logits / temperature, dim=1), target_probs, reduction="batchmean")


class BadTeacher(Method):
    name = "bad-teacher"
    description = "Bad Teacher: distil from a random teacher on D_f and the original on part of D_r (Chundawat et al., AAAI 2023)."
    requires = frozenset({"forget", "retain"})
    default_params = {"lr": 1e-4, "epochs": 1, "batch_size": 256, "temperature": 1.0, "retain_fraction": 0.3}
    search_space = {"lr": space.loguniform(1e-5, 1e-2), "epochs": space.randint(1, 11)}
    dataset_params = {"digits": {"lr": 1e-3, "epochs": 10}}  # measured: see the module docstring

    def check_params(self, params):
        require_positive(params, "lr", "temperature")
        if params["temperature"] < MIN_TEMPERATURE:  # gradients ~1/tau overflow Adam's float32 second moment
            raise ValueError(f"temperature={params['temperature']!r}: expected a number >= {MIN_TEMPERATURE} (below it "
                             "the distillation gradients overflow float32 and the optimiser stops moving: 1e-30 "
                             "returned the original model)")
        require_int(params, "epochs", 1)
        require_int(params, "batch_size", 1)
        require_range(params, "retain_fraction", 0.0, 1.0)

    def unlearn(self, model, request, params, ctx):
        check_params(self.name, self, params)  # direct callers (the harness checked at plan time)
        import copy

        import torch
        import torch.nn.functional as F

        from bench.nn.training import batches, make_optimizer, model_device

        xf, xr = request.forget_x, request.retain_x
        device = model_device(model, xr.device)
        g = torch.Generator().manual_seed(ctx.seed)
        nr = len(request.retain_y)
        keep = torch.randperm(nr, generator=g)[: int(round(params["retain_fraction"] * nr))].sort().values
        x = torch.cat([xf.to(device), xr[keep.to(xr.device)].to(device)])
        is_forget = torch.cat([torch.ones(len(xf), dtype=torch.bool), torch.zeros(len(keep), dtype=torch.bool)])
        is_forget = is_forget.to(device)

        competent = copy.deepcopy(model).eval()
        incompetent = ctx.new_model().to(device).eval()
        opt = make_optimizer(model.parameters(), "adam", params["lr"], 0.0, 0.0)
        tau = params["temperature"]
        for _ in console.epochs(params["epochs"]):  # the trial's progress
            for idx in batches(len(x), int(params["batch_size"]), g, "cpu"):
                idx = idx.to(device)
                xb, fb = x[idx], is_forget[idx].unsqueeze(1)
                with torch.no_grad():
                    good = F.softmax(competent(xb) / tau, dim=1)
                    bad = F.softmax(incompetent(xb) / tau, dim=1)
                    target = torch.where(fb, bad, good)
                model.train()
                loss = teacher_kl(model(xb), target, tau)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if ctx.report is not None:
                ctx.report(model)
        return model
