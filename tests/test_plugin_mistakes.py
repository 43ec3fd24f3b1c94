"""Plugin authors' mistakes found by following the docs: each one line naming the plugin, before
any work (an auditor's walk through docs/plugins.md, 2026-12-06)."""

from __future__ import annotations

import threading

import pytest

import bench


class _Locky(bench.Method):
    """Keeps a lock on itself: fine in process, but Ray pickles every method into its workers."""

    name = "locky"
    description = "test method holding a threading.Lock"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def __init__(self):
        self.lock = threading.Lock()

    def unlearn(self, model, request, params, ctx):
        return model


class _LockyPlugin:
    @bench.hookimpl
    def register_methods(self, register):
        register(_Locky())


def test_an_unpicklable_method_is_refused_before_work_under_ray_only(tmp_path, invoke_bench, plugged):
    """Under Ray it stopped the whole run in the object store (a 112-line traceback, exit 1, the
    other methods not run), after the references were trained."""
    store = ("--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--cache-dir", str(tmp_path / "cache"))
    with plugged(_LockyPlugin()):
        ray = invoke_bench("run", "-m", "locky,ft", "--dry-run", *store)
        local = invoke_bench("run", "-m", "locky,ft", "--dry-run", "--executor", "local", *store)
    assert ray.returncode == 2, ray.stdout + ray.stderr
    assert ("Method 'locky' of plugin " in ray.stderr and "cannot be sent to Ray's workers: pickling it failed "
            "(TypeError: cannot pickle '_thread.lock' object)" in ray.stderr and "--executor local" in ray.stderr)
    assert len(ray.stderr.strip().splitlines()) == 1 and "Traceback" not in ray.stdout + ray.stderr
    assert local.returncode == 0, local.stdout + local.stderr


class _NoMarker:
    def register_methods(self, register):  # no @bench.hookimpl: pluggy does not see it
        register(_Locky())


class _Typo:
    @bench.hookimpl
    def register_method(self, register):  # "register_methods"
        pass


def test_a_plugin_whose_hooks_lack_the_marker_is_warned_about(capsys):
    """It registered nothing without a word; its method was then only an "Unknown method"."""
    from bench.core.plugins import make_plugin_manager

    make_plugin_manager((_NoMarker(),))
    err = capsys.readouterr().err
    assert "implements no bench hook, so it registers nothing: its register_methods lacks the @bench.hookimpl " \
           "decorator" in err and "_NoMarker" in err
    make_plugin_manager(())
    assert "implements no bench hook" not in capsys.readouterr().err  # the built-ins and a clean set: no word


def test_a_misspelt_hook_names_the_plugin_and_the_way_out():
    import pytest

    from bench.core.errors import PluginError
    from bench.core.plugins import make_plugin_manager

    with pytest.raises(PluginError, match=r"Plugin '.*_Typo' implements the unknown hook 'register_method' \(a misspelt "
                                          r"hook name\? valid hooks: register_methods, .*BENCH_PLUGINS=NAME"):
        make_plugin_manager((_Typo(),))


def test_bench_plugins_lists_what_is_installed_when_a_plugin_breaks_loading(invoke_bench, monkeypatch):
    """It stopped with the one error line too: the command a user reaches for to see what is installed."""
    from importlib.metadata import EntryPoint

    import bench.core.plugins as plugins
    from bench.core.errors import PluginError

    def broken():
        raise PluginError("Plugin 'bad' (bad_mod, distribution bad-dist) failed to import: ImportError: nope.")

    monkeypatch.setattr(plugins, "plugin_infos", broken)
    monkeypatch.setattr("importlib.metadata.entry_points",
                        lambda group: [EntryPoint("bad", "bad_mod", "bench"), EntryPoint("good", "good_mod", "bench")])
    got = invoke_bench("plugins")
    assert got.returncode == 2, got.stderr
    lines = got.stderr.splitlines()
    assert lines[0] == "Error: Plugin 'bad' (bad_mod, distribution bad-dist) failed to import: ImportError: nope."
    assert lines[1:] == ["installed entry points of the group 'bench' (not loaded): 2", "  bad = bad_mod", "  good = good_mod"]


class _HalfMarked:
    @bench.hookimpl
    def register_methods(self, register):
        register(_Locky())

    def register_attacks(self, register):  # the marker forgotten on this one
        pass


class _WrongParameter:
    @bench.hookimpl
    def register_methods(self, reg):  # pluggy passes `register` only
        pass


