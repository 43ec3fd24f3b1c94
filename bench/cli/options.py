"""The click options of ``bench run`` and ``bench tune``, made from the option table
``bench.core.options.OPTIONS``, and the translation of click's values to ``RunOptions``."""

from __future__ import annotations

from collections.abc import Callable

import click

from bench.core.options import OPTIONS, Option

# Command-line-only options (not run settings, so not in the table).
CONFIG = click.option("--config", "-c", "config", type=click.Path(dir_okay=False), default=None,
                      help="TOML experiment file, or preset:NAME (a shipped preset); command-line options override it.")
PRESET = click.option("--preset", "preset", default=None, metavar="NAME",
                      help="A shipped protocol (`bench presets` lists them), read like --config preset:NAME.")
VERBOSE = click.option("--verbose", "-v", is_flag=True, help="Show Ray worker output and Ray's log (with failed trials' tracebacks) on the terminal.")
QUIET = click.option("--quiet", "-q", is_flag=True, help="Print only failures, the summary and where the results are.")

#: Where the command-line-only options of every command go in ``--help``: after the table option named.
SHARED_AFTER: dict[str, list[Callable]] = {"recipe": [CONFIG, PRESET]}
#: ... and after all the table options.
SHARED_LAST: list[Callable] = [VERBOSE, QUIET]


#: Options whose one value is a list (comma-separated): given twice, a user may mean both lists.
LIST_VALUED = ("methods", "seeds", "attacks")


def once(ctx, param, values):
    """A single-valued option's values: None when not given, the value when given once (or twice
    alike), a usage error naming both when given with two values."""
    if not values:
        return None
    if len(set(values)) > 1:
        hint = {"params_file": " (merge the files into one JSON object {\"METHOD\": {...}, ...})",
                "seeds": " (several seeds are one value: -s 0,1 or -s 0-4)",
                "methods": " (several methods are one value: -m ga,ft)",
                "attacks": " (several attacks are one value: --attacks loss,lira)"}.get(param.name, "")
        raise click.BadParameter(f"given {len(values)} times ({', '.join(map(repr, values))}); give it once{hint}.")
    return values[0]


def click_option(option: Option) -> Callable:
    """The click option of a table entry: not given -> None (or () when repeatable), so it does not override."""
    kw: dict = {"help": option.help}
    if option.multiple:
        kw["multiple"] = True
    elif option.flag:
        kw.update(is_flag=True, default=None)
    elif option.name in LIST_VALUED:  # given twice, refused: click kept the last (-s 0 -s 1 ran seed 1 only)
        kw.update(multiple=True, callback=once)
    else:  # a path or a number given twice: the last wins, as in most command lines
        kw["default"] = None
    if option.choices is not None:
        kw["type"] = click.Choice(list(option.choices))
    elif option.path == "dir":
        kw["type"] = click.Path(file_okay=False)
    elif option.cli_type in (int, float):
        kw["type"] = option.cli_type
    if option.envvar:
        kw["envvar"] = option.envvar
    return click.option(*option.flags, option.name, **kw)


