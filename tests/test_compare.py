"""``bench compare``: tables read back from MLflow, ranks, the Pareto plot and its artifact, errors.

Everything in process: the command through click's CliRunner, and one module-scoped
experiment (--executor local, 5 epochs): a first run of
retrain, ft, ga and ``flaky`` (fails on seed 1 only) over seeds 0 and 1, then a second, later
run of ft and ga (another ga lr) on seed 0; plus an empty experiment.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
from click.testing import CliRunner
from rich.console import Console

import bench
from bench.track import compare as cmp
from bench.track import report
from bench.cli import main
from bench.core.options import RunOptions

# one xdist worker for the module: its module-scoped run is made once, not once per worker
pytestmark = pytest.mark.xdist_group("compare")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Flaky:
    """Returns the original model on seed 0, fails on seed 1: one finished and one failed trial."""

    name = "flaky"
    description = "test method that fails on seed 1"
    requires = frozenset({"forget"})
    default_params: ClassVar[dict] = {}
    search_space: ClassVar[dict] = {}

    def unlearn(self, model, request, params, ctx):
        if ctx.seed == 1:
            raise RuntimeError("flaky: deliberate failure on seed 1")
        return model


class _FlakyPlugin:
    @bench.hookimpl
    def register_methods(self, register):
        register(Flaky())


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    from bench.core.plugins import register_plugin, unregister_plugin
    from bench.run.runner import run

    root = tmp_path_factory.mktemp("compare")
    (root / "cache").mkdir()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    common = {"executor": "local", "recipe": {"epochs": 5}, "cache_dir": str(root / "cache"), "tracking_uri": uri}
    plugin = _FlakyPlugin()
    register_plugin(plugin)
    try:
        out = io.StringIO()
        code = run(RunOptions(methods="retrain,ft,ga,flaky", seeds=[0, 1], run_name="first", **common),
                   Console(file=out, width=200))
        assert code == 1, out.getvalue()  # flaky's seed-1 trial failed
        code = run(RunOptions(methods="ft,ga", seeds=[0], params={"ga": {"lr": "0.02"}}, run_name="second", **common),
                   Console(file=out, width=200))
        assert code == 0, out.getvalue()
    finally:
        unregister_plugin(plugin)
    client = MlflowClient(uri)
    client.create_experiment("empty")
    exp = client.get_experiment_by_name("unlearning-bench")
    parents = client.search_runs([exp.experiment_id], "tags.`bench.role` = 'parent'", order_by=["attributes.start_time DESC"])
    second, first = (p.info.run_id for p in parents)
    kids = client.search_runs([exp.experiment_id], "tags.`bench.role` = 'trial'", max_results=1000)
    by_parent = defaultdict(list)
    for k in kids:
        by_parent[k.data.tags["mlflow.parentRunId"]].append(k)
    return SimpleNamespace(root=root, uri=uri, client=client, first=first, second=second, kids=by_parent)


def _means(kids, metric):
    """method -> (mean, sample std, n) over the finished children, straight from MLflow."""
    vals = defaultdict(list)
    for k in kids:
        if k.info.status == "FINISHED":
            vals[k.data.tags["bench.method"]].append(k.data.metrics[metric])
    out = {}
    for m, v in vals.items():
        mean = sum(v) / len(v)
        std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
        out[m] = (mean, std, len(v))
    return out


def _expected_ranks(means: dict, maximize: bool) -> dict[str, int]:
    return {m: 1 + sum(1 for o in means.values() if (o[0] > v[0] if maximize else o[0] < v[0])) for m, v in means.items()}


def _csv(text: str) -> dict[str, dict]:
    return {r["method"]: r for r in csv.DictReader(io.StringIO(text))}


@pytest.mark.slow
def test_csv_matches_mlflow_values_and_ranks(store, invoke_bench):
    res = invoke_bench("compare", "--tracking-uri", store.uri, "--run", store.first, "--format", "csv", "--no-plot", cwd=store.root)
    assert res.returncode == 0, res.stderr
    rows = _csv(res.stdout)  # stdout is pure CSV: messages go to stderr
    assert list(rows) == ["original (reference)", "retrain (reference)", "retrain", "flaky", "ft", "ga"]
    kids = store.kids[store.first]
    for metric in ("avg_gap", "test_acc", "forget_acc", "unlearn_seconds", "js_to_retrain_forget"):
        for method, (mean, std, n) in _means(kids, metric).items():
            assert float(rows[method][f"{metric}_mean"]) == pytest.approx(mean, rel=1e-9, abs=1e-12), (method, metric)
            if n > 1:
                assert float(rows[method][f"{metric}_std"]) == pytest.approx(std, rel=1e-9, abs=1e-12), (method, metric)
            else:  # one value has no standard deviation (it read 0.0)
                assert rows[method][f"{metric}_std"] == "", (method, metric)
            assert int(rows[method]["ok"]) == n and int(rows[method][f"{metric}_n"]) == n
    expected = _expected_ranks(_means(kids, "avg_gap"), maximize=False)
    assert {m: int(rows[m]["rank"]) for m in expected} == expected
    assert rows["retrain"]["rank"] == "1" and float(rows["retrain"]["avg_gap_mean"]) == 0.0
    # the attacks' columns after the ranked ones (the file formats left them out; compare audit, 2026-12-07)
    mean, _, n = _means(kids, "loss_auc")["ga"]
    assert float(rows["ga"]["loss_auc_mean"]) == pytest.approx(mean, rel=1e-9) and int(rows["ga"]["loss_auc_n"]) == n
    assert rows["original (reference)"]["loss_auc_n"] == "0"  # the references are not attacked
    head = next(csv.reader(io.StringIO(res.stdout)))
    assert head.index("loss_auc_mean") > head.index("avg_gap_mean") and head.count("loss_auc_mean") == 1
    # the failed trial is counted, not averaged: flaky's numbers are its seed-0 trial's
    assert (rows["flaky"]["ok"], rows["flaky"]["failed"]) == ("1", "1")
    assert all(rows[m]["failed"] == "0" for m in ("retrain", "ft", "ga"))
    # the references: one value per seed, from the children's original_* / retrain_* metrics
    seed_refs = {k.data.tags["bench.seed"]: k.data.metrics for k in kids if k.info.status == "FINISHED"}
    assert len(seed_refs) == 2
    for name, prefix in (("original (reference)", "original_"), ("retrain (reference)", "retrain_")):
        assert rows[name]["rank"] == "" and rows[name]["ok"] == "2"
        vals = [m[f"{prefix}test_acc"] for m in seed_refs.values()]
        assert float(rows[name]["test_acc_mean"]) == pytest.approx(sum(vals) / 2)
    flaky_seed0 = next(k for k in kids if k.data.tags["bench.method"] == "flaky" and k.info.status == "FINISHED")
    # flaky returned the original model: its avg_gap is the original reference's gap on seed 0
    o = flaky_seed0.data.metrics
    gap0 = sum(abs(o[f"original_{a}"] - o[f"retrain_{a}"]) for a in cmp.ACCURACIES) / 3
    assert float(rows["flaky"]["avg_gap_mean"]) == pytest.approx(gap0, abs=1e-9)
    assert float(rows["retrain (reference)"]["unlearn_seconds_mean"]) == pytest.approx(
        sum(m["retrain_seconds"] for m in seed_refs.values()) / 2)


@pytest.mark.slow
def test_table_and_plot_logged_to_the_parent(store, invoke_bench):
    from PIL import Image

    res = invoke_bench("compare", "--tracking-uri", store.uri, "--run", store.first[:8], cwd=store.root)
    assert res.returncode == 0, res.stderr
    out, attacks = res.stdout.split("attacks on the forget set", 1)  # the ranked table, then the attacks' (as bench run)
    assert f"run {store.first[:8]} (first)" in out and "ranked by avg_gap (lower is better)" in out
    lines = {line.split("│")[2].strip(): [c.strip() for c in line.split("│")[1:-1]]
             for line in out.splitlines() if line.startswith("│")}
    # the attacks' table: the methods' rows, their headline figures, no rank (bench compare showed none before)
    cells = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
             for line in attacks.splitlines() if line.startswith("│")}
    head = [c.strip() for c in next(line for line in attacks.splitlines() if line.startswith("┃")).split("┃")[1:-1]]
    assert head[0] == "method" and {"loss_auc", "entropy_auc", "mia_efficacy"} <= set(head), head
    assert set(cells) == {"retrain", "ft", "ga", "flaky"}
    mean, std, n = _means(store.kids[store.first], "loss_auc")["ga"]
    assert cells["ga"][head.index("loss_auc")] == f"{mean:.3f} ± {std:.3f}"
    assert set(lines) == {"original (reference)", "retrain (reference)", "retrain", "ft", "ga", "flaky"}
    header = [c.strip() for c in next(line for line in out.splitlines() if line.startswith("┃")).split("┃")[1:-1]]
    assert header[:2] == ["rank", "method"] and header[-1] == "trials" and "avg_gap" in header
    means = _means(store.kids[store.first], "avg_gap")
    for method, rank in _expected_ranks(means, maximize=False).items():
        cells = lines[method]
        assert cells[0] == str(rank)
        mean, std, n = means[method]
        assert cells[header.index("avg_gap")] == (f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}")
    assert " ± " in lines["ft"][header.index("test_acc")]
    assert lines["flaky"][-1] == "1 ok, 1 failed" and lines["ga"][-1] == "2"
    assert lines["original (reference)"][0] == "-" and lines["retrain (reference)"][0] == "-"
    # the plot: default path in the working directory, a real PNG, logged as pareto.png
    png = store.root / f"compare-{store.first[:8]}.png"
    assert str(png) in res.stderr and "Pareto-optimal: retrain" in res.stderr
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and 15_000 < len(data) < 1_000_000
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width >= 600 and im.height >= 400
    assert "pareto.png" in [a.path for a in store.client.list_artifacts(store.first)]
    local = store.client.download_artifacts(store.first, "pareto.png", str(store.root / "dl"))
    assert Path(local).read_bytes() == data


@pytest.mark.slow
def test_latest_run_markdown_from_environment_with_objective(store, invoke_bench, tmp_path):
    plot = tmp_path / "sub" / "p.png"
    res = invoke_bench("compare", "--format", "markdown", "--objective", "test_acc", "--plot", str(plot),
                    cwd=tmp_path, env={"MLFLOW_TRACKING_URI": store.uri})
    assert res.returncode == 0, res.stderr
    assert store.second in res.stderr  # the latest parent run
    # the file says which run and objective it holds (only stderr did; outputs audit)
    assert res.stdout.startswith(f"*bench compare: 'unlearning-bench' run {store.second[:8]} (") and \
        "ranked by test\\_acc (higher is better)" in res.stdout.splitlines()[0], res.stdout[:300]
    table = [line.split("|")[1:-1] for line in res.stdout.splitlines() if line.startswith("| digits")]
    rows = {c[3].strip(): [x.strip() for x in c] for c in table}
    assert list(rows) == ["original (reference)", "retrain (reference)", "ft", "ga"]  # by rank: ft has the higher test_acc
    assert rows["ft"][4] == "1" and rows["ga"][4] == "2" and rows["original (reference)"][4] == "-"
    expected = _expected_ranks(_means(store.kids[store.second], "test_acc"), maximize=True)
    assert expected == {"ft": 1, "ga": 2}
    assert plot.read_bytes()[:8] == PNG_MAGIC and not list(tmp_path.glob("compare-*.png"))
    assert "pareto.png" in [a.path for a in store.client.list_artifacts(store.second)]
    # --minimize turns the ranking round
    r = CliRunner().invoke(main, ["compare", "--tracking-uri", store.uri, "--objective", "test_acc", "--minimize",
                                  "--format", "csv", "--no-plot"])
    assert r.exit_code == 0, r.output
    assert (_csv(r.stdout)["ft"]["rank"], _csv(r.stdout)["ga"]["rank"]) == ("2", "1")


@pytest.mark.slow
def test_run_all_pools_parents_and_separates_hyperparameters(store, invoke_bench):
    res = invoke_bench("compare", "--tracking-uri", store.uri, "--run", "all", "--format", "csv", cwd=store.root)
    assert res.returncode == 0, res.stderr
    rows = _csv(res.stdout)
    # ft: seeds 0 and 1 of the first run; the second run's seed 0 is the same measurement (the same
    # trial key), counted once (it was counted as a third seed)
    assert rows["ft"]["ok"] == "2"
    assert rows["retrain (reference)"]["ok"] == "2" and rows["retrain"]["ok"] == "2"
    assert {"ga[lr=0.005]", "ga[lr=0.02]"} <= set(rows) and "ga" not in rows
    assert rows["ga[lr=0.005]"]["ok"] == "2" and rows["ga[lr=0.02]"]["ok"] == "1"
    ft = {p: {k.data.tags["bench.seed"]: k.data.metrics["avg_gap"] for k in store.kids[p]
              if k.data.tags["bench.method"] == "ft"} for p in (store.first, store.second)}
    assert ft[store.second]["0"] == ft[store.first]["0"]  # deterministic: the same trial, the same numbers
    assert float(rows["ft"]["avg_gap_mean"]) == pytest.approx(sum(ft[store.first].values()) / 2)
    png = store.root / f"compare-all-{store.second[:8]}.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert "pareto-all.png" in [a.path for a in store.client.list_artifacts(store.second)]


def _err(store, *args, env=None):
    r = CliRunner().invoke(main, ["compare", "--tracking-uri", store.uri, "--no-plot", *args], env=env)
    assert r.exit_code == 2, r.output
    return r.stderr


@pytest.mark.slow
def test_errors(store, tmp_path):
    msg = _err(store, "--experiment", "nope")
    assert "Unknown experiment 'nope'" in msg and "'empty'" in msg and "'unlearning-bench'" in msg
    msg = _err(store, "--experiment", "empty")
    assert "'empty' has no bench runs" in msg
    msg = _err(store, "--run", "0123456789abcdef")
    assert "Unknown run '0123456789abcdef'" in msg and store.first in msg and store.second in msg
    child = store.kids[store.first][0].info.run_id
    assert f"its parent run is {store.first}" in _err(store, "--run", child)
    msg = _err(store, "--objective", "nope")
    assert "Unknown objective metric 'nope'" in msg
    assert all(f" {m}" in msg for m in ("avg_gap", "test_acc", "unlearn_seconds", "forget_gap"))
    assert "original_test_acc" not in msg
    msg = _err(store, "--objective", "retrain_seconds")  # logged by every trial: "Unknown" before
    assert "'retrain_seconds' is the retrained reference's value" in msg and "--objective unlearn_seconds" in msg, msg
    msg = _err(store, "--objective", "original_test_acc")
    assert "'original_test_acc' is the original model's value" in msg and "--objective test_acc" in msg, msg
    for retrained in ("epsilon_retrained_retain_acc", "epsilon_retrained_test_acc"):  # ranked as a tie at 1 before
        msg = _err(store, "--objective", retrained)
        assert f"--objective {retrained}: It is the retrained shadow models' mean accuracy" in msg, msg
        assert "'epsilon_score'" in msg
    msg = _err(store, "--objective", "forget_acc")
    assert "No known better direction for 'forget_acc'" in msg and "'forget_gap'" in msg and "--maximize" in msg
    r = CliRunner().invoke(main, ["compare", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"])
    assert r.exit_code == 2 and "No MLflow store at" in r.stderr and not (tmp_path / "none.db").exists()


def test_directions_pareto_and_ranks():
    assert cmp.direction("avg_gap") is False and cmp.direction("js_to_retrain_test") is False
    assert cmp.direction("test_acc") is True and cmp.direction("speedup_vs_retrain") is True
    assert cmp.direction("unlearn_seconds") is False and cmp.direction("peak_memory_mb") is False
    assert cmp.direction("forget_acc") is None and cmp.direction("mia_auc") is None
    assert cmp.direction("mia_gap") is False and cmp.direction("attack_acc") is True
    # continual requests: the forgotten points' accuracy has retrain's value as its target
    assert cmp.direction("forget_all_acc") is None and cmp.direction("forget_all_gap") is False
    assert cmp.direction("cumulative_speedup_vs_retrain") is True
    assert cmp.direction("cumulative_unlearn_seconds") is False
    # (gap, utility): lower gap and higher utility dominate
    pts = [(0.0, 0.90), (0.04, 0.95), (0.3, 0.6), (0.04, 0.90), (0.5, 0.95)]
    assert cmp.pareto_front(pts) == [0, 1]
    rows = [report.Row(("d", "m", "f"), n, {"x": v}, len(v), 0)
            for n, v in (("original (reference)", [5.0]), ("a", [1.0, 3.0]), ("b", [2.0]), ("c", [2.0]), ("d", []))]
    assert report.rank_rows(rows, "x", maximize=False) == [None, 1, 1, 1, None]
    assert report.rank_rows(rows, "x", maximize=True) == [None, 1, 1, 1, None]
    rows[2].values["x"] = [1.5]
    assert report.rank_rows(rows, "x", maximize=False) == [None, 2, 1, 2, None]
    assert report.rank_rows(rows, "x", maximize=True) == [None, 1, 3, 1, None]


def test_directions_agree_with_bench_tune():
    from bench.eval.metrics import METRIC_DIRECTIONS

    for metric, mode in METRIC_DIRECTIONS.items():
        assert cmp.direction(metric) is (mode == "max"), metric


@pytest.mark.slow
def test_tune_runs_only_when_named(store):
    """A `bench tune` parent (tag bench.kind=tune) is left out of latest/all; named, each sample is a row."""
    client = store.client
    exp = client.create_experiment("tuned")
    parent = client.create_run(exp, run_name="tune-ga", tags={"bench.role": "parent", "bench.kind": "tune"}).info.run_id
    template = next(k for k in store.kids[store.first] if k.data.tags["bench.method"] == "ga")
    for i, lr in enumerate(("0.01", "0.012345678")):
        tags = {k: v for k, v in template.data.tags.items() if k.startswith("bench.") and k != "bench.trial_key"}
        kid = client.create_run(exp, tags={**tags, "mlflow.parentRunId": parent, "bench.trial_key": f"k{i}"}).info.run_id
        client.log_param(kid, "params.lr", lr)
        for k, v in template.data.metrics.items():
            client.log_metric(kid, k, v + (0.01 * i if k == "avg_gap" else 0.0))
        client.set_terminated(kid, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    msg = _err(store, "--experiment", "tuned")
    assert "only `bench tune` runs" in msg and parent in msg
    r = CliRunner().invoke(main, ["compare", "--tracking-uri", store.uri, "--experiment", "tuned", "--run", parent,
                                  "--format", "csv", "--no-plot"])
    assert r.exit_code == 0, r.output
    rows = _csv(r.stdout)
    assert rows["ga[lr=0.01]"]["rank"] == "1" and rows["ga[lr=0.01235]"]["rank"] == "2"
    assert rows["original (reference)"]["ok"] == "1"  # both samples share one seed's references


@pytest.mark.slow  # runs the harness (or many LPs): full suite only, the quick loop stays under 2 min
def test_run_all_keeps_runs_of_another_recipe_or_forget_seed_apart(tmp_path, invoke_bench):
    """Pooling used to average runs of one (dataset, model, forget) as seeds of one setting whatever
    else differed: 30- and 5-epoch originals gave "original 0.965 ± 0.046". Now their rows stay apart,
    named by what differs; the seeds of one run (whose forget seed follows the seed) stay one setting."""
    from bench.run.runner import run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = {"executor": "local", "methods": "ft", "attacks": "", "cache_dir": str(tmp_path / "cache"),
              "tracking_uri": uri}
    out = io.StringIO()
    for extra in ({"seeds": [0, 1], "recipe": {"epochs": 4}}, {"recipe": {"epochs": 4}, "forget_seed": 7},
                  {"recipe": {"epochs": 3}}, {"seeds": [0, 1], "recipe": {"epochs": 4}, "forget_seed": 0}):
        assert run(RunOptions(**common, **extra), Console(file=out, width=200)) == 0, out.getvalue()
    res = invoke_bench("compare", "--tracking-uri", uri, "--run", "all", "--format", "csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = {(r["model"], r["method"]): r["ok"] for r in csv.DictReader(io.StringIO(res.stdout))}
    assert got == {
        ("mlp [forget_seed=seed,recipe.epochs=4]", "ft"): "2", ("mlp [forget_seed=seed,recipe.epochs=3]", "ft"): "1",
        ("mlp [forget_seed=7,recipe.epochs=4]", "ft"): "1",
        # --forget-seed 0 over seeds 0 and 1: one setting (seed 0's trial once read "seed")
        ("mlp [forget_seed=0,recipe.epochs=4]", "ft"): "2",
        **{(m, ref): n for m, n in (("mlp [forget_seed=seed,recipe.epochs=4]", "2"),
                                    ("mlp [forget_seed=seed,recipe.epochs=3]", "1"),
                                    ("mlp [forget_seed=7,recipe.epochs=4]", "1"),
                                    ("mlp [forget_seed=0,recipe.epochs=4]", "2"))
           for ref in ("original (reference)", "retrain (reference)")},
    }, got


@pytest.mark.slow  # runs the harness (or many LPs): full suite only, the quick loop stays under 2 min
def test_run_all_counts_a_trial_measured_by_two_runs_once(tmp_path, invoke_bench):
    """The same command run twice (no --resume) and pooled with --run all: each trial is one
    measurement, not two seeds ("2 trials, ± 0.000" for a single seed)."""
    from bench.run.runner import run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    opts = {"executor": "local", "methods": "ft", "attacks": "", "cache_dir": str(tmp_path / "cache"),
            "tracking_uri": uri, "recipe": {"epochs": 3}}
    out = io.StringIO()
    for _ in range(2):
        assert run(RunOptions(**opts), Console(file=out, width=200)) == 0, out.getvalue()
    res = invoke_bench("compare", "--tracking-uri", uri, "--run", "all", "--format", "csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = {r["method"]: r["ok"] for r in csv.DictReader(io.StringIO(res.stdout))}
    assert got == {"ft": "1", "original (reference)": "1", "retrain (reference)": "1"}, got


def test_interrupted_trials_are_killed_not_failed():
    """A trial an interrupt cut off (KILLED in MLflow) is not a failure of its method: compare counts it
    as bench run's summary does (it counted every non-FINISHED trial as failed)."""
    from bench.track import report
    from bench.track.compare.aggregate import build_rows
    from bench.track.compare.query import TrialRecord

    setting = ("digits", "mlp", "random:10%")

    def trial(seed, status, metrics):
        return TrialRecord(f"r{seed}", "p", "ft", str(seed), setting, status, seed, metrics, {}, label="ft")

    rows = build_rows([trial(0, "FINISHED", {"test_acc": 0.9}), trial(1, "KILLED", {}), trial(2, "FAILED", {})])
    ft = next(r for r in rows if r.name == "ft")
    assert (ft.ok, ft.failed, ft.killed) == (1, 1, 1)
    assert "| ft | 0.900 | 1 | 1 | 1 |" in report.to_markdown([ft], columns=("test_acc",))


