"""The speed work's own paths: benchmarks/bench_gpu.py on its CPU path (tiny sizes; its GPU figures
need a GPU), the main job's benchmark script's parsing, and the first line of `bench run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_gpu_runs_its_cpu_path(tmp_path):
    env = {**os.environ, "BENCH_PLUGINS": ""}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--model", "mlp", "--images", "60",
         "--epochs", "1", "--trials", "2", "--packing", "1", "--batch-size", "16", "--out", str(tmp_path / "g")],
        capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "device: CPU path (no GPU figures)" in out
    # one packing, the references' run's (1 per CPU): every other packing is the same loop with another
    # share and one more bench run through Ray, ~25 s of this test; the throughput line's arithmetic is
    # tested below
    line = next(x for x in out.splitlines() if "] 1 trial(s) per CPU" in x)
    assert "--cpus-per-trial 1" in line and "trials/min" in line and "GPU utilisation n/a" in line
    assert "s/epoch in the harness vs" in out and "ratio" in out
    assert "4 references trained in" in out  # the first run trains 2 per seed, one after another
    import json

    figures = json.loads((tmp_path / "g" / "bench_gpu.json").read_text())
    assert "references:" in (tmp_path / "g" / "bench-packed-1.log").read_text()
    assert set(figures["packing"]) == {"1"} and figures["epoch_s"]["ratio"] > 0 and figures["references"]["trained"] == 4


def test_throughput_line_is_relative_to_the_first_packing():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_gpu
    finally:
        sys.path.pop(0)
    assert bench_gpu.throughput_line([(1, 10.0), (2, 18.0), (4, 25.0)]) == \
        "throughput vs 1 per device: 1/device 1.00x, 2/device 1.80x, 4/device 2.50x"


def test_trial_phase_reads_bench_lines():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_gpu
    finally:
        sys.path.pop(0)
    lines = ["   0.1s  bench run: planning", "  10.0s  [1/3] running ft seed=0", "  10.1s  [2/3] running ft seed=1",
             "  12.0s  [1/3] done    ft seed=0 in 2.0s: x", "  12.0s  [3/3] running ft seed=2",
             "  13.5s  [2/3] FAILED  ft seed=1: boom", "  14.0s  [3/3] done    ft seed=2 in 2.0s: x"]
    assert bench_gpu.trial_phase(lines) == (10.0, 14.0, 2)
    # a "done" line is printed once the trial's run is recorded, after the next trial started: the
    # trial's own seconds, not the line's time, say when it ended (one trial at a time here)
    late = ["  10.0s  [1/2] running ft seed=0", "  12.1s  [2/2] running ft seed=1",
            "  12.6s  [1/2] done    ft seed=0 in 2.0s: x", "  14.9s  [2/2] done    ft seed=1 in 2.5s: x"]
    assert bench_gpu.trial_phase(late) == (10.0, 14.6, 1)
    refs = ["   0.5s  planning", "   3.0s  training 4 reference model(s): original a; retrained a",
            "  11.0s  references: 4 trained, 0 from cache (c)", "  12.0s  [1/1] running ft seed=0"]
    assert bench_gpu.reference_phase(refs) == (4, 8.0)
    assert bench_gpu.reference_phase(["   1.0s  references: 0 trained, 4 from cache (c)"]) is None


@pytest.mark.slow
def test_a_trial_of_a_method_that_never_trains_does_not_import_dynamo():
    """PRUNE declares ``trains = False``: its trial's warm-up skips torch.optim, whose first step
    imports torch._dynamo (1.4 s or more per fresh worker), and PRUNE itself never imports it."""
    import subprocess
    import sys

    code = """
import sys, torch
from bench.core.contracts import ForgetRequest, MethodContext
from bench.core.method import trains
from bench.methods.prune.method import Prune
from bench.nn.nets import MLP
from bench.nn.training import warm_up
torch.manual_seed(0)
model = MLP(6, (16,), 3).eval()
x, y = torch.rand(12, 6), torch.randint(0, 3, (12,))
assert not trains(Prune())
warm_up(model, x, y, optimizer=trains(Prune()))
y = model(x).argmax(1)
req = ForgetRequest(num_classes=3, kind="random", forget_indices=torch.arange(2).numpy(), forget_x=x[:2],
                    forget_y=y[:2], input_bounds=(torch.tensor(0.0), torch.tensor(1.0)))
