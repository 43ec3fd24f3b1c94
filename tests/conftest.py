"""Shared fixtures. Lives in tests/ (no root conftest), with --import-mode=importlib, so the
repository root is never put on sys.path (a top-level ``datasets`` folder must not shadow
Hugging Face's ``datasets`` inside mlflow or ray)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

import bench

# Compiled modules are kept (__pycache__, ignored by git) where the environment says not to write them
# (PYTHONDONTWRITEBYTECODE, set on the machines the suite is timed on): every xdist worker rewrote
# every test module's asserts again (collection 11.5 s instead of 5.8 s) and every `bench` process a
# test starts compiled bench again. The test modules are imported after this file.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# Installed third-party plugins stay out of the tests' registry unless a test asks for them.
os.environ["BENCH_PLUGINS"] = ""
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.pop("RAY_ADDRESS", None)  # the default of --ray-address: the tests start their own Ray or name a head

BENCH = shutil.which("bench", path=os.path.dirname(sys.executable)) or "bench"


def _run_bench(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None, timeout: float = 600):
    """Run the installed ``bench`` console script; returns the CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([BENCH, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def _invoke_bench(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None):
    """Run ``bench`` in this process with click's CliRunner, from ``cwd`` with ``env`` on top of
    os.environ (a None value unsets a variable); returns a CompletedProcess like ``_run_bench``'s.
    An exception the command let escape is appended to stderr as its traceback (exit code 1)."""
    from click.testing import CliRunner

    from bench.cli import main

    previous = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), env=env, prog_name="bench")
    finally:
        os.chdir(previous)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["bench", *args], result.exit_code, result.stdout, stderr)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory with its own cache dir and SQLite MLflow store."""
    (tmp_path / "cache").mkdir()
    return tmp_path


def _store_args(workdir: Path) -> list[str]:
    return ["--cache-dir", str(workdir / "cache"), "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]


# conftest is not importable under --import-mode=importlib: the helpers are fixtures.
@pytest.fixture(scope="session")
def run_bench():
    """``run_bench(*args, cwd=..., env=...)`` runs the installed ``bench`` console script."""
    return _run_bench


@pytest.fixture(scope="session")
def invoke_bench():
    """``invoke_bench(*args, cwd=..., env=...)`` runs ``bench`` in process (CliRunner); same result
    fields as ``run_bench`` (returncode, stdout, stderr), without starting a process."""
    return _invoke_bench


@pytest.fixture(scope="session")
def store_args():
    """``store_args(workdir)`` -> ``--cache-dir``/``--tracking-uri`` arguments inside ``workdir``."""
    return _store_args


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """A reference cache shared by tests that train the same digits references."""
    return tmp_path_factory.mktemp("shared-cache")


def _load_data_files():
    """tests/data_files.py, loaded by path once (test modules cannot import each other)."""
    name = "bench_tests_data_files"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("data_files.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def data_files():
    """tests/data_files.py: writers of small files in the real on-disk formats (MNIST idx, CIFAR
    batches, SVHN .mat, image folders, CSV, .npz) and ``with_checksums``."""
    return _load_data_files()


class Boom:
    """A method that always fails: a failing plugin must fail only its own trial."""

    name = "boom"
    description = "test method that always fails"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        raise RuntimeError("boom: deliberate failure")


class Spins:
    """A method that never returns (a Python loop, as an endless training loop would be; it even
    swallows exceptions): what ``--trial-timeout`` is for. It sleeps 5 ms a turn: a loop that burnt
    a core for the whole timeout cost the suite's other tests that much CPU."""

    name = "spins"
    description = "test method that never returns"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        import time

        n = 0
        while True:
            try:
                time.sleep(0.005)
                n += 1
            except Exception:  # noqa: BLE001  a plugin that swallows errors is stopped all the same
                pass


@pytest.fixture
def spins():
    """An instance of :class:`Spins`, for ``boom_plugin``."""
    return Spins()


class _BoomPlugin:
    def __init__(self, *extra):
        self.objects = (Boom(), *extra)

    @bench.hookimpl
    def register_methods(self, register):
        for obj in self.objects:
            register(obj)


