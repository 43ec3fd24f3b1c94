"""Wall clock of the README's main job, `bench run --methods prune,sisa`, on digits: first run, then
the cached run, each with the time its first line took to appear.

Usage: python benchmarks/bench_run.py [--methods prune,sisa] [--executor ray] [--runs 1]
Runs in a fresh temporary directory (empty reference cache, new SQLite store), so the first
run trains the references and creates the MLflow tables; the next ones (``--runs``) find both.
Each run is a fresh `bench` process, timed from its launch: the first line (any output) and the
exit. The phases of the last cached run are the `bench` progress lines' own timestamps.
Targets (2-core CPU): cached run at most 20 s wall including Ray's start; first line within 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def timed_run(args: list[str], cwd: str) -> tuple[float, float | None, int, list[str], str]:
    """(wall seconds, seconds to the first line, exit code, stdout lines, stderr)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    first = None
    lines = []
    for line in proc.stdout:
        if first is None:
            first = time.perf_counter() - t0
        lines.append(line.rstrip("\n"))
    err = proc.stderr.read()
    code = proc.wait()
    return time.perf_counter() - t0, first, code, lines, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="prune,sisa")
    ap.add_argument("--executor", default="ray")
    ap.add_argument("--runs", type=int, default=1, help="cached runs after the first (at least 1)")
    a = ap.parse_args()
    if a.runs < 1:
        ap.error("--runs must be at least 1: the figures are those of the cached runs after the first")
    exe = shutil.which("bench", path=os.path.dirname(sys.executable)) or "bench"
    cached = []
    with tempfile.TemporaryDirectory() as tmp:
        args = [exe, "run", "--methods", a.methods, "--executor", a.executor, "--cache-dir", os.path.join(tmp, "cache"),
                "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"]
        print(f"bench run --methods {a.methods} --executor {a.executor} (digits/mlp, seed 0), {os.cpu_count()} CPUs")
        for i in range(1 + a.runs):
            label = "first run (trains references)" if i == 0 else f"cached run {i}"
            wall, first, code, lines, err = timed_run(args, tmp)
            refs = [line[line.index("references:"):] for line in lines if "references:" in line]
            print(f"{label:<32} wall {wall:6.1f} s  first line {first or float('nan'):5.2f} s  exit {code}  {refs[0] if refs else ''}")
            if code:
                print("\n".join(lines[-40:]), err[-3000:])
                sys.exit(1)
            if i:
                cached.append((wall, first, lines))
    wall, first, lines = min(cached, key=lambda c: c[0])
    print("\nphases of the fastest cached run (bench's own timestamps, seconds since its first line):")
    for line in lines:
        if line[:1] == " " and "s  " in line[:10] and not line.lstrip().startswith(("┃", "│", "┏", "┡", "└")):
            print("  " + line.strip()[:150])
    print(f"\ncached run: {wall:.1f} s wall (target <= 20 s: {'met' if wall <= 20 else 'NOT met'}); "
          f"first line after {first:.2f} s (target <= 1 s: {'met' if first <= 1 else 'NOT met'})")


if __name__ == "__main__":
    main()
