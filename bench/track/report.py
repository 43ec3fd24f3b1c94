"""The end-of-run summary: methods (and the two references) x key metrics, mean ± std over seeds."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Iterable, Mapping

from bench.core.keys import ATTACK_ERRORS_KEY
from bench.eval.metrics import ACCURACIES

COLUMNS = ("retain_acc", "forget_acc", "test_acc", "avg_gap", "js_to_retrain_forget", "unlearn_seconds", "speedup_vs_retrain")
#: A table's own figure, not a recorded metric: a trial's ``unlearn_seconds`` over that of the ``retrain``
#: trial of the same run, setting, seed and forget set, timed beside it (``speedup_vs_retrain``
#: divides the cached reference's time, measured once under another load: :func:`with_run_costs`).
RUN_COST = "cost_vs_retrain"
#: Shown only when some row has them: continual requests (``bench.run.continual``), last request /
#: totals; the cost against the run's own ``retrain`` trial.
OPTIONAL_COLUMNS = ("forget_all_acc", "cumulative_unlearn_seconds", RUN_COST)


def with_run_costs(items: list[tuple[tuple, str, Mapping[str, float] | None]]) -> list[Mapping[str, float] | None]:
    """``[(group, method, metrics or None)]`` -> the metrics, with :data:`RUN_COST` added to each
    finished trial whose group (run, setting, seed, forget set) has a finished ``retrain`` trial:
    its ``unlearn_seconds`` over that trial's (``retrain``'s own row is 1; on a ``seq:`` request
    ``cumulative_unlearn_seconds``, every request's, as the column beside it). The ratio the SalUn
    table's RTE column reads as cost; timed in one run, under one load."""
    def seconds(m):  # a sequence of requests (seq:): over every request, as its cumulative column
        return m.get("cumulative_unlearn_seconds", m.get("unlearn_seconds"))

    base = {group: seconds(m) for group, name, m in items if name == "retrain" and m and (seconds(m) or 0) > 0}
    out = []
    for group, _, m in items:
        if m and group in base and seconds(m) is not None:
            m = {**m, RUN_COST: seconds(m) / base[group]}
        out.append(m)
    return out


def columns_for(rows: list[Row]) -> tuple[str, ...]:
    """COLUMNS plus the optional columns some row has values for."""
    return COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if any(r.values.get(c) for r in rows))


#: The headline figure of each attack in the attack table: every ``<attack>_auc`` (forget vs test,
#: not the ``_retain_auc`` variants), SVC's MIA-efficacy and the epsilon score (docs/attacks.md).
ATTACK_HEADLINES = ("mia_efficacy", "epsilon_score")


def attack_columns(results) -> tuple[str, ...]:
    """The attack headline metrics present in ``results`` (dicts of trial metrics), in the order
    they first appear."""
    seen: dict[str, None] = {}
    for metrics in results:
        for k in metrics:
            if k in ATTACK_HEADLINES or (k.endswith("_auc") and not k.endswith("_retain_auc")):
                seen.setdefault(k, None)
    return tuple(seen)


@dataclass
class Row:
    setting: tuple[str, str, str]  # dataset, model, forget
    name: str
    values: dict[str, list[float]]
    ok: int
    failed: int
    killed: int = 0  # cut off by an interrupt (KILLED in MLflow, or never started): not failures


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v == v]
    if not vals:
        return float("nan"), float("nan")
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std


def fmt(values: list[float], of: int | None = None) -> str:
    """``mean ± std`` of the values that are numbers (a NaN is no value: one number and a NaN have
    no standard deviation, and showed "± 0.000"); ``(n=K)`` after it when K values are fewer than
    ``of``, the row's finished trials (a metric some seeds did not report averages fewer seeds)."""
    finite = [v for v in values if v == v]
    if not finite:
        return "-"
    mean, std = _mean_std(finite)
    if 0 < abs(mean) < 0.001 or abs(mean) >= 1e6:  # would read 0.000 (a 0.4 ms unlearn_seconds beside its
        # speedup), or hundreds of digits (a plugin's 1e300 printed as 301 of them; outputs audit)
        text = f"{mean:.2e}" + (f" ± {std:.1e}" if len(finite) > 1 else "")
    else:
        digits = 3 if abs(mean) < 100 else 1
        text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if len(finite) > 1 else "")
    return text + (f" (n={len(finite)})" if of is not None and len(finite) < of else "")


#: The names of the two reference rows (the original model; the model retrained without the forget set).
ORIGINAL, RETRAIN = "original (reference)", "retrain (reference)"

#: The metrics of a trial an interrupt cut off (compared by identity): counted as killed, not failed.
KILLED: Mapping[str, float] = MappingProxyType({})

#: One trial's outcome: (setting, row name, its metrics, or None for a failed trial, or KILLED).
Record = tuple[tuple[str, str, str], str, Mapping[str, float] | None]
#: One reference measurement: (setting, the original model's values, the retrained model's values).
Reference = tuple[tuple[str, str, str], Mapping[str, float], Mapping[str, float]]


