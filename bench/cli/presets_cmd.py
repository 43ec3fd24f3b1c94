"""``bench presets [NAME]``: the protocols shipped as experiment files (``bench.core.presets``)."""

from __future__ import annotations

import textwrap

import click


@click.command("presets")
@click.argument("name", required=False)
@click.option("--toml", "as_toml", is_flag=True, help="Print the preset's experiment file as shipped (to copy and edit).")
def presets(name, as_toml):
    """List the shipped protocols (name, source, what it runs, expected cost), or show one.

    Run one with `bench run --preset NAME` (or `--config preset:NAME`); command-line options
    override its keys; `--dry-run` validates it and prints the plan without training.

    \b
    Examples:
      bench presets
      bench presets salun-cifar10-random10
      bench presets digits-quick --toml > my-experiment.toml
    """
    from bench.core import presets as lib
    from bench.core.errors import BenchError

    if name is None:
        if as_toml:
            raise BenchError("--toml prints one preset: name it, e.g. `bench presets digits-quick --toml`.")
        for p in lib.load_all():
            click.echo(f"{p.name}")
            click.echo(f"  {p.title}")
            click.echo(f"  source: {p.short_source()}")
            click.echo(f"  runs:   {p.runs}")
            click.echo(f"  cost:   {p.cost}")
        click.echo("\nRun one with `bench run --preset NAME`; `bench presets NAME` shows where it deviates from its source.")
        return
    p = lib.load(name)
    if as_toml:
        click.echo(p.text, nl=False)
        return
    def wrap(text: str, indent: str = "  ") -> str:
        return textwrap.fill(text, 100, initial_indent=indent, subsequent_indent=indent + "  ", break_on_hyphens=False)

    click.echo(f"{p.name}: {p.title}")
    click.echo(wrap(f"source: {p.source}"))
    click.echo(wrap(f"runs: {p.runs}"))
    click.echo(wrap(f"cost: {p.cost}"))
    if p.compare:
        click.echo(wrap(f"published numbers: bench compare --published {p.compare}"))
    click.echo("  deviations from the source:")
    for d in p.deviations:
        click.echo(wrap(f"- {d}", "    "))
    click.echo(f"  run: bench run --preset {p.name}   (validate first: bench run --preset {p.name} --dry-run)")
