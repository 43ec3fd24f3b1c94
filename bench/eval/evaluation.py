"""Every metric the harness logs, defined once (the names are a public interface).

All evaluation runs the model in ``eval()`` mode under ``torch.inference_mode()``.

Accuracy (``retain_acc``, ``forget_acc``, ``test_acc``): top-1 accuracy on the retain set
D_r, the forget set D_f and the test set D_t (RA/FA/TA of Jia et al., NeurIPS 2023,
"Model Sparsity Can Simplify Machine Unlearning", ``main_forget.py`` of
OPTML-Group/Unlearn-Sparse). For a class request also ``test_forget_class_acc`` (test accuracy
on the forgotten class) and ``test_retain_class_acc`` (on the other classes; after a request of
``seq:class:A,B,...``, on the classes not forgotten so far: until 2026-12-05 the earlier requests'
classes were counted, which a model that never saw them fails, so relearning them scored higher).

References: the same accuracies of the original model (``original_*``) and of the model
retrained from scratch on D_r with the same recipe and seed (``retrain_*``).

Gaps (``retain_gap``, ``forget_gap``, ``test_gap``): |m(unlearned) - m(retrained)|.
``avg_gap``: their mean. This is Avg. Gap of Fan et al., ICLR 2024 ("SalUn", Table 1) over
RA, TA and UA = 1 - FA (|UA_u - UA_r| = |FA_u - FA_r|); SalUn's fourth term, MIA-Efficacy,
is not part of it here because it needs an attack plugin: it is logged separately when one runs.
Lower is better. The reference is the retrained model of the trial's own seed.

``js_to_retrain_forget`` / ``js_to_retrain_test``: mean over D_f (resp. D_t) of the per-example
Jensen-Shannon divergence (natural log, in [0, ln 2]) between the softmax outputs of the
unlearned and the retrained model, JS(p, q) = KL(p||m)/2 + KL(q||m)/2 with m = (p + q)/2
(Chundawat et al., AAAI 2023, "Can Bad Teaching Induce Forgetting?", canonical per-example
form; their released ``JSDiv`` computes KL(m||.) averaged over classes instead, which we do
not reproduce).

Cost: ``unlearn_seconds`` (wall clock of the method call alone, with CUDA synchronised
around it on GPU, as in the RTE of Jia et al.), ``retrain_seconds`` (wall clock of training
the retrained reference, recorded when it was trained), ``speedup_vs_retrain`` =
retrain_seconds / unlearn_seconds, ``peak_memory_mb`` (see ``bench.eval.measure``).

``weight_change``: how far the method moved the weights it was given, ||θ_u − θ_0||₂ / ||θ_0||₂
over the model's floating-point parameters (θ_0: the model passed to ``unlearn``, the original or
the previous request's result; buffers such as batch-norm statistics are not counted), in float64.
A weight-space diagnostic, not a score: Thudi et al. (IEEE EuroS&P 2022, "Unrolling SGD") measure
the L2 distance from the retrained model's weights (their verification error), which needs the
retrained model to share the original's initialisation and training order; the distance from the
input needs neither and is taken relative so that models of different sizes compare. 0 means the
method returned its input unchanged, so its numbers are the original's (``bench run`` warns); not
logged when the returned model has other parameters or buffers than the input (PRUNE's patched
model, whose patches are buffers), nor when only its buffers moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.eval.metrics import ACCURACIES, METRIC_DIRECTIONS  # noqa: F401  (names and directions live there)
from bench.nn.training import predict_logits


@dataclass
class EvalData:
    retain_x: torch.Tensor
    retain_y: torch.Tensor
    forget_x: torch.Tensor
    forget_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    forget_class: int | None = None
    #: a class request: every class forgotten so far (``seq:class:1,3,5`` after its second request:
    #: 1 and 3); ``test_retain_class_acc`` leaves them all out. Empty: ``forget_class`` alone.
    forgotten_classes: tuple[int, ...] = ()


@dataclass
class ModelEval:
    """Accuracies of one model plus its softmax outputs on D_f and D_t (on the CPU)."""

    accs: dict[str, float]
    forget_probs: torch.Tensor
    test_probs: torch.Tensor
    #: What is wrong with the model's outputs ("NaN outputs on the forget set"), or None when every
    #: logit on D_f, D_r and D_t is finite (see :func:`nonfinite_outputs`).
    nonfinite: str | None = None
    #: the shape of one input's output (``(num_classes,)`` for a classifier): checked by the trial
    outputs: tuple = ()
    #: whether the outputs on D_t are softmax probabilities, not logits (:func:`returns_probabilities`)
    probabilities: bool = False


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    # y may sit in host memory where the data are streamed (bench.nn.training.place); the logits on the GPU
    return float((logits.argmax(1) == y.to(logits.device)).float().mean()) if len(y) else float("nan")


def returns_probabilities(out: torch.Tensor) -> bool:
    """Whether a model's outputs look like softmax probabilities rather than logits: every entry in
    [0, 1] and every row summing to 1 (an untrained network ending in logits never does)."""
    if not out.is_floating_point() or out.shape[-1] < 2:
        return False
    rows = out.detach().double().sum(-1)
    return bool(((out >= 0) & (out <= 1)).all() and torch.allclose(rows, torch.ones_like(rows), atol=1e-4))


def nonfinite_outputs(logits: dict[str, torch.Tensor]) -> str | None:
    """``"NaN outputs on the forget set"`` (or ``"infinite outputs ..."``) for the first set, in the
    order given, on which some logit is not finite; None when all are. A model with such outputs
    has no meaningful accuracy, divergence or attack score: the harness refuses it."""
    for name, values in logits.items():
        if not bool(torch.isfinite(values).all()):
            kind = "NaN" if bool(torch.isnan(values).any()) else "infinite"
            return f"{kind} outputs on the {name} set"
    return None


def of_classes(y: torch.Tensor, classes) -> torch.Tensor:
    """The mask of the labels ``y`` in ``classes`` (a class request's forgotten classes: the test
    points left out of ``test_retain_class_acc`` and of the ``svc`` attack's class-wise test set)."""
    return torch.isin(y, torch.as_tensor(sorted(classes), dtype=y.dtype, device=y.device))


def evaluate_model(model: torch.nn.Module, data: EvalData) -> ModelEval:
    retain_logits = predict_logits(model, data.retain_x)
    forget_logits = predict_logits(model, data.forget_x)
    test_logits = predict_logits(model, data.test_x)
    if test_logits.dim() != 2 or retain_logits.dim() != 2 or forget_logits.dim() != 2:
        # not one row of logits per input (a model returning shape (N,)): no accuracy can be read;
        # the trial's checked_eval refuses it by its shape (it failed on an IndexError here)
        empty = torch.empty(0)
        return ModelEval(accs={}, forget_probs=empty, test_probs=empty, nonfinite=None,
                         outputs=tuple(test_logits.shape[1:]))
    accs = {
        "retain_acc": _acc(retain_logits, data.retain_y),
        "forget_acc": _acc(forget_logits, data.forget_y),
        "test_acc": _acc(test_logits, data.test_y),
    }
    if data.forget_class is not None:
        in_class = data.test_y == data.forget_class
        accs["test_forget_class_acc"] = _acc(test_logits[in_class], data.test_y[in_class])
        gone = of_classes(data.test_y, {data.forget_class, *data.forgotten_classes})
        accs["test_retain_class_acc"] = _acc(test_logits[~gone], data.test_y[~gone])
    return ModelEval(
        accs=accs,
        forget_probs=torch.softmax(forget_logits, 1).cpu(),
        test_probs=torch.softmax(test_logits, 1).cpu(),
        nonfinite=nonfinite_outputs({"forget": forget_logits, "retain": retain_logits, "test": test_logits}),
        outputs=tuple(test_logits.shape[1:]),
        probabilities=returns_probabilities(test_logits),
    )


@dataclass
class Snapshot:
    """θ_0 of :func:`weight_change`: copies of a model's floating-point parameters and of its
    buffers (by name), on the CPU."""
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]