Prune().unlearn(model, req, {**Prune.default_params, "k": 1}, MethodContext(seed=0, device="cpu", new_model=None))
print("dynamo", "torch._dynamo" in sys.modules)
warm_up(MLP(6, (16,), 3), x, y)
print("dynamo", "torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["dynamo", "False", "dynamo", "True"], out.stdout


def test_crossover_fit_mode_picks_the_fewest_epochs_that_reach_the_accuracy():
    """bench_prune_crossover.py --fit: the original of every size is trained with the fewest listed
    epochs whose model reaches the training accuracy, and the crossover is interpolated linearly."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_prune_crossover as cross
    finally:
        sys.path.pop(0)
    from bench.nn.training import accuracy

    x, y = cross.synthetic(200, 8)
    model, _, epochs, acc = cross.train_to(x, y, 8, 0.9)
    assert acc >= 0.9 and acc == accuracy(model, x, y)
    i = cross.FIT_EPOCHS.index(epochs)
    assert i > 0, "the toy should need more than one epoch, or the test shows nothing"
    fewer, _ = cross.train(x, y, 8, cross.FIT_EPOCHS[i - 1])
    assert accuracy(fewer, x, y) < 0.9
    # retraining 1 s at n=1000 and 3 s at n=3000 crosses PRUNE's 2 s at n=2000
    assert cross.crossover([1000, 3000], [1.0, 3.0], 2.0) == 2000
    assert cross.crossover([1000, 3000], [1.0, 1.5], 2.0) is None


class _SlowImports:
    """A method whose one-off set-up (``prepare``) takes 0.4 s and whose unlearning is instant."""

    name = "slowprep"
    description = "test method with a slow prepare"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}
    events: list = []

    def prepare(self):
        import time

        _SlowImports.events.append("prepare")
        time.sleep(0.4)

    def unlearn(self, model, request, params, ctx):
        _SlowImports.events.append("unlearn")
        return model


def test_a_methods_prepare_runs_before_the_timed_call_and_outside_unlearn_seconds(workdir, shared_cache, boom_plugin):
    from bench.core.options import RunOptions
    from bench.core.plugins import get_registry, plugin_versions
    from bench.run.plan import make_plan
    from bench.run.prepare import prepare_references
    from bench.run.trial import run_trial
    from bench.track.provenance import package_versions

    boom_plugin(_SlowImports())
    _SlowImports.events = []
    versions = package_versions()
    opts = RunOptions(cache_dir=str(shared_cache), tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", methods="slowprep",
                      attacks="", recipe={"epochs": 5})
    plan = make_plan(get_registry(), opts, versions, plugin_versions())
    payload, _, _ = prepare_references(plan, versions, lambda *a, **k: None)
    metrics = run_trial(plan.trials[0], payload)
    assert _SlowImports.events == ["prepare", "unlearn"]
    assert metrics["unlearn_seconds"] < 0.2  # the 0.4 s of prepare is not the method's unlearning time


@pytest.mark.slow  # a fresh interpreter (the quick loop was at 120 s)
def test_prune_prepare_imports_what_its_first_call_would():
    code = """
import sys
from bench.methods.prune.method import Prune
assert "sklearn.cluster" not in sys.modules and "bench.methods.prune.run" not in sys.modules
Prune().prepare()
assert {"sklearn.cluster", "scipy.sparse", "scipy.optimize", "bench.methods.prune.run",
        "bench.methods.prune.certify"} <= set(sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_gpu_figures_read_the_visible_gpu_and_leave_the_scripts_own_memory_out(monkeypatch):
    """nvidia-smi -i 0 read physical GPU 0 whatever CUDA_VISIBLE_DEVICES named, and the memory
    maxima held the script's own CUDA context and cache (found in review)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_gpu
    finally:
        sys.path.pop(0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert bench_gpu.visible_gpu() == "3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert bench_gpu.visible_gpu() == "0"
    sampler = bench_gpu.GpuSampler("cuda")
    sampler.samples = [(1.0, 50.0, 1500.0), (2.0, 70.0, 2500.0)]
    text = sampler.between(0.0, 3.0, idle_mb=500.0)
    assert "memory max 2000 MiB for the run (2500 MiB in all, 500 MiB held before it" in text, text
