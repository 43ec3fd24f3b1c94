"""``bench run``: train (or load) the references, run every method trial, record in MLflow."""

from __future__ import annotations

import sys

import click

from .options import console, setting_options, to_run_options


@click.command()
@click.option("--methods", "-m", default=None, help="Methods, comma-separated; fnmatch wildcards allowed. [default: retrain,ft,ga]")
@click.option("--seeds", "-s", default=None, help="Seeds: 0,1,2 or 0-4. Each seed trains its own original and retrained reference. [default: 0]")
@click.option("--params", "params_file", default=None, help="Method parameters from a JSON file {\"METHOD\": {...}} (e.g. from bench tune) or an MLflow run id with best_params.json; --param overrides them.")
@click.option("--attacks", default=None, help="Attacks to run on every unlearned model, comma-separated, wildcards allowed; '' for none (see `bench list attacks`, docs/attacks.md). [default: loss,entropy,svc]")
@click.option("--shadow-models", type=int, default=None, help="Shadow/reference models per group for lira, ulira, rmia and epsilon (even, >= 2; trained once, cached). [default: 8]")
@click.option("--executor", type=click.Choice(["ray", "local"]), default=None, help="ray: Ray Tune trials (default); local: in process, for debugging.")
@click.option("--resume", is_flag=True, default=None, help="Continue the latest run of the same plan in this experiment: skip its finished trials.")
@setting_options
def run(params_file, **kw):
    """Run every METHOD x SEED trial on the same original model and forget request.

    \b
    Examples:
      bench run
      bench run --methods retrain,ft,ga --seeds 0,1 --forget class:3
      bench run -m 'g*' -p ga.lr=0.02 -p ga.variant=neggrad+ --recipe epochs=20
    """
    opts = to_run_options(kw, params_file)

    from bench.runner import run as run_experiment

    sys.exit(run_experiment(opts, console(), verbose=kw["verbose"], quiet=kw["quiet"]))
