"""Names shared across layers: result keys, MLflow tag names, trial identity, small helpers.

Everything here is a plain constant or a pure function importing only the standard library and
``bench.core.cache``'s digest, so every layer (run, eval, track, cli) may import it and nothing
imports upward.
"""

from __future__ import annotations

import ipaddress
import json
import math
from typing import Any, Iterable, Mapping

from bench.core.cache import sha256_bytes

#: The default MLflow experiment of ``bench run``, ``bench tune``, ``bench compare`` and ``bench ui``.
DEFAULT_EXPERIMENT = "unlearning-bench"

#: Key of a trial's result holding ``{file name: str | bytes | Rendered}`` to log as MLflow artifacts.
ARTIFACTS_KEY = "bench_artifacts"
#: The trial artifact holding the unlearned model (``--save-models``; ``bench.run.saved_models``).
MODEL_ARTIFACT = "model.safetensors"
#: Key of a trial's result holding ``{attack: why it has no metrics}`` (a line, then the traceback):
#: an attack that failed loses its own numbers only (``bench.run.attack_step.run_attacks``).
ATTACK_ERRORS_KEY = "bench_attack_errors"
#: Key of a continual trial's result holding the metrics of every request, in order.
STEPS_KEY = "bench_steps"
#: Key of a trial's result holding ``{parameter: the value used}`` for a method parameter whose value
#: means "automatic" (``ctx.resolved``), logged as the trial's params ``resolved.<parameter>``.
RESOLVED_KEY = "bench_resolved"


class Tag:
    """The MLflow tag vocabulary of bench's runs (written by ``bench.track.tracking``, read by
    ``bench.track.compare``, ``--resume`` and ``bench ui``)."""

    PARENT = "mlflow.parentRunId"
    ROLE = "bench.role"  # "parent" or "trial"
    KIND = "bench.kind"  # "tune" on the parent runs of ``bench tune``
    METHOD = "bench.method"
    SEED = "bench.seed"
    DATASET = "bench.dataset"
    MODEL = "bench.model"
    FORGET = "bench.forget"
    TRIAL_KEY = "bench.trial_key"
    MEASURED_WITH = "bench.measured_with"  # the trial's code identity (bench.run.trained_with.measured_with)
    TRIALS = "bench.trials"
    PLAN_KEY = "bench.plan_key"
    ERROR = "bench.error"
    STOPPED_EARLY = "bench.stopped_early"
    WARNINGS = "bench.warnings"  # on a parent run: warnings about its measurements (a recipe that does not match --original)
    DRIVER_PID = "bench.driver.pid"  # the driver process of a parent run, so a later bench can tell it died
    DRIVER_HOST = "bench.driver.host"
    DRIVER_STARTED = "bench.driver.started"
    COMMAND = "bench.command"  # on a parent run: the command line that started it (shell-quoted)
    CWD = "bench.cwd"  # ... and the directory it ran in (relative paths in the command are relative to it)
    CACHE_DIR = "bench.cache_dir"  # the reference cache it used, resolved (options.cache_dir is None when defaulted)
    GIT_COMMIT = "mlflow.source.git.commit"  # bench's commit, when bench runs from a git checkout
    GIT_DIRTY = "bench.git_dirty"  # "true": that checkout's tracked files differed from the commit
    SAVED_MODEL = "bench.saved_model"  # on a trial run: "true" when it kept its model (--save-models)
    ATTACK_ERRORS = "bench.attack_errors"  # on a trial run: the attacks that failed in it (comma-separated)
    SUPERSEDED_BY = "bench.superseded_by"  # on a finished trial run that --resume ran again: the run id now counted
    REPRODUCES = "bench.reproduces"  # on a parent run of `bench reproduce`: the run id it ran again
    REPRODUCED = "bench.reproduced"  # ... and its verdict: "identical" or "differs"


#: What defines a trial's measurement (not where or with which versions it ran).
TRIAL_KEY_FIELDS = ("method", "params", "seed", "forget_seed", "dataset", "model", "forget", "recipe", "attacks", "data_access",
                    "shadow_models", "data_sha256", "forget_sha256")


def trial_key(fields: Mapping[str, Any]) -> str:
    """Identity of a trial, stable across runs: ``--resume`` skips trials whose key already finished.
    ``fields`` holds at least :data:`TRIAL_KEY_FIELDS` in their recorded (JSON) form, and ``original``
    (``{"path", "sha256"}``) when the trial starts from your own original: its digest is hashed too."""
    doc = {k: fields[k] for k in TRIAL_KEY_FIELDS}
    if fields.get("original"):  # your own original (--original): its content, not where it lies
        doc["original_sha256"] = fields["original"]["sha256"]
    return sha256_bytes(json.dumps(doc, sort_keys=True, default=str).encode())[:16]


def json_record(value: Any, **kwargs: Any) -> str:
    """JSON text of a file a run records (``experiment.json``, ``resumed/*.json``): a non-finite float
    written as the string ``"nan"``, ``"inf"`` or ``"-inf"``, which a parameter of a float default
    reads back as that float. ``json.dumps`` wrote a bare ``NaN``, which strict JSON readers (jq,
    JavaScript) refuse (outputs audit, 2026-12-07); other values it cannot write, by ``str``."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return [clean(x) for x in v] if isinstance(v, (list, tuple)) else v

    return json.dumps(clean(value), allow_nan=False, default=str, **kwargs)


def plan_key(trial_keys: Iterable[str], resources: Iterable[str] = ()) -> str:
    """Identity of a plan (what ``--resume`` continues): its set of trial keys and the resources its
    trials run with (``resources``: e.g. ``device=cpu threads=2`` per trial). A trial's key leaves
    those out (its references are the same), but its numbers and times depend on them: a resume
    with another ``--cpus-per-trial`` put trials of 1 and 2 threads under one parent."""
    text = ",".join(sorted(trial_keys))
    extra = sorted(set(resources))
    return sha256_bytes((text + ("|" + ",".join(extra) if extra else "")).encode())[:16]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 possibly in brackets) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
