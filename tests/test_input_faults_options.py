"""Bad experiment files, ``--params`` files, ``bench tune --output`` paths and method parameters
beyond float32's range: each is refused with one line and exit code 2, before any work (no Ray,
no cache entry, no MLflow run), never a traceback or an empty run that exits 0. And the copy of a
preset that ``bench presets NAME --toml`` prints runs as an experiment file (docs/presets.md)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

import bench
from bench.core.errors import BenchError


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if the command tries to start or join Ray."""
    import bench.run.executor as executor

    monkeypatch.setattr(executor, "start_ray", lambda *a, **k: pytest.fail("Ray was started"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _runs(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        try:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def refused(invoke_bench, tmp_path: Path, *args: str, pattern: str, command: str = "run") -> str:
    """Run ``bench COMMAND ARGS`` and check the refusal: exit 2, one line matching ``pattern``, nothing done."""
    cache, db = tmp_path / "cache", tmp_path / "mlflow.db"
    proc = invoke_bench(command, "--cache-dir", str(cache), "--tracking-uri", f"sqlite:///{db}", *args, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, (proc.returncode, out)
    assert "Traceback" not in out, out
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert re.search(pattern, lines[0]), (pattern, lines[0])
    assert "trial(s)" not in proc.stdout
    assert not list(cache.rglob("*.safetensors")) if cache.exists() else True
    assert _runs(db) == 0
    return lines[0]


def _toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return str(path)


# -- 1. list items of an experiment file --------------------------------------------------------

ITEMS = {
    "methods": ('methods = ["ga", 3]\n', r"methods = \['ga', 3\]: item 2 \(3\) is not a string\. Expected a list of strings, e\.g\. methods = \["),
    "attacks": ('attacks = ["loss", 3]\n', r"attacks = \['loss', 3\]: item 2 \(3\) is not a string"),
    "forget": ("forget = [3]\n", r"forget = \[3\]: item 1 \(3\) is not a string.*e\.g\. forget = \[\"random:10%\"\]"),
    "dataset": ("dataset = [3]\n", r"dataset = \[3\]: item 1 \(3\) is not a string.*e\.g\. dataset = \[\"digits\"\]"),
    "model": ("model = [{a=1}]\n", r"model = \[\{'a': 1\}\]: item 1 \(\{'a': 1\}\) is not a string"),
    "seeds": ("seeds = [0, true]\n", r"seeds = \[0, True\]: item 2 \(True\) is not an integer or a string"),
}


@pytest.mark.parametrize("key", list(ITEMS))
def test_toml_list_items_of_the_wrong_type_are_refused(key, tmp_path, invoke_bench, no_ray):
    text, pattern = ITEMS[key]
    refused(invoke_bench, tmp_path, "-c", _toml(tmp_path, text), "--dry-run", pattern=r"Bad value in the experiment file: " + pattern)


def test_toml_list_items_are_checked_by_bench_tune(tmp_path, invoke_bench, no_ray):
    refused(invoke_bench, tmp_path, "-m", "ga", "-n", "1", "-c", _toml(tmp_path, "dataset = [3]\n"), command="tune",
            pattern=r"Bad value in the experiment file: dataset = \[3\]: item 1 \(3\) is not a string")


# -- 3. empty lists -------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["dataset", "model", "methods", "forget", "seeds"])
def test_toml_empty_lists_are_refused(key, tmp_path, invoke_bench, no_ray):
    refused(invoke_bench, tmp_path, "-c", _toml(tmp_path, f"{key} = []\n"),
            pattern=rf"Bad value in the experiment file: {key} = \[\] is empty, so the run would have no trials\. "
                    rf"Give at least one item, e\.g\. {key} = \[.+\], or leave the key out for the default\.")


def test_toml_empty_lists_are_refused_by_bench_tune(tmp_path, invoke_bench, no_ray):
    refused(invoke_bench, tmp_path, "-m", "ga", "-n", "1", "-c", _toml(tmp_path, "model = []\n"), command="tune",
            pattern=r"model = \[\] is empty")


def test_an_empty_attack_list_still_means_no_attacks():
    from bench.core.options import merge_options

    assert merge_options({"attacks": []}, {}).attacks == ""
    assert merge_options({"seeds": [0, "2-3"]}, {}).seeds == [0, 2, 3]


# -- 2. files that are not UTF-8 ------------------------------------------------------------------

BINARY = b"\xff\xfe\x00\x81 not text \x9c"


def test_a_binary_experiment_file_is_refused(tmp_path, invoke_bench, no_ray):
    path = tmp_path / "binary.toml"
    path.write_bytes(BINARY)
    refused(invoke_bench, tmp_path, "-c", str(path), "--dry-run",
            pattern=r"Experiment file .*binary\.toml is not UTF-8 text \(byte 0: invalid start byte\).*Save it as UTF-8")
    refused(invoke_bench, tmp_path, "-m", "ga", "-n", "1", "-c", str(path), command="tune", pattern=r"is not UTF-8 text")


def test_a_binary_params_file_is_refused(tmp_path, invoke_bench, no_ray):
    path = tmp_path / "bin.json"
    path.write_bytes(BINARY)
    refused(invoke_bench, tmp_path, "-m", "ga", "--params", str(path), "--dry-run",
            pattern=r"--params .*bin\.json: not UTF-8 text \(byte 0: invalid start byte\); expected a JSON file")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    from bench.core.options import load_toml
    from bench.run.tune_params import load_params

    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbfmethods = [\"ga\"]\n")
    (tmp_path / "bom.json").write_bytes(b'\xef\xbb\xbf{"ga": {"lr": 0.01}}')
    assert load_toml(tmp_path / "bom.toml") == {"methods": ["ga"]}
    assert load_params(str(tmp_path / "bom.json"), None) == ({"ga": {"lr": 0.01}}, None)


# -- 4. bench tune --output -----------------------------------------------------------------------

def test_tune_output_that_cannot_be_written_is_refused_before_work(tmp_path, invoke_bench, no_ray):
    (tmp_path / "afile").write_text("x")
    refused(invoke_bench, tmp_path, "-m", "ga", "-n", "1", "-O", str(tmp_path / "afile" / "dir" / "x.json"), command="tune",
            pattern=r"Bad --output .*afile/dir/x\.json: cannot write there \(.*afile is a file, not a directory\)\. "
                    r"Pass a writable file path, e\.g\. --output ")
    assert not (tmp_path / "cache" / "ray_results").exists()


@pytest.mark.parametrize("args, pattern", [
    (("--seed", "-1"), r"Bad --seed -1: expected one integer in 0\.\.2147483647"),
    (("--seed", "99999999999"), r"Bad --seed 99999999999: expected one integer"),
    (("-p", "ft.lr=0.1"), r"Parameters given for method\(s\) ft .*bench tune tunes 'ga' only: drop them, or tune that "
                          r"method with --method"),
])
def test_tune_refusals_use_tunes_own_options(args, pattern, tmp_path, invoke_bench, no_ray):
    """They named bench run's options ("Bad seeds ... or a range 0-4", "Select it with --methods");
    hostile audit, 2026-12-07."""
    refused(invoke_bench, tmp_path, "-m", "ga", "-n", "1", *args, command="tune", pattern=pattern)


def test_tune_output_in_a_missing_directory_is_created_only_when_written(tmp_path):
    from bench.run.tuning import check_output

    target = tmp_path / "new" / "dir" / "x.json"
    assert check_output(str(target), "ga") == target
    assert not (tmp_path / "new").exists()  # nothing is created before the samples have run
    existing = tmp_path / "old.json"
    existing.write_text("keep")
    assert check_output(str(existing), "ga") == existing and existing.read_text() == "keep"
    assert check_output(None, "ga").name == "best-params-ga.json"
    with pytest.raises(BenchError, match=r"Bad --output .*: it names a directory"):
        check_output(str(tmp_path), "ga")
    with pytest.raises(BenchError, match=r"Bad --output .*newdir/: it names a directory"):  # it wrote a file 'newdir'
        check_output(str(tmp_path / "newdir") + "/", "ga")


# -- 5. a copy of a preset runs -------------------------------------------------------------------

def test_a_copy_of_a_preset_runs_as_an_experiment_file(tmp_path, invoke_bench):
    from bench.core import presets
    from bench.core.options import load_toml

    proc = invoke_bench("presets", "digits-quick", "--toml")
    assert proc.returncode == 0, proc.stderr
    copy = tmp_path / "my.toml"
    copy.write_text(proc.stdout)
    assert "[preset]" in proc.stdout
    assert load_toml(copy) == presets.load("digits-quick").options  # [preset] describes it and sets nothing
    proc = invoke_bench("run", "-c", str(copy), "-m", "ga", "--attacks", "", "--dry-run", "--cache-dir", str(tmp_path / "cache"),
                        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "The plan is valid" in proc.stdout and "Traceback" not in proc.stderr


def test_an_experiment_key_after_the_preset_table_of_a_copy_is_refused(tmp_path, invoke_bench, no_ray):
    text = 'methods = ["ga"]\n[preset]\ntitle = "mine"\nseeds = "0-4"\n'
    refused(invoke_bench, tmp_path, "-c", _toml(tmp_path, text), "--dry-run",
            pattern=r"Unknown keys in the \[preset\] table of the experiment file .*exp\.toml: seeds\. .*move experiment "
                    r"keys above the \[preset\] table")
    refused(invoke_bench, tmp_path, "-c", _toml(tmp_path, "preset = 3\n"), "--dry-run",
            pattern=r"Bad value in the experiment file .*: preset = 3; expected the \[preset\] table")


# -- 6. method parameters beyond float32's range --------------------------------------------------

@pytest.mark.parametrize("args", [
    ["-m", "ga", "-p", "ga.lr=1e308"],
    ["-m", "ft", "-p", "ft.weight_decay=1e300"],
    ["-m", "ft", "-p", "ft.weight_decay=-1e300"],
])
def test_parameters_beyond_float32_are_refused(args, tmp_path, invoke_bench, no_ray):
    refused(invoke_bench, tmp_path, *args, "--dry-run",
            pattern=r"Bad value for (ga\.lr|ft\.weight_decay): '-?1e30\d' is beyond float32's range \(at most 3\.403e\+38 "
                    r"in magnitude\).*Give a value of the default's scale")


def test_parameters_beyond_float32_are_refused_from_files(tmp_path, invoke_bench, no_ray):
    refused(invoke_bench, tmp_path, "-m", "ga", "-c", _toml(tmp_path, "[params.ga]\nlr = 1e308\n"), "--dry-run",
            pattern=r"Bad value for ga\.lr: 1e\+308 is beyond float32's range")
    (tmp_path / "p.json").write_text('{"ga": {"epochs": 1e300}}')
    refused(invoke_bench, tmp_path, "-m", "ga", "--params", str(tmp_path / "p.json"), "--dry-run",
            pattern=r"Bad value for ga\.epochs: 1e\+300 is beyond float32's range")


def test_every_methods_numeric_parameters_are_held_to_float32():
    from bench.core.options import RunOptions
    from bench.core.params import FLOAT32_MAX, fits_float32
    from bench.core.plugins import get_registry
    from bench.run.validate import resolve_methods

    assert fits_float32(FLOAT32_MAX) and fits_float32(-3e38) and fits_float32(float("inf"))
    assert not fits_float32(3.5e38) and not fits_float32(-1e300) and not fits_float32(10**40)
    registry = get_registry()
    checked = 0
    for entry in registry.entries("method"):
        for key, default in entry.obj.default_params.items():
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                continue
            value = "1e300" if isinstance(default, float) else 10**39
            opts = RunOptions(methods=entry.name, params={entry.name: {key: value}})
            with pytest.raises(BenchError, match=rf"Bad value for {re.escape(entry.name)}\.{key}: .* beyond float32's range"):
                resolve_methods(registry, opts)
            checked += 1
    assert checked >= 50


def test_the_best_sample_prefers_full_runs_and_falls_back_to_stopped_ones():
    """ASHA may stop every sample of a small search early: their last (intermediate) reports still
    name a best, flagged, instead of "no sample finished" and nothing saved."""
    from types import SimpleNamespace

    from bench.run.tune_params import best_sample

    full = {"avg_gap": 0.30, "unlearn_seconds": 1.0}
    outcome = SimpleNamespace(specs={0: "a", 1: "b", 2: "c"},
                              results={0: {"avg_gap": 0.10}, 1: full, 2: {"avg_gap": 0.20}})
    assert best_sample(outcome, "avg_gap", "min") == ("b", 0.30, True)  # a full run beats a better stopped one
    outcome.results[1] = {"avg_gap": 0.25}  # every sample stopped
    assert best_sample(outcome, "avg_gap", "min") == ("a", 0.10, False)
    assert best_sample(SimpleNamespace(specs={}, results={}), "avg_gap", "min") is None


def test_a_tie_goes_to_the_lowest_sample_the_defaults():
    """ssd tuned for test_acc: the defaults (sample 0) and four draws all scored 0.975, and the
    draw that finished first was saved, the result line not saying the defaults were as good."""
    from types import SimpleNamespace

    from bench.run.tune_params import best_sample

    done = {"test_acc": 0.975, "unlearn_seconds": 1.0}
    names = {0: "ssd seed=0 sample 3", 1: "ssd seed=0 sample 1", 2: "ssd seed=0 sample 0", 3: "ssd seed=0 sample 2"}
    outcome = SimpleNamespace(specs=names, results={0: done, 1: done, 2: done, 3: {**done, "test_acc": 0.5}})
    assert best_sample(outcome, "test_acc", "max") == ("ssd seed=0 sample 0", 0.975, True)
    outcome.results[3] = {**done, "test_acc": float("nan")}  # never the best
    assert best_sample(outcome, "test_acc", "max")[0] == "ssd seed=0 sample 0"


# -- 5. bench tune objectives the setting does not produce --------------------------------------

OBJECTIVES = {
    "continual-only": (["-o", "cumulative_speedup_vs_retrain"], r"is measured over a sequence of requests, and --forget "
                       r"random:10% is a single request"),
    "class-only": (["-o", "test_retain_class_acc"], r"is measured on class requests, and --forget random:10% is not one"),
    "attack-not-run": (["-o", "epsilon_score"], r"is a metric of attack 'epsilon', which this search does not run: add "
                       r"--attacks epsilon"),
    "attack-left-out": (["-o", "avg_gap_mia", "--attacks", "loss"], r"is a metric of attack 'svc'"),
    "asha-sequence": (["-f", "seq:2x5", "--scheduler", "asha"], r"--scheduler asha stops samples on their per-epoch "
                      r"reports, and --forget seq:2x5 \(a sequence of requests\) reports none: use --scheduler fifo"),
    "asha-final-only": (["-o", "speedup_vs_retrain", "--scheduler", "asha"], r"is measured once a sample ends, and "
                        r"--scheduler asha compares samples on their per-epoch reports"),
    "no-side": (["-o", "forget_acc"], r"Objective 'forget_acc' has no better side\. Its target is the retrained "
                r"model's value, not an extreme: rank by 'forget_gap' instead\. Objectives: "),
    "size": (["-o", "forget_size"], r"has no better side\. It counts the forgotten points"),
    "retrained-value": (["-o", "epsilon_retrained_test_acc"], r"has no better side\. It is the retrained shadow "
                        r"models' mean accuracy \(attack epsilon\), the same for every method"),
    # measured on a GPU only: Ray Tune stopped the search with 3 tracebacks after the references
    "gpu-memory-on-cpu": (["-o", "peak_memory_reserved_mb"], r"Objective 'peak_memory_reserved_mb' is measured on a "
                          r"GPU \(--device cuda\) only, and this search runs on the CPU"),
}


@pytest.mark.parametrize("case", list(OBJECTIVES))
def test_tune_objectives_the_setting_cannot_produce_are_refused_before_work(case, tmp_path, invoke_bench, no_ray):
    """Ray Tune stops a search whose results lack the objective with a long traceback, after the
    references were trained (exit 1): refused at plan time instead."""
    args, pattern = OBJECTIVES[case]
    refused(invoke_bench, tmp_path, "-m", "ga", "-n", "1", *args, command="tune", pattern=pattern)


def test_tune_accepts_the_continual_objectives_the_docs_name(tmp_path):
    from bench.eval.metrics import METRIC_DIRECTIONS

    assert METRIC_DIRECTIONS["forget_all_gap"] == "min" and METRIC_DIRECTIONS["cumulative_unlearn_seconds"] == "min"


def test_params_from_a_run_read_without_progress_bars(tmp_path, monkeypatch, capfd):
    from mlflow.tracking import MlflowClient

    from bench.run.tune_params import load_params

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("x", artifact_location=str(tmp_path / "art")),
                            tags={"bench.kind": "tune"})
    client.log_text(run.info.run_id, '{"ga": {"lr": 0.01}}', "best_params.json")
    capfd.readouterr()
    assert load_params(run.info.run_id, uri)[0] == {"ga": {"lr": 0.01}}
    assert "Downloading artifacts" not in capfd.readouterr().err


class _Spaced:
    """A method whose search space samples what it refuses (``how``)."""

    description = "test method with a faulty search space or check"
    requires = frozenset({"forget"})

    def __init__(self, how: str) -> None:
        from bench import space

        self.how, self.name = how, f"spaced-{how}"
        self.default_params = {"lr": 0.01, "weight": 0.5, "epochs": 2}
        self.search_space = {"wide": {"weight": space.uniform(0.0, 1.5)}, "float-epochs": {"epochs": space.uniform(1, 4)},
                             "bug": {"lr": space.loguniform(1e-4, 1e-1)}, "setting": {"epochs": space.choice([3, 4])},
                             # malformed: each was a raw traceback when drawn (params audit, 2026-12-07)
                             "log-zero": {"weight": space.loguniform(0, 1)}, "reversed": {"weight": space.uniform(1, 0)},
                             "empty-int": {"epochs": space.randint(5, 5)}, "no-choice": {"epochs": space.choice([])},
                             "float-int": {"epochs": space.randint(1.5, 4.5)}, "inf": {"lr": space.uniform(0.1, float("inf"))},
                             "not-domain": {"lr": (1e-4, 1e-1)}}[how]

    def check_params(self, params):
        if self.how == "bug":
            return params["momentum"]  # a bug of the check: KeyError
        if not 0.0 <= params["weight"] <= 1.0:
            raise ValueError(f"weight={params['weight']}: expected a number in [0, 1]")

    def check_setting(self, params, setting):
        if self.how == "setting" and params["epochs"] > 2:
            raise ValueError(f"epochs={params['epochs']}: at most 2 on {setting.dataset}")

    def unlearn(self, model, request, params, ctx):
        return model


class _SpacedPlugin:
    def __init__(self, how):
        self.obj = _Spaced(how)

    @bench.hookimpl
    def register_methods(self, register):
        register(self.obj)


@pytest.mark.parametrize("how,pattern", [
    ("wide", r"Method 'spaced-wide' \(plugin .*\) searches weight over uniform\(0\.0, 1\.5\), and a sample of it is "
             r"refused: Bad parameters for method 'spaced-wide': weight=1\.49\d*: expected a number in \[0, 1\]\. Fix "
             r"the search space in the plugin, or fix weight with -p spaced-wide\.weight=VALUE"),
    ("float-epochs", r"searches epochs over uniform\(1, 4\), and a sample of it is refused: Bad value for "
                     r"spaced-float-epochs\.epochs: 3\.99\d* is not an integer"),
    ("setting", r"Method 'spaced-setting' searches epochs over choice\(\(3, 4\),\), and this setting refuses its "
                r"values: Method 'spaced-setting' cannot run on digits / mlp / random:10%: epochs=3: at most 2 on digits\. "
                r"Fix epochs with -p spaced-setting\.epochs=VALUE"),
    ("bug", r"Method 'spaced-bug': its check_params failed with KeyError: 'momentum' at .*test_input_faults_options"
            r"\.py:\d+\. A refusal raises ValueError"),
    ("log-zero", r"Method 'spaced-log-zero' \(plugin .*\) declares search_space\['weight'\] that cannot be sampled: "
                 r"loguniform\(0, 1\) needs low > 0\. Fix the search space in the plugin, or fix weight with -p "
                 r"spaced-log-zero\.weight=VALUE"),
    ("reversed", r"search_space\['weight'\] that cannot be sampled: uniform\(1, 0\) is empty: need low < high"),
    ("empty-int", r"search_space\['epochs'\] that cannot be sampled: randint\(5, 5\) is empty"),
    ("no-choice", r"search_space\['epochs'\] that cannot be sampled: choice\(\) needs a non-empty sequence"),
    ("float-int", r"search_space\['epochs'\] that cannot be sampled: randint\(1\.5, 4\.5\) needs integers"),
    ("inf", r"search_space\['lr'\] that cannot be sampled: uniform\(0\.1, inf\) needs finite bounds"),
    ("not-domain", r"search_space\['lr'\] that cannot be sampled: \(0\.0001, 0\.1\) is not a bench\.core\.space Domain"),
])
def test_tune_refuses_a_search_space_the_method_refuses_before_work(how, pattern, tmp_path, invoke_bench, no_ray,
                                                                    plugged):
    """A space wider than the method accepts saved a best value `bench run --params` then refused; a
    float range over an integer parameter failed every sample; a check that raises KeyError printed
    a raw traceback (exit 1)."""
    with plugged(_SpacedPlugin(how)):
        refused(invoke_bench, tmp_path, "-m", f"spaced-{how}", "-n", "2", command="tune", pattern=pattern)


@pytest.mark.parametrize("text,pattern", [
    ('dry_run = true\nmethods = "ft"\n', r"sets dry_run = true, which bench tune does not take \(it has no dry run\)"),
    ('seeds = "0-2"\n', r"bench tune searches one setting, and the experiment file .* gives seeds '0-2': choose one "
                        r"with --seed N"),
])
def test_tune_refuses_experiment_file_keys_that_would_change_what_runs(text, pattern, tmp_path, invoke_bench, no_ray):
    """bench tune ran a full search on seed 0 for a file with dry_run = true and seeds = [3]."""
    (tmp_path / "exp.toml").write_text(text)
    refused(invoke_bench, tmp_path, "-m", "ga", "-n", "1", "-c", str(tmp_path / "exp.toml"), command="tune",
            pattern=pattern)


def test_tune_takes_the_files_one_seed_and_names_the_keys_it_leaves_out(tmp_path, invoke_bench, monkeypatch):
    import bench.run.tuning as tuning

    seen = {}

    def fake(opts, method, objective, num_samples, scheduler, seed, output, console, **kw):
        seen.update(seeds=opts.seeds, seed=seed, params=opts.params, resume=opts.resume)
        return 0

    monkeypatch.setattr(tuning, "tune_method", fake)
    # the file's [params.ft] goes with ft (it was refused: "not selected", with no --methods to select it)
    (tmp_path / "exp.toml").write_text('seeds = [3]\nmethods = "ft"\nexecutor = "local"\nresume = true\n'
                                       '[params.ft]\nlr = 0.1\n[params.ga]\nepochs = 2\n')
    proc = invoke_bench("tune", "-m", "ga", "-c", str(tmp_path / "exp.toml"), cwd=tmp_path)
    assert proc.returncode == 0 and seen == {"seeds": [3], "seed": 3, "params": {"ga": {"epochs": 2}}, "resume": True}, (
        proc.stdout, proc.stderr, seen)
    assert "note: bench tune leaves out the experiment file's executor, methods" in proc.stdout
    proc = invoke_bench("tune", "-m", "ga", "--seed", "5", "-c", str(tmp_path / "exp.toml"), cwd=tmp_path)
    assert proc.returncode == 0 and (seen["seeds"], seen["seed"]) == ([5], 5)  # the command line wins


def test_the_experiment_file_wins_over_an_environment_variable(tmp_path, invoke_bench):
    """MLFLOW_TRACKING_URI beat the file's tracking_uri (click passes an environment variable as if
    typed): the results went to another store than the file named."""
    (tmp_path / "exp.toml").write_text(f'tracking_uri = "sqlite:///{tmp_path / "file.db"}"\n')
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'env.db'}"}
    proc = invoke_bench("run", "--dry-run", "-c", str(tmp_path / "exp.toml"), "--cache-dir", str(tmp_path / "c"), env=env,
                        cwd=tmp_path)
    assert proc.returncode == 0 and f"sqlite:///{tmp_path / 'file.db'}" in proc.stdout, proc.stdout + proc.stderr
    proc = invoke_bench("run", "--dry-run", "--cache-dir", str(tmp_path / "c"), env=env, cwd=tmp_path)
    assert f"sqlite:///{tmp_path / 'env.db'}" in proc.stdout  # without the file, the variable


def test_params_from_a_run_never_create_a_store_and_name_what_the_run_is(tmp_path):
    """`--params RUN_ID --dry-run` against a store that did not exist created it (954 KB); a
    `bench run` parent's id said "Failed to download artifacts"."""
    from mlflow.tracking import MlflowClient

    from bench.run.tune_params import load_params

    missing = tmp_path / "none.db"
    with pytest.raises(BenchError, match=r"no MLflow store at .*none\.db to read that run from"):
        load_params("0" * 32, f"sqlite:///{missing}")
    assert not missing.exists()
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("x", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp, tags={"bench.role": "parent"}).info.run_id
    with pytest.raises(BenchError, match=r"that run is a `bench run` parent, not a `bench tune` run"):
        load_params(parent, uri)
    with pytest.raises(BenchError, match=r"no such run in"):
        load_params("f" * 32, uri)


def test_empty_tune_output_and_published_table_are_refused(tmp_path, invoke_bench, no_ray):
    refused(invoke_bench, tmp_path, "-m", "ga", "-O", "", command="tune",
            pattern=r"Empty --output: expected a file for the best parameters")
    proc = invoke_bench("compare", "--published", "", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Empty --published" in proc.stderr, proc.stderr
    for flag in ("--plot", "--run"):  # a hidden '.png' written; '' taken for latest
        proc = invoke_bench("compare", flag, "", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}", cwd=tmp_path)
        assert proc.returncode == 2 and f"Empty {flag}" in proc.stderr, proc.stderr
    assert not (tmp_path / ".png").exists()


def test_tune_method_given_twice_and_a_sample_count_past_the_cap_are_refused(tmp_path, invoke_bench, no_ray):
    """`bench tune -m ga -m sisa` tuned sisa without a word, and -n 99999999999 drew samples until
    memory ran out, printing nothing (found in review)."""
    refused(invoke_bench, tmp_path, "-m", "ga", "-m", "sisa", command="tune",
            pattern=r"Invalid value for '--method' / '-m': given 2 times \('ga', 'sisa'\); give it once")
    refused(invoke_bench, tmp_path, "-m", "ga", "-n", "99999999999", command="tune",
            pattern=r"--num-samples must be from 1 to 100,000 \(got 99999999999\)")


def test_tune_space_with_a_gap_becomes_a_choice_and_refused_combinations_are_said(monkeypatch):
    """A plugin refusing k=3 of randint(1, 6) had its whole space refused; SISA's shards x slices on
    48 points failed 3 of 4 samples without a word before the search."""
    from types import SimpleNamespace

    import bench.run.tune_space as ts
    from bench.core import space
    from bench.run.validate import MethodPlan

    class Gappy:
        search_space = {"k": space.randint(1, 6), "width": space.randint(1, 4)}

        def check_setting(self, params, setting):
            if params["k"] == 3:
                raise ValueError("k=3: not here")
            if params["k"] * params["width"] > 12:
                raise ValueError(f"k={params['k']} x width={params['width']}: too many")

    m = MethodPlan("gappy", Gappy(), {"k": 1, "width": 1}, (), "test")
    monkeypatch.setattr(ts, "_settings", lambda plan: [("digits", SimpleNamespace(dataset="digits", model="mlp", forget="f"))])
    notes = []
    domains = ts.fit_space(m, SimpleNamespace(options=SimpleNamespace(datasets=["digits"])), {},
                           lambda text, **kw: notes.append(text))
    assert domains["k"] == space.choice([1, 2, 4, 5]) and domains["width"] == space.randint(1, 4)
    assert notes[0].startswith("note: gappy searches k over choice((1, 2, 4, 5),), not its declared randint(1, 6)")
    # every drawn sample is checked with its own combination: k=5 x width=3 is refused, not run
    specs = [SimpleNamespace(params=p) for p in ({"k": 5, "width": 3}, {"k": 4, "width": 3}, {"k": 5, "width": 2})]
    assert ts.refused_samples(m, None, specs) == {0: "Method 'gappy' cannot run on digits / mlp / f: "
                                                     "k=5 x width=3: too many"}


def test_tune_leaves_out_the_samples_where_a_given_parameter_has_no_effect(monkeypatch):
    """`bench tune -m cf-k -p cf-k.lr_decay=0.5` was refused as a whole (exit 2, "fix the search
    space in the plugin"): the space's edge epochs=1 leaves lr_decay without effect, though 28 of the
    30 epochs it samples use it (found in review). Such a combination leaves out only its samples."""
    from types import SimpleNamespace

    import bench.run.tune_space as ts
    from bench.methods.last_k import CatastrophicForgettingK
    from bench.run.validate import MethodPlan

    method = CatastrophicForgettingK()
    given = {"lr_decay": 0.5}
    m = MethodPlan("cf-k", method, {**method.default_params, **given}, (), "builtin")
    monkeypatch.setattr(ts, "_settings", lambda plan: [])
    domains = ts.fit_space(m, SimpleNamespace(options=SimpleNamespace(datasets=["digits"])), given, lambda *a, **k: None)
    assert domains["epochs"] == method.search_space["epochs"]
    specs = [SimpleNamespace(params={**m.params, "epochs": e}) for e in (1, 2, 3, 10)]
    refused = ts.refused_samples(m, None, specs)
    assert sorted(refused) == [0, 1] and "lr_decay=0.5: has no effect with epochs=1" in refused[0], refused


def test_params_naming_a_directory_says_so(tmp_path, invoke_bench, no_ray):
    refused(invoke_bench, tmp_path, "-m", "ga", "--params", str(tmp_path),
            pattern=r"--params '.*': a directory, not a file, and not an MLflow run id")
