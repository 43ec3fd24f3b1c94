"""What a cached model was trained with, beyond its data, model, recipe and seed: part of every
reference cache key (originals, retrained references, shadow models, methods' own originals).

A cached model is reused only by a run that would have trained the same weights. Besides the
document's data digest, model spec, recipe and seed, the weights depend on

- bench's own training code: the training loop, schedules, augmentation, the built-in model
  definitions, shadow and own-original training. Its digest is taken over the modules' syntax
  trees without docstrings (a comment, a docstring or a moved line changes nothing; any change of
  code does). Until 2026-12-06 the key held none of it: a reference cached before a fix of the
  training code (e.g. the 1-epoch ``step`` schedule, 2026-12-05) was reused after it, with
  numbers the fixed code does not give;
- torch's version (kernels and their reduction order change between releases);
- the device type (``cpu``, ``cuda``...: a GPU-trained reference differs from a CPU-trained one,
  so a CPU run reusing it did not reproduce a CPU run on an empty cache) and, on the CPU, the
  thread count (reductions split over threads round differently: ``retrain`` reproduced its
  reference bit for bit only with the thread count it was trained with) and the CPU kernel level
  torch dispatches to (``torch.backends.cpu.get_cpu_capability()``: AVX2 and AVX512 kernels give
  other last digits; until 2026-12-06 not in the key, so a cache shared across CPUs mixed them);
  on a GPU, its model, compute capability and cuDNN version (likewise mixed across GPUs until
  2026-12-06);
- a model plugin's name, version and code (its code is not bench's; until 2026-12-06 the name and
  version alone, so an edit of the plugin under the same version reused stale references).

It also holds :func:`measured_with`, a trial's code identity (not part of the trial key): what
``--resume`` and ``bench compare`` compare so that trials measured before and after a change of a
plugin, of bench or of torch are never taken for one measurement.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

#: bench's modules whose code decides the weights of a model it trains and caches.
TRAINING_MODULES = (
    "bench.core.recipe",
    "bench.nn.augment",
    "bench.nn.models",
    "bench.nn.nets",
    "bench.nn.resnet_cifar",
    "bench.nn.training",
    "bench.eval.shadows",
    "bench.run.method_training",
    "bench.run.references",
)


def code_digest(source: str) -> str:
    """SHA-256 of ``source``'s syntax tree without docstrings and positions: changes with the code,
    not with comments, docstrings, blank lines or formatting."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


@lru_cache(maxsize=None)
def module_digest(name: str) -> str:
    """:func:`code_digest` of module ``name``'s source file, read without importing it ("" when it has
    no Python source, e.g. a compiled extension)."""
    spec = importlib.util.find_spec(name)
    path = getattr(spec, "origin", None) if spec is not None else None
    if not path or not path.endswith(".py"):
        return ""
    with open(path, encoding="utf-8") as fh:
        return code_digest(fh.read())


def training_code_digest() -> str:
    """One digest over :data:`TRAINING_MODULES` (16 hex digits)."""
    joined = "|".join(f"{m}={module_digest(m)}" for m in TRAINING_MODULES)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def object_code_digest(obj: Any) -> str:
    """The code of the plugin defining ``obj``'s class (16 hex digits; "" when not found): for a
    third-party plugin every source file of its top-level package (its helper modules too: a fix
    there kept the trials measured before it), up to :data:`MAX_PACKAGE_FILES` files, else the module
    alone; for bench's built-ins the module's syntax tree (their helpers are in
    :func:`bench_code_digest`, and a comment does not retrain a method's own original)."""
    module = getattr(type(obj), "__module__", None) if not isinstance(obj, type) else obj.__module__
    if not module or module == "builtins":
        module = getattr(obj, "__module__", None)
    if not module:
        return ""
    try:
        top = module.partition(".")[0]
        package = _package_digest(top) if top != "bench" else ""
        return package or module_digest(module)[:16]
    except (ImportError, OSError, SyntaxError, ValueError):
        return ""


