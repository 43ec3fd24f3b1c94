"""One trial: copy the original model, call the method (timed, memory measured), evaluate.

``run_trial(spec, payload)`` runs in a Ray Tune worker or in process (``--executor local``);
both call exactly this function, with torch's threads fixed to the trial's CPUs, so the same
seed gives the same numbers either way. ``payload`` holds, per group, the data and the
original model as safetensors bytes plus both references' evaluations; under Ray its values are
object references fetched with ``ray.get``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import BenchError


@dataclass
class GroupPayload:
    """What every trial of a group shares (built once by the driver)."""

    splits: Any  # bench.contracts.Splits, on the CPU
    forget_idx: Any  # np.ndarray of training indices
    forget_kind: str
    forget_class: int | None
    original_state: bytes
    retrain_seconds: float
    original_eval: Any  # bench.evaluation.ModelEval
    retrain_eval: Any
    method_originals: dict = field(default_factory=dict)  # train-hook cache key -> (bytes, train seconds)
    steps: list | None = None  # continual requests: bench.continual.StepPayload per request
    attack_models: dict = field(default_factory=dict)  # bench.shadows.attach_attack_models


@dataclass
class Payload:
    groups: dict[str, Any]  # gid -> GroupPayload (or an object ref to one)
    methods: dict[str, Any]  # name -> method object
    models: dict[str, tuple[Any, str | None, str]]  # model spec -> (plugin object, arg, origin)
    attacks: dict[str, Any]


def split_data(splits, forget_idx, device: str):
    """Retain/forget/test tensors on ``device`` from the training split and the forget indices."""
    import torch

    mask = torch.zeros(splits.train_size, dtype=torch.bool)
    mask[torch.as_tensor(forget_idx, dtype=torch.long)] = True
    x, y = splits.train_x, splits.train_y
    from .training import place  # on the device, or in host memory when too large (see there)

    rx, ry, fx, fy, tx, ty = place((x[~mask], y[~mask], x[mask], y[mask], splits.test_x, splits.test_y), device)
    return (rx, ry), (fx, fy), (tx, ty)


def input_bounds(splits, device: str):
    """(lo, hi) tensors broadcastable to one input: ``splits.info["input_bounds"]`` (floats, or lists
    per channel or per input feature), else the per-feature min/max of the training split."""
    import math

    import torch

    shape = tuple(splits.input_shape)
    given = splits.info.get("input_bounds") if splits.info else None
    if given is None:
        return splits.train_x.min(0).values.to(device), splits.train_x.max(0).values.to(device)
    out = []
    for v in given:
        t = torch.as_tensor(v, dtype=splits.train_x.dtype)
        if t.dim() and t.numel() == shape[0] and t.numel() != math.prod(shape):
            t = t.view(shape[0], *[1] * (len(shape) - 1))
        elif t.dim():
            t = t.view(shape)
        out.append(t.to(device))
    return tuple(out)


def model_factory(model_obj, arg, splits, seed: int, device: str) -> Callable[[], Any]:
    """A function returning a freshly initialised model, seeded by ``seed``, on ``device``."""

    def new_model():
        import torch

        torch.manual_seed(seed)
        return model_obj.create(splits.num_classes, tuple(splits.input_shape), arg).to(device)

    return new_model


#: Key of a trial's result holding ``{file name: str | bytes}`` to log as MLflow artifacts.
ARTIFACTS_KEY = "bench_artifacts"


def add_method_outputs(method: str, metrics: dict, ctx) -> None:
    """Merge what a method put in ``ctx.metrics`` / ``ctx.artifacts`` into the trial's result."""
    for key, value in ctx.metrics.items():
        if key in metrics:
            raise BenchError(f"Method '{method}' reported metric '{key}', which the harness already measures; rename it.")
        try:
            metrics[key] = float(value)
        except (TypeError, ValueError):
            raise BenchError(f"Method '{method}' reported metric '{key}' = {value!r}, which is not a number.") from None
    for name, content in ctx.artifacts.items():
        parts = str(name).split("/")
        if not isinstance(content, (str, bytes)) or not name or name.startswith("/") or ".." in parts:
            raise BenchError(f"Method '{method}' reported artifact '{name}' of type {type(content).__name__}; "
                             "artifacts are str or bytes under a relative file name.")
    if ctx.artifacts:
        metrics.setdefault(ARTIFACTS_KEY, {}).update(ctx.artifacts)


