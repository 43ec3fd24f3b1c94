"""Wall clock of `bench run --methods retrain,ft,ga` on digits: first run, then the cached run.

Usage: python benchmarks/bench_run.py [--methods retrain,ft,ga] [--executor ray]
Runs in a fresh temporary directory (empty reference cache, new SQLite store), so the first
run trains the references and creates the MLflow tables; the second finds both.
Target: cached run under 30 s including Ray start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="retrain,ft,ga")
    ap.add_argument("--executor", default="ray")
    a = ap.parse_args()
    exe = shutil.which("bench", path=os.path.dirname(sys.executable)) or "bench"
    with tempfile.TemporaryDirectory() as tmp:
        args = [exe, "run", "--methods", a.methods, "--executor", a.executor, "--cache-dir", os.path.join(tmp, "cache")]
        times = []
        for label in ("first run (trains references)", "second run (cached)"):
            t0 = time.perf_counter()
            proc = subprocess.run(args, cwd=tmp, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            refs = [line[line.index("references:"):] for line in proc.stdout.splitlines() if "references:" in line]
            print(f"{label:<32} {times[-1]:6.1f} s  exit {proc.returncode}  {refs[0] if refs else ''}")
            if proc.returncode:
                print(proc.stdout[-3000:], proc.stderr[-3000:])
                sys.exit(1)
        print(f"cached / first = {times[1] / times[0]:.2f}; cached run target < 30 s: {'met' if times[1] < 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
