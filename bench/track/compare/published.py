"""Published results as data: tables shipped as CSV (``bench/track/compare/tables/NAME.csv``) with
their citation, and ``bench compare --published NAME``: ours and theirs side by side, in the
paper's units, with the differences.

A table file starts with ``# key: value`` lines (``title``, ``citation``, ``source``, ``setting``,
``preset``, ``units``), then a CSV header ``method,bench_method,<columns>`` and one row per
method; ``bench_method`` is the harness's method name. The columns are the paper's and map to
the harness's metrics by :data:`UNITS` (value in the paper's unit from the harness's mean over
seeds): UA = 100 x (1 - forget_acc), RA = 100 x retain_acc, TA = 100 x test_acc, MIA = 100 x
mia_efficacy, Avg. Gap = 100 x avg_gap_mia (SalUn's four-term gap), RTE = unlearn_seconds / 60.
Nothing heavy is imported here.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.core.errors import BenchError
from bench.track import report
from bench.track.report import RETRAIN

FOLDER = "tables"


@dataclass(frozen=True)
class Unit:
    """How a published column is computed from one of our metrics (per seed, then averaged)."""

    metric: str
    convert: Callable[[float], float]
    text: str


UNITS: dict[str, Unit] = {
    "UA": Unit("forget_acc", lambda v: 100.0 * (1.0 - v), "100 x (1 - forget_acc)"),
    "RA": Unit("retain_acc", lambda v: 100.0 * v, "100 x retain_acc"),
    "TA": Unit("test_acc", lambda v: 100.0 * v, "100 x test_acc"),
    "MIA": Unit("mia_efficacy", lambda v: 100.0 * v, "100 x mia_efficacy (attack svc)"),
    "Avg. Gap": Unit("avg_gap_mia", lambda v: 100.0 * v,
                     "100 x avg_gap_mia (attack svc), the mean of the seeds' gaps (the paper's: the gap of the means)"),
    "RTE": Unit("unlearn_seconds", lambda v: v / 60.0, "unlearn_seconds / 60 (minutes)"),
}


@dataclass
class PublishedTable:
    name: str
    meta: dict[str, str]
    columns: list[str]  # the paper's columns, in its order
    rows: list[dict[str, str | float]] = field(default_factory=list)  # method, bench_method, then the columns

    @property
    def title(self) -> str:
        return self.meta.get("title", self.name)

    @property
    def citation(self) -> str:
        return self.meta.get("citation", "")

    def row_for(self, method: str) -> dict | None:
        return next((r for r in self.rows if r["bench_method"] == method), None)


def _files():
    from importlib.resources import files

    return files("bench.track.compare").joinpath(FOLDER)


def names() -> list[str]:
    return sorted(p.name[: -len(".csv")] for p in _files().iterdir() if p.name.endswith(".csv"))


def parse(name: str, text: str) -> PublishedTable:
    meta: dict[str, str] = {}
    body = []
    for line in text.splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep:
                meta[key.strip()] = value.strip()
        elif line.strip():
            body.append(line)
    reader = csv.DictReader(io.StringIO("\n".join(body)))
    head = reader.fieldnames or []
    if head[:2] != ["method", "bench_method"]:
        raise BenchError(f"Published table '{name}': the header must start with method,bench_method (got {head[:2]}).")
    columns = head[2:]
    unknown = [c for c in columns if c not in UNITS]
    if unknown:
        raise BenchError(f"Published table '{name}': no unit mapping for column(s) {', '.join(unknown)}.")
    table = PublishedTable(name, meta, columns)
    for rec in reader:  # a malformed row was a traceback or, with extra cells or nan, taken silently (compare audit)
        where = f"Published table '{name}', row {reader.line_num - 1} ({rec.get('method')!r})"
        if None in rec or any(rec[c] is None for c in head):
            raise BenchError(f"{where}: {len(head)} cells expected, one per column of the header ({', '.join(head)}).")
        row: dict[str, str | float] = {"method": rec["method"], "bench_method": rec["bench_method"]}
        for c in columns:
            try:
                row[c] = float(rec[c])
            except ValueError:
                row[c] = float("nan")
            if not math.isfinite(row[c]):
                raise BenchError(f"{where}: column {c} is {rec[c]!r}; expected a finite number.")
        table.rows.append(row)
    return table


def load(name: str) -> PublishedTable:
    known = names()
    if name not in known:
        raise BenchError(f"Unknown published table '{name}'. Published tables: {', '.join(known)} "
                         f"(bench compare --published NAME).")
    try:
        text = _files().joinpath(f"{name}.csv").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"Published table '{name}': cannot read it ({exc}); reinstall bench.") from None
    return parse(name, text)


# -- ours in the paper's units ----------------------------------------------------------------

def ours(row: report.Row, column: str) -> tuple[float, int]:
    """Our value of a published column for one summary row: the mean over seeds of the converted
    per-seed values, and how many seeds had it (0: nan)."""
    unit = UNITS[column]
    values = [unit.convert(v) for v in row.values.get(unit.metric, []) if v == v]
    return (sum(values) / len(values), len(values)) if values else (float("nan"), 0)


@dataclass
class Line:
    """One published method beside our row for it (None: not in this run)."""

    method: str
    ours_name: str | None
    values: dict[str, tuple[float, float, float]]  # column -> (ours, theirs, ours - theirs)


def side_by_side(table: PublishedTable, rows: list[report.Row]) -> dict[tuple, list[Line]]:
    """Per setting of ``rows``: one line per published method, ours beside theirs (one per variant
    where pooled runs ran the method with several hyperparameters). The paper's Retrain is our
    ``retrain`` method when the run has it, else the retrained reference row."""
    out: dict[tuple, list[Line]] = {}
    for setting in dict.fromkeys(r.setting for r in rows):
        mine = {r.name: r for r in rows if r.setting == setting}
        lines = []
        for prow in table.rows:
            name = str(prow["bench_method"])
            # the method's row, or its rows per hyperparameter variant (``ga[lr=0.02]``: runs pooled
            # with --run all that ran it with several); the paper's Retrain may be the reference row
            found = [r for n, r in mine.items() if n == name or n.startswith(f"{name}[")]
            if not found and name == "retrain" and RETRAIN in mine:
                found = [mine[RETRAIN]]
            for row in found or [None]:
                values = {}
                for c in table.columns:
                    theirs = float(prow[c])
                    value = ours(row, c)[0] if row is not None else float("nan")
                    values[c] = (value, theirs, value - theirs)
                lines.append(Line(str(prow["method"]), row.name if row is not None else None, values))
        out[setting] = lines
    return out


def _num(v: float, digits: int = 2) -> str:
    return "-" if v != v else f"{v:.{digits}f}"


def _signed(v: float) -> str:
    return "-" if v != v else f"{v:+.2f}"


def render(table: PublishedTable, rows: list[report.Row], console) -> None:
    """Per setting, a table: method, then per published column ours / paper / difference."""
    from rich.table import Table

    for setting, lines in side_by_side(table, rows).items():
        t = Table(title=f"{table.title}\nours ({' / '.join(setting)}) vs published (paper's setting: "
                        f"{table.meta.get('setting', '?')}); diff = ours - paper", show_lines=False)
        t.add_column("method")
        t.add_column("ours as")
        for c in table.columns:
            t.add_column(f"{c} ours", justify="right")
            t.add_column(f"{c} paper", justify="right")
            t.add_column(f"{c} diff", justify="right")
        for line in lines:
            cells = [line.method, line.ours_name or "(not run)"]
            for c in table.columns:
                mine, theirs, diff = line.values[c]
                cells += [_num(mine), _num(theirs), _signed(diff)]
            t.add_row(*cells, style=None if line.ours_name else "dim")
        console.print(t)
    console.print(f"Published: {table.citation}")
    console.print("Units: " + "; ".join(f"{c} = {UNITS[c].text}" for c in table.columns))


def to_csv(table: PublishedTable, rows: list[report.Row]) -> str:
    """Long format: one line per (setting, method, column) with ours, theirs and the difference."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "model", "forget", "method", "ours_as", "column", "ours", "paper", "diff"])
    for setting, lines in side_by_side(table, rows).items():
        for line in lines:
            for c in table.columns:
                mine, theirs, diff = line.values[c]
                w.writerow([*setting, line.method, line.ours_name or "", c, "" if mine != mine else round(mine, 4),
                            theirs, "" if diff != diff else round(diff, 4)])
    return buf.getvalue()