def parameter_snapshot(model: torch.nn.Module) -> Snapshot:
    """Copies of ``model``'s floating-point parameters and its buffers, on the CPU (taken outside any
    timing, and off the GPU so that they do not count in its peak memory): θ_0 of :func:`weight_change`."""
    with torch.no_grad():
        copy = lambda items: {n: t.detach().to("cpu", copy=True) for n, t in items}  # noqa: E731
        return Snapshot(copy((n, p) for n, p in model.named_parameters() if p.is_floating_point()),
                        copy(model.named_buffers()))


def weight_change(before: Snapshot, model: torch.nn.Module) -> float | None:
    """||θ − θ_0||₂ / ||θ_0||₂ of ``model``'s floating-point parameters against ``before``
    (:func:`parameter_snapshot`), in float64; the absolute distance when ||θ_0|| is 0. None when
    there is no one-to-one comparison: ``model`` has other parameter or buffer names or shapes than
    ``before`` (PRUNE's patched model, whose patches are buffers: on a continual request's later
    steps its parameters are the frozen original's, and 0 would have said "returned its input"), or
    its parameters did not move while a buffer did (0 would say that, too)."""
    with torch.no_grad():
        after = {n: p.detach() for n, p in model.named_parameters() if p.is_floating_point()}
        buffers = dict(model.named_buffers())
        if not before.params or not _same_layout(before.params, after) or not _same_layout(before.buffers, buffers):
            return None
        moved = sum(float((after[n].to("cpu", torch.float64) - before.params[n].double()).pow(2).sum()) for n in after)
        scale = sum(float(t.double().pow(2).sum()) for t in before.params.values())
        if moved == 0 and any(not torch.equal(buffers[n].to("cpu"), t) for n, t in before.buffers.items()):
            return None
    return (moved / scale) ** 0.5 if scale > 0 else moved ** 0.5


def _same_layout(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return before.keys() == after.keys() and all(after[n].shape == t.shape for n, t in before.items())


def js_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-row Jensen-Shannon divergence (natural log) between probability vectors."""
    p = p.double().clamp_min(eps)
    q = q.double().clamp_min(eps)
    m = 0.5 * (p + q)
    return 0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)


def reference_metrics(original: ModelEval, retrain: ModelEval) -> dict[str, float]:
    out = {f"original_{k}": v for k, v in original.accs.items()}
    out.update({f"retrain_{k}": v for k, v in retrain.accs.items()})
    return out


def compare_to_references(unlearned: ModelEval, original: ModelEval, retrain: ModelEval) -> dict[str, float]:
    """Accuracies, gaps to the retrained model, avg_gap and JS divergences of one unlearned model."""
    out = dict(unlearned.accs)
    out.update(reference_metrics(original, retrain))
    gaps = {}
    for name in ACCURACIES:
        gaps[name.replace("_acc", "_gap")] = abs(unlearned.accs[name] - retrain.accs[name])
    out.update(gaps)
    out["avg_gap"] = sum(gaps.values()) / len(gaps)
    out["js_to_retrain_forget"] = float(js_divergence(unlearned.forget_probs, retrain.forget_probs).mean())
    out["js_to_retrain_test"] = float(js_divergence(unlearned.test_probs, retrain.test_probs).mean())
    return out
