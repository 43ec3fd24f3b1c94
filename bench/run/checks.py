"""Checks of a run's inputs before any work, beyond the names and parameters of ``bench.run.validate``:
names given to MLflow, the forget seed, the resources asked per trial against what the machine
(or the Ray cluster) has, the directories written to, and the data a dataset plugin loaded.

Each raises a one-line :class:`BenchError` (what was wrong, what was expected, what to do). Only
:func:`check_splits` (after loading) and :func:`check_gpus` use torch, and only
:func:`check_cluster_resources` uses ray (once connected): the others answer at once.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.core.fs import probe_write
from bench.core.options import SEED_LIMIT

#: The longest experiment and run names (MLflow's SQL stores keep 256 and 250 characters).
MAX_NAME = {"--experiment": 256, "--run-name": 250}
#: The fewest test rows a dataset may have: the models are checked on two test inputs.
MIN_TEST_ROWS = 2


def check_name(flag: str, value: Any) -> None:
    """An MLflow experiment or run name: a non-empty printable string of sane length."""
    limit = MAX_NAME[flag]
    if not isinstance(value, str) or not value.strip():
        raise BenchError(f"Bad {flag} {value!r}: expected a non-empty name, e.g. {flag} my-study.")
    if not value.isprintable():
        raise BenchError(f"Bad {flag} {value!r}: the name holds control characters (newlines, tabs...); use printable text.")
    if len(value) > limit:
        raise BenchError(f"Bad {flag}: the name has {len(value)} characters; at most {limit} fit in MLflow's store.")


def check_forget_seed(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise BenchError(f"Bad --forget-seed {value!r}: expected an integer in 0..{SEED_LIMIT - 1} (or leave it out: the trial seed).")


def local_cpus() -> int:
    """The CPUs a local Ray would see: the machine's, this process's affinity, a cgroup CPU quota."""
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    try:  # cgroup v2 "max 100000" or "200000 100000"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            counts.append(max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, min(counts))


def _check_amount(flag: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BenchError(f"Bad {flag} {value!r}: expected a finite number, e.g. {flag} 1.")
    if 0 < value < 1e-4:
        raise BenchError(f"Bad {flag} {value:g}: Ray counts resources in steps of 0.0001; use at least 0.0001 (e.g. 0.25).")
    return float(value)


def check_trial_timeout(value: Any) -> None:
    """``--trial-timeout``: none, or a positive number of seconds."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BenchError(f"Bad --trial-timeout {value!r}: expected a number of seconds > 0 (e.g. --trial-timeout 600), "
                         "or leave it out for no limit.")


def check_resources(cpus: Any, gpus: Any, ray_address: str | None) -> None:
    """Per-trial CPUs and GPUs are numbers Ray accepts; on this machine (no ``--ray-address``),
    no more CPUs than it has: Ray would wait forever for a trial that cannot be placed."""
    cpus = _check_amount("--cpus-per-trial", cpus)
    gpus = _check_amount("--gpus-per-trial", gpus)
    if cpus <= 0:
        raise BenchError(f"--cpus-per-trial must be positive (got {cpus:g}).")
    if gpus < 0:
        raise BenchError(f"--gpus-per-trial must be >= 0 (got {gpus:g}).")
    if not ray_address:
        have = local_cpus()
        if cpus > have:
            raise BenchError(f"--cpus-per-trial {cpus:g} is more than this machine has ({have} CPUs): no trial could "
                             f"start. Use --cpus-per-trial {have} or less, or join a larger cluster with --ray-address.")


def check_gpus(gpus: float, ray_address: str | None) -> None:
    """On this machine, no more GPUs per trial than torch sees (imports torch)."""
    if gpus <= 0 or ray_address:
        return
    import torch

    have = torch.cuda.device_count()
    if have == 0:
        raise BenchError(f"--gpus-per-trial {gpus:g} but torch sees no GPU on this machine: drop --gpus-per-trial "
                         f"(and --device cuda) to run on the CPU, or run bench on a machine with a GPU.")
    if gpus > have:
        raise BenchError(f"--gpus-per-trial {gpus:g} is more than this machine has ({have} GPU(s)): no trial could start. "
                         f"Use --gpus-per-trial {have} or less (fractions such as 0.5 share a GPU).")


