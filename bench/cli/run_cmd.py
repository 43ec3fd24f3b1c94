"""``bench run``: train (or load) the references, run every method trial, record in MLflow."""

from __future__ import annotations

import sys

import click

from bench.cli.options import command_options, console, once, to_run_options

# Only ``bench run`` reads a parameters file; it is no run setting (it fills ``params``).
PARAMS_FILE = click.option("--params", "params_file", multiple=True, callback=once, help="Method parameters from a JSON file {\"METHOD\": {...}} (e.g. from bench tune) or an MLflow run id with best_params.json; --param overrides them. Once: merge two tunes' files into one (a second --params replaced the first).")


@click.command()
@command_options("run", after={"seeds": [PARAMS_FILE]})
def run(params_file, **kw):
    """Run every METHOD x SEED trial on the same original model and forget request.

    \b
    Examples:
      bench run
      bench run --methods retrain,ft,ga --seeds 0,1 --forget class:3
      bench run -m 'g*' -p ga.lr=0.02 -p ga.variant=neggrad+ --recipe epochs=20
      bench run --preset digits-quick            (bench presets lists the protocols)
      bench run --preset salun-cifar10-random10 --dry-run
    """
    from bench.core.stops import decide_status, sigterm_handled_as_ctrl_c

    with sigterm_handled_as_ctrl_c():  # a scheduler's kill ends the run as Ctrl-C does
        code = decide_status(_run(params_file, kw))
    sys.exit(code)


def _run(params_file, kw) -> int:
    opts = to_run_options(kw, params_file)
    preset = None
    if kw.get("preset"):
        from bench.core.presets import load

        preset = load(kw["preset"])
    if opts.dry_run:
        from bench.cli.dry_run import dry_run

        sys.exit(dry_run(opts, preset))
    if preset is not None and not kw["quiet"]:
        click.echo(f"preset {preset.name}: {preset.title}\n  source: {preset.source}\n  cost: {preset.cost}")

    from bench.run.runner import run as run_experiment

    code = run_experiment(opts, console(), verbose=kw["verbose"], quiet=kw["quiet"])
    if preset is not None and preset.compare and code in (0, 1):
        click.echo(f"Compare with the published numbers: bench compare --published {preset.compare}")
    return code
