"""The plugin system: registration checks, origins, lookups with suggestions and wildcards,
model-name resolution and in-process plugins. Plugins here are small in-process objects;
no test installs anything, and every registry is built fresh unless the test is about the
process-wide one (``get_registry``), which is always restored in ``finally``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

import bench
from bench.core import space
from bench.core.errors import BenchError, PluginError
from bench.core.plugins import (
    build_registry,
    get_registry,
    in_process_plugins,
    make_plugin_manager,
    plugin_infos,
    plugin_versions,
    register_plugin,
    unregister_plugin,
)
from bench.run.validate import resolve_model

BENCH_SCRIPT = shutil.which("bench", path=os.path.dirname(sys.executable)) or "bench"

BUILTIN_METHODS = ["bad-teacher", "be", "bs", "cf-k", "eu-k", "fisher", "ft", "ga", "iu", "l1-sparse", "l2ul", "l2ul-adv",
                   "l2ul-naive", "l2ul-oracle", "lfssd", "neggrad+", "prune", "retrain", "rl", "salun", "salun-soft", "scrub",
                   "sisa", "ssd", "unsir"]
_MISSING = object()


# -- helpers ---------------------------------------------------------------------------------

def make_method(name="mymethod", /, **overrides):
    """A valid method object; an override of ``_MISSING`` removes that attribute."""
    attrs = dict(
        name=name,
        description="A test method.",
        requires=frozenset({"forget"}),
        default_params={"lr": 0.1, "epochs": 2},
        search_space={"lr": space.loguniform(1e-3, 1e-1)},
        unlearn=lambda model, request, params, ctx: model,
    )
    attrs.update(overrides)
    return SimpleNamespace(**{k: v for k, v in attrs.items() if v is not _MISSING})


def make_object(kind, name, /, **overrides):
    """A valid dataset, model or attack object."""
    if kind == "method":
        return make_method(name, **overrides)
    call = {"dataset": "load", "model": "create", "attack": "evaluate"}[kind]
    attrs = {"name": name, "description": f"A test {kind}.", call: lambda *a, **k: None}
    attrs.update(overrides)
    return SimpleNamespace(**{k: v for k, v in attrs.items() if v is not _MISSING})


def _hook(objs, error=None):
    @bench.hookimpl
    def hook(register):
        if error is not None:
            raise error
        for obj in objs:
            register(obj)

    return hook


def make_plugin(name, version=None, error=None, **by_kind):
    """A plugin object named ``name`` implementing ``register_<kind>s`` for each keyword given
    (``methods=[...]``, ``datasets=[...]``, ...). pluggy names a plugin by its ``__name__``."""
    hooks = {f"register_{kind}": _hook(objs, error) for kind, objs in by_kind.items()}
    return SimpleNamespace(__name__=name, __version__=version, **hooks)


class DuplicateGA:
    """A plugin written as a class, as a third party would: it registers ``ga`` again."""

    __name__ = "dup-plugin"

    @bench.hookimpl
    def register_methods(self, register):
        register(make_method("ga"))


def build(*plugins):
    return build_registry(make_plugin_manager(extra_plugins=plugins))


@pytest.fixture(scope="module")
def builtin():
    """A registry of the built-in plugins only (conftest sets BENCH_PLUGINS='')."""
    return build()[0]


# -- registration ----------------------------------------------------------------------------

def test_builtin_entries_record_their_origin(builtin):
    assert builtin.names("method") == BUILTIN_METHODS
    for name in BUILTIN_METHODS:
        assert builtin.entry("method", name).origin == "bench.methods"
    assert builtin.entry("method", "ft").origin == "bench.methods"
    assert builtin.entry("dataset", "digits").origin == "bench.datasets"
    assert builtin.entry("dataset", "synthetic").origin == "bench.datasets"
    for name in ("mlp", "cnn", "timm"):
        assert builtin.entry("model", name).origin == "bench.nn.models"
    assert builtin.entry("method", "ga").description.startswith("Gradient ascent")


def test_plugin_infos_list_hooks_and_registered_names():
    plugin = make_plugin("infoplugin", version="1.2.3", methods=[make_method("m1"), make_method("m0")],
                         datasets=[make_object("dataset", "d1")])
    registry, infos = build(plugin)
    by_name = {i.name: i for i in infos}

    methods = by_name["bench.methods"]
    assert methods.source == "builtin"
    assert methods.version == bench.__version__
    assert methods.hooks == ["register_methods"]
    assert methods.registered == {"method": BUILTIN_METHODS}
    assert by_name["bench.datasets"].registered == {"dataset": ["cifar10", "cifar100", "csv", "digits", "fashion-mnist", "imagefolder", "kmnist", "mnist", "mnist1d", "purchase100", "purchase20", "svhn", "synthetic", "texas100"]}
    assert by_name["bench.nn.models"].registered == {"model": ["cnn", "mlp", "resnet18-cifar", "timm"]}

    mine = by_name["infoplugin"]
    assert mine.source == "registered in process"
    assert mine.version == "1.2.3"
    assert sorted(mine.hooks) == ["register_datasets", "register_methods"]
    assert mine.registered == {"method": ["m0", "m1"], "dataset": ["d1"]}
    # built-ins first, then the others
    assert [i.source == "builtin" for i in infos] == sorted((i.source == "builtin" for i in infos), reverse=True)
    assert registry.entry("method", "m1").origin == "infoplugin"
    assert registry.entry("dataset", "d1").origin == "infoplugin"


def test_duplicate_method_name_names_both_plugins():
    with pytest.raises(PluginError) as exc:
        build(DuplicateGA())
    msg = str(exc.value)
    assert "Duplicate method name 'ga'" in msg
    assert "'bench.methods'" in msg and "'dup-plugin'" in msg
    assert msg.index("bench.methods") < msg.index("dup-plugin")  # the first registrant, then the newcomer


def test_duplicate_name_within_one_plugin():
    with pytest.raises(PluginError, match="Duplicate method name 'twice'.*'selfdup'.*'selfdup'"):
        build(make_plugin("selfdup", methods=[make_method("twice"), make_method("twice")]))


def test_same_name_in_different_kinds_is_allowed():
    registry, _ = build(make_plugin("kinds", datasets=[make_object("dataset", "ga")]))
    assert registry.entry("dataset", "ga").origin == "kinds"
    assert registry.entry("method", "ga").origin == "bench.methods"


@pytest.mark.parametrize("attr", ["name", "description", "requires", "default_params", "search_space", "unlearn"])
def test_method_missing_attribute(attr):
    with pytest.raises(PluginError) as exc:
        build(make_plugin("lacking", methods=[make_method("partial", **{attr: _MISSING})]))
    msg = str(exc.value)
    assert "Plugin 'lacking'" in msg
    assert f"without {attr}" in msg
    assert "bench.core.contracts" in msg


@pytest.mark.parametrize("kind, attr", [
    ("dataset", "load"), ("dataset", "description"), ("model", "create"), ("model", "name"), ("attack", "evaluate"),
])
def test_other_kinds_missing_attribute(kind, attr):
    with pytest.raises(PluginError) as exc:
        build(make_plugin("lacking", **{f"{kind}s": [make_object(kind, "thing", **{attr: _MISSING})]}))
    msg = str(exc.value)
    assert f"Plugin 'lacking' registered a {kind}" in msg and f"without {attr}" in msg


def test_method_missing_several_attributes_lists_them_all():
    obj = SimpleNamespace(name="bare")
    with pytest.raises(PluginError, match="without description, requires, default_params, search_space, unlearn"):
        build(make_plugin("lacking", methods=[obj]))


@pytest.mark.parametrize("kind, call", [("method", "unlearn"), ("dataset", "load"), ("model", "create"), ("attack", "evaluate")])
def test_non_callable_entry_point(kind, call):
    with pytest.raises(PluginError) as exc:
        build(make_plugin("notcallable", **{f"{kind}s": [make_object(kind, "thing", **{call: "not a function"})]}))
    msg = str(exc.value)
    assert "Plugin 'notcallable'" in msg and "'thing'" in msg and f"whose {call} is not callable" in msg


@pytest.mark.parametrize("name", ["my method", "a,b", "ns:m", "m*", "m?", "m[1]", "", 5, None])
def test_invalid_names(name):
    with pytest.raises(PluginError) as exc:
        build(make_plugin("badname", methods=[make_method(name)]))
    msg = str(exc.value)
    assert "Plugin 'badname'" in msg
    assert f"invalid name {name!r}" in msg
    assert "no spaces, commas, colons or wildcard characters" in msg


def test_invalid_name_of_a_model():
    with pytest.raises(PluginError, match=r"registered a model with the invalid name 'timm:x'"):
        build(make_plugin("badname", models=[make_object("model", "timm:x")]))


def test_search_space_over_unknown_parameter():
    obj = make_method("spacey", search_space={"lr": space.uniform(0.0, 1.0), "momentum": space.uniform(0.0, 1.0)})
    with pytest.raises(PluginError) as exc:
        build(make_plugin("spaceplugin", methods=[obj]))
    msg = str(exc.value)
    assert "Plugin 'spaceplugin'" in msg and "'spacey'" in msg
    assert "search space over ['momentum']" in msg
    assert "default_params ['epochs', 'lr']" in msg


@pytest.mark.parametrize("requires", [frozenset({"forget", "test"}), ("labels",), ["retain", "model", "test"]])
def test_requires_beyond_data_access(requires):
    with pytest.raises(PluginError) as exc:
        build(make_plugin("greedy", methods=[make_method("peek", requires=requires)]))
    msg = str(exc.value)
    unknown = sorted(set(requires) - {"forget", "retain", "recipe"})
    assert "Plugin 'greedy'" in msg and "'peek'" in msg
    assert f"requiring {unknown}" in msg
    assert "may require only forget, retain, recipe" in msg


@pytest.mark.parametrize("requires", [frozenset(), frozenset({"forget", "retain", "recipe"}), ("retain",)])
def test_valid_requires(requires):
    registry, _ = build(make_plugin("fine", methods=[make_method("okay", requires=requires)]))
    assert registry.get("method", "okay").requires == requires


def test_hook_raising_plain_exception_names_the_plugin():
    with pytest.raises(PluginError) as exc:
        build(make_plugin("broken", error=RuntimeError("boom"), methods=[]))
    msg = str(exc.value)
    assert msg == "Plugin 'broken' failed in register_methods: RuntimeError: boom"
    assert isinstance(exc.value.__cause__, RuntimeError)
    assert isinstance(exc.value, BenchError)  # so the CLI prints it as "Error: ..." with exit code 2


def test_hook_raising_import_error_names_the_plugin():
    with pytest.raises(PluginError, match=r"Plugin 'needsdeps' failed in register_models: ModuleNotFoundError: .*nonexistent"):
        build(make_plugin("needsdeps", error=ModuleNotFoundError("No module named 'nonexistent'"), models=[]))


def test_hook_raising_plugin_error_passes_through_unchanged():
    err = PluginError("my own words")
    with pytest.raises(PluginError) as exc:
        build(make_plugin("explicit", error=err, attacks=[]))
    assert exc.value is err


def test_hookimpl_with_wrong_argument_is_a_plugin_error():
    """A hook implementation with a misspelt argument must be reported as a plugin error (a
    message without traceback), not as pluggy's own PluginValidationError."""

    class WrongArgs:
        __name__ = "wrongargs"

        @bench.hookimpl
        def register_methods(self, reg):  # the spec's argument is `register`
            pass

    with pytest.raises(PluginError, match="wrongargs"):
        build(WrongArgs())


