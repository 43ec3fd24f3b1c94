"""The benchmark scripts that drive the harness's internals (not only its CLI) still run: two of them
broke unnoticed when the core changed (bench_attacks.py's stand-in group, bench_device.py reading a
TrialSpec as a dict). Each runs here at its smallest setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_PLUGINS": ""}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)


def test_bench_attacks_times_every_attack_as_a_trial_runs_it():
    done = _run("bench_attacks.py", "--shadow-models", "4", "--attacks", "loss,lira,epsilon")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0] for line in done.stdout.splitlines()[-3:]}
    assert rows == {"loss", "lira", "epsilon"}, done.stdout


def test_bench_device_prints_its_table():
    done = _run("bench_device.py", "--device", "cpu", "--seeds", "0", "--recipe", "epochs=2")
    assert done.returncode == 0, done.stderr
    assert "ga seed=0" in done.stdout and "FAILED" not in done.stdout, done.stdout


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("upstream_*.py")))
def test_upstream_scripts_import_and_ask_for_their_checkout(script):
    """Without the reference checkout each comparison script stops at once with exit status 2 and a
    usage line (no traceback): what it imports, its shared helpers (benchmarks/_upstream.py) included,
    loads."""
    done = _run(script)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.strip(), done.stderr


def test_bench_tune_start_makes_every_config_three_ways():
    done = _run("bench_tune_start.py", "--samples", "40")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "(40 trials)" in line]
    assert len(rows) == 3 and "ratio, all configs" in done.stdout, done.stdout
