"""The benchmark scripts that drive the harness's internals (not only its CLI) still run: two of them
broke unnoticed when the core changed (bench_attacks.py's stand-in group, bench_device.py reading a
TrialSpec as a dict). Each runs here at its smallest setting."""

from __future__ import annotations

import os
import re
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


# -- the scripts behind the figures in README.md, docs/performance.md and docs/methods.md: each at its
# smallest setting, so that a change of the core that breaks one shows here

def _ok(script: str, *args: str) -> str:
    done = _run(script, *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def test_bench_iu_prints_a_row_per_method_and_alpha():
    out = _ok("bench_iu.py", "--seeds", "0", "--l1", "6e-3", "--iu", "13,20")
    rows = [line.split() for line in out.splitlines() if line.startswith(("l1-sparse", "iu "))]
    assert [(r[0], r[1]) for r in rows] == [("l1-sparse", "0.006"), ("iu", "13"), ("iu", "20")], out
    assert all(r[-1] in ("0/1", "1/1") and 0.0 <= float(r[2]) <= 1.0 for r in rows), out


def test_bench_fisher_matches_the_notebooks_loop():
    out = _ok("bench_fisher.py", "--n", "32", "--repeats", "1")
    diffs = [float(m) for m in re.findall(r"max relative difference to the loop ([0-9.e+-]+)", out)]
    assert len(diffs) == 2 and max(diffs) < 1e-4, out  # the method's and vmap's Fisher equal the loop's


def test_bench_shadows_times_three_ways_and_prints_the_roofline():
    out = _ok("bench_shadows.py", "--models", "2", "--epochs", "1", "--repeats", "1", "--hidden", "16")
    assert re.search(r"speed-up sequential/stacked = [0-9.]+x wall", out), out
    assert "the largest speed-up over sequential this CPU allows is" in out, out


def test_bench_sisa_prints_measured_and_theoretical_speed_ups():
    out = _ok("bench_sisa.py", "--shards", "2", "--slices", "2", "--requests", "1", "--epochs", "1")
    row = next(line.split() for line in out.splitlines() if line.split()[:2] == ["2", "2"])
    assert row[5].endswith("x") and row[6] == "2.40x", out  # theory S*3R/(2R+1) = 2*6/5


def test_bench_data_times_every_input_path():
    out = _ok("bench_data.py", "--n", "64", "--repeats", "1", "--model", "mlp", "--workers", "0")
    assert {line.split()[0] for line in out.splitlines()[-3:]} == {"device", "stream", "torchvision"}, out


def test_bench_continual_prints_cumulative_seconds_per_request():
    out = _ok("bench_continual.py", "--requests", "2", "--size", "5", "--methods", "retrain,ft", "--epochs", "2")
    row = next(line.split() for line in out.splitlines() if line.startswith("retrain "))
    assert "cost vs retrain trial" in out and row[5] == "1.000", out  # the retrain trial over itself
    last = {line.split()[0]: line.split()[1:] for line in out.splitlines()[-3:]}
    assert set(last) == {"retraining", "retrain", "ft"} and all(len(v) == 2 for v in last.values()), out
    assert all(float(v[1]) >= float(v[0]) > 0 for v in last.values()), out  # cumulative


def test_bench_rl_salun_counts_seeds_meeting_the_goal():
    out = _ok("bench_rl_salun.py", "--seeds", "0")
    rows = [line for line in out.splitlines() if "worst forget" in line]
    assert {line.split()[0] for line in rows} == {"rl", "salun", "salun-soft"} and len(rows) >= 3, out
    assert all(re.search(r"\s[01]/1\s", line) for line in rows), out


def test_bench_cli_times_the_commands_that_start_without_work():
    out = _ok("bench_cli.py", "--repeats", "1")
    rows = [line for line in out.splitlines() if " median " in line]
    assert len(rows) >= 4 and any(line.startswith("bench --help") for line in rows), out


def test_bench_training_compares_the_harness_fit_with_a_plain_loop():
    out = _ok("bench_training.py", "--epochs", "2", "--repeats", "1")
    assert re.search(r"ratio harness/plain = [0-9.]+ +\(target <= 1.10\)", out), out


def test_bench_run_times_a_cached_run_and_its_first_line():
    out = _ok("bench_run.py", "--methods", "ga", "--executor", "local")
    assert re.search(r"cached run: [0-9.]+ s wall \(target <= 20 s: (met|NOT met)\); first line after [0-9.]+ s", out), out


def test_bench_scaling_prints_the_one_to_two_cpu_ratio(tmp_path):
    """Its patches of the executor, the progress and the local tracking (the completion stamps) still
    reach the calls a run makes: two trials at each CPU count through Ray."""
    out = _ok("bench_scaling.py", "--trials", "2", "--epochs", "1", "--import-runs", "1")
    assert re.search(r"speed-up 1 -> 2 CPUs: [0-9.]+x \(target >= 1.8x: (met|NOT met)\); Ray\+MLflow over "
                     r"in-process: -?[0-9.]+ s/trial", out), out
    assert re.search(r"steady state \(first to last trial finished\): in process [0-9.]+ s/trial", out), out
    assert re.search(r"a fresh trial worker's imports: [0-9.]+ s \(ray [0-9.]+", out), out


def test_bench_salun_table_runs_a_group_and_reports_it_again_from_mlflow(tmp_path):
    """One group on the smallest setting: the group's rows hold numbers, the other group's rows are
    dashes, and --report-only prints the same table from the store without running anything."""
    common = ("--settings", "digits-mlp-random", "--seeds", "0", "--cache-dir", str(tmp_path / "cache"))
    out = _ok("bench_salun_table.py", *common, "--groups", "family", "--out", str(tmp_path / "t.md"))
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and not line.startswith("| method")}
    family = ["SCRUB", "Bad Teacher", "SSD", "LFSSD", "CF-k", "EU-k", "NegGrad+"]
    assert all(len(rows[m]) == 7 and all(re.fullmatch(r"[0-9.]+", c) for c in rows[m]) for m in family), out
    assert all(set(rows[m]) == {"\u2013"} for m in ("Retrain", "FT", "SalUn", "PRUNE")), out  # base: not run
    assert "(Retrain in the family run: s " in out, out
    again = _ok("bench_salun_table.py", *common, "--report-only")
    table = out[out.index("| method"):]
    assert again[again.index("| method"):] == table, again
    assert table.strip() in (tmp_path / "t.md").read_text()
