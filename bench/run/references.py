"""The shared references of each group: the original model and the model retrained on D_r.

Each is trained once per (dataset content, model, recipe, seed[, forget indices]) and kept in
the content-addressed ``ReferenceCache``; missing ones are trained in parallel as Ray tasks
(or in process with ``--executor local``). Training tasks return safetensors bytes to the
driver, which writes the cache, so nothing assumes a filesystem shared with the workers.
Entries are verified on every read, and the driver holds a per-key lock while it trains, so
concurrent runs sharing a cache directory train each reference once (``bench.core.cache``).

Your own original (``--original``, ``bench.run.original``) is a reference of kind ``original-file``:
read from its file again (its digest checked against the plan's), never trained, never cached.

A job that raises (a model or method plugin's bug, CUDA out of memory) comes back as a
:class:`JobFailure` with its traceback instead of ending the run: the trials that need that
reference fail with it, the others run (``bench.run.payload.blocked_trials``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from bench.core.cache import ReferenceCache, state_to_bytes
from bench.run.original import RECIPE_TOLERANCE, recipe_mismatch, reread
from bench.track.trial_warnings import CHANCE_MARGIN


@dataclass(frozen=True)
class JobFailure:
    """What a training job that raised returns in place of its result: the traceback's text."""

    error: str


class ReferenceFailed(RuntimeError):
    """A reference failed to train and the caller of ``ensure_references`` collects no failures."""


@dataclass
class RefJob:
    key: str
    doc: dict
    model_obj: Any
    arg: str | None
    splits: Any
    train_idx: Any  # np.ndarray or None (all training points)
    recipe: Any
    seed: int
    device: str
    threads: int

    def describe(self) -> str:
        d = self.doc
        what = {"original": "original", "original-file": "your original"}.get(d["kind"], "retrained")
        return f"{what} {d['dataset']}/{d['model']} seed={d['seed']}"

    def run(self) -> tuple[bytes, float]:
        return train_reference(self)


def train_job(job) -> tuple[bytes, float]:
    """Run one training job (a :class:`RefJob`, or a ``bench.run.method_training.MethodTrainJob``)."""
    return job.run()


def train_reference(job: RefJob) -> tuple[bytes, float]:
    """Train one reference from a seeded fresh initialisation; return (safetensors bytes, seconds)."""
    import torch

    from bench.nn.nets import model_factory
    from bench.nn.training import check_trained, fit, place, seed_everything, set_threads, warm_up

    set_threads(job.threads)
    sp = job.splits
    x, y = sp.train_x, sp.train_y
    if job.train_idx is not None:
        idx = torch.tensor(job.train_idx, dtype=torch.long)  # a copy: Ray's object store hands read-only arrays
        x, y = x[idx], y[idx]
    x, y = place((x, y), job.device)
    model = model_factory(job.model_obj, job.arg, sp, job.seed, job.device)()
    warm_up(model, x, y)
    seed_everything(job.seed)
    model = model_factory(job.model_obj, job.arg, sp, job.seed, job.device)()
    t0 = time.perf_counter()
    fit(model, x, y, job.recipe, seed=job.seed)
    if str(job.device).startswith("cuda"):
        torch.cuda.synchronize(job.device)  # that GPU's queue (a bare call waits on the current one)
    seconds = time.perf_counter() - t0
    check_trained(model, x, f"The {job.describe()}", job.recipe)
    return state_to_bytes(model), seconds


