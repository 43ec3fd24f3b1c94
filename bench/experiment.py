"""The experiment: options from the command line and/or a TOML file, validated and planned.

``validate_options`` checks everything that needs no heavy import (names, parameters, forget
syntax, recipe keys, tracking store, Ray address) so argument errors answer at once;
``make_plan`` then loads the datasets, selects the forget indices and dry-runs each model on
two inputs, still before any training. Trials = methods x seeds x datasets x models x forget
requests; a *group* is one (dataset, model, forget request, seed): its trials share the
original model and the retrained reference.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import BenchError
from .forget import ForgetSpec, parse_forget
from .recipe import build_recipe, parse_assignments
from .registry import Registry

DEFAULT_METHODS = "retrain,ft,ga"
DEFAULT_ATTACKS = "loss,entropy,svc"  # the cheap ones (bench.attacks.CHEAP); "" runs none
DEFAULT_SHADOW_MODELS = 8
EXECUTORS = ("ray", "local")


@dataclass
class RunOptions:
    methods: str = DEFAULT_METHODS
    datasets: list[str] = field(default_factory=lambda: ["digits"])
    models: list[str] = field(default_factory=lambda: ["mlp"])
    forgets: list[str] = field(default_factory=lambda: ["random:10%"])
    seeds: list[int] = field(default_factory=lambda: [0])
    forget_seed: int | None = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    attacks: str = DEFAULT_ATTACKS
    shadow_models: int = DEFAULT_SHADOW_MODELS
    executor: str = "ray"
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    device: str = "auto"
    tracking_uri: str | None = None
    experiment: str = "unlearning-bench"
    run_name: str | None = None
    cache_dir: str | None = None
    data_dir: str | None = None
    download: bool = False
    resume: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- parsing helpers --------------------------------------------------------------------------

def parse_seeds(value: str | int | list) -> list[int]:
    """``"0,1,2"``, ``"0-4"`` or a list -> ``[0, 1, 2]``."""
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        items = [v.strip() for v in str(value).split(",") if v.strip()]
    seeds: list[int] = []
    try:
        for item in items:
            if "-" in item[1:]:
                lo, hi = item.split("-", 1)
                if int(hi) < int(lo):
                    raise BenchError(f"Bad seeds '{value}': the range {item} is empty (write it low-high, e.g. 0-4).")
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(item))
    except ValueError:
        raise BenchError(f"Bad seeds '{value}': expected integers such as 0,1,2 or a range 0-4.") from None
    if not seeds or any(s < 0 for s in seeds):
        raise BenchError(f"Bad seeds '{value}': expected non-negative integers such as 0,1,2 or 0-4.")
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


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read an experiment file; its keys mirror the ``bench run`` options (see README)."""
    import tomllib

    p = Path(path).expanduser()
    if not p.is_file():
        raise BenchError(f"Experiment file not found: {p}.")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"Experiment file {p} is not valid TOML: {exc}.") from None
    return data


TOML_KEYS = {
    "methods": "methods", "dataset": "datasets", "model": "models", "forget": "forgets", "seeds": "seeds",
    "forget_seed": "forget_seed", "params": "params", "recipe": "recipe", "attacks": "attacks",
    "shadow_models": "shadow_models", "executor": "executor", "ray_address": "ray_address", "cpus_per_trial": "cpus_per_trial",
    "gpus_per_trial": "gpus_per_trial", "device": "device", "tracking_uri": "tracking_uri",
    "experiment": "experiment", "run_name": "run_name", "cache_dir": "cache_dir", "data_dir": "data_dir",
    "download": "download", "resume": "resume",
}

_S, _L, _N = (str,), (str, list), (int, float)
TOML_TYPES = {
    "methods": _L, "dataset": _L, "model": _L, "forget": _L, "seeds": (str, int, list), "forget_seed": (int,),
    "params": (dict,), "recipe": (dict,), "attacks": _L, "shadow_models": (int,), "executor": _S, "ray_address": _S, "cpus_per_trial": _N,
    "gpus_per_trial": _N, "device": _S, "tracking_uri": _S, "experiment": _S, "run_name": _S, "cache_dir": _S,
    "data_dir": _S, "download": (bool,), "resume": (bool,),
}