def test_a_run_without_finished_trials_prints_its_table_and_no_plot(tmp_path, invoke_bench):
    """Every trial failed: the table (with the failures) stands and exit 0; no plot, said in a line
    (it ended with "Error: Nothing to plot" and exit 2 after printing the table); a plot asked for
    by name that cannot be written exits 1."""
    from bench.core.plugins import register_plugin, unregister_plugin
    from bench.run.runner import run

    class Broken:
        name = "broken"
        description = "raises (tests/test_compare.py)"
        requires = frozenset()
        default_params: dict = {}
        search_space: dict = {}

        def unlearn(self, model, request, params, ctx):
            raise RuntimeError("boom")

    class Plugin:
        @bench.hookimpl
        def register_methods(self, register):
            register(Broken())

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    plugin = Plugin()
    register_plugin(plugin)
    try:
        out = io.StringIO()
        assert run(RunOptions(executor="local", methods="broken", attacks="", recipe={"epochs": 2},
                              cache_dir=str(tmp_path / "cache"), tracking_uri=uri), Console(file=out, width=200)) == 1
    finally:
        unregister_plugin(plugin)
    res = invoke_bench("compare", "--tracking-uri", uri, "--format", "csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "no Pareto plot: no finished trial has both" in res.stderr and "Error" not in res.stderr
    assert {r["method"]: r["failed"] for r in csv.DictReader(io.StringIO(res.stdout))}["broken"] == "1"
    named = invoke_bench("compare", "--tracking-uri", uri, "--plot", str(tmp_path / "p.png"), cwd=tmp_path)
    assert named.returncode == 1 and not (tmp_path / "p.png").exists()


def test_pooled_settings_name_your_own_original_by_its_file_in_one_item():
    """A run from --original beside one without: the label read 'original.path=-,original.sha256=-'
    and the full path and 64-hex digest; now one item, the file's name and 8 hex digits."""
    from types import SimpleNamespace

    from bench.track.compare.query import _split_settings

    own = {"original.path": "/long/path/to/mine.safetensors", "original.sha256": "ab" * 32, "recipe.epochs": "30"}
    trials = [SimpleNamespace(setting=("digits", "mlp", "random:10%"), setting_params=p)
              for p in (own, {"recipe.epochs": "30"}, {"recipe.epochs": "5"})]
    _split_settings(trials)
    assert [t.setting[1] for t in trials] == ["mlp [recipe.epochs=30,original=mine.safetensors@abababab]",
                                             "mlp [recipe.epochs=30,original=none]",
                                             "mlp [recipe.epochs=5,original=none]"]
    # the same bytes under two names are one setting (its identity is the digest; split by name before)
    moved = {**own, "original.path": "/elsewhere/copy.safetensors"}
    same = [SimpleNamespace(setting=("digits", "mlp", "random:10%"), setting_params=dict(p)) for p in (own, moved)]
    _split_settings(same)
    assert [t.setting[1] for t in same] == ["mlp", "mlp"]
    other = {**moved, "original.sha256": "cd" * 32}
    three = [SimpleNamespace(setting=("digits", "mlp", "random:10%"), setting_params=dict(p)) for p in (own, moved, other)]
    _split_settings(three)
    assert [t.setting[1] for t in three] == ["mlp [original=mine.safetensors@abababab]",
                                             "mlp [original=mine.safetensors@abababab]",
                                             "mlp [original=copy.safetensors@cdcdcdcd]"]


def test_variant_labels_are_per_setting():
    """ga with two learning rates on random:10% and one on class:3: only the first setting's rows
    carry the learning rate (class:3's ga was labelled ga[lr=...] too, and the published lookup by
    name missed it)."""
    from bench.track.compare.query import TrialRecord, _label_variants

    def trial(forget, lr):
        return TrialRecord("r", "p", "ga", "0", ("digits", "mlp", forget), "FINISHED", 0, {}, {"lr": lr})

    trials = [trial("random:10%", "0.01"), trial("random:10%", "0.02"), trial("class:3", "0.01")]
    _label_variants(trials)
    assert [t.label for t in trials] == ["ga[lr=0.01]", "ga[lr=0.02]", "ga"]


def test_methods_ranked_over_different_seeds_are_noted():
    """--run all over a run of six methods on seeds 0-1 and one of ga and ft on seeds 0-2 ranked
    them all in one table with no word (found in review); one seed set per setting says nothing,
    nor do the reference rows or failed trials."""
    from types import SimpleNamespace

    from bench.track.compare import seed_notes
    from bench.track.compare.query import TrialRecord

    def trial(method, seed, forget="random:50", status="FINISHED"):
        t = TrialRecord(f"{method}{seed}", "p", method, seed, ("digits", "mlp", forget), status, 0, {}, {})
        t.label = method
        return t

    trials = [trial(m, s) for m in ("ga", "ft", "scrub") for s in "01"] + [trial("ga", "2"), trial("ft", "2"),
                                                                          trial("scrub", "2", status="FAILED")]
    trials += [trial(m, s, "class:3") for m in ("ga", "ft") for s in "01"]
    rows = [SimpleNamespace(setting=("digits", "mlp", f), name=n) for f in ("random:50", "class:3") for n in ("ga", "ft", "scrub")]
    comp = SimpleNamespace(rows=rows, ranks=[1, 2, 3, 1, 2, None], trials=trials, pooled=True)
    assert seed_notes(comp) == ["note: the methods of digits/mlp/random:50 are ranked over different seeds (ga, ft on "
                                "seed(s) 0,1,2; scrub on seed(s) 0,1); their means are over different forget sets and "
                                "initialisations: compare one run (--run RUN_ID), or run the missing seeds (a run's "
                                "failed or cut-off trials: `bench run --resume` runs them again)"]  # outputs audit
    comp.pooled = False  # one run: its other seeds failed; it advised comparing one run (compare audit, 2026-12-07)
    assert seed_notes(comp)[0].endswith("initialisations: the other seeds' trials failed or were cut off: `bench run "
                                        "--resume` runs them again")


def test_pooled_runs_with_other_forget_sets_for_one_seed_are_other_settings():
    """An indices file rewritten between two runs (the same --forget text, 10 points then 100) was
    averaged as seeds of one setting ("forget_acc 0.630 ± 0.099", the reference of the first run only).
    Runs adding other seeds of one random request stay one setting; runs from before the digest was
    recorded are never split."""
    from bench.track.compare.query import TrialRecord, _split_forget_sets, _split_settings

    def trial(parent, seed, digest, forget="indices:f.txt"):
        return TrialRecord(f"{parent}{seed}", parent, "ga", seed, ("digits", "mlp", forget), "FINISHED", 0, {}, {},
                           setting_params={"recipe.epochs": "2"}, forget_key=(seed, digest))

    rewritten = [trial("a", "0", "11" * 32), trial("b", "0", "22" * 32), trial("c", "1", "11" * 32)]
    more_seeds = [trial(p, s, d, "random:10%") for p, s, d in (("d", "0", "33" * 32), ("d", "1", "44" * 32),
                                                              ("e", "2", "55" * 32), ("f", "1", "44" * 32))]
    old = [trial("g", "0", "", "class:3"), trial("h", "0", "66" * 32, "class:3")]
    trials = rewritten + more_seeds + old
    _split_forget_sets(trials)
    _split_settings(trials)
    assert [t.setting[1] for t in rewritten] == ["mlp [forget_sha256=11111111]", "mlp [forget_sha256=22222222]",
                                                "mlp [forget_sha256=11111111]"]
    assert {t.setting[1] for t in more_seeds + old} == {"mlp"}


@pytest.mark.slow
def test_run_all_keeps_runs_of_a_rewritten_indices_file_apart(tmp_path, invoke_bench):
    from bench.run.runner import run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    idx = tmp_path / "idx.txt"
    common = {"executor": "local", "methods": "ga", "attacks": "", "cache_dir": str(tmp_path / "cache"),
              "tracking_uri": uri, "recipe": {"epochs": 2}, "forgets": [f"indices:{idx}"]}
    out = io.StringIO()
    for rows in (range(10), range(500, 600)):
        idx.write_text("\n".join(map(str, rows)) + "\n")
        assert run(RunOptions(**common), Console(file=out, width=200)) == 0, out.getvalue()
    res = invoke_bench("compare", "--tracking-uri", uri, "--run", "all", "--format", "csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = sorted((r["model"], r["method"], r["ok"]) for r in csv.DictReader(io.StringIO(res.stdout)))
    assert len({m for m, _, _ in got}) == 2 and all(n == "1" for _, _, n in got) and len(got) == 6, got


def test_a_run_name_given_to_two_runs_is_refused_listing_them(tmp_path):
    """`--run NAME` took the newer of two runs named NAME without a word."""
    from mlflow.tracking import MlflowClient

    from bench.core.errors import BenchError
    from bench.core.keys import Tag
    from bench.track.compare.query import select_parents

    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp_id = client.create_experiment("x", artifact_location=str(tmp_path / "art"))
    ids = [client.create_run(exp_id, run_name=name, tags={Tag.ROLE: "parent"}).info.run_id
           for name in ("dup", "dup", "solo")]
    exp = client.get_experiment(exp_id)
    with pytest.raises(BenchError, match=r"--run dup: 2 parent runs of experiment 'x' have that name: .*Give the run id"):
        select_parents(client, exp, "dup")
    assert [p.info.run_id for p in select_parents(client, exp, ids[0])] == [ids[0]]
    assert [p.info.run_id for p in select_parents(client, exp, "solo")] == [ids[2]]


def test_pooled_trials_measured_with_other_code_are_other_rows():
    """--run all averaged a plugin's v1 and v2 trials as seeds of one method."""
    from bench.track.compare.query import TrialRecord, _label_variants

    def trial(seed, code, lr="0.01"):
        return TrialRecord(f"r{seed}{code}", "p", "ga", seed, ("digits", "mlp", "random:10%"), "FINISHED", 0, {},
                           {"lr": lr}, code=code)

    same = [trial("0", "aaaaaaaa11"), trial("1", "aaaaaaaa11")]
    _label_variants(same)
    assert [t.label for t in same] == ["ga", "ga"]
    mixed = [trial("0", "aaaaaaaa11"), trial("1", "bbbbbbbb22"), trial("2", "")]
    _label_variants(mixed)
    assert [t.label for t in mixed] == ["ga[code=aaaaaaaa]", "ga[code=bbbbbbbb]", "ga[code=-]"]
    both = [trial("0", "aaaaaaaa11", "0.01"), trial("0", "bbbbbbbb22", "0.02")]
    _label_variants(both)
    assert [t.label for t in both] == ["ga[lr=0.01,code=aaaaaaaa]", "ga[lr=0.02,code=bbbbbbbb]"]


def test_the_references_times_are_reference_cells_and_no_objective():
    """compare left the retrained reference's cumulative time blank where the run's summary shows it,
    and ranked every method 1 by cumulative_retrain_seconds (the same for all)."""
    from bench.eval.metrics import METRIC_DIRECTIONS, no_direction_reason
    from bench.track.compare.aggregate import reference_values

    _, retrain = reference_values({"retrain_seconds": 2.0, "cumulative_retrain_seconds": 6.0, "retrain_test_acc": 0.9})
    assert retrain["unlearn_seconds"] == 2.0 and retrain["cumulative_unlearn_seconds"] == 6.0
    for name in ("retrain_seconds", "cumulative_retrain_seconds"):
        assert name not in METRIC_DIRECTIONS and "the same for every method" in no_direction_reason(name)
    assert "rank by 'cumulative_unlearn_seconds'" in no_direction_reason("cumulative_retrain_seconds")  # its own kind
    assert "rank by 'unlearn_seconds'" in no_direction_reason("retrain_seconds")


def test_latex_table_has_the_markdowns_cells(store, invoke_bench, tmp_path):
    """--format latex: a booktabs table for a paper, one block per setting, the same cells as the
    markdown (± in math mode), the first-ranked method in bold, failed trials counted."""
    res = invoke_bench("compare", "--tracking-uri", store.uri, "--run", store.first, "--format", "latex", "--no-plot",
                       cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    tex = res.stdout
    assert "the attacks' columns (" in res.stderr and "are left out of the LaTeX table" in res.stderr
    assert tex.startswith("\\begin{table}[t]\n\\centering\n\\caption{bench compare: ") and tex.endswith("\\end{table}\n")
    assert "\\toprule\nmethod & rank & retain\\_acc & forget\\_acc & test\\_acc & avg\\_gap" in tex
    # method + rank + 7 summary columns + cost_vs_retrain (the run has retrain trials) + trials
    assert tex.count("\\begin{tabular}{l" + "r" * 10 + "}") == 1 and "\\multicolumn{11}{l}{\\textit{digits / mlp / random:10\\%}}" in tex
    md = invoke_bench("compare", "--tracking-uri", store.uri, "--run", store.first, "--format", "markdown", "--no-plot",
                      cwd=tmp_path).stdout
    rows = {c[3].strip(): [x.strip() for x in c] for c in (line.split("|")[1:-1] for line in md.splitlines()
                                                           if line.startswith("| digits"))}
    lines = {line.split(" & ")[0]: line.split(" & ") for line in tex.splitlines() if " & " in line and "\\\\" in line}
    first = next(name for name, r in rows.items() if r[4] == "1")
    assert f"\\textbf{{{first}}}" in lines  # ranked first: in bold
    for name, md_row in rows.items():
        cells = lines.get(name) or lines[f"\\textbf{{{name}}}"]
        assert [c.replace("$\\pm$", "±").replace("$-$", "-").replace("--", "-") for c in cells[2:9]] == md_row[5:12], name
    assert lines["flaky"][-1] == "1 ok, 1 failed \\\\"
    from bench.track.latex import escape

    assert escape("a_b 10% & {x} ^~ # $ \\ ± <|>") == ("a\\_b 10\\% \\& \\{x\\} \\textasciicircum{}\\textasciitilde{} \\# \\$ "
                                                      "\\textbackslash{} $\\pm$ \\textless{}\\textbar{}\\textgreater{}")
    assert f"\\label{{tab:bench-{store.first[:8]}}}" in tex  # one label per compared run


def test_a_run_going_on_or_cut_off_says_how_many_planned_trials_are_not_shown(store, invoke_bench, tmp_path):
    """A local run writes a trial when it ends: compare on a run still going (or killed) ranked the
    finished trials with no word about the planned ones missing (outputs audit, 2026-12-07)."""
    client, run_id = store.client, store.second  # 2 trials (ft, ga) recorded; said now to have planned 3
    client.set_tag(run_id, "bench.trials", "3")
    try:
        for status, said in (("RUNNING", ", 1 planned not started"),
                             ("KILLED", ", 1 planned not started (the run ended before them: `bench run --resume` "
                                        "runs them)")):
            client.update_run(run_id, status=status)
            res = invoke_bench("compare", "--tracking-uri", store.uri, "--run", run_id, cwd=tmp_path)
            assert res.returncode == 0 and f" {status}): 2 trial(s){said}" in res.stderr, res.stderr
            assert "(partial: 1 planned trial(s) not finished)" in " ".join(res.stdout.split()), res.stdout
            # its plot is written, not stored in the run as the run's plot (concurrency audit)
            assert f"not logged to run {run_id}: the plot shows part of its planned trials" in res.stderr, res.stderr
        # a run beside, still training its references: latest has no trial yet; the line said it may have
        # been interrupted, and did not name the finished run (concurrency audit)
        exp = client.get_experiment_by_name("unlearning-bench").experiment_id
        going = client.create_run(exp, run_name="going", tags={"bench.role": "parent", "bench.trials": "2"}).info.run_id
        try:
            res = invoke_bench("compare", "--tracking-uri", store.uri, "--no-plot", cwd=tmp_path)
            assert res.returncode == 2 and f"No finished or failed trial runs under parent run {going} (it is still " \
                "running: training its references, or no trial has ended yet). The latest run with trials is " \
                f"{run_id} ('second'): --run {run_id[:8]}." in res.stderr, res.stderr
        finally:
            client.delete_run(going)
    finally:
        client.set_tag(run_id, "bench.trials", "2")
        client.update_run(run_id, status="FINISHED")
    res = invoke_bench("compare", "--tracking-uri", store.uri, "--run", run_id, "--no-plot", cwd=tmp_path)
    assert " FINISHED): 2 trial(s)\n" in res.stderr and "partial" not in res.stdout, res.stderr


def test_method_names_are_text_in_the_plot_markdown_and_latex_caption():
    """A method named m$\\oops$ crashed the plot (matplotlib read it as math: a raw traceback, exit
    1, and every later `--run all`); a '|' in a name split its markdown row; the caption's 'x' came
    out with two closing quotes (found in review)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.track import report
    from bench.track.compare.aggregate import build_rows
    from bench.track.compare.plot import _place_labels
    from bench.track.compare.query import TrialRecord
    from bench.track.latex import to_latex

    fig, ax = plt.subplots()
    ax.plot([0.1], [0.5], "o")
    ax.set_title("m$\\oops$ / digits", parse_math=False)
    _place_labels(ax, [(0.1, 0.5, "m$\\oops$", False)], fig.canvas.get_renderer())
    fig.savefig(io.BytesIO(), format="png")  # drawing parses every text
    plt.close(fig)
    setting = ("digits", "mlp", "random:10%")
    rows = build_rows([TrialRecord("r0", "p", "noise|b", "0", setting, "FINISHED", 0, {"test_acc": 0.9}, {},
                                   label="noise|b")])
    md = report.to_markdown(rows, columns=("test_acc",)).splitlines()
    line = next(x for x in md if "noise" in x)
    cells = lambda text: len(re.split(r"(?<!\\)\|", text))  # noqa: E731 -- a markdown cell ends at an unescaped '|'
    assert "noise\\|b" in line and cells(line) == cells(md[0]), line
    # HTML in a plugin's name shows as text where Markdown is rendered (compare audit, 2026-12-07)
    html = build_rows([TrialRecord("r1", "p", "<b>ev</b>&", "0", setting, "FINISHED", 0, {"test_acc": 0.9}, {},
                                   label="<b>ev</b>&")])
    assert "| &lt;b&gt;ev&lt;/b&gt;&amp; |" in report.to_markdown(html, columns=("test_acc",))
    tex = to_latex(rows, None, ("test_acc",), caption="bench compare: 'unlearning-bench' run 1")
    assert "\\caption{bench compare: `unlearning-bench' run 1}" in tex


def test_cost_vs_retrain_divides_by_the_retrain_trial_timed_beside_it():
    """speedup_vs_retrain divides the cached reference's time, measured once under another load (a
    cached run's own retrain trial showed 0.5x-7.8x, methods audit 2026-12-07): the tables add
    cost_vs_retrain, a trial's unlearn_seconds over the retrain trial's of the same run, setting,
    seed and forget set; none where the group has no finished retrain trial."""
    from bench.track import report

    a, b = ("p", "digits", "0"), ("p", "digits", "1")
    out = report.with_run_costs([
        (a, "retrain", {"unlearn_seconds": 2.0, "speedup_vs_retrain": 7.8}),
        (a, "ga", {"unlearn_seconds": 0.5}),
        (b, "ga", {"unlearn_seconds": 0.5}),  # seed 1: its retrain failed
        (b, "retrain", None),
        (a, "ft", None),
    ])
    assert out[0]["cost_vs_retrain"] == 1.0 and out[1]["cost_vs_retrain"] == 0.25
    assert "cost_vs_retrain" not in out[2] and out[3] is None and out[4] is None
    assert report.RUN_COST in report.OPTIONAL_COLUMNS
    # a sequence of requests: over every request, as the cumulative column beside it (seq audit)
    seq = report.with_run_costs([(a, "retrain", {"unlearn_seconds": 1.0, "cumulative_unlearn_seconds": 4.0}),
                                 (a, "prune", {"unlearn_seconds": 44.0, "cumulative_unlearn_seconds": 124.0})])
    assert seq[1]["cost_vs_retrain"] == 31.0
    from bench.eval.metrics import direction

    assert direction("cost_vs_retrain") is False  # compare ranks by it, lower is better


@pytest.mark.slow
def test_compare_and_the_summary_show_the_cost_against_the_runs_retrain(workdir, shared_cache, run_harness, trial_runs,
                                                                        invoke_bench, store_args):
    code, out = run_harness(workdir, methods="retrain,ga", attacks="", recipe={"epochs": 3}, cache_dir=str(shared_cache))
    assert code == 0 and "cost_vs_retrain" in out, out
    runs = trial_runs(workdir)
    want = runs.loc["ga", "metrics.unlearn_seconds"] / runs.loc["retrain", "metrics.unlearn_seconds"]
    got = invoke_bench("compare", "--no-plot", "--format", "csv", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}",
                       cwd=workdir)
    assert got.returncode == 0, got.stderr
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(got.stdout))}
    assert float(rows["ga"]["cost_vs_retrain_mean"]) == pytest.approx(want, rel=1e-12)
    assert float(rows["retrain"]["cost_vs_retrain_mean"]) == 1.0
    tuned = invoke_bench("tune", "--method", "ga", "--objective", "cost_vs_retrain", *store_args(workdir), cwd=workdir)
    # a table's figure, not a metric a sample records: tune refuses it before any work
    assert tuned.returncode == 2 and "Unknown objective 'cost_vs_retrain'" in tuned.stderr, tuned.stderr
    # ga measured again in a run without retrain: under --run all its latest trial has no cost, said
    # in a line (the cell was blank without a word; found in review, 2026-12-07)
    code, out = run_harness(workdir, methods="ga", attacks="", recipe={"epochs": 3}, cache_dir=str(shared_cache))
    assert code == 0, out
    got = invoke_bench("compare", "--no-plot", "--run", "all", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}",
                       cwd=workdir)
    assert got.returncode == 0, got.stderr
    assert "note: cost_vs_retrain of ga on digits/mlp/random:10% is blank: its trials were measured in a run without " \
           "a retrain trial" in " ".join(got.stderr.split()), got.stderr