def ensure_references(
    jobs: list[RefJob],
    cache: ReferenceCache,
    train_many: Callable[..., Any],  # (jobs, done): done(i, result) as each job ends
    say: Callable[[str], None],
    versions: dict[str, str],
    failed: dict[str, str] | None = None,
) -> tuple[dict[str, tuple[bytes, dict]], int]:
    """Load every reference from the cache, training the missing ones with ``train_many``.

    Every entry is verified (``ReferenceCache.get``): a corrupt one is reported, moved aside and
    trained again, never used. The missing keys are locked (all of them, in sorted order) before
    training and looked up once more under the locks, so a concurrent run sharing the cache
    directory that trained them meanwhile is waited for and its entries used: each key is trained
    once. Returns ``{key: (state bytes, metadata)}`` and how many were trained here.

    A job that failed (``train_many`` returned a :class:`JobFailure` for it) is not cached; its
    traceback goes into ``failed`` (key -> text) and its key is absent from the result, or, without
    ``failed``, it raises :class:`ReferenceFailed`.
    """
    found: dict[str, tuple[bytes, dict]] = {}
    unique: dict[str, RefJob] = {}
    for job in jobs:
        if job.doc.get("kind") == "original-file":  # --original: read from its file, not trained or cached
            if job.key not in found:
                found[job.key] = (reread(job.doc), {"document": job.doc, "train_seconds": 0.0})
                say(f"your original {job.doc['original_path']} [{job.doc['original_sha256'][:12]}] for "
                    f"{job.doc['dataset']}/{job.doc['model']}")
            continue
        unique.setdefault(job.key, job)
    missing: list[RefJob] = []
    for key, job in unique.items():
        hit, _ = cache.check(key)  # no lock yet: a problem is reported and repaired under the lock
        if hit is not None:
            found[key] = _hit(job, hit, say)
        else:
            missing.append(job)
    if not missing:
        return found, 0
    trained = 0
    with cache.locked([j.key for j in missing], say) as held:  # each released once settled
        todo = []
        for job in missing:
            hit = cache.get(job.key, say)  # verified; a corrupt entry is quarantined and rebuilt
            if hit is not None:  # another process trained it while this one waited
                found[job.key] = _hit(job, hit, say)
                held.release(job.key)
            else:
                todo.append(job)
        if todo:
            say(f"training {len(todo)} reference model(s): " + "; ".join(j.describe() for j in todo))
            errors: list[str] = []
            recorded: set[int] = set()

            def record(i: int, result) -> None:
                """Cache each reference as it is trained (an interrupt or a later failure loses
                none already trained: they were cached only when the whole batch had ended)."""
                if i in recorded:
                    return
                recorded.add(i)
                job = todo[i]
                try:
                    _record(job, result)
                finally:  # settled: cached, or failed (another run may then try it)
                    held.release(job.key)

            def _record(job, result) -> None:
                nonlocal trained
                if isinstance(result, JobFailure):
                    from bench.track.tracking import error_line

                    if failed is None:
                        errors.append(f"training {job.describe()} failed:\n{result.error}")
                        return
                    failed[job.key] = (f"{result.error.rstrip()}\n(while training {job.describe()}: the trials that "
                                       "need it did not run)")
                    say(f"FAILED      training {job.describe()} [{job.key[:12]}]: {error_line(result.error)}", always=True)
                    return
                data, seconds = result
                trained += 1
                meta = {
                    "document": job.doc,
                    "train_seconds": seconds,
                    "device": str(getattr(job, "device", "") or ""),  # where train_seconds was measured
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "versions": versions,
                }
                found[job.key] = (data, cache.put(job.key, data, meta))
                say(f"trained     {job.describe()} [{job.key[:12]}] in {seconds:.1f}s")

            for i, result in enumerate(train_many(todo, record)):  # any train_many did not hand to record
                record(i, result)
            if errors:
                raise ReferenceFailed(errors[0])
    return found, trained


def _hit(job, hit: tuple[bytes, dict], say: Callable[[str], None]) -> tuple[bytes, dict]:
    say(f"cache hit   {job.describe()} [{job.key[:12]}] (trained in {hit[1]['train_seconds']:.1f}s)")
    return hit


def warn_recipe_mismatch(plan, payload, say: Callable[..., None]) -> list[str]:
    """For each group starting from your own original (``--original``): warn when its test accuracy
    and that of the reference retrained with the recipe differ by more than ``RECIPE_TOLERANCE``
    (on a class request, the test accuracy on the other classes, which the reference has seen).
    Every metric compares the unlearned model with that reference, so the recipe must be the one the
    original was trained with. Returns the warnings (also said, always shown)."""
    out = []
    for g in plan.groups:
        if g.original is None or g.gid not in payload.groups:  # not when its references failed
            continue
        step = payload.groups[g.gid].steps[0]
        key = "test_retain_class_acc" if step.forget_class is not None else "test_acc"
        mine, recipe = step.original_eval.accs.get(key), step.retrain_eval.accs.get(key)
        if mine is None or recipe is None or not recipe_mismatch(mine, recipe):
            continue
        line = (f"warning: your original for {g.dataset}/{g.model} has {key} {mine:.3f}, the reference retrained with "
                f"the recipe (seed {g.seed}) {recipe:.3f}: more than {RECIPE_TOLERANCE * 100:.0f} points apart. Its "
                f"metrics compare against that reference: give the recipe the original was trained with (--recipe "
                f"KEY=VALUE, [recipe] in TOML).")
        out.append(line)
        say(line, always=True)
    return out


def warn_untestable_classes(plan, payload, say: Callable[..., None]) -> list[str]:
    """A class request whose class has no point in the test split: ``test_forget_class_acc`` is NaN
    there (nothing to measure); said and recorded rather than left as an unexplained NaN."""
    out, seen = [], set()
    for g in plan.groups:
        if g.gid not in payload.groups:
            continue
        test_y = plan.splits[g.dataset].test_y
        for step in payload.groups[g.gid].steps:
            c = step.forget_class
            if c is None or (g.dataset, c) in seen or bool((test_y == c).any()):
                continue
            seen.add((g.dataset, c))
            line = (f"warning: the test split of {g.dataset} has no point of class {c} (forget {g.forget.text}): "
                    f"test_forget_class_acc is NaN there, not measured; forget_acc measures the forgotten training points.")
            out.append(line)
            say(line, always=True)
    return out


