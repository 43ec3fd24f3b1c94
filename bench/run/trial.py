"""One trial: copy the original model, call the method on each request (timed, memory measured),
evaluate every result against that request's references, then run the attacks.

``run_trial(spec, payload)`` runs in a Ray Tune worker or in process (``--executor local``); both
call exactly this function, with torch's threads fixed to the trial's CPUs, so the same seed gives
the same numbers either way. A single forget request is a sequence of one: continual requests
(``--forget seq:...``, see ``bench.run.continual``) take the same path, request after request, each
applied to the model the previous one returned. ``payload`` holds, per group, the data and the
original model as safetensors bytes plus the references' evaluations (``bench.run.payload``);
under Ray its values are object references fetched with ``ray.get``.
"""

from __future__ import annotations

import copy
import numbers
import time
import weakref
from typing import Any, Callable

import torch

from bench.core.cache import load_state, model_bytes
from bench.core.contracts import MethodContext, Setting
from bench.core.errors import BenchError, no_exit
from bench.core.forget import INDICES_ARTIFACT, indices_text
from bench.core.keys import ARTIFACTS_KEY, MODEL_ARTIFACT, RESOLVED_KEY, STEPS_KEY
from bench.core.method import check_params, check_setting, prepare, saved_header, trains
from bench.core.recipe import Recipe
from bench.core.spec import TrialSpec
from bench.eval.evaluation import ModelEval, compare_to_references, evaluate_model, parameter_snapshot, weight_change
from bench.eval.measure import measure
from bench.nn.nets import model_factory
from bench.nn.torch_state import restore_torch_globals, torch_globals
from bench.nn.training import accuracy, content_digest, nonfinite_state, seed_everything, set_threads, warm_up
from bench.run.attack_step import add_metric, check_artifacts, run_attacks
from bench.run.deadline import phase, run_with_deadline
from bench.run.method_training import own_original
from bench.run.payload import GroupPayload, Payload
from bench.run.request import build_request, input_bounds, step_data


def add_method_outputs(method: str, metrics: dict, ctx: MethodContext, params: dict, resolved: dict) -> None:
    """Merge what a method put in ``ctx.metrics`` / ``ctx.artifacts`` into the trial's result, and
    its ``ctx.resolved`` into ``resolved`` (``{parameter: [values used, one per request, distinct]}``)."""
    for key, value in ctx.metrics.items():
        add_metric(f"Method '{method}'", key, value, metrics, finite=False)
    check_artifacts(f"Method '{method}'", ctx.artifacts)
    if ctx.artifacts:
        metrics.setdefault(ARTIFACTS_KEY, {}).update(ctx.artifacts)
    add_resolved(f"Method '{method}'", ctx.resolved, params, resolved)


def add_resolved(who: str, given: dict, params: dict, resolved: dict) -> None:
    """Add a method's ``ctx.resolved`` (``given``) to ``resolved``, ``{parameter: [distinct values]}``:
    keys among its ``params``, values numbers, strings or bools (as the conformance kit checks)."""
    for key, value in given.items():
        if key not in params:
            raise BenchError(f"{who} set ctx.resolved[{key!r}], which is not one of its parameters "
                             f"({', '.join(sorted(params)) or 'none'}); ctx.resolved records the value an "
                             "automatic parameter resolved to.")
        if not isinstance(value, (numbers.Real, str)):  # NumPy's numbers too (str(np.int64(5)) is "5")
            raise BenchError(f"{who} set ctx.resolved[{key!r}] = {value!r}, a {type(value).__name__}; "
                             "record a number, a string or a bool.")
        if str(value) not in (seen := resolved.setdefault(key, [])):
            seen.append(str(value))


def _check_values(spec: TrialSpec, method: Any, group: GroupPayload, network: torch.nn.Module) -> None:
    """The trial's parameters through the method's ``check_params`` and ``check_setting`` before any
    work: a sample of ``bench tune`` has values the plan never saw (a SISA sample of 18 shards x 6
    slices failed after training its ensemble on 48 points); a run's trials passed them at plan time."""
    splits = group.splits
    size = max(len(s.forget_idx) for s in group.steps)
    check_params(spec.method, method, dict(spec.params))
    check_setting(spec.method, method, dict(spec.params), Setting(
        spec.dataset, spec.model, spec.forget, splits.train_size, int(size), splits.num_classes,
        tuple(splits.input_shape), network))


