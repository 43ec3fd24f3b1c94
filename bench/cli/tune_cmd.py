"""``bench tune``: search one method's declared hyperparameter space with Ray Tune."""

from __future__ import annotations

import sys

import click

from bench.cli.options import command_options, console, once, to_run_options


@click.command()
@click.option("--method", "-m", required=True, multiple=True, callback=once,  # -m ga -m sisa tuned sisa, no word
              help="The method to tune (it must declare a search space).")
@click.option("--objective", "-o", default="avg_gap", show_default=True, help="Metric to optimise; its direction is known (avg_gap: min, test_acc: max, ...).")
@click.option("--num-samples", "-n", type=int, default=8, show_default=True, help="Samples run, the defaults (sample 0) included unless --no-defaults-first.")
@click.option("--scheduler", type=click.Choice(["fifo", "asha"]), default="fifo", show_default=True, help="asha stops poor samples early on per-epoch results.")
@click.option("--seed", "-s", type=int, default=0, show_default=True, help="Seed of the setting (references) and of the sampler.")
@click.option("--output", "-O", type=click.Path(dir_okay=False), default=None, help="Where to write the best parameters. [default: best-params-METHOD.json]")
@click.option("--defaults-first/--no-defaults-first", default=True, show_default=True, help="Sample 0 runs the method's defaults (never stopped early by ASHA), so that the best saved is never worse than them.")
@command_options("tune")
def tune(method, objective, num_samples, scheduler, seed, output, defaults_first, **kw):
    """Tune METHOD's hyperparameters on one setting; every sample is a child run in MLflow.

    \b
    Example:
      bench tune --method ga --objective avg_gap --num-samples 16 --forget class:3
      bench tune --method ga --objective avg_gap --num-samples 64 --forget class:3 --resume
                    (runs samples 16..63 of the same search; after an interrupt, the unfinished ones)
      bench run --methods ga --params best-params-ga.json --seeds 0-4
    """
    from bench.core.stops import decide_status, sigterm_handled_as_ctrl_c
    from bench.core.plugins import get_registry
    from bench.run.tune_space import check_tunable
    from bench.run.tuning import tune_method

    with sigterm_handled_as_ctrl_c():  # a scheduler's kill ends the search as Ctrl-C does
        check_tunable(get_registry(), method, objective, num_samples, scheduler)
        seed = file_seed(kw, seed, method)
        _check_tune_seed(seed)
        # methods: the one tuned, so that an experiment file's [params.*] of its other methods go with them
        opts = to_run_options({**kw, "seeds": str(seed), "methods": method})
        others = sorted(set(opts.params) - {method})
        if others:  # said in bench run's words ("Select it with --methods"; hostile audit, 2026-12-07)
            from bench.core.errors import BenchError

            raise BenchError(f"Parameters given for method(s) {', '.join(others)} (by --param, --params or [params.*] "
                             f"of the experiment file), and bench tune tunes '{method}' only: drop them, or tune that "
                             f"method with --method.")
        code = decide_status(tune_method(opts, method, objective, num_samples, scheduler, seed, output, console(),
                                         verbose=kw["verbose"], quiet=kw["quiet"], defaults_first=defaults_first))
    sys.exit(code)


def file_seed(kw: dict, seed: int, method: str) -> int:
    """The experiment file's keys that ``bench run`` takes and ``bench tune`` does not: ``dry_run`` set
    true is refused (the search ran in full without a word); its ``seeds``, one
    value, is the search's seed unless ``--seed`` is given (the search ran on seed 0), several are
    refused; the others (``methods``, ``executor``...) are named in a note. Returns the seed."""
    from click.core import ParameterSource

    from bench.cli.options import experiment_file
    from bench.core.errors import BenchError
    from bench.core.options import OPTION_BY_NAME, TOML_KEYS, load_toml, parse_seeds

    path = experiment_file(kw)
    data = load_toml(path) if path else {}
    unused = sorted(k for k in data if k in TOML_KEYS and "tune" not in OPTION_BY_NAME[TOML_KEYS[k]].commands)
    if data.get("dry_run") is True:
        raise BenchError(f"The experiment file {path} sets dry_run = true, which bench tune does not take (it has no "
                         "dry run): remove it from the file, or tune with a copy without it.")
    if "seeds" in data:
        seeds = parse_seeds(data["seeds"])
        given = click.get_current_context().get_parameter_source("seed") != ParameterSource.DEFAULT
        if not given and len(seeds) != 1:
            raise BenchError(f"bench tune searches one setting, and the experiment file {path} gives seeds "
                             f"{data['seeds']!r}: choose one with --seed N.")
        seed = seed if given else seeds[0]
    others = [k for k in unused if k not in ("seeds", "dry_run")]
    if others:
        console().print(f"note: bench tune leaves out the experiment file's {', '.join(others)} (it tunes --method "
                        f"{method} on one seed, through Ray)", highlight=False)
    return seed


def _check_tune_seed(seed: int) -> None:
    """``--seed``: one integer of the range every generator takes (it was refused as bench run's
    "Bad seeds ... such as 0,1,2 or a range 0-4", options tune does not have)."""
    from bench.core.errors import BenchError
    from bench.core.options import SEED_LIMIT

    if not 0 <= seed < SEED_LIMIT:
        raise BenchError(f"Bad --seed {seed}: expected one integer in 0..{SEED_LIMIT - 1} (the setting's seed and the "
                         f"sampler's), e.g. --seed 0.")
