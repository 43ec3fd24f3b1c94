"""Method-specific originals: the optional ``train`` hook of a method (SISA's sharded ensemble).

A method that changes how the original model is trained implements the ``OwnTraining`` protocol
(``bench.core.contracts.OwnTraining``: ``train(x, y, params, ctx)``, ``save_trained(model) -> bytes``
(safetensors) and ``load_trained(data, params, ctx)``). The plan gives each of its trials the
cache key of the original it starts from (``TrialSpec.own_original``, ``bench.run.plan``). The harness trains that original ONCE per (dataset content, model,
recipe, seed, the method's training params, its ``train_version``) and keeps it in the
content-addressed reference cache beside the original and retrained references: the jobs below
go through the same ``ensure_references``/``train_many`` as those (Ray tasks under the Ray
executor, in process under ``--executor local``; the bytes come back to the driver). Every
trial of that method then loads it as its ``model`` and reports ``train_seconds`` (the time the
train hook took) and the accuracies of that own original before unlearning
(``method_original_retain_acc``, ``method_original_forget_acc``, ``method_original_test_acc``).
The ``original_*`` and ``retrain_*`` metrics stay those of the monolithic references.

A trial whose training params differ from those its plan trained (``bench tune`` sampling
``sisa.shards``) trains its own original inside the trial, uncached, and reports it the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from bench.core.contracts import MethodContext
from bench.core.errors import BenchError, no_exit
from bench.core.method import training_params
from bench.core.recipe import Recipe
from bench.core.spec import TrialSpec
from bench.eval.evaluation import evaluate_model
from bench.nn.nets import model_factory
from bench.nn.training import check_trained, seed_everything, set_threads, warm_up
from bench.run.plan import own_original_doc


@dataclass
class MethodTrainJob:
    """One method-specific original to train (the interface of ``bench.run.references.RefJob``)."""

    key: str
    doc: dict
    method: Any
    params: dict
    model_obj: Any
    arg: str | None
    splits: Any
    recipe: Any
    seed: int
    device: str
    threads: int

    def describe(self) -> str:
        d = self.doc
        return f"{d['method']} original {d['dataset']}/{d['model']} seed={d['seed']} {json.dumps(d['train_params'], sort_keys=True)}"

    def run(self) -> tuple[bytes, float]:
        return train_own_original(self.method, self.params, self.model_obj, self.arg, self.splits, self.recipe,
                                  self.seed, self.device, self.threads)


def method_training_jobs(plan) -> list[MethodTrainJob]:
    """One job per distinct own original the plan's trials start from."""
    jobs: dict[str, MethodTrainJob] = {}
    groups = {g.gid: g for g in plan.groups}
    methods = {m.name: m.obj for m in plan.methods}
    for spec in plan.trials:
        own = spec.own_original
        if own is None or own.key in jobs:
            continue
        g = groups[spec.group]
        model_obj, arg, _ = plan.models[g.model]
        doc = own_original_doc(spec.method, methods[spec.method], g, own.train_params)
        jobs[own.key] = MethodTrainJob(own.key, doc, methods[spec.method],
                                       dict(spec.params), model_obj, arg, plan.splits[g.dataset], g.recipe, g.seed,
                                       plan.device, max(1, int(plan.options.cpus_per_trial)))
    return list(jobs.values())


def originals_by_group(plan, refs: dict) -> dict[str, dict[str, tuple[bytes, float]]]:
    """``{gid: {own-original key: (bytes, train seconds)}}`` for the payload (those that trained)."""
    out: dict[str, dict] = {}
    for spec in plan.trials:
        if spec.own_original is not None and spec.own_original.key in refs:
            data, meta = refs[spec.own_original.key]
            out.setdefault(spec.group, {})[spec.own_original.key] = (data, float(meta["train_seconds"]))
    return out


def train_own_original(method, params, model_obj, arg, splits, recipe, seed: int, device: str,
                       threads: int) -> tuple[bytes, float]:
    """Run the method's train hook on the whole training split; return (safetensors bytes, seconds)."""
    set_threads(threads)
    x, y = splits.train_x.to(device), splits.train_y.to(device)
    new_model = model_factory(model_obj, arg, splits, seed, device)
    warm_up(new_model(), x, y)
    seed_everything(seed)
    ctx = MethodContext(seed=seed, device=device, new_model=new_model, recipe=recipe)
    t0 = time.perf_counter()
    with no_exit(f"Method '{method.name}' (train)"):
        model = method.train(x, y, dict(params), ctx)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)  # that GPU's queue (a bare call waits on the current one)
    seconds = time.perf_counter() - t0
    if not isinstance(model, torch.nn.Module):
        raise BenchError(f"Method '{method.name}': train() returned {type(model).__name__}, not a torch.nn.Module.")
    check_trained(model, x, f"Method '{method.name}': its own original", recipe)
    with no_exit(f"Method '{method.name}' (save_trained)"):
        data = method.save_trained(model)
    _check_safetensors(method.name, data)
    return data, seconds


def _check_safetensors(name: str, data: Any) -> None:
    from safetensors.torch import load

    try:
        if not isinstance(data, bytes):
            raise TypeError(f"got {type(data).__name__}")
        load(data)
    except Exception as exc:
        raise BenchError(f"Method '{name}': save_trained() must return safetensors bytes (safetensors.torch.save); "
                         f"{type(exc).__name__}: {exc}") from None


def own_original(method, spec: TrialSpec, group, data, new_model, model_obj,
                 arg) -> tuple[torch.nn.Module, dict, Callable[[], torch.nn.Module]]:
    """The trial's model for a method with its own training, its extra metrics (``train_seconds``
    and ``method_original_*``, the own original's accuracies before unlearning) and a factory of
    fresh copies of that original (what ``epsilon`` unlearns again with other seeds)."""
    own = spec.own_original
    params = dict(spec.params)
    cached = group.method_originals.get(own.key)
    if cached is not None and training_params(method, params) == dict(own.train_params):
        blob, seconds = cached
    else:  # e.g. bench tune sampled a training param: train this trial's own original here
        blob, seconds = train_own_original(method, params, model_obj, arg, group.splits, Recipe(**spec.recipe),
                                           spec.seed, spec.device, spec.threads)
    ctx = MethodContext(seed=spec.seed, device=spec.device, new_model=new_model)

    def load() -> torch.nn.Module:
        with no_exit(f"Method '{method.name}' (load_trained)"):
            return method.load_trained(blob, params, ctx)

    model = load()
    accs = evaluate_model(model, data).accs
    metrics = {"train_seconds": seconds}
    metrics.update({f"method_original_{k}": v for k, v in accs.items()})
    return model, metrics, load
