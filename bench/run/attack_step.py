"""The attacks at the end of a trial (called by ``bench.run.trial.run_trial``).

Builds the trial's :class:`bench.core.contracts.AttackContext` (with the shadow models, the method
and the references that the attacks declare in ``needs``), runs every attack on the unlearned
model and merges what they return: metrics as ``<attack>_<key>`` (keys in the attack's
``unprefixed`` as they are), files in ``ctx.artifacts`` as MLflow artifacts of the trial.

An attack that raises, or whose report breaks its contract, loses its own numbers and files only:
its traceback goes under ``ATTACK_ERRORS_KEY`` (the trial's tag ``bench.attack_errors`` and
artifact ``attack_errors/<attack>.txt``), the method's metrics and the other attacks' are kept, and
``bench run`` ends with exit 1. So does one still running at ``--trial-timeout``
(``bench.run.deadline.disarm``): the attacks after it are not run, the trial keeps the rest. An attack that changed the model or the data in place loses its
numbers too, and the attacks after it are not run (they would measure another model).
"""

from __future__ import annotations

import copy
import math
import numbers
import posixpath
import re
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from bench.core import console
from bench.core.cache import load_state
from bench.core.contracts import AttackContext, MethodContext
from bench.core.errors import BenchError, no_exit
from bench.core.forget import INDICES_ARTIFACT
from bench.core.keys import ARTIFACTS_KEY, ATTACK_ERRORS_KEY, MODEL_ARTIFACT
from bench.core.recipe import Recipe
from bench.core.spec import TrialSpec
from bench.eval.metrics import objective_attack
from bench.nn.torch_state import restore_torch_globals, torch_globals
from bench.nn.training import content_digest, place, seed_everything
from bench.run.deadline import TrialTimeout, disarm, phase
from bench.run.request import build_request
from bench.track.tracking import error_line


def make_unlearn(method, spec: TrialSpec, splits, new_model: Callable, bounds: Any) -> Callable:
    """``unlearn(model, forget_pos, retain_pos, seed)``: the trial's method on other models and
    forget requests, over the pool (training split followed by test split), with the data access
    the method declared, the same parameters, recipe and input domain."""

    def unlearn(model, forget_pos, retain_pos, seed: int):
        x = torch.cat([splits.train_x, splits.test_x])
        y = torch.cat([splits.train_y, splits.test_y])
        f = torch.tensor(np.asarray(forget_pos, dtype=np.int64))  # copies: the arrays may be read-only (Ray)
        r = torch.tensor(np.asarray(retain_pos, dtype=np.int64))
        # on the GPU when they fit its share, else in host memory, as the trial's own request (bench.nn.training.place)
        fx, fy, rx, ry = place((x[f], y[f], x[r], y[r]), spec.device)
        request = build_request(num_classes=splits.num_classes, kind="indices",
                                forget_indices=np.sort(np.asarray(forget_pos, dtype=np.int64)), forget_class=None,
                                forget=(fx, fy), retain=(rx, ry), access=spec.data_access, bounds=bounds)
        ctx = MethodContext(seed=int(seed), device=spec.device, new_model=new_model,
                            recipe=Recipe(**spec.recipe) if spec.uses("recipe") else None)
        seed_everything(int(seed))
        out = method.unlearn(model, request, copy.deepcopy(dict(spec.params)), ctx)  # nested values too
        if not isinstance(out, torch.nn.Module):
            raise BenchError(f"Method '{spec.method}' returned {type(out).__name__}, not a torch.nn.Module.")
        return out

    return unlearn