def test_misspelt_hook_name_is_a_plugin_error():
    """``register_method`` (singular) matches no hook spec: the plugin would silently register
    nothing. pluggy reports it with ``PluginManager.check_pending()``."""

    class Misspelt:
        __name__ = "misspelt"

        @bench.hookimpl
        def register_method(self, register):
            register(make_method("lost"))

    with pytest.raises(PluginError, match="misspelt.*register_method"):
        build(Misspelt())


# -- lookup ----------------------------------------------------------------------------------

def test_unknown_name_suggests_close_matches(builtin):
    with pytest.raises(BenchError) as exc:
        builtin.entry("method", "retrian")
    assert str(exc.value) == f"Unknown method 'retrian'. Did you mean: retrain? Available methods: {', '.join(BUILTIN_METHODS)}."


def test_unknown_name_without_close_match_lists_available(builtin):
    with pytest.raises(BenchError) as exc:
        builtin.get("method", "xyzzy")
    msg = str(exc.value)
    assert msg.startswith("Unknown method 'xyzzy'.")
    assert "Did you mean" not in msg
    assert f"Available methods: {', '.join(BUILTIN_METHODS)}." in msg


def test_unknown_dataset_and_attack(builtin):
    with pytest.raises(BenchError, match=r"Unknown dataset 'digitz'\. Did you mean: digits\? Available datasets: cifar10, cifar100, csv, digits, .*, synthetic, texas100\."):
        builtin.entry("dataset", "digitz")
    with pytest.raises(BenchError, match=r"Unknown attack 'mia'\. Did you mean: rmia\? Available attacks: .*loss.*\."):
        builtin.entry("attack", "mia")


