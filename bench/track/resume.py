"""What ``--resume`` continues: the latest parent run of a plan (not a ``bench reproduce`` run of it)
and the finished results it keeps.

A finished trial is kept when its trial key is in the plan (what it measures: method, params,
seed, data, forget set, recipe, attacks...) and it recorded the code identity the trial would run
with now (``Tag.MEASURED_WITH``: bench's measuring code, torch's version, the method's and attacks'
plugins, ``bench.run.trained_with.measured_with``).
"""

from __future__ import annotations

from datetime import datetime

from bench.core.keys import Tag, json_record


def find_resumable(client, experiment_id: str, plan_key: str):
    """The latest parent run of this plan and ``{trial_key: metrics}`` of its finished trials, or None.
    The metrics hold the trial's recorded code identity under ``MEASURED_WITH`` (Tag.MEASURED_WITH;
    "" when it recorded none): see :func:`fresh_results`."""
    parents = client.search_runs(
        [experiment_id], filter_string=f"tags.`{Tag.PLAN_KEY}` = '{plan_key}' and tags.`{Tag.ROLE}` = 'parent'",
        order_by=["attributes.start_time DESC"], max_results=50,
    )
    # not a `bench reproduce` run of the plan: --resume reopened the finished reproduction and left
    # the interrupted run it meant KILLED
    parents = [p for p in parents if Tag.REPRODUCES not in p.data.tags]
    if not parents:
        return None
    parent = parents[0]
    finished: dict[str, dict[str, float]] = {}
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=f"tags.`{Tag.PARENT}` = '{parent.info.run_id}' and attributes.status = 'FINISHED'",
            max_results=1000, page_token=token, order_by=["attributes.start_time ASC"],
        )  # oldest first: a trial run again after another version measured it keeps its latest result
        for run in page:
            key = run.data.tags.get(Tag.TRIAL_KEY)
            if key:
                finished[key] = {**run.data.metrics, MEASURED_WITH: run.data.tags.get(Tag.MEASURED_WITH, ""),
                                 SAVED_MODEL: run.data.tags.get(Tag.SAVED_MODEL) == "true",
                                 ATTACK_ERRORS: run.data.tags.get(Tag.ATTACK_ERRORS, "")}
        token = page.token
        if not token:
            break
    return parent, finished


def changed_since_latest(client, experiment_id: str, options: dict[str, str]) -> tuple[str, list[str]] | None:
    """(the latest parent run's id, the options it was run with that differ from ``options``, the
    flattened ``options.*`` params of this run), or None when the experiment has no parent run:
    what ``--resume`` says when it finds no earlier run of the plan (a typo in one option reran every
    trial of a long run under a new parent, with a progress line only; found in review)."""
    parents = client.search_runs([experiment_id], filter_string=f"tags.`{Tag.ROLE}` = 'parent'",
                                 order_by=["attributes.start_time DESC"], max_results=5)
    parents = [p for p in parents if Tag.REPRODUCES not in p.data.tags]
    if not parents:
        return None
    was = {k: v for k, v in parents[0].data.params.items() if k.startswith("options.")}
    changed = [f"{k.removeprefix('options.')} {was.get(k, '(unset)')!r} -> {options.get(k, '(unset)')!r}"
               for k in sorted(set(was) | set(options)) if was.get(k) != options.get(k)]
    return parents[0].info.run_id, changed


#: the key of :func:`find_resumable`'s metrics holding a trial's recorded code identity
MEASURED_WITH = "__measured_with__"
#: ... and whether it kept its model (``--save-models``)
SAVED_MODEL = "__saved_model__"
#: ... and the attacks that failed in it ("" when none did)
ATTACK_ERRORS = "__attack_errors__"


def drop_attack_failures(done: dict[str, dict]) -> tuple[dict[str, dict], int]:
    """The finished results whose every attack gave its numbers, and how many lacked some (run
    again: an attack's failure may be passing, an out-of-memory, or fixed since)."""
    kept = {k: m for k, m in done.items() if not m.get(ATTACK_ERRORS)}
    return kept, len(done) - len(kept)


def drop_unsaved(done: dict[str, dict]) -> tuple[dict[str, dict], int]:
    """For ``--resume --save-models``: the finished results that kept their model, and how many did
    not (run again: a resume with the flag kept those trials without a model, and said nothing)."""
    kept = {k: m for k, m in done.items() if m.get(SAVED_MODEL)}
    return kept, len(done) - len(kept)


def fresh_results(done: dict[str, dict], trials) -> tuple[dict[str, dict], int]:
    """The finished results ``--resume`` keeps: those of ``trials`` (specs) measured with the code
    they would run with now (the same ``measured_with``), without the identity entry; and how many
    finished trials are run again because their method's or an attack's plugin, bench's own code or
    torch changed since (kept, their metrics were averaged with the new ones as seeds of one method)."""
    now = {t.trial_key: t.measured_with for t in trials}
    kept: dict[str, dict] = {}
    stale = 0
    for key, metrics in done.items():
        if key not in now:
            continue
        if now[key] and metrics.get(MEASURED_WITH) != now[key]:
            stale += 1
            continue
        kept[key] = {k: v for k, v in metrics.items() if k not in (MEASURED_WITH, SAVED_MODEL, ATTACK_ERRORS)}
    return kept, stale


def reopen_parent(client, experiment_id: str, parent: str, record: dict) -> None:
    """Take an earlier parent run over for ``--resume`` (``bench run`` and ``bench tune``): its
    children left RUNNING by a killed driver become KILLED, it is RUNNING again under this driver,
    and this session's ``record`` (options, versions, plugins) goes beside the first session's
    params, which MLflow sets once, as ``resumed/<time>.json``."""
    from bench.track import tracking

    tracking.kill_unfinished_children(client, experiment_id, parent)
    client.update_run(parent, status="RUNNING")
    tracking.claim_parent(client, parent)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    client.log_text(parent, json_record(record, indent=1), f"resumed/{stamp}.json")


def mark_superseded(client, experiment_id: str, parent: str) -> int:
    """Tag every finished trial run of ``parent`` that a later finished run of the same trial key
    replaced (``--resume`` reran it: measured with other code, an attack failed, no saved model) with
    ``Tag.SUPERSEDED_BY``, the run now counted; returns how many it tagged. ``bench compare`` and the
    summary count the latest already; in the MLflow UI both looked complete (repro audit, 2026-12-07)."""
    from bench.track.compare.query import _search_all

    runs = [r for r in _search_all(client, [experiment_id], f"tags.`{Tag.PARENT}` = '{parent}' and attributes.status = "
                                   "'FINISHED'", ["attributes.start_time ASC"]) if r.data.tags.get(Tag.TRIAL_KEY)]
    latest = {r.data.tags[Tag.TRIAL_KEY]: r.info.run_id for r in runs}  # oldest first: the last one wins
    tagged = 0
    for r in runs:
        now = latest[r.data.tags[Tag.TRIAL_KEY]]
        if now != r.info.run_id and r.data.tags.get(Tag.SUPERSEDED_BY) != now:
            client.set_tag(r.info.run_id, Tag.SUPERSEDED_BY, now)
            tagged += 1
    return tagged