def run_attacks(attacks: dict, model, metrics: dict, *, spec: TrialSpec, group, method, data, new_model: Callable,
                bounds: Any, original: Callable | None = None, method_keys: Iterable[str] = (),
                forgotten_classes: tuple[int, ...] = ()) -> None:
    """Run ``attacks`` on the trial's unlearned ``model``, adding their metrics to ``metrics`` and the
    failed ones' tracebacks under ``ATTACK_ERRORS_KEY`` (module docstring); ``original``: fresh
    copies of the model the method started from (default: the group's original; a method's own
    original for SISA); ``method_keys``: the metrics in ``metrics`` the method reported (its
    ``ctx.metrics``), named when an attack reports one of them; ``forgotten_classes``: a class
    request's classes forgotten so far (``AttackContext.forgotten_classes``)."""
    (rx, ry), (fx, fy), (tx, ty) = data
    # the test split is the dataset's own tensors on the CPU (split_data copies the rest): the
    # attacks get a copy, so that one writing into it (a fault, caught below) leaves the data of
    # the trials after it alone (--executor local measured them on the zeroed test set, exit 1)
    tx, ty = (t.clone() if t is own else t for t, own in ((tx, group.splits.test_x), (ty, group.splits.test_y)))
    extras: dict[str, Any] = group.attack_models or {}

    def fresh(state: bytes):
        def make():
            net = new_model()
            load_state(net, state)
            return net
        return make

    ctx = AttackContext(
        fx, fy, rx, ry, tx, ty, group.splits.num_classes, spec.seed, spec.device,
        forget_indices=None, shadows=extras.get("shadows"), retrain_shadows=extras.get("retrain_shadows"),  # indices: per attack
        unlearn=make_unlearn(method, spec, group.splits, new_model, bounds),
        original=original or fresh(group.original_state),
        reference=fresh(extras["reference"]) if "reference" in extras else None,
        forgotten_classes=tuple(forgotten_classes),
    )
    watched = {**{f"the unlearned model's {k}": t for k, t in [*model.named_parameters(), *model.named_buffers()]},
               **{f"ctx.{k}": t for k, t in zip(("forget_x", "forget_y", "retain_x", "retain_y", "test_x", "test_y"),
                                                (fx, fy, rx, ry, tx, ty)) if isinstance(t, torch.Tensor)}}
    # writes torch's version counter does not count (.data, a NumPy view): the model's and the data's
    # digests, each attack's "after" being the next one's "before" (one pass over the data per attack)
    digests = {k: content_digest(t) for k, t in watched.items()}
    errors: dict[str, str] = {}  # attack -> why it has no metrics (a traceback)
    owners = {k: f"method '{spec.method}'" for k in method_keys}  # who reported a metric (else bench itself)
    names = list(attacks)
    console.epoch(0, len(names), "attack")  # the trial's progress: minutes of attacks on CIFAR-size data were
    for i, name in enumerate(names):  # silent after the method's last epoch (scale audit, 2026-12-07)
        if i:
            console.epoch(i, len(names), "attack")
        ctx.forget_indices = np.array(group.forget_idx)  # each attack its own copy (one writing to it changed the next's)
        for key in ("shadows", "retrain_shadows"):  # one reassigning .states/.keep changed lira's numbers, exit 0
            setattr(ctx, key, _own_set(extras.get(key)))
        versions = {k: t._version for k, t in watched.items()}
        files = dict(ctx.artifacts)
        found: dict[str, float] = {}
        missing = [k for k in getattr(attacks[name], "needs", ()) if k in extras.get("errors", {})]
        if missing:  # its shadow models failed to train (bench.run.prepare.attack_models): not run
            text = extras["errors"][missing[0]]
            errors[name] = (f"Attack '{name}' was not run: its {missing[0].replace('_', ' ')} failed to train: "
                            f"{error_line(text)}\n\n{text}")
            continue
        timed_out = None
        try:
            with phase(f"attack '{name}'"):
                found = _evaluate(name, attacks[name], model, ctx, metrics, owners)
        except Exception as exc:  # the attack's own failure: recorded; its numbers and files are dropped
            errors[name] = format_error(name, exc)
        except TrialTimeout as exc:  # past --trial-timeout in this attack: the method's numbers are kept
            if (timed_out := disarm()) is None:
                raise
            errors[name] = format_error(name, exc, f"Attack '{name}' ran past --trial-timeout {timed_out:g} s and was "
                                                   "stopped; the trial keeps the method's numbers and those of the "
                                                   "attacks before it (the traceback shows where it was).")
            for later in names[i + 1:]:
                errors[later] = f"Attack '{later}' was not run: the trial's --trial-timeout had passed (in attack '{name}')."
        changed = [k for k, t in watched.items() if t._version != versions[k]]
        after = {k: content_digest(t) for k, t in watched.items()}
        changed += [k for k in watched if k not in changed and after[k] != digests[k]]
        digests = after
        if changed:  # its numbers, and the next attacks', would be of another model or other data
            errors[name] = (f"Attack '{name}' changed {changed[0]} in place; every attack must leave the "
                            "model and the data as it found them (work on a copy: copy.deepcopy(model), x.clone()). "
                            "Running a model in train mode updates its batch-norm statistics: use model.eval().")
            for later in names[i + 1:]:
                errors[later] = (f"Attack '{later}' was not run: attack '{name}' before it changed "
                                 f"{changed[0]} in place, so it would have measured another model or other data.")
        if name in errors:
            ctx.artifacts.clear()
            ctx.artifacts.update(files)
            if changed or timed_out is not None:
                break
            continue
        metrics.update(found)
        owners.update({k: f"attack '{name}'" for k in found})
    if ctx.artifacts:
        metrics.setdefault(ARTIFACTS_KEY, {}).update(ctx.artifacts)
    if errors:
        metrics[ATTACK_ERRORS_KEY] = errors


