"""Validation of a run's options before any work: every name resolves, parameters convert and pass
the methods' own checks, the forget specs parse, the tracking store and Ray address answer, the resources asked fit this
machine, the names, seeds and directories are usable (``bench.run.checks``).

Nothing here imports torch, ray or mlflow (the device is resolved once planning starts:
``bench.run.devices``), so argument errors answer at once.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.cache import default_cache_dir
from bench.core.errors import BenchError
from bench.core.forget import INDICES_ARTIFACT, ForgetSpec, parse_forget
from bench.core.keys import Tag
from bench.core.method import (
    check_params,
    continual_support,
    dataset_params,
    forget_kinds,
    requires_for,
)
from bench.core.options import EXECUTORS, RunOptions
from bench.core.params import FLOAT32_MAX, fits_float32, number_from_text
from bench.core.recipe import build_recipe
from bench.core.registry import Registry
from bench.run.checks import (
    check_data_dir,
    check_dir,
    check_forget_seed,
    check_name,
    check_resources,
    check_shadow_models,
    check_trial_timeout,
)
from bench.run.validation_split import check_validation
from bench.run.text_checks import check_utf8_options
from bench.track.store import resolve_tracking_uri, shown_uri


@dataclass
class MethodPlan:
    name: str
    obj: Any
    params: dict[str, Any]
    access: tuple[str, ...]
    origin: str


#: how the refusals name a parameter's type
_KIND_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def coerce_param(method: str, key: str, value: Any, default: Any) -> Any:
    """``value`` (a ``-p`` string, or a TOML/JSON value) as the type of the parameter's ``default``,
    and within float32's range: torch refuses a larger number next to a float32 tensor, mid-trial."""
    converted = _convert_param(method, key, value, default)
    if not fits_float32(converted):
        raise BenchError(f"Bad value for {method}.{key}: {value!r} is beyond float32's range (at most {FLOAT32_MAX:.4g} "
                         f"in magnitude), which the models compute in; no hyperparameter can be that large. Give a "
                         f"value of the default's scale ({default!r}).")
    return converted


