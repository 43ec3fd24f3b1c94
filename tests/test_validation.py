"""Every bad input fails before any training, with a message that names the problem.

Most checks are unit tests of the parsers and of ``validate_options`` (fast); a
representative subset goes through the ``bench run`` command (in process, with click's
CliRunner; one slow test runs the installed console script), which must exit with code 2,
print ``Error: ...`` on stderr without a traceback, and leave the reference cache and the
MLflow store untouched. Argument errors found by ``validate_options`` must answer without
importing torch (a slow test, in a fresh interpreter).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.core.options import RunOptions, load_toml, merge_options, parse_method_params, parse_seeds
from bench.run.validate import check_ray_address, resolve_methods, validate_options
from bench.track.store import resolve_tracking_uri
from bench.core.forget import parse_forget
from bench.core.plugins import build_registry, make_plugin_manager
from bench.core.recipe import Recipe, build_recipe, parse_assignments

DIGITS_TRAIN = 1437  # the digits training split (bench.datasets.digits)
DIGITS_Y = np.arange(DIGITS_TRAIN) % 10


@pytest.fixture(scope="module")
def registry():
    return build_registry(make_plugin_manager())[0]


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def opts(tmp_path, **kw) -> RunOptions:
    """Valid options (with a usable tracking store) updated with ``kw``."""
    base = dict(methods="ft,ga", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    base.update(kw)
    return RunOptions(**base)


# -- forget requests: syntax ----------------------------------------------------------------

@pytest.mark.parametrize("text, fragment", [
    ("random:0%", "strictly between 0% and 100%"),
    ("random:100%", "strictly between 0% and 100%"),
    ("random:150%", "strictly between 0% and 100%"),
    ("random:-5%", "strictly between 0% and 100%"),
    ("random:ten%", "'ten%' is not a percentage"),
    ("random:1.5", "a fraction must lie strictly between 0 and 1"),
    ("random:1.0", "a fraction must lie strictly between 0 and 1"),
    ("random:0.0", "a fraction must lie strictly between 0 and 1"),
    ("random:-0.5", "a fraction must lie strictly between 0 and 1"),
    ("random:0", "the count must be at least 1"),
    ("random:-3", "the count must be at least 1"),
    ("random:many", "expected random:10% or random:100"),
    ("random", "expected random:10%, random:100, class:3 or indices:PATH"),
    ("random:", "expected random:10%, random:100, class:3 or indices:PATH"),
    ("class:", "expected random:10%, random:100, class:3 or indices:PATH"),
    ("class:three", "expected an integer class label"),
    ("class:3.5", "expected an integer class label"),
    ("indices:", "expected random:10%, random:100, class:3 or indices:PATH"),
    ("rand:10%", "Unknown forget request kind 'rand'"),
    ("10%", "expected random:10%, random:100, class:3 or indices:PATH"),
])
def test_bad_forget_syntax(text, fragment):
    with pytest.raises(BenchError) as exc:
        parse_forget(text)
    msg = str(exc.value)
    assert fragment in msg
    assert f"'{text}'" in msg or f"'{text.partition(':')[0]}'" in msg


@pytest.mark.parametrize("text", ["random:nan", "random:inf", "random:-inf"])
def test_non_finite_random_forget_is_a_bench_error(text):
    with pytest.raises(BenchError, match="Bad forget request"):
        parse_forget(text)


@pytest.mark.parametrize("text, kind, fraction, count", [
    ("random:10%", "random", 0.1, None),
    ("random:0.25", "random", 0.25, None),
    ("random:100", "random", None, 100),
    ("random:1e3", "random", None, 1000),
    (" random : 5% ", "random", 0.05, None),
])
def test_good_random_forget(text, kind, fraction, count):
    spec = parse_forget(text)
    assert (spec.kind, spec.count) == (kind, count)
    assert spec.fraction == pytest.approx(fraction) if fraction is not None else spec.fraction is None


# -- forget requests against the dataset -------------------------------------------------------

@pytest.mark.parametrize("text, fragment", [
    ("class:12", "unknown class 12; this dataset has classes 0..9"),
    ("class:10", "unknown class 10; this dataset has classes 0..9"),
    ("class:-1", "unknown class -1; this dataset has classes 0..9"),
    ("random:5000", "5000 points requested but the training set has 1437"),
    ("random:1437", "1437 points requested but the training set has 1437"),
])
def test_forget_request_does_not_fit_dataset(text, fragment):
    with pytest.raises(BenchError) as exc:
        parse_forget(text).select(DIGITS_Y, 10, 0)
    assert fragment in str(exc.value) and f"'{text}'" in str(exc.value)


def test_forget_class_without_points_or_with_all_points():
    y = np.zeros(50, dtype=np.int64)
    with pytest.raises(BenchError, match="class 3 has no training points"):
        parse_forget("class:3").select(y, 4, 0)
    with pytest.raises(BenchError, match="would forget the whole training set"):
        parse_forget("class:0").select(y, 4, 0)


def test_good_forget_selections():
    idx = parse_forget("random:10%").select(DIGITS_Y, 10, 0)
    assert len(idx) == round(0.1 * DIGITS_TRAIN) and idx.dtype == np.int64
    assert (np.diff(idx) > 0).all() and idx.min() >= 0 and idx.max() < DIGITS_TRAIN
    assert (idx == parse_forget("random:10%").select(DIGITS_Y, 10, 0)).all()  # same forget seed, same request
    assert len(parse_forget("random:1436").select(DIGITS_Y, 10, 0)) == 1436
    assert (parse_forget("class:3").select(DIGITS_Y, 10, 0) == np.flatnonzero(DIGITS_Y == 3)).all()


def _indices(tmp_path, text, name="forget.txt"):
    path = tmp_path / name
    path.write_text(text)
    return f"indices:{path}", path


@pytest.mark.parametrize("content, fragment", [
    ("", "lists no indices"),
    ("# only a comment\n\n   \n", "lists no indices"),
    ("3\n1437\n", "indices out of range [1437]; the training set has indices 0..1436"),
    ("-1\n5\n", "indices out of range [-1]"),
    ("3\n7\n3\n", "duplicate indices [3]"),
    ("3\nfive\n", "line 2 of"),
    ("3\n4.0\n", "is '4.0', not an integer index"),
    ("1,2\n", "is '1,2', not an integer index"),
])
def test_bad_indices_file(tmp_path, content, fragment):
    text, path = _indices(tmp_path, content)
    with pytest.raises(BenchError) as exc:
        parse_forget(text).select(DIGITS_Y, 10, 0)
    msg = str(exc.value)
    assert fragment in msg and f"'{text}'" in msg


def test_indices_file_covering_everything(tmp_path):
    text, _ = _indices(tmp_path, "\n".join(map(str, range(DIGITS_TRAIN))))
    with pytest.raises(BenchError, match=r"would forget the whole training set \(1437 points\)"):
        parse_forget(text).select(DIGITS_Y, 10, 0)


@pytest.mark.parametrize("where, message", [("missing.txt", "no file at .*one training index per line"),
                                            (".", "is a directory. Give a text file in it with one training index")])
def test_indices_file_missing(tmp_path, where, message):
    path = tmp_path / where
    with pytest.raises(BenchError, match=message):
        parse_forget(f"indices:{path}").select(DIGITS_Y, 10, 0)


def test_good_indices_file(tmp_path):
    text, _ = _indices(tmp_path, "# forget these\n9\n  2 \n\n5  # trailing comment\n")
    assert parse_forget(text).select(DIGITS_Y, 10, 0).tolist() == [2, 5, 9]


def test_binary_indices_file_is_a_bench_error(tmp_path):
    path = tmp_path / "forget.npy"
    np.save(path, np.arange(5))  # a plausible mistake: a NumPy file instead of a text file
    with pytest.raises(BenchError, match="forget.npy"):
        parse_forget(f"indices:{path}").select(DIGITS_Y, 10, 0)


# -- dataset options ------------------------------------------------------------------------------

@pytest.mark.parametrize("arg, fragment", [
    ("n=abc", "Bad synthetic option 'n=abc': n must be an integer"),
    ("size=100", "Bad synthetic option 'size=100': expected KEY=VALUE with KEY one of n, features, classes"),
    ("n", "Bad synthetic option 'n'"),
    ("classes=1", "need classes >= 2"),
    ("n=20,classes=4", "n >= 10 * classes"),
    ("features=4,informative=6", "need informative <= features"),
])
def test_bad_synthetic_options(arg, fragment):
    from bench.datasets.synthetic import parse_options

    with pytest.raises(BenchError) as exc:
        parse_options(arg)
    assert fragment in str(exc.value)


def test_digits_takes_no_options():
    from bench.datasets.digits import Digits

    with pytest.raises(BenchError, match=r"Dataset 'digits' takes no options \(got 'digits:small'\)"):
        Digits().load("/nonexistent", False, "small")


def test_default_synthetic_options_are_complete():
    from bench.datasets.synthetic import parse_options

    assert parse_options(None) == parse_options("n=2000")
    assert isinstance(parse_options(None)["informative"], int)


# -- recipe -------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer, fragment", [
    ({"epoch": 3}, "Unknown recipe key 'epoch'. Valid keys: optimizer, lr, momentum, weight_decay, epochs, batch_size, schedule"),
    ({"learning_rate": "0.1"}, "Unknown recipe key 'learning_rate'"),
    ({"epochs": "abc"}, "Bad recipe value epochs='abc': expected int"),
    ({"epochs": "1.5"}, "Bad recipe value epochs='1.5': expected int"),
    ({"epochs": 2.5}, "Bad recipe value epochs=2.5: expected an integer"),
    ({"lr": "fast"}, "Bad recipe value lr='fast': expected float"),
    ({"batch_size": [64]}, "Bad recipe value batch_size=[64]: expected int"),
    ({"optimizer": "rmsprop"}, "Unknown optimizer 'rmsprop' in the recipe; expected one of sgd, adam, adamw"),
    ({"schedule": "linear"}, "Unknown schedule 'linear' in the recipe; expected one of cosine, constant, step"),
    ({"epochs": "0"}, "need lr > 0, epochs >= 1"),
    ({"lr": "0"}, "need lr > 0"),
    ({"lr": -0.1}, "need lr > 0"),
    ({"batch_size": 0}, "batch_size >= 1"),
    ({"momentum": -0.5}, "momentum in [0, 1)"),
    ({"momentum": 2}, "Bad recipe value momentum=2.0: momentum must be a finite number in [0, 1)"),
    ({"lr": 1e300}, "lr must be a finite number > 0 within float32's range"),
    ({"epochs": True}, "Bad recipe value epochs=True: expected int, not a boolean"),
    ({"weight_decay": "-1e-4"}, "weight_decay >= 0"),
])
def test_bad_recipe(layer, fragment):
    with pytest.raises(BenchError) as exc:
        build_recipe({"epochs": 3}, layer)
    assert fragment in str(exc.value)


@pytest.mark.parametrize("layer", [{"lr": "nan"}, {"lr": "inf"}, {"weight_decay": "nan"}])
def test_non_finite_recipe_value(layer):
    with pytest.raises(BenchError, match="recipe"):
        build_recipe(layer)


def test_recipe_layers_and_coercion():
    r = build_recipe({"epochs": 30, "lr": 0.05}, {"epochs": "20"}, {"lr": "0.1", "optimizer": "adam"}, None)
    assert r == Recipe(optimizer="adam", lr=0.1, epochs=20)
    assert build_recipe({"epochs": 4.0}).epochs == 4


@pytest.mark.parametrize("items, fragment", [
    (["epochs"], "Bad --recipe 'epochs': expected KEY=VALUE"),
    (["=3"], "Bad --recipe '=3': expected KEY=VALUE"),
])
def test_bad_assignment(items, fragment):
    with pytest.raises(BenchError, match=fragment):
        parse_assignments(items, "--recipe")


# -- seeds --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, fragment", [
    ("a,b", "Bad seeds 'a,b': expected integers"),
    ("0,x", "Bad seeds '0,x': expected integers"),
    ("1-", "Bad seeds '1-'"),
    ("x-3", "Bad seeds 'x-3'"),
    ("1.5", "Bad seeds '1.5'"),
    ("", "expected non-negative integers"),
    (",", "an empty item (two commas in a row, or one at an end)"),
    ("0,,1", "an empty item (two commas in a row, or one at an end)"),
    ("-1", "expected non-negative integers"),
    ("3-1", "Bad seeds '3-1'"),
    ("0,1,0", "a seed is repeated"),
    ("0-3,2", "a seed is repeated"),
    ([0, "a"], "expected integers"),
])
def test_bad_seeds(value, fragment):
    with pytest.raises(BenchError) as exc:
        parse_seeds(value)
    assert fragment in str(exc.value)


def test_reversed_range_among_seeds():
    with pytest.raises(BenchError, match="3-1"):
        parse_seeds("0,3-1")


@pytest.mark.parametrize("value, expected", [
    ("0,1,2", [0, 1, 2]), ("0-3", [0, 1, 2, 3]), (" 4 , 2 ", [4, 2]), ("0-1,5", [0, 1, 5]), (7, [7]), ([1, 2], [1, 2]),
])
def test_good_seeds(value, expected):
    assert parse_seeds(value) == expected


# -- method parameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("items, fragment", [
    (["lr=0.01"], "Bad --param 'lr=0.01': expected METHOD.NAME=VALUE"),
    ([".lr=0.01"], "Bad --param '.lr=0.01': expected METHOD.NAME=VALUE"),
    (["ga.=0.01"], "Bad --param 'ga.=0.01': expected METHOD.NAME=VALUE"),
    (["ga.lr"], "Bad --param 'ga.lr': expected KEY=VALUE"),
])
def test_bad_param_syntax(items, fragment):
    with pytest.raises(BenchError) as exc:
        parse_method_params(items)
    assert fragment in str(exc.value)


def test_param_syntax_ok():
    assert parse_method_params(["ga.lr=0.01", "ga.variant=neggrad+", "ft.epochs=3"]) == {
        "ga": {"lr": "0.01", "variant": "neggrad+"}, "ft": {"epochs": "3"}}


@pytest.mark.parametrize("methods, params, fragment", [
    ("ga", {"ga": {"foo": "1"}}, "Unknown parameter 'foo' for method 'ga'. Its parameters: variant='ga', epochs="),
    ("retrain", {"retrain": {"epochs": "3"}}, "Unknown parameter 'epochs' for method 'retrain'. Its parameters: (none)"),
    ("ga", {"ft": {"lr": "0.1"}}, "given for method 'ft' (by --param, --params or [params.ft] in the experiment file), which is not selected (selected: ga)"),
    ("g*", {"sisaa": {"lr": "0.1"}}, "given for method 'sisaa' (by --param, --params or [params.sisaa] in the experiment file), which is not selected (selected: ga)"),
    ("ga", {"ga": {"epochs": "abc"}}, "Bad value for ga.epochs: 'abc' is not an integer (default "),
    ("ga", {"ga": {"epochs": "2.5"}}, "Bad value for ga.epochs: '2.5' is not an integer"),
    ("ga", {"ga": {"lr": "fast"}}, "Bad value for ga.lr: 'fast' is not a number (default "),
    # Python reads digit separators: 0_01 was lr 1.0 (params audit)
    ("ga", {"ga": {"lr": "0_01"}}, "Bad value for ga.lr: '0_01' is not a number (default "),
    ("ga", {"ga": {"epochs": "1_0"}}, "Bad value for ga.epochs: '1_0' is not an integer"),
    ("ga", {"ga": {"epochs": "inf"}}, "Bad value for ga.epochs: 'inf' is not an integer"),
    ("ga", {"ga": {"train_mode": "maybe"}}, "Bad value for ga.train_mode: 'maybe' is not true or false (default True)"),
    ("ga", {"ga": {"variant": "bogus"}}, "Bad parameters for method 'ga': variant='bogus': expected one of ga, neggrad+. Fix it with -p ga.variant=VALUE"),
])
def test_bad_method_params(registry, tmp_path, methods, params, fragment):
    with pytest.raises(BenchError) as exc:
        validate_options(registry, opts(tmp_path, methods=methods, params=params))
    assert fragment in str(exc.value)


def test_good_method_params_are_coerced(registry):
    plans = resolve_methods(registry, RunOptions(methods="ga,ft", params={"ga": {"epochs": "3", "train_mode": "no", "variant": "neggrad+"}, "ft": {"lr": "0.1"}}))
    ga, ft = plans
    assert (ga.params["epochs"], ga.params["train_mode"], ga.access) == (3, False, ("forget", "retain"))
    assert ft.params["lr"] == 0.1 and ft.origin == "bench.methods"
    # a whole number in float notation is an integer on the command line too, as in a TOML or JSON file
    # (epochs = 5.0 there was 5, -p ga.epochs=5.0 refused; params audit)
    for text in ("5.0", "5e0", "0.5e1"):
        (ga,) = resolve_methods(registry, RunOptions(methods="ga", params={"ga": {"epochs": text}}))
        assert ga.params["epochs"] == 5 and type(ga.params["epochs"]) is int, text


def test_recipe_numbers_on_the_command_line():
    from bench.core.recipe import build_recipe

    assert build_recipe({"epochs": "5.0", "lr": "0.01"}).epochs == 5
    for bad in ({"lr": "0_01"}, {"epochs": "2.5"}, {"epochs": "1_0"}):
        with pytest.raises(BenchError, match="Bad recipe value"):
            build_recipe(bad)


@pytest.mark.parametrize("value", [1.5, [3], {"n": 3}])
def test_toml_param_of_wrong_type(registry, tmp_path, value):
    o = merge_options({"methods": "ga", "params": {"ga": {"epochs": value}}}, {"tracking_uri": f"sqlite:///{tmp_path / 'm.db'}"})
    with pytest.raises(BenchError, match="ga.epochs"):
        validate_options(registry, o)


# -- other options ------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, fragment", [
    ({"methods": "sisaa"}, "Unknown method 'sisaa'."),
    ({"methods": "retrian"}, "Unknown method 'retrian'. Did you mean: retrain?"),
    ({"methods": "x*"}, "No method matches 'x*'"),
    ({"datasets": ["digitz"]}, "Unknown dataset 'digitz'. Did you mean: digits?"),
    ({"datasets": ["digits", "imagenet:x"]}, "Unknown dataset 'imagenet'."),
    ({"attacks": "mia"}, "Unknown attack 'mia'."),
    ({"forgets": ["random:0%"]}, "Bad forget request 'random:0%'"),
    ({"forgets": ["random:10%", "random:10%"]}, "A forget request is given twice."),
    ({"recipe": {"epoch": 3}}, "Unknown recipe key 'epoch'"),
    ({"recipe": {"epochs": "abc"}}, "Bad recipe value epochs='abc'"),
    ({"executor": "dask"}, "Unknown executor 'dask': expected one of ray, local"),
    ({"cpus_per_trial": 0}, "--cpus-per-trial must be positive (got 0)"),
    ({"gpus_per_trial": -1}, "--gpus-per-trial must be >= 0 (got -1)"),
    ({"device": "gpu"}, "Unknown device 'gpu': expected auto, cpu or cuda"),
    ({"executor": "local", "ray_address": "127.0.0.1:6379"}, "--ray-address needs the ray executor (drop --executor local)"),
    ({"ray_address": "myhead"}, "Bad --ray-address 'myhead': expected HOST:PORT"),
    ({"ray_address": "127.0.0.1:port"}, "Bad --ray-address '127.0.0.1:port'"),
])
def test_bad_options(registry, tmp_path, kw, fragment):
    with pytest.raises(BenchError) as exc:
        validate_options(registry, opts(tmp_path, **kw))
    assert fragment in str(exc.value)


def test_good_options(registry, tmp_path):
    methods, forgets, uri = validate_options(registry, opts(tmp_path, forgets=["random:10%", "class:3"]))
    assert [m.name for m in methods] == ["ft", "ga"]
    assert [f.kind for f in forgets] == ["random", "class"]
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_ray_address_nothing_listening(closed_port):
    for address in (f"127.0.0.1:{closed_port}", f"ray://127.0.0.1:{closed_port}"):
        with pytest.raises(BenchError, match=rf"No Ray head answers at {address} .*ray start --head"):
            check_ray_address(address)
    check_ray_address(None)
    check_ray_address("auto")


def test_the_job_server_address_is_not_a_cluster_address():
    with pytest.raises(BenchError, match=r"dashboard and job server .*HOST:PORT \(port 6379 by default\)"):
        check_ray_address("http://127.0.0.1:8265")


def test_a_dead_ray_address_from_the_environment_says_so(closed_port, monkeypatch):
    address = f"127.0.0.1:{closed_port}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(BenchError, match=r"given by --ray-address \(here from the environment variable RAY_ADDRESS\)"
                                         r".*unset RAY_ADDRESS \(or set it to local\)"):
        check_ray_address(address)


def test_tracking_uri_checks(tmp_path, monkeypatch, closed_port):
    missing = tmp_path / "nope" / "mlflow.db"
    with pytest.raises(BenchError, match=rf"the directory {tmp_path / 'nope'} does not exist"):
        resolve_tracking_uri(f"sqlite:///{missing}")
    with pytest.raises(BenchError, match=r"Unsupported tracking URI 'ftp://host/x'"):
        resolve_tracking_uri("ftp://host/x")
    with pytest.raises(BenchError, match=rf"MLflow tracking server http://127.0.0.1:{closed_port} does not answer"):
        resolve_tracking_uri(f"http://127.0.0.1:{closed_port}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///rel.db") == f"sqlite:///{tmp_path / 'rel.db'}"
    with pytest.raises(BenchError, match="does not exist"):
        resolve_tracking_uri("sqlite:///sub/rel.db")


# -- experiment files ---------------------------------------------------------------------------

def test_toml_unknown_key():
    with pytest.raises(BenchError) as exc:
        merge_options({"datasets": ["digits"], "method": "ga", "seeds": [0]}, {})
    msg = str(exc.value)
    assert "Unknown keys in the experiment file: datasets, method." in msg
    assert "Valid keys: methods, dataset, model, forget, seeds" in msg


def test_toml_missing_and_invalid(tmp_path):
    with pytest.raises(BenchError, match=rf"Experiment file not found: {tmp_path / 'nope.toml'}"):
        load_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("methods = [ga\n")
    with pytest.raises(BenchError, match=rf"Experiment file {bad} is not valid TOML"):
        load_toml(bad)


def test_toml_values_are_checked(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('methods = ["ga"]\nseeds = "a,b"\n')
    with pytest.raises(BenchError, match="Bad seeds 'a,b'"):
        merge_options(load_toml(path), {})


def test_toml_then_cli_precedence():
    o = merge_options({"methods": ["ga", "ft"], "seeds": "0-2", "recipe": {"epochs": 5, "lr": 0.1},
                       "params": {"ga": {"lr": 0.02, "epochs": 2}}},
                      {"seeds": "4", "recipe": {"epochs": "7"}, "params": {"ga": {"lr": "0.03"}}, "executor": None})
    assert (o.methods, o.seeds, o.executor) == ("ga,ft", [4], "ray")
    assert o.recipe == {"epochs": "7", "lr": 0.1}
    assert o.params == {"ga": {"lr": "0.03", "epochs": 2}}


@pytest.mark.parametrize("toml", [
    {"recipe": "epochs=3"},
    {"params": {"ga": 5}},
    {"cpus_per_trial": "2"},
    {"methods": 5},
])
def test_toml_value_of_wrong_type(registry, tmp_path, toml):
    with pytest.raises(BenchError):
        o = merge_options(toml, {"tracking_uri": f"sqlite:///{tmp_path / 'm.db'}"})
        validate_options(registry, o)


# -- through the command line -------------------------------------------------------------------

def _assert_rejected(proc, workdir, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    assert "trial(s)" not in proc.stdout  # the plan was never announced
    assert list((workdir / "cache").iterdir()) == []  # nothing trained or cached
    assert not (workdir / "mlflow.db").exists()  # nothing recorded


def _indices_arg(workdir, content):
    path = workdir / "forget.txt"
    path.write_text(content)
    return f"indices:{path}"


# (arguments, expected fragments of the error); a callable builds the arguments from workdir
FAST_CLI_CASES = {
    "unknown-method": (["--methods", "sisaa"], ["Unknown method 'sisaa'. Did you mean: sisa?", "Available methods: bad-teacher, be, bs, cf-k, eu-k, fisher, ft, ga"]),
    "unknown-dataset": (["--dataset", "digitz"], ["Unknown dataset 'digitz'. Did you mean: digits?"]),
    "random-0%": (["--forget", "random:0%"], ["Bad forget request 'random:0%'", "strictly between 0% and 100%"]),
    "random-100%": (["-f", "random:100%"], ["Bad forget request 'random:100%'"]),
    "random-1.5": (["-f", "random:1.5"], ["Bad forget request 'random:1.5'", "strictly between 0 and 1"]),
    "random-0": (["-f", "random:0"], ["Bad forget request 'random:0'", "at least 1"]),
    "recipe-key": (["--recipe", "epoch=3"], ["Unknown recipe key 'epoch'", "Valid keys"]),
    "recipe-value": (["-r", "epochs=abc"], ["Bad recipe value epochs='abc'"]),
    "recipe-syntax": (["-r", "epochs"], ["Bad --recipe 'epochs': expected KEY=VALUE"]),
    "param-unknown": (["--param", "ga.foo=1"], ["Unknown parameter 'foo' for method 'ga'"]),
    "param-unselected": (["-m", "ga", "-p", "ft.lr=0.1"], ["given for method 'ft'", "which is not selected (selected: ga)"]),
    "param-type": (["-p", "ga.epochs=abc"], ["Bad value for ga.epochs: 'abc'"]),
    "param-syntax": (["-p", "lr=0.1"], ["Bad --param 'lr=0.1': expected METHOD.NAME=VALUE"]),
    "seeds": (["--seeds", "a,b"], ["Bad seeds 'a,b'"]),
    "executor-local-ray": (lambda w, port: ["--executor", "local", "--ray-address", f"127.0.0.1:{port}"],
                           ["--ray-address needs the ray executor"]),
    "ray-address": (lambda w, port: ["--ray-address", f"127.0.0.1:{port}"], ["No Ray head answers at 127.0.0.1:"]),
    "device": (["--device", "gpu"], ["Unknown device 'gpu'"]),
}


@pytest.mark.parametrize("case", list(FAST_CLI_CASES))
def test_cli_rejects_before_planning(invoke_bench, store_args, workdir, closed_port, case):
    args, fragments = FAST_CLI_CASES[case]
    if callable(args):
        args = args(workdir, closed_port)
    proc = invoke_bench("run", *args, *store_args(workdir), cwd=workdir)
    _assert_rejected(proc, workdir, *fragments)


def test_cli_missing_tracking_directory(invoke_bench, workdir):
    missing = workdir / "nope" / "mlflow.db"
    proc = invoke_bench("run", "--cache-dir", str(workdir / "cache"), "--tracking-uri", f"sqlite:///{missing}", cwd=workdir)
    _assert_rejected(proc, workdir, f"the directory {workdir / 'nope'} does not exist")
    assert not (workdir / "nope").exists()


@pytest.mark.parametrize("content, fragments", [
    ('methods = "ga"\ndatasets = ["digits"]\n', ["Unknown keys in the experiment file: datasets.", "Valid keys:"]),
    ("methods = [ga\n", ["is not valid TOML"]),
    (None, ["Experiment file not found:"]),
])
def test_cli_bad_config_file(invoke_bench, store_args, workdir, content, fragments):
    path = workdir / "exp.toml"
    if content is not None:
        path.write_text(content)
    proc = invoke_bench("run", "--config", str(path), *store_args(workdir), cwd=workdir)
    _assert_rejected(proc, workdir, *fragments)


def test_cli_config_checked_like_command_line(invoke_bench, store_args, workdir):
    path = workdir / "exp.toml"
    path.write_text('methods = "ga"\n[params.ga]\nfoo = 1\n')
    proc = invoke_bench("run", "--config", str(path), *store_args(workdir), cwd=workdir)
    _assert_rejected(proc, workdir, "Unknown parameter 'foo' for method 'ga'")


# These load the data (and import torch) but still stop before any training.
SLOW_CLI_CASES = {
    "unknown-class": (["--forget", "class:12"], ["Forget request 'class:12': unknown class 12", "classes 0..9"]),
    "count-too-large": (["-f", "random:5000"], ["Forget request 'random:5000'", "the training set has 1437"]),
    "indices-empty": (lambda w: ["-f", _indices_arg(w, "")], ["lists no indices"]),
    "indices-out-of-range": (lambda w: ["-f", _indices_arg(w, "0\n2000\n")], ["indices out of range [2000]", "0..1436"]),
    "unknown-model": (["--model", "mlpp"], ["Unknown model 'mlpp'. Did you mean: mlp?", "Available models:"]),
    "cnn-on-vectors": (["--model", "cnn", "--dataset", "synthetic:n=400"], ["Model 'cnn' needs image inputs", "Use --model mlp"]),
    "cnn-on-default-synthetic": (["--model", "cnn", "--dataset", "synthetic"], ["Model 'cnn' needs image inputs", "Use --model mlp"]),
}


@pytest.mark.parametrize("args, fragments", [pytest.param(*v, id=k) for k, v in SLOW_CLI_CASES.items()])
def test_cli_rejects_after_loading_data(invoke_bench, store_args, workdir, args, fragments):
    if callable(args):
        args = args(workdir)
    proc = invoke_bench("run", *args, *store_args(workdir), cwd=workdir)
    _assert_rejected(proc, workdir, *fragments)


@pytest.mark.slow
def test_console_script_rejects_a_bad_input(run_bench, store_args, workdir):
    """The installed ``bench`` script (a real process; the tests above run the command in
    process): exit code 2, the one-line message on stderr, no traceback, nothing written."""
    proc = run_bench("run", "--methods", "sisaa", *store_args(workdir), cwd=workdir, timeout=60)
    _assert_rejected(proc, workdir, "Unknown method 'sisaa'. Did you mean: sisa?")
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""


@pytest.mark.slow
def test_argument_errors_do_not_import_torch(tmp_path, closed_port):
    """Errors found by validate_options answer from the CLI without importing torch (or ray,
    mlflow, timm, sklearn)."""
    cases = [
        ["run", "--methods", "sisaa"],
        ["run", "--dataset", "digitz"],
        ["run", "-f", "random:0%"],
        ["run", "-r", "epoch=3"],
        ["run", "-p", "ga.foo=1"],
        ["run", "-p", "ga.epochs=abc"],
        ["run", "--seeds", "a,b"],
        ["run", "--tracking-uri", f"sqlite:///{tmp_path / 'nope' / 'm.db'}"],
        ["run", "--ray-address", f"127.0.0.1:{closed_port}"],
        ["run", "--executor", "local", "--ray-address", "auto"],
    ]
    code = textwrap.dedent(f"""
        import json, sys
        from bench.cli import main
        codes = []
        for args in {cases!r}:
            try:
                codes.append(main(args, prog_name="bench", standalone_mode=False))
            except SystemExit as exc:
                codes.append(exc.code)
        heavy = [m for m in ("torch", "ray", "mlflow", "timm", "sklearn") if m in sys.modules]
        print(json.dumps({{"codes": codes, "heavy": heavy}}))
    """)
    proc = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["codes"] == [2] * len(cases), proc.stderr
    assert result["heavy"] == [], result
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == len(cases), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
