"""Start-up cost of the console script: `bench --help` and an argument error.

Usage: python benchmarks/bench_cli.py [--repeats 5]. Target: each under 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    exe = shutil.which("bench", path=os.path.dirname(sys.executable)) or "bench"
    cases = {
        "bench --help": [exe, "--help"],
        "bench run --methods sisaa (error)": [exe, "run", "--methods", "sisaa"],
        "bench run --forget random:0% (error)": [exe, "run", "--forget", "random:0%"],
        "bench plugins": [exe, "plugins"],
    }
    for label, cmd in cases.items():
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"{label:<52} median {med:.3f} s  max {max(times):.3f} s  ({'<1 s' if max(times) < 1 else 'OVER 1 s'})")


if __name__ == "__main__":
    main()
