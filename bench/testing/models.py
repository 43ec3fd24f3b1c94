"""The model checks: ``create`` builds a fresh, seeded module whose forward gives logits, row by
row, without touching its input, and whose state survives the harness's cache (safetensors) and
deep copies.

They run on random standard-normal inputs of the options' ``input_shape`` (default ``(1, 8, 8)``,
the digits' shape) and ``num_classes`` (default 10); ``arg`` is the text after the colon of the
model spec (``"512,256"`` for ``mlp:512,256``)."""

from __future__ import annotations

import copy
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.cache import load_state, model_bytes
from bench.core.errors import BenchError
from bench.eval.evaluation import returns_probabilities
from bench.run.model_probe import EVAL_FLAWS, eval_flaw, shared_state
from bench.testing.base import _SCRAMBLE, SEED, _check, _exc, _fail, _first_difference, _picklable, _registers, _seed_globals, _state

DEFAULT_INPUT_SHAPE = (1, 8, 8)
DEFAULT_NUM_CLASSES = 10
BATCH = 8  # rows of the batches the checks run (train-mode normalisation layers need more than one)


def _shape(input_shape) -> tuple[int, ...]:
    """The ``input_shape`` option as plain ints (NumPy integers too, as bench takes them); a
    TypeError naming the option (a mistake in the test, not in the model) otherwise."""
    dims = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    if not dims or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in dims):
        raise TypeError(f"the option input_shape must be a tuple of positive ints, e.g. (3, 32, 32); got {input_shape!r}.")
    return tuple(int(d) for d in dims)


def _create(model_obj, num_classes, input_shape, arg, seed: int = SEED) -> nn.Module:
    """``create`` as the harness calls it: after ``torch.manual_seed(seed)``."""
    shape = _shape(input_shape)  # before the call: a bad option is the test's, not the model's
    torch.manual_seed(seed)
    try:
        net = model_obj.create(num_classes, shape, arg)
    except BenchError as exc:
        _fail(f"create({num_classes}, {shape}, {arg!r}) refused the setting: {exc} Give the checks "
              f"options the model accepts: check_model(model, arg=..., input_shape=..., num_classes=...).", exc)
    except Exception as exc:
        _fail(f"create({num_classes}, {shape}, {arg!r}) raised {_exc(exc)}.", exc)
    if not isinstance(net, nn.Module):
        _fail(f"create returned {type(net).__name__}, not a torch.nn.Module.")
    return net