def to_markdown(table: PublishedTable, rows: list[report.Row]) -> str:
    out = []
    for setting, lines in side_by_side(table, rows).items():
        head = ["method", "ours as", *(f"{c} ours / paper / diff" for c in table.columns)]
        out.append(f"**{table.title}**: ours ({' / '.join(setting)}) vs published\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for line in lines:
            cells = [line.method, line.ours_name or "(not run)"]
            cells += [" / ".join((_num(line.values[c][0]), _num(line.values[c][1]), _signed(line.values[c][2])))
                      for c in table.columns]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    out.append(f"Published: {table.citation}\n")
    return "\n".join(out) + "\n"


# -- the published points on the Pareto plot -------------------------------------------------

def plot_points(table: PublishedTable, gap_metric: str) -> list[tuple[str, float, float]]:
    """(method, x, y) of each published row in the plot's units: x = the gap to the paper's
    Retrain row (``avg_gap``: the mean of the UA, RA and TA gaps, as our three-term avg_gap;
    ``forget_gap``: the UA gap), as a fraction; y = TA / 100. Empty when the table lacks a column."""
    if not all(c in table.columns for c in ("UA", "RA", "TA")):
        return []
    ref = table.row_for("retrain")
    if ref is None:
        return []
    points = []
    for row in table.rows:
        gaps = [abs(float(row[c]) - float(ref[c])) / 100.0 for c in ("UA", "RA", "TA")]
        x = gaps[0] if gap_metric == "forget_gap" else sum(gaps) / 3
        points.append((str(row["method"]), x, float(row["TA"]) / 100.0))
    return [p for p in points if not (math.isnan(p[1]) or math.isnan(p[2]))]
