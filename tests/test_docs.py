"""The README documents what exists: the CI command, every hook, every CLI subcommand, every metric."""

from __future__ import annotations

import re
from pathlib import Path

import bench.hookspecs as hookspecs
from bench.cli import main
from bench.evaluation import ACCURACIES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [l for l in (ROOT / ".ci/run").read_text().splitlines() if l and not l.startswith(("#", "set ", "cd "))]
    assert len(ci_lines) == 1
    assert f"```bash\n{ci_lines[0]}\n```" in README


def test_every_hook_is_documented_with_its_signature():
    hooks = [n for n in dir(hookspecs) if n.startswith("register_")]
    assert len(hooks) == 4
    for name in hooks:
        assert f"### `{name}(register)`" in README, name


def test_every_cli_command_is_documented():
    for name in main.commands:
        assert re.search(rf"### `bench {name}\b", README), name


def test_metric_names_are_documented():
    names = [*ACCURACIES, "avg_gap", "js_to_retrain_forget", "js_to_retrain_test", "unlearn_seconds",
             "speedup_vs_retrain", "peak_memory_mb", "retain_gap", "forget_gap", "test_gap"]
    for name in names:
        assert f"`{name}`" in README, name
