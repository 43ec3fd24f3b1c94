"""The samples of ``bench tune``, and what ``bench tune --resume`` keeps of an earlier search.

Sample ``k`` of a search is fixed by the search alone: the first ones are the given points (the
method's defaults, sample 0), each later one is drawn from the domains with its own generator,
``numpy.random.default_rng([seed, k])``. So the samples do not depend on how many are asked for or
which ones ran already: ``--resume`` runs exactly the samples an interrupted search did not
finish, and ``--resume -n 64`` after a search of 16 adds samples 16..63 to it.

A search is identified by its *search key* (tag ``bench.tune_key`` on its parent run): the setting's
trial key, the objective and its direction, the scheduler, the seed, the searched domains and the
points given first; not the number of samples.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

from bench.core.cache import sha256_bytes
from bench.core.errors import BenchError
from bench.core.keys import Tag
from bench.core.space import Domain

#: Tag of a ``bench tune`` parent run: its search key (module docstring).
TUNE_KEY = "bench.tune_key"
#: the search's size now: -n 64 --resume after -n 16 (MLflow sets the param tune.num_samples once)
NUM_SAMPLES = "bench.num_samples"


def draw(domain: Domain, rng) -> Any:
    """One value of ``domain`` (the kinds of ``bench.core.space``; a float range's upper end open,
    as in Ray Tune), as a plain Python value."""
    if domain.kind == "choice":
        values = list(domain.args[0])
        return values[int(rng.integers(len(values)))]
    if domain.kind == "randint":
        return int(rng.integers(int(domain.args[0]), int(domain.args[1])))
    low, high = float(domain.args[0]), float(domain.args[1])
    if domain.kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if domain.kind == "uniform":
        return float(rng.uniform(low, high))
    raise BenchError(f"Unknown search domain kind '{domain.kind}' (known: uniform, loguniform, randint, choice).")


def samples(domains: Mapping[str, Domain], n: int, seed: int, first: Sequence[Mapping[str, Any]] = ()) -> list[dict]:
    """Samples 0..n-1: the ``first`` points, then draws (sample ``k`` from ``default_rng([seed, k])``,
    the domains in name order)."""
    import numpy as np

    out = [dict(p) for p in first][:n]
    for k in range(len(out), n):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, k])
        out.append({key: draw(domains[key], rng) for key in sorted(domains)})
    return out


def search_key(trial_key: str, objective: str, mode: str, scheduler: str, seed: int, domains: Mapping[str, Domain],
               first: Sequence[Mapping[str, Any]]) -> str:
    """The search key (module docstring)."""
    text = json.dumps({"trial": trial_key, "objective": objective, "mode": mode, "scheduler": scheduler, "seed": seed,
                       "space": {k: domains[k].describe() for k in sorted(domains)},
                       "first": [sorted(p.items()) for p in first]}, sort_keys=True, default=repr)
    return sha256_bytes(text.encode())[:32]


def sample_number(name: str) -> int | None:
    """N of a sample's trial name ("ga seed=0 sample N"), or None."""
    head, sep, tail = str(name).rpartition(" sample ")
    return int(tail) if sep and tail.isdigit() else None


