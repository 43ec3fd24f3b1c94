"""Reading ``bench run``'s records back from MLflow: the store, the experiment, the parent runs
asked for and their trial runs (one :class:`TrialRecord` per trial), by the tags of
:class:`bench.core.keys.Tag` that :mod:`bench.track.tracking` writes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.core.keys import Tag
from bench.track.store import resolve_tracking_uri
from bench.track.tracking import configure_environment

FINISHED = "FINISHED"
UNFINISHED = ("RUNNING", "SCHEDULED")


@dataclass
class TrialRecord:
    """One child run (one trial), as read back from MLflow."""

    run_id: str
    parent_id: str
    method: str
    seed: str
    setting: tuple[str, str, str]  # dataset, model, forget
    status: str
    start_time: int
    metrics: dict[str, float]
    method_params: dict[str, str]  # the ``params.*`` params, without the prefix
    label: str = ""  # the row name: the method, plus its differing hyperparameters when pooled
    setting_params: dict[str, str] | None = None  # what else defines the measurement (recipe, forget seed, ...)
    forget_key: tuple[str, str] = ("", "")  # (forget seed, SHA-256 of the forget set) as recorded
    code: str = ""  # the code identity it was measured with (param measured_with; "" before 2026-12-06)
    stopped_early: bool = False  # a `bench tune --scheduler asha` sample stopped on an intermediate epoch

    @property
    def finished(self) -> bool:
        """Ran to its end: a sample ASHA stopped early is FINISHED in MLflow with an intermediate
        epoch's numbers, and compare ranked them as final (a ga sample stopped at avg_gap 0.003
        scores 0.884 run in full; found in review, 2026-12-07)."""
        return self.status == FINISHED and not self.stopped_early


def open_store(tracking_uri: str | None) -> tuple[str, Any]:
    """Resolve the store as ``bench run`` does; a missing SQLite file is an error, never created."""
    uri = resolve_tracking_uri(tracking_uri, writable=False, existing=True)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.is_file():
            raise BenchError(f"No MLflow store at {db}: nothing has been run here. Run `bench run` first, "
                             f"or point --tracking-uri (or MLFLOW_TRACKING_URI) at the store `bench run` used.")
    configure_environment()
    from mlflow.tracking import MlflowClient

    return uri, MlflowClient(uri)


def _search_all(client, experiment_ids: list[str], filter_string: str, order_by: list[str] | None = None) -> list:
    runs: list = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, order_by=order_by,
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_experiment(client, name: str):
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage == "deleted":
        names = sorted(e.name for e in client.search_experiments())
        listed = ", ".join(f"'{n}'" for n in names) if names else "none"
        raise BenchError(f"Unknown experiment '{name}'. Experiments in this store: {listed}. Pass one with --experiment.")
    return exp


def _started(run) -> str:
    from datetime import datetime

    return datetime.fromtimestamp((run.info.start_time or 0) / 1000).strftime("%Y-%m-%d %H:%M")


def select_parents(client, exp, run_ref: str, flag: str = "--run", command: str = "compare") -> list:
    """``latest`` (default), ``all``, a parent run id, a unique id prefix (4+ characters) or a run name.

    ``latest`` and ``all`` mean ``bench run`` runs; a ``bench tune`` run (tag ``Tag.KIND`` = tune) is
    compared only when named, each sample being its own row. ``flag`` and ``command``: how the
    messages name the option and the command (``bench reproduce`` takes RUN_ID, never all)."""
    shown = f"{flag} " if flag.startswith("-") else ""
    alternatives = "--run latest or --run all" if command == "compare" else "latest"
    parents = _search_all(client, [exp.experiment_id], f"tags.`{Tag.ROLE}` = 'parent'", ["attributes.start_time DESC"])
    if not parents:
        raise BenchError(f"Experiment '{exp.name}' has no bench runs (no parent run tagged {Tag.ROLE}=parent). "
                         f"Run `bench run --experiment {exp.name}` first.")
    ref = (run_ref or "latest").strip()
    if ref in ("latest", "all"):
        runs = [p for p in parents if p.data.tags.get(Tag.KIND) != "tune"]  # `bench tune` searches: by id only
        if not runs:
            tunes = ", ".join(f"{p.info.run_id} ('{p.info.run_name}')" for p in parents[:5])
            what = ("compare the samples of one with --run ID" if command == "compare" else
                    f"bench {command} takes `bench run` runs")
            raise BenchError(f"Experiment '{exp.name}' has only `bench tune` runs, which {shown}{ref} leaves out; "
                             f"{what}: {tunes}.")
        # made by `bench run`, not reproductions of one (compare's latest showed the reproduction, and
        # `all` replaced the run's measurements with its reproduction's; outputs audit): by id only
        runs = [p for p in runs if Tag.REPRODUCES not in p.data.tags] or runs
        return runs[:1] if ref == "latest" else runs
    match = [p for p in parents if p.info.run_id == ref] or [p for p in parents if p.info.run_name == ref]
    if len(match) > 1 and match[0].info.run_id != ref:  # one name, several runs: the newest was taken silently
        named = ", ".join(f"{p.info.run_id} (started {_started(p)})" for p in match[:5])
        raise BenchError(f"{flag} {ref}: {len(match)} parent runs of experiment '{exp.name}' have that name: {named}"
                         f"{', ...' if len(match) > 5 else ''}. Give the run id of the one to {command}"
                         f"{', or --run all' if command == 'compare' else ''}.")
    if not match and len(ref) >= 4:
        match = [p for p in parents if p.info.run_id.startswith(ref)]
    if len(match) == 1:
        return match
    recent = ", ".join(f"{p.info.run_id} ('{p.info.run_name}')" for p in parents[:5])
    if len(match) > 1:
        raise BenchError(f"{flag} {ref} matches {len(match)} parent runs of experiment '{exp.name}'; give more of the "
                         f"id. Recent parent runs: {recent}.")
    hint = ""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(ref)
    except MlflowException:
        run = None
    if run is not None:
        if run.data.tags.get(Tag.ROLE) == "trial":
            hint = f" It is a trial run; its parent run is {run.data.tags.get(Tag.PARENT)}."
        elif run.info.experiment_id != exp.experiment_id:
            other = client.get_experiment(run.info.experiment_id).name
            hint = f" It belongs to experiment '{other}': pass --experiment '{other}'."
        else:
            hint = " It is not a bench parent run."
    if not hint and len(ref) < 4 and any(p.info.run_id.startswith(ref) for p in parents):
        hint = " A run id prefix needs at least 4 characters."
    raise BenchError(f"Unknown run '{ref}' in experiment '{exp.name}'.{hint} Recent parent runs: {recent}; "
                     f"or pass {alternatives}.")


def load_trials(client, experiment_id: str, parents: list, recorded: dict | None = None) -> tuple[list[TrialRecord], int]:
    """The trial runs of ``parents``, one per trial (a trial re-run by ``--resume`` counts once, its
    latest finished attempt winning), oldest first; and how many are still running. ``recorded``,
    when given, gets per parent run id the number of its trials that have a run (any status)."""
    ids = {p.info.run_id for p in parents}
    if len(parents) == 1:
        runs = _search_all(client, [experiment_id], f"tags.{Tag.PARENT} = '{parents[0].info.run_id}'")
    else:
        runs = _search_all(client, [experiment_id], f"tags.`{Tag.ROLE}` = 'trial'")
    attempts: dict[tuple, list[TrialRecord]] = defaultdict(list)
    keys_of: dict[str, Any] = {}  # run id -> the trial key
    for run in runs:
        tags = run.data.tags
        if tags.get(Tag.ROLE) != "trial" or tags.get(Tag.PARENT) not in ids:
            continue
        rec = TrialRecord(
            run_id=run.info.run_id, parent_id=tags[Tag.PARENT], method=tags.get(Tag.METHOD, "?"),
            seed=tags.get(Tag.SEED, "?"),
            setting=(tags.get(Tag.DATASET, "?"), tags.get(Tag.MODEL, "?"), tags.get(Tag.FORGET, "?")),
            status=run.info.status, start_time=run.info.start_time or 0, metrics=dict(run.data.metrics),
            method_params={k[len("params."):]: v for k, v in run.data.params.items() if k.startswith("params.")},
            code=run.data.params.get("measured_with", ""),
            setting_params=_setting_params(run.data.params),
            forget_key=(run.data.params.get("forget_seed", ""), run.data.params.get("forget_sha256", "")),
            stopped_early=tags.get(Tag.STOPPED_EARLY) == "true",
        )
        key = tags.get(Tag.TRIAL_KEY) or (rec.parent_id, rec.method, rec.seed, *rec.setting)
        keys_of[rec.run_id] = key
        attempts[(rec.parent_id, key)].append(rec)
    trials: list[TrialRecord] = []
    unfinished = 0
    for parent_id, _ in attempts:
        if recorded is not None:
            recorded[parent_id] = recorded.get(parent_id, 0) + 1
    for group in attempts.values():
        group.sort(key=lambda t: t.start_time)
        done = [t for t in group if t.finished]
        best = done[-1] if done else group[-1]
        if best.status in UNFINISHED:
            unfinished += 1
            continue
        trials.append(best)
    _forget_seed_rule(trials)
    # the same trial (its key) measured by several runs of one setting, pooled with --run all, is
    # one measurement, not one seed per run: keep the latest finished one
    latest: dict[Any, TrialRecord] = {}
    for t in sorted(trials, key=lambda t: (t.finished, t.start_time, t.run_id)):
        latest[(keys_of[t.run_id], tuple(sorted((t.setting_params or {}).items())))] = t
    trials = sorted(latest.values(), key=lambda t: (t.start_time, t.run_id))
    _split_forget_sets(trials)
    _split_settings(trials)
    _label_variants(trials)
    return trials, unfinished


#: trial params that do not define what was measured: who and where (the method and its params are
#: the row, the seed is averaged over), or recorded for the record only
_NOT_SETTING = {"method", "seed", "trial_key", "group", "threads", "device", "method_plugin", "dataset", "model",
                "forget", "forget_size", "data.source", "data_access", "forget_sha256", "measured_with"}
#: (``resolved.*``: what a method's automatic parameters took, which differs by method: it split a run's
#: methods into settings of their own, 2026-12-07; ``references.*``: the cache keys of a trial's
#: references, which hold the seed)
_NOT_SETTING_PREFIXES = ("params.", "resolved.", "method_train.", "versions.", "plugins.", "options.", "origins.",
                         "references.")


def _setting_params(params: dict[str, str]) -> dict[str, str]:
    """The params of a trial run that define its setting (the forget seed as recorded: see
    :func:`_forget_seed_rule`)."""
    return {k: v for k, v in params.items() if k not in _NOT_SETTING and not k.startswith(_NOT_SETTING_PREFIXES)}


def _forget_seed_rule(trials: list[TrialRecord]) -> None:
    """The forget seed is a rule of the run, not a value of each trial: a parent run whose every
    trial's forget seed equals its own seed (the default) reads "seed", so its seeds stay one
    setting; a run with ``--forget-seed F`` over several seeds keeps F on every trial (its trial of
    seed F once read "seed" and split the run in two)."""
    by_parent: dict[str, list[TrialRecord]] = defaultdict(list)
    for t in trials:
        if t.setting_params and "forget_seed" in t.setting_params:
            by_parent[t.parent_id].append(t)
    for group in by_parent.values():
        if all(t.setting_params["forget_seed"] == str(t.seed) for t in group):
            for t in group:
                t.setting_params["forget_seed"] = "seed"


def _split_forget_sets(trials: list[TrialRecord]) -> None:
    """Pooled runs whose forget sets differ for the same forget seed are different settings (an
    indices file rewritten between two runs: the same ``--forget`` text, other points; their
    metrics were averaged as seeds of one setting). The forget set is not a setting param itself:
    drawn per seed, it differs between the seeds of one run. Runs are grouped greedily, oldest
    first, with the runs whose every shared forget seed has the same set; when a setting needs more
    than one group, each trial gets ``forget_sha256`` (its group's first set) as a setting param."""
    by_setting: dict[tuple, list[TrialRecord]] = defaultdict(list)
    for t in trials:
        by_setting[t.setting].append(t)
    for group in by_setting.values():
        sets: dict[str, dict[str, str]] = {}  # parent run -> {forget seed: set digest}
        for t in group:
            fseed, digest = t.forget_key
            if digest:  # runs from before the digest was recorded: unknown, never split
                sets.setdefault(t.parent_id, {})[fseed] = digest
        clusters: list[dict[str, str]] = []
        member: dict[str, int] = {}
        for parent, mine in sets.items():
            for i, seen in enumerate(clusters):
                if all(seen[f] == d for f, d in mine.items() if f in seen):
                    seen.update(mine)
                    member[parent] = i
                    break
            else:
                member[parent] = len(clusters)
                clusters.append(dict(mine))
        if len(clusters) < 2:
            continue
        names = [next(iter(c.values())) for c in clusters]
        for t in group:
            if t.parent_id in member and t.setting_params is not None:
                t.setting_params["forget_sha256"] = names[member[t.parent_id]]


def _split_settings(trials: list[TrialRecord]) -> None:
    """Pooled runs (``--run all``) of one (dataset, model, forget) that differ in anything else that
    defines the measurement (the recipe, the forget seed, the data split, the attacks, your own
    original) are different settings, never seeds of one: their references differ. The model's name
    gets the values that differ (``mlp [recipe.epochs=5]``), so their rows stay apart."""
    by_setting: dict[tuple, list[TrialRecord]] = defaultdict(list)
    for t in trials:
        by_setting[t.setting].append(t)
    for (dataset, model, forget), group in by_setting.items():
        # your own original is its file's digest, not its path: the same bytes under two names are one
        # setting (the README says so; they were split by name until 2026-12-07, own-model audit)
        keys = sorted({k for t in group for k in (t.setting_params or {}) if k != "original.path"})
        differing = [k for k in keys if len({(t.setting_params or {}).get(k) for t in group}) > 1]
        if not differing:
            continue
        labelled = [k for k in differing if not k.startswith("original.")]
        if len(labelled) < len(differing):  # your own original's path and digest: one item
            labelled.append(_ORIGINAL_KEY)
        names: dict[str, str] = {}  # digest -> the first path it was recorded under (one label per file content)
        for t in group:
            params = t.setting_params or {}
            names.setdefault(params.get(_ORIGINAL_KEY) or "", params.get("original.path") or "")
        for t in group:
            params = dict(t.setting_params or {})
            params["original.path"] = names.get(params.get(_ORIGINAL_KEY) or "", "")
            shown = ",".join(_shown(k, params) for k in labelled)
            t.setting = (dataset, f"{model} [{shown}]", forget)


#: your own original (--original) is labelled by its file's name and digest, in one item
_ORIGINAL_KEY = "original.sha256"


def _shown(key: str, params: dict[str, str]) -> str:
    """``key=value`` of a setting label; your own original as ``original=NAME@DIGEST`` (or ``none``)."""
    if key == _ORIGINAL_KEY:
        digest, path = params.get(key), params.get("original.path")
        if not digest or digest == "-":
            return "original=none"
        return f"original={Path(path).name if path else '?'}@{digest[:8]}"
    if key.endswith("sha256"):  # a digest: its first 8 hex digits tell two apart
        return f"{key}={(params.get(key) or '-')[:8]}"
    return f"{key}={_short(params.get(key, '-'))}"


def _label_variants(trials: list[TrialRecord]) -> None:
    """Row names: the method, plus the hyperparameters that differ when pooled runs used several in
    one setting (a method run with one set of them in a setting keeps its plain name there)."""
    by_method: dict[tuple, list[TrialRecord]] = defaultdict(list)
    for t in trials:
        by_method[(t.setting, t.method)].append(t)
    for (_, method), group in by_method.items():
        variants = {(tuple(sorted(t.method_params.items())), t.code) for t in group}
        if len(variants) <= 1:
            for t in group:
                t.label = method
            continue
        keys = sorted({k for t in group for k in t.method_params})
        differing = [k for k in keys if len({t.method_params.get(k) for t in group}) > 1]
        other_code = len({t.code for t in group}) > 1  # pooled runs of other code: not seeds of one method
        for t in group:
            shown = [f"{k}={_short(t.method_params.get(k, '-'))}" for k in differing]
            shown += [f"code={t.code[:8] or '-'}"] if other_code else []
            t.label = f"{method}[{','.join(shown)}]"


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() or len(value) <= 7 else f"{number:.4g}"
