"""What bench checks of a model plugin at plan time, once per model spec and dataset, before any
training (:func:`probe_model`, :func:`refuse_shared_create`), and what a trial records of the
architecture a spec built (:func:`architecture`). Each refusal is one :class:`BenchError` line.
The conformance kit (``bench.testing.check_model``) checks more, on inputs of the author's choice."""

from __future__ import annotations

import json
from typing import Any

from bench.core.cache import sha256_bytes
from bench.core.errors import BenchError, no_exit

#: Tolerance of "the same logits" for a row alone and in a batch (a batched product may round
#: otherwise than a single row's).
RTOL, ATOL = 1e-4, 1e-5


#: What :func:`eval_flaw` finds, as the refusals say it (the plan's and the conformance kit's).
EVAL_FLAWS = {
    "random": ("gives other logits for the same inputs in eval mode: randomness at evaluation (F.dropout(x, p) "
               "without training=self.training?) makes every accuracy, divergence and attack score noisy; use "
               "nn.Dropout, which eval() turns off"),
    "batch": ("in eval mode a row's logits depend on the other rows of its batch (batch statistics at evaluation?); "
              "bench measures in batches, so every number would depend on the batch size. BatchNorm layers use "
              "their running statistics after eval()"),
}


def eval_flaw(net: Any, x: Any, reseed: Any = None, rows: int | None = None, tolerance: tuple[float, float] | None = None
              ) -> str | None:
    """``"random"`` when two eval-mode forwards of ``x`` (two or more rows) give other logits, with
    the global generators reseeded between them (``reseed(i)``, default ``torch.manual_seed``);
    ``"batch"`` when a row's logits alone (the first ``rows``, default all) differ from its logits in
    the batch (to ``RTOL``/``ATOL``: a batched product may round otherwise); None when neither.
    ``net`` is in eval mode; the caller turns a forward's exception into its own message. A forward
    called ``F.dropout(x, p)`` (active in eval mode too): noisy numbers with exit 0, the retrain
    method 0.995 against its own reference's 1.000 (found in review). ``tolerance``: (rtol, atol) of
    both comparisons, the two forwards compared to it rather than bit for bit and outputs of other
    shapes passed over (a trial's returned model, on a device that may round otherwise from call to
    call: ``bench.run.trial.refuse_eval_flaws``)."""
    import torch

    rtol, atol = tolerance or (RTOL, ATOL)
    reseed = reseed or torch.manual_seed
    with torch.no_grad():
        reseed(1)
        first = net(x.clone())
        reseed(2)
        second = net(x.clone())
        if tolerance is None and not torch.equal(first, second):
            return "random"
        if tolerance is not None and first.shape == second.shape and not torch.allclose(
                first, second, rtol=rtol, atol=atol, equal_nan=True):
            return "random"
        if tolerance is not None and first.shape[:1] != x.shape[:1]:
            return None
        for i in range(len(x) if rows is None else min(rows, len(x))):
            alone = net(x[i:i + 1].clone())
            if tolerance is not None and alone.shape[1:] != first.shape[1:]:
                continue
            if not torch.allclose(alone[0], first[i], rtol=rtol, atol=atol, equal_nan=tolerance is not None):
                return "batch"
    return None


def state_layout(net: Any) -> list:
    """The names, shapes and dtypes of ``net``'s state dict (what its architecture is to the cache)."""
    return [[k, list(v.shape), str(v.dtype)] for k, v in net.state_dict().items()]


