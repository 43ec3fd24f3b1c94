"""References trained on GPUs under Ray run in one actor per GPU share, which ends with the phase,
and every job frees PyTorch's cached GPU memory when it ends (bench.run.ref_tasks)."""

from __future__ import annotations

import pytest

from bench.run import ref_tasks


def test_release_cuda_memory_empties_the_cache_only_where_cuda_was_used(monkeypatch):
    import sys
    import types

    calls = []
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        is_available=lambda: True, is_initialized=lambda: used, empty_cache=lambda: calls.append("empty")))
    monkeypatch.setitem(sys.modules, "torch", fake)
    used = False
    ref_tasks.release_cuda_memory()  # a process that never touched CUDA: nothing to free, no collection
    assert calls == []
    used = True
    ref_tasks.release_cuda_memory()
    assert calls == ["empty"]


SCRIPT = """
import dataclasses, os, time
import ray
from bench.run import ref_tasks
from bench.track.tracking import process_alive

@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    splits: object = None
    recipe: object = None

    def describe(self):
        return self.name

    def run(self):
        if self.name == "bad":
            raise ValueError("planted")
        if self.name == "dies":
            os._exit(3)  # the actor's process ends under the job
        time.sleep(0.2)
        return f"{self.name}:{os.getpid()}".encode(), 0.0

def gone(pids, wait=30.0):
    deadline = time.time() + wait
    while time.time() < deadline:
        if not any(process_alive(pid) for pid in pids):
            return True
        time.sleep(0.2)
    return False

ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
train = ref_tasks.train_many_ray(1, 0.5)  # two shares of the one (logical) GPU
out = train([Job(f"job{i}", splits=i) for i in range(4)])
names = [blob.decode().split(":")[0] for blob, _ in out]
pids = {int(blob.decode().split(":")[1]) for blob, _ in out}
print("order", names == ["job0", "job1", "job2", "job3"], "workers", len(pids), "ended", gone(pids))
out = train([Job("job4", splits=4), Job("bad", splits=5), Job("dies", splits=6), Job("job7", splits=7),
             Job("job8", splits=8)])
print("failed", isinstance(out[1], ref_tasks.JobFailure) and "ValueError: planted" in out[1].error,
      isinstance(out[2], ref_tasks.JobFailure) and "Actor" in out[2].error,
      [o[0].decode().split(":")[0] for o in (out[0], out[3], out[4])] == ["job4", "job7", "job8"])
out = train([Job("job9", splits=9)])  # the phase with failures left nothing behind that blocks the next
print("after", out[0][0].decode().startswith("job9:"))
out = ref_tasks.train_many_ray(1, 0)([Job("c1", splits=10), Job("dies", splits=11), Job("bad", splits=12)])  # tasks
print("tasks", out[0][0].decode().startswith("c1:"), [type(o).__name__ for o in out[1:]] == ["JobFailure"] * 2)
ray.shutdown()
"""


@pytest.mark.slow
def test_gpu_references_run_in_actors_that_end_with_the_phase(tmp_path):
    """Four references on two shares of a (logical) GPU run in two processes, in order, and those
    processes are gone once the references are done (Ray's tasks would start a process per
    reference, and reused task workers would outlive the phase with their CUDA contexts); a job
    that raises, and one whose actor dies, come back as failures with their error while the other
    jobs finish (a new actor takes the dead one's share), and the next phase runs. A fresh process: the
    test's own may already hold a Ray without GPUs."""
    pytest.importorskip("ray")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.split(" ", 1)[0] in
                 ("order", "failed", "after", "tasks"))
    assert lines["order"] == "True workers 2 ended True", proc.stdout
    assert lines["failed"] == "True True True", proc.stdout
    assert lines["after"] == "True", proc.stdout
    assert lines["tasks"] == "True True", proc.stdout  # the same without GPUs (Ray tasks)
