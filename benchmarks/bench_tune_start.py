"""How long `bench tune -n N` waits before its first sample, and why: Ray Tune's default generator
deep-copies the whole unresolved search space, a `grid_search` list of N values included, for every
trial it makes (N x N copies). The harness hands Tune its configs one by one instead
(`bench.run.tune_parts.in_order`).

Usage: python benchmarks/bench_tune_start.py [--samples 3000] [--end-to-end]
Part 1 makes the N trials' configs three ways in one process, without running them: a grid of the
samples' `{"number", "sample"}` dicts (what `bench tune` did), a grid of N integers (what `bench
run` does with a table of specs), and the in-order searcher (both now): seconds to the first and to
the last config, and the ratios. Part 2 (`--end-to-end`) runs `bench tune -m ft -n N --attacks ''`
on digits in a fresh temporary directory and prints when the first sample started (after the
references and Ray's start, which it also prints), then stops it with Ctrl-C and times the exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def make_trials(generator, space: dict, n: int) -> tuple[float, float, int]:
    """(seconds to the first trial, seconds to the last, trials made) of a Tune generator."""
    generator.add_configurations({"bench": {"run": lambda config: None, "config": space, "num_samples": n}})
    t0, first, made = time.perf_counter(), None, 0
    while (trial := generator.next_trial()) is not None:
        made += 1
        first = time.perf_counter() - t0 if first is None else first
        if made >= n and getattr(generator, "is_finished", lambda: True)():
            break
    return first or 0.0, time.perf_counter() - t0, made


def part_generators(n: int) -> None:
    from ray import tune
    from ray.tune.search import SearchGenerator
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from bench.run.tune_parts import in_order

    samples = [{"number": k, "sample": {"lr": 10 ** (-4 + 3 * k / n), "epochs": 1 + k % 20}} for k in range(n)]
    rows = [("grid of sample dicts", make_trials(BasicVariantGenerator(), {"pick": tune.grid_search(samples)}, 1)),
            ("grid of integers", make_trials(BasicVariantGenerator(), {"trial": tune.grid_search(list(range(n)))}, 1)),
            ("in-order searcher", make_trials(SearchGenerator(in_order([{"pick": s} for s in samples])), {}, n))]
    print(f"making {n} trials' configs (no trial run):")
    for name, (first, last, made) in rows:
        print(f"  {name:22s} first {first:7.2f} s   all {last:7.2f} s   ({made} trials)")
    base = rows[2][1][1]
    print(f"  ratio, all configs: grid of dicts / in-order {rows[0][1][1] / base:.0f}x; "
          f"grid of integers / in-order {rows[1][1][1] / base:.0f}x")


def part_end_to_end(n: int) -> None:
    exe = shutil.which("bench", path=os.path.dirname(sys.executable)) or "bench"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XDG_CACHE_HOME": os.path.join(tmp, "cache"), "BENCH_PLUGINS": ""}
        t0 = time.perf_counter()
        proc = subprocess.Popen([exe, "tune", "-m", "ft", "-n", str(n), "--attacks", "", "-O", os.path.join(tmp, "best.json"),
                                 "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"], cwd=tmp, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        marks = {}
        for line in proc.stdout:
            at = time.perf_counter() - t0
            if "references:" in line:
                marks.setdefault("references ready", at)
            if "running" in line and "sample" in line:
                marks["first sample started"] = at
                break
        proc.send_signal(signal.SIGINT)
        t1 = time.perf_counter()
        proc.stdout.read()
        code = proc.wait()
        print(f"bench tune -m ft -n {n} (digits, fresh cache and store):")
        for name, at in marks.items():
            print(f"  {name:22s} {at:7.2f} s")
        gap = marks.get("first sample started", float("nan")) - marks.get("references ready", float("nan"))
        print(f"  references -> first sample {gap:.2f} s; Ctrl-C -> exit {time.perf_counter() - t1:.2f} s (exit {code})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--end-to-end", action="store_true")
    a = ap.parse_args()
    if a.samples < 1:
        ap.error("--samples must be at least 1")
    part_generators(a.samples)
    if a.end_to_end:
        part_end_to_end(a.samples)


if __name__ == "__main__":
    main()