def _inputs(input_shape, rows: int = BATCH, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((rows, *_shape(input_shape)), generator=g)


def _forward(net: nn.Module, x: torch.Tensor, train: bool = False, grad: bool = False) -> Any:
    net.train(train)
    try:
        with torch.set_grad_enabled(grad):
            return net(x)
    except Exception as exc:
        mode = "train" if train else "eval"
        _fail(f"forward on a batch of shape {tuple(x.shape)} in {mode} mode raised {_exc(exc)}.", exc)


@_check("model")
def check_model_attributes(model) -> None:
    """The registry accepts it (a valid name, a callable ``create``), it has a description and it
    survives pickling (trials in Ray workers receive it pickled). A family that resolves names
    defines both ``claims`` and ``list_names``, and claims the names it lists."""
    _registers("model", model)
    _picklable(model, "model")
    has = [callable(getattr(model, a, None)) for a in ("claims", "list_names")]
    if any(has) and not all(has):
        _fail("it defines one of claims(name) and list_names(pattern) but not the other; a family of names "
              "defines both (docs/plugins.md, Models).")
    if all(has):
        names = model.list_names("*")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            _fail(f"list_names('*') returned {type(names).__name__}; expected a list of names (str).")
        for name in names[:3]:
            if not model.claims(name):
                _fail(f"list_names('*') lists '{name}', which claims('{name}') does not claim.")


@_check("model")
def check_create_returns_module(model, arg=None, num_classes=DEFAULT_NUM_CLASSES, input_shape=DEFAULT_INPUT_SHAPE) -> None:
    """``create`` returns a ``torch.nn.Module`` on the CPU (the harness moves it to the device) with
    at least one trainable parameter, every floating-point parameter and buffer float32 (the
    harness's inputs are float32)."""
    net = _create(model, num_classes, input_shape, arg)
    tensors = [*net.named_parameters(), *net.named_buffers()]
    for name, t in tensors:
        if t.device.type != "cpu":
            _fail(f"'{name}' is on {t.device}; create the model on the CPU (the harness moves it to the device).")
        if t.is_floating_point() and t.dtype != torch.float32:
            _fail(f"'{name}' has dtype {t.dtype}; bench feeds float32 inputs and trains float32 models.")
    if not any(p.requires_grad for p in net.parameters()):
        _fail("the model has no trainable parameter (requires_grad): no method can change it.")


@_check("model")
def check_outputs_logits(model, arg=None, num_classes=DEFAULT_NUM_CLASSES, input_shape=DEFAULT_INPUT_SHAPE) -> None:
    """In eval mode a batch ``(B, *input_shape)`` gives one float32 tensor ``(B, num_classes)`` of
    finite logits (not probabilities: bench applies softmax itself), and so does a batch of one row
    (a forget set of one point)."""
    net = _create(model, num_classes, input_shape, arg)
    for rows in (BATCH, 1):
        out = _forward(net, _inputs(input_shape, rows))
        if not isinstance(out, torch.Tensor):
            _fail(f"forward returned a {type(out).__name__}, not a tensor; return the logits alone.")
        if tuple(out.shape) != (rows, num_classes):
            _fail(f"forward on {rows} row(s) returned shape {tuple(out.shape)}; expected ({rows}, {num_classes}).")
        if out.dtype != torch.float32:
            _fail(f"forward returned dtype {out.dtype}; expected float32 logits.")
        if not torch.isfinite(out).all():
            _fail(f"forward returned NaN or infinite logits on {rows} random standard-normal row(s).")
        if rows > 1 and returns_probabilities(out):
            _fail("forward returns probabilities (non-negative rows summing to 1); return logits: bench applies "
                  "softmax itself, and a second one skews every divergence and attack score.")


@_check("model")
def check_rows_independent_in_eval(model, arg=None, num_classes=DEFAULT_NUM_CLASSES,
                                   input_shape=DEFAULT_INPUT_SHAPE) -> None:
    """In eval mode a row's logits do not depend on the other rows of its batch, nor on the global
    random generators (no dropout or batch statistics at evaluation): bench measures in batches,
    and every accuracy, divergence and attack score would otherwise depend on the batch size. The
    same test as bench's plan (``bench.run.model_probe.eval_flaw``), on a batch of 8."""
    net = _create(model, num_classes, input_shape, arg)
    net.eval()
    try:
        flaw = eval_flaw(net, _inputs(input_shape), reseed=lambda i: _seed_globals(_SCRAMBLE[i - 1]))
    except Exception as exc:
        _fail(f"forward on a batch of shape {(BATCH, *_shape(input_shape))} in eval mode raised {_exc(exc)}.", exc)
    if flaw is not None:
        _fail(f"{EVAL_FLAWS[flaw]}.")


@_check("model")
def check_leaves_input_untouched(model, arg=None, num_classes=DEFAULT_NUM_CLASSES,
                                 input_shape=DEFAULT_INPUT_SHAPE) -> None:
    """Forward, in train and in eval mode, does not change its input tensor (methods call the model
    on the request's forget and retain tensors directly)."""
    net = _create(model, num_classes, input_shape, arg)
    x = _inputs(input_shape)
    before = x.clone()
    for train in (True, False):
        _forward(net, x, train=train)
        if not torch.equal(x, before):
            _fail(f"forward in {'train' if train else 'eval'} mode changed its input in place (an in-place "
                  f"normalisation, or an in-place activation applied to the input); work on a copy.")


@_check("model")
def check_create_fresh_and_seeded(model, arg=None, num_classes=DEFAULT_NUM_CLASSES,
                                  input_shape=DEFAULT_INPUT_SHAPE) -> None:
    """Two ``create`` calls return separate modules (no shared parameters), and after the same
    ``torch.manual_seed`` the same initial state, whatever NumPy's and Python's generators hold
    (the harness seeds torch before every ``create``: the original, each reference, each shadow)."""
    states, nets = [], []
    for global_seed in _SCRAMBLE:
        _seed_globals(global_seed)
        nets.append(_create(model, num_classes, input_shape, arg))
        states.append(_state(nets[-1]))
    shared = shared_state(*nets)
    if shared:
        _fail(f"two create() calls returned {shared}; build a new model on every call (bench trains the original, "
              f"the retrained reference and each trial's model from separate calls).")
    diff = _first_difference(*states)
    if diff:
        _fail(f"two create() calls after the same torch.manual_seed gave different initial states: {diff}; draw "
              f"initial values from torch's global generator only (not NumPy's, Python's or the clock).")


@_check("model")
def check_gradients_reach_parameters(model, arg=None, num_classes=DEFAULT_NUM_CLASSES,
                                     input_shape=DEFAULT_INPUT_SHAPE) -> None:
    """In train mode, the cross-entropy of a batch back-propagates to the trainable parameters (at
    least one gets a gradient: a forward that detaches its output leaves every method without one)
    and every gradient is finite. A parameter no output depends on is allowed (bench's methods give
    it a zero gradient); freeze it (``requires_grad_(False)``) if it is not meant to be trained."""
    net = _create(model, num_classes, input_shape, arg)
    y = torch.arange(BATCH) % num_classes
    out = _forward(net, _inputs(input_shape), train=True, grad=True)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (BATCH, num_classes):
        _fail(f"forward in train mode returned {type(out).__name__} {tuple(getattr(out, 'shape', ()))}; "
              f"expected logits ({BATCH}, {num_classes}).")
    if not out.requires_grad:
        _fail("the logits of a train-mode forward do not require grad (detached, or computed under no_grad): no "
              "method can train the model.")
    try:
        F.cross_entropy(out, y).backward()
    except Exception as exc:
        _fail(f"backward of the cross-entropy raised {_exc(exc)}.", exc)
    reached = [(name, p) for name, p in net.named_parameters() if p.requires_grad and p.grad is not None]
    if not reached:
        _fail("no trainable parameter gets a gradient from the cross-entropy of the logits.")
    for name, p in reached:
        if not torch.isfinite(p.grad).all():
            _fail(f"parameter '{name}' gets a NaN or infinite gradient on a random standard-normal batch.")


@_check("model")
def check_state_survives_the_cache(model, arg=None, num_classes=DEFAULT_NUM_CLASSES,
                                   input_shape=DEFAULT_INPUT_SHAPE) -> None:
    """A model's state dict, written as bench's cache writes it (safetensors) and loaded into a
    model created under another seed, gives the same eval-mode logits: everything a forward uses
    is in the state dict (parameters and persistent buffers), as the cached original, references and
    shadow models are rebuilt that way."""
    first = _create(model, num_classes, input_shape, arg, seed=SEED)
    _forward(first, _inputs(input_shape, seed=1), train=True)  # running statistics move off their initial values
    x = _inputs(input_shape)
    want = _forward(first, x)
    try:
        data = model_bytes(first, None)
    except Exception as exc:
        _fail(f"its state dict cannot be written as safetensors: {_exc(exc)}.", exc)
    second = _create(model, num_classes, input_shape, arg, seed=SEED + 1)
    try:
        load_state(second, data)
    except Exception as exc:
        _fail(f"its state dict, read back from safetensors, does not load into a new model: {_exc(exc)}.", exc)
    got = _forward(second, x)
    if not torch.equal(want, got):
        diff = (want - got).abs().max().item()
        _fail(f"a model rebuilt from its state dict gives other logits (max |diff| {diff:.3g}): the forward uses "
              f"tensors outside the state dict; register them as parameters or (persistent) buffers.")


@_check("model")
def check_deepcopy(model, arg=None, num_classes=DEFAULT_NUM_CLASSES, input_shape=DEFAULT_INPUT_SHAPE) -> None:
    """``copy.deepcopy`` gives a separate model with the same logits (methods keep teachers and
    snapshots as deep copies; the harness hands each trial its own copy)."""
    net = _create(model, num_classes, input_shape, arg)
    try:
        twin = copy.deepcopy(net)
    except Exception as exc:
        _fail(f"copy.deepcopy(model) raised {_exc(exc)}.", exc)
    shared = shared_state(net, twin)
    if shared:
        _fail(f"a deep copy and its model are {shared}: a tensor the model holds is not copied with it.")
    x = _inputs(input_shape)
    if not torch.equal(_forward(net, x), _forward(twin, x)):
        _fail("a deep copy gives other logits than its model.")
