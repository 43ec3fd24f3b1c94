"""torch's process-wide settings that a plugin could leave changed for the trials after it in the
same worker: read before a method's or an attack's call and set back after it (``bench.run.trial``,
``bench.run.attack_step``, the conformance kit), the trial failing with what was changed."""

from __future__ import annotations

import functools

import torch


def _has_path(obj, dotted: str) -> bool:
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


#: torch's process-wide settings a plugin could leave changed for the trials after it in the same
#: worker: (what it is called, how to read it, how to set it, how to restore it in a sentence)
_GLOBALS = (
    ("grad mode", torch.is_grad_enabled, torch.set_grad_enabled, "use `with torch.no_grad():`"),
    ("default dtype", torch.get_default_dtype, torch.set_default_dtype, "create tensors with an explicit dtype"),
    ("thread count", torch.get_num_threads, torch.set_num_threads, "do not call torch.set_num_threads"),
    ("deterministic-algorithms flag",
     lambda: (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
     lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1]), "set it back before returning"),
    ("anomaly detection", torch.is_anomaly_enabled, torch.autograd.set_detect_anomaly,
     "use `with torch.autograd.detect_anomaly():`"),
    # the settings below change results on a GPU (TF32 rounds every float32 matmul and convolution
    # on Ampere and later; cuDNN's benchmark mode picks convolution algorithms by timing) or place
    # every new tensor elsewhere (the default device): read and restored on the CPU alike
    ("float32 matmul precision (TF32)", lambda: _legacy(torch.get_float32_matmul_precision),
     lambda v: _put_legacy(torch.set_float32_matmul_precision, v), "set it back before returning"),
    ("cuDNN TF32 flag", lambda: _legacy(lambda: torch.backends.cudnn.allow_tf32),
     lambda v: _put_legacy(lambda x: setattr(torch.backends.cudnn, "allow_tf32", x), v),
     "use `with torch.backends.cudnn.flags(...):`"),
    ("float32 precision (torch.backends.*.fp32_precision)", lambda: _read_fp32(), lambda v: _write_fp32(v),
     "set it back before returning"),
    ("cuDNN benchmark flag", lambda: torch.backends.cudnn.benchmark,
     lambda v: setattr(torch.backends.cudnn, "benchmark", v), "use `with torch.backends.cudnn.flags(...):`"),
    ("cuDNN deterministic flag", lambda: torch.backends.cudnn.deterministic,
     lambda v: setattr(torch.backends.cudnn, "deterministic", v), "use `with torch.backends.cudnn.flags(...):`"),
    ("oneDNN (mkldnn) flag", lambda: torch.backends.mkldnn.enabled,
     lambda v: setattr(torch.backends.mkldnn, "enabled", v), "use `with torch.backends.mkldnn.flags(...):`"),
    ("default device", torch.get_default_device,
     # back to no default-device mode at all where the default was the CPU (set_default_device("cpu")
     # would leave a function mode on every later torch call)
     lambda v: torch.set_default_device(None if v == torch.device("cpu") else v),
     "create tensors with an explicit device, or use `with torch.device(...):`"),
)

#: torch >= 2.9's per-backend float32 precision settings (the "new API") this torch has; once one is
#: set, the legacy getters above raise (a "mix of the legacy and new APIs"), so they are read here too.
_FP32_PRECISION = tuple(
    name for name in ("fp32_precision", "cuda.matmul.fp32_precision", "cudnn.fp32_precision", "cudnn.conv.fp32_precision",
                      "cudnn.rnn.fp32_precision", "mkldnn.fp32_precision", "mkldnn.matmul.fp32_precision",
                      "mkldnn.conv.fp32_precision", "mkldnn.rnn.fp32_precision")
    if _has_path(torch.backends, name))


def _read_fp32() -> tuple:
    return tuple(functools.reduce(getattr, name.split("."), torch.backends) for name in _FP32_PRECISION)


def _write_fp32(values: tuple) -> None:
    for name, value in zip(_FP32_PRECISION, values):
        *parents, attr = name.split(".")
        try:
            setattr(functools.reduce(getattr, parents, torch.backends), attr, value)
        except (RuntimeError, ValueError):  # torch refuses this combination back: the change is still reported
            continue


def _legacy(get):
    """A legacy precision getter's value, or a marker where torch refuses to answer (the new API was
    used too): reading it must never fail a trial that changed nothing."""
    try:
        return get()
    except RuntimeError:
        return "(set through the new fp32_precision API)"


def _put_legacy(put, value) -> None:
    if isinstance(value, str) and value.startswith("(set through"):
        return  # nothing legacy to put back: the new-API entry restores it
    try:
        put(value)
    except RuntimeError:  # torch refuses the legacy call after the new API was used: reported all the same
        return


def torch_globals() -> tuple:
    """The values of torch's process-wide settings in ``_GLOBALS``."""
    return tuple(get() for _, get, _, _ in _GLOBALS)


def restore_torch_globals(saved: tuple) -> str | None:
    """Set back what changed since ``saved`` (``torch_globals()``); returns a sentence naming the
    first change and how to avoid it, or None when nothing changed."""
    first = None
    for (name, get, put, fix), before in zip(_GLOBALS, saved):
        now = get()
        if now != before:
            put(before)
            first = first or f"left torch's {name} changed ({before} -> {now}): {fix}"
    return first
