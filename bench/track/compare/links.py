"""Links into the MLflow UI for a finished ``bench run``: the compare view of its trials, and a
runs page that opens with the key metric columns shown.

- Compare view: MLflow's ``#/compare-runs?runs=[...]&experiments=[...]`` route (the route the
  UI itself builds when rows are ticked and "Compare" is pressed; ``getCompareRunPageRoute`` in
  the MLflow 3 UI bundle), with the trial runs of the latest (or chosen) parent run: params and
  metrics of every method side by side, without ticking rows.
- Runs page with columns: MLflow's shared view state. The UI reads an experiment tag
  ``mlflow.sharedViewState.<KEY>`` whose value is the JSON of a runs-table view (search facets
  such as ``orderByKey`` plus the table's UI state: ``selectedColumns``, ``runsExpanded``...) when
  the runs page is opened with ``?viewStateShareKey=<KEY>`` (the UI's own "Share" button writes
  such a tag). :func:`write_runs_view` writes one whose ``selectedColumns`` are the key metrics
  (``metrics.`forget_acc``` etc., the UI's canonical column keys) and whose latest parent run is
  expanded, so its trials show with those columns at once.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from bench.core.errors import BenchError

#: The metric columns the runs page opens with.
KEY_METRICS = ("forget_acc", "test_acc", "avg_gap", "unlearn_seconds")
#: The experiment tag prefix MLflow's UI reads shared runs-table views from.
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "bench-key-metrics"


def column_key(kind: str, name: str) -> str:
    """The UI's canonical column key, e.g. ``metrics.`forget_acc```."""
    return f"{kind}.`{name}`"


def compare_fragment(experiment_id: str, run_ids: list[str]) -> str:
    """The URL fragment of MLflow's compare view of ``run_ids`` (JSON lists, URL-encoded)."""
    if not run_ids:
        raise BenchError("No trial runs to compare.")
    runs = quote(json.dumps(list(run_ids), separators=(",", ":")), safe="")
    exps = quote(json.dumps([str(experiment_id)], separators=(",", ":")), safe="")
    return f"/compare-runs?runs={runs}&experiments={exps}"


def compare_url(base_url: str, experiment_id: str, run_ids: list[str]) -> str:
    return f"{base_url.rstrip('/')}/#{compare_fragment(experiment_id, run_ids)}"


def runs_view_url(base_url: str, experiment_id: str, key: str = VIEW_KEY) -> str:
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={quote(key, safe='')}"


def runs_view(parent_id: str | None, metrics: tuple[str, ...] = KEY_METRICS) -> dict:
    """The shared view: the key metric columns selected, the parent run's trials expanded, newest first."""
    view = {
        "orderByKey": column_key("attributes", "start_time"),
        "orderByAsc": False,
        "selectedColumns": [column_key("metrics", m) for m in metrics],
        "runsExpanded": {parent_id: True} if parent_id else {},
    }
    return view


def write_runs_view(client, experiment_id: str, parent_id: str | None, key: str = VIEW_KEY) -> str:
    """Store the view as the experiment tag the UI reads; returns the key."""
    client.set_experiment_tag(experiment_id, f"{SHARED_VIEW_PREFIX}{key}", json.dumps(runs_view(parent_id)))
    return key


def latest_trials(tracking_uri: str | None, experiment: str):
    """(client, experiment id, parent run, trial run ids oldest first) of the latest ``bench run``
    with finished trials (of the 20 latest; else the latest): a run still starting, with none yet,
    hid every earlier run's compare view behind "no `bench run` with trials yet" (found in review)."""
    from bench.track.compare.query import find_experiment, load_trials, open_store, select_parents

    _, client = open_store(tracking_uri)
    exp = find_experiment(client, experiment)
    parents = select_parents(client, exp, "all")
    for parent in parents[:20]:
        trials, _ = load_trials(client, exp.experiment_id, [parent])
        if any(t.status == "FINISHED" for t in trials):
            return client, exp.experiment_id, parent, [t.run_id for t in trials]
    return client, exp.experiment_id, parents[0], []


def default_base_url(tracking_uri: str) -> tuple[str, bool]:
    """Where the UI of ``tracking_uri`` lives: the server itself for http(s) stores; else the
    address `bench ui` serves on by default (True: it has to be started)."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/"), False
    return "http://127.0.0.1:5000", True
