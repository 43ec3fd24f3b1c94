"""Published results as data (bench.track.compare.published, `bench compare --published TABLE`):
the shipped SalUn Table 1 and its citation, the paper's units computed from our metrics (checked
against a hand computation), and, on a real run of the `digits-quick` preset (its end-to-end test),
both tables printed and the published points on the Pareto plot."""

from __future__ import annotations

import csv
import io
import math

import pytest

from bench.track import report
from bench.track.compare import published

# one xdist worker for the module: its module-scoped run is made once, not once per worker
pytestmark = pytest.mark.xdist_group("published")

SETTING = ("digits", "mlp", "random:10%")


def _row(name, **values) -> report.Row:
    return report.Row(SETTING, name, {k: list(v) for k, v in values.items()}, ok=len(next(iter(values.values()))), failed=0)


def test_salun_table1_ships_with_its_citation_and_is_consistent():
    table = published.load("salun-table1")
    assert "SalUn" in table.citation and "ICLR 2024" in table.citation and "2310.12508" in table.citation
    assert table.columns == ["UA", "RA", "TA", "MIA", "Avg. Gap", "RTE"]
    assert [r["bench_method"] for r in table.rows] == ["retrain", "ft", "rl", "ga", "iu", "be", "bs", "l1-sparse", "salun",
                                                       "salun-soft"]
    salun = table.row_for("salun")
    assert (salun["UA"], salun["RA"], salun["TA"], salun["MIA"], salun["Avg. Gap"], salun["RTE"]) == (2.85, 99.62, 93.93, 14.39, 1.15, 2.66)
    # the transcription is self-consistent: each Avg. Gap is the mean of its four gaps to Retrain
    ref = table.row_for("retrain")
    for row in table.rows:
        gaps = [abs(row[c] - ref[c]) for c in ("UA", "MIA", "RA", "TA")]
        assert abs(sum(gaps) / 4 - row["Avg. Gap"]) < 0.006, row["method"]


def test_every_published_method_is_a_registered_method():
    from bench.core.plugins import get_registry

    names = set(get_registry().names("method"))
    for name in published.names():
        assert {r["bench_method"] for r in published.load(name).rows} <= names


def test_units_against_a_hand_computation():
    """Two seeds of salun and a retrained reference (no retrain trials): each column by hand."""
    table = published.load("salun-table1")
    salun = _row("salun", forget_acc=[0.95, 0.97], retain_acc=[0.99, 1.0], test_acc=[0.94, 0.945],
                 mia_efficacy=[0.12, 0.14], avg_gap_mia=[0.01, 0.02], unlearn_seconds=[120.0, 180.0])
    ref = _row(report.RETRAIN, forget_acc=[0.9476], retain_acc=[1.0], test_acc=[0.9426], unlearn_seconds=[2597.4])
    lines = {line.method: line for line in published.side_by_side(table, [ref, salun])[SETTING]}
    got = {c: v[0] for c, v in lines["SalUn"].values.items()}
    hand = {"UA": 100 * (1 - 0.96), "RA": 99.5, "TA": 94.25, "MIA": 13.0, "Avg. Gap": 1.5, "RTE": 2.5}
    for c, v in hand.items():
        assert math.isclose(got[c], v, abs_tol=1e-9), (c, got[c], v)
    diff = {c: v[2] for c, v in lines["SalUn"].values.items()}
    assert math.isclose(diff["UA"], 4.0 - 2.85, abs_tol=1e-9) and math.isclose(diff["RTE"], 2.5 - 2.66, abs_tol=1e-9)
    # the paper's Retrain is the retrained reference here: UA 5.24, TA 94.26, RTE 2597.4 s = 43.29 min
    retrain = {c: v for c, v in lines["Retrain"].values.items()}
    assert lines["Retrain"].ours_name == report.RETRAIN
    for c in ("UA", "TA", "RTE"):
        assert math.isclose(retrain[c][0], retrain[c][1], abs_tol=1e-6), (c, retrain[c])
    assert math.isnan(retrain["MIA"][0])  # the reference has no attack metrics
    assert lines["FT"].ours_name is None and math.isnan(lines["FT"].values["UA"][0])  # not in this run
    # long CSV: one line per method and column
    rows = list(csv.DictReader(io.StringIO(published.to_csv(table, [ref, salun]))))
    ua = next(r for r in rows if r["method"] == "SalUn" and r["column"] == "UA")
    assert float(ua["ours"]) == 4.0 and float(ua["paper"]) == 2.85 and float(ua["diff"]) == 1.15