def merge_options(toml: dict[str, Any] | None, cli: dict[str, Any]) -> RunOptions:
    """Defaults < TOML file < command line (only options given explicitly)."""
    opts = RunOptions()
    layers = []
    if toml:
        unknown = set(toml) - set(TOML_KEYS)
        if unknown:
            raise BenchError(f"Unknown keys in the experiment file: {', '.join(sorted(unknown))}. Valid keys: {', '.join(TOML_KEYS)}.")
        for k, v in toml.items():
            want = TOML_TYPES[k]
            bad = not isinstance(v, want) or (isinstance(v, bool) and bool not in want)
            if k == "params" and not bad:
                bad = not all(isinstance(p, dict) for p in v.values())
            if bad:
                raise BenchError(f"Bad value in the experiment file: {k} = {v!r} (expected {' or '.join(t.__name__ for t in want)}).")
        layers.append({TOML_KEYS[k]: v for k, v in toml.items()})
    layers.append({k: v for k, v in cli.items() if v is not None})
    for layer in layers:
        for key, value in layer.items():
            if key in ("datasets", "models", "forgets") and isinstance(value, str):
                value = [value]
            if key == "methods" and isinstance(value, (list, tuple)):
                value = ",".join(value)
            if key == "attacks" and isinstance(value, (list, tuple)):
                value = ",".join(value)
            if key == "seeds":
                value = parse_seeds(value)
            if key in ("params", "recipe"):
                merged = dict(getattr(opts, key))
                for k, v in value.items():
                    merged[k] = {**merged.get(k, {}), **v} if key == "params" else v
                value = merged
            setattr(opts, key, value)
    return opts


# -- validation without heavy imports ------------------------------------------------------

@dataclass
class MethodPlan:
    name: str
    obj: Any
    params: dict[str, Any]
    access: tuple[str, ...]
    origin: str


