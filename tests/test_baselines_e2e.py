"""The SalUn-family baselines end to end: `bench run` through Ray Tune and MLflow on two seeds,
and `bench tune --method salun` against salun's defaults on the same setting and seed."""

from __future__ import annotations

import json

import mlflow
import pytest

# one xdist worker for the module: its module-scoped Ray run is made once, not once per worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("baselines_e2e")]

METHODS = ("rl", "salun", "l1-sparse", "iu", "retrain")
SEEDS = ("0", "1")  # two: a mean and a standard deviation in every summary cell (three cost 15 s more)
#: every metric a trial logs on these methods with the svc attack
METRICS = [
    "retain_acc", "forget_acc", "test_acc",
    "original_retain_acc", "original_forget_acc", "original_test_acc",
    "retrain_retain_acc", "retrain_forget_acc", "retrain_test_acc",
    "retain_gap", "forget_gap", "test_gap", "avg_gap", "js_to_retrain_forget", "js_to_retrain_test",
    "unlearn_seconds", "retrain_seconds", "speedup_vs_retrain", "peak_memory_mb", "forget_size",
    "mia_efficacy", "avg_gap_mia",
]
SUMMARY_METRICS = ("retain_acc", "forget_acc", "test_acc", "avg_gap", "mia_efficacy")


def _runs(workdir, experiment="unlearning-bench"):
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=[experiment], order_by=["start_time ASC"])