@lru_cache(maxsize=None)
def _package_digest(top: str) -> str:
    """SHA-256 over the files of package ``top`` (16 hex digits), once per process (every trial of a
    plan asks): its source files, and its data files (JSON, YAML, weights... read by its code: a
    model plugin scaling its initial weights by a value in its package's ``scale.json`` kept its
    cached references when the value changed, the retrain method 0.225 away from its own reference,
    exit 0; found in review, 2026-12-07), each data file by content up to :data:`MAX_DATA_BYTES` in
    all, then by name and size. "" for a plain module or a package of more than
    :data:`MAX_PACKAGE_FILES` source files."""
    spec = importlib.util.find_spec(top)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    found = sorted((p.relative_to(folder), p) for folder in folders for p in Path(folder).rglob("*") if p.is_file()
                   and not any(part == "__pycache__" or part.startswith(".") for part in p.relative_to(folder).parts)
                   and not _written_at_run_time(p.name))
    files = [p for _, p in found if p.suffix == ".py"]
    if not folders or len(files) > MAX_PACKAGE_FILES:
        return ""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    budget = MAX_DATA_BYTES
    for name, path in ((n, p) for n, p in found if p.suffix != ".py"):
        try:  # a data file that vanished or cannot be read enters by name (it emptied the whole digest)
            size = path.stat().st_size
            h.update(f"{name.as_posix()}\0{size}\0".encode())
            if size <= budget:
                budget -= size
                h.update(path.read_bytes() + b"\0")
        except OSError:
            h.update(f"{name.as_posix()}\0unreadable\0".encode())
    return h.hexdigest()[:16]


#: files in a plugin's package that are written while it runs, not data it reads: compiled
#: modules, logs, editor and patch leftovers, bench's own outputs when run from inside the package
#: (a log the plugin appended to at every import retrained its references at every run; diff
#: review, 2026-12-07)
RUN_TIME_SUFFIXES = (".pyc", ".pyo", ".log", ".tmp", ".bak", ".swp", ".swo", ".orig", ".rej", ".lock", ".db",
                     ".db-journal", ".db-wal", ".db-shm", "~")
RUN_TIME_NAMES = re.compile(r"^(best-params-.*\.json|compare-.*\.(png|svg|pdf)|.*\.partial\.json)$")


def _written_at_run_time(name: str) -> bool:
    return name.endswith(RUN_TIME_SUFFIXES) or bool(RUN_TIME_NAMES.match(name))


#: the most source files of a plugin's package :func:`object_code_digest` reads (a plugin defined
#: inside a large library: its defining module alone)
MAX_PACKAGE_FILES = 500

#: the bytes of a plugin package's data files read by content (the rest: by name and size)
MAX_DATA_BYTES = 64 << 20


def model_provenance(obj: Any, origin: str, plugins: dict[str, str], versions: dict[str, str], net: Any = None) -> str:
    """What versions a model's architecture beyond bench's own code: a model plugin's name, version
    and code (:func:`object_code_digest`: an edit of its ``create`` under the same version reused
    the references cached before it, exit 0) and, given ``net`` (the instance it builds on the
    dataset), :func:`network_digest`; timm's version for bench's ``timm`` family (its bare names
    too), "" for bench's own networks. ``obj``: the registered model plugin; ``origin``: the
    plugin that registered it."""
    if not origin.startswith("bench."):
        return " ".join(filter(None, (origin, plugins.get(origin) or "", object_code_digest(obj),
                                      network_digest(net) if net is not None else "")))
    if getattr(obj, "name", "") == "timm":
        return f"timm {versions.get('timm', '')}".strip()
    return ""


#: packages whose module classes are versioned (torch, timm: their versions are in the key) or are
#: bench's own (its training code digest): not read again by :func:`network_digest`
VERSIONED_PACKAGES = frozenset({"torch", "timm", "bench", "builtins"})


