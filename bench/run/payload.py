"""What the trials of a run share, built once by the driver after the references exist.

Per group: the data (``Splits`` on the CPU), the original model as safetensors bytes, each
request's evaluation of both references (one :class:`Step` for a single request, one per request
of a ``seq:`` spec), the originals that methods with their own training trained, and the models
the attacks declared (shadows, the retrained reference). Under Ray each group travels through the
object store once. A group whose reference failed to train is left out (``Payload.failures``), and
so is a method's own original that failed: :func:`blocked_trials` fails the trials that need them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from bench.core import console
from bench.core.cache import load_state
from bench.eval.evaluation import evaluate_model
from bench.nn.nets import model_factory
from bench.nn.training import accuracy
from bench.run.continual import reference_summary, seen_after_each, step_training_sets
from bench.run.references import RefJob
from bench.run.request import step_data


@dataclass(frozen=True)
class Step:
    """One forget request of a group and both references evaluated on its data."""

    forget_idx: Any  # this request's training indices (sorted int64)
    seen_idx: Any  # every point forgotten after it (requests 1..t); forget_idx itself for a single request
    kind: str  # the ForgetRequest.kind of this request
    forget_class: int | None
    original_eval: Any  # bench.eval.evaluation.ModelEval
    retrain_eval: Any
    retrain_seconds: float
    original_forget_all_acc: float | None = None  # seq: only (accuracy on every point forgotten so far)
    retrain_forget_all_acc: float | None = None


@dataclass(frozen=True)
class GroupPayload:
    """What every trial of a group shares."""

    splits: Any  # bench.core.contracts.Splits, on the CPU
    forget_idx: Any  # every point the group forgets (np.ndarray of training indices)
    original_state: bytes
    steps: tuple[Step, ...]
    continual: bool  # a ``seq:`` request (metrics per request, forget_all_*, cumulative_*)
    method_originals: Mapping[str, tuple[bytes, float]] = field(default_factory=dict)  # own-original key -> (bytes, s)
    attack_models: Mapping[str, Any] = field(default_factory=dict)  # "shadows", "retrain_shadows", "reference"
    train_sha256: str = ""  # the training tensors' digest (bench.core.cache.tensor_digest), for the indices artifact


@dataclass(frozen=True)
class Payload:
    groups: dict[str, Any]  # gid -> GroupPayload (or an object ref to one)
    methods: dict[str, Any]  # name -> method object
    models: dict[str, tuple[Any, str | None, str]]  # model spec -> (plugin object, arg, origin)
    attacks: dict[str, Any]
    #: what could not be built, with the traceback of its training: ``{gid: text}`` for a group whose
    #: reference failed, ``{own-original key: text}`` for a method's own original
    failures: Mapping[str, str] = field(default_factory=dict)
    trial_timeout: float | None = None  # --trial-timeout: seconds a trial may run (bench.run.deadline)
    save_models: bool = False  # --save-models: each trial keeps its unlearned model (MODEL_ARTIFACT)
    #: warnings about the measurements, said and recorded on the parent run (``Tag.WARNINGS``)
    warnings: tuple[str, ...] = ()


def group_keys(g) -> list[str]:
    """The cache keys of a group's references: the original, the retrained one, each request's."""
    return [g.original_key, g.retrain_key, *(key for key, _ in (g.step_refs or ()))]


def blocked_trials(trials, payload: Payload) -> dict[int, str]:
    """``{position in trials: error text}`` for the trials that cannot run because a reference they
    need failed to train (their group's, or their method's own original)."""
    out = {}
    for i, spec in enumerate(trials):
        own = spec.own_original.key if spec.own_original is not None else None
        text = payload.failures.get(spec.group) or (payload.failures.get(own) if own else None)
        if text:
            out[i] = text
    return out


def reference_jobs(plan) -> list[RefJob]:
    """The original and retrained reference of every group (and of every request of a ``seq:`` group)."""
    jobs = []
    for g in plan.groups:
        model_obj, arg, _ = plan.models[g.model]
        sp = plan.splits[g.dataset]
        common = dict(model_obj=model_obj, arg=arg, splits=sp, recipe=g.recipe, seed=g.seed, device=plan.device,
                      threads=max(1, int(plan.options.cpus_per_trial)))
        jobs.append(RefJob(key=g.original_key, doc=g.original_doc, train_idx=None, **common))
        keep = np.setdiff1d(np.arange(sp.train_size), g.forget_idx)
        jobs.append(RefJob(key=g.retrain_key, doc=g.retrain_doc, train_idx=keep, **common))
        if g.steps is not None:
            jobs.extend(RefJob(key=key, doc=doc, train_idx=idx, **common) for key, doc, idx in step_training_sets(g, sp.train_size))
    return jobs


def _model(plan, g, state: bytes):
    model_obj, arg, _ = plan.models[g.model]
    model = model_factory(model_obj, arg, plan.splits[g.dataset], g.seed, plan.device)()
    load_state(model, state)
    return model


def read_only(a) -> np.ndarray:
    """A read-only view of ``a``: the indices every trial of a group selects its data with are
    shared in process (``--executor local``), so a method or attack writing to them would change
    the forget set of the trials after it (under Ray they arrive read-only anyway)."""
    view = np.asarray(a).view()
    view.flags.writeable = False
    return view


def group_steps(plan, g, refs: dict) -> tuple[Step, ...]:
    """Evaluate the original and each request's retrained reference on that request's data."""
    sp = plan.splits[g.dataset]
    original = _model(plan, g, refs[g.original_key][0])
    if g.steps is None:
        forget_class = g.forget.label if g.forget.kind == "class" else None
        idx = read_only(g.forget_idx)
        data, _ = step_data(sp, idx, idx, plan.device, forget_class)
        retrained = _model(plan, g, refs[g.retrain_key][0])
        return (Step(idx, idx, g.forget.kind, forget_class, evaluate_model(original, data),
                     evaluate_model(retrained, data), float(refs[g.retrain_key][1]["train_seconds"])),)
    out = []
    for idx, seen, (key, _) in zip(g.steps, seen_after_each(g.steps), g.step_refs, strict=True):
        label = int(sp.train_y[idx[0]]) if g.forget.labels is not None else None
        data, (fax, fay) = step_data(sp, idx, seen, plan.device, label)
        retrained = _model(plan, g, refs[key][0])
        out.append(Step(
            forget_idx=read_only(idx), seen_idx=read_only(seen), kind="class" if label is not None else "random", forget_class=label,
            original_eval=evaluate_model(original, data), retrain_eval=evaluate_model(retrained, data),
            retrain_seconds=float(refs[key][1]["train_seconds"]),
            original_forget_all_acc=accuracy(original, fax, fay), retrain_forget_all_acc=accuracy(retrained, fax, fay),
        ))
    return tuple(out)


def _broken_reference(g, steps, classes: int) -> str | None:
    """The error text for a group whose original or a retrained reference has non-finite outputs
    (an entry cached before bench refused diverged trainings, say), or outputs of another width than
    one logit per class (a model plugin whose forward gives another shape on the test set's batches
    than on the plan's two rows: its accuracies were printed as 0.000 and each method blamed; plugins
    audit), else None."""
    for n, step in enumerate(steps, 1):
        for what, ev in (("original", step.original_eval), ("retrained reference", step.retrain_eval)):
            if ev.outputs != (classes,):
                shape = ", ".join(["N", *map(str, ev.outputs)])
                return (f"The {what} of {g.dataset}/{g.model} seed={g.seed} gives outputs of shape ({shape}) on the "
                        f"test set; expected (N, {classes}), one logit per class: the model plugin's forward gives "
                        f"another shape on larger batches than on the plan's check (two rows).\n"
                        "(the trials that need it did not run)")
            if ev.nonfinite is not None:
                where = f" of request {n}" if len(steps) > 1 else ""
                return (f"The {what}{where} of {g.dataset}/{g.model} seed={g.seed} has "
                        f"{ev.nonfinite}: its training diverged; lower the recipe's learning rate (--recipe lr=...).\n"
                        "(the trials that need it did not run)")
    return None


def build_payload(plan, refs: dict, method_originals: dict[str, dict], attack_models: dict[str, dict],
                  failed: Mapping[str, str] | None = None) -> tuple[Payload, list[dict]]:
    """Evaluate the references of every group once; bundle what the trials share. Returns the
    payload and the reference rows of the summary. ``failed``: {key: text} of the references and
    own originals that failed to train (``ensure_references``); their groups and trials are left out."""
    failures = dict(failed or {})  # grows by the gid of every group left out
    groups, ref_rows = {}, []
    # minutes on large data, before the first trial: reported as the references' evaluation (24 s
    # of silence at 20,000 images; scale audit, 2026-12-07)
    with console.task(f"evaluating the references of {len(plan.groups)} setting(s) x seed(s)"):
        for i in console.epochs(len(plan.groups), "group"):
            _group_payload(plan, plan.groups[i], refs, method_originals, attack_models, failures, groups, ref_rows)
    payload = Payload(groups=groups, methods={m.name: m.obj for m in plan.methods}, models=plan.models, attacks=plan.attacks,
                      failures=failures, trial_timeout=plan.options.trial_timeout, save_models=plan.options.save_models)
    return payload, ref_rows


def _group_payload(plan, g, refs, method_originals, attack_models, failures: dict, groups: dict, ref_rows: list) -> None:
    """One group's evaluated references into ``groups`` and ``ref_rows``, or its failure into ``failures``."""
    bad = [failures[key] for key in (*group_keys(g), g.gid) if key in failures]  # references, attack models
    if bad:
        failures[g.gid] = bad[0]
        return
    try:
        steps = group_steps(plan, g, refs)
    except Exception:  # a model plugin's create or eval-mode forward (on more rows than the plan's probe)
        import traceback  # raised here: the whole run ended, the other groups' trials too (plugins audit)

        failures[g.gid] = (f"{traceback.format_exc().rstrip()}\n(while evaluating the references of {g.dataset}/"
                           f"{g.model} seed={g.seed}; the trials that need them did not run)")
        return
    broken = _broken_reference(g, steps, plan.splits[g.dataset].num_classes)
    if broken:
        failures[g.gid] = broken
        return
    groups[g.gid] = GroupPayload(
        splits=plan.splits[g.dataset], forget_idx=read_only(g.forget_idx), original_state=refs[g.original_key][0], steps=steps,
        continual=g.steps is not None, method_originals=method_originals.get(g.gid, {}),
        attack_models=attack_models.get(g.gid, {}), train_sha256=g.retrain_doc["data_sha256"],
    )
    row = {"setting": (g.dataset, g.model, g.forget.text), "seed": g.seed, "original": steps[-1].original_eval.accs,
           "retrain": steps[-1].retrain_eval.accs, "retrain_seconds": float(refs[g.retrain_key][1]["train_seconds"])}
    if g.steps is not None:
        row["original"], row["retrain"] = reference_summary(steps)
    ref_rows.append(row)