def _summary_rows(text: str) -> dict[str, dict[str, str]]:
    """summary.md (a Markdown table) -> {method row name: {column: cell}}."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        rows[cells["method"]] = cells
    return rows


@pytest.fixture(scope="module")
def baselines_run(tmp_path_factory, run_bench, store_args):
    """`bench run --methods rl,salun,l1-sparse,iu,retrain --seeds 0,1` on digits / mlp / random:10%
    through Ray, once for the module. Kept light: references trained 10 epochs (30 by default; the
    original still fits its training set, checked below) and only the svc attack, the one behind
    mia_efficacy and avg_gap_mia."""
    workdir = tmp_path_factory.mktemp("baselines")
    (workdir / "cache").mkdir()
    proc = run_bench("run", "--methods", ",".join(METHODS), "--seeds", ",".join(SEEDS), "--recipe", "epochs=10",
                     "--attacks", "svc", *store_args(workdir), cwd=workdir)
    return workdir, proc


def test_baselines_run_through_ray_log_ten_finished_trials_with_every_metric(baselines_run):
    workdir, proc = baselines_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "started local Ray on 127.0.0.1" in proc.stdout
    assert "references: 4 trained, 0 from cache" in proc.stdout
    df = _runs(workdir)
    parents = df[df["tags.bench.role"] == "parent"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    kids = df[df["tags.mlflow.parentRunId"] == parents.iloc[0]["run_id"]]
    assert len(kids) == 10 and set(kids["status"]) == {"FINISHED"}
    assert sorted(zip(kids["params.method"], kids["params.seed"], strict=True)) == sorted(
        (m, s) for m in METHODS for s in SEEDS)
    for metric in METRICS:
        assert kids[f"metrics.{metric}"].notna().all(), metric
    assert parents.iloc[0]["metrics.trials_finished"] == 10 and parents.iloc[0]["metrics.trials_failed"] == 0
    # what each method may read is recorded with its trial
    access = dict(zip(kids["params.method"], kids["params.data_access"], strict=False))
    assert access["rl"] == access["salun"] == access["iu"] == "forget,retain"
    assert access["l1-sparse"] == "retain"
    # retrain is its own target: no gap; the others are measured against it
    retrain = kids[kids["params.method"] == "retrain"]
    assert (retrain["metrics.avg_gap"] == 0).all() and (retrain["metrics.avg_gap_mia"] == 0).all()
    for col in ("metrics.forget_acc", "metrics.test_acc", "metrics.mia_efficacy"):
        assert kids[col].between(0, 1).all(), col


def test_baselines_summary_has_one_row_per_method_and_reference_with_the_mlflow_means(baselines_run):
    workdir, proc = baselines_run
    df = _runs(workdir)
    parent = df[df["tags.bench.role"] == "parent"].iloc[0]
    kids = df[df["tags.mlflow.parentRunId"] == parent["run_id"]]
    rows = _summary_rows(mlflow.artifacts.load_text(f"runs:/{parent['run_id']}/summary.md"))
    assert list(rows) == ["original (reference)", "retrain (reference)", *METHODS]  # method rows in --methods order
    for name in rows:  # the console table printed the same rows
        assert f"│ {name} " in proc.stdout, name
    for method in METHODS:
        row = rows[method]
        assert (row["ok"], row["failed"]) == ("2", "0"), row
        for metric in SUMMARY_METRICS:
            mean, _, std = row[metric].partition(" ± ")
            values = kids.loc[kids["params.method"] == method, f"metrics.{metric}"]
            assert float(mean) == pytest.approx(values.mean(), abs=6e-4), (method, metric)
            assert std and float(std) == pytest.approx(values.std(ddof=1), abs=6e-4), (method, metric)
    # the reference rows: one original and one retrained model per seed
    assert rows["original (reference)"]["ok"] == rows["retrain (reference)"]["ok"] == "2"
    assert float(rows["original (reference)"]["forget_acc"].split(" ± ")[0]) >= 0.95
    # the original's avg_gap (what doing nothing scores) as bench compare shows it; it read "-" here
    gaps = [(kids["metrics.original_" + a] - kids["metrics.retrain_" + a]).abs() for a in ("retain_acc", "forget_acc", "test_acc")]
    per_seed = (sum(gaps) / 3).groupby(kids["params.seed"]).first()
    assert float(rows["original (reference)"]["avg_gap"].split(" ± ")[0]) == pytest.approx(per_seed.mean(), abs=6e-4)
    assert rows["retrain (reference)"]["avg_gap"].startswith("0.000")


def test_tune_salun_finds_parameters_at_least_as_good_as_the_defaults(baselines_run, workdir, run_bench, invoke_bench):
    """`bench tune --method salun` (3 samples) on digits / mlp / random:10%, seed 0: its sample 0 runs
    salun's defaults (lr 0.01, threshold 0.5), so the best it saves is never worse than them whatever
    the sampler draws (until 2026-12-06 every sample was drawn, and this test relied on sampler seed
    0 drawing a point that beat the defaults, measured by a second run); a plain `bench run` of the
    saved best parameters gives the tuned value again."""
    best_file = workdir / "best-salun.json"
    # the module's run's references (10 epochs, seed 0) from its cache: none trained here
    store = ["--recipe", "epochs=10", "--cache-dir", str(baselines_run[0] / "cache"),
             "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    tune = run_bench("tune", "--method", "salun", "--num-samples", "3", "--seed", "0", "--attacks", "", "-O", str(best_file),
                     *store, cwd=workdir)
    assert tune.returncode == 0, tune.stdout + tune.stderr
    assert "sample 0 runs the defaults (lr=0.01, threshold=0.5)" in tune.stdout
    assert "references: 0 trained, 2 from cache" in tune.stdout, tune.stdout

    df = _runs(workdir)
    parent = df[df["tags.bench.kind"] == "tune"].iloc[0]
    samples = df[df["tags.mlflow.parentRunId"] == parent["run_id"]].set_index("tags.mlflow.runName")
    assert len(samples) == 3 and set(samples["status"]) == {"FINISHED"}
    defaults = samples.loc["salun seed=0 sample 0"]
    assert float(defaults["params.params.lr"]) == 0.01 and float(defaults["params.params.threshold"]) == 0.5
    assert samples["params.params.lr"].nunique() == 3  # the other two are drawn
    best_value = samples["metrics.avg_gap"].min()
    assert parent["metrics.best_avg_gap"] == pytest.approx(best_value)
    assert best_value <= defaults["metrics.avg_gap"]

    # the saved parameters reproduce the tuned value in a plain run (the local executor)
    best = json.loads(best_file.read_text())["salun"]
    again = invoke_bench("run", "--methods", "salun", "--params", str(best_file), "--seeds", "0", "--executor", "local",
                         "--attacks", "", "--experiment", "best", *store, cwd=workdir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "references: 0 trained, 2 from cache" in again.stdout  # the same original and retrained models
    rerun = _runs(workdir, "best")
    rerun = rerun[rerun["tags.bench.role"] == "trial"].iloc[0]
    assert float(rerun["params.params.lr"]) == pytest.approx(float(best["lr"]))
    assert float(rerun["params.params.threshold"]) == pytest.approx(float(best["threshold"]))
    assert rerun["metrics.avg_gap"] == pytest.approx(best_value, abs=1e-12)
