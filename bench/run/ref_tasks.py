"""Training the references (and methods' own originals): in this process (``--executor local``) or
as Ray tasks, one per reference, with ``--cpus-per-trial`` CPUs and ``--gpus-per-trial`` GPUs each;
and handing PyTorch's cached GPU memory back when a task or a trial ends."""

from __future__ import annotations

import sys
from typing import Any

from bench.core import console
from bench.run.forward import ForwardProgress, in_worker_progress
from bench.run.references import RefJob, train_job


def train_many_local(jobs):
    return [_train_with_progress(job) for job in jobs]


def _train_with_progress(job):
    """``train_job`` as a progress task (``bench.core.console``): a reference's loop runs the
    recipe's epochs; a method's own original tells its total itself (SISA)."""
    total = job.recipe.epochs if isinstance(job, RefJob) else None
    with console.task(job.describe(), total):
        return train_job(job)


def train_many_ray(cpus: float, gpus: float):
    def train_many(jobs):
        import dataclasses

        import ray

        options: dict[str, Any] = dict(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        if gpus > 0 and reuse_gpu_workers(ray.nodes()):
            options["max_calls"] = 0  # unlimited: one worker per slot for the whole run (see reuse_gpu_workers)
        remote = ray.remote(**options)(_train_reference_task)
        split_refs: dict[int, Any] = {}
        futures = []
        with ForwardProgress() as forward:  # each job's epochs, forwarded to this terminal
            for job in jobs:
                if id(job.splits) not in split_refs:
                    split_refs[id(job.splits)] = ray.put(job.splits)
                futures.append(remote.remote(dataclasses.replace(job, splits=None), split_refs[id(job.splits)],
                                             forward.sink_spec()))
            return ray.get(futures)

    return train_many


def _train_reference_task(job, splits, progress=None):
    import dataclasses

    try:
        with in_worker_progress(progress):
            return _train_with_progress(dataclasses.replace(job, splits=splits))
    finally:
        release_cuda_memory()


def reuse_gpu_workers(nodes: list[dict]) -> bool:
    """Whether reference tasks that take a GPU may reuse their worker process: yes when no live
    node of the cluster (``ray.nodes()``) has more than one GPU.

    Ray starts a fresh worker for every task that asks for a GPU (``max_calls=1``, its default
    since ray-project/ray#30061, issue #29624: a reused worker could keep GPU memory it no
    longer uses). On one GPU that costs every reference a process start: importing torch,
    initialising CUDA, the first optimiser step importing ``torch._dynamo`` (measured on an H200,
    16 ResNet-18 references of 5 epochs, 310 steps each: 14 s each, of which the steps are
    a few seconds by the trials' step rate; the rest was not profiled). Our task frees
    PyTorch's cached GPU memory when it ends (:func:`_train_reference_task`), which answers the
    memory concern; a kept worker still holds its CUDA context until Ray retires it (an idle
    worker beyond Ray's soft limit of one per CPU). Where a node has several GPUs a reused worker is not safe: CUDA keeps the
    device list of the ``CUDA_VISIBLE_DEVICES`` the process started with, so a later task given
    another GPU would run on the first one. There Ray's default stays (a choice)."""
    return all(float(n.get("Resources", {}).get("GPU", 0)) <= 1 for n in nodes if n.get("Alive", True))


def release_cuda_memory() -> None:
    """Free the blocks PyTorch's caching allocator holds on the GPU without using them, so that a
    worker kept for the next task (or between trials) holds little more than its CUDA context while
    other trials packed on the same GPU run."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        import gc

        gc.collect()
        torch.cuda.empty_cache()