def aggregate(records: Iterable[Record], references: Iterable[Reference] = (),
              keep: Callable[[str], bool] | None = None) -> list[Row]:
    """The summary rows of ``bench run`` and ``bench compare``: one per (setting, name), in order of
    first appearance, the reference rows (:data:`ORIGINAL`, :data:`RETRAIN`, one value per
    reference) before the trials' rows. A trial with metrics counts as ok and adds the metrics
    ``keep`` accepts (all by default); a failed one (``None``) is counted, never averaged."""
    rows: dict[tuple, Row] = {}

    def row(setting, name):
        key = (setting, name)
        if key not in rows:
            rows[key] = Row(setting, name, defaultdict(list), 0, 0)
        return rows[key]

    for setting, original, retrain in references:
        for name, values in ((ORIGINAL, original), (RETRAIN, retrain)):
            r = row(setting, name)
            r.ok += 1
            for k, v in values.items():
                r.values[k].append(float(v))
    for setting, name, metrics in records:
        r = row(setting, name)
        if metrics is KILLED:
            r.killed += 1
            continue
        if metrics is None:
            r.failed += 1
            continue
        r.ok += 1
        for k, v in metrics.items():
            if keep is None or keep(k):
                r.values[k].append(float(v))
    return list(rows.values())


def with_gaps(original: dict[str, float], retrain: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """The reference rows' values with their gaps: the original's ``*_gap`` to the retrained model
    per accuracy and their ``avg_gap`` (what doing nothing scores), the retrained model's 0 (both
    tables, ``bench run``'s and ``bench compare``'s, show the same)."""
    original, retrain = dict(original), dict(retrain)
    gaps = []
    for acc in ACCURACIES:
        if acc in original and acc in retrain:
            gap = abs(original[acc] - retrain[acc])
            original[acc.replace("_acc", "_gap")] = gap
            retrain[acc.replace("_acc", "_gap")] = 0.0
            gaps.append(gap)
    if len(gaps) == len(ACCURACIES):
        original["avg_gap"] = sum(gaps) / len(gaps)
        retrain["avg_gap"] = 0.0
    return original, retrain


def build_rows(trials: list, results: dict[int, dict], failures: dict[int, str], references: list[dict],
               extra_columns: tuple[str, ...] = (), killed: set[int] = frozenset()) -> list[Row]:
    """The rows of ``bench run``'s summary. ``trials``: the plan's ``TrialSpec`` list; ``results``:
    the metrics of the finished ones by position (the others failed); ``references``: one dict per
    group with setting, seed, original accs, retrain accs and retrain_seconds; ``extra_columns``:
    further trial metrics to collect (the attack table's); ``killed``: positions an interrupt cut off."""
    wanted = set(COLUMNS + OPTIONAL_COLUMNS + tuple(extra_columns))
    refs = [(ref["setting"], *with_gaps(ref["original"], {**ref["retrain"], "unlearn_seconds": ref["retrain_seconds"]}))
            for ref in references]
    outcomes = with_run_costs([((spec.dataset, spec.model, spec.forget, spec.seed, spec.forget_seed), spec.method,
                                 results.get(i)) for i, spec in enumerate(trials)])
    records = [((spec.dataset, spec.model, spec.forget), spec.method,
                KILLED if i in killed and i not in results else outcome) for (i, spec), outcome in zip(enumerate(trials), outcomes)]
    return aggregate(records, refs, keep=wanted.__contains__)


def trials_cell(r: Row) -> str:
    """The ``trials`` cell: the finished trials, ``"1 ok, 1 failed"`` beside failed or killed ones
    (``"1 (1 failed)"`` read as one trial, which failed, beside its numbers; outputs audit)."""
    notes = [f"{n} {what}" for n, what in ((r.failed, "failed"), (r.killed, "killed")) if n]
    return f"{r.ok}" + (f" ok, {', '.join(notes)}" if notes else "")


def render(rows: list[Row], console, ranks: list[int | None] | None = None, columns=COLUMNS,
           title: str = "unlearning-bench summary (mean ± std over seeds)") -> None:
    """The table in the terminal; with ``ranks`` (``bench compare``), a rank column first."""
    from rich.table import Table
    from rich.text import Text

    multi = len({r.setting for r in rows}) > 1
    if rows and not multi:  # the one setting, said once (a column only when there are several; outputs audit)
        title += f"\n{' / '.join(map(str, rows[0].setting))}"
    table = Table(title=title, show_lines=False)
    if ranks is not None:
        table.add_column("rank", justify="right")
    if multi:
        table.add_column("dataset / model / forget")
    table.add_column("method")
    for c in columns:
        table.add_column(c, justify="right")
    table.add_column("trials", justify="right")
    for i, r in enumerate(rows):
        k = ranks[i] if ranks is not None else None
        cells = [Text("-" if k is None else str(k))] if ranks is not None else []
        cells += ([Text(" / ".join(r.setting))] if multi else []) + [Text(r.name)]
        cells += [Text(fmt(r.values.get(c, []), r.ok)) for c in columns] + [Text(trials_cell(r))]
        style = "red" if r.failed else None
        if ranks is not None and not r.failed:
            style = "dim" if is_reference(r) else ("bold" if k == 1 else None)
        table.add_row(*cells, style=style)
    console.print(table)


def to_markdown(rows: list[Row], ranks: list[int | None] | None = None, columns=COLUMNS) -> str:
    ranked = ranks is not None
    head = ["dataset", "model", "forget", "method", *(["rank"] if ranked else []), *columns, "ok", "failed", "killed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(rows):
        rank = (["-" if ranks[i] is None else str(ranks[i])] if ranked else [])
        cells = [*r.setting, r.name, *rank, *(fmt(r.values.get(c, []), r.ok) for c in columns), str(r.ok), str(r.failed),
                 str(r.killed)]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    """A Markdown table cell: a '|' in a name split its row; '<' and '&' are escaped, so that a
    plugin's name holding HTML (``<script>``) shows as text where Markdown is rendered (compare audit,
    2026-12-07)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def md_escape(text: str) -> str:
    """Text for a Markdown paragraph (a caption): the cell's escapes, and emphasis and code marks."""
    return "".join("\\" + ch if ch in "*_`[]#" else ch for ch in _md_cell(text))


def to_csv(rows: list[Row], ranks: list[int | None] | None = None, columns=COLUMNS) -> str:
    """Means, standard deviations and how many trials each is over (``<metric>_n``: fewer than
    ``ok`` where a trial lacks the metric, as the markdown's ``(n=K)``); with ``ranks``, a rank
    column (empty for references)."""
    import csv
    import io

    ranked = ranks is not None
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "model", "forget", "method", *(["rank"] if ranked else []),
                *(f"{c}_{s}" for c in columns for s in ("mean", "std", "n")), "ok", "failed", "killed"])
    for i, r in enumerate(rows):
        stats = []
        for c in columns:
            values = [v for v in r.values.get(c, []) if v == v]
            mean, std = _mean_std(values)
            # no value: both empty (as the markdown's "-"); one value has no standard deviation
            stats.extend(["" if not values else mean, std if len(values) > 1 else "", len(values)])
        rank = (["" if ranks[i] is None else ranks[i]] if ranked else [])
        w.writerow([*r.setting, r.name, *rank, *stats, r.ok, r.failed, r.killed])
    return buf.getvalue()


