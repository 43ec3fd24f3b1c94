"""Boundary Unlearning: Boundary Shrink (``bs``) and Boundary Expanding (``be``).

Chen et al., "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the
Decision Boundary", CVPR 2023. Implemented after the versions in OPTML-Group/Unlearn-Saliency
(``Classification/unlearn/boundary_sh.py``, ``Classification/unlearn/boundary_ex.py``, optimiser and
loop from ``Classification/unlearn/impl.py``, defaults from ``Classification/arg_parser.py``), the
suite whose SalUn table (Fan et al., ICLR 2024) runs both on random-data requests too. Both use only
the forget data (``requires = {"forget"}``) and work on class, random and index requests alike.

``bs`` (Boundary Shrink): each forget input x gets one FGSM step on the original (frozen, eval mode)
model, x' = clip(x + ε·sign(∇_x CE(f(x), y))), and is relabelled with the class f(x') predicts, its
"nearest but incorrect" class; then the model is fine-tuned with CE on the clean forget inputs and
those labels. ``be`` (Boundary Expanding): the classifier (the final linear layer) gets one extra
"shadow" output, the model is fine-tuned with CE on the forget inputs all labelled as the shadow
class, and the shadow output is pruned, so the returned model has ``num_classes`` outputs again.

Parameters and their sources (Unlearn-Saliency ``arg_parser.py`` and ``impl.py``): plain SGD with
``lr`` 0.01 (``--unlearn_lr``), ``momentum`` 0.9, ``weight_decay`` 5e-4, ``epochs`` 10
(``--unlearn_epochs``; the MultiStepLR milestones 91 and 136 never act within them, so the lr is
constant), ``batch_size`` 256 (``--batch_size``, the forget loader's), ``model.train()`` during the
fine-tuning. The authors' own release (``boundary_unlearning.py``) used lr 1e-5 over the same 10 epochs, hence the wide ``lr``
search space (loguniform 1e-5..1e-1, with ``epochs`` randint 1..20 and, for ``bs``, ``bound`` uniform
0.01..0.5). ``bs`` adds ``bound`` 0.1 (hard-coded in ``boundary_sh.py``, "hard coding in the paper")
and ``neighbour``; ``be`` adds ``train_layers``; both have ``stop_forget_acc``.

Deviations, each a fix or a choice:

- choice, the FGSM bound's scale: the code's 0.1 is on pixels in [0, 1] (its models normalise inside);
  here the step is bound·(hi − lo) per input feature, with (lo, hi) the request's ``input_bounds`` (the
  dataset's valid input box; the range of the forget inputs without it), and x' is clipped to that box.
  On digits (box [0, 1]) that is exactly the code's 0.1; on normalised CIFAR it is 0.1 of the pixel
  range in every channel, as in the code.
- choice, no 8-bit rounding of x': the code rounds x' to multiples of 1/255 (``discretize``), which
  only means something for 8-bit images in [0, 1]; the harness's inputs may be normalised or have 17
  levels (digits).
- choice, the adversarial labels are computed once, before the fine-tuning: the code recomputes them
  per batch, every epoch, from a frozen eval-mode copy of the original, which gives the same labels.
- fix, ``neighbour="wrong"`` (default): the label is the highest-scoring class of f(x') other than the
  sample's own (the forget class on a class request), the paper's "nearest but incorrect" class. The
  code takes f(x')'s plain argmax (``neighbour="adv"``), which keeps the true label wherever the
  one-step attack fails (55% of digits class 3 on the MLP), so fine-tuning re-teaches those points:
  forget accuracy 0.73 after the 10 epochs at lr 0.01.
- choice, ``stop_forget_acc`` 0 (default; -1 runs every epoch, as the code): the fine-tuning stops after
  the first step at which the forget accuracy (true labels; ``be``: on the first ``num_classes``
  outputs, i.e. after pruning) is at or below it, checked after every step, as ``ga`` does. Fine-tuning
  on the forget data alone keeps moving the retained classes' boundaries once the forget points have
  moved: on digits class 3 (MLP, 5 originals), ``bs`` with the code's 10 epochs loses 1.9-17 points of
  test accuracy on the other classes, with the stop (2-3 steps) 0.
- choice, the shadow output's initial weights are drawn as ``nn.Linear`` draws them (the code's
  ``expand_model``: uniform in ±1/sqrt(in_features)), from ``ctx.seed``.
- fix, ``be`` prunes the shadow output after fine-tuning, as the paper and the authors' release do;
  Unlearn-Saliency's ``boundary_ex.py`` returns the widened model, with ``num_classes + 1`` outputs.
- choice, ``be`` finds the classifier generically: the module ``get_classifier()`` returns (timm) when
  it is an ``nn.Linear`` with ``num_classes`` outputs, else the last ``nn.Linear`` with ``num_classes``
  outputs; the code took the last ``nn.Linear`` of any width. An architecture without such a layer is
  refused with a ``BenchError``.
- choice, ``be``'s ``train_layers``: ``"all"`` (default, the code's: the whole widened model) or
  ``"classifier"`` (only the widened linear layer; the rest of the network stays in eval mode and
  unchanged, BatchNorm statistics included).
- choice, ``dataset_params`` on digits, measured on the MLP (5 originals, seeds 0-4; class:3, and
  random:10% on 3): ``bs`` lr 1e-3 and ``be`` ``train_layers="classifier"``. Fine-tuning on the forget
  data alone moves the retained classes too. ``bs`` at the code's lr 0.01 forgets class 3 within 2-3
  steps and the stop keeps the other classes' test accuracy (0 points lost), but on random:10% the stop
  never fires (a random forget set is not all misclassified before the model breaks) and the 10
  full-batch steps take test accuracy from 0.97 to 0.46-0.57; at lr 1e-3, class 3 is forgotten as well
  (0 points lost) and random:10% keeps test accuracy at 0.93-0.97. ``be`` on the whole MLP drags the
  neighbour classes (8, 9) into the shadow class: 7.7-11 points of test accuracy on the other classes
  lost by the time class 3 is forgotten (2.8-3.4 points at lr 1e-3, the forget accuracy still
  0.01-0.09), and test accuracy 0.61-0.73 on random:10%; the classifier alone forgets class
  3 in 5 steps and loses nothing, and leaves random:10% at the original's accuracy.

Both methods call ``ctx.report`` once per epoch (``be`` with a pruned copy) and take continual
requests (``be`` returns the architecture it was given). Their own metrics: ``bs_attack_success``
(the fraction of forget points whose FGSM example the original misclassifies), ``bs_kept_true_label``
(the fraction fine-tuned towards their own label: 0 with ``neighbour="wrong"``),
``be_shadow_fraction`` (the fraction the widened model puts in the shadow class before pruning), and
``{bs,be}_steps``, ``_epochs``, ``_stopped`` (whether the early stop ended the fine-tuning).

Measured with these defaults (``bench run --executor local -m bs,be,retrain,ft,ga -s 0-2 -f class:3
-f random:10%``, digits, MLP, mean over seeds 0-2): class:3, ``bs`` forget 0.000, test accuracy on the
other classes 0.973 (original 0.968), avg_gap 0.006, 9 steps; ``be`` forget 0.000, other classes
0.972, avg_gap 0.002, 5 steps. random:10%: ``bs`` forget 0.949, test 0.945 (retrain 0.970 / 0.971),
avg_gap 0.029; ``be`` forget 0.984, test 0.967, avg_gap 0.012. On class:3 both meet forget accuracy
<= 0.05 with the other classes within 3 points for all 10 originals of seeds 0-9 (class requests are
deterministic per seed). On the small CNN (seed 0): class:3 both forget 0.000 (avg_gap 0.006 / 0.003);
random:10% ``be`` avg_gap 0.014, ``bs`` test accuracy 0.983 -> 0.864 (avg_gap 0.110).
"""