def probe_model(spec: str, obj: Any, arg: Any, dspec: str, sp: Any) -> Any:
    """A fresh instance of model ``spec`` on dataset ``dspec`` (splits ``sp``), created after
    ``torch.manual_seed(0)`` and run in eval mode on two test inputs: it must return one tensor of
    finite logits ``(2, num_classes)`` (not probabilities), leave its input as it was, and have no
    :func:`eval_flaw` (no randomness or batch statistics at evaluation)."""
    import torch

    from bench.eval.evaluation import returns_probabilities

    x = sp.test_x[:2].clone()  # the model's forward must not reach the dataset's own tensor
    flaw = None
    try:
        torch.manual_seed(0)
        with no_exit(f"Model plugin '{spec}' (create)"):
            net = obj.create(sp.num_classes, tuple(sp.input_shape), arg)
        _refuse_not_a_module(spec, net, "")
        net.eval()
        with torch.no_grad():
            out = net(x)
        usable = isinstance(out, torch.Tensor) and tuple(out.shape) == (2, sp.num_classes) and bool(torch.isfinite(out).all())
        changed = usable and not torch.equal(x, sp.test_x[:2])
        if usable and not changed:
            flaw = eval_flaw(net, sp.test_x[:2])
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(
            f"Model '{spec}' cannot run on dataset '{dspec}' (inputs of shape {tuple(sp.input_shape)}): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(out, torch.Tensor):  # a tuple or dict (logits with extras, a HF-style output)
        raise BenchError(f"Model '{spec}' returned a {type(out).__name__} on dataset '{dspec}', not a tensor; "
                         f"expected logits of shape (N, {sp.num_classes}): return them alone from forward().")
    if tuple(out.shape) != (2, sp.num_classes):
        raise BenchError(f"Model '{spec}' returned shape {tuple(out.shape)} on dataset '{dspec}'; expected (2, {sp.num_classes}).")
    if not usable:  # NaN != NaN: the randomness check below named the wrong cause (found in review)
        raise BenchError(f"Model '{spec}' returns NaN or infinite logits on two test inputs of dataset '{dspec}' at its "
                         "initialisation; check the forward (a log or a division of values that can be 0 or negative).")
    if returns_probabilities(out):  # softmax again over them: every divergence and attack score off, exit 0
        raise BenchError(f"Model '{spec}' returns probabilities on dataset '{dspec}' (non-negative rows that sum "
                         "to 1); bench expects logits (the metrics and attacks apply softmax themselves): drop "
                         "the final softmax from forward().")
    if changed:  # methods call the model on the request's tensors: the method was blamed for the change
        raise BenchError(f"Model '{spec}' changes its input in place on dataset '{dspec}' (an in-place normalisation "
                         "or activation applied to the input); work on a copy in forward().")
    if flaw is not None:
        raise BenchError(f"Model '{spec}' on dataset '{dspec}': {EVAL_FLAWS[flaw]}.")
    return net


def _refuse_not_a_module(spec: str, net: Any, when: str) -> None:
    import torch

    if not isinstance(net, torch.nn.Module):  # None was "cannot run on dataset ...: 'NoneType' object has no attribute 'eval'"
        raise BenchError(f"Model '{spec}': create() returned {type(net).__name__}{when}, not a torch.nn.Module; it "
                         "must return the network it builds.")


def refuse_shared_create(spec: str, obj: Any, arg: Any, sp: Any, networks: dict) -> None:
    """A model plugin's ``create`` builds a new module each call: one returning a cached module made
    the retrained reference the original itself (retrain_* = original_*, every gap and divergence
    measured against the original, exit 0; found in review)."""
    import torch

    first = next(net for (m, _), net in networks.items() if m == spec)
    torch.manual_seed(0)
    try:
        with no_exit(f"Model plugin '{spec}' (create)"):
            again = obj.create(sp.num_classes, tuple(sp.input_shape), arg)
    except BenchError:
        raise
    except Exception as exc:  # a raw traceback, even under --dry-run (plugins audit, 2026-12-07)
        raise BenchError(f"Model '{spec}': create() failed on its second call ({type(exc).__name__}: {exc}); bench "
                         "calls it once for every model it trains (the original, the retrained reference, each "
                         "trial's): it must build a model on every call.") from None
    _refuse_not_a_module(spec, again, " on its second call")
    what = shared_state(first, again)
    if what:
        raise BenchError(f"Model '{spec}': two create() calls returned {what}; create() must build a new model on "
                         "every call (bench trains the original, the retrained reference and each trial's model from "
                         "separate calls: with one module, the retrained reference is the original itself).")


def architecture(net: Any) -> dict[str, Any]:
    """What a model spec built: ``class`` (module and name), ``parameters`` and ``trainable``
    (element counts) and ``layout_sha256``, a digest of its state dict's names, shapes and dtypes
    (the same for every seed; another width, depth or head gives another)."""
    layout = state_layout(net)
    return {"class": f"{type(net).__module__}.{type(net).__qualname__}",
            "parameters": sum(p.numel() for p in net.parameters()),
            "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad),
            "layout_sha256": sha256_bytes(json.dumps(layout).encode())}


def shared_state(a: Any, b: Any) -> str | None:
    """``"the same module"`` or ``"modules that share parameters"`` where ``a`` and ``b`` are not
    separate models; None where they are."""
    if a is b:
        return "the same module"
    storage = {p.data_ptr() for p in a.parameters() if p.numel()}
    if any(p.data_ptr() in storage for p in b.parameters() if p.numel()):
        return "modules that share parameters"
    return None