@pytest.fixture
def boom_plugin():
    """``boom_plugin(*extra_methods)`` registers ``boom`` (and the extras) in process until the test ends."""
    from bench.core.plugins import register_plugin, unregister_plugin

    added = []

    def add(*extra):
        plugin = _BoomPlugin(*extra)
        register_plugin(plugin)
        added.append(plugin)
        return plugin

    try:
        yield add
    finally:
        for plugin in added:
            unregister_plugin(plugin)


def _run_harness(workdir: Path, **options):
    """``bench run`` in process with the local executor, the store and (unless ``cache_dir`` is
    given) the cache inside ``workdir``; ``options`` are ``RunOptions`` fields. Returns (exit code,
    printed text)."""
    import io

    from rich.console import Console

    from bench.core.options import RunOptions
    from bench.run.runner import run

    options.setdefault("cache_dir", str(workdir / "cache"))
    opts = RunOptions(executor="local", tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", **options)
    out = io.StringIO()
    code = run(opts, Console(file=out, width=200))
    return code, out.getvalue()


def _trial_runs(workdir: Path):
    """The child (trial) runs of ``workdir``'s store as a DataFrame, indexed by method name."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["unlearning-bench"])
    return df[df["tags.bench.role"] == "trial"].set_index("tags.bench.method", drop=False)


@contextlib.contextmanager
def _plugged(plugin):
    from bench.core.plugins import register_plugin, unregister_plugin

    register_plugin(plugin)
    try:
        yield plugin
    finally:
        unregister_plugin(plugin)


@pytest.fixture(scope="session")
def plugged():
    """``with plugged(plugin):`` registers ``plugin`` in process for the block (then unregisters it)."""
    return _plugged


@pytest.fixture(scope="session")
def run_harness():
    """``run_harness(workdir, **RunOptions fields)`` -> (exit code, output): ``bench run`` in process."""
    return _run_harness


@pytest.fixture(scope="session")
def trial_runs():
    """``trial_runs(workdir)`` -> the trial runs of ``workdir``'s MLflow store, indexed by method."""
    return _trial_runs


#: The baselines whose harness tests share one run per forget request (tests/test_rl_salun.py,
#: test_l1_iu.py, test_boundary.py, test_last_k.py, test_scrub_bad_teacher.py, test_ssd_unsir.py).
BASELINES = ("rl", "salun", "salun-soft", "l1-sparse", "iu", "bs", "be", "scrub", "bad-teacher", "ssd", "lfssd", "unsir",
             "cf-k", "eu-k", "neggrad+")


@pytest.fixture(scope="session")
def baseline_trials(tmp_path_factory):
    """``baseline_trials(forget, attacks=None)`` -> (exit code, output, trial runs indexed by method):
    one in-process ``bench run`` on digits, seed 0, of every baseline that takes ``forget`` (unsir
    takes class requests only), with the default attacks unless ``attacks`` is given. Made once per
    (forget, attacks) for the whole session, on one reference cache: each trial is seeded on its
    own, so a method's numbers are those of a run of that method alone. The default request with the
    default attacks (``random:10%``) runs every built-in method (``--methods '*'``), so that
    tests/test_all_methods.py checks the same run instead of a second one."""
    cache = tmp_path_factory.mktemp("baselines-cache")
    done: dict = {}

    def get(forget: str, attacks: str | None = None):
        if (forget, attacks) not in done:
            workdir = tmp_path_factory.mktemp("baselines")
            methods = [m for m in BASELINES if m != "unsir" or forget.startswith("class:")]
            extra = {} if attacks is None else {"attacks": attacks}
            if forget == "random:10%" and attacks is None:
                methods = ["*"]
                # L2UL is instance-wise (docs/l2ul.md, "The default request"): on 144 points l2ul, l2ul-adv
                # and l2ul-oracle reach their goal in 16 s, 47 s and 24 s (one thread); the table needs a
                # finished trial of each, not the goal: 20 epochs (60 for the oracle) here
                extra["params"] = {"l2ul": {"max_epochs": 20}, "l2ul-adv": {"max_epochs": 20},
                                   "l2ul-oracle": {"max_epochs": 60}}
            code, out = _run_harness(workdir, methods=",".join(methods), forgets=[forget], seeds=[0], cache_dir=str(cache),
                                     **extra)
            done[(forget, attacks)] = (code, out, _trial_runs(workdir))
        return done[(forget, attacks)]

    return get