#: Fewer forgotten points than this make the attacks' scores (an AUC, an attack's accuracy over the
#: forget set's points as positives) mostly chance: said and recorded with the run.
MIN_ATTACK_POINTS = 10


def warn_few_attack_points(plan, say: Callable[..., None]) -> list[str]:
    """Attacks on a forget set of a handful of points: one point gives an AUC of 0 or 1 or one rank
    (``random:1``: loss_auc 0.881, mia_efficacy 0.000, exit 0 and no word; hostile audit, 2026-12-07).
    Said and kept with the run, as the NaN of an untestable class is; the numbers are still logged."""
    if not plan.attacks:
        return []
    out, seen = [], set()
    for g in plan.groups:
        steps = g.steps or (g.forget_idx,)
        n = len(set().union(*(map(int, s) for s in steps)))  # a seq: every point forgotten by the last request
        if n >= MIN_ATTACK_POINTS or (g.dataset, g.forget.text) in seen:
            continue
        seen.add((g.dataset, g.forget.text))
        line = (f"warning: the attacks ({', '.join(plan.attacks)}) score {n} forgotten point(s) of {g.dataset} "
                f"(forget {g.forget.text}): an AUC or an attack's accuracy over so few positives is mostly chance; "
                f"forget at least {MIN_ATTACK_POINTS} points for their numbers.")
        out.append(line)
        say(line, always=True)
    return out


def warn_shadow_attacks_on_own_originals(plan, say: Callable[..., None]) -> list[str]:
    """Shadow-model attacks (``needs`` ``"shadows"``: LiRA, RMIA) on a method that trains its own
    original (SISA's ensemble): the shadows are single networks of the model's architecture while
    the method's model is its own (SISA's: a vote share, p_y exactly 1.0 for most points, so 61% of
    member/non-member pairs tied), and their scores near 0.5 showed its output format rather than
    forgetting, with no word (found in review, 2026-12-07). Said and kept with the run; the numbers
    are still logged (U-LiRA, which unlearns the shadows, is refused: ``check_attacks_fit``)."""
    from bench.core.method import has_own_training

    shadowed = [name for name, attack in plan.attacks.items() if "shadows" in set(getattr(attack, "needs", ()))]
    own = [m.name for m in plan.methods if has_own_training(m.obj)]
    if not shadowed or not own:
        return []
    line = (f"warning: the attack(s) {', '.join(shadowed)} compare {', '.join(own)}'s model, which it trains itself "
            f"(an ensemble's vote share for SISA), with shadow models that are single networks of the model's "
            f"architecture: their scores for {', '.join(own)} reflect that difference more than forgetting; compare "
            f"{', '.join(own)} by the loss/entropy/svc attacks and the accuracies.")
    say(line, always=True)
    return [line]


def chance_rates(plan) -> dict[str, float]:
    """{dataset spec: the test accuracy of always answering its test split's most common class}."""
    import numpy as np

    out = {}
    for name, sp in plan.splits.items():
        counts = np.bincount(np.asarray(sp.test_y, dtype=np.int64).ravel())
        out[name] = float(counts.max() / max(int(counts.sum()), 1)) if counts.size else 0.0
    return out


def warn_chance_references(plan, payload, say: Callable[..., None]) -> list[str]:
    """An original or retrained reference that scores no better than chance on the test split (a
    recipe that collapsed the model without a NaN: lr 0.6, constant schedule): every method is
    measured against it, and a method's gap to a chance-level retrained model reads as excellent
    (sisa avg_gap 0.010; params audit, 2026-12-07). Said and kept with the run."""
    chance, out = chance_rates(plan), []
    for g in plan.groups:
        group = payload.groups.get(g.gid)
        if group is None:
            continue
        for what, ev in (("original", group.steps[-1].original_eval), ("retrained reference", group.steps[-1].retrain_eval)):
            acc, rate = ev.accs.get("test_acc"), chance[g.dataset]
            if acc is None or acc > rate + CHANCE_MARGIN:
                continue
            line = (f"warning: the {what} of {g.dataset}/{g.model} seed={g.seed} scores test_acc {acc:.3f}, no better "
                    f"than always answering the test split's most common class ({rate:.3f}): it did not learn, and "
                    f"every method is measured against it. Check the recipe (--recipe lr=..., epochs=...) or the model.")
            out.append(line)
            say(line, always=True)
    return out
