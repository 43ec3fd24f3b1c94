"""Reference tasks that ask for a GPU keep their Ray worker for the next task (one GPU per node),
and hand PyTorch's cached GPU memory back when they end (bench.run.ref_tasks)."""

from __future__ import annotations

import pytest

from bench.run import ref_tasks


def test_workers_are_reused_only_where_no_node_has_several_gpus():
    one = {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 1.0}}
    cpu_only = {"Alive": True, "Resources": {"CPU": 2.0}}
    two = {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}}
    assert ref_tasks.reuse_gpu_workers([one])
    assert ref_tasks.reuse_gpu_workers([one, cpu_only, dict(one)])  # several nodes of one GPU each
    assert not ref_tasks.reuse_gpu_workers([one, two])  # CUDA keeps the devices a process started with
    assert ref_tasks.reuse_gpu_workers([one, {**two, "Alive": False}])  # a dead node does not count


def test_release_cuda_memory_without_cuda_is_a_no_op():
    ref_tasks.release_cuda_memory()


SCRIPT = """
import dataclasses, os, time
import ray
from bench.run import ref_tasks

@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    splits: object = None
    recipe: object = None

    def describe(self):
        return self.name

    def run(self):
        time.sleep(0.2)
        return str(os.getpid()).encode(), 0.0

ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
out = ref_tasks.train_many_ray(1, 0.5)([Job(f"job{i}", splits=i) for i in range(4)])
ray.shutdown()
print("tasks", len(out), "workers", len({blob for blob, _ in out}))
"""


@pytest.mark.slow
def test_gpu_reference_tasks_reuse_their_workers(tmp_path):
    """Four reference tasks of half a (logical) GPU each on a node of one GPU run in at most two
    worker processes; Ray's default for GPU tasks would start one per task. (A fresh process:
    the test's own may already hold a Ray without GPUs.)"""
    pytest.importorskip("ray")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tasks, workers = (int(v) for v in proc.stdout.split()[1::2])
    assert tasks == 4 and workers <= 2, proc.stdout
