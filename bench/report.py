"""The end-of-run summary: methods (and the two references) x key metrics, mean ± std over seeds."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

COLUMNS = ("retain_acc", "forget_acc", "test_acc", "avg_gap", "js_to_retrain_forget", "unlearn_seconds", "speedup_vs_retrain")


@dataclass
class Row:
    setting: tuple[str, str, str]  # dataset, model, forget
    name: str
    values: dict[str, list[float]]
    ok: int
    failed: int


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v == v]
    if not vals:
        return float("nan"), float("nan")
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean, std = _mean_std(values)
    if mean != mean:
        return "-"
    digits = 3 if abs(mean) < 100 else 1
    text = f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if len(values) > 1 else "")


def build_rows(trials: list[dict], results: dict[int, dict], failures: dict[int, str], references: list[dict]) -> list[Row]:
    """``references``: one dict per group with setting, seed, original accs, retrain accs and retrain_seconds."""
    rows: dict[tuple, Row] = {}
    order: list[tuple] = []

    def row(setting, name):
        key = (setting, name)
        if key not in rows:
            rows[key] = Row(setting, name, defaultdict(list), 0, 0)
            order.append(key)
        return rows[key]

    for ref in references:
        setting = ref["setting"]
        r = row(setting, "original (reference)")
        for k, v in ref["original"].items():
            r.values[k].append(v)
        r.ok += 1
        r = row(setting, "retrain (reference)")
        for k, v in ref["retrain"].items():
            r.values[k].append(v)
        r.values["unlearn_seconds"].append(ref["retrain_seconds"])
        r.ok += 1
    for i, spec in enumerate(trials):
        setting = (spec["dataset"], spec["model"], spec["forget"])
        r = row(setting, spec["method"])
        if i in results:
            r.ok += 1
            for k in COLUMNS:
                if k in results[i]:
                    r.values[k].append(float(results[i][k]))
        else:
            r.failed += 1
    return [rows[k] for k in order]


def render(rows: list[Row], console) -> None:
    from rich.table import Table

    multi = len({r.setting for r in rows}) > 1
    table = Table(title="unlearning-bench summary (mean ± std over seeds)", show_lines=False)
    if multi:
        table.add_column("dataset / model / forget")
    table.add_column("method")
    for c in COLUMNS:
        table.add_column(c, justify="right")
    table.add_column("trials", justify="right")
    for r in rows:
        cells = ([" / ".join(r.setting)] if multi else []) + [r.name] + [fmt(r.values.get(c, [])) for c in COLUMNS]
        status = f"{r.ok}" + (f" ({r.failed} failed)" if r.failed else "")
        table.add_row(*cells, status, style="red" if r.failed else None)
    console.print(table)


def to_markdown(rows: list[Row]) -> str:
    head = ["dataset", "model", "forget", "method", *COLUMNS, "ok", "failed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([*r.setting, r.name, *(fmt(r.values.get(c, [])) for c in COLUMNS), str(r.ok), str(r.failed)]) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[Row]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "model", "forget", "method", *(f"{c}_{s}" for c in COLUMNS for s in ("mean", "std")), "ok", "failed"])
    for r in rows:
        stats = []
        for c in COLUMNS:
            stats.extend(_mean_std(r.values.get(c, [])))
        w.writerow([*r.setting, r.name, *stats, r.ok, r.failed])
    return buf.getvalue()