from __future__ import annotations

from bench.core import console, space
from bench.core.method import Method, check_params
from bench.core.params import (
    require_choice,
    require_int,
    require_range,
    require_sgd,
    require_stop_accuracy,
)

NEIGHBOURS = ("wrong", "adv")
TRAIN_LAYERS = ("all", "classifier")

_COMMON = {"epochs": 10, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 256, "stop_forget_acc": 0.0}


def _nothing_ran(prefix: str) -> dict:
    return {f"{prefix}_steps": 0.0, f"{prefix}_epochs": 0.0, f"{prefix}_stopped": 1.0}


_SPACE = {"lr": space.loguniform(1e-5, 1e-1), "epochs": space.randint(1, 21)}


class _Boundary(Method):
    requires = frozenset({"forget"})

    def check_params(self, params):
        require_int(params, "epochs", 1)
        require_int(params, "batch_size", 1)
        require_sgd(params)
        require_stop_accuracy(params)


class BoundaryShrink(_Boundary):
    """``bs``: relabel each forget point with the class its FGSM example lands in, then fine-tune."""

    name = "bs"
    description = ("Boundary Shrink (Chen et al., CVPR'23): relabel forget points with their FGSM neighbour class, "
                   "fine-tune on them.")
    default_params = {**_COMMON, "bound": 0.1, "neighbour": "wrong"}
    search_space = {**_SPACE, "bound": space.uniform(0.01, 0.5)}
    dataset_params = {"digits": {"lr": 0.001}}

    def check_params(self, params):
        super().check_params(params)
        require_range(params, "bound", 0.0, 1.0, low_open=True)
        require_choice(params, "neighbour", NEIGHBOURS)

    def unlearn(self, model, request, params, ctx):
        check_params(self.name, self, dict(params))  # direct callers (the harness checked at plan time)
        xf, yf = request.forget_x, request.forget_y
        if yf is None or len(yf) == 0:
            ctx.metrics.update({"bs_attack_success": 1.0, "bs_kept_true_label": 0.0, **_nothing_ran("bs")})
            return model
        exclude = yf
        if request.kind == "class" and request.forget_class is not None:
            exclude = yf.new_full(yf.shape, int(request.forget_class))
        labels, success = neighbour_labels(model, xf, yf, request, float(params["bound"]), params["neighbour"],
                                           exclude, int(params["batch_size"]))
        ctx.metrics["bs_attack_success"] = success
        ctx.metrics["bs_kept_true_label"] = float((labels == yf).float().mean())
        fine_tune(model, xf, labels, yf, params, ctx.seed, ctx.report, ctx.metrics, "bs")
        model.eval()
        return model