def _convert_param(method: str, key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if not isinstance(value, str):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = {bool: isinstance(value, bool), int: number and float(value).is_integer(), float: number, str: False}.get(kind, True)
        if not ok:
            raise BenchError(f"Bad value for {method}.{key}: {value!r} is not {_KIND_NAMES.get(kind.__name__, 'a ' + kind.__name__)} "
                             f"(default {default!r}). {_fix(method, key)}")
        return kind(value) if kind in (int, float) else value
    try:
        if kind is bool:
            low = value.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if kind in (int, float):
            return number_from_text(value, kind is int)
    except ValueError:
        raise BenchError(f"Bad value for {method}.{key}: {value!r} is not {_KIND_NAMES.get(kind.__name__, 'a ' + kind.__name__)} "
                         f"(default {default!r}). {_fix(method, key)}") from None
    return value


def _fix(method: str, key: str) -> str:
    return f"Fix it with -p {method}.{key}=VALUE (or under [params.{method}] of the experiment file, or in the --params file)."


def resolve_methods(registry: Registry, opts: RunOptions) -> list[MethodPlan]:
    names = registry.resolve("method", opts.methods)
    for method in opts.params:
        if method not in names:
            raise BenchError(
                f"Parameters given for method '{method}' (by --param, --params or [params.{method}] in the experiment "
                f"file), which is not selected (selected: {', '.join(names)}). Select it with --methods or drop them."
            )
    plans = []
    for name in names:
        entry = registry.entry("method", name)
        obj = entry.obj
        params = {k: _plain(v) for k, v in obj.default_params.items()}
        for key, value in opts.params.get(name, {}).items():
            if key not in params:
                raise BenchError(
                    f"Unknown parameter '{key}' for method '{name}'. Its parameters: "
                    f"{', '.join(f'{k}={v!r}' for k, v in obj.default_params.items()) or '(none)'}."
                )
            params[key] = coerce_param(name, key, value, params[key])
        access = requires_for(obj, params)
        if not set(access) <= set(obj.requires):
            raise BenchError(f"Method '{name}' asked for {sorted(access)} beyond its declared requires {sorted(obj.requires)}.")
        plans.append(MethodPlan(name, obj, params, tuple(sorted(access)), entry.origin))
    return plans


def params_for_dataset(m: MethodPlan, dataset: str, given: dict) -> dict:
    """A method's params on one dataset: its defaults < its optional ``dataset_params[NAME]`` (NAME
    = the dataset spec before any colon) < what the user gave (``-p``, TOML, ``--params``)."""
    per = dataset_params(m.obj, dataset.partition(":")[0])
    return {**m.params, **{k: _plain(v) for k, v in per.items() if k in m.params and k not in given}}


def _plain(value: Any) -> Any:
    """A NumPy scalar in a plugin's defaults (``np.float32(0.01)``) as the Python number it holds:
    its type decides how a ``-p`` value is read, and ``-p m.lr=0.05`` was refused as "not a
    number", the default itself as out of range (found in review); the kit still asks for plain values."""
    item = getattr(value, "item", None)
    return item() if type(value).__module__ == "numpy" and callable(item) and getattr(value, "ndim", None) == 0 else value


def resolve_model(registry: Registry, spec: str) -> tuple[Any, str | None, str]:
    """(model plugin object, its argument, origin) for ``NAME`` or ``NAME:ARG``; families claim bare names."""
    name, sep, arg = spec.partition(":")
    if name in registry.names("model"):
        entry = registry.entry("model", name)
        return entry.obj, (arg or None), entry.origin
    if not sep:
        for entry in registry.entries("model"):
            if hasattr(entry.obj, "claims") and entry.obj.claims(name):
                return entry.obj, name, entry.origin
    registry.entry("model", name)  # raises: unknown, with suggestions
    raise AssertionError  # pragma: no cover


def check_ray_address(address: str | None) -> None:
    if not address or address == "auto":  # '' is 'local' (bench.core.options): a local Ray of bench's own
        return
    env = address == os.environ.get("RAY_ADDRESS")  # the option's default: say where the value came from
    flag = "--ray-address (here from the environment variable RAY_ADDRESS)" if env else "--ray-address"
    drop = "unset RAY_ADDRESS (or set it to local)" if env else "drop --ray-address"
    if address.lower().startswith(("http://", "https://")):
        raise BenchError(f"{flag} '{address}' is the address of Ray's dashboard and job server (what `ray job submit` "
                         f"takes); bench joins a cluster at its head's address, HOST:PORT (port 6379 by default), or "
                         f"'auto' on a node of the cluster.")
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:  # 99999 read as "Connection refused"
        raise BenchError(f"Bad {flag} '{address}': expected HOST:PORT of a Ray head (e.g. 127.0.0.1:6379; a port "
                         f"in 1..65535), 'auto', or 'local' for a local Ray of bench's own.")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise BenchError(f"No Ray head answers at {address} ({exc}), given by {flag}. Start one with `ray start --head` "
                         f"or {drop} to start a local Ray.") from None


def request_kinds(spec: ForgetSpec) -> set[str]:
    """The ``ForgetRequest.kind`` values a forget spec hands to a method."""
    if spec.kind == "seq":
        return {"class"} if spec.labels is not None else {"random"}
    return {spec.kind}


def check_forget_kinds(methods: list[MethodPlan], forgets: list[ForgetSpec]) -> None:
    """Refuse a forget request of a kind a method does not take (``forget_kinds``), before any work."""
    for m in methods:
        takes = forget_kinds(m.obj)
        for f in forgets:
            bad = request_kinds(f) - takes
            if bad:
                raise BenchError(
                    f"Method '{m.name}' cannot take {'/'.join(sorted(bad))} requests ('{f.text}'): it takes "
                    f"{', '.join(sorted(takes))} requests only. Use e.g. --forget class:3, or drop it from --methods.")


def named_methods(patterns) -> set[str]:
    """The method names given literally (not through a wildcard) in ``--methods``."""
    items = patterns.split(",") if isinstance(patterns, str) else list(patterns)
    return {p.strip() for p in items if p.strip() and not any(c in p for c in "*?[")}


def takes_requests(m: MethodPlan, forgets: list[ForgetSpec]) -> bool:
    """Whether the method takes every request of ``forgets``: a wildcard (``--methods '*'``) leaves
    the others out (``bench.run.runner`` says which); a name given literally is checked instead."""
    kinds = set().union(*(request_kinds(f) for f in forgets)) if forgets else set()
    continual_ok = continual_support(m.obj)[0] or not any(f.kind == "seq" for f in forgets)
    return kinds <= forget_kinds(m.obj) and continual_ok


def check_continual(methods: list[MethodPlan], forgets: list[ForgetSpec]) -> None:
    """Refuse ``seq:`` requests for methods that declare ``continual = False`` (before any work)."""
    seq = [f.text for f in forgets if f.kind == "seq"]
    if not seq:
        return
    for m in methods:
        ok, note = continual_support(m.obj)
        if not ok:
            raise BenchError(
                f"Method '{m.name}' cannot take continual requests ({', '.join(seq)}): {note.rstrip('.')}. "
                f"Use a single request (e.g. random:20), or another method (bench run: drop it from --methods)."
            )


def resolve_originals(opts: RunOptions) -> dict[str, str]:
    """``--original`` as ``{model spec: path}``: a bare PATH (key ``""``) goes to the one ``--model``;
    every key names a given model spec and every file exists. Replaces ``opts.original`` with it, so
    the run records the model each file is for."""
    given = dict(opts.original or {})
    if "" in given:
        if len(opts.models) != 1:
            raise BenchError(f"--original {given['']} names no model, but there are {len(opts.models)} --model specs "
                             f"({', '.join(opts.models)}): write --original MODEL=PATH for each, e.g. "
                             f"--original {opts.models[0]}={given['']}.")
        if opts.models[0] in given:
            raise BenchError(f"--original is given twice for model '{opts.models[0]}'; give one file per --model.")
        given[opts.models[0]] = given.pop("")
    for model, path in given.items():
        if model not in opts.models:
            raise BenchError(f"--original {model}={path} names model '{model}', which is not a --model (given: "
                             f"{', '.join(opts.models)}). Use one of those specs as written, or ./{model}={path} for a "
                             f"file whose name holds '='.")
        p = Path(path).expanduser()
        if not p.is_file():
            what = "a directory, not a file" if p.is_dir() else "no such file"
            relative = "" if p.is_absolute() else (f" (a relative path, from --original or an experiment file's original, is "
                                                   f"taken from the current directory, {os.getcwd()})")
            raise BenchError(f"--original {p} (for --model {model}): {what}{relative}. Give the path of a .safetensors or "
                             f"torch state-dict file.")
    opts.original = given
    return given


def validate_options(registry: Registry, opts: RunOptions) -> tuple[list[MethodPlan], list[ForgetSpec], str]:
    """Cheap checks, in the order a user would fix them. Returns methods, forget specs, tracking URI."""
    check_utf8_options(opts.as_dict())
    methods = resolve_methods(registry, opts)
    for spec in opts.datasets:
        registry.entry("dataset", spec.partition(":")[0])
    for m in methods:  # the method's own check of its values, per dataset (dataset_params), before any work
        for spec in opts.datasets:
            given = opts.params.get(m.name, {})
            check_params(m.name, m.obj, params_for_dataset(m, spec, given), given=given.keys())
    if opts.attacks:
        registry.resolve("attack", opts.attacks)
    check_shadow_models(registry, opts.attacks, opts.shadow_models)
    resolve_originals(opts)
    forgets = [parse_forget(f) for f in opts.forgets]
    if len(set(opts.forgets)) != len(opts.forgets):
        raise BenchError("A forget request is given twice.")
    same = [(a.text, b.text) for i, a in enumerate(forgets) for b in forgets[i + 1:]
            if dataclasses.replace(a, text="") == dataclasses.replace(b, text="")]
    if same:  # random:10% and random:0.1 ran every trial twice (hostile audit, 2026-12-07)
        raise BenchError(f"The forget requests {same[0][0]} and {same[0][1]} are the same request written two ways; "
                         f"give it once.")
    for what, flag, given in (("dataset", "--dataset", opts.datasets), ("model", "--model", opts.models)):
        given = [g.removesuffix(":") for g in given]  # `synthetic:` is `synthetic`: its trials ran twice
        twice = sorted({g for g in given if list(given).count(g) > 1})
        if twice:  # --dry-run planned the trials twice, the run once
            raise BenchError(f"The {what} {', '.join(twice)} is given twice ({flag}); give each once.")
    build_recipe(opts.recipe)  # keys and values
    if opts.executor not in EXECUTORS:
        raise BenchError(f"Unknown executor '{opts.executor}': expected one of {', '.join(EXECUTORS)}.")
    check_forget_seed(opts.forget_seed)
    drawn = [f for f in forgets if f.kind == "random" or (f.kind == "seq" and f.labels is None)]
    if opts.forget_seed is not None and not drawn:  # accepted and printed in the plan, with nothing drawn by it
        raise BenchError(f"--forget-seed {opts.forget_seed} has no effect: {', '.join(f.text for f in forgets)} draw(s) "
                         "nothing at random (a class or indices request names its points); drop it.")
    check_resources(opts.cpus_per_trial, opts.gpus_per_trial, opts.ray_address)
    check_trial_timeout(opts.trial_timeout)
    check_validation(opts.validation)
    if opts.device not in ("auto", "cpu", "cuda") and not opts.device.startswith("cuda:"):
        raise BenchError(f"Unknown device '{opts.device}': expected auto, cpu or cuda.")
    if opts.executor == "local" and opts.ray_address:
        raise BenchError("--ray-address needs the ray executor (drop --executor local).")
    dropped = [m.name for m in methods if m.name not in named_methods(opts.methods) and not takes_requests(m, forgets)]
    methods = [m for m in methods if m.name not in dropped]
    unused = sorted(set(opts.params) & set(dropped))
    if unused:  # -m '*' -p unsir.lr=0.1 ran without unsir and the -p, without a word (hostile audit, 2026-12-07)
        raise BenchError(f"Parameters given for method(s) {', '.join(unused)}, which --methods '{opts.methods}' leaves out "
                         f"here (they cannot take {', '.join(f.text for f in forgets)}): drop them, or name the "
                         f"method in --methods to see why it cannot run.")
    if not methods:
        raise BenchError(f"No method selected by '{opts.methods}' can take the forget requests "
                         f"{', '.join(f.text for f in forgets)}; see `bench list methods`.")
    check_forget_kinds(methods, forgets)
    check_continual(methods, forgets)
    check_ray_address(opts.ray_address)
    check_name("--experiment", opts.experiment)
    if opts.run_name is not None:
        check_name("--run-name", opts.run_name)
    uri = resolve_tracking_uri(opts.tracking_uri)
    # the resolved paths too: the default store under a folder whose name is not UTF-8 (the options were
    # checked, the current directory was not: a traceback after loading the data; diff review)
    check_utf8_options({"tracking_uri": uri, "cache_dir": str(resolve_cache_dir(opts)),
                        "data_dir": str(resolve_data_dir(opts))}, resolved=True)
    forgets = [fetch_forget_run(f, uri) if f.run_id else f for f in forgets]
    for flag, value in (("--cache-dir", opts.cache_dir), ("--data-dir", opts.data_dir)):
        if value is not None and not str(value).strip():  # it fell back to the shared default directory
            raise BenchError(f"Empty {flag}: expected a directory; drop it to use the default "
                             f"({resolve_cache_dir(RunOptions()) if flag == '--cache-dir' else default_data_dir()}).")
    # last: the only check that creates something (the empty directory; not in a dry run)
    source = "" if opts.cache_dir else " (the default, from XDG_CACHE_HOME)" if os.path.isabs(
        os.environ.get("XDG_CACHE_HOME", "")) else \
        " (the default)"
    check_dir("--cache-dir", resolve_cache_dir(opts), create=not opts.dry_run, source=source)
    check_data_dir(resolve_data_dir(opts), opts.download)
    return methods, forgets, uri


def fetch_forget_run(spec: ForgetSpec, uri: str) -> ForgetSpec:
    """``indices:RUN_ID``: the forget set a trial of the tracking store ``uri`` logged (its artifact
    ``forget_indices.txt``), as the spec's ``content``; one-line BenchError when there is no such run
    or artifact. Checked against the dataset (range, duplicates, size) when the plan selects it."""
    import dataclasses
    import tempfile

    run_id = spec.run_id
    where = f"Forget request '{spec.text}'"
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise BenchError(f"{where}: no file named {run_id}, and the tracking store {shown_uri(uri)} does not exist yet, so it holds no "
                         f"run {run_id}. Pass --tracking-uri of the store that ran that trial, or a file of indices.")
    from mlflow.tracking import MlflowClient

    from bench.track.tracking import configure_environment

    configure_environment()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bar for one small file
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except Exception:  # MlflowException (RESOURCE_DOES_NOT_EXIST) or a store error
        raise BenchError(f"{where}: no file named {run_id} and no run {run_id} in the tracking store {shown_uri(uri)}. Give the run id "
                         f"of a trial (MLflow UI, or `bench compare`), with --tracking-uri of its store, or a file of "
                         f"indices.") from None
    if run.data.tags.get(Tag.ROLE) == "parent":
        try:
            kids = client.search_runs([run.info.experiment_id], f"tags.`{Tag.PARENT}` = '{run_id}'", max_results=50,
                                      order_by=["attributes.start_time ASC"])
        except Exception:  # a store that cannot filter: the message without the list
            kids = []
        listed = "; ".join(f"{k.data.tags.get(Tag.METHOD, '?')} seed {k.data.tags.get(Tag.SEED, '?')} "
                           f"{k.data.tags.get(Tag.FORGET, '')}: {k.info.run_id}".replace("  ", " ") for k in kids[:6])
        more = f" (and {len(kids) - 6} more)" if len(kids) > 6 else ""
        trials = f" Its trials: {listed}{more}." if kids else ""
        raise BenchError(f"{where}: run {run_id} is the parent run of a bench run, not a trial; give the id of one of its "
                         f"trial runs (each logs its forget set as {INDICES_ARTIFACT}).{trials}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            text = Path(client.download_artifacts(run_id, INDICES_ARTIFACT, tmp)).read_text()
    except Exception:
        why = {"FAILED": "it failed before it logged its forget set",
               "KILLED": "it was cut off before it logged its forget set",
               "RUNNING": "it is still running, or its driver died, and has not logged its forget set yet",
               }.get(run.info.status, "trials log it since bench records forget sets; an older run does not have it")
        raise BenchError(f"{where}: run {run_id} has no artifact {INDICES_ARTIFACT} ({why}). Give another trial's run "
                         f"id, or a file of indices.") from None
    return dataclasses.replace(spec, content=text, source=f"the forget set of run {run_id}")


def resolve_cache_dir(opts: RunOptions) -> Path:
    # absolute: Ray Tune's storage path lives under it, and Ray workers do not share the driver's cwd
    return (Path(opts.cache_dir).expanduser() if opts.cache_dir else default_cache_dir()).absolute()


def resolve_data_dir(opts: RunOptions) -> Path:
    return (Path(opts.data_dir).expanduser() if opts.data_dir else default_data_dir()).absolute()


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME", "")  # a relative value is ignored, as the XDG spec says (dataset audit)
    base = base if os.path.isabs(base) else os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "unlearning-bench" / "data"