def _request_tensors(request) -> dict[str, torch.Tensor]:
    found = {f"request.{k}": getattr(request, k) for k in ("forget_x", "forget_y", "retain_x", "retain_y")}
    bounds = request.input_bounds or ()
    found.update({f"request.input_bounds[{i}]": b for i, b in enumerate(bounds)})
    return {k: v for k, v in found.items() if isinstance(v, torch.Tensor)}


def unlearn_checked(method, name: str, model, request, params: dict, ctx: MethodContext, where: str = ""):
    """Call ``method.unlearn`` (the caller seeds); refuse anything but a module, and a call that
    changed the request's tensors in place: the harness evaluates the unlearned model on those very
    tensors, so its metrics would be wrong (torch counts in-place changes per tensor, ``_version``)."""
    tensors = _request_tensors(request)
    versions = {k: t._version for k, t in tensors.items()}
    saved = torch_globals()
    try:
        with no_exit(f"Method '{name}' (unlearn{where})"):
            out = method.unlearn(model, request, copy.deepcopy(dict(params)), ctx)  # nested values too: a method's next trial
    finally:
        leaked = restore_torch_globals(saved)  # set back even when it raised: the next trials need them
    if leaked:
        raise BenchError(f"Method '{name}' {leaked}{where}. The trials after it in this worker would have run with it.")
    changed = [k for k, t in tensors.items() if t._version != versions[k]]
    if changed:
        raise BenchError(f"Method '{name}' changed {', '.join(changed)} in place{where}; the harness evaluates the "
                         f"unlearned model on those very tensors, so its metrics would be wrong. Work on a copy "
                         f"(x = {changed[0]}.clone()) or use out-of-place operations.")
    if not isinstance(out, torch.nn.Module):
        raise BenchError(f"Method '{name}' returned {type(out).__name__}{where}, not a torch.nn.Module.")
    other = next(((k, p.dtype) for k, p in out.named_parameters() if p.is_floating_point() and p.dtype != torch.float32),
                 None)
    if other is not None:  # the evaluation failed with torch's "mat1 and mat2 must have the same dtype" (found in review)
        raise BenchError(f"Method '{name}' returned a model with {other[1]} parameters ('{other[0]}'){where}; bench "
                         f"evaluates float32 models on float32 data: convert it back (model.float()) before returning.")
    return out


def _refuse_changed_contents(name: str, given: dict, digests: dict, where: str) -> None:
    """Refuse a call that changed the request's tensors (``given``, the objects the harness also
    evaluates on) without torch counting it (through ``.data``, a NumPy view, ``t.data = other``):
    ``unlearn_checked`` sees only in-place operations."""
    changed = [k for k, t in given.items() if content_digest(t) != digests[k]]
    if changed:
        raise BenchError(f"Method '{name}' changed the contents of {', '.join(changed)}{where} (through .data, a "
                         f"NumPy view or a reassignment, which torch's in-place check does not see); the harness "
                         f"evaluates the unlearned model on those very tensors, so its metrics would be wrong. "
                         f"Work on a copy (x = {changed[0]}.clone()).")


def checked_eval(name: str, ev: ModelEval, classes: int, where: str = "") -> ModelEval:
    """Refuse a model whose outputs are not one finite logit per class, before any metric or attack
    is computed on it: a NaN model would otherwise score (forget_acc 0, JS "-") and could rank
    first, and a model with another output width would score too (argmax over 1 output is always
    class 0: an accuracy, with the JS divergence broadcast against the references' 10 classes)."""
    if ev.outputs != (classes,):
        shape = ", ".join(["N", *map(str, ev.outputs)])
        raise BenchError(f"Method '{name}' returned a model whose outputs have shape ({shape}){where}; expected "
                         f"(N, {classes}), one logit per class: keep the classifier's output layer.")
    if ev.nonfinite is not None:
        raise BenchError(f"Method '{name}' returned a model with {ev.nonfinite}{where}.")
    if ev.probabilities:  # a final softmax added: every divergence and attack score of softmax(p), exit 0 (review)
        raise BenchError(f"Method '{name}' returned a model whose outputs are probabilities (rows of values in [0, 1] "
                         f"summing to 1){where}; bench applies softmax to a model's outputs itself, so its divergences "
                         "and attack scores would be wrong: return the logits (no final softmax).")
    return ev


