"""The options of ``bench run`` and ``bench tune``: defaults, the TOML experiment file, merging.

Precedence: defaults < TOML file (``--config``) < command line (options given explicitly).

Every option is declared once, in :data:`OPTIONS`. The :class:`RunOptions` fields and defaults,
the TOML keys and their accepted types (:data:`TOML_KEYS`, :data:`TOML_TYPES`) and the click
options of ``bench run`` and ``bench tune`` (``bench.cli.options``) are all made from that table.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.core.keys import DEFAULT_EXPERIMENT
from bench.core.recipe import parse_assignments

DEFAULT_METHODS = "retrain,ft,ga"
DEFAULT_ATTACKS = "loss,entropy,svc"  # the cheap ones (bench.attacks.CHEAP); "" runs none
DEFAULT_SHADOW_MODELS = 8
EXECUTORS = ("ray", "local")


# -- parsing helpers --------------------------------------------------------------------------

MAX_SEEDS = 1000  # seeds of one run (each trains its own references)
SEED_LIMIT = 2**31  # seeds are < 2**31 (NumPy, torch and Ray all take them)


def parse_seeds(value: str | int | list) -> list[int]:
    """``"0,1,2"``, ``"0-4"`` or a list -> ``[0, 1, 2]``; at most :data:`MAX_SEEDS` seeds, each
    in ``0..2**31-1``."""
    if isinstance(value, bool):
        raise BenchError(f"Bad seeds {value!r}: expected integers such as 0,1,2 or a range 0-4.")
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        items = [v.strip() for v in str(value).split(",")]
        if len(items) > 1 and not all(items):  # 0,,1 read as 0,1 (hostile audit, 2026-12-07)
            raise BenchError(f"Bad seeds '{value}': an empty item (two commas in a row, or one at an end); expected "
                             f"integers such as 0,1,2 or a range 0-4.")
        items = [v for v in items if v]
    seeds: list[int] = []
    try:
        for item in items:
            if "-" in item[1:]:
                lo, hi = (int(v) for v in item.split("-", 1))
                if hi < lo:
                    raise BenchError(f"Bad seeds '{value}': the range {item} is empty (write it low-high, e.g. 0-4).")
                if hi - lo + 1 + len(seeds) > MAX_SEEDS:
                    raise BenchError(f"Bad seeds '{value}': the range {item} holds {hi - lo + 1} seeds; "
                                     f"a run takes at most {MAX_SEEDS} (e.g. 0-9).")
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(item))
    except ValueError:
        raise BenchError(f"Bad seeds '{value}': expected integers such as 0,1,2 or a range 0-4.") from None
    if not seeds or any(s < 0 for s in seeds):
        raise BenchError(f"Bad seeds '{value}': expected non-negative integers such as 0,1,2 or 0-4.")
    if len(seeds) > MAX_SEEDS:
        raise BenchError(f"Bad seeds '{value}': {len(seeds)} seeds; a run takes at most {MAX_SEEDS}.")
    if max(seeds) >= SEED_LIMIT:
        raise BenchError(f"Bad seeds '{value}': seed {max(seeds)} is too large; seeds lie in 0..{SEED_LIMIT - 1}.")
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"Bad seeds '{value}': a seed is repeated.")
    return seeds


def parse_method_params(items: list[str]) -> dict[str, dict[str, str]]:
    """``["ga.lr=0.01"]`` -> ``{"ga": {"lr": "0.01"}}``."""
    out: dict[str, dict[str, str]] = {}
    for key, value in parse_assignments(items, "--param").items():
        method, dot, name = key.partition(".")
        if not dot or not method or not name:
            raise BenchError(f"Bad --param '{key}={value}': expected METHOD.NAME=VALUE, e.g. ga.lr=0.01.")
        out.setdefault(method, {})[name] = value
    return out


def parse_originals(items: list[str]) -> dict[str, str]:
    """``["PATH"]`` -> ``{"": PATH}`` (for the one ``--model``); ``["mlp=a.pt", "cnn=b.pt"]`` -> per model
    spec. A value whose part before the first ``=`` holds a ``/`` is a path as a whole."""
    out: dict[str, str] = {}
    for item in items:
        model, eq, path = item.partition("=")
        if not eq or not model.strip() or "/" in model:
            model, path = "", item
        model, path = model.strip(), path.strip()
        if not path:
            raise BenchError(f"Bad --original '{item}': expected PATH, or MODEL=PATH with several --model, e.g. --original mlp=original.safetensors.")
        if model in out:
            raise BenchError(f"--original is given twice for {'the model' if not model else f'model {model!r}'}; give one file per --model.")
        out[model] = path
    return out


def _originals(value: Any) -> Any:
    """A TOML string (one model) or table (model spec -> path) -> the ``original`` mapping."""
    return {"": value} if isinstance(value, str) else value


_COMMAND_LINE: list[str] = []


def set_command_line(args: list[str]) -> None:
    """The arguments ``bench`` was started with (after the program name), recorded with the run."""
    _COMMAND_LINE[:] = [str(a) for a in args]


def command_line() -> str | None:
    """``bench ARGS...`` shell-quoted, as the command line gave it; None outside the CLI."""
    import shlex

    return shlex.join(["bench", *_COMMAND_LINE]) if _COMMAND_LINE else None


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read an experiment file; its keys mirror the ``bench run`` options (see README).
    ``preset:NAME`` reads the shipped preset NAME (``bench.core.presets``, ``bench presets``)."""
    import tomllib

    from bench.core import presets

    if presets.is_reference(path):
        return presets.load(str(path)[len(presets.PREFIX):]).options
    p = Path(path).expanduser()
    if not p.is_file():
        raise BenchError(f"Experiment file not found: {p}.")
    try:
        text = p.read_text(encoding="utf-8-sig")  # TOML is UTF-8; a leading byte-order mark is dropped
    except UnicodeDecodeError as exc:
        raise BenchError(f"Experiment file {p} is not UTF-8 text (byte {exc.start}: {exc.reason}): expected a TOML "
                         f"experiment file. Save it as UTF-8, or check that --config names the right file.") from None
    except OSError as exc:
        raise BenchError(f"Cannot read the experiment file {p}: {exc.strerror or exc}. Check its permissions.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"Experiment file {p} is not valid TOML: {exc}.") from None
    _drop_preset_table(data, p, presets.META, (*presets.REQUIRED, "compare"))
    return data


def _drop_preset_table(data: dict[str, Any], path: Path, meta: str, allowed: tuple[str, ...]) -> None:
    """A copy of a preset (``bench presets NAME --toml > my.toml``) keeps its ``[preset]`` table, which
    describes the protocol and sets nothing: drop it. Refuse a key in it that is not a description
    (in TOML, an experiment key written after ``[preset]`` belongs to that table: never ignore it)."""
    if meta not in data:
        return
    table = data.pop(meta)
    if not isinstance(table, dict):
        raise BenchError(f"Bad value in the experiment file {path}: {meta} = {table!r}; expected the [{meta}] table "
                         f"that describes a preset ({', '.join(allowed)}). Remove the key.")
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise BenchError(f"Unknown keys in the [{meta}] table of the experiment file {path}: {', '.join(extra)}. That "
                         f"table only describes the preset ({', '.join(allowed)}); in TOML a key written after "
                         f"[{meta}] belongs to it: move experiment keys above the [{meta}] table.")


# -- how a layer's value becomes a RunOptions value -------------------------------------------

def _as_list(value: Any) -> Any:
    """A single spec (a TOML string) -> a list of one."""
    return [value] if isinstance(value, str) else value


def _joined(value: Any) -> Any:
    """A list of names (a TOML array) -> the comma-separated form of the command line."""
    return ",".join(value) if isinstance(value, (list, tuple)) else value


def _update(lower: dict[str, Any], upper: dict[str, Any]) -> dict[str, Any]:
    """A higher layer's keys replace the lower layers' ones (``recipe``)."""
    return {**lower, **upper}


def _update_each(lower: dict[str, dict], upper: dict[str, dict]) -> dict[str, dict]:
    """Per method, a higher layer's parameters replace the lower layers' ones (``params``)."""
    merged = dict(lower)
    for method, values in upper.items():
        merged[method] = {**merged.get(method, {}), **values}
    return merged


def _dicts_of_dicts(value: dict) -> bool:
    return all(isinstance(v, dict) for v in value.values())


# -- the option table -------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Option:
    """One option of ``bench run`` / ``bench tune``: a ``RunOptions`` field, a TOML key, a click option."""

    name: str  # RunOptions field; the key of the merge layers; the click parameter name
    flags: tuple[str, ...]  # command-line flags, e.g. ("--dataset", "-d"); "--x/--no-x" for an on/off switch
    help: str
    default: Any  # RunOptions default; lists and dicts are copied for each instance
    annotation: str  # RunOptions field type
    toml_types: tuple[type, ...]  # the types a TOML value may have
    toml_key: str | None = None  # the TOML key when it is not `name`
    cli_type: type = str  # type of a command-line value: str, int or float
    choices: tuple[str, ...] | None = None  # the command line accepts only these
    path: str | None = None  # "dir": the command-line value names a directory (not a file)
    multiple: bool = False  # repeatable on the command line; the values are collected into a list
    flag: bool = False  # a flag without a value (True when given)
    envvar: str | None = None  # environment variable read when the flag is not given
    commands: tuple[str, ...] = ("run", "tune")  # the commands that have the option
    from_cli: Callable[[list[str]], Any] | None = None  # the repeated command-line values -> the merge value
    normalize: Callable[[Any], Any] | None = None  # a layer's (TOML or command-line) value -> the RunOptions value
    combine: Callable[[Any, Any], Any] | None = None  # (lower layers' value, this layer's) -> value; default: replace
    toml_check: Callable[[Any], bool] | None = None  # a further check of a TOML value of the right type
    toml_items: tuple[type, ...] | None = None  # a TOML list: the types of its items; it must not be empty
    empty_ok: bool = False  # a TOML list may be empty (``attacks = []``: none)

    @property
    def key(self) -> str:
        """The TOML key."""
        return self.toml_key or self.name


_S, _L, _N = (str,), (str, list), (int, float)


def _ray_address(value: Any) -> Any:
    """``local`` (Ray's own word, also in ``RAY_ADDRESS``) is bench's default: a local Ray of its own."""
    return None if isinstance(value, str) and value.strip().lower() in ("", "local") else value

#: The options of ``bench run`` and ``bench tune``, in ``RunOptions`` field order (also the
#: order of the TOML keys and, per command, of ``--help``).
OPTIONS: tuple[Option, ...] = (
    Option("methods", ("--methods", "-m"), f"Methods, comma-separated; fnmatch wildcards allowed. [default: {DEFAULT_METHODS}]",
           DEFAULT_METHODS, "str", _L, commands=("run",), normalize=_joined, toml_items=_S),
    Option("datasets", ("--dataset", "-d"), "Dataset spec, repeatable (e.g. digits, synthetic:n=2000,classes=4). [default: digits]",
           ("digits",), "list[str]", _L, toml_key="dataset", multiple=True, normalize=_as_list, toml_items=_S),
    Option("models", ("--model",), "Model spec, repeatable (mlp, mlp:256,256, cnn, any timm name). [default: mlp]",
           ("mlp",), "list[str]", _L, toml_key="model", multiple=True, normalize=_as_list, toml_items=_S),
    Option("forgets", ("--forget", "-f"), "Forget request, repeatable: random:10%, random:100, class:3, indices:PATH, indices:RUN_ID (a trial's forget set); sequential "
           "requests seq:5x20, seq:class:1,3,5. [default: random:10%]",
           ("random:10%",), "list[str]", _L, toml_key="forget", multiple=True, normalize=_as_list, toml_items=_S),
    Option("seeds", ("--seeds", "-s"), "Seeds: 0,1,2 or 0-4. Each seed trains its own original and retrained reference. [default: 0]",
           (0,), "list[int]", (str, int, list), commands=("run",), normalize=parse_seeds, toml_items=(int, str)),
    Option("forget_seed", ("--forget-seed",), "Seed of random forget requests (default: the trial seed).",
           None, "int | None", (int,), cli_type=int),
    Option("params", ("--param", "-p"), "Method hyperparameter METHOD.NAME=VALUE, repeatable (e.g. ga.lr=0.01).",
           {}, "dict[str, dict[str, Any]]", (dict,), multiple=True, from_cli=parse_method_params, combine=_update_each,
           toml_check=_dicts_of_dicts),
    Option("recipe", ("--recipe", "-r"), "Training recipe KEY=VALUE, repeatable (epochs, lr, batch_size, optimizer, momentum, "
           "weight_decay, schedule, augment).",
           {}, "dict[str, Any]", (dict,), multiple=True, from_cli=partial(parse_assignments, what="--recipe"), combine=_update),
    Option("original", ("--original",), "Your own trained original for --model: a .safetensors file or a torch state dict "
           "(read with weights_only=True); MODEL=PATH per model spec when there are several. Checked before any work; the "
           "retrained reference is still trained with the recipe (see README, 'Your own model').",
           {}, "dict[str, str]", (str, dict), multiple=True, from_cli=parse_originals, normalize=_originals,
           toml_check=lambda v: isinstance(v, str) or all(isinstance(p, str) for p in v.values())),
    Option("attacks", ("--attacks",), "Attacks to run on every unlearned model, comma-separated, wildcards allowed; '' for none "
           f"(see `bench list attacks`, docs/attacks.md). [default: {DEFAULT_ATTACKS}]",
           DEFAULT_ATTACKS, "str", _L, commands=("run", "tune"), normalize=_joined, toml_items=_S, empty_ok=True),
    Option("shadow_models", ("--shadow-models",), "Shadow/reference models per group for lira, lira_offline, ulira, rmia and epsilon "
           f"(even, >= 2; trained once, cached). [default: {DEFAULT_SHADOW_MODELS}]",
           DEFAULT_SHADOW_MODELS, "int", (int,), cli_type=int, commands=("run", "tune")),
    Option("executor", ("--executor",), "ray: Ray Tune trials (default); local: in process, for debugging.",
           "ray", "str", _S, choices=EXECUTORS, commands=("run",)),
    Option("ray_address", ("--ray-address",), "Join an existing Ray cluster (HOST:PORT or auto) instead of starting a local one "
           "(also RAY_ADDRESS; 'local': start a local one).",
           None, "str | None", _S, envvar="RAY_ADDRESS", normalize=_ray_address),
    Option("cpus_per_trial", ("--cpus-per-trial",), "CPUs per trial (also torch threads per trial). [default: 1]",
           1.0, "float", _N, cli_type=float),
    Option("gpus_per_trial", ("--gpus-per-trial",), "GPUs per trial; fractions pack trials on a GPU. [default: 0]",
           0.0, "float", _N, cli_type=float),
    Option("trial_timeout", ("--trial-timeout",), "Stop a trial still running after this many seconds: it fails with "
           "where it was, the others go on. [default: none]",
           None, "float | None", _N, cli_type=float),
    Option("validation", ("--validation",), "Measure on this fraction of each class of the training set, kept aside, "
           "instead of the test set (0: the test set). For bench tune: select without the test set. [default: 0]",
           0.0, "float", _N, cli_type=float),
    Option("save_models", ("--save-models",), "Keep each trial's unlearned model as the artifact model.safetensors of its "
           "MLflow run (load it with bench.run.saved_models.load_trial_model; README, 'The unlearned models').",
           False, "bool", (bool,), cli_type=bool, flag=True, commands=("run",)),
    Option("device", ("--device",), "auto, cpu or cuda. auto: cuda when --gpus-per-trial > 0. [default: auto]",
           "auto", "str", _S),
    Option("tracking_uri", ("--tracking-uri",), "MLflow store or server. [default: sqlite:///$PWD/mlflow.db]",
           None, "str | None", _S, envvar="MLFLOW_TRACKING_URI"),
    Option("experiment", ("--experiment", "-e"), f"MLflow experiment name. [default: {DEFAULT_EXPERIMENT}]",
           DEFAULT_EXPERIMENT, "str", _S),
    Option("run_name", ("--run-name",), "Name of the parent MLflow run.",
           None, "str | None", _S),
    Option("cache_dir", ("--cache-dir",),
           "Reference-model cache. [default: ~/.cache/unlearning-bench, or $XDG_CACHE_HOME/unlearning-bench]",
           None, "str | None", _S, path="dir"),
    Option("data_dir", ("--data-dir",),
           "Dataset files. [default: ~/.local/share/unlearning-bench/data, or $XDG_DATA_HOME/unlearning-bench/data]",
           None, "str | None", _S, path="dir"),
    Option("download", ("--download/--no-download",), "Let dataset plugins download missing files (needs internet). [default: no]",
           False, "bool", (bool,), cli_type=bool),
    Option("resume", ("--resume",), "Continue the latest run of the same plan in this experiment: skip its finished trials "
           "(bench tune: the latest search of the same setting, objective, scheduler, seed and space: skip its finished "
           "samples; a larger --num-samples extends it).",
           False, "bool", (bool,), cli_type=bool, flag=True, commands=("run", "tune")),
    Option("dry_run", ("--dry-run",), "Validate and print the plan (trials, parameters, recipe, data files), then stop: "
           "nothing is trained or recorded.",
           False, "bool", (bool,), cli_type=bool, flag=True, commands=("run",)),
)

OPTION_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

#: TOML key -> RunOptions field.
TOML_KEYS: dict[str, str] = {o.key: o.name for o in OPTIONS}
#: TOML key -> the types its value may have.
TOML_TYPES: dict[str, tuple[type, ...]] = {o.key: o.toml_types for o in OPTIONS}


def _field(option: Option):
    default = option.default
    if isinstance(default, (list, tuple, dict)):
        make = list if isinstance(default, (list, tuple)) else dict
        return field(default_factory=lambda: copy.deepcopy(make(default)))
    return field(default=default)


def _from_table(cls):
    """Give ``cls`` one dataclass field per entry of :data:`OPTIONS`, in table order."""
    cls.__annotations__ = {o.name: o.annotation for o in OPTIONS}
    for option in OPTIONS:
        setattr(cls, option.name, _field(option))
    return dataclass(cls)


@_from_table
class RunOptions:
    """The settings of one ``bench run`` or ``bench tune``; its fields are the entries of :data:`OPTIONS`."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_items(option: Option, value: list) -> None:
    """A TOML list of :class:`Option` ``option``: not empty (unless ``empty_ok``), items of its ``toml_items`` types."""
    if option.toml_items is None:
        return
    default = option.default.split(",") if isinstance(option.default, str) else list(option.default)
    example = f"{option.key} = {json.dumps(default)}"
    if not value and not option.empty_ok:
        raise BenchError(f"Bad value in the experiment file: {option.key} = [] is empty, so the run would have no "
                         f"trials. Give at least one item, e.g. {example}, or leave the key out for the default.")
    one = " or ".join("an integer" if t is int else "a string" for t in option.toml_items)
    many = " or ".join("integers" if t is int else "strings" for t in option.toml_items)
    for i, item in enumerate(value, 1):
        if isinstance(item, bool) or not isinstance(item, option.toml_items):
            raise BenchError(f"Bad value in the experiment file: {option.key} = {value!r}: item {i} ({item!r}) is not "
                             f"{one}. Expected a list of {many}, e.g. {example}.")


def merge_options(toml: dict[str, Any] | None, cli: dict[str, Any]) -> RunOptions:
    """Defaults < TOML file < command line (only options given explicitly)."""
    opts = RunOptions()
    layers = []
    if toml:
        unknown = set(toml) - set(TOML_KEYS)
        if unknown:
            raise BenchError(f"Unknown keys in the experiment file: {', '.join(sorted(unknown))}. Valid keys: {', '.join(TOML_KEYS)}.")
        for k, v in toml.items():
            option = OPTION_BY_NAME[TOML_KEYS[k]]
            want = option.toml_types
            bad = not isinstance(v, want) or (isinstance(v, bool) and bool not in want)
            if option.toml_check is not None and not bad:
                bad = not option.toml_check(v)
            if bad:
                raise BenchError(f"Bad value in the experiment file: {k} = {v!r} (expected {' or '.join(t.__name__ for t in want)}).")
            if isinstance(v, list):
                _check_items(option, v)
        layers.append({TOML_KEYS[k]: v for k, v in toml.items()})
    layers.append({k: v for k, v in cli.items() if v is not None})
    for layer in layers:
        for key, value in layer.items():
            option = OPTION_BY_NAME.get(key)
            if option is not None and option.normalize is not None:
                value = option.normalize(value)
            if option is not None and option.combine is not None:
                value = option.combine(getattr(opts, key), value)
            setattr(opts, key, value)
    return opts
