"""``bench run``: train (or load) the references, run every method trial, record in MLflow."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--methods", "-m", default=None, help="Methods, comma-separated; fnmatch wildcards allowed. [default: retrain,ft,ga]")
@click.option("--dataset", "-d", "datasets", multiple=True, help="Dataset spec, repeatable (e.g. digits, synthetic:n=2000,classes=4). [default: digits]")
@click.option("--model", "models", multiple=True, help="Model spec, repeatable (mlp, mlp:256,256, cnn, any timm name). [default: mlp]")
@click.option("--forget", "-f", "forgets", multiple=True, help="Forget request, repeatable: random:10%, random:100, class:3, indices:PATH. [default: random:10%]")
@click.option("--seeds", "-s", default=None, help="Seeds: 0,1,2 or 0-4. Each seed trains its own original and retrained reference. [default: 0]")
@click.option("--forget-seed", type=int, default=None, help="Seed of random forget requests (default: the trial seed).")
@click.option("--param", "-p", "params", multiple=True, help="Method hyperparameter METHOD.NAME=VALUE, repeatable (e.g. ga.lr=0.01).")
@click.option("--recipe", "-r", "recipe", multiple=True, help="Training recipe KEY=VALUE, repeatable (epochs, lr, batch_size, optimizer, momentum, weight_decay, schedule).")
@click.option("--config", "-c", "config", type=click.Path(dir_okay=False), default=None, help="TOML experiment file; command-line options override it.")
@click.option("--attacks", default=None, help="Attacks to run on every unlearned model, comma-separated (see `bench list attacks`).")
@click.option("--executor", type=click.Choice(["ray", "local"]), default=None, help="ray: Ray Tune trials (default); local: in process, for debugging.")
@click.option("--ray-address", default=None, help="Join an existing Ray cluster (HOST:PORT or auto) instead of starting a local one.")
@click.option("--cpus-per-trial", type=float, default=None, help="CPUs per trial (also torch threads per trial). [default: 1]")
@click.option("--gpus-per-trial", type=float, default=None, help="GPUs per trial; fractions pack trials on a GPU. [default: 0]")
@click.option("--device", default=None, help="auto, cpu or cuda. auto: cuda when --gpus-per-trial > 0. [default: auto]")
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", help="MLflow store or server. [default: sqlite:///$PWD/mlflow.db]")
@click.option("--experiment", "-e", default=None, help="MLflow experiment name. [default: unlearning-bench]")
@click.option("--run-name", default=None, help="Name of the parent MLflow run.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Reference-model cache. [default: ~/.cache/unlearning-bench]")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Dataset files. [default: ~/.local/share/unlearning-bench/data]")
@click.option("--download/--no-download", default=None, help="Let dataset plugins download missing files (needs internet). [default: no]")
@click.option("--resume", is_flag=True, default=None, help="Continue the latest run of the same plan in this experiment: skip its finished trials.")
@click.option("--verbose", "-v", is_flag=True, help="Show Ray worker output.")
def run(methods, datasets, models, forgets, seeds, forget_seed, params, recipe, config, attacks, executor, ray_address,
        cpus_per_trial, gpus_per_trial, device, tracking_uri, experiment, run_name, cache_dir, data_dir, download, resume, verbose):
    """Run every METHOD x SEED trial on the same original model and forget request.

    \b
    Examples:
      bench run
      bench run --methods retrain,ft,ga --seeds 0,1 --forget class:3
      bench run -m 'g*' -p ga.lr=0.02 -p ga.variant=neggrad+ --recipe epochs=20
    """
    from bench.experiment import load_toml, merge_options, parse_method_params
    from bench.recipe import parse_assignments

    cli = {
        "methods": methods, "datasets": list(datasets) or None, "models": list(models) or None,
        "forgets": list(forgets) or None, "seeds": seeds, "forget_seed": forget_seed,
        "params": parse_method_params(list(params)) if params else None,
        "recipe": parse_assignments(list(recipe), "--recipe") if recipe else None,
        "attacks": attacks, "executor": executor, "ray_address": ray_address, "cpus_per_trial": cpus_per_trial,
        "gpus_per_trial": gpus_per_trial, "device": device, "tracking_uri": tracking_uri, "experiment": experiment,
        "run_name": run_name, "cache_dir": cache_dir, "data_dir": data_dir, "download": download, "resume": resume,
    }
    opts = merge_options(load_toml(config) if config else None, cli)

    from rich.console import Console

    from bench.runner import run as run_experiment

    console = Console() if sys.stdout.isatty() else Console(width=200)
    code = run_experiment(opts, console, verbose=verbose)
    sys.exit(code)