def find_search(client, experiment_id: str, key: str):
    """The latest parent run of search ``key``, ``{sample number: (trial key, code identity,
    metrics)}`` of its samples that finished with every metric, and the numbers of those that
    finished without some attack's (run again); or None."""
    from bench.track.compare.query import _search_all

    parents = client.search_runs(
        [experiment_id], filter_string=f"tags.`{TUNE_KEY}` = '{key}' and tags.`{Tag.ROLE}` = 'parent'",
        order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        return None
    parent = parents[0]
    finished: dict[int, tuple[str, str, dict[str, float]]] = {}
    errored: set[int] = set()  # finished with an attack's numbers missing
    runs = _search_all(client, [experiment_id], f"tags.`{Tag.PARENT}` = '{parent.info.run_id}' and "
                       "attributes.status = 'FINISHED'", ["attributes.start_time ASC"])
    for run in runs:
        number = sample_number(run.info.run_name or "")
        tags = run.data.tags
        if number is None or tags.get(Tag.STOPPED_EARLY):
            continue
        if tags.get(Tag.ATTACK_ERRORS):
            errored.add(number)
            continue
        finished[number] = (tags.get(Tag.TRIAL_KEY, ""), tags.get(Tag.MEASURED_WITH, ""), dict(run.data.metrics))
    return parent, finished, errored - set(finished)


def kept_samples(finished: Mapping[int, tuple[str, str, dict]], specs: Sequence) -> dict[int, dict[str, float]]:
    """The earlier search's results ``--resume`` keeps: sample k's, when it measured what sample k
    measures now (the same trial key: parameters, data, recipe, attacks...) with the same code."""
    kept = {}
    for k, spec in enumerate(specs):
        if k in finished:
            trial_key, code, metrics = finished[k]
            if trial_key == spec.trial_key and (not spec.measured_with or code == spec.measured_with):
                kept[k] = metrics
    return kept


def open_search(client, *, tracking_uri: str, experiment_id: str, key: str, resume: bool, run_name: str, params: dict,
                specs: Sequence, record: dict, say) -> tuple[str, str, dict[int, dict[str, float]]]:
    """The search's parent run: a new one (tagged with ``key``), or with ``resume`` the latest one of
    this search, reopened; returns (run id, run name, the kept results by sample number:
    :func:`kept_samples`). ``record``: this session's options and versions, logged as
    ``resumed/<time>.json`` on a reopened run (its params keep the first session's)."""
    from bench.run.runner import refuse_live_parent
    from bench.track import tracking
    from bench.track.resume import reopen_parent

    found = find_search(client, experiment_id, key) if resume else None
    if resume and found is None:
        say("--resume: no earlier search with these settings in this experiment (the setting, objective, scheduler, "
            "seed, space and defaults-first make a search; not --num-samples): starting a new one", always=True)
    if found is None:
        with tracking.recording("opening the run in the MLflow store", tracking.NOTHING_RUN):
            parent = tracking.start_parent(tracking_uri, experiment_id, run_name, params,
                                           {Tag.KIND: "tune", TUNE_KEY: key, NUM_SAMPLES: str(len(specs))})
        return parent, run_name, {}
    run, finished, errored = found
    refuse_live_parent(run)
    if finished and max(finished) >= len(specs):  # its best could be one left out: it was saved over
        raise BenchError(f"--resume --num-samples {len(specs)}: search {run.info.run_id} ('{run.info.run_name}') already "
                         f"finished sample {max(finished)}; a resumed search keeps every sample, so resume it with "
                         f"--num-samples {max(finished) + 1} or more, or leave out --resume for a new search.")
    kept = kept_samples(finished, specs)
    parent = run.info.run_id
    with tracking.recording("reopening the run in the MLflow store", tracking.NOTHING_RUN):
        reopen_parent(client, experiment_id, parent, record)
        client.set_tag(parent, NUM_SAMPLES, str(len(specs)))  # the param tune.num_samples stays the first session's
    others = sum(k < len(specs) and k not in kept for k in finished)
    failed = sum(k < len(specs) for k in errored)
    say(f"resuming search {parent} ('{run.info.run_name}'): {len(kept)} of {len(specs)} sample(s) already finished"
        + (f"; {others} finished sample(s) measured something else or with other code: run again" if others else "")
        + (f"; {failed} finished without an attack's metrics (it failed in them): run again" if failed else ""),
        always=True)
    return parent, run.info.run_name or run_name, kept


def asha_keeping(sample: int | None):
    """Ray Tune's ASHA (``time_attr`` training_iteration, grace period 1, reduction factor 2) that
    never stops sample ``sample`` (the defaults, with defaults first): its reports still count at
    every rung, but it runs to its end, so the best saved is never worse than the defaults. ASHA
    stopped it at its first rung (a draw 0.001 better there), and a worse sample was saved, exit 0
    (found in review)."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class KeepingASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            pick = (getattr(trial, "config", None) or {}).get("pick") or {}
            return TrialScheduler.CONTINUE if sample is not None and pick.get("number") == sample else decision

    return KeepingASHA(time_attr="training_iteration", grace_period=1, reduction_factor=2)