def _coerce_param(method: str, key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if not isinstance(value, str):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = {bool: isinstance(value, bool), int: number and float(value).is_integer(), float: number, str: False}.get(kind, True)
        if not ok:
            raise BenchError(f"Bad value for {method}.{key}: {value!r} is not a {kind.__name__} (default {default!r}).")
        return kind(value) if kind in (int, float) else value
    try:
        if kind is bool:
            low = value.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
    except ValueError:
        raise BenchError(f"Bad value for {method}.{key}: {value!r} is not a {kind.__name__} (default {default!r}).") from None
    return value


def resolve_methods(registry: Registry, opts: RunOptions) -> list[MethodPlan]:
    names = registry.resolve("method", opts.methods)
    for method in opts.params:
        if method not in names:
            raise BenchError(
                f"--param given for method '{method}', which is not selected (selected: {', '.join(names)})."
            )
    plans = []
    for name in names:
        entry = registry.entry("method", name)
        obj = entry.obj
        params = dict(obj.default_params)
        for key, value in opts.params.get(name, {}).items():
            if key not in params:
                raise BenchError(
                    f"Unknown parameter '{key}' for method '{name}'. Its parameters: "
                    f"{', '.join(f'{k}={v!r}' for k, v in obj.default_params.items()) or '(none)'}."
                )
            params[key] = _coerce_param(name, key, value, params[key])
        access = obj.requires_for(params) if hasattr(obj, "requires_for") else obj.requires
        if not set(access) <= set(obj.requires):
            raise BenchError(f"Method '{name}' asked for {sorted(access)} beyond its declared requires {sorted(obj.requires)}.")
        plans.append(MethodPlan(name, obj, params, tuple(sorted(access)), entry.origin))
    return plans


def params_for_dataset(m: MethodPlan, dataset: str, given: dict) -> dict:
    """A method's params on one dataset: its defaults < its optional ``dataset_params[NAME]`` (NAME
    = the dataset spec before any colon) < what the user gave (``-p``, TOML, ``--params``)."""
    per = (getattr(m.obj, "dataset_params", None) or {}).get(dataset.partition(":")[0], {})
    return {**m.params, **{k: v for k, v in per.items() if k in m.params and k not in given}}


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


def resolve_tracking_uri(uri: str | None, writable: bool = True) -> str:
    """The MLflow store: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///$PWD/mlflow.db``.
    Readers (``bench compare``, ``bench ui``) pass ``writable=False``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not path.is_absolute():
            path = Path.cwd() / path
        if not path.parent.is_dir():
            raise BenchError(f"Tracking store {uri}: the directory {path.parent} does not exist. Create it or pass another --tracking-uri.")
        if writable and not os.access(path.parent, os.W_OK):
            raise BenchError(f"Tracking store {uri}: the directory {path.parent} is not writable.")
        return f"sqlite:///{path}"
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        import urllib.request

        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as resp:
                resp.read()
        except Exception as exc:
            raise BenchError(
                f"MLflow tracking server {uri} does not answer ({exc}). Start it (mlflow server --host 127.0.0.1 ...) "
                f"or drop --tracking-uri to use a local SQLite store."
            ) from None
        return uri
    if parsed.scheme in ("file", "") or parsed.scheme.startswith(("postgresql", "mysql", "databricks")):
        return uri
    raise BenchError(f"Unsupported tracking URI '{uri}': use sqlite:///PATH, http(s)://HOST:PORT or another MLflow store URI.")


def check_ray_address(address: str | None) -> None:
    if not address or address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise BenchError(f"Bad --ray-address '{address}': expected HOST:PORT of a Ray head (e.g. 127.0.0.1:6379) or 'auto'.")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise BenchError(f"No Ray head answers at {address} ({exc}). Start one with `ray start --head` or drop --ray-address.") from None


def validate_options(registry: Registry, opts: RunOptions) -> tuple[list[MethodPlan], list[ForgetSpec], str]:
    """Cheap checks, in the order a user would fix them. Returns methods, forget specs, tracking URI."""
    methods = resolve_methods(registry, opts)
    for spec in opts.datasets:
        registry.entry("dataset", spec.partition(":")[0])
    if opts.attacks:
        registry.resolve("attack", opts.attacks)
    if isinstance(opts.shadow_models, bool) or not isinstance(opts.shadow_models, int) or opts.shadow_models < 2 or opts.shadow_models % 2:
        raise BenchError(f"--shadow-models must be an even integer >= 2 (got {opts.shadow_models!r}): shadow models "
                         "are trained in complementary pairs (e.g. --shadow-models 8).")
    forgets = [parse_forget(f) for f in opts.forgets]
    if len(set(opts.forgets)) != len(opts.forgets):
        raise BenchError("A forget request is given twice.")
    build_recipe(opts.recipe)  # keys and values
    if opts.executor not in EXECUTORS:
        raise BenchError(f"Unknown executor '{opts.executor}': expected one of {', '.join(EXECUTORS)}.")
    if opts.cpus_per_trial <= 0:
        raise BenchError(f"--cpus-per-trial must be positive (got {opts.cpus_per_trial}).")
    if opts.gpus_per_trial < 0:
        raise BenchError(f"--gpus-per-trial must be >= 0 (got {opts.gpus_per_trial}).")
    if opts.device not in ("auto", "cpu", "cuda") and not opts.device.startswith("cuda:"):
        raise BenchError(f"Unknown device '{opts.device}': expected auto, cpu or cuda.")
    if opts.executor == "local" and opts.ray_address:
        raise BenchError("--ray-address needs the ray executor (drop --executor local).")
    from .continual import check_continual

    check_continual(methods, forgets)
    check_ray_address(opts.ray_address)
    uri = resolve_tracking_uri(opts.tracking_uri)
    return methods, forgets, uri


# -- planning (loads data, still no training) ------------------------------------------------

@dataclass
class Group:
    gid: str
    dataset: str
    model: str
    forget: ForgetSpec
    seed: int
    forget_seed: int
    recipe: Any
    forget_idx: Any  # np.ndarray
    original_key: str
    retrain_key: str
    original_doc: dict
    retrain_doc: dict
    steps: list | None = None  # seq: requests, each's training indices (bench.continual)
    step_refs: list | None = None  # seq: (key, doc) of each request's retrained reference


@dataclass
class Plan:
    options: RunOptions
    tracking_uri: str
    methods: list[MethodPlan]
    splits: dict[str, Any]  # dataset spec -> Splits
    models: dict[str, tuple[Any, str | None, str]]  # model spec -> (obj, arg, origin)
    attacks: dict[str, Any]
    groups: list[Group]
    trials: list[dict]
    device: str
    data_dir: str
    cache_dir: str


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "unlearning-bench" / "data"


def resolve_device(opts: RunOptions) -> str:
    import torch

    device = opts.device
    if device == "auto":
        device = "cuda" if opts.gpus_per_trial > 0 else "cpu"
    if device.startswith("cuda"):
        if opts.gpus_per_trial <= 0 and opts.executor == "ray":
            raise BenchError("--device cuda under Ray needs --gpus-per-trial > 0 (fractions such as 0.25 are allowed).")
        if not opts.ray_address and not torch.cuda.is_available():
            raise BenchError("CUDA was requested (--device cuda or --gpus-per-trial > 0) but torch sees no GPU here.")
    return device


def make_plan(registry: Registry, opts: RunOptions, versions: dict[str, str], plugins: dict[str, str]) -> Plan:
    methods, forgets, uri = validate_options(registry, opts)  # cheap checks before any heavy import

    import numpy as np
    import torch

    from .cache import cache_key, default_cache_dir, sha256_bytes, tensor_digest
    from .training import set_threads

    device = resolve_device(opts)
    data_dir = str(Path(opts.data_dir).expanduser() if opts.data_dir else default_data_dir())
    cache_dir = str(Path(opts.cache_dir).expanduser() if opts.cache_dir else default_cache_dir())
    set_threads(opts.cpus_per_trial)

    splits: dict[str, Any] = {}
    digests: dict[str, str] = {}
    for spec in opts.datasets:
        name, _, arg = spec.partition(":")
        ds = registry.get("dataset", name)
        splits[spec] = ds.load(data_dir, opts.download, arg or None)
        digests[spec] = tensor_digest(splits[spec].train_x, splits[spec].train_y)

    models: dict[str, tuple[Any, str | None, str]] = {}
    for spec in opts.models:
        models[spec] = resolve_model(registry, spec)
        obj, arg, _ = models[spec]
        for dspec, sp in splits.items():
            try:
                torch.manual_seed(0)
                net = obj.create(sp.num_classes, tuple(sp.input_shape), arg)
                net.eval()
                with torch.no_grad():
                    out = net(sp.test_x[:2])
            except BenchError:
                raise
            except Exception as exc:
                raise BenchError(
                    f"Model '{spec}' cannot run on dataset '{dspec}' (inputs of shape {tuple(sp.input_shape)}): "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            if tuple(out.shape) != (2, sp.num_classes):
                raise BenchError(f"Model '{spec}' returned shape {tuple(out.shape)} on dataset '{dspec}'; expected (2, {sp.num_classes}).")

    attacks = {n: registry.get("attack", n) for n in (registry.resolve("attack", opts.attacks) if opts.attacks else [])}

    groups: list[Group] = []
    for dspec, sp in splits.items():
        dataset_obj = registry.get("dataset", dspec.partition(":")[0])
        train_y = sp.train_y.numpy()
        for mspec, (mobj, _, _) in models.items():
            recipe = build_recipe(getattr(dataset_obj, "default_recipe", {}), getattr(mobj, "default_recipe", {}), opts.recipe)
            for fspec in forgets:
                for seed in opts.seeds:
                    fseed = opts.forget_seed if opts.forget_seed is not None else seed
                    idx = fspec.select(train_y, sp.num_classes, fseed)
                    base = {
                        "dataset": dspec, "data_sha256": digests[dspec], "model": mspec,
                        "input_shape": list(sp.input_shape), "num_classes": sp.num_classes,
                        "recipe": recipe.as_dict(), "seed": seed,
                    }
                    odoc = {"kind": "original", **base}
                    rdoc = {"kind": "retrain", **base, "forget_sha256": sha256_bytes(np.asarray(idx, np.int64).tobytes())}
                    gid = f"g{len(groups)}"
                    groups.append(Group(gid, dspec, mspec, fspec, seed, fseed, recipe, idx, cache_key(odoc), cache_key(rdoc), odoc, rdoc))
                    if fspec.kind == "seq":  # continual requests: one retrained reference per request
                        from .continual import step_references

                        groups[-1].steps = fspec.select_steps(train_y, sp.num_classes, fseed)
                        groups[-1].step_refs = step_references(groups[-1].steps, base)

    multi = len(opts.datasets) > 1 or len(opts.models) > 1 or len(forgets) > 1
    trials = []
    for group in groups:
        for m in methods:
            name = f"{m.name} seed={group.seed}"
            if multi:
                name += f" {group.dataset} {group.model} {group.forget.text}"
            trials.append({
                "trial_name": name,
                "method": m.name,
                "method_plugin": m.origin,
                "params": params_for_dataset(m, group.dataset, opts.params.get(m.name, {})),
                "data_access": ",".join(m.access),
                "seed": group.seed,
                "forget_seed": group.forget_seed,
                "dataset": group.dataset,
                "data": data_params(splits[group.dataset].info),
                "model": group.model,
                "forget": group.forget.text,
                "forget_size": int(len(group.forget_idx)),
                "group": group.gid,
                "recipe": group.recipe.as_dict(),
                "attacks": ",".join(attacks),
                "shadow_models": opts.shadow_models if any(getattr(a, "needs", ()) for a in attacks.values()) else 0,
                "device": device,
                "threads": max(1, int(opts.cpus_per_trial)),
                "versions": versions,
                "plugins": plugins,
            })
    for spec in trials:
        spec["trial_key"] = trial_key(spec)
    return Plan(opts, uri, methods, splits, models, attacks, groups, trials, device, data_dir, cache_dir)


def data_params(info: dict) -> dict:
    """A dataset's ``Splits.info`` (normalisation, split, input bounds...) as short run params:
    values longer than 250 characters of JSON (per-feature lists) are cut, with their length."""
    out = {}
    for key, value in info.items():
        text = json.dumps(value, default=str)
        out[key] = value if len(text) <= 250 else f"{text[:200]}... ({len(text)} characters)"
    return out


#: What defines a trial's measurement (not where or with which versions it ran).
TRIAL_KEY_FIELDS = ("method", "params", "seed", "forget_seed", "dataset", "model", "forget", "recipe", "attacks", "data_access",
                    "shadow_models")


def trial_key(spec: dict) -> str:
    """Identity of a trial, stable across runs: ``--resume`` skips trials whose key already finished."""
    from .cache import sha256_bytes

    doc = {k: spec[k] for k in TRIAL_KEY_FIELDS}
    return sha256_bytes(json.dumps(doc, sort_keys=True, default=str).encode())[:16]


def plan_key(trials: list[dict]) -> str:
    from .cache import sha256_bytes

    return sha256_bytes(",".join(sorted(t["trial_key"] for t in trials)).encode())[:16]


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"python": sys.version.split()[0], "unlearning-bench": __version__}
    for pkg in ("torch", "torchvision", "timm", "ray", "mlflow", "scikit-learn", "numpy", "pluggy", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


__all__ = ["RunOptions", "Plan", "Group", "MethodPlan", "make_plan", "validate_options", "merge_options"]