def check_cluster_resources(cpus: float, gpus: float) -> None:
    """After joining a Ray cluster (``--ray-address``), before any training: one trial must fit on
    one alive node (imports ray; call it once ``ray.init`` has returned)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    best_cpu = max((r.get("CPU", 0) for r in nodes), default=0)
    best_gpu = max((r.get("GPU", 0) for r in nodes), default=0)
    if cpus > best_cpu:
        raise BenchError(f"--cpus-per-trial {cpus:g} is more than any node of the Ray cluster has (at most {best_cpu:g} "
                         f"CPUs on one node): no trial could start. Use --cpus-per-trial {best_cpu:g} or less.")
    if gpus > best_gpu:
        raise BenchError(f"--gpus-per-trial {gpus:g} is more than any node of the Ray cluster has (at most {best_gpu:g} "
                         f"GPUs on one node): no trial could start. Use --gpus-per-trial {best_gpu:g} or less.")


def check_dir(flag: str, path: Path, create: bool = True, source: str = "") -> None:
    """``path`` is (or, with ``create``, becomes) a directory we can write: tested by creating and
    deleting a file in it, not by permission bits (a read-only filesystem, a file in the way).
    Without ``create`` (a dry run) a missing ``path`` is left missing, and its nearest existing
    parent must be a directory we can write (where it would be created)."""
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            parent = next(p for p in path.parents if p.exists())
            if not parent.is_dir():
                raise NotADirectoryError(f"{parent} is a file, not a directory")
            probe_write(parent)
            return
        probe_write(path)
    except OSError as exc:
        why = exc.strerror or str(exc)
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            why = f"{blocker} is a file, not a directory"
        raise BenchError(f"Bad {flag} {path}{source}: cannot write there ({why}). Pass a writable directory, e.g. {flag} "
                         f"{Path(tempfile.gettempdir()) / 'unlearning-bench'}.") from None


def check_data_dir(path: Path, download: bool) -> None:
    """The data directory: writable (created if missing) when ``--download`` writes there; otherwise
    only read, so it may be read-only (a shared dataset mount) but must not be a file."""
    if download:
        check_dir("--data-dir", path)
    elif path.exists() and not path.is_dir():
        raise BenchError(f"Bad --data-dir {path}: it is a file, not a directory. Pass the directory that holds the datasets.")


def check_splits(spec: str, sp: Any, builtin: bool = False) -> Any:
    """What a dataset plugin loaded, before any model sees it: tensors of consistent shapes,
    finite float inputs, int64 labels in 0..num_classes-1 with every class in the training
    split, enough rows. Names the dataset and the fault (imports torch). Returns the splits to use:
    ``sp`` itself, or a new Splits with ``num_classes`` and ``input_shape`` made plain ints (NumPy
    integers, a list) without changing the plugin's object."""
    import torch

    where = f"Dataset '{spec}'"
    fix = ("Check the spec's options and the files (a label column, a split); if they are right, fix the dataset "
           "plugin (docs/plugins.md, the Splits contract).")
    if builtin:  # bench's own loaders: the files or the options (a fault of the files was blamed on a plugin)
        fix = "Check the spec's options and the dataset's files (docs/datasets.md): they are not what the loader expects."
    fields = ("train_x", "train_y", "test_x", "test_y", "num_classes", "input_shape")
    if not all(hasattr(sp, f) for f in fields):
        raise BenchError(f"{where}: load() returned {type(sp).__name__}; expected a bench.Splits ({', '.join(fields)}, "
                         f"info). {fix}")
    k = sp.num_classes
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 2:
        raise BenchError(f"{where}: num_classes is {k!r}; expected an integer >= 2. {fix}")
    shape = sp.input_shape
    if (not isinstance(shape, (tuple, list)) or not shape
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise BenchError(f"{where}: input_shape is {shape!r}; expected a tuple of positive integers, e.g. (64,). {fix}")
    # NumPy integers (y.max() + 1, x.shape of an array) and a list, as the conformance kit accepts them,
    # made plain: they go into JSON records and cache keys (np.int64(3) was refused while the kit passed it)
    plain = (type(k) is int and type(shape) is tuple and all(type(d) is int for d in shape))
    k, shape = int(k), tuple(int(d) for d in shape)
    for part in ("train", "test"):
        x, y = getattr(sp, f"{part}_x"), getattr(sp, f"{part}_y")
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise BenchError(f"{where}: {part}_x and {part}_y must be torch tensors (got {type(x).__name__}, {type(y).__name__}). {fix}")
        if x.requires_grad or y.requires_grad:  # the original trained, then the reference failed in backward
            raise BenchError(f"{where}: {part}_x or {part}_y requires grad; return plain data (x.detach()). {fix}")
        if tuple(x.shape[1:]) != tuple(shape):
            raise BenchError(f"{where}: {part}_x has shape {tuple(x.shape)}, which does not match input_shape "
                             f"{tuple(shape)} (expected (N, {', '.join(map(str, shape))})). {fix}")
        if y.ndim != 1 or len(y) != len(x):
            raise BenchError(f"{where}: {part}_y has shape {tuple(y.shape)} for {len(x)} inputs; expected ({len(x)},) "
                             f"integer labels. {fix}")
        if x.dtype != torch.float32:  # float64 passed this check and failed every reference's first step
            raise BenchError(f"{where}: {part}_x has dtype {x.dtype}; expected float32 inputs (x.float()). {fix}")
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = int((~finite).reshape(len(x), -1).any(1).sum())
            raise BenchError(f"{where}: {part}_x holds NaN or infinite values in {bad} of {len(x)} rows; expected finite inputs. {fix}")
        if y.dtype != torch.int64:
            raise BenchError(f"{where}: {part}_y has dtype {y.dtype}; expected int64 class labels 0..{k - 1}. {fix}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
            raise BenchError(f"{where}: {part}_y spans labels {int(y.min())}..{int(y.max())}, outside 0..{k - 1} "
                             f"(num_classes={k}). {fix}")
    n_train, n_test = len(sp.train_y), len(sp.test_y)
    if n_train < 2 or n_test < MIN_TEST_ROWS:
        raise BenchError(f"{where} is too small: {n_train} training and {n_test} test rows; need at least 2 training "
                         f"rows and {MIN_TEST_ROWS} test rows (a forget set, a retain set, a test set). Use more data.")
    _check_bounds(where, fix, sp)
    copies = test_copies(sp.train_x, sp.test_x)
    if copies > MAX_TEST_COPIES * n_test:
        raise BenchError(f"{where}: {copies} of {n_test} test rows are exact copies of training rows; the test split "
                         "must hold unseen data (test accuracy and every attack's non-members are read from it). "
                         f"{fix}")
    missing = sorted(set(range(k)) - set(torch.unique(sp.train_y).tolist()))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise BenchError(f"{where}: class(es) {shown} of 0..{k - 1} have no training rows; every class needs some "
                         f"(or lower num_classes). {fix}")
    if plain:
        return sp
    # a new Splits: the plugin's own object may be read-only (a namedtuple, a frozen dataclass)
    from bench.core.contracts import Splits

    return Splits(sp.train_x, sp.train_y, sp.test_x, sp.test_y, k, shape, dict(getattr(sp, "info", None) or {}))


#: The fraction of test rows that may be exact copies of training rows (real datasets hold a few
#: duplicates; a test split made of training points passed with exit 0: found in review).
MAX_TEST_COPIES = 0.1


def test_copies(train_x, test_x) -> int:
    """How many rows of ``test_x`` equal some row of ``train_x`` exactly (their bytes' digests; a
    float projection differed in its last bit between two matrix sizes for the same row)."""
    import hashlib

    def digests(x):
        rows = x.detach().cpu().contiguous().reshape(len(x), -1).numpy()
        return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows]

    if not len(train_x) or not len(test_x):
        return 0
    seen = set(digests(train_x))
    return sum(1 for d in digests(test_x) if d in seen)


def _check_bounds(where: str, fix: str, sp: Any) -> None:
    """``info`` is a dict, and its optional ``input_bounds`` a pair (low, high) of finite numbers or
    lists (per channel or per feature) with low <= high: a string there passed the plan and failed
    every trial in ``bench.run.request.input_bounds``."""
    import torch

    from bench.run.request import input_bounds

    info = getattr(sp, "info", None)
    if info is None:
        return
    if not isinstance(info, dict):
        raise BenchError(f"{where}: info is {type(info).__name__}; expected a dict. {fix}")
    given = info.get("input_bounds")
    if given is None:
        return
    try:
        if isinstance(given, (str, bytes)) or len(given) != 2:
            raise ValueError("not a pair")
        lo, hi = input_bounds(sp, "cpu")
        ok = bool(torch.isfinite(lo).all() and torch.isfinite(hi).all() and (lo <= hi).all())
    except (TypeError, ValueError, RuntimeError):
        ok = False
    if not ok:
        raise BenchError(f"{where}: info['input_bounds'] is {given!r}; expected (low, high), each a number or a list "
                         f"per channel or per input feature, finite, low <= high (e.g. (0.0, 1.0)). {fix}")


#: what PyTorch's and CUDA's errors say when the GPU's memory runs out (torch.OutOfMemoryError's
#: message starts with the first), and what Ray says when its memory monitor kills a worker because
#: the machine's own memory ran low (ray.exceptions.OutOfMemoryError)
_GPU_OOM = ("CUDA out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDA error: out of memory")
_HOST_OOM = ("ray.exceptions.OutOfMemoryError", "running low on memory")


def check_recipe_fits(recipe: Any, dataset: str, input_shape) -> None:
    """The recipe's augmentation needs images (C, H, W): on vector data every reference would
    fail in its first training step, after the run had begun."""
    if recipe.augment != "none" and len(tuple(input_shape)) != 3:
        raise BenchError(f"Recipe augment='{recipe.augment}' needs image inputs (C, H, W); dataset '{dataset}' has inputs "
                         f"of shape {tuple(input_shape)}. Use --recipe augment=none for it.")


def failure_hint(error_texts, gpus_per_trial: float) -> str:
    """After the run: a sentence (with a leading space) for the failures that ran out of GPU memory,
    that Ray killed for lack of the machine's memory or that trained a batch-norm layer on one row,
    "" if none did: how many, and what to change (fewer trials sharing a GPU, or fewer at once, and
    the same run resumed; a larger forget set)."""
    texts = list(error_texts)
    gpu = sum(any(m in text for m in _GPU_OOM) for text in texts)
    host = sum(any(m in text for m in _HOST_OOM) and not any(m in text for m in _GPU_OOM) for text in texts)
    out = ""
    if gpu and 0 < gpus_per_trial < 1:
        wider = min(1.0, 2 * gpus_per_trial)
        out += (f" {gpu} of them ran out of GPU memory with up to {int(1 / gpus_per_trial + 1e-9)} trials sharing a GPU "
                f"(--gpus-per-trial {gpus_per_trial:g}): run the same command with --resume and --gpus-per-trial "
                f"{wider:g} to rerun them with fewer per GPU.")
    elif gpu:
        out += (f" {gpu} of them ran out of GPU memory with a GPU each: use a smaller model or batch size, or a larger "
                "GPU (--resume then reruns only the trials that did not finish).")
    if host:
        out += (f" Ray stopped {host} of them because the machine ran low on memory: run the same command with "
                "--resume and a larger --cpus-per-trial, so that fewer trials run at once.")
    one = sum(_ONE_ROW in text for text in texts)
    if one:  # a BatchNorm1d model and a one-point forget set: torch's line alone named neither (found in review)
        out += (f" {one} of them trained a batch-norm layer on a batch of one row ({_ONE_ROW}): a model with BatchNorm1d "
                "layers cannot take a training step on a single point, which a forget set of one point gives the "
                "methods that train on it; forget at least 2 points, or use a model without BatchNorm1d.")
    return out


#: torch's refusal of a train-mode batch-norm step over one value per channel
_ONE_ROW = "Expected more than 1 value per channel when training"


def check_attacks_fit(methods: list, forgets: list, attacks: dict) -> None:
    """Refuse the attacks that run the trial's method again (``needs`` ``"unlearn"``) where that
    cannot measure the trial: with a method that trains its own original (SISA's ensemble,
    ``has_own_training``) an attack that unlearns the plain shadow models (``needs`` ``"shadows"``
    too: U-LiRA; ``epsilon`` unlearns the method's own original again and can run); with a
    continual request, any of them: they unlearn every forgotten point in one shot while the
    trial's model came through its sequence, so their figure would mix two protocols."""
    from bench.core.method import forget_kinds, has_own_training

    own = [m.name for m in methods if has_own_training(m.obj)]
    seq = [f.text for f in forgets if f.kind == "seq"]
    for name, attack in attacks.items():
        needs = set(getattr(attack, "needs", ()))
        if own and {"shadows", "unlearn"} <= needs:
            raise BenchError(f"Attack '{name}' runs the trial's method on plain shadow models, and {', '.join(own)} "
                             f"unlearn(s) only the original they train themselves; run {', '.join(own)} without "
                             f"--attacks {name} (in a run of their own), or leave {name} out.")
        no_indices = [m.name for m in methods if "indices" not in forget_kinds(m.obj)]
        if no_indices and "unlearn" in needs:  # unsir with ulira lost ulira in every trial (found in review)
            raise BenchError(f"Attack '{name}' runs the trial's method again on forget sets it draws itself (an indices "
                             f"request), and {', '.join(no_indices)} take(s) no such request (forget_kinds); leave "
                             f"{name} out of a run with {', '.join(no_indices)}, or run them apart.")
        if seq and "unlearn" in needs:
            raise BenchError(f"Attack '{name}' runs the trial's method again in one shot on every forgotten point, and "
                             f"the continual request {seq[0]} unlearns them in a sequence: its figure would compare "
                             f"the two. Leave {name} out of a run with seq: requests (the other attacks run on the "
                             "final model).")


def check_shadow_models(registry, attacks, count) -> None:
    """``--shadow-models``: even and >= 2, and at least each chosen attack's ``min_shadow_models``
    (an optional attribute, default 2), here rather than after the references, shadows and
    methods ran (epsilon with 2 failed every trial at its end)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 2 or count % 2:
        raise BenchError(f"--shadow-models must be an even integer >= 2 (got {count!r}): shadow models "
                         "are trained in complementary pairs (e.g. --shadow-models 8).")
    if not attacks:
        return
    for name in registry.resolve("attack", attacks):
        need = getattr(registry.get("attack", name), "min_shadow_models", 2)
        if isinstance(need, bool) or not isinstance(need, int) or need < 2:
            raise BenchError(f"Attack '{name}' declares min_shadow_models={need!r}: expected an integer >= 2 (a bug "
                             f"in its plugin, {registry.entry('attack', name).origin}).")
        if count < need:
            raise BenchError(f"--shadow-models {count} is too few for attack '{name}': it needs at least {need} "
                             f"shadow models (its min_shadow_models). Raise --shadow-models to {need + need % 2} or more, "
                             f"or drop '{name}' from --attacks.")


def check_sendable_plugins(registry, opts, methods, models: dict, attacks: dict) -> None:
    """Under the Ray executor (``bench tune`` too), :func:`check_sendable` on the run's methods
    (``MethodPlan``), models (spec -> (object, argument, plugin)) and attacks (name -> object)."""
    if opts.executor != "ray":
        return
    check_sendable([("method", m.name, m.origin, m.obj) for m in methods]
                   + [("model", spec, origin, obj) for spec, (obj, _, origin) in models.items()]
                   + [("attack", n, registry.entry("attack", n).origin, a) for n, a in attacks.items()])


def check_sendable(objects: list[tuple[str, str, str, Any]]) -> None:
    """Under Ray every method, model and attack object travels to the workers pickled (cloudpickle):
    one that does not pickle (a lock, an open file or a client kept on it) stopped the whole run in
    Ray's object store with a 112-line traceback, after the references were trained. ``objects``:
    (kind, name, plugin, object)."""
    import cloudpickle

    for kind, name, origin, obj in objects:
        try:
            cloudpickle.dumps(obj)
        except Exception as exc:  # noqa: BLE001 -- TypeError, PicklingError, or what a __reduce__ raises
            raise BenchError(f"{kind.capitalize()} '{name}' of plugin '{origin}' cannot be sent to Ray's workers: "
                             f"pickling it failed ({type(exc).__name__}: {exc}). Keep only picklable state on the "
                             f"object (create locks, open files and clients inside the call that uses them), or run "
                             f"with --executor local.") from None