def command_options(command: str, after: dict[str, list[Callable]] | None = None) -> Callable:
    """Decorate ``command`` with its table options: first those only it has, then the shared ones,
    each group in table order, with the command-line-only options of ``after`` (and
    :data:`SHARED_AFTER`, :data:`SHARED_LAST`) after the option they name."""
    mine = [o for o in OPTIONS if command in o.commands]
    ordered = [o for o in mine if o.commands == (command,)] + [o for o in mine if o.commands != (command,)]
    extra = {**SHARED_AFTER, **(after or {})}
    decorators: list[Callable] = []
    for option in ordered:
        decorators.append(click_option(option))
        decorators.extend(extra.get(option.name, ()))
    decorators.extend(SHARED_LAST)

    def apply(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


def cli_values(kw: dict) -> dict:
    """Click's values -> the command-line layer of ``merge_options``: None for an option not given."""
    out = {}
    for option in OPTIONS:
        value = kw.get(option.name)
        if option.multiple:
            value = list(value or ()) or None
        if option.from_cli is not None and value is not None:
            value = option.from_cli(value)
        out[option.name] = value
    return out


def to_run_options(kw: dict, params_file: str | None = None):
    """Merge the TOML file (``--config``), a ``--params`` file or run, and the command line."""
    from bench.core.options import load_toml, merge_options

    from bench.core.options import OPTION_BY_NAME

    params: dict[str, dict] = {}
    tuned_on = None
    not_empty("--params", params_file, "a JSON file or the run id of a `bench tune` run")
    toml = load_toml(experiment_file(kw)) if experiment_file(kw) else None
    if params_file:
        from bench.run.tune_params import load_params

        uri, key = kw.get("tracking_uri"), OPTION_BY_NAME["tracking_uri"].key
        if toml and isinstance(toml.get(key), str) and (uri is None or _from_environment("tracking_uri")):
            uri = toml[key]  # the store the run writes to: the file's over the environment's
        params, tuned_on = load_params(params_file, uri)
    cli = cli_values(kw)
    for method, values in (cli["params"] or {}).items():
        params[method] = {**params.get(method, {}), **values}
    cli["params"] = params or None
    toml = _drop_unselected_file_params(toml, cli)
    for option in OPTIONS:  # an environment variable sits below the file: defaults < env < file < command line
        if toml and option.key in toml and cli.get(option.name) is not None and _from_environment(option.name):
            cli[option.name] = None
    opts = merge_options(toml, cli)
    if opts.executor == "local" and opts.ray_address and _from_environment("ray_address"):
        import dataclasses  # RAY_ADDRESS is for Ray: the local executor runs without it

        opts = dataclasses.replace(opts, ray_address=None)
    if params_file:
        from bench.run.tune_params import params_notes

        for line in params_notes(params_file, tuned_on, opts):
            console().print(line, highlight=False, soft_wrap=True)
    return opts


def _drop_unselected_file_params(toml: dict | None, cli: dict) -> dict | None:
    """``--methods`` on the command line over an experiment file (a preset): the file's
    ``[params.METHOD]`` of the methods it leaves out go with them (``bench run --preset
    salun-cifar10-random10 -m ft,salun`` was refused for the preset's ``[params.ga]``). Parameters
    given on the command line, or in a file that selects its own methods, are still checked."""
    import fnmatch

    from bench.core.options import OPTION_BY_NAME

    key = OPTION_BY_NAME["params"].key
    if not toml or cli.get("methods") is None or not isinstance(toml.get(key), dict):
        return toml
    given = cli["methods"]
    patterns = [p.strip() for p in (given.split(",") if isinstance(given, str) else given) if p.strip()]
    kept = {m: v for m, v in toml[key].items() if any(fnmatch.fnmatchcase(m, p) for p in patterns)}
    return {**toml, key: kept}  # a copy: a preset's options may be shared


def _from_environment(name: str) -> bool:
    """Whether click filled option ``name`` from its environment variable (not the command line)."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) == ParameterSource.ENVIRONMENT


def not_empty(flag: str, value: str | None, expected: str) -> None:
    """An option given as '' (an unset shell variable) is refused: it was read as not given."""
    from bench.core.errors import BenchError

    if value is not None and not str(value).strip():
        raise BenchError(f"Empty {flag}: expected {expected}; drop it if you meant none.")


def experiment_file(kw: dict) -> str | None:
    """``--config FILE`` or ``--preset NAME`` (as ``preset:NAME``); never both."""
    from bench.core.errors import BenchError
    from bench.core.presets import PREFIX

    config, preset = kw.get("config"), kw.get("preset")
    not_empty("--config", config, "an experiment file (TOML) or preset:NAME")
    not_empty("--preset", preset, "the name of a preset (bench presets lists them)")
    if config and preset:
        raise BenchError(f"Give --preset {preset} or --config {config}, not both: a preset is an experiment file. "
                         f"Override its keys on the command line, or copy it (`bench presets {preset} --toml > my.toml`) "
                         f"and edit the copy.")
    return f"{PREFIX}{preset}" if preset else config


def console():
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)
