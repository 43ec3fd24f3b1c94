"""``bench compare --format latex``: the ranked table as a LaTeX ``table`` (booktabs rules), ready
for a paper: mean ± std over seeds as ``bench compare`` prints them, one block per setting, the
references first, the first-ranked method in bold, and each row's finished (failed, killed) trials."""

from __future__ import annotations

import re

from bench.track import report

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
            "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (a metric name's ``_``, a forget spec's ``%``;
    ``±`` in math mode)."""
    return "".join(_SPECIAL.get(c, c) for c in str(text))


def cell(values: list[float], of: int) -> str:
    """A metric's cell: :func:`bench.track.report.fmt` with ``$\\pm$``, a minus sign, and ``--`` for no value."""
    text = report.fmt(values, of)
    if text == "-":
        return "--"
    return escape(text).replace("-", "$-$")  # a number's minus (or exponent's), not a hyphen


def to_latex(rows: list[report.Row], ranks: list[int | None] | None, columns, caption: str, label: str = "tab:unlearning") -> str:
    """The table: a column per metric (its name as logged), a ``trials`` column (finished, and
    failed or killed ones in brackets), rows grouped by setting under an italic heading line."""
    head = ["method", *(["rank"] if ranks is not None else []), *columns, "trials"]
    quoted = re.sub(r"'([^']*)'", r"`\1'", caption)  # 'x' rendered as two closing quotes; LaTeX opens with `
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(quoted)}}}", rf"\label{{{label}}}",
             r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}", r"\toprule",
             " & ".join(escape(h) for h in head) + r" \\", r"\midrule"]
    setting = None
    for i, r in enumerate(rows):
        if r.setting != setting:
            if setting is not None:
                lines.append(r"\midrule")
            setting = r.setting
            lines.append(rf"\multicolumn{{{len(head)}}}{{l}}{{\textit{{{escape(' / '.join(r.setting))}}}}} \\")
        rank = ranks[i] if ranks is not None else None
        name = escape(r.name)
        cells = [rf"\textbf{{{name}}}" if rank == 1 else name]
        if ranks is not None:
            cells.append("--" if rank is None else str(rank))
        cells += [cell(r.values.get(c, []), r.ok) for c in columns]
        cells.append(report.trials_cell(r))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
