"""``bench plugins [--json]``: installed plugins, versions, hooks and what each registered."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json):
    """List installed plugins: name, version, source, hooks and the names each registered."""
    from bench.core.errors import PluginError
    from bench.core.plugins import plugin_infos

    try:
        infos = plugin_infos()
    except PluginError as exc:  # the command one reaches for to see why: what is installed, without loading it
        from importlib.metadata import entry_points

        click.echo(f"Error: {exc}", err=True)
        found = sorted(entry_points(group="bench"), key=lambda ep: ep.name)
        click.echo(f"installed entry points of the group 'bench' (not loaded): {len(found) or 'none'}", err=True)
        for ep in found:
            dist = f" (distribution {ep.dist.name} {ep.dist.version})" if ep.dist else ""
            click.echo(f"  {ep.name} = {ep.value}{dist}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="bench plugins")
    for col in ("plugin", "version", "source", "hooks", "registered"):
        table.add_column(col)
    for i in infos:
        reg = "; ".join(f"{k}s: {', '.join(v)}" for k, v in i.registered.items()) or "-"
        table.add_row(i.name, str(i.version), i.source, ", ".join(i.hooks) or "-", reg)
    Console().print(table)