def test_unknown_model_mentions_model_families(builtin):
    with pytest.raises(BenchError) as exc:
        builtin.entry("model", "mlpp")
    msg = str(exc.value)
    assert "Unknown model 'mlpp'. Did you mean: mlp?" in msg
    assert "Available models: cnn, mlp, resnet18-cifar, timm." in msg
    assert "Model families that resolve further names: timm" in msg


@pytest.mark.parametrize("patterns, expected", [
    ("r*,ft", ["retrain", "rl", "ft"]),
    ("ft,ga", ["ft", "ga"]),
    ("ga,ft", ["ga", "ft"]),
    (" ft , ga ", ["ft", "ga"]),
    ("ft,ft", ["ft"]),
    ("g*,ga,ft,f?", ["ga", "ft"]),
    ("*", BUILTIN_METHODS),
    ("*,ft", BUILTIN_METHODS),
    ("[fg]*", [m for m in BUILTIN_METHODS if m[0] in "fg"]),
    ("ft,,ga,", ["ft", "ga"]),
    (["ga", "r*"], ["ga", "retrain", "rl"]),
])
def test_resolve_names_and_wildcards(builtin, patterns, expected):
    assert builtin.resolve("method", patterns) == expected


def test_resolve_wildcard_matching_nothing(builtin):
    with pytest.raises(BenchError) as exc:
        builtin.resolve("method", "ft,z*")
    assert str(exc.value) == f"No method matches 'z*'. Available methods: {', '.join(BUILTIN_METHODS)}."