def run_trial(spec: dict, payload: Payload, fetch: Callable[[Any], Any] = lambda v: v,
              report: Callable[[dict], None] | None = None) -> dict[str, float]:
    """Run one trial and return its metrics. ``report``, if given, receives the metrics of the
    intermediate models a method passes to ``ctx.report`` (for schedulers such as ASHA)."""
    import torch

    from .cache import load_state
    from .contracts import ForgetRequest, MethodContext
    from .evaluation import EvalData, compare_to_references, evaluate_model
    from .measure import measure
    from .recipe import Recipe
    from .training import seed_everything, set_threads, warm_up

    set_threads(spec["threads"])
    device = spec["device"]
    seed = spec["seed"]
    group: GroupPayload = fetch(payload.groups[spec["group"]])
    if group.steps is not None:  # continual requests, one method call per request
        from .continual import run_continual_trial

        return run_continual_trial(spec, payload, group)
    method = payload.methods[spec["method"]]
    model_obj, arg, _ = payload.models[spec["model"]]
    (rx, ry), (fx, fy), (tx, ty) = split_data(group.splits, group.forget_idx, device)

    new_model = model_factory(model_obj, arg, group.splits, seed, device)
    model = new_model()
    load_state(model, group.original_state)

    access = set(spec["data_access"].split(",")) if spec["data_access"] else set()
    request = ForgetRequest(
        num_classes=group.splits.num_classes,
        kind=group.forget_kind,
        forget_indices=group.forget_idx,
        forget_class=group.forget_class,
        forget_x=fx if "forget" in access else None,
        forget_y=fy if "forget" in access else None,
        retain_x=rx if "retain" in access else None,
        retain_y=ry if "retain" in access else None,
        input_bounds=input_bounds(group.splits, device),
    )
    data = EvalData(rx, ry, fx, fy, tx, ty, group.forget_class)
    own_metrics: dict = {}
    if spec.get("method_train"):  # the method trains its own original (SISA): bench.method_training
        from .method_training import own_original

        model, own_metrics = own_original(method, spec, group, data, new_model, model_obj, arg, seed, device)

    def report_model(intermediate) -> None:
        report(compare_to_references(evaluate_model(intermediate, data), group.original_eval, group.retrain_eval))

    ctx = MethodContext(seed=seed, device=device, new_model=new_model,
                        recipe=Recipe(**spec["recipe"]) if "recipe" in access else None,
                        report=report_model if report is not None else None)
    params = dict(spec["params"])

    warm_up(new_model() if own_metrics else model, rx if len(ry) else fx, ry if len(ry) else fy)
    seed_everything(seed)
    with measure(device) as m:
        out = method.unlearn(model, request, params, ctx)
    if not isinstance(out, torch.nn.Module):
        raise BenchError(f"Method '{spec['method']}' returned {type(out).__name__}, not a torch.nn.Module.")

    metrics = compare_to_references(evaluate_model(out, data), group.original_eval, group.retrain_eval)
    metrics["unlearn_seconds"] = m.seconds
    metrics["retrain_seconds"] = group.retrain_seconds
    metrics["speedup_vs_retrain"] = group.retrain_seconds / max(m.seconds, 1e-9)
    metrics.update(m.memory)
    metrics["forget_size"] = float(len(fy))
    metrics.update(own_metrics)
    add_method_outputs(spec["method"], metrics, ctx)

    if payload.attacks:
        from .attack_run import run_attacks

        run_attacks(payload.attacks, out, metrics, spec=spec, group=group, method=method, params=params,
                    access=access, data=((rx, ry), (fx, fy), (tx, ty)), new_model=new_model)
    return metrics