class BoundaryExpanding(_Boundary):
    """``be``: widen the classifier by a shadow class, fine-tune the forget points into it, prune it."""

    name = "be"
    description = ("Boundary Expanding (Chen et al., CVPR'23): add a shadow class, fine-tune the forget points into "
                   "it, prune it.")
    default_params = {**_COMMON, "train_layers": "all"}
    search_space = dict(_SPACE)
    dataset_params = {"digits": {"train_layers": "classifier"}}

    def check_params(self, params):
        super().check_params(params)
        require_choice(params, "train_layers", TRAIN_LAYERS)

    def check_setting(self, params, setting):
        find_classifier(setting.network, setting.num_classes, self.name)  # the layer the shadow class widens

    def unlearn(self, model, request, params, ctx):
        import torch

        from bench.nn.training import predict_logits

        check_params(self.name, self, dict(params))
        C = int(request.num_classes)
        name, head = find_classifier(model, C, self.name)  # refuses the architecture before any work
        xf = request.forget_x
        if xf is None or len(xf) == 0:
            ctx.metrics.update({"be_shadow_fraction": 1.0, **_nothing_ran("be")})
            return model
        g = torch.Generator().manual_seed(int(ctx.seed))
        wide = widen_linear(head, g)
        model = _replace(model, name, wide)
        only_head = params["train_layers"] == "classifier"
        shadow = torch.full((len(xf),), C, dtype=torch.long, device=xf.device)
        on_epoch = None
        if ctx.report is not None:
            report = ctx.report

            def on_epoch(m):
                report(prune_shadow(m, name, C, copy=True))

        fine_tune(model, xf, shadow, request.forget_y, params, ctx.seed, on_epoch, ctx.metrics, "be", classes=C,
                  parameters=list(wide.parameters()) if only_head else None, train_mode=not only_head)
        ctx.metrics["be_shadow_fraction"] = float((predict_logits(model, xf).argmax(1) == C).float().mean())
        model = prune_shadow(model, name, C)
        model.eval()
        return model


