"""The option table (bench.core.options.OPTIONS): RunOptions fields, TOML keys and click options
made from it, and the precedence defaults < TOML file < command line. In process, no Ray."""

from __future__ import annotations

import dataclasses

import pytest

from bench.cli import main
from bench.cli.options import LIST_VALUED, to_run_options
from bench.core.errors import BenchError
from bench.core.keys import DEFAULT_EXPERIMENT
from bench.core.options import (
    OPTIONS,
    TOML_KEYS,
    TOML_TYPES,
    RunOptions,
    load_toml,
    merge_options,
)

RUN, TUNE = main.commands["run"], main.commands["tune"]


def _click_params(command) -> dict:
    return {p.name: p for p in command.params}


def _parse(command, args: list[str]) -> RunOptions:
    """What ``bench run ARGS`` would run with (parsing and merging only)."""
    kw = dict(command.make_context(command.name, list(args)).params)
    if command is TUNE:
        kw = {k: v for k, v in kw.items() if k not in ("method", "objective", "num_samples", "scheduler", "seed", "output")}
        return to_run_options({**kw, "seeds": "0"})
    return to_run_options(kw, kw.pop("params_file"))


# -- one table, three views ---------------------------------------------------------------------

def test_every_table_entry_is_a_field_a_toml_key_and_a_run_option():
    fields = [f.name for f in dataclasses.fields(RunOptions)]
    assert fields == [o.name for o in OPTIONS]
    run_params = _click_params(RUN)
    for option in OPTIONS:
        assert TOML_KEYS[option.key] == option.name
        assert TOML_TYPES[option.key] == option.toml_types
        param = run_params[option.name]
        assert tuple(param.opts + param.secondary_opts) == tuple(f for flag in option.flags for f in flag.split("/"))
        assert param.help == option.help
        # a list-valued option is collected by click only to refuse it given twice (one value after parsing)
        assert param.multiple == (option.multiple or option.name in LIST_VALUED)
    assert len(TOML_KEYS) == len(OPTIONS)