def refuse_nonfinite_weights(name: str, model: torch.nn.Module, where: str = "") -> None:
    """Refuse a returned model with a NaN or infinite parameter or buffer whose outputs are finite
    (checked after :func:`checked_eval`): a part whose outputs are discarded still counts. SISA's
    argmax vote turns a NaN shard model into a vote for class 0, and the ensemble would score as if
    sound (params audit, 2026-12-07)."""
    bad = nonfinite_state(model)
    if bad is not None:
        raise BenchError(f"Method '{name}' returned a model with NaN or infinite values in {bad}{where}, though its "
                         f"outputs are finite (a diverged part whose outputs are discarded or outvoted, such as an "
                         f"ensemble's member): its metrics would be those of a broken model. Lower the method's "
                         f"learning rate or check its update.")


#: the models methods returned in this process's earlier trials (weakly held: a model nobody keeps
#: goes): a method that returned one again had kept it (on itself, in a module global), and its
#: metrics were that trial's model's, exit 0 (seed 0's unlearned model scored as seed 1's, found
#: in review 2026-12-07). Within a trial, a continual request's method may return the model it is
#: given, the previous request's result, changed in place: that is its own.
_RETURNED_BEFORE: "weakref.WeakValueDictionary[int, torch.nn.Module]" = weakref.WeakValueDictionary()  # by id


def refuse_kept_result(name: str, out: torch.nn.Module, where: str = "") -> None:
    if _RETURNED_BEFORE.get(id(out)) is out:
        raise BenchError(f"Method '{name}' returned the very model object it returned in an earlier trial{where}: it "
                         f"keeps its result between calls (on self or in a module global), so this trial would score "
                         f"that trial's model. Return a model unlearned in this call.")


def refuse_eval_flaws(name: str, model: torch.nn.Module, x: torch.Tensor, where: str = "") -> None:
    """Refuse a returned model whose eval-mode logits change from one forward to the next, or whose
    row's logits depend on the other rows of its batch, as the plan refuses such a model plugin
    (``bench.run.model_probe``): a method whose model applied ``F.dropout`` in a forward hook scored
    test_acc 0.797 against 0.960, exit 0 (found in review, 2026-12-07); a model normalising with the
    batch's statistics at evaluation gives numbers that depend on the evaluation's batch size. Two
    forwards of eight test inputs, then the first two rows alone, to the probe's tolerance on the CPU
    and to 1e-2 relative, 1e-3 absolute on a GPU (TF32 convolutions and kernels chosen by batch size
    round to about 1e-3 there; unverified on a GPU so far, hence the margin). Nothing is reseeded: a model
    that draws no random number leaves the generators as they were, so the trial's numbers are those
    without the check."""
    if len(x) < 2:
        return
    from bench.nn.training import model_device, predict_logits
    from bench.run.model_probe import ATOL, EVAL_FLAWS, RTOL, eval_flaw

    tolerance = (RTOL, ATOL)
    if model_device(model, x.device).type != "cpu":  # TF32 convolutions and batch-size-dependent kernels round
        tolerance = (1e-2, 1e-3)  # to about 1e-3 relative; dropout or batch statistics move logits by far more
    flaw = eval_flaw(lambda rows: predict_logits(model, rows), x[:8], reseed=lambda i: None, rows=2, tolerance=tolerance)
    if flaw == "random":
        raise BenchError(f"Method '{name}' returned a model that {EVAL_FLAWS[flaw]}{where}.")
    if flaw == "batch":
        raise BenchError(f"Method '{name}' returned a model whose outputs depend on their batch{where}: {EVAL_FLAWS[flaw]}.")


def run_trial(spec: TrialSpec, payload: Payload, fetch: Callable[[Any], Any] = lambda v: v,
              report: Callable[[dict], None] | None = None) -> dict[str, float]:
    """Run one trial and return its metrics. ``report``, if given, receives the metrics of the
    intermediate models a method passes to ``ctx.report`` (for schedulers such as ASHA; single
    requests only). With ``--trial-timeout`` (``payload.trial_timeout``) a trial still running
    past it is stopped and fails (``bench.run.deadline``)."""
    if payload.trial_timeout:
        import_lazy_torch()
    return run_with_deadline(payload.trial_timeout, f"Trial {spec.trial_name}", _run_trial, spec, payload, fetch, report)


