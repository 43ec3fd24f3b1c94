"""Options shared by ``bench run`` and ``bench tune``, and their translation to ``RunOptions``."""

from __future__ import annotations

import click

SETTING = [
    click.option("--dataset", "-d", "datasets", multiple=True, help="Dataset spec, repeatable (e.g. digits, synthetic:n=2000,classes=4). [default: digits]"),
    click.option("--model", "models", multiple=True, help="Model spec, repeatable (mlp, mlp:256,256, cnn, any timm name). [default: mlp]"),
    click.option("--forget", "-f", "forgets", multiple=True, help="Forget request, repeatable: random:10%, random:100, class:3, indices:PATH; sequential requests seq:5x20, seq:class:1,3,5. [default: random:10%]"),
    click.option("--forget-seed", type=int, default=None, help="Seed of random forget requests (default: the trial seed)."),
    click.option("--param", "-p", "params", multiple=True, help="Method hyperparameter METHOD.NAME=VALUE, repeatable (e.g. ga.lr=0.01)."),
    click.option("--recipe", "-r", "recipe", multiple=True, help="Training recipe KEY=VALUE, repeatable (epochs, lr, batch_size, optimizer, momentum, weight_decay, schedule)."),
    click.option("--config", "-c", "config", type=click.Path(dir_okay=False), default=None, help="TOML experiment file; command-line options override it."),
    click.option("--ray-address", default=None, help="Join an existing Ray cluster (HOST:PORT or auto) instead of starting a local one."),
    click.option("--cpus-per-trial", type=float, default=None, help="CPUs per trial (also torch threads per trial). [default: 1]"),
    click.option("--gpus-per-trial", type=float, default=None, help="GPUs per trial; fractions pack trials on a GPU. [default: 0]"),
    click.option("--device", default=None, help="auto, cpu or cuda. auto: cuda when --gpus-per-trial > 0. [default: auto]"),
    click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", help="MLflow store or server. [default: sqlite:///$PWD/mlflow.db]"),
    click.option("--experiment", "-e", default=None, help="MLflow experiment name. [default: unlearning-bench]"),
    click.option("--run-name", default=None, help="Name of the parent MLflow run."),
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Reference-model cache. [default: ~/.cache/unlearning-bench]"),
    click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Dataset files. [default: ~/.local/share/unlearning-bench/data]"),
    click.option("--download/--no-download", default=None, help="Let dataset plugins download missing files (needs internet). [default: no]"),
    click.option("--verbose", "-v", is_flag=True, help="Show Ray worker output."),
    click.option("--quiet", "-q", is_flag=True, help="Print only failures, the summary and where the results are."),
]


def setting_options(fn):
    for option in reversed(SETTING):
        fn = option(fn)
    return fn


def to_run_options(kw: dict, params_file: str | None = None):
    """Merge the TOML file (``--config``), a ``--params`` file or run, and the command line."""
    from bench.experiment import load_toml, merge_options, parse_method_params
    from bench.recipe import parse_assignments

    params: dict[str, dict] = {}
    if params_file:
        from bench.tuning import load_params

        params = load_params(params_file, kw.get("tracking_uri"))
    for method, values in (parse_method_params(list(kw.get("params") or ())) if kw.get("params") else {}).items():
        params[method] = {**params.get(method, {}), **values}
    cli = {
        "methods": kw.get("methods"), "datasets": list(kw.get("datasets") or ()) or None,
        "models": list(kw.get("models") or ()) or None, "forgets": list(kw.get("forgets") or ()) or None,
        "seeds": kw.get("seeds"), "forget_seed": kw.get("forget_seed"), "params": params or None,
        "recipe": parse_assignments(list(kw["recipe"]), "--recipe") if kw.get("recipe") else None,
        "attacks": kw.get("attacks"), "shadow_models": kw.get("shadow_models"), "executor": kw.get("executor"), "ray_address": kw.get("ray_address"),
        "cpus_per_trial": kw.get("cpus_per_trial"), "gpus_per_trial": kw.get("gpus_per_trial"), "device": kw.get("device"),
        "tracking_uri": kw.get("tracking_uri"), "experiment": kw.get("experiment"), "run_name": kw.get("run_name"),
        "cache_dir": kw.get("cache_dir"), "data_dir": kw.get("data_dir"), "download": kw.get("download"),
        "resume": kw.get("resume"),
    }
    return merge_options(load_toml(kw["config"]) if kw.get("config") else None, cli)


def console():
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)