@pytest.mark.parametrize("args,said", [
    (["-s", "0", "-s", "1"], "given 2 times ('0', '1'); give it once (several seeds are one value: -s 0,1 or -s 0-4)"),
    (["-m", "ga", "-m", "ft"], "given 2 times ('ga', 'ft'); give it once (several methods are one value: -m ga,ft)"),
    # a second --params replaced the first: ga ran on its defaults (avg_gap 0.262 for the tuned 0.018)
    (["--params", "a.json", "--params", "b.json"], "given 2 times ('a.json', 'b.json'); give it once (merge the files"),
])
def test_a_list_option_given_twice_is_refused(args, said, tmp_path, invoke_bench):
    """click kept the last: -s 0 -s 1 ran seed 1 only, -m ga -m ft ran ft only."""
    proc = invoke_bench("run", "--dry-run", *args, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path)
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    same = invoke_bench("run", "--dry-run", "-s", "2", "-s", "2", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                        "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert same.returncode == 0 and "seeds:       2" in same.stdout.replace("seed(s)", ""), same.stdout


def test_tune_has_the_shared_options_only():
    tune_params = _click_params(TUNE)
    for option in OPTIONS:
        assert (option.name in tune_params) == ("tune" in option.commands), option.name
    # command-line-only options stay where they were
    assert {"config", "verbose", "quiet"} <= set(tune_params) and "params_file" not in tune_params
    assert {"config", "verbose", "quiet", "params_file"} <= set(_click_params(RUN))
    assert tune_params["seed"].opts == ["--seed", "-s"]


def test_defaults_come_from_the_table():
    opts = RunOptions()
    for option in OPTIONS:
        default = list(option.default) if isinstance(option.default, tuple) else option.default
        assert getattr(opts, option.name) == default, option.name
    assert opts.experiment == DEFAULT_EXPERIMENT and opts.datasets == ["digits"] and opts.seeds == [0]
    # mutable defaults are not shared between instances
    other = RunOptions()
    opts.datasets.append("x")
    opts.params["ga"] = {"lr": 1}
    assert other.datasets == ["digits"] and other.params == {}


def test_keyword_construction_and_as_dict():
    opts = RunOptions(methods="ga", executor="local", seeds=[1, 2], recipe={"epochs": 3})
    d = opts.as_dict()
    assert list(d) == [o.name for o in OPTIONS]
    assert (d["methods"], d["executor"], d["seeds"], d["recipe"], d["device"]) == ("ga", "local", [1, 2], {"epochs": 3}, "auto")
    assert dataclasses.replace(opts, device="cpu").device == "cpu"
    with pytest.raises(TypeError):
        RunOptions(nope=1)


def test_command_line_without_flags_gives_the_defaults(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert _parse(RUN, []) == RunOptions()
    assert _parse(TUNE, ["--method", "ga"]) == RunOptions()


def test_tracking_uri_reads_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert _parse(RUN, []).tracking_uri == "sqlite:///env.db"
    assert _parse(RUN, ["--tracking-uri", "sqlite:///cli.db"]).tracking_uri == "sqlite:///cli.db"


def test_ray_address_reads_the_environment_and_local_means_bench_s_own(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # Ray's own convention (`ray job submit` sets it)
    assert _parse(RUN, []).ray_address == "127.0.0.1:6379"
    assert _parse(RUN, ["--ray-address", "local"]).ray_address is None
    for value in ("local", "LOCAL"):
        monkeypatch.setenv("RAY_ADDRESS", value)
        assert _parse(RUN, []).ray_address is None
    monkeypatch.delenv("RAY_ADDRESS")
    assert _parse(TUNE, ["--method", "ga"]).ray_address is None


def test_ray_address_from_the_environment_is_left_out_by_the_local_executor(monkeypatch):
    """RAY_ADDRESS is for Ray: a stale one refused --executor local runs and dry runs (exit 2)."""
    from click.testing import CliRunner

    import bench.cli.run_cmd as run_cmd
    from bench.cli import main
    from bench.cli.options import to_run_options

    seen = {}
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")

    def check(args, want):
        res = CliRunner().invoke(main, ["run", *args])
        assert res.exit_code == 0, res.output
        assert seen["opts"].ray_address == want, (args, seen["opts"].ray_address)

    def capture(params_file, kw):
        seen["opts"] = to_run_options(kw, params_file)
        return 0

    monkeypatch.setattr(run_cmd, "_run", capture)
    check(["--executor", "local"], None)
    check([], "127.0.0.1:1")
    check(["--executor", "local", "--ray-address", "127.0.0.1:2"], "127.0.0.1:2")  # given: refused later, as before


def test_a_bad_store_from_the_environment_names_the_variable(monkeypatch, tmp_path):
    from bench.core.errors import BenchError
    from bench.track.store import resolve_tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "m.db"))  # a plain path: refused
    for given in (None, str(tmp_path / "m.db")):  # read here, or filled in by the CLI's envvar
        with pytest.raises(BenchError, match=r"plain path.*environment variable MLFLOW_TRACKING_URI='.*m\.db': "
                                             r"correct or unset it, or pass --tracking-uri"):
            resolve_tracking_uri(given)
    with pytest.raises(BenchError) as err:  # given on the command line: no word of the variable
        resolve_tracking_uri(str(tmp_path / "other.db"))
    assert "MLFLOW_TRACKING_URI" not in str(err.value)


# -- precedence: defaults < TOML < command line ------------------------------------------------

TOML = """
methods = ["ga", "ft"]
dataset = "synthetic:n=100"
model = ["cnn", "mlp"]
seeds = "1-2"
forget_seed = 5
shadow_models = 4
cpus_per_trial = 2
device = "cpu"
experiment = "from-toml"
download = true
[recipe]
epochs = 4
lr = 0.5
[params.ga]
lr = 0.1
epochs = 2
"""


@pytest.fixture
def toml_file(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "exp.toml"
    path.write_text(TOML)
    return str(path)


def test_toml_overrides_the_defaults(toml_file):
    o = _parse(RUN, ["--config", toml_file])
    assert (o.methods, o.datasets, o.models, o.seeds) == ("ga,ft", ["synthetic:n=100"], ["cnn", "mlp"], [1, 2])
    assert (o.forget_seed, o.shadow_models, o.cpus_per_trial, o.device, o.experiment, o.download) == (5, 4, 2, "cpu", "from-toml", True)
    assert o.recipe == {"epochs": 4, "lr": 0.5} and o.params == {"ga": {"lr": 0.1, "epochs": 2}}
    # what the file does not set keeps its default
    assert (o.attacks, o.executor, o.gpus_per_trial, o.forgets, o.resume) == ("loss,entropy,svc", "ray", 0.0, ["random:10%"], False)


def test_command_line_overrides_the_toml_file(toml_file):
    o = _parse(RUN, ["-c", toml_file, "-m", "retrain", "-d", "digits", "-d", "synthetic", "-s", "3", "--forget-seed", "7",
                     "--shadow-models", "6", "--cpus-per-trial", "0.5", "-e", "from-cli", "--no-download",
                     "-r", "epochs=9", "-p", "ga.lr=0.3", "-p", "ft.lr=1", "--executor", "local", "--resume"])
    assert (o.methods, o.datasets, o.seeds, o.forget_seed) == ("retrain", ["digits", "synthetic"], [3], 7)
    assert (o.shadow_models, o.cpus_per_trial, o.experiment, o.download) == (6, 0.5, "from-cli", False)
    assert (o.executor, o.resume) == ("local", True)
    assert o.models == ["cnn", "mlp"] and o.device == "cpu"  # not on the command line: the file's
    # recipe keys and per-method params merge key by key; the file's params of methods the command
    # line's --methods leaves out go with them (ga's epochs=2), the command line's stay (refused later)
    assert o.recipe == {"epochs": "9", "lr": 0.5}
    assert o.params == {"ga": {"lr": "0.3"}, "ft": {"lr": "1"}}
    o = _parse(RUN, ["-c", toml_file, "-m", "ga,retrain", "-p", "ga.lr=0.3"])
    assert o.params["ga"] == {"lr": "0.3", "epochs": 2}


def test_tune_merges_the_shared_options_the_same_way(toml_file):
    o = _parse(TUNE, ["--method", "ga", "-c", toml_file, "--device", "cuda", "-r", "lr=0.1"])
    assert (o.device, o.recipe, o.experiment, o.seeds) == ("cuda", {"epochs": 4, "lr": "0.1"}, "from-toml", [0])


def test_params_file_then_param_flags(tmp_path, toml_file):
    params = tmp_path / "best.json"
    params.write_text('{"ga": {"lr": 0.2, "epochs": 3}, "ft": {"lr": 2}}')
    o = _parse(RUN, ["-c", toml_file, "--params", str(params), "-p", "ga.lr=0.4"])
    assert o.params == {"ga": {"lr": "0.4", "epochs": 3}, "ft": {"lr": 2}}


# -- errors keep their wording -----------------------------------------------------------------

@pytest.mark.parametrize("toml, message", [
    ({"cpus_per_trial": "2"}, "Bad value in the experiment file: cpus_per_trial = '2' (expected int or float)."),
    ({"shadow_models": True}, "Bad value in the experiment file: shadow_models = True (expected int)."),
    ({"download": 1}, "Bad value in the experiment file: download = 1 (expected bool)."),
    ({"methods": 5}, "Bad value in the experiment file: methods = 5 (expected str or list)."),
    ({"seeds": 1.5}, "Bad value in the experiment file: seeds = 1.5 (expected str or int or list)."),
    ({"recipe": "epochs=3"}, "Bad value in the experiment file: recipe = 'epochs=3' (expected dict)."),
    ({"params": {"ga": 5}}, "Bad value in the experiment file: params = {'ga': 5} (expected dict)."),
])
def test_wrong_toml_type_message(toml, message):
    with pytest.raises(BenchError) as exc:
        merge_options(toml, {})
    assert str(exc.value) == message


def test_wrong_toml_type_from_a_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('experiment = 3\n')
    with pytest.raises(BenchError) as exc:
        _parse(RUN, ["--config", str(path)])
    assert str(exc.value) == "Bad value in the experiment file: experiment = 3 (expected str)."
    with pytest.raises(BenchError) as exc:
        merge_options(load_toml(path) | {"datasets": ["x"]}, {})
    assert str(exc.value).startswith("Unknown keys in the experiment file: datasets. Valid keys: " + ", ".join(TOML_KEYS))


def test_command_line_errors_keep_their_wording():
    with pytest.raises(BenchError, match=r"^Bad --recipe 'epochs': expected KEY=VALUE\.$"):
        _parse(RUN, ["-r", "epochs"])
    with pytest.raises(BenchError, match=r"^Bad --param 'galr=1': expected METHOD\.NAME=VALUE, e\.g\. ga\.lr=0\.01\.$"):
        _parse(RUN, ["-p", "galr=1"])
    with pytest.raises(BenchError, match=r"^Bad seeds '3-1': the range 3-1 is empty"):
        _parse(RUN, ["-s", "3-1"])


def test_relative_cache_and_data_dirs_are_made_absolute(tmp_path, monkeypatch):
    """Ray workers do not run in the driver's directory, and Ray Tune refuses a relative storage
    path (pyarrow: "URI has empty scheme"): the harness resolves both directories against the cwd."""
    from bench.core.options import RunOptions
    from bench.run.validate import resolve_cache_dir, resolve_data_dir

    monkeypatch.chdir(tmp_path)
    opts = RunOptions(cache_dir="c", data_dir="d")
    assert resolve_cache_dir(opts) == tmp_path / "c" and resolve_cache_dir(opts).is_absolute()
    assert resolve_data_dir(opts) == tmp_path / "d"


def test_relative_xdg_directories_are_ignored_as_the_spec_says(monkeypatch, tmp_path):
    """XDG_DATA_HOME=relative/xdg put the data under the working directory (dataset audit,
    2026-12-07); the XDG Base Directory spec says to ignore a relative value."""
    from pathlib import Path

    from bench.core.cache import default_cache_dir
    from bench.run.validate import default_data_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/xdg")
    monkeypatch.setenv("XDG_CACHE_HOME", "rel")
    assert default_data_dir() == Path(tmp_path, ".local", "share", "unlearning-bench", "data")
    assert default_cache_dir() == Path(tmp_path, ".cache", "unlearning-bench")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "abs"))
    assert default_data_dir() == tmp_path / "abs" / "unlearning-bench" / "data"
