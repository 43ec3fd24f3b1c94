"""A method's ``check_setting`` sees every setting its trials run on, at plan time (``make_plan`` and
``bench run --dry-run``), once per dataset, model, forget request and parameter set; the built-in
refusals are rows of tests/test_bad_inputs.py."""

from __future__ import annotations

import pytest

import bench
from bench.core.errors import BenchError
from bench.core.method import Method, check_setting
from bench.core.options import RunOptions


class SettingSpy(Method):
    name = "setting-spy"
    description = "records the settings check_setting sees (tests/test_check_setting.py)"
    default_params = {"width": 1}
    seen: list = []

    def check_setting(self, params, setting):
        SettingSpy.seen.append((dict(params), setting))
        if params["width"] > setting.num_classes:
            raise ValueError(f"width={params['width']}: at most the {setting.num_classes} classes of {setting.dataset}")

    def unlearn(self, model, request, params, ctx):  # pragma: no cover - never runs here
        return model


class SpyPlugin:
    @bench.hookimpl
    def register_methods(self, register):
        register(SettingSpy())


@pytest.fixture
def spy():
    from bench.core.plugins import register_plugin, unregister_plugin

    plugin = SpyPlugin()
    register_plugin(plugin)
    SettingSpy.seen = []
    yield SettingSpy
    unregister_plugin(plugin)


def _opts(tmp_path, **kw):
    return RunOptions(executor="local", methods="setting-spy", models=["mlp:16", "mlp:32"],
                      forgets=["random:10%", "class:3"], seeds=[0, 1], cache_dir=str(tmp_path / "cache"),
                      tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", **kw)


def test_check_setting_sees_each_setting_once_with_its_data_and_model(spy, tmp_path):
    from bench.core.plugins import get_registry, plugin_versions
    from bench.run.plan import make_plan
    from bench.track.provenance import package_versions

    plan = make_plan(get_registry(), _opts(tmp_path), package_versions(), plugin_versions())
    assert len(plan.trials) == 8  # 2 models x 2 forget requests x 2 seeds
    got = {(s.model, s.forget): s for _, s in spy.seen}
    assert len(spy.seen) == 4 and len(got) == 4  # the seeds share a setting
    for (model, forget), s in got.items():
        assert (s.dataset, s.train_size, s.num_classes, s.input_shape) == ("digits", 1437, 10, (1, 8, 8))
        assert s.forget_size == (144 if forget == "random:10%" else 146)
        width = int(model.split(":")[1])
        assert sum(p.numel() for p in s.network.parameters()) == 64 * width + width + width * 10 + 10


def test_a_refusal_is_one_line_naming_the_setting_before_any_work(spy, tmp_path):
    from bench.core.plugins import get_registry, plugin_versions
    from bench.run.plan import make_plan
    from bench.track.provenance import package_versions

    opts = _opts(tmp_path, params={"setting-spy": {"width": 11}})
    with pytest.raises(BenchError) as err:
        make_plan(get_registry(), opts, package_versions(), plugin_versions())
    assert str(err.value) == ("Method 'setting-spy' cannot run on digits / mlp:16 / random:10%: width=11: at most the 10 "
                              "classes of digits. Fix it with -p setting-spy.width=VALUE.")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.safetensors"))


def test_the_dry_run_checks_the_settings_too(spy, tmp_path):
    from bench.cli.dry_run import dry_run

    lines = []
    assert dry_run(_opts(tmp_path), echo=lines.append) == 0
    assert {(s.model, s.forget) for _, s in spy.seen} == {(m, f) for m in ("mlp:16", "mlp:32")
                                                         for f in ("random:10%", "class:3")}
    with pytest.raises(BenchError, match=r"cannot run on digits / mlp:16 / random:10%: width=11"):
        dry_run(_opts(tmp_path, params={"setting-spy": {"width": 11}}), echo=lines.append)


def test_objects_without_check_setting_and_type_errors():
    class Bare:
        name = "bare"

    check_setting("bare", Bare(), {}, None)  # nothing to call: accepted

    class Picky(Bare):
        def check_setting(self, params, setting):
            raise TypeError("needs a conv net")

    with pytest.raises(BenchError, match=r"^Method 'picky' cannot run on d / m / f: needs a conv net\. Fix it with its "
                                         r"parameters or the setting\.$"):
        from types import SimpleNamespace

        check_setting("picky", Picky(), {}, SimpleNamespace(dataset="d", model="m", forget="f"))
