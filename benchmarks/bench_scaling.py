"""Throughput of 16 small trials through Ray on 1 vs 2 CPUs, and the per-trial overhead.

Usage: python benchmarks/bench_scaling.py [--trials 16] [--epochs 40]

Each trial is `ft` on digits/mlp with its own seed; the references of every seed are cached
by a warm-up run first, so only the trial phase is timed (from the first trial to the last). Three runs, in one process:
  * Ray with num_cpus=1, then num_cpus=2 (1 CPU per trial): speed-up = t1 / t2 (target >= 1.7);
  * the in-process executor (no Ray, same trials): per-trial time without scheduling.
Overhead per trial = (Ray 1-CPU trial-phase time - in-process trial-phase time) / trials: what
Ray Tune plus the MLflow callback add to each trial; the trial's own work is the in-process
time per trial (method call + evaluation), whose `unlearn_seconds` is shown too.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time

from rich.console import Console


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=40, help="ft epochs per trial (sets the trial's own work)")
    a = ap.parse_args()
    os.environ.setdefault("BENCH_PLUGINS", "")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    from bench import executor
    from bench.experiment import RunOptions
    from bench.runner import run

    phase: dict[str, float] = {}
    real_ray, real_local = executor.run_ray, executor.run_local

    def timed(label, fn):
        def wrapper(*args, **kw):
            t0 = time.perf_counter()
            out = fn(*args, **kw)
            phase[label] = time.perf_counter() - t0
            phase[label + ":results"] = out.results
            return out
        return wrapper

    with tempfile.TemporaryDirectory() as tmp:
        def many(executor_name, experiment):
            """ft x N seeds (one forget set): N trials, each with its own cached references."""
            return RunOptions(executor=executor_name, tracking_uri=f"sqlite:///{tmp}/mlflow.db", experiment=experiment,
                              cache_dir=f"{tmp}/cache", methods="ft", seeds=list(range(a.trials)), forget_seed=0,
                              params={"ft": {"epochs": a.epochs}})

        run(many("local", "warm-up"), Console(file=io.StringIO()), quiet=True)  # trains and caches every reference

        executor.run_local = timed("local", real_local)
        run(many("local", "local"), Console(file=io.StringIO()), quiet=True)
        for cpus in (1, 2):
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            executor.run_ray = timed(f"ray{cpus}", real_ray)
            run(many("ray", f"ray-{cpus}cpu"), Console(file=io.StringIO()), quiet=True)
            ray.shutdown()

    n = a.trials
    unlearn = statistics.mean(r["unlearn_seconds"] for r in phase["local:results"].values())
    print(f"{n} trials of ft ({a.epochs} epochs) on digits/mlp, references cached; trial phase only")
    print(f"in process (no Ray)   : {phase['local']:6.2f} s  = {phase['local'] / n:.3f} s/trial "
          f"(method call {unlearn:.3f} s + evaluation and bookkeeping)")
    print(f"Ray, 1 CPU            : {phase['ray1']:6.2f} s  = {phase['ray1'] / n:.3f} s/trial")
    print(f"Ray, 2 CPUs           : {phase['ray2']:6.2f} s  = {phase['ray2'] / n:.3f} s/trial")
    print(f"speed-up 1 -> 2 CPUs  : {phase['ray1'] / phase['ray2']:.2f}x  (target >= 1.7x)")
    overhead = (phase["ray1"] - phase["local"]) / n
    print(f"Ray Tune + MLflow overhead per trial: {overhead:.3f} s vs the trial's own work {phase['local'] / n:.3f} s "
          f"({overhead / (phase['local'] / n):.0%})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
