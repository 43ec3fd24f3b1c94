"""The example third-party plugin in ``examples/bench-example-plugin`` (Random Labels).

Fast tests load it from its source folder by file path (the repository root never goes on
``sys.path``) and unlearn in process. The slow test pip-installs the distribution into this
environment, checks that the ``bench`` entry point exposes it to ``bench plugins`` and ``bench
list``, runs it through Ray Tune against ``retrain`` and reads the MLflow store back.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).resolve().parent.parent / "examples" / "bench-example-plugin"
PACKAGE_DIR = PLUGIN_DIR / "bench_example_plugin"
DIST = "bench-example-plugin"
ENTRY_POINT = "example"
METHOD = "random-labels"
SOURCE_NAME = "_bench_example_plugin_src"  # never the installed name, so the two cannot mix
BENCH = shutil.which("bench", path=os.path.dirname(sys.executable)) or "bench"


def _load_source_package():
    """Import the plugin package from its folder under a private name; returns the module."""
    spec = importlib.util.spec_from_file_location(
        SOURCE_NAME, PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(PACKAGE_DIR)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[SOURCE_NAME] = module  # the package's relative import needs it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(SOURCE_NAME, None)
        raise
    return module


@pytest.fixture
def plugin_src():
    module = _load_source_package()
    yield module
    for name in [n for n in sys.modules if n == SOURCE_NAME or n.startswith(SOURCE_NAME + ".")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def digits_original():
    """Digits splits and an MLP trained with the digits default recipe (about 2 s on one thread)."""
    import torch

    from bench.datasets.digits import Digits
    from bench.nn.nets import MLP, flat_size
    from bench.core.recipe import build_recipe
    from bench.nn.training import fit, set_threads

    set_threads(1)
    splits = Digits().load(None, False, None)
    recipe = build_recipe(Digits.default_recipe)
    torch.manual_seed(0)
    model = MLP(flat_size(splits.input_shape), (256, 256), splits.num_classes)
    fit(model, splits.train_x, splits.train_y, recipe, seed=0)
    return splits, model


def _class_request(splits, forget_class: int):
    from bench.core.contracts import ForgetRequest

    mask = splits.train_y == forget_class
    return ForgetRequest(
        num_classes=splits.num_classes, kind="class", forget_class=forget_class,
        forget_x=splits.train_x[mask], forget_y=splits.train_y[mask],
        retain_x=splits.train_x[~mask], retain_y=splits.train_y[~mask],
    )


def _ctx(seed: int):
    from bench.core.contracts import MethodContext

    def no_new_model():  # random labels never asks for a fresh model
        raise AssertionError("random-labels called ctx.new_model()")

    return MethodContext(seed=seed, device="cpu", new_model=no_new_model)


@pytest.mark.slow
def test_source_package_imports_without_torch():
    code = (
        "import importlib.util as u, sys;"
        f"s = u.spec_from_file_location({SOURCE_NAME!r}, {str(PACKAGE_DIR / '__init__.py')!r},"
        f" submodule_search_locations=[{str(PACKAGE_DIR)!r}]);"
        f"m = u.module_from_spec(s); sys.modules[{SOURCE_NAME!r}] = m; s.loader.exec_module(m);"
        "assert 'torch' not in sys.modules, 'importing the plugin imported torch'"
    )
    subprocess.run([sys.executable, "-P", "-c", code], check=True, cwd="/")


def test_registers_random_labels_through_pluggy(plugin_src):
    from bench.core.plugins import build_registry, make_plugin_manager
    from bench.core.space import Domain

    registry, infos = build_registry(make_plugin_manager((plugin_src,)))
    entry = registry.entry("method", METHOD)
    assert entry.obj.requires == frozenset({"forget", "retain"})
    assert set(entry.obj.search_space) <= set(entry.obj.default_params)
    assert all(isinstance(d, Domain) for d in entry.obj.search_space.values())
    assert entry.obj.default_params["epochs"] == 10
    json.dumps(entry.obj.default_params)  # JSON-serialisable, as the contract asks
    info = next(i for i in infos if METHOD in i.registered.get("method", []))
    assert info.hooks == ["register_methods"]


def test_random_labels_forgets_a_class_in_process(plugin_src, digits_original):
    import torch

    from bench.nn.training import accuracy

    splits, original = digits_original
    request = _class_request(splits, forget_class=3)
    method = plugin_src.RandomLabels()
    params = dict(method.default_params)
    other = splits.test_y != 3

    before_forget = accuracy(original, request.forget_x, request.forget_y)
    before_test = accuracy(original, splits.test_x, splits.test_y)
    out = method.unlearn(copy.deepcopy(original), request, params, _ctx(seed=0))
    forget = accuracy(out, request.forget_x, request.forget_y)
    retain = accuracy(out, request.retain_x, request.retain_y)
    test = accuracy(out, splits.test_x, splits.test_y)
    test_other = accuracy(out, splits.test_x[other], splits.test_y[other])
    print(f"original forget={before_forget:.3f} test={before_test:.3f}; random-labels forget={forget:.3f} "
          f"retain={retain:.3f} test={test:.3f} test(other classes)={test_other:.3f}")

    assert before_forget > 0.95 and before_test > 0.9
    assert forget < 0.2 and forget < before_forget - 0.7  # forgotten: far below the original's
    assert retain > 0.95 and test_other > 0.9  # the other classes are kept
    assert test > 0.8  # at most 0.9 once class 3 (10% of the test set) is forgotten

    # Seeded from ctx.seed: the same seed gives the same model, another seed another one.
    again = method.unlearn(copy.deepcopy(original), request, params, _ctx(seed=0))
    other_seed = method.unlearn(copy.deepcopy(original), request, params, _ctx(seed=1))
    for a, b in zip(out.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(out.state_dict().values(), other_seed.state_dict().values(), strict=True))


def test_random_labels_joint_variant_and_bad_variant(plugin_src, digits_original):
    from bench.core.errors import BenchError
    from bench.nn.training import accuracy

    splits, original = digits_original
    request = _class_request(splits, forget_class=5)
    method = plugin_src.RandomLabels()
    out = method.unlearn(copy.deepcopy(original), request, {**method.default_params, "variant": "joint"}, _ctx(seed=0))
    assert accuracy(out, request.forget_x, request.forget_y) < 0.3
    assert accuracy(out, request.retain_x, request.retain_y) > 0.95
    with pytest.raises(BenchError, match="unknown variant"):
        method.unlearn(copy.deepcopy(original), request, {**method.default_params, "variant": "nope"}, _ctx(seed=0))


@pytest.mark.slow
def test_random_labels_passes_the_conformance_kit(plugin_src):
    """The kit plugin authors run (``bench.testing``; the plugin's own tests/test_conformance.py
    parametrizes it) passes on both variants, loaded from source as above."""
    from bench.testing import check_method

    check_method(plugin_src.RandomLabels())
    check_method(plugin_src.RandomLabels(), params={"variant": "joint"})


# -- installed through pip, run through Ray Tune ---------------------------------------------


def _pip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``bench`` with entry-point plugins enabled (BENCH_PLUGINS removed from the environment)."""
    env = {k: v for k, v in os.environ.items() if k != "BENCH_PLUGINS"}
    proc = subprocess.run([BENCH, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"bench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_installed_plugin_runs_through_ray_and_mlflow(workdir, tmp_path, run_bench, store_args):
    # Build from a copy, so pip's in-tree build leaves nothing in the repository.
    src = tmp_path / "plugin-src"
    shutil.copytree(PLUGIN_DIR, src, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
    _pip("uninstall", "-y", DIST, check=False)  # a previous, interrupted run may have left it installed
    try:
        _pip("install", "--no-deps", "--no-build-isolation", "--no-cache-dir", str(src))
        from importlib.metadata import version

        import tomllib

        expected_version = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())["project"]["version"]
        assert version(DIST) == expected_version

        infos = json.loads(_bench("plugins", "--json", cwd=workdir).stdout)
        info = next((i for i in infos if i["name"] == ENTRY_POINT), None)
        assert info is not None, f"entry point '{ENTRY_POINT}' not among {[i['name'] for i in infos]}"
        assert info["version"] == expected_version
        assert info["source"] == DIST
        assert info["hooks"] == ["register_methods"]
        assert info["registered"] == {"method": [METHOD]}

        listed = _bench("list", "methods", cwd=workdir).stdout
        line = next((ln for ln in listed.splitlines() if ln.split() and ln.split()[0] == METHOD), None)
        assert line is not None, listed
        assert f"[{ENTRY_POINT}]" in line and "Random Labels" in line
        # BENCH_PLUGINS is an allow-list of entry-point or distribution names; empty loads none.
        for allowed, shown in (("", False), (ENTRY_POINT, True), (DIST, True), ("some-other-plugin", False)):
            out = run_bench("list", "methods", cwd=workdir, env={"BENCH_PLUGINS": allowed})
            assert out.returncode == 0, out.stderr
            assert (METHOD in out.stdout) is shown, (allowed, out.stdout)

        # --cpus-per-trial 2: one trial at a time, one Tune worker to start (CPU the suite's other tests need)
        run = _bench("run", "--methods", f"{METHOD},retrain", "--forget", "class:3", "--seeds", "0", "--cpus-per-trial", "2",
                     *store_args(workdir), cwd=workdir)

        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
        runs = mlflow.search_runs(experiment_names=["unlearning-bench"], filter_string="tags.`bench.role` = 'trial'")
        assert sorted(runs["tags.bench.method"]) == sorted([METHOD, "retrain"]), run.stdout
        child = runs[runs["tags.bench.method"] == METHOD].iloc[0]
        assert child["status"] == "FINISHED", child.get("tags.bench.error")
        assert child["tags.mlflow.parentRunId"]
        assert child["params.plugins.example"] == expected_version
        assert child["params.data_access"] == "forget,retain"
        forget, original = child["metrics.forget_acc"], child["metrics.original_forget_acc"]
        print(f"random-labels (Ray): forget_acc={forget:.3f} original_forget_acc={original:.3f} "
              f"retain_acc={child['metrics.retain_acc']:.3f} test_acc={child['metrics.test_acc']:.3f}")
        assert original > 0.95
        assert forget < 0.2 and forget < original - 0.7
        assert child["metrics.retain_acc"] > 0.95
    finally:
        _pip("uninstall", "-y", DIST, check=False)
    from importlib.metadata import PackageNotFoundError

    with pytest.raises(PackageNotFoundError):
        version(DIST)