# -- ranked comparison tables (``bench compare``) ----------------------------------------------

def is_reference(row: Row) -> bool:
    """The two reference rows (original model, retrained model) are shown but never ranked."""
    return row.name.endswith(" (reference)")


def row_mean(row: Row, metric: str) -> float:
    return _mean_std(row.values.get(metric, []))[0]


def partial_rank_notes(rows: list[Row], ranks: list[int | None], metric: str) -> list[str]:
    """A line per ranked row whose ``metric`` mean is over fewer trials than finished (a trial
    lacks it): its rank stands on fewer seeds than its neighbours' (the cell's ``(n=K)`` alone said so)."""
    out = []
    for row, rank in zip(rows, ranks):
        n = sum(1 for v in row.values.get(metric, []) if v == v)
        if rank is not None and n < row.ok:
            out.append(f"note: {row.name} ({'/'.join(row.setting)}) is ranked {rank} on {metric} over {n} of its {row.ok} "
                       f"finished trial(s); the others lack it")
    return out


def rank_rows(rows: list[Row], metric: str, maximize: bool) -> list[int | None]:
    """Competition ranks (1, 2, 2, 4) of the method rows by the mean of ``metric``, within each
    setting; None for the reference rows and for rows without a value (every trial failed)."""
    ranks: list[int | None] = [None] * len(rows)
    by_setting: dict[tuple, list[tuple[float, int]]] = defaultdict(list)
    for i, r in enumerate(rows):
        mean = row_mean(r, metric)
        if not is_reference(r) and not math.isnan(mean):
            by_setting[r.setting].append((mean, i))
    for items in by_setting.values():
        for mean, i in items:
            ranks[i] = 1 + sum(1 for other, _ in items if (other > mean if maximize else other < mean))
    return ranks


def summary_line(m: dict) -> str:
    """One trial's headline metrics on one line (progress output), and the attacks that failed in it."""
    keys = ("forget_acc", "retain_acc", "test_acc", "avg_gap", "unlearn_seconds")
    failed = ", ".join(m.get(ATTACK_ERRORS_KEY) or ())
    return (", ".join(f"{k}={m[k]:.3f}" for k in keys if k in m)
            + (f" (attack(s) {failed} failed: no metrics of theirs)" if failed else ""))
