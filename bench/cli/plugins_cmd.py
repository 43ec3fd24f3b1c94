"""``bench plugins [--json]``: installed plugins, versions, hooks and what each registered."""

from __future__ import annotations

import json
from dataclasses import asdict

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json):
    """List installed plugins: name, version, source, hooks and the names each registered."""
    from bench.core.plugins import plugin_infos

    infos = plugin_infos()
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