def _own_set(shadows: Any) -> Any:
    """An attack's own view of a shared shadow set: its fields (the states and seeds lists copied;
    ``keep`` is read-only) are its own to reassign, the models' bytes are shared (found in review: an
    attack trimming ``ctx.shadows.states`` to 2 models moved every later lira AUC, exit 0)."""
    if shadows is None:
        return None
    own = copy.copy(shadows)
    for name in ("states", "seeds"):
        if isinstance(getattr(own, name, None), list):
            setattr(own, name, list(getattr(own, name)))
    return own


class AttackFailure(Exception):
    """An attack's recorded failure (its traceback as the message), chained under the error that
    fails a ``bench tune`` sample: the sample's line names the objective's attack, its record keeps both."""


def objective_failure(objective: str, attacks: dict, metrics: dict) -> None:
    """Raise when ``metrics`` lack ``objective`` (of ``bench tune``) because the attack it belongs to
    failed in the trial (or was not run after another changed the model), with that attack's error."""
    errors = metrics.get(ATTACK_ERRORS_KEY) or {}
    owner = objective_attack(objective, attacks)
    if owner in errors and objective not in metrics:
        head = errors[owner].split("\n", 1)[0]
        raise BenchError(f"Attack '{owner}', whose {objective} is the objective, has no metrics, so this sample has no "
                         f"score: {head}") from AttackFailure(errors[owner])


def _evaluate(name: str, attack, model, ctx: AttackContext, metrics: dict, owners: Mapping[str, str]) -> dict[str, float]:
    """One attack's checked metrics (``<attack>_<key>``; the keys it declares ``unprefixed`` as they
    are), not yet in ``metrics``: an exception of the attack, or a report it breaks the contract
    with, raises (the caller records it as that attack's failure)."""
    saved = torch_globals()
    try:
        with no_exit(f"Attack '{name}' (evaluate)"):
            found = attack.evaluate(model, ctx)
    finally:
        leaked = restore_torch_globals(saved)
    if leaked:
        raise BenchError(f"Attack '{name}' {leaked}. The attacks and trials after it would have run with it "
                         "(set back; its numbers are dropped).")
    if not isinstance(found, dict):
        raise BenchError(f"Attack '{name}' returned {type(found).__name__}; evaluate() returns a dict of metric "
                         "name -> number (docs/plugins.md, Attacks).")
    if not found:  # the kit refuses it; a run printed no attack table and no word, exit 0 (found in review)
        raise BenchError(f"Attack '{name}' returned no metrics (an empty dict); evaluate() returns at least one "
                         "metric name -> number (docs/plugins.md, Attacks).")
    unprefixed = set(getattr(attack, "unprefixed", ()))
    out: dict[str, float] = {}
    made: dict[str, Any] = {}  # metric name -> the key that made it
    for key, value in found.items():
        full = key if key in unprefixed else f"{name}_{key}"
        if full in made:  # one would have overwritten the other
            raise BenchError(f"Attack '{name}' reported metrics {made[full]!r} and {key!r}, which both make '{full}'; "
                             "rename one.")
        add_metric(f"Attack '{name}'", full, value, {**metrics, **out}, finite=True, shown=key, owners=owners)
        out[full], made[full] = float(value), key
    check_artifacts(f"Attack '{name}'", ctx.artifacts)
    return out


def format_error(name: str, exc: BaseException, head: str = "") -> str:
    """An attack's failure as recorded: one line naming the attack (what ``bench run`` prints; ``head``
    when given), then the traceback."""
    import traceback

    head = head or (str(exc) if isinstance(exc, BenchError) else f"Attack '{name}' failed: {type(exc).__name__}: {exc}")
    return head + "\n\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


#: what MLflow takes as a metric name (mlflow.utils.validation): a name it refuses failed the whole
#: run's writes and blamed the store
METRIC_NAME = re.compile(r"^[/\w.\- :]{1,250}$")


def valid_metric_name(key: Any) -> bool:
    """Whether MLflow takes ``key`` as a metric name: its characters (:data:`METRIC_NAME`) and its
    path rule (``mlflow.utils.validation.path_not_unique``: no 'a/', 'a/./b', '/a', '..')."""
    if not isinstance(key, str) or not METRIC_NAME.match(key):
        return False
    norm = posixpath.normpath(key)
    return norm == key and norm != "." and not norm.startswith(("..", "/"))


