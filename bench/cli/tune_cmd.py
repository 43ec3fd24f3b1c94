"""``bench tune``: search one method's declared hyperparameter space with Ray Tune."""

from __future__ import annotations

import sys

import click

from bench.cli.options import command_options, console, to_run_options


@click.command()
@click.option("--method", "-m", required=True, help="The method to tune (it must declare a search space).")
@click.option("--objective", "-o", default="avg_gap", show_default=True, help="Metric to optimise; its direction is known (avg_gap: min, test_acc: max, ...).")
@click.option("--num-samples", "-n", type=int, default=8, show_default=True, help="Samples drawn from the search space.")
@click.option("--scheduler", type=click.Choice(["fifo", "asha"]), default="fifo", show_default=True, help="asha stops poor samples early on per-epoch results.")
@click.option("--seed", "-s", type=int, default=0, show_default=True, help="Seed of the setting (references) and of the sampler.")
@click.option("--output", "-O", type=click.Path(dir_okay=False), default=None, help="Where to write the best parameters. [default: best-params-METHOD.json]")
@command_options("tune")
def tune(method, objective, num_samples, scheduler, seed, output, **kw):
    """Tune METHOD's hyperparameters on one setting; every sample is a child run in MLflow.

    \b
    Example:
      bench tune --method ga --objective avg_gap --num-samples 16 --forget class:3
      bench run --methods ga --params best-params-ga.json --seeds 0-4
    """
    from bench.core.console import sigterm_handled_as_ctrl_c
    from bench.core.plugins import get_registry
    from bench.run.tuning import check_tunable, tune_method

    with sigterm_handled_as_ctrl_c():  # a scheduler's kill ends the search as Ctrl-C does
        check_tunable(get_registry(), method, objective, num_samples, scheduler)
        opts = to_run_options({**kw, "seeds": str(seed)})
        code = tune_method(opts, method, objective, num_samples, scheduler, seed, output, console(), verbose=kw["verbose"],
                           quiet=kw["quiet"])
    sys.exit(code)
