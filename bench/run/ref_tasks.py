"""Training the references (and methods' own originals): in this process (``--executor local``) or
on Ray, one job per ``--cpus-per-trial`` CPUs and ``--gpus-per-trial`` GPUs (tasks on CPUs, actors
that end with the phase on GPUs); and freeing PyTorch's cached GPU memory when a job or a trial
ends. A job that raises, or whose worker dies, comes back as a ``JobFailure`` with its traceback
(``bench.run.references``): the other jobs still run."""

from __future__ import annotations

import sys
from typing import Any

from bench.core import console
from bench.core.errors import no_exit
from bench.run.forward import ForwardProgress, in_worker_progress
from bench.run.references import JobFailure, RefJob, train_job


def _ignore(i, result) -> None:
    return None


def train_many_local(jobs, done=_ignore):
    """Train the jobs one after the other in this process; ``done(i, result)`` is called as each ends
    (the caller caches it at once: an interrupt later loses nothing already trained)."""
    out = []
    for i, job in enumerate(jobs):
        out.append(_attempt(job))
        done(i, out[-1])
    return out


def _attempt(job):
    """``_train_with_progress(job)``, or a ``JobFailure`` with the traceback if it raised."""
    import traceback

    try:  # a model plugin's sys.exit() in create(): it ended a local run with exit 0 and no word (found in review)
        with no_exit(f"Training {job.describe()}"):
            return _train_with_progress(job)
    except Exception:
        return JobFailure(traceback.format_exc())


def _lost(exc: BaseException) -> JobFailure:
    """A job whose Ray worker died (its own errors come back as ``JobFailure`` from the worker)."""
    return JobFailure(f"{type(exc).__name__}: {exc}")


def _train_with_progress(job):
    """``train_job`` as a progress task (``bench.core.console``): a reference's loop runs the
    recipe's epochs; a method's own original tells its total itself (SISA)."""
    total = job.recipe.epochs if isinstance(job, RefJob) else None
    with console.task(job.describe(), total):
        return train_job(job)


def train_many_ray(cpus: float, gpus: float):
    """Train the jobs on Ray, in the order given: as tasks of ``cpus`` CPUs without GPUs (Ray keeps
    their worker processes for the next task), on GPUs in short-lived actors (:func:`_on_gpu_actors`).
    ``done(i, result)`` is called as each job ends, in the order they end."""
    def train_many(jobs, done=_ignore):
        import dataclasses

        import ray

        split_refs: dict[int, Any] = {}
        calls = []
        with ForwardProgress() as forward:  # each job's epochs, forwarded to this terminal
            for job in jobs:
                if id(job.splits) not in split_refs:
                    split_refs[id(job.splits)] = ray.put(job.splits)
                calls.append((dataclasses.replace(job, splits=None), split_refs[id(job.splits)], forward.sink_spec()))
            if gpus > 0:
                return _on_gpu_actors(calls, cpus, gpus, done)
            remote = ray.remote(num_cpus=cpus, max_retries=0)(_train_reference_task)
            pending = {remote.remote(*call): i for i, call in enumerate(calls)}
            out: list = [None] * len(calls)
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(ref)
                try:
                    out[i] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    out[i] = _lost(exc)
                done(i, out[i])
            return out

    return train_many


def _train_reference_task(job, splits, progress=None):
    import dataclasses

    try:
        with in_worker_progress(progress):
            return _attempt(dataclasses.replace(job, splits=splits))
    finally:
        release_cuda_memory()


class _ReferenceWorker:
    """One GPU share's worker for the references of a run (a Ray actor: see :func:`_on_gpu_actors`)."""

    def train(self, job, splits, progress=None):
        return _train_reference_task(job, splits, progress)


def _on_gpu_actors(calls: list[tuple], cpus: float, gpus: float, done=_ignore) -> list:
    """Run ``_train_reference_task(*call)`` for every call on as many actors of ``cpus`` CPUs and
    ``gpus`` GPUs as fit at once, each taking the next call when it is free; results in call order.
    The actors are ended when the references are done, or on an error.

    Why actors: Ray gives every *task* that asks for a GPU a fresh worker process (``max_calls=1``,
    its default since ray-project/ray#30061, issue #29624, so that GPU memory a task kept is freed
    with its process). Each reference then paid a process start, importing torch, initialising
    CUDA and importing ``torch._dynamo`` at its first optimiser step (measured on an H200: 16
    ResNet-18 references of 5 epochs, 310 steps each, took 14 s each, a few seconds of it training
    at the trials' step rate). Reusing task workers instead (``max_calls=0``) would leave them, and
    their CUDA contexts, alive for the rest of the run, and on a node of several GPUs a reused
    worker would keep the devices its process started with (CUDA reads ``CUDA_VISIBLE_DEVICES``
    once). An actor holds its GPU share for its life: it starts once per share, frees PyTorch's
    cached memory after each reference (:func:`release_cuda_memory`) and exits with the phase. A
    job that raises comes back as a ``JobFailure``; so does one whose actor died (a new actor takes
    that share for the jobs left)."""
    import ray

    worker = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0, max_task_retries=0)(_ReferenceWorker)
    actors = [worker.remote() for _ in range(max(1, min(len(calls), concurrent_slots(cpus, gpus))))]
    try:
        out: list = [None] * len(calls)
        free, running, nxt = list(actors), {}, 0
        while nxt < len(calls) or running:
            while free and nxt < len(calls):  # each free actor takes the next call
                actor = free.pop(0)
                running[actor.train.remote(*calls[nxt])] = (nxt, actor)
                nxt += 1
            [ref], _ = ray.wait(list(running), num_returns=1)
            i, actor = running.pop(ref)
            try:
                out[i] = ray.get(ref)
                free.append(actor)
            except ray.exceptions.RayError as exc:  # the actor died: a new one takes its place
                out[i] = _lost(exc)
                ray.kill(actor)
                actors.append(worker.remote())
                free.append(actors[-1])
            done(i, out[i])
        return out
    finally:
        for actor in actors:
            ray.kill(actor)


def concurrent_slots(cpus: float, gpus: float) -> int:
    """How many trials (or reference jobs) of ``cpus`` CPUs and ``gpus`` GPUs the connected Ray
    cluster runs at once."""
    import ray

    total = ray.cluster_resources()
    slots = []
    if cpus > 0:
        slots.append(int(total.get("CPU", 0) / cpus + 1e-9))
    if gpus > 0:
        slots.append(int(total.get("GPU", 0) / gpus + 1e-9))
    return max(1, min(slots, default=1))


def release_cuda_memory() -> None:
    """Free the blocks PyTorch's caching allocator holds on the GPU without using them, so that a
    process kept for the next reference or trial holds little more than its CUDA context while
    other trials packed on the same GPU run. A full garbage collection comes first, so that tensors
    held only by reference cycles (a failed trial's traceback, say) are freed too: about 0.2 s in a
    process with torch, Ray and bench loaded (2-core machine), paid only where CUDA was used."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        import gc

        gc.collect()
        torch.cuda.empty_cache()