def test_resolve_unknown_name_among_known(builtin):
    with pytest.raises(BenchError, match=r"Unknown method 'retrian'\. Did you mean: retrain\?"):
        builtin.resolve("method", "ft,retrian,ga")


@pytest.mark.parametrize("patterns", ["", ",", " , "])
def test_resolve_nothing_given(builtin, patterns):
    with pytest.raises(BenchError, match=rf"No method given\. Available methods: {re.escape(', '.join(BUILTIN_METHODS))}\."):
        builtin.resolve("method", patterns)


def test_resolve_sees_plugin_methods():
    registry, _ = build(make_plugin("more", methods=[make_method("rand-labels"), make_method("scrubber")]))
    assert registry.resolve("method", "r*") == ["rand-labels", "retrain", "rl"]
    assert registry.resolve("method", "sc*,ga") == ["scrub", "scrubber", "ga"]


# -- model specs -----------------------------------------------------------------------------

@pytest.mark.parametrize("spec, name, arg", [
    ("mlp", "mlp", None),
    ("mlp:128", "mlp", "128"),
    ("mlp:256,256", "mlp", "256,256"),
    ("cnn", "cnn", None),
    ("cnn:16,32", "cnn", "16,32"),
    ("timm:resnet18", "timm", "resnet18"),
])
def test_resolve_model_registered_names(builtin, spec, name, arg):
    obj, got_arg, origin = resolve_model(builtin, spec)
    assert (obj.name, got_arg, origin) == (name, arg, "bench.nn.models")


def test_resolve_model_timm_family(builtin):
    obj, arg, origin = resolve_model(builtin, "test_resnet")
    assert (obj.name, arg, origin) == ("timm", "test_resnet", "bench.nn.models")


