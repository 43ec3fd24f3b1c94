"""Continual (sequential) forget requests: ``--forget seq:5x20`` and ``--forget seq:class:1,3,5``.

The requests of a ``seq:`` spec are applied one after the other: request t is handed to
``method.unlearn`` with, as ``model``, what the method returned for request t-1 (the original
model for the first), the new request's points (``forget_x/y``, ``forget_indices``) and as retain
set every training point not forgotten so far. The reference for request t is the model retrained
from scratch on what remains after requests 1..t (same recipe and seed as every reference, in the
same content-addressed cache: it is the retrained reference of an ``indices:`` request for the
union of requests 1..t). This is the continual protocol of L2UL (Cha et al., AAAI 2024), whose
code has none; the spec's reconstruction (../shared/specs/l2ul.md §2) measures after every
request the accuracy on the current request, on every request so far (to catch relearning), on
the retain set and on the test set.

Metrics after every request t (MLflow metric steps t-1 of the trial's child run): the usual
metrics of a trial computed against request t's references (``forget_acc`` on request t,
``retain_acc`` on what remains, ``test_acc``, the gaps, ``avg_gap``, JS divergences,
``unlearn_seconds`` of request t alone, ``retrain_seconds`` of its reference,
``speedup_vs_retrain``, memory, ``forget_size`` = size of request t) plus
``forget_all_acc`` (accuracy on every point forgotten so far; ``original_forget_all_acc``,
``retrain_forget_all_acc`` and ``forget_all_gap`` alongside), ``forget_all_size``, ``request``
(t, from 1), ``cumulative_unlearn_seconds`` and ``cumulative_retrain_seconds`` (sums over requests
1..t) and ``cumulative_speedup_vs_retrain`` (their ratio: retraining at every step vs the method).
The trial's final result is the last request's metrics (so ``bench compare``, ``--resume`` and the
summary read the last step and the totals); the earlier steps travel with it under
:data:`STEPS_KEY` and are logged as earlier metric steps. Attacks run once, on the final model,
with every forgotten point as the forget set.

A method that cannot continue from its own output sets ``continual = False`` (and
``continual_note``, one sentence saying why); a ``seq:`` request for it is refused before any
training. ``ctx.report`` (intermediate results for ASHA) is not offered during continual trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import BenchError

#: Key of a continual trial's result holding the metrics of every request, in order.
STEPS_KEY = "bench_steps"


def check_continual(methods, forgets) -> None:
    """Refuse ``seq:`` requests for methods that declare ``continual = False`` (before any work)."""
    seq = [f.text for f in forgets if f.kind == "seq"]
    if not seq:
        return
    for m in methods:
        if getattr(m.obj, "continual", True) is False:
            note = getattr(m.obj, "continual_note", "") or "it says it cannot continue from its own output"
            raise BenchError(
                f"Method '{m.name}' cannot take continual requests ({', '.join(seq)}): {note.rstrip('.')}. "
                f"Drop it from --methods for these requests, or use a single request (e.g. random:20)."
            )


def seen_after_each(steps: list) -> list:
    """The union of requests 1..t, for every t (sorted int64 arrays)."""
    import numpy as np

    seen, out = np.empty(0, dtype=np.int64), []
    for idx in steps:
        seen = np.union1d(seen, idx).astype(np.int64)
        out.append(seen)
    return out


def step_references(steps: list, base: dict) -> list[tuple[str, dict]]:
    """(cache key, document) of the retrained reference of every request: trained on what remains
    after it. The document is the one of an ordinary retrained reference for the same union, so
    the cache is shared with single requests."""
    import numpy as np

    from .cache import cache_key, sha256_bytes

    refs = []
    for seen in seen_after_each(steps):
        doc = {"kind": "retrain", **base, "forget_sha256": sha256_bytes(np.asarray(seen, np.int64).tobytes())}
        refs.append((cache_key(doc), doc))
    return refs


def step_jobs(group, common: dict, train_size: int) -> list:
    """Reference-training jobs of every request of a ``seq:`` group (the last one is the group's
    retrained reference; duplicates are skipped by the cache)."""
    import numpy as np

    from .references import RefJob

    jobs = []
    for seen, (key, doc) in zip(seen_after_each(group.steps), group.step_refs, strict=True):
        jobs.append(RefJob(key=key, doc=doc, train_idx=np.setdiff1d(np.arange(train_size), seen), **common))
    return jobs


@dataclass
class StepPayload:
    """What the trials of a ``seq:`` group share about request t (built once by the driver)."""

    forget_idx: Any  # this request's training indices
    seen_idx: Any  # requests 1..t
    kind: str  # "random" or "class": the ForgetRequest.kind of this request
    forget_class: int | None
    original_eval: Any  # the original model evaluated on this step's data
    retrain_eval: Any  # this step's retrained reference on this step's data
    retrain_seconds: float
    original_forget_all_acc: float
    retrain_forget_all_acc: float


def step_payloads(group, splits, model_obj, arg, refs: dict, device: str) -> list[StepPayload]:
    """Evaluate the original and every step's retrained reference on that step's data."""
    from .cache import load_state
    from .evaluation import evaluate_model
    from .training import accuracy
    from .trial import model_factory

    original = model_factory(model_obj, arg, splits, group.seed, device)()
    load_state(original, refs[group.original_key][0])
    out = []
    for idx, seen, (key, _) in zip(group.steps, seen_after_each(group.steps), group.step_refs, strict=True):
        label = int(splits.train_y[idx[0]]) if group.forget.labels is not None else None
        data, (fax, fay) = step_data(splits, idx, seen, device, label)
        retrained = model_factory(model_obj, arg, splits, group.seed, device)()
        load_state(retrained, refs[key][0])
        out.append(StepPayload(
            forget_idx=idx, seen_idx=seen, kind="class" if label is not None else "random", forget_class=label,
            original_eval=evaluate_model(original, data), retrain_eval=evaluate_model(retrained, data),
            retrain_seconds=float(refs[key][1]["train_seconds"]),
            original_forget_all_acc=accuracy(original, fax, fay), retrain_forget_all_acc=accuracy(retrained, fax, fay),
        ))
    return out


def step_data(splits, idx, seen, device: str, forget_class: int | None):
    """EvalData of one request (retain = not forgotten so far, forget = this request) and the
    (inputs, labels) of every point forgotten so far."""
    import torch

    from .evaluation import EvalData
    from .trial import split_data

    (rx, ry), (fax, fay), (tx, ty) = split_data(splits, seen, device)
    sel = torch.as_tensor(idx, dtype=torch.long)
    fx, fy = splits.train_x[sel].to(device), splits.train_y[sel].to(device)
    return EvalData(rx, ry, fx, fy, tx, ty, forget_class), (fax, fay)


def reference_summary(steps: list[StepPayload], original_accs: dict, retrain_accs: dict) -> tuple[dict, dict]:
    """The two reference rows of the summary for a ``seq:`` group: the last request's values plus
    ``forget_all_acc`` and, for the retrained reference, retraining at every request in total."""
    last = steps[-1]
    original = {**last.original_eval.accs, "forget_all_acc": last.original_forget_all_acc}
    retrain = {**last.retrain_eval.accs, "forget_all_acc": last.retrain_forget_all_acc,
               "cumulative_unlearn_seconds": sum(s.retrain_seconds for s in steps)}
    return original, retrain


def run_continual_trial(spec: dict, payload, group, fetch=lambda v: v) -> dict:
    """Run the requests of a ``seq:`` group in order on one method; return the final result."""
    import torch

    from .cache import load_state
    from .contracts import ForgetRequest, MethodContext
    from .evaluation import compare_to_references, evaluate_model
    from .measure import measure
    from .recipe import Recipe
    from .training import accuracy, seed_everything, set_threads, warm_up
    from .trial import ARTIFACTS_KEY, add_method_outputs, input_bounds, model_factory, split_data

    set_threads(spec["threads"])
    device, seed = spec["device"], spec["seed"]
    method = payload.methods[spec["method"]]
    model_obj, arg, _ = payload.models[spec["model"]]
    splits = group.splits
    new_model = model_factory(model_obj, arg, splits, seed, device)
    model = new_model()
    load_state(model, group.original_state)
    access = set(spec["data_access"].split(",")) if spec["data_access"] else set()
    recipe = Recipe(**spec["recipe"]) if "recipe" in access else None
    own_metrics: dict = {}
    if spec.get("method_train"):  # the method trains its own original (SISA): bench.method_training
        from .method_training import own_original

        first = group.steps[0]
        first_data, _ = step_data(splits, first.forget_idx, first.seen_idx, device, first.forget_class)
        model, own_metrics = own_original(method, spec, group, first_data, new_model, model_obj, arg, seed, device)

    # the input domain, when this version of ForgetRequest carries it (see continual-contract notes)
    bounds = {"input_bounds": input_bounds(splits, device)}
    results: list[dict] = []
    artifacts: dict = {}
    cum_unlearn = cum_retrain = 0.0
    warmed = False
    for t, step in enumerate(group.steps, 1):
        data, (fax, fay) = step_data(splits, step.forget_idx, step.seen_idx, device, step.forget_class)
        if not warmed:
            warm_up(new_model() if own_metrics else model, data.retain_x if len(data.retain_y) else data.forget_x,
                    data.retain_y if len(data.retain_y) else data.forget_y)
            warmed = True
        request = ForgetRequest(
            **bounds, num_classes=splits.num_classes, kind=step.kind, forget_indices=step.forget_idx, forget_class=step.forget_class,
            forget_x=data.forget_x if "forget" in access else None, forget_y=data.forget_y if "forget" in access else None,
            retain_x=data.retain_x if "retain" in access else None, retain_y=data.retain_y if "retain" in access else None,
        )
        ctx = MethodContext(seed=seed, device=device, new_model=new_model, recipe=recipe, report=None)
        seed_everything(seed)
        with measure(device) as m:
            out = method.unlearn(model, request, dict(spec["params"]), ctx)
        if not isinstance(out, torch.nn.Module):
            raise BenchError(f"Method '{spec['method']}' returned {type(out).__name__} on request {t}, not a torch.nn.Module.")
        metrics = compare_to_references(evaluate_model(out, data), step.original_eval, step.retrain_eval)
        cum_unlearn += m.seconds
        cum_retrain += step.retrain_seconds
        forget_all = accuracy(out, fax, fay)
        metrics.update({
            "unlearn_seconds": m.seconds, "retrain_seconds": step.retrain_seconds,
            "speedup_vs_retrain": step.retrain_seconds / max(m.seconds, 1e-9), **m.memory,
            "forget_size": float(len(data.forget_y)), "forget_all_size": float(len(fay)), "request": float(t),
            "forget_all_acc": forget_all, "original_forget_all_acc": step.original_forget_all_acc,
            "retrain_forget_all_acc": step.retrain_forget_all_acc,
            "forget_all_gap": abs(forget_all - step.retrain_forget_all_acc),
            "cumulative_unlearn_seconds": cum_unlearn, "cumulative_retrain_seconds": cum_retrain,
            "cumulative_speedup_vs_retrain": cum_retrain / max(cum_unlearn, 1e-9),
        })
        add_method_outputs(spec["method"], metrics, ctx)
        for name, content in metrics.pop(ARTIFACTS_KEY, {}).items():
            artifacts[f"request-{t}/{name}"] = content
        results.append(metrics)
        model = out

    final = dict(results[-1])
    for key in results[-1]:  # memory: the peak over every request
        if key.endswith("_mb") and key != "memory_delta_mb":
            final[key] = max(r[key] for r in results)
    final.update(own_metrics)
    final[STEPS_KEY] = results
    if artifacts:
        final[ARTIFACTS_KEY] = artifacts
    if payload.attacks:  # on the final model, every point forgotten so far as the forget set
        from .attack_run import run_attacks

        data = split_data(splits, group.steps[-1].seen_idx, device)
        run_attacks(payload.attacks, model, final, spec=spec, group=group, method=method, params=dict(spec["params"]),
                    access=access, data=data, new_model=new_model)
    return final


def log_earlier_steps(client, run_id: str, result: dict, default_step: int = 0) -> int:
    """Log the metrics of every request but the last as metric steps 0..T-2 of ``run_id``; return
    the step at which the final result is to be logged (T-1; ``default_step`` for other trials)."""
    steps = result.get(STEPS_KEY)
    if not steps:
        return default_step
    from .tracking import log_metrics, trial_metrics

    for t, metrics in enumerate(steps[:-1]):
        log_metrics(client, run_id, trial_metrics(metrics), step=t)
    return len(steps) - 1
