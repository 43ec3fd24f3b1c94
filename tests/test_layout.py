"""Packaging guards: the plugin folders install under ``bench.`` and never as top-level packages."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_plugin_folders_install_under_bench_namespace():
    code = (
        "import sys, bench.methods, bench.datasets, bench.attacks;"
        "assert 'methods' not in sys.modules and 'datasets' not in sys.modules and 'attacks' not in sys.modules;"
        "import importlib.util as u; assert u.find_spec('datasets') is None or 'site-packages' in (u.find_spec('datasets').origin or '')"
    )
    subprocess.run([sys.executable, "-P", "-c", code], check=True, cwd="/")


@pytest.mark.slow
def test_cli_start_imports_no_heavy_library():
    code = (
        "import sys; from bench.cli import main;"
        "from bench.core.plugins import get_registry; get_registry();"
        "heavy = [m for m in ('torch', 'ray', 'mlflow', 'timm', 'sklearn') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-P", "-c", code], check=True, cwd="/")
