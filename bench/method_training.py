"""Method-specific originals: the optional ``train`` hook of a method (SISA's sharded ensemble).

A method that changes how the original model is trained defines ``train(x, y, params, ctx)``,
``save_trained(model) -> bytes`` (safetensors) and ``load_trained(data, params, ctx)`` (see
``bench.contracts.Method``). The harness trains that original ONCE per (dataset content, model,
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
from typing import Any

from .errors import BenchError

HOOK = ("train", "save_trained", "load_trained")


def has_train_hook(method: Any) -> bool:
    return callable(getattr(method, "train", None))


def check_train_hook(name: str, method: Any) -> None:
    missing = [h for h in HOOK if not callable(getattr(method, h, None))]
    if missing:
        raise BenchError(f"Method '{name}' defines train() but not {', '.join(missing)}: a method with its own training "
                         f"must also define save_trained(model) -> bytes and load_trained(data, params, ctx) so the "
                         f"harness can cache what it trained.")


def training_params(method: Any, params: dict) -> dict:
    """The params that change what ``train`` produces (all of them unless the method says)."""
    if hasattr(method, "training_params"):
        return dict(method.training_params(dict(params)))
    return dict(params)


@dataclass
class MethodTrainJob:
    """One method-specific original to train (same interface as ``references.RefJob``)."""

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
    """One job per (group, method with a train hook); each trial of such a method gets
    ``spec["method_train"] = {"key": ..., "train_params": ...}`` (in place)."""
    from .cache import cache_key

    jobs: list[MethodTrainJob] = []
    groups = {g.gid: g for g in plan.groups}
    methods = {m.name: m for m in plan.methods}
    for spec in plan.trials:
        m = methods[spec["method"]]
        if not has_train_hook(m.obj):
            continue
        check_train_hook(m.name, m.obj)
        g = groups[spec["group"]]
        tparams = training_params(m.obj, spec["params"])
        base = {k: v for k, v in g.original_doc.items() if k != "kind"}
        doc = {"kind": "method-original", "method": m.name, "train_version": str(getattr(m.obj, "train_version", "")),
               "train_params": tparams, **base}
        key = cache_key(doc)
        spec["method_train"] = {"key": key, "train_params": tparams}
        if any(j.key == key for j in jobs):
            continue
        model_obj, arg, _ = plan.models[g.model]
        jobs.append(MethodTrainJob(key, doc, m.obj, dict(spec["params"]), model_obj, arg, plan.splits[g.dataset],
                                   g.recipe, g.seed, plan.device, max(1, int(plan.options.cpus_per_trial))))
    return jobs


def attach_originals(plan, payload, refs: dict) -> None:
    """Hand each group's method-specific originals (bytes, train seconds) to its trials."""
    for spec in plan.trials:
        own = spec.get("method_train")
        if own is not None:
            data, meta = refs[own["key"]]
            payload.groups[spec["group"]].method_originals[own["key"]] = (data, float(meta["train_seconds"]))


def train_own_original(method, params, model_obj, arg, splits, recipe, seed: int, device: str,
                       threads: int) -> tuple[bytes, float]:
    """Run the method's train hook on the whole training split; return (safetensors bytes, seconds)."""
    import torch

    from .contracts import MethodContext
    from .training import seed_everything, set_threads, warm_up
    from .trial import model_factory

    set_threads(threads)
    x, y = splits.train_x.to(device), splits.train_y.to(device)
    new_model = model_factory(model_obj, arg, splits, seed, device)
    warm_up(new_model(), x, y)
    seed_everything(seed)
    ctx = MethodContext(seed=seed, device=device, new_model=new_model, recipe=recipe)
    t0 = time.perf_counter()
    model = method.train(x, y, dict(params), ctx)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    if not isinstance(model, torch.nn.Module):
        raise BenchError(f"Method '{method.name}': train() returned {type(model).__name__}, not a torch.nn.Module.")
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


def own_original(method, spec: dict, group, data, new_model, model_obj, arg, seed: int, device: str):
    """The trial's model for a method with a train hook, and its extra metrics:
    ``train_seconds`` and ``method_original_*`` (the own original's accuracies before unlearning)."""
    from .contracts import MethodContext
    from .evaluation import evaluate_model
    from .recipe import Recipe

    own = spec["method_train"]
    params = dict(spec["params"])
    method_obj = method
    cached = group.method_originals.get(own["key"])
    if cached is not None and training_params(method_obj, params) == own["train_params"]:
        blob, seconds = cached
    else:  # e.g. bench tune sampled a training param: train this trial's own original here
        blob, seconds = train_own_original(method_obj, params, model_obj, arg, group.splits, Recipe(**spec["recipe"]),
                                           seed, device, spec["threads"])
    ctx = MethodContext(seed=seed, device=device, new_model=new_model)
    model = method_obj.load_trained(blob, params, ctx)
    accs = evaluate_model(model, data).accs
    metrics = {"train_seconds": seconds}
    metrics.update({f"method_original_{k}": v for k, v in accs.items()})
    return model, metrics
