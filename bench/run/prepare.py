"""Everything the trials share, made before the first trial: the references (loaded from the
cache or trained, as Ray tasks under the ray executor), the originals of methods with their own
training, the models the attacks declare, and the evaluations of the references."""

from __future__ import annotations

import dataclasses

from typing import Callable

from bench.core.cache import ReferenceCache
from bench.core.errors import no_exit
from bench.eval.shadows import ensure_shadow_set, needs_of
from bench.run.ref_tasks import release_cuda_memory, train_many_local, train_many_ray
from bench.run.method_training import method_training_jobs, originals_by_group
from bench.run.payload import Payload, build_payload, group_keys, reference_jobs
from bench.run.original import ORIGINAL_KEYS
from bench.run.references import (
    ensure_references,
    warn_chance_references,
    warn_few_attack_points,
    warn_shadow_attacks_on_own_originals,
    warn_recipe_mismatch,
    warn_untestable_classes,
)
from bench.track.tracking import error_line


def attack_models(plan, refs: dict, say: Callable[[str], None], versions: dict,
                  failed: dict[str, str] | None = None) -> dict[str, dict]:
    """``{gid: extras}``: what the selected attacks declare in ``needs``, per group.

    ``"shadows"``: ``--shadow-models`` pool shadows; ``"retrain_shadows"``: as many models
    retrained on D_r; ``"reference"``: the retrained reference's weights. Trained on the driver
    (vectorized where possible) before the trials, cached, shared by every trial of the group.
    A set that fails to train is reported, and its traceback goes under ``"errors"`` ({kind:
    text}): the group's trials run, and the attacks that need that set lose their numbers only
    (``bench.run.attack_step``; until 2026-12-06 the group's trials did not run, the method's
    metrics lost with them). Raised instead when ``failed`` is None.
    """
    needs = needs_of(plan.attacks)
    if not needs:
        return {}
    count = int(plan.options.shadow_models)
    cache = ReferenceCache(plan.cache_dir)
    out: dict[str, dict] = {}
    for g in plan.groups:
        if any(key not in refs for key in group_keys(g)):  # failed to train: its trials do not run
            continue
        model_obj, arg, _ = plan.models[g.model]
        common = dict(model_obj=model_obj, arg=arg, splits=plan.splits[g.dataset], recipe=g.recipe, group_seed=g.seed,
                      base_doc={k: v for k, v in g.original_doc.items() if k != "kind" and k not in ORIGINAL_KEYS},
                      forget_idx=g.forget_idx,
                      device=plan.device, cache=cache, say=say, versions=versions)
        extras: dict = {}
        for kind in ("shadows", "retrain_shadows"):
            if kind not in needs:
                continue
            try:
                with no_exit(f"Training the attacks' {kind.replace('_', ' ')} of {g.dataset}/{g.model}"):  # a model plugin's
                    extras[kind] = ensure_shadow_set(kind, count, **common)
            except Exception:
                if failed is None:
                    raise
                import traceback

                text = (f"{traceback.format_exc().rstrip()}\n(while training the attacks' {kind.replace('_', ' ')} of "
                        f"{g.dataset}/{g.model} seed={g.seed})")
                extras.setdefault("errors", {})[kind] = text
                say(f"FAILED      training the attacks' {kind.replace('_', ' ')} of {g.dataset}/{g.model} seed={g.seed}: "
                    f"{error_line(text)}; the attacks that need them will have no metrics", always=True)
        if "reference" in needs:
            extras["reference"] = refs[g.retrain_key][0]
        out[g.gid] = extras
    return out


def prepare_references(plan, versions: dict, say: Callable[[str], None]) -> tuple[Payload, list[dict], int]:
    """Load or train every reference, then evaluate them once.

    Returns the trials' shared payload, the reference rows of the summary and how many were trained.
    A reference (or a method's own original) that fails to train is reported and left out of the
    payload with its traceback (``Payload.failures``): the trials that need it fail, the others run.
    """
    opts = plan.options
    train_many = train_many_ray(opts.cpus_per_trial, opts.gpus_per_trial) if opts.executor == "ray" else train_many_local
    jobs = reference_jobs(plan) + method_training_jobs(plan)  # + methods' own originals (SISA)
    failed: dict[str, str] = {}
    refs, trained = ensure_references(jobs, ReferenceCache(plan.cache_dir), train_many, say, versions, failed)
    from_file = sum(1 for _, meta in refs.values() if meta.get("document", {}).get("kind") == "original-file")
    say(f"references: {trained} trained, {len(refs) - trained - from_file} from cache ({plan.cache_dir})"
        + (f", {from_file} from --original" if from_file else "") + (f", {len(failed)} failed" if failed else ""))
    payload, ref_rows = build_payload(plan, refs, originals_by_group(plan, refs),
                                      attack_models(plan, refs, say, versions, failed), failed)
    release_cuda_memory()  # the references were evaluated here (on the GPU with --device cuda): the trials need it
    warned = tuple(warn_chance_references(plan, payload, say))  # references that did not learn
    warned += tuple(warn_recipe_mismatch(plan, payload, say))  # --original: does the recipe match?
    warned += tuple(warn_untestable_classes(plan, payload, say))  # class:K with no test point of K
    warned += tuple(warn_few_attack_points(plan, say))  # attacks' scores over a handful of positives
    warned += tuple(warn_shadow_attacks_on_own_originals(plan, say))  # LiRA/RMIA on SISA's ensemble
    return (dataclasses.replace(payload, warnings=warned) if warned else payload), ref_rows, trained