def network_digest(net: Any) -> str:
    """What a model plugin's ``create`` built, beyond the plugin's own package (16 hex digits): the
    network's printed structure (memory addresses left out), its state dict's names, shapes and
    dtypes, and the code of every package outside torch, timm and bench that defines one of its
    module classes. A plugin that builds its network through another package (a thin plugin over a
    research codebase) kept its cached references when that package changed (ReLU to Tanh: cache
    hits, the retrain method 2.3e-4 away from its own reference, exit 0; found in review); and the
    network's initial values (:func:`initial_values`). Not covered: plain functions of another
    package called in a forward defined in the plugin, files read by a forward outside the plugin's
    package."""
    import re

    from bench.run.model_probe import state_layout

    layout = state_layout(net)
    classes = {f"{type(m).__module__}.{type(m).__qualname__}": type(m) for m in net.modules()}
    foreign = [f"{name}={object_code_digest(cls)}" for name, cls in sorted(classes.items())
               if cls.__module__.partition(".")[0] not in VERSIONED_PACKAGES]
    text = json.dumps([re.sub(r"0x[0-9a-fA-F]+", "0x", repr(net)), layout, foreign, initial_values(net)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def initial_values(net: Any) -> str:
    """SHA-256 over the values of ``net``'s state dict: the plan builds it after
    ``torch.manual_seed(0)`` (``bench.run.model_probe.probe_model``), so the same code gives the same
    values, and a ``create`` that starts from a file (``--model NAME:PATH``, new content at the same
    path) or scales its initialisation by a setting read from disk gives others: both kept their
    cached references, exit 0 (found in review, 2026-12-07)."""
    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for name, value in net.state_dict().items():
            try:
                dense = value.to_dense() if value.layout != torch.strided else value  # a sparse buffer (diff review)
                data = dense.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            except (AttributeError, RuntimeError, TypeError):  # not a plain tensor: by its printed form
                data = repr(value).encode()
            h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def trained_with(device: str, threads: int, model: str = "") -> dict[str, Any]:
    """The ``trained_with`` entry of a cache document (see the module docstring); ``model``: the
    :func:`model_provenance` of the model."""
    import torch

    kind = str(device).split(":")[0]
    doc: dict[str, Any] = {"code": training_code_digest(), "torch": torch.__version__, "device": kind}
    if kind == "cpu":
        doc["threads"] = max(1, int(threads))
        # the kernel level torch dispatches to (AVX2, AVX512...): a cache shared by nodes of
        # different CPUs reused references trained with other kernels (the same key, other weights
        # in the last digits; found in review)
        doc["cpu"] = torch.backends.cpu.get_cpu_capability()
    elif kind == "cuda" and torch.cuda.is_available():
        # the GPU's model and compute capability and cuDNN's version: kernels (and their reduction
        # order) differ between them, so a cache shared by A100 and H100 nodes mixed their weights
        # under one key, as it mixed CPU kernel levels (found in review)
        index = torch.device(device).index or 0
        major, minor = torch.cuda.get_device_capability(index)
        doc["gpu"] = f"{torch.cuda.get_device_name(index)} sm_{major}{minor} cudnn {torch.backends.cudnn.version()}"
    if model:
        doc["model"] = model
    return doc


#: bench's packages whose code decides a trial's numbers (the method's context, training,
#: evaluation, the attacks' harness, the trial itself, the built-in methods and attacks with their
#: helper modules): part of :func:`measured_with`.
MEASURING_PACKAGES = ("bench.core", "bench.eval", "bench.nn", "bench.run", "bench.methods", "bench.attacks")

#: the packages whose versions decide a trial's numbers (recorded in full with every run).
NUMERIC_PACKAGES = ("torch", "numpy", "scikit-learn", "scipy", "highspy", "timm")  # scipy, highspy: PRUNE's LP solvers


@lru_cache(maxsize=1)
def bench_code_digest() -> str:
    """SHA-256 over the source files of :data:`MEASURING_PACKAGES`, subpackages included (16 hex
    digits): their bytes, not their syntax trees (5 ms instead of 0.4 s, paid by every run; a
    comment changes it, which only re-runs what ``--resume`` would have kept)."""
    h = hashlib.sha256()
    for package in MEASURING_PACKAGES:
        spec = importlib.util.find_spec(package)
        for folder in sorted(spec.submodule_search_locations or []):
            root = Path(folder)
            for path in sorted(root.rglob("*.py")):
                h.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode() + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def measured_with(method: tuple[str, Any], attacks: dict[str, tuple[str, Any]], model: str, own_original: str,
                  plugins: dict[str, str], versions: dict[str, str]) -> str:
    """A trial's code identity (16 hex digits): bench's measuring code, the numeric packages'
    versions, its method's plugin (name, version, the code of the module defining it) and its
    attacks', the model's provenance and how a method trains its own original (``own_original``:
    its ``train_version`` and training params, the same for every seed; its cache key, which holds
    the seed, made each seed of SISA a variant of its own in ``bench compare``). Not part of
    the trial key: ``--resume`` keeps a finished trial only when its recorded identity is this one
    (a trial measured before a plugin or bench was changed was kept beside trials measured after,
    and their metrics averaged as seeds of one method)."""
    def plugin(origin: str, obj: Any) -> list[str]:
        return [origin, plugins.get(origin, ""), object_code_digest(obj)]

    doc = {"bench": bench_code_digest(), "packages": {k: versions.get(k, "") for k in NUMERIC_PACKAGES},
           "method": plugin(*method), "attacks": {n: plugin(*a) for n, a in sorted(attacks.items())},
           "model": model, "own_original": own_original}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