# -- building blocks ---------------------------------------------------------------------------


def fine_tune(model, x, labels, y, params, seed: int, on_epoch, metrics, prefix: str, classes: int | None = None,
              parameters=None, train_mode: bool = True):
    """SGD with cross-entropy on (x, labels), as Unlearn-Saliency's ``impl.py`` loop: ``epochs``
    passes in shuffled batches of ``batch_size`` (seeded by ``seed``), ``model.train()``, a constant
    lr. With ``stop_forget_acc`` >= 0 it stops after the first step at which the accuracy on (x, y),
    on the first ``classes`` outputs (all when None), is at or below it (checked before the first step
    too). Only ``parameters`` (default: all the model's) are updated; the model is in train mode
    during the steps when ``train_mode``, else in eval mode. ``on_epoch(model)`` after each epoch; ``metrics[prefix + "_steps"]``, ``"_epochs"`` and
    ``"_stopped"`` record what ran."""
    import torch
    import torch.nn.functional as F

    from bench.nn.training import batches, make_optimizer, model_device, predict_logits

    stop = float(params["stop_forget_acc"])
    device = model_device(model, x.device)

    def done() -> bool:
        if stop < 0:
            return False
        logits = predict_logits(model, x)
        if classes is not None:
            logits = logits[:, :classes]
        return float((logits.argmax(1).to(y.device) == y).float().mean()) <= stop

    g = torch.Generator().manual_seed(int(seed))
    opt = make_optimizer(model.parameters() if parameters is None else parameters, "sgd", params["lr"], params["momentum"], params["weight_decay"])
    steps = epochs = 0
    stopped = done()
    while not stopped and epochs < int(params["epochs"]):
        epochs += 1
        console.epoch(epochs - 1, int(params["epochs"]))  # the trial's progress (its stop rule may end it early)
        model.train(train_mode)
        for idx in batches(len(labels), int(params["batch_size"]), g, "cpu"):
            xb, yb = x[idx.to(x.device)].to(device), labels[idx.to(labels.device)].to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            if done():
                stopped = True
                break
        if on_epoch is not None:
            on_epoch(model)
    console.epoch(epochs, epochs)  # the loop's end, at the cap or at its stop rule: the bar completes
    metrics.update({f"{prefix}_steps": float(steps), f"{prefix}_epochs": float(epochs), f"{prefix}_stopped": float(stopped)})
    return model


def fgsm(model, x, y, bound: float, lo, hi, batch_size: int = 256):
    """One untargeted FGSM step (Goodfellow et al., ICLR 2015) on ``model`` in eval mode:
    x' = clip(x + bound·(hi − lo)·sign(∇_x CE(model(x), y)), lo, hi), in batches of ``batch_size``
    on the model's device. The model's parameters receive no gradient and its mode is restored.
    Returns x' (new tensors, detached, on the model's device)."""
    import torch
    import torch.nn.functional as F

    from bench.nn.training import model_device

    from .l2ul_blocks import _clamp

    device = model_device(model, x.device)
    lo, hi = lo.to(device), hi.to(device)
    was_training = model.training
    model.eval()
    eps = bound * (hi - lo)
    out = []
    for i in range(0, len(y), max(int(batch_size), 1)):
        xb = x[i : i + batch_size].to(device).detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(xb), y[i : i + batch_size].to(device))
        (grad,) = torch.autograd.grad(loss, xb)
        out.append(_clamp(xb.detach() + eps * grad.sign(), lo, hi))
    model.train(was_training)
    return torch.cat(out)


