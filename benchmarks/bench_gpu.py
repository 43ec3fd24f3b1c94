"""Ray scheduling real GPU trials: `bench run` through Ray with several trials packed on one GPU.

Usage (on a machine with one GPU):
    python benchmarks/bench_gpu.py [--images 10000] [--epochs 5] [--trials 8] [--packing 1,2,4]
                                   [--methods ft] [--out DIR]
CPU path (what the test suite runs; no GPU figure is printed):
    python benchmarks/bench_gpu.py --device cpu --model mlp --images 60 --epochs 1 --trials 2 --packing 2
(``--model``: any model spec, for a quick check of the script; the benchmark is resnet18-cifar)

Data: CIFAR-shaped synthetic images (10 classes, 32x32 RGB PNGs, a class-dependent colour
pattern under noise, so the models learn something) written to a temporary folder and read by the
harness's ``imagefolder`` dataset; model ``resnet18-cifar``; attacks off (the trials' own work).

1. A first `bench run` (``--seeds 0..T-1``, T = ``--trials``; ``--gpus-per-trial 1``) trains and
   caches every reference on the GPU, in short-lived Ray actors (prints how long they took),
   then runs the trials one per GPU: the first packing's figures.
2. The retrained reference's time per epoch (its ``retrain_seconds`` in MLflow over the recipe's
   epochs) against a plain torch loop (same model, data on the GPU, same batch size, SGD with
   momentum, per-step cosine schedule, cross-entropy, one torch thread as the reference task has
   at ``--cpus-per-trial 1``) on the same GPU, after the harness's own warm-up (one step on a copy,
   8 examples), so both include their first epoch's autotuning (until 2026-12-07 the loop had a
   whole warm-up epoch the reference did not).
   Target: the harness within 1.1x of the plain loop. Printed before the other packings, so a run
   cut short by a time limit still has it.
3. For each other packing p in ``--packing``: the same run again, cached, with ``--gpus-per-trial
   1/p`` (CPU path: ``--cpus-per-trial 1/p``): trials per minute over the trial phase (each trial
   from its "running" line for the seconds its "done" line gives), how many trials ran at once
   (from those spans), and the GPU's utilisation and memory sampled every 0.5 s over the trial
   phase (``nvidia-smi``; ``torch.cuda.utilization`` where nvidia-smi is missing).

Every figure also goes to ``bench_gpu.json`` under ``--out`` as soon as it is measured, and each
`bench run`'s own lines to ``bench-packed-P.log`` there as they come. Each line the script prints
starts with its elapsed time, for fitting a run into a GPU lease: on an H200 the first
measured run (2026-12-04, before references trained in actors) spent 230 s on the 16
references of the default ``--trials 8``; ``--trials 4 --packing 1,4`` is the short form.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CLASSES = 10


def make_images(root: Path, n: int, seed: int = 0) -> None:
    """``n`` 32x32 RGB PNGs in ``root/<class>/``: a class's own colour pattern plus noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    patterns = rng.uniform(0, 255, size=(CLASSES, 4, 4, 3))
    for c in range(CLASSES):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % CLASSES
        base = np.kron(patterns[c], np.ones((8, 8, 1)))
        img = np.clip(0.6 * base + 0.4 * rng.uniform(0, 255, size=(32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"class{c}" / f"{i}.png")


class GpuSampler:
    """Samples the GPU's utilisation (%) and memory (MiB) every ``period`` seconds in a thread."""

    def __init__(self, device: str, period: float = 0.5) -> None:
        self.device, self.period = device, period
        self.samples: list[tuple[float, float, float]] = []
        self.stop = threading.Event()
        self.smi = shutil.which("nvidia-smi")
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _read(self) -> tuple[float, float] | None:
        if self.smi:
            out = subprocess.run([self.smi, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                                  "-i", visible_gpu()], capture_output=True, text=True, timeout=5).stdout.strip().splitlines()
            if out:
                util, mem = (float(v) for v in out[0].split(","))
                return util, mem
        import torch

        return float(torch.cuda.utilization(0)), torch.cuda.device_memory_used(0) / 2**20 if hasattr(
            torch.cuda, "device_memory_used") else float("nan")

    def _loop(self) -> None:
        while not self.stop.wait(self.period):
            try:
                r = self._read()
            except Exception:
                r = None
            if r is not None:
                self.samples.append((time.perf_counter(), *r))

    def __enter__(self):
        if self.device.startswith("cuda"):
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def between(self, t0: float, t1: float, idle_mb: float | None = None) -> str:
        """Utilisation and memory between ``t0`` and ``t1``; ``idle_mb``: what the GPU held before
        the run (this script's own CUDA context and the plain loop's cache), left out of the memory."""
        inside = [(u, m) for t, u, m in self.samples if t0 <= t <= t1]
        if not inside:
            return "GPU utilisation n/a" + ("" if self.device.startswith("cuda") else " (CPU path)")
        utils = [u for u, _ in inside]
        most = max(m for _, m in inside)
        memory = (f"memory max {most:.0f} MiB" if idle_mb is None else
                  f"memory max {most - idle_mb:.0f} MiB for the run ({most:.0f} MiB in all, {idle_mb:.0f} MiB held "
                  f"before it: this script's own CUDA context)")
        return (f"GPU utilisation mean {sum(utils) / len(utils):.0f}% max {max(utils):.0f}% "
                f"({len(inside)} samples), {memory}")

    def idle(self) -> float | None:
        """Memory the GPU holds now, between runs (MiB), or None where it cannot be read."""
        read = self._read() if self.device.startswith("cuda") else None
        return None if read is None else read[1]


def visible_gpu() -> str:
    """The physical GPU this process uses for nvidia-smi's -i: the first of CUDA_VISIBLE_DEVICES
    (nvidia-smi numbers the physical GPUs; GPU 0 was read whatever was visible), else 0."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return first or "0"


LINE = re.compile(r"^\s*([0-9.]+)s\s+\[(\d+)/(\d+)\] (running|done   |FAILED )(.*)$")
TOOK = re.compile(r" in ([0-9.]+)s: ")


def trial_phase(lines: list[str]) -> tuple[float, float, int]:
    """(first start, last end) of the trials in bench's seconds, and the most trials running at once.

    A trial runs from its "running" line for the seconds its "done" line gives ("in 12.3s"): the
    "done" line itself is printed once the trial's run is recorded (``bench.track.ray_runs``), after
    the next trial may have started, so its time would overstate the overlap. A failed trial ends
    at its "FAILED" line."""
    start: dict[str, float] = {}
    spans: list[tuple[float, float]] = []
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        t, trial, kind = float(m.group(1)), m.group(2), m.group(4)
        if kind == "running":
            start[trial] = t
            continue
        began = start.pop(trial, t)
        took = TOOK.search(m.group(5)) if kind.startswith("done") else None
        spans.append((began, began + float(took.group(1)) if took else t))
    if not spans:
        raise SystemExit("no trial lines in bench's output:\n" + "\n".join(lines[-40:]))
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, step in events:  # an end before a start at the same instant: back to back is not overlap
        running += step
        most = max(most, running)
    return min(a for a, _ in spans), max(b for _, b in spans), most


def reference_phase(lines: list[str]) -> tuple[int, float] | None:
    """(references trained, seconds from bench's "training N reference model(s)" line to its
    "references:" line), or None when every reference came from the cache."""
    stamp = re.compile(r"^\s*([0-9.]+)s\s")
    t_start = n = None
    for line in lines:
        m = stamp.match(line)
        if not m:
            continue
        if t_start is None and (k := re.search(r"training (\d+) reference model", line)):
            t_start, n = float(m.group(1)), int(k.group(1))
        elif t_start is not None and "references:" in line:
            return n, float(m.group(1)) - t_start
    return None


def throughput_line(rates: list[tuple[int, float]]) -> str:
    """Trials per minute at each packing, relative to the first packing's (1 per device by default)."""
    base_p, base = rates[0]
    return f"throughput vs {base_p} per device: " + ", ".join(f"{p}/device {r / base:.2f}x" for p, r in rates)


def run_bench(args: list[str], cwd: str, sampler: GpuSampler | None = None,
              log: Path | None = None) -> tuple[list[str], float]:
    """Run bench, streaming its lines (each also written to ``log`` as it comes, so that a run cut
    short keeps them); returns them and the perf_counter time of bench's t=0."""
    exe = shutil.which("bench", path=os.path.dirname(sys.executable)) or "bench"
    t_launch = time.perf_counter()
    proc = subprocess.Popen([exe, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines, t0 = [], None
    sink = open(log, "w", buffering=1) if log is not None else None
    for line in proc.stdout:
        line = line.rstrip("\n")
        lines.append(line)
        if sink is not None:
            sink.write(line + "\n")
        m = re.match(r"^\s*([0-9.]+)s\s", line)
        if t0 is None and m:
            t0 = time.perf_counter() - float(m.group(1))
    if sink is not None:
        sink.close()
    if proc.wait():
        raise SystemExit(f"bench {' '.join(args)} failed (exit {proc.returncode}):\n" + "\n".join(lines[-60:]))
    return lines, (t0 if t0 is not None else t_launch)


def plain_loop_epoch(data_dir: Path, model_spec: str, forget_size: int, epochs: int, batch_size: int, lr: float,
                     device: str) -> float:
    """Seconds per epoch of a hand-written loop: resnet18-cifar on as many training points as the
    retrained reference's retain set (the training split less ``forget_size``), on ``device``."""
    import math

    import torch
    import torch.nn.functional as F

    from bench.core.plugins import get_registry

    registry = get_registry()
    splits = registry.get("dataset", "imagefolder").load(None, False, f"{data_dir},size=32")
    n = len(splits.train_y) - forget_size
    x, y = splits.train_x[:n].to(device), splits.train_y[:n].to(device)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # as the reference task of the first run (--cpus-per-trial 1 -> 1 torch thread)
    name, _, arg = model_spec.partition(":")
    model = registry.get("model", name).create(splits.num_classes, tuple(splits.input_shape), arg or None).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * math.ceil(len(y) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    g = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def epoch():
        order = torch.randperm(len(y), generator=g).to(device)
        for s in range(0, len(y), batch_size):
            idx = order[s:s + batch_size]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()

    model.train()
    # warm-up as the harness's own (bench.nn.training.warm_up: one step on 8 examples of a copy), not a
    # whole epoch: the reference's retrain_seconds includes its first epoch's cuDNN autotuning, and a
    # whole warm-up epoch here compared the harness's first epoch with the loop's second (benchmarks audit)
    from bench.nn.training import warm_up

    warm_up(model, x, y)
    sync()
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    sync()
    return (time.perf_counter() - t0) / epochs


def retrain_record(tracking_uri: str) -> tuple[float, int]:
    """(retrain_seconds, retain-set size) of the retrained reference, from a trial's MLflow run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, filter_string="tags.`bench.role` = 'trial'", max_results=1)
    m = runs[0].data.metrics
    return float(m["retrain_seconds"]), int(m["forget_size"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (its CPU path, for tests)")
    ap.add_argument("--images", type=int, default=10000, help="synthetic images in all (20%% test)")
    ap.add_argument("--epochs", type=int, default=5, help="recipe epochs of the references")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--trials", type=int, default=8, help="trials per run (seeds 0..T-1 of each method)")
    ap.add_argument("--packing", default="1,2,4", help="trials per GPU (CPU path: per CPU)")
    ap.add_argument("--methods", default="ft")
    ap.add_argument("--model", default="resnet18-cifar", help="the benchmark's model; another spec only to check the script")
    ap.add_argument("--out", default=None, help="keep the data, cache, MLflow store and bench_gpu.json here")
    a = ap.parse_args()
    t_script = time.perf_counter()
    gpu = a.device.startswith("cuda")
    if gpu:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --device cpu for the CPU path")
        name = torch.cuda.get_device_name(0)
    else:
        name = "CPU path (no GPU figures)"
    packing = [int(p) for p in a.packing.split(",")]
    tmp_ctx = tempfile.TemporaryDirectory() if a.out is None else None
    root = Path(a.out or tmp_ctx.name).resolve()  # bench runs with cwd=root: relative paths would break
    root.mkdir(parents=True, exist_ok=True)
    summary: dict = {"device": name, "model": a.model, "methods": a.methods, "trials": a.trials, "epochs": a.epochs,
                     "batch_size": a.batch_size, "images": a.images, "packing": {}}

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - t_script:6.1f}s] {text}", flush=True)

    def save() -> None:
        (root / "bench_gpu.json").write_text(json.dumps(summary, indent=1))

    try:
        data = root / "images"
        if not data.exists():
            t0 = time.perf_counter()
            make_images(data, a.images)
            say(f"wrote {a.images} CIFAR-shaped synthetic images in {time.perf_counter() - t0:.1f}s")
        uri = f"sqlite:///{root}/mlflow.db"
        common = ["run", "--dataset", f"imagefolder:{data},size=32", "--model", a.model, "--methods", a.methods,
                  "--seeds", f"0-{a.trials - 1}" if a.trials > 1 else "0", "--attacks", "", "--device", a.device,
                  "--recipe", f"epochs={a.epochs}", "--recipe", f"batch_size={a.batch_size}",
                  "--cache-dir", str(root / "cache"), "--tracking-uri", uri]
        resource = "--gpus-per-trial" if gpu else "--cpus-per-trial"
        unit = "GPU" if gpu else "CPU"
        say(f"device: {name}; {a.trials} trial(s) of {a.methods} per run, {a.model}, {a.epochs} epoch(s), "
            f"batch {a.batch_size}, {a.images} images")
        rows = []

        def packed_row(p: int, lines: list[str], t_zero: float, sampler: GpuSampler, idle_mb: float | None) -> None:
            first, last, most = trial_phase(lines)
            phase = last - first
            rate = a.trials / phase * 60 if phase > 0 else float("inf")
            usage = sampler.between(t_zero + first, t_zero + last, idle_mb)
            rows.append((p, rate))
            summary["packing"][str(p)] = {"share": 1 / p, "trial_phase_s": round(phase, 2),
                                          "trials_per_min": round(rate, 2), "most_at_once": most, "usage": usage}
            say(f"{p} trial(s) per {unit} ({resource} {1 / p:.4g}): trial phase {phase:6.1f}s, {rate:6.1f} trials/min, "
                f"at most {most} running at once; {usage}")
            save()

        with GpuSampler(a.device) as sampler:
            # 1. the references (Ray tasks), then the trials at one per device: the first packing's figure
            t0 = time.perf_counter()
            idle = sampler.idle()
            lines, t_zero = run_bench([*common, resource, "1", "--experiment", "packed-1"], str(root), sampler,
                                      root / "bench-packed-1.log")
            refs = reference_phase(lines)
            ref_text = "every reference from the cache" if refs is None else \
                f"{refs[0]} references trained in {refs[1]:.1f}s ({refs[1] / max(refs[0], 1):.1f}s each on average)"
            summary["first_run_s"] = round(time.perf_counter() - t0, 1)
            if refs is not None:
                summary["references"] = {"trained": refs[0], "seconds": round(refs[1], 1)}
            say(f"first run ({resource} 1): {summary['first_run_s']:.1f}s; {ref_text}")
            # 2. the retrained reference's training against a plain loop (before the other packings,
            # so that a run cut short by a time limit still has it)
            seconds, forget_size = retrain_record(uri)
            harness = seconds / a.epochs
            loop = plain_loop_epoch(data, a.model, forget_size, a.epochs, a.batch_size, 0.05, a.device)
            if gpu:  # its cached blocks counted in every later run's memory figure
                torch.cuda.empty_cache()
            summary["epoch_s"] = {"harness": round(harness, 4), "plain_loop": round(loop, 4), "ratio": round(harness / loop, 3)}
            say(f"retrained reference: {harness:.3f} s/epoch in the harness vs {loop:.3f} s/epoch in a plain torch loop "
                f"on the same device: ratio {harness / loop:.2f} (target <= 1.1)")
            save()
            if 1 in packing:
                packed_row(1, lines, t_zero, sampler, idle)
            # 3. the same trials again (references cached) at each other packing
            for p in packing:
                if p == 1:
                    continue
                idle = sampler.idle()
                lines, t_zero = run_bench([*common, resource, f"{1 / p:.4g}", "--experiment", f"packed-{p}"], str(root),
                                          sampler, root / f"bench-packed-{p}.log")
                packed_row(p, lines, t_zero, sampler, idle)
        if len(rows) > 1:
            say(throughput_line(rows))
        summary["total_s"] = round(time.perf_counter() - t_script, 1)
        save()
        say(f"figures in {root / 'bench_gpu.json'}" if tmp_ctx is None else "done")
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()


if __name__ == "__main__":
    main()
