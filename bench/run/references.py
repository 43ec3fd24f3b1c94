"""The shared references of each group: the original model and the model retrained on D_r.

Each is trained once per (dataset content, model, recipe, seed[, forget indices]) and kept in
the content-addressed ``ReferenceCache``; missing ones are trained in parallel as Ray tasks
(or in process with ``--executor local``). Training tasks return safetensors bytes to the
driver, which writes the cache, so nothing assumes a filesystem shared with the workers.
Entries are verified on every read, and the driver holds a per-key lock while it trains, so
concurrent runs sharing a cache directory train each reference once (``bench.core.cache``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from bench.core.cache import ReferenceCache, state_to_bytes


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
        what = "original" if d["kind"] == "original" else "retrained"
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
    from bench.nn.training import fit, place, seed_everything, set_threads, warm_up

    set_threads(job.threads)
    sp = job.splits
    x, y = sp.train_x, sp.train_y
    if job.train_idx is not None:
        idx = torch.as_tensor(job.train_idx, dtype=torch.long)
        x, y = x[idx], y[idx]
    x, y = place((x, y), job.device)
    model = model_factory(job.model_obj, job.arg, sp, job.seed, job.device)()
    warm_up(model, x, y)
    seed_everything(job.seed)
    model = model_factory(job.model_obj, job.arg, sp, job.seed, job.device)()
    t0 = time.perf_counter()
    fit(model, x, y, job.recipe, seed=job.seed)
    if str(job.device).startswith("cuda"):
        torch.cuda.synchronize()
    return state_to_bytes(model), time.perf_counter() - t0


def ensure_references(
    jobs: list[RefJob],
    cache: ReferenceCache,
    train_many: Callable[[list[RefJob]], list[tuple[bytes, float]]],
    say: Callable[[str], None],
    versions: dict[str, str],
) -> tuple[dict[str, tuple[bytes, dict]], int]:
    """Load every reference from the cache, training the missing ones with ``train_many``.

    Every entry is verified (``ReferenceCache.get``): a corrupt one is reported, moved aside and
    trained again, never used. The missing keys are locked (all of them, in sorted order) before
    training and looked up once more under the locks, so a concurrent run sharing the cache
    directory that trained them meanwhile is waited for and its entries used: each key is trained
    once. Returns ``{key: (state bytes, metadata)}`` and how many were trained here.
    """
    found: dict[str, tuple[bytes, dict]] = {}
    unique: dict[str, RefJob] = {}
    for job in jobs:
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
    with cache.locked([j.key for j in missing], say):
        todo = []
        for job in missing:
            hit = cache.get(job.key, say)  # verified; a corrupt entry is quarantined and rebuilt
            if hit is not None:  # another process trained it while this one waited
                found[job.key] = _hit(job, hit, say)
            else:
                todo.append(job)
        if todo:
            say(f"training {len(todo)} reference model(s): " + "; ".join(j.describe() for j in todo))
            for job, (data, seconds) in zip(todo, train_many(todo), strict=True):
                meta = {
                    "document": job.doc,
                    "train_seconds": seconds,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "versions": versions,
                }
                found[job.key] = (data, cache.put(job.key, data, meta))
                say(f"trained     {job.describe()} [{job.key[:12]}] in {seconds:.1f}s")
            trained = len(todo)
    return found, trained


def _hit(job, hit: tuple[bytes, dict], say: Callable[[str], None]) -> tuple[bytes, dict]:
    say(f"cache hit   {job.describe()} [{job.key[:12]}] (trained in {hit[1]['train_seconds']:.1f}s)")
    return hit