def neighbour_labels(model, x, y, request, bound: float, neighbour: str, exclude, batch_size: int = 256):
    """(labels, attack success) for Boundary Shrink: the class ``model`` predicts for each FGSM
    example of (x, y); with ``neighbour="wrong"`` the best class other than ``exclude`` (per point),
    with ``"adv"`` the plain argmax (the code's). Attack success: the fraction of examples whose
    argmax differs from y."""
    from bench.nn.training import predict_logits

    from .l2ul_blocks import _bounds

    lo, hi = _bounds(request, x)
    x_adv = fgsm(model, x, y, bound, lo, hi, batch_size)
    logits = predict_logits(model, x_adv).to(y.device)
    success = float((logits.argmax(1) != y).float().mean())
    if neighbour == "wrong":
        logits = logits.scatter(1, exclude.view(-1, 1), float("-inf"))
    return logits.argmax(1), success


def find_classifier(model, num_classes: int, method: str = "be"):
    """(qualified name, module) of the model's classifier: what ``get_classifier()`` returns (timm)
    when it is an ``nn.Linear`` with ``num_classes`` outputs, else the last ``nn.Linear`` with
    ``num_classes`` outputs; a ``BenchError`` when there is none."""
    from torch import nn

    from bench.core.errors import BenchError

    target = None
    get = getattr(model, "get_classifier", None)
    if callable(get):
        try:
            found = get()
        except Exception:  # noqa: BLE001 - a model whose get_classifier does not apply here
            found = None
        if isinstance(found, nn.Linear) and found.out_features == num_classes:
            target = found
    if target is None:
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.out_features == num_classes:
                target = module
    if target is None:
        raise BenchError(f"Method '{method}' adds a shadow class to the model's final linear layer, but "
                         f"{type(model).__name__} has no nn.Linear with {num_classes} outputs (nor a get_classifier() "
                         f"returning one); use an architecture whose classifier is an nn.Linear (mlp, cnn, timm models "
                         f"such as resnet18).")
    name = next(n for n, m in model.named_modules() if m is target)
    return name, target


def widen_linear(layer, generator):
    """A copy of ``layer`` with one more output; its row (and bias) drawn as ``nn.Linear`` draws
    them, uniform in ±1/sqrt(in_features), from ``generator`` (on the CPU, so every device agrees)."""
    import math

    import torch
    from torch import nn

    w = layer.weight
    wide = nn.Linear(layer.in_features, layer.out_features + 1, bias=layer.bias is not None, device=w.device,
                     dtype=w.dtype)
    bound = 1.0 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
    with torch.no_grad():
        wide.weight[:-1] = w
        row = (torch.rand(layer.in_features, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        wide.weight[-1].copy_(row.to(w.device, w.dtype))
        if layer.bias is not None:
            wide.bias[:-1] = layer.bias
            wide.bias[-1:].copy_(((torch.rand(1, generator=generator, dtype=torch.float64) * 2 - 1) * bound).to(w.device, w.dtype))
    wide.train(layer.training)
    return wide


def prune_shadow(model, name: str, num_classes: int, copy: bool = False):
    """``model`` with the linear layer at ``name`` cut back to its first ``num_classes`` outputs
    (on a deep copy when ``copy``)."""
    import copy as copy_

    import torch
    from torch import nn

    if copy:
        model = copy_.deepcopy(model)
    wide = model.get_submodule(name) if name else model
    w = wide.weight
    narrow = nn.Linear(wide.in_features, num_classes, bias=wide.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        narrow.weight.copy_(w[:num_classes])
        if wide.bias is not None:
            narrow.bias.copy_(wide.bias[:num_classes])
    narrow.train(wide.training)
    return _replace(model, name, narrow)


def _replace(model, name: str, module):
    """``model`` with its submodule ``name`` replaced by ``module`` (``module`` itself for the root)."""
    if not name:
        return module
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)
    return model
