"""``bench list methods|datasets|models|attacks [PATTERN]`` with one-line descriptions."""

from __future__ import annotations

import fnmatch

import click

KINDS = {"methods": "method", "datasets": "dataset", "models": "model", "attacks": "attack"}


@click.command("list")
@click.argument("kind", type=click.Choice(sorted(KINDS)))
@click.argument("pattern", required=False, default="*")
def list_(kind, pattern):
    """List registered methods, datasets, models or attacks (PATTERN: fnmatch wildcards).

    For models, names that a model family (timm) resolves are listed too when PATTERN
    names them, e.g. bench list models 'resnet*'.
    """
    from bench.core.plugins import get_registry

    registry = get_registry()
    k = KINDS[kind]
    entries = [e for e in registry.entries(k) if fnmatch.fnmatch(e.name, pattern)]
    for e in entries:
        click.echo(f"{e.name:<16} {e.description}  [{e.origin}]")
    if k == "model" and pattern != "*":
        for e in registry.entries("model"):
            if hasattr(e.obj, "list_names"):
                for name in e.obj.list_names(pattern):
                    click.echo(f"{name:<16} {e.name} architecture  [{e.origin}]")
                    entries.append(e)
    if not entries:  # one line and exit 2, as `bench run -m 'zz*'` answers it (exit 0 here until 2026-12-06)
        from bench.core.errors import BenchError

        raise BenchError(f"No {kind} match '{pattern}'. `bench list {kind}` lists them.")