@pytest.mark.parametrize("spec", ["mlpp", "mlpp:128", "cnm"])
def test_resolve_model_unknown(builtin, spec):
    with pytest.raises(BenchError) as exc:
        resolve_model(builtin, spec)
    msg = str(exc.value)
    assert f"Unknown model '{spec.partition(':')[0]}'." in msg
    assert "Did you mean:" in msg
    assert "Available models: cnn, mlp, resnet18-cifar, timm." in msg


def test_resolve_model_from_plugin():
    model = make_object("model", "tiny")
    registry, _ = build(make_plugin("models-plugin", models=[model]))
    assert resolve_model(registry, "tiny:3") == (model, "3", "models-plugin")


# -- in-process plugins and the process-wide registry ----------------------------------------

def test_register_and_unregister_in_process_plugin():
    plugin = make_plugin("inproc", version="0.0.1", methods=[make_method("inproc-method")])
    assert "inproc-method" not in get_registry().names("method")
    register_plugin(plugin)
    try:
        assert plugin in in_process_plugins()
        registry = get_registry()
        assert "inproc-method" in registry.names("method")
        assert registry.entry("method", "inproc-method").origin == "inproc"
        assert registry.resolve("method", "inproc-*") == ["inproc-method"]
        info = next(i for i in plugin_infos() if i.name == "inproc")
        assert (info.source, info.version, info.registered) == ("registered in process", "0.0.1", {"method": ["inproc-method"]})
    finally:
        unregister_plugin(plugin)
    assert plugin not in in_process_plugins()
    assert "inproc-method" not in get_registry().names("method")
    assert "inproc" not in {i.name for i in plugin_infos()}


def test_an_in_process_plugin_without_a_version_is_recorded_by_its_package_or_as_unversioned():
    """Its version was recorded with every run as the text "None" (plugins2 audit, 2026-12-07)."""
    import types

    import pluggy

    from bench.core.plugins import _in_process_version

    assert _in_process_version(make_plugin("x")) == "unversioned"
    assert _in_process_version(make_plugin("x", version="2.0")) == "2.0"
    module = types.ModuleType("mine_only_here")
    module.__version__ = "0.3"
    assert _in_process_version(module) == "0.3"
    shipped = f"{pluggy.__version__} (pluggy)"  # a plugin object whose code is an installed distribution's
    assert _in_process_version(types.ModuleType("pluggy.not_loaded")) == shipped
    in_pluggy = type("InPluggy", (), {"__module__": "pluggy._hooks"})
    assert _in_process_version(in_pluggy()) == _in_process_version(in_pluggy) == shipped
    register_plugin(plugin := make_plugin("unversioned-inproc", methods=[make_method("unversioned-method")]))
    try:
        assert plugin_versions()["unversioned-inproc"] == "unversioned"
    finally:
        unregister_plugin(plugin)


def test_registering_the_same_plugin_twice_changes_nothing():
    """A notebook cell run twice (or two snippets registering one module) broke every later
    registry call with pluggy's "already registered under a different name"."""
    plugin = make_plugin("inproc-twice", methods=[make_method("twice-method")])
    register_plugin(plugin)
    register_plugin(plugin)
    try:
        assert in_process_plugins().count(plugin) == 1
        assert "twice-method" in get_registry().names("method")
    finally:
        unregister_plugin(plugin)
    assert "twice-method" not in get_registry().names("method")
    unregister_plugin(plugin)  # not registered: nothing to do


def test_broken_in_process_plugin_then_recovery():
    plugin = make_plugin("inproc-broken", error=ValueError("bad config"), datasets=[])
    register_plugin(plugin)
    try:
        with pytest.raises(PluginError, match=r"Plugin 'inproc-broken' failed in register_datasets: ValueError: bad config"):
            get_registry()
    finally:
        unregister_plugin(plugin)
    assert get_registry().names("method") == BUILTIN_METHODS  # the failure was not cached


class _InstancePlugin:
    """A plugin object (not a module): pluggy would name it by its id."""

    @bench.hookimpl
    def register_methods(self, register):
        register(make_method("ga"))