def import_lazy_torch() -> None:
    """Import what torch imports at an optimiser's first step (``torch._dynamo``, 1.1 s; nothing
    more after it) before a trial's ``--trial-timeout`` clock starts: a timeout that cut that import
    short left torch half-initialised, and every later trial of the process failed ("Artifact of
    type=pgo already registered", 3 of 3 tries with a 0.5 s timeout; found in review 2026-12-07)."""
    import torch._dynamo  # noqa: F401


def _run_trial(spec: TrialSpec, payload: Payload, fetch: Callable[[Any], Any],
               report: Callable[[dict], None] | None) -> dict[str, float]:
    set_threads(spec.threads)
    device, seed = spec.device, spec.seed
    group: GroupPayload = fetch(payload.groups[spec.group])
    method = payload.methods[spec.method]
    model_obj, arg, _ = payload.models[spec.model]
    splits = group.splits
    new_model = model_factory(model_obj, arg, splits, seed, device)
    model = new_model()
    _check_values(spec, method, group, model)
    load_state(model, group.original_state)
    recipe = Recipe(**spec.recipe) if spec.uses("recipe") else None
    bounds = input_bounds(splits, device)

    first = group.steps[0]
    data, everything = step_data(splits, first.forget_idx, first.seen_idx, device, first.forget_class)
    own_metrics: dict = {}
    own_load = None  # fresh copies of the method's own original, for the attacks that unlearn again
    if spec.own_original is not None:  # the method trains its own original (SISA): bench.run.method_training
        with phase(f"method '{spec.method}' loading or training its own original"):
            model, own_metrics, own_load = own_original(method, spec, group, data, new_model, model_obj, arg)
    warm_up(new_model() if own_metrics else model, data.retain_x if len(data.retain_y) else data.forget_x,
            data.retain_y if len(data.retain_y) else data.forget_y, optimizer=trains(method) or bool(own_metrics))
    prepare(method)  # the method's one-off imports, outside unlearn_seconds

    results: list[dict] = []
    artifacts: dict = {}
    cum_unlearn = cum_retrain = 0.0
    resolved: dict[str, list[str]] = {}
    for t, step in enumerate(group.steps, 1):
        if t > 1:
            data, everything = step_data(splits, step.forget_idx, step.seen_idx, device, step.forget_class)
        request = build_request(num_classes=splits.num_classes, kind=step.kind, forget_indices=step.forget_idx,
                                forget_class=step.forget_class, forget=(data.forget_x, data.forget_y),
                                retain=(data.retain_x, data.retain_y), access=spec.data_access, bounds=bounds)
        report_model = None
        reporting = [0.0]  # seconds inside ctx.report (ASHA's per-epoch evaluations): not the method's time
        if report is not None and not group.continual:
            def report_model(intermediate, step=step, data=data) -> None:
                if str(device).startswith("cuda"):  # the method's queued kernels are its time, not the report's
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                try:
                    ev = checked_eval(spec.method, evaluate_model(intermediate, data), splits.num_classes,
                                      " (a model passed to ctx.report)")
                    report(compare_to_references(ev, step.original_eval, step.retrain_eval))  # Tune may stop it here
                finally:
                    reporting[0] += time.perf_counter() - t0

        ctx = MethodContext(seed=seed, device=device, new_model=new_model, recipe=recipe, report=report_model)
        # on a continual request, the forget accuracy of the model the method is given (the previous
        # request's result): with nothing left to forget, returning it unchanged is right
        given_acc = accuracy(model, data.forget_x, data.forget_y) if group.continual else None
        seed_everything(seed)
        where = f" on request {t}" if group.continual else ""
        given = _request_tensors(request)
        digests = {k: content_digest(v) for k, v in given.items()}  # outside the timing
        before = parameter_snapshot(model)  # θ_0 of weight_change, on the CPU
        with measure(device) as m:
            with phase(f"method '{spec.method}'{where}"):
                out = unlearn_checked(method, spec.method, model, request, spec.params, ctx, where)
        _refuse_changed_contents(spec.method, given, digests, where)
        refuse_kept_result(spec.method, out, where)
        with phase(f"the evaluation of the unlearned model{where}"):
            ev = checked_eval(spec.method, evaluate_model(out, data), splits.num_classes, where)
            refuse_nonfinite_weights(spec.method, out, where)
            refuse_eval_flaws(spec.method, out, data.test_x, where)
        metrics = compare_to_references(ev, step.original_eval, step.retrain_eval)
        # under ASHA, less the per-epoch evaluations: a sample ASHA let finish counted them as its own (tune audit)
        seconds = m.seconds - reporting[0]
        metrics.update({"unlearn_seconds": seconds, "retrain_seconds": step.retrain_seconds,
                        "speedup_vs_retrain": step.retrain_seconds / max(seconds, 1e-9), **m.memory,
                        "forget_size": float(len(data.forget_y))})
        change = weight_change(before, out)
        if change is not None:
            metrics["weight_change"] = change
        del before
        if group.continual:
            cum_unlearn += seconds
            cum_retrain += step.retrain_seconds
            forget_all = accuracy(out, *everything)
            metrics.update({
                "input_forget_acc": given_acc,
                "forget_all_size": float(len(everything[1])), "request": float(t),
                "forget_all_acc": forget_all, "original_forget_all_acc": step.original_forget_all_acc,
                "retrain_forget_all_acc": step.retrain_forget_all_acc,
                "forget_all_gap": abs(forget_all - step.retrain_forget_all_acc),
                "cumulative_unlearn_seconds": cum_unlearn, "cumulative_retrain_seconds": cum_retrain,
                "cumulative_speedup_vs_retrain": cum_retrain / max(cum_unlearn, 1e-9),
            })
        if not group.continual:
            metrics.update(own_metrics)
        add_method_outputs(spec.method, metrics, ctx, spec.params, resolved)
        if group.continual:
            for name, content in metrics.pop(ARTIFACTS_KEY, {}).items():
                artifacts[f"request-{t}/{name}"] = content
        results.append(metrics)
        model = out

    _RETURNED_BEFORE[id(model)] = model  # the trial's last result (the earlier requests' are its inputs)
    final = dict(results[-1])
    if resolved:  # a value per request where they differed (a seq: request's retain set shrinks)
        final[RESOLVED_KEY] = {key: ",".join(values) for key, values in resolved.items()}
    if group.continual:
        for key in results[-1]:  # memory: the peak over every request
            if key.endswith("_mb") and key != "memory_delta_mb":
                final[key] = max(r[key] for r in results)
        final[STEPS_KEY] = results
        if own_metrics:  # the own original's accuracies on each logged step's sets, as original_*'s are
            results[0].update(own_metrics)  # measured on request 1's sets (they were logged with the last)
            last = evaluate_model(own_load(), data).accs
            final.update({"train_seconds": own_metrics["train_seconds"],
                          **{f"method_original_{k}": v for k, v in last.items()}})
        if artifacts:
            final[ARTIFACTS_KEY] = artifacts
    if payload.save_models:  # the model measured, with what rebuilds its architecture (bench.run.saved_models);
        # before the attacks: one that changed it in place loses only its own numbers (attack_step)
        header = {"method": spec.method, "model": spec.model, "dataset": spec.dataset, "seed": str(seed),
                  "num_classes": str(splits.num_classes), "input_shape": ",".join(map(str, splits.input_shape)),
                  "trial_key": spec.trial_key}  # + what rebuilds another architecture (PRUNE's, SISA's)
        final.setdefault(ARTIFACTS_KEY, {})[MODEL_ARTIFACT] = model_bytes(model, {
            **saved_header(method, model, header), **header})
    if payload.attacks:  # on the final model, every point forgotten so far as the forget set
        run_attacks(payload.attacks, model, final, spec=spec, group=group, method=method,
                    data=((data.retain_x, data.retain_y), everything, (data.test_x, data.test_y)),
                    new_model=new_model, bounds=bounds, original=own_load, method_keys=ctx.metrics,
                    forgotten_classes=data.forgotten_classes)
    # the forget set, so another run can reuse exactly it (--forget indices:RUN_ID)
    head = dict(dataset=spec.dataset, forget=spec.forget, forget_seed=spec.forget_seed, train_size=len(splits.train_y),
                train_sha256=group.train_sha256 or None)
    final.setdefault(ARTIFACTS_KEY, {})[INDICES_ARTIFACT] = indices_text(group.forget_idx, **head)
    if group.continual:  # each request's own points: its forget_acc and gaps are measured on them (metrics audit)
        for t, step in enumerate(group.steps, 1):
            final[ARTIFACTS_KEY][f"request-{t}/{INDICES_ARTIFACT}"] = indices_text(
                step.forget_idx, **head, request=f"{t} of {len(group.steps)}")
    return final
