"""Protocols as presets (bench.core.presets, `bench presets`, `bench run --preset NAME`): every
shipped preset validates offline with --dry-run, cites its source and states its deviations, is
read as the TOML layer (defaults < preset < command line), and ships as package data. In process
(CliRunner); the end-to-end run of `digits-quick` is in tests/test_published.py, which compares it
with SalUn's Table 1."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bench.core import presets
from bench.core.errors import BenchError
from bench.core.options import TOML_KEYS, load_toml

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("salun-cifar10-random10", "salun-cifar10-class", "prune-purchase20", "l2ul-cifar10", "neurips23", "digits-quick")


def _dry(invoke_bench, tmp_path, *args):
    store = ["--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"),
             "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    return invoke_bench("run", *args, "--dry-run", *store)


def test_the_required_presets_ship_with_citation_cost_and_deviations():
    assert set(REQUIRED) <= set(presets.names())
    for name in presets.names():
        p = presets.load(name)
        assert p.title and p.runs and p.cost, name
        assert "arXiv" in p.source or "github.com" in p.source, f"{name}: no citation in {p.source!r}"
        assert p.deviations and all(len(d) > 20 for d in p.deviations), name
        assert set(p.options) <= set(TOML_KEYS), f"{name}: {set(p.options) - set(TOML_KEYS)}"
        assert "../shared" not in p.text and "/work/shared" not in p.text


@pytest.mark.parametrize("name", REQUIRED)
def test_every_preset_validates_offline_with_dry_run(name, invoke_bench, tmp_path):
    p = presets.load(name)
    proc = _dry(invoke_bench, tmp_path, "--preset", name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"preset:      {name}" in out and "trials:" in out and "Traceback" not in proc.stderr
    methods = p.options["methods"]
    assert f"methods:     {', '.join(methods)}" in out  # the preset's keys, not the defaults
    datasets = [p.options["dataset"]] if isinstance(p.options["dataset"], str) else p.options["dataset"]
    if datasets == ["digits"]:
        assert "The plan is valid and its data loads" in out, out
        assert "forget random:10%: 144 of 1,437 training points" in out
    else:  # CIFAR-10 and Purchase files are never downloaded here: where to put them
        assert "NOT READY" in out and str(tmp_path / "data") in out, out
        assert "place the files as said above" in out
    assert not (tmp_path / "mlflow.db").exists()  # a dry run records nothing
    # the same file through --config preset:NAME
    again = _dry(invoke_bench, tmp_path, "-c", f"preset:{name}")
    assert again.returncode == 0 and f"methods:     {', '.join(methods)}" in again.stdout, again.stderr


def test_dry_run_loads_present_data_and_shows_the_effective_plan(invoke_bench, tmp_path, data_files):
    """prune-purchase20 with a purchase20.npz in the real format: the data loads, the forget sets are
    drawn, the MLP is built, PRUNE runs with the paper's k, T and gamma, the recipe is the paper's."""
    data_files.write_binary_npz(tmp_path / "data" / "purchase" / "purchase20.npz", n=1000)
    proc = _dry(invoke_bench, tmp_path, "--preset", "prune-purchase20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "dataset purchase20: 800 train / 199 test, 20 classes, input (600,)" in out, out  # the paper's split rule
    assert "forget random:500: 500 of 800 training points" in out
    assert "model mlp:256: 158,996 parameters" in out  # 600-256-20
    assert "prune: gamma=2.0, k=2, max_iter=2," in out
    assert "recipe: optimizer=sgd, lr=0.001, momentum=0.5, weight_decay=0.0, epochs=150, batch_size=64, schedule=constant" in out
    assert "The plan is valid and its data loads" in out


def test_command_line_overrides_the_preset(tmp_path):
    from bench.cli import main
    from bench.cli.options import to_run_options

    run = main.commands["run"]
    kw = dict(run.make_context("run", ["--preset", "salun-cifar10-random10", "-m", "ft,salun", "-s", "4",
                                       "-r", "epochs=5", "-p", "salun.lr=0.013"]).params)
    opts = to_run_options(kw, kw.pop("params_file"))
    assert opts.methods == "ft,salun" and opts.seeds == [4]  # command line
    assert opts.datasets == ["cifar10:holdout=0.1"] and opts.models == ["resnet18-cifar"] and opts.forgets == ["random:4500"]  # preset
    assert opts.recipe["epochs"] == "5" and opts.recipe["lr"] == 0.1 and opts.recipe["schedule"] == "step"  # merged
    # the preset's [params.ft] stays; its [params.ga] and [params.l1-sparse] go with their methods (it was refused)
    assert opts.params == {"ft": {"batch_size": 256}, "salun": {"lr": "0.013"}} and opts.attacks == "svc"
    assert load_toml("preset:digits-quick") == presets.load("digits-quick").options


def test_bad_presets_are_one_clear_line(invoke_bench, tmp_path):
    proc = invoke_bench("run", "--preset", "salun-cifar", "--dry-run")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Unknown preset 'salun-cifar'. Did you mean salun-cifar10-class, salun-cifar10-random10?" in proc.stderr
    assert "see `bench presets`" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = invoke_bench("run", "-c", "preset:nope", "--dry-run")
    assert proc.returncode == 2 and "Unknown preset 'nope'" in proc.stderr, proc.stderr
    exp = tmp_path / "exp.toml"
    exp.write_text('methods = "ft"\n')
    proc = invoke_bench("run", "--preset", "digits-quick", "-c", str(exp), "--dry-run")
    assert proc.returncode == 2 and "not both" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = invoke_bench("presets", "nope")
    assert proc.returncode == 2 and "Unknown preset 'nope'" in proc.stderr, proc.stderr


def test_a_key_after_the_preset_table_is_refused(monkeypatch, tmp_path):
    """An experiment key written after [preset] would land in that table: refused, never ignored."""
    folder = tmp_path / "preset_files"
    folder.mkdir()
    (folder / "bad.toml").write_text('[preset]\ntitle = "t"\nsource = "s"\nruns = "r"\ncost = "c"\n'
                                     'deviations = ["d"]\nmethods = ["ft"]\n')
    monkeypatch.setattr(presets, "_files", lambda: folder)
    with pytest.raises(BenchError, match=r"unknown keys in \[preset\]: methods"):
        presets.load("bad")


def test_bench_presets_lists_and_shows(invoke_bench):
    proc = invoke_bench("presets")
    assert proc.returncode == 0, proc.stderr
    for name in REQUIRED:
        p = presets.load(name)
        assert f"\n{name}\n" in f"\n{proc.stdout}" and f"source: {p.short_source()}" in proc.stdout
        assert f"cost:   {p.cost}" in proc.stdout and f"runs:   {p.runs}" in proc.stdout
    proc = invoke_bench("presets", "salun-cifar10-random10")
    assert proc.returncode == 0 and "deviations from the source:" in proc.stdout
    assert "bench compare --published salun-table1" in proc.stdout
    proc = invoke_bench("presets", "digits-quick", "--toml")
    assert proc.returncode == 0 and tomllib.loads(proc.stdout)["preset"]["compare"] == "salun-table1"


def test_presets_and_published_tables_are_package_data():
    """A non-editable install ships them: pyproject's package-data globs cover every file."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert cfg["bench.core"] == ["preset_files/*.toml"] and cfg["bench.track.compare"] == ["tables/*.csv"]
    shipped = sorted(p.name for p in (ROOT / "bench" / "core" / "preset_files").iterdir())
    assert shipped == sorted(f"{n}.toml" for n in presets.names())
    assert (ROOT / "bench" / "track" / "compare" / "tables" / "salun-table1.csv").is_file()