class _Returns:
    @bench.hookimpl
    def register_methods(self, register):
        return [_Locky()]  # returned, never registered


def test_a_hook_without_the_marker_beside_a_marked_one_is_warned_about(capsys):
    """One hook decorated and one not: the first's objects were registered, the second's were not,
    without a word (the warning covered only a plugin with no hook at all; found in review)."""
    from bench.core.plugins import make_plugin_manager

    make_plugin_manager((_HalfMarked(),))
    err = capsys.readouterr().err
    assert "_HalfMarked" in err and "its register_attacks lacks the @bench.hookimpl decorator, so what it registers is " \
                                    "not registered (its other hooks are)" in err, err


def test_a_hook_with_another_parameter_name_is_one_line_saying_what_to_write():
    """pluggy's three lines ("hookimpl definition: register_methods(reg) / Argument(s) {'reg'} are
    declared in the hookimpl but can not be found in the hookspec")."""
    import pytest

    from bench.core.errors import PluginError
    from bench.core.plugins import make_plugin_manager

    with pytest.raises(PluginError) as info:
        make_plugin_manager((_WrongParameter(),))
    text = str(info.value)
    assert "\n" not in text and "its hook register_methods(reg) takes {'reg'}, which bench does not pass; write def " \
                               "register_methods(register)" in text, text


def test_a_hook_that_returns_its_objects_is_warned_about(capsys):
    from bench.core.plugins import build_registry, make_plugin_manager

    registry, _ = build_registry(make_plugin_manager((_Returns(),)))
    assert "locky" not in registry.names("method")
    err = capsys.readouterr().err
    assert "register_methods returned list and registered nothing; the hook calls register(obj)" in err, err


class _NumpyDefaults(bench.Method):
    """Defaults written as NumPy scalars (np.float32(0.01), as a config read with NumPy gives)."""

    name = "numpy-defaults"
    description = "test method with NumPy-scalar defaults"
    requires = frozenset({"forget"})
    search_space: dict = {}

    def __init__(self):
        import numpy as np

        self.default_params = {"lr": np.float32(0.01), "epochs": np.int64(2)}

    def check_params(self, params):
        from bench.core.params import require_int, require_range

        require_range(params, "lr", 0.0, 1.0, low_open=True)
        require_int(params, "epochs", 1)

    def unlearn(self, model, request, params, ctx):
        return model


class _NumpyPlugin:
    @bench.hookimpl
    def register_methods(self, register):
        register(_NumpyDefaults())


@pytest.mark.slow  # two dry runs
def test_numpy_scalar_defaults_are_read_as_the_numbers_they_hold(tmp_path, invoke_bench, plugged):
    """The default itself was refused ("lr=np.float32(0.01): expected a number in (0.0, 1.0]") and
    -p numpy-defaults.lr=0.05 was "not a number" (found in review): bench reads them as Python numbers."""
    store = ("--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--cache-dir", str(tmp_path / "cache"))
    with plugged(_NumpyPlugin()):
        plain = invoke_bench("run", "-m", "numpy-defaults", "--dry-run", "--executor", "local", *store)
        given = invoke_bench("run", "-m", "numpy-defaults", "-p", "numpy-defaults.lr=0.05", "-p",
                             "numpy-defaults.epochs=3", "--dry-run", "--executor", "local", *store)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert given.returncode == 0 and "lr=0.05" in given.stdout and "epochs=3" in given.stdout, given.stdout + given.stderr


class _Resnet18:
    name = "resnet18"
    description = "a plugin's own resnet18 (tests/test_plugin_mistakes.py)"

    def create(self, num_classes, input_shape, arg=None):
        import math

        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


class _Resnet18Plugin:
    @bench.hookimpl
    def register_models(self, register):
        register(_Resnet18())


def test_a_plugin_model_over_a_timm_name_is_said(tmp_path, invoke_bench, plugged):
    """A plugin's resnet18 took `--model resnet18` from timm without a word (plugins audit)."""
    pytest.importorskip("timm")
    store = ["--cache-dir", str(tmp_path / "c"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    with plugged(_Resnet18Plugin()):
        got = invoke_bench("run", "-m", "ft", "--model", "resnet18", "--dry-run", "--executor", "local", *store)
        plain = invoke_bench("run", "-m", "ft", "--dry-run", "--executor", "local", *store)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "note: model 'resnet18' is plugin " in got.stdout and "timm's model of that name is timm:resnet18" in got.stdout
    assert "note: model" not in plain.stdout