def add_metric(who: str, key: Any, value: Any, metrics: dict, finite: bool, shown: Any = None,
               owners: Mapping[str, str] | None = None) -> None:
    """Add a plugin's metric ``key`` to a trial's ``metrics``: a name MLflow takes, not one already
    measured (an attack named ``retain`` reporting ``acc`` replaced the harness's ``retain_acc``), a
    number, and for an attack (``finite``) a finite real number, not a bool or a tensor (their
    contract, as the kit checks it). ``shown``: the name as the plugin gave it; ``owners``: the
    plugin that reported each metric already in ``metrics`` (the rest are bench's own)."""
    shown = key if shown is None else shown
    if not valid_metric_name(key):
        raise BenchError(f"{who} reported metric {shown!r}: a metric name is up to 250 letters, digits, '_', '-', "
                         "'.', ' ', ':' or '/' (MLflow's rule); rename it.")
    if key in metrics:
        makes = f", which makes '{key}'," if key != shown else ","
        owner = (owners or {}).get(key)
        if owner:  # a method's ctx.metrics["loss_auc"] then the loss attack: the attack was told to rename
            raise BenchError(f"{who} reported metric {shown!r}{makes} which {owner} already reported in this trial; "
                             "one of the two plugins must rename it.")
        raise BenchError(f"{who} reported metric {shown!r}{makes} a metric bench itself measures in this trial; "
                         "rename it.")
    if finite and (isinstance(value, bool) or not isinstance(value, numbers.Real)):  # the kit's rule, here too
        raise BenchError(f"{who} reported metric {shown!r} = {value!r}, a {type(value).__name__}, not a float; "
                         "return float(value).")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BenchError(f"{who} reported metric {shown!r} = {value!r}, which is not a number.") from None
    if finite and not math.isfinite(number):
        raise BenchError(f"{who} reported metric {shown!r} = {number}; its values must be finite numbers.")
    if math.isinf(number):  # a method's: MLflow stores it as the largest float, which compare ranked (outputs audit)
        raise BenchError(f"{who} reported metric {shown!r} = {number}, which MLflow would store as "
                         f"{math.copysign(1.7976931348623157e308, number):g}, a value never reported; report a finite "
                         "number, or float('nan') for no value.")
    if finite and is_rate(key) and not 0.0 <= number <= 1.0:  # an AUC of 1.7 was shown as measured (found in review)
        raise BenchError(f"{who} reported metric {shown!r} = {number:g}; a name ending in _auc, _acc or _efficacy "
                         "or holding _tpr_at_ is a rate in [0, 1] (bench compares it so).")
    metrics[key] = number


def is_rate(key: str) -> bool:
    """Whether an attack's metric name says it is a rate in [0, 1] (AUC, accuracy, TPR, efficacy)."""
    return key.endswith(("_auc", "_acc", "_efficacy")) or "_tpr_at_" in key


#: the trial's own files: a plugin's artifact of that name replaced the saved model (an attack's
#: report in model.safetensors, then unreadable) or the forget set another run reuses
RESERVED_ARTIFACTS = (MODEL_ARTIFACT, INDICES_ARTIFACT, "error.txt")


def check_artifacts(who: str, artifacts: dict) -> None:
    """Artifacts (of a method or an attack) are ``str``, ``bytes`` or a ``Rendered`` (an object with
    ``render()``, ``bench.core.contracts``) under a relative file name, not one of the trial's own
    (:data:`RESERVED_ARTIFACTS`, ``attack_errors/``)."""
    for name, content in artifacts.items():
        parts = str(name).split("/")
        file_like = isinstance(content, (str, bytes)) or callable(getattr(content, "render", None))
        if not file_like or not isinstance(name, str) or not name or name.startswith("/") or ".." in parts:
            raise BenchError(f"{who} reported artifact '{name}' of type {type(content).__name__}; "
                             "artifacts are str, bytes or an object with render() under a relative file name.")
        plain = posixpath.normpath(name)  # './model.safetensors' is written where model.safetensors is
        if plain in RESERVED_ARTIFACTS or plain.split("/")[0] == "attack_errors" or (  # a seq: request's own points
                plain.startswith("request-") and plain.endswith(f"/{INDICES_ARTIFACT}")):
            raise BenchError(f"{who} reported artifact '{name}', a name of the trial's own files; rename it.")
