"""The documentation documents what exists (the CI command, every hook, every CLI subcommand, every
metric), its plugin examples work, and no file a user receives points into a folder they do not have."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import bench.core.hookspecs as hookspecs
from bench.cli import main
from bench.eval.evaluation import ACCURACIES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PLUGINS_DOC = ROOT / "docs" / "plugins.md"


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [l for l in (ROOT / ".ci/run").read_text().splitlines() if l and not l.startswith(("#", "set ", "cd "))]
    assert len(ci_lines) == 1
    assert f"```bash\n{ci_lines[0]}\n```" in README


def test_every_hook_is_documented_with_its_signature():
    hooks = [n for n in dir(hookspecs) if n.startswith("register_")]
    assert len(hooks) == 4
    guide = PLUGINS_DOC.read_text()
    for name in hooks:
        assert re.search(rf"^#+ `{name}\(register\)`$", guide, re.M), name
    assert "(docs/plugins.md)" in README  # the README's plugin section links the guide


def test_every_cli_command_is_documented():
    for name in main.commands:
        assert re.search(rf"### `bench {name}\b", README), name


def test_metric_names_are_documented():
    names = [*ACCURACIES, "avg_gap", "js_to_retrain_forget", "js_to_retrain_test", "unlearn_seconds",
             "speedup_vs_retrain", "peak_memory_mb", "retain_gap", "forget_gap", "test_gap"]
    for name in names:
        assert f"`{name}`" in README, name


# -- the plugin guide's examples run ---------------------------------------------------------

#: A python block of docs/plugins.md whose first line is ``# NAME.py`` is a complete plugin module.
_EXAMPLE = re.compile(r"```python\n# (\w+)\.py\n(.*?)```", re.S)


def _guide_examples() -> dict[str, str]:
    return {name: f"# {name}.py\n{body}" for name, body in _EXAMPLE.findall(PLUGINS_DOC.read_text())}


def test_plugin_guide_has_a_method_and_a_dataset_example():
    examples = _guide_examples()
    assert {"my_method", "my_dataset"} <= set(examples), sorted(examples)
    for name, source in examples.items():
        compile(source, f"docs/plugins.md:{name}.py", "exec")


@pytest.mark.parametrize("name", sorted(_guide_examples()))
def test_plugin_guide_example_registers_and_passes_the_conformance_kit(name):
    """Each example module of docs/plugins.md, loaded as a module and registered in process, is
    accepted by the registry, and every object it registers passes bench.testing's checks."""
    from bench.core.plugins import get_registry, plugin_infos, register_plugin, unregister_plugin
    from bench.testing import check_attack, check_dataset, check_method, check_model

    assert name not in sys.modules, f"an example's module name {name!r} shadows an installed module"
    module = types.ModuleType(name)
    module.__file__ = str(PLUGINS_DOC)
    sys.modules[name] = module  # pickle (the kit checks methods and attacks survive it) finds classes here
    try:
        exec(compile(_guide_examples()[name], f"docs/plugins.md:{name}.py", "exec"), module.__dict__)
        register_plugin(module)
        try:
            registry = get_registry()
            registered = next(i.registered for i in plugin_infos() if i.name == name or i.name.endswith(name))
            assert registered, f"{name} registered nothing"
            for kind, names in registered.items():
                for obj_name in names:
                    obj = registry.get(kind, obj_name)
                    if kind == "method":
                        check_method(obj, collect=True)
                    elif kind == "dataset":
                        check_dataset(obj, collect=True)
                        check_dataset(obj, "n=500", collect=True)
                    elif kind == "attack":
                        check_attack(obj, collect=True)
                    else:
                        check_model(obj, collect=True)
        finally:
            unregister_plugin(module)
    finally:
        del sys.modules[name]


def test_dataset_example_refuses_bad_options():
    import bench

    module = types.ModuleType("my_dataset_options")
    exec(compile(_guide_examples()["my_dataset"], "docs/plugins.md:my_dataset.py", "exec"), module.__dict__)
    for arg in ("n=abc", "size=3", "classes=1", "n=30"):
        with pytest.raises(bench.BenchError, match="teacher"):
            module.Teacher().load(None, False, arg)


# -- no pointers into folders users do not have ----------------------------------------------

#: Folders of the development workspace that a user of the package never receives.
_PRIVATE = ("../shared", "shared/specs")


def test_no_tracked_file_points_into_the_private_workspace():
    """Cite the upstream source (paper, section, reference repository and file) instead."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    offenders = []
    for rel in filter(None, files.split("\0")):
        if rel.startswith("tests/") or not (ROOT / rel).is_file():
            continue
        try:
            text = (ROOT / rel).read_text()
        except UnicodeDecodeError:  # images and other binaries
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if any(p in line for p in _PRIVATE):
                offenders.append(f"{rel}:{lineno}: {line.strip()}")
    assert not offenders, ("these tracked files point into a folder users do not have; cite the upstream source "
                           "instead:\n" + "\n".join(offenders))