def test_an_in_process_plugin_object_is_named_by_its_class():
    first, second = _InstancePlugin(), _InstancePlugin()
    register_plugin(first)
    try:
        with pytest.raises(PluginError) as exc:
            get_registry()
        assert "plugin 'tests.test_registry._InstancePlugin'" in str(exc.value), str(exc.value)
        assert not re.search(r"'\d{6,}'", str(exc.value))
        register_plugin(second)  # two of one class: both load, told apart
        from bench.core.plugins import make_plugin_manager

        names = [name for name, _ in make_plugin_manager((first, second)).list_name_plugin()]
        assert {"tests.test_registry._InstancePlugin", "tests.test_registry._InstancePlugin#2"} <= set(names)
    finally:
        for p in (first, second):
            if p in in_process_plugins():
                unregister_plugin(p)


def test_in_process_duplicate_of_builtin():
    plugin = DuplicateGA()
    register_plugin(plugin)
    try:
        with pytest.raises(PluginError, match=r"'bench\.methods' and again by plugin 'dup-plugin'"):
            get_registry()
    finally:
        unregister_plugin(plugin)
    assert get_registry().entry("method", "ga").origin == "bench.methods"


def test_an_unknown_bench_plugins_name_is_said(monkeypatch, capsys):
    """A misspelt BENCH_PLUGINS entry loaded nothing without a word (the plugin's methods then
    'unknown'); now one warning line names it and what is installed."""
    from bench.core.plugins import make_plugin_manager

    monkeypatch.setenv("BENCH_PLUGINS", "nosuch-plugin")
    make_plugin_manager()
    err = capsys.readouterr().err
    assert "warning: BENCH_PLUGINS names 'nosuch-plugin', which no installed plugin has" in err
    monkeypatch.setenv("BENCH_PLUGINS", "")  # the empty allow-list (built-ins only) says nothing
    make_plugin_manager()
    assert capsys.readouterr().err == ""


def test_an_installed_plugin_that_fails_to_import_is_one_line_naming_it(tmp_path, run_bench):
    """A plugin whose module raises on import broke every command, with a raw traceback (exit 1),
    whatever the command used; now one line naming it and how to run without it (exit 2)."""
    dist = tmp_path / "broken_plug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bench]\nbroken = broken_plug_mod\n")
    (tmp_path / "broken_plug_mod.py").write_text("import no_such_module_here\n")
    env = {"PYTHONPATH": str(tmp_path), "BENCH_PLUGINS": None}
    env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    proc = subprocess.run([BENCH_SCRIPT, "list", "methods"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert ("Plugin 'broken' (broken_plug_mod, distribution broken-plug) failed to import: ModuleNotFoundError: No "
            "module named 'no_such_module_here'. Fix or uninstall it (pip uninstall broken-plug); to run without it"
            in proc.stderr), proc.stderr
    alone = subprocess.run([BENCH_SCRIPT, "list", "methods"], env={**env, "BENCH_PLUGINS": ""}, capture_output=True,
                           text=True, timeout=120)
    assert alone.returncode == 0 and "retrain" in alone.stdout, alone.stderr


def test_a_class_registered_instead_of_an_instance_is_named():
    """register(MyMethod) was accepted, listed by bench plugins, and failed bench run with a
    46-line TypeError (its methods lacked self)."""
    cls = type("ClassReg", (), {"name": "classreg", "description": "d", "requires": frozenset({"forget"}),
                                "default_params": {}, "search_space": {}, "unlearn": lambda self, *a: None})
    with pytest.raises(PluginError, match=r"Plugin 'classy' registered the class ClassReg as a method; register an "
                                          r"instance: register\(ClassReg\(\)\)"):
        build(make_plugin("classy", methods=[cls]))


def test_a_method_without_search_space_is_named_with_the_fix():
    obj = SimpleNamespace(name="nobase", description="d", requires=frozenset({"forget"}), default_params={},
                          unlearn=lambda *a: None)
    with pytest.raises(PluginError, match=r"registered a method 'nobase' without search_space \(an empty "
                                          r"search_space = \{\} when it has none, or subclass bench.Method\)"):
        build(make_plugin("lacking", methods=[obj]))