def test_published_points_in_the_plot_units():
    table = published.load("salun-table1")
    points = {name: (x, y) for name, x, y in published.plot_points(table, "avg_gap")}
    # SalUn: (|2.85 - 5.24| + |99.62 - 100| + |93.93 - 94.26|) / 3 / 100 = 0.010333; TA 93.93 %
    assert math.isclose(points["SalUn"][0], (2.39 + 0.38 + 0.33) / 300, abs_tol=1e-9)
    assert math.isclose(points["SalUn"][1], 0.9393) and points["Retrain"][0] == 0.0 and math.isclose(points["Retrain"][1], 0.9426)
    forget = dict((n, x) for n, x, _ in published.plot_points(table, "forget_gap"))
    assert math.isclose(forget["GA"], (5.24 - 0.69) / 100)


def test_unknown_published_table_is_one_clear_line(invoke_bench, tmp_path):
    proc = invoke_bench("compare", "--published", "salun-table9", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == ("Error: Unknown published table 'salun-table9'. Published tables: salun-table1 "
                                   "(bench compare --published NAME).")


@pytest.mark.parametrize("body, said", [
    ("RL,rl,1.0\n", r"row 1 \('RL'\): 4 cells expected"),
    ("RL,rl,1.0,2.0,3.0,4.0\n", r"row 1 \('RL'\): 4 cells expected"),
    ("RL,rl,abc,2.0\n", r"row 1 \('RL'\): column UA is 'abc'; expected a finite number"),
    ("RL,rl,1.0,2.0\nGA,ga,nan,2.0\n", r"row 2 \('GA'\): column UA is 'nan'; expected a finite number"),
    ("RL,rl,1e999,2.0\n", r"row 1 \('RL'\): column UA is '1e999'"),
])
def test_a_malformed_published_table_is_one_line(body, said):
    """A row with a missing cell or a word in a number was a traceback; extra cells were dropped and
    nan or inf taken as the paper's numbers (compare audit, 2026-12-07)."""
    from bench.core.errors import BenchError
    from bench.track.compare.published import parse

    assert len(parse("t", "# citation: x\nmethod,bench_method,UA,MIA\nRL,rl,1.0,2.0\n").rows) == 1
    with pytest.raises(BenchError, match=rf"^Published table 't', {said}"):
        parse("t", "method,bench_method,UA,MIA\n" + body)


# -- on a real run --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, invoke_bench):
    """`bench run --preset digits-quick` in process: the SalUn Table 1 methods on digits."""
    work = tmp_path_factory.mktemp("digits-quick")
    args = ["--cache-dir", str(work / "cache"), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    proc = invoke_bench("run", "--preset", "digits-quick", *args, cwd=work)
    return work, args, proc


@pytest.mark.slow
def test_digits_quick_runs_end_to_end(quick_run, trial_runs):
    work, _, proc = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "preset digits-quick:" in proc.stdout
    assert "Compare with the published numbers: bench compare --published salun-table1" in proc.stdout
    runs = trial_runs(work)
    expected = ["retrain", "ft", "rl", "ga", "iu", "be", "bs", "l1-sparse", "salun", "salun-soft"]
    assert sorted(runs.index) == sorted(expected)
    assert (runs["status"] == "FINISHED").all()
    assert runs["metrics.mia_efficacy"].notna().all() and runs["metrics.avg_gap_mia"].notna().all()


@pytest.mark.slow
def test_compare_published_on_a_real_run_prints_both_tables(quick_run, trial_runs, invoke_bench, monkeypatch):
    from matplotlib.axes import Axes

    work, args, proc = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    drawn = []
    scatter = Axes.scatter
    monkeypatch.setattr(Axes, "scatter", lambda ax, x, y, *a, **kw: drawn.append((list(x), list(y), kw)) or scatter(ax, x, y, *a, **kw))
    plot = work / "pareto.png"
    out = invoke_bench("compare", "--published", "salun-table1", "--tracking-uri", args[-1], "--plot", str(plot), cwd=work)
    assert out.returncode == 0, out.stdout + out.stderr
    hollow = [(x, y) for x, y, kw in drawn if kw.get("facecolors") == "none" and kw.get("edgecolors") == "tab:orange"]
    expected = published.plot_points(published.load("salun-table1"), "avg_gap")
    assert hollow == [([p[1] for p in expected], [p[2] for p in expected])]  # the ten published points, hollow
    text = out.stdout
    assert "bench compare: 'unlearning-bench'" in text  # ours, ranked
    assert "SalUn Table 1" in text and "UA ours" in text and "UA paper" in text and "UA diff" in text  # theirs beside ours
    assert "Published: Chongyu Fan" in text and "UA = 100 x (1 - forget_acc)" in text
    # SalUn averages the numbers, then takes the gap; ours is the mean of each seed's gap: said (found in review)
    assert "Avg. Gap = 100 x avg_gap_mia (attack svc), the mean of the seeds' gaps (the paper's: the gap of the means)" in (
        " ".join(text.split()))
    assert plot.is_file() and plot.stat().st_size > 20_000
    # the CSV form carries the same numbers: ours in the paper's units, from the trials in MLflow
    out = invoke_bench("compare", "--published", "salun-table1", "--tracking-uri", args[-1], "--format", "csv",
                       "--no-plot", cwd=work)
    assert out.returncode == 0, out.stderr
    long = list(csv.DictReader(io.StringIO(out.stdout)))  # one CSV: every line has the header's columns
    assert long and all(None not in r and None not in r.values() for r in long), out.stdout
    assert "ranked comparison's CSV is `bench compare --format csv` without --published" in out.stderr
    runs = trial_runs(work)
    for method in ("salun", "ga", "retrain"):
        ua = next(r for r in long if r["ours_as"] == method and r["column"] == "UA")
        assert math.isclose(float(ua["ours"]), 100 * (1 - runs.loc[method, "metrics.forget_acc"]), abs_tol=1e-3)
        mia = next(r for r in long if r["ours_as"] == method and r["column"] == "MIA")
        assert math.isclose(float(mia["ours"]), 100 * runs.loc[method, "metrics.mia_efficacy"], abs_tol=1e-3)
        rte = next(r for r in long if r["ours_as"] == method and r["column"] == "RTE")
        assert math.isclose(float(rte["ours"]), runs.loc[method, "metrics.unlearn_seconds"] / 60, abs_tol=1e-3)
    # and the MLflow compare link of the trials
    assert "MLflow compare view of these 10 trial(s)" in out.stderr and "#/compare-runs?runs=" in out.stderr


def test_a_method_pooled_with_several_hyperparameters_has_a_line_per_variant():
    """--run all over runs of ga with two learning rates labels the rows ga[lr=...]: each is beside
    the paper's GA (the lookup by the plain name showed GA "(not run)")."""
    table = published.load("salun-table1")
    a = _row("ga[lr=0.005]", forget_acc=[0.9], retain_acc=[0.95], test_acc=[0.9])
    b = _row("ga[lr=0.02]", forget_acc=[0.5], retain_acc=[0.6], test_acc=[0.55])
    ga = [line for line in published.side_by_side(table, [a, b])[SETTING] if line.method == "GA"]
    assert [line.ours_name for line in ga] == ["ga[lr=0.005]", "ga[lr=0.02]"]
    assert [round(line.values["UA"][0], 6) for line in ga] == [10.0, 50.0]
    salun_soft = [line for line in published.side_by_side(table, [_row("salun-soft", forget_acc=[0.9])])[SETTING]
                  if line.method.startswith("SalUn")]
    assert [line.ours_name for line in salun_soft] == [None, "salun-soft"]  # salun is not salun-soft's prefix
