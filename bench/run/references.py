"""The shared references of each group: the original model and the model retrained on D_r.

Each is trained once per (dataset content, model, recipe, seed[, forget indices]) and kept in
the content-addressed ``ReferenceCache``; missing ones are trained in parallel as Ray tasks
(or in process with ``--executor local``). Training tasks return safetensors bytes to the
driver, which writes the cache, so nothing assumes a filesystem shared with the workers.
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

    Returns ``{key: (state bytes, metadata)}`` and how many were trained.
    """
    found: dict[str, tuple[bytes, dict]] = {}
    missing: list[RefJob] = []
    for job in jobs:
        if job.key in found or any(j.key == job.key for j in missing):
            continue
        hit = cache.get(job.key)
        if hit is not None:
            found[job.key] = hit
            say(f"cache hit   {job.describe()} [{job.key[:12]}] (trained in {hit[1]['train_seconds']:.1f}s)")
        else:
            missing.append(job)
    if missing:
        say(f"training {len(missing)} reference model(s): " + "; ".join(j.describe() for j in missing))
        for job, (data, seconds) in zip(missing, train_many(missing), strict=True):
            meta = {
                "document": job.doc,
                "train_seconds": seconds,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": versions,
            }
            cache.put(job.key, data, meta)
            found[job.key] = (data, meta)
            say(f"trained     {job.describe()} [{job.key[:12]}] in {seconds:.1f}s")
    return found, len(missing)
