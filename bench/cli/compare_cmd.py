"""``bench compare``: rank the methods of a finished run from MLflow and draw the Pareto plot."""

from __future__ import annotations

import os
import sys

import click

from bench.cli.options import not_empty
from bench.core.keys import DEFAULT_EXPERIMENT, Tag

#: Formats ``--plot`` writes, by its extension (matplotlib's, less pgf, which needs LaTeX, and raw
#: pixel buffers); a path without one gets ``.png``, as matplotlib would add.
PLOT_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


def plot_file(plot_path: str) -> str:
    """The file ``--plot`` names: ``.png`` added when it has no extension; a one-line BenchError for an
    extension the plot cannot be written in (before the store is read)."""
    from bench.core.errors import BenchError

    from bench.core.fs import check_writable_file

    given = os.path.expanduser(plot_path)
    if os.path.exists(given) and not os.path.isfile(given) and not os.path.isdir(given):  # /dev/null wrote /dev/null.png
        raise BenchError(f"--plot {plot_path}: it is not a regular file (a device or a pipe?). Pass a file for the plot, "
                         f"e.g. --plot pareto.png, or --no-plot to write none.")
    name = os.path.basename(plot_path)
    if name.startswith(".") and name[1:].lower() in PLOT_FORMATS:  # '.png' wrote '.png.png'
        raise BenchError(f"--plot {plot_path}: names an extension, not a file. Pass e.g. --plot pareto{name}.")
    ext = os.path.splitext(plot_path)[1][1:]
    if not ext and not plot_path.endswith(("/", os.sep)):
        plot_path = plot_path.rstrip(".") + ".png"
    elif ext and ext.lower() not in PLOT_FORMATS:
        stem = plot_path[: -len(ext) - 1]
        raise BenchError(f"--plot {plot_path}: cannot write the plot as '.{ext}'; expected a file ending in "
                         f"{', '.join('.' + f for f in PLOT_FORMATS)}. Pass e.g. --plot {stem}.png.")
    check_writable_file(plot_path, "--plot", "Pass a writable file path, e.g. --plot pareto.png.", "a file for the plot")
    return plot_path


@click.command()
@click.option("--experiment", "-e", default=DEFAULT_EXPERIMENT, show_default=True, help="MLflow experiment name.")
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI",
              help="MLflow store or server (also MLFLOW_TRACKING_URI). [default: sqlite:///$PWD/mlflow.db]")
@click.option("--run", "run_ref", default="latest", show_default=True, metavar="RUN_ID|latest|all",
              help="Parent run to compare: its id (or a unique prefix of 4+ characters) or name; latest; "
                   "or all to pool every parent run of the experiment.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv", "latex"]), default="table", show_default=True,
              help="Output on stdout (messages go to stderr).")
@click.option("--objective", default="avg_gap", show_default=True, metavar="METRIC",
              help="Metric the methods are ranked by (mean over seeds).")
@click.option("--maximize/--minimize", default=None,
              help="Higher / lower objective is better. [default: from the metric: lower for gaps, js, seconds, "
                   "memory; higher for accuracies, speedup]")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the Pareto plot, in the format of its extension (.png, added when there is "
                   "none; .pdf, .svg, .eps, .jpg, ...; the run's artifact stays a PNG). "
                   "[default: ./compare-<parent run id prefix>.png]")
@click.option("--no-plot", is_flag=True, help="Neither write nor log the plot.")
@click.option("--gap", "gap_metric", type=click.Choice(["avg_gap", "forget_gap"]), default="avg_gap", show_default=True,
              help="Forgetting gap on the plot's x axis.")
@click.option("--published", "published_name", default=None, metavar="TABLE",
              help="Also print a published table (e.g. salun-table1) beside ours, in the paper's units, with the "
                   "differences; its points go on the plot as hollow markers.")
def compare(experiment, tracking_uri, run_ref, fmt, objective, maximize, plot_path, no_plot, gap_metric, published_name):
    """Compare the methods of a finished `bench run`, read back from MLflow.

    Prints methods (and the original and retrained references) x metrics, mean ± std over seeds,
    ranked by --objective; failed trials are counted, not averaged. Writes a Pareto plot of
    forgetting gap against test accuracy (colour: unlearn_seconds) and logs it to the parent run
    as the artifact pareto.png.

    \b
    Examples:
      bench compare
      bench compare --run all --format markdown
      bench compare --objective test_acc --plot pareto.png
      bench compare --published salun-table1      (ours beside SalUn's Table 1, in its units)

    Also prints links to MLflow's compare view of the trials and to a runs page showing the key
    metric columns (open them with `bench ui` running).
    """
    from pathlib import Path

    from bench.track import compare as cmp
    from bench.track import report
    from bench.track.store import shown_uri

    def note(msg: str) -> None:
        click.echo(msg, err=True)

    # '' wrote a hidden '.png' in the current directory and took --run '' for latest (found in review)
    not_empty("--plot", plot_path, "a .png, .svg or .pdf file")
    not_empty("--run", run_ref, "a run id, latest or all")
    if plot_path is not None and not no_plot:
        plot_path = plot_file(plot_path)
    table = None
    not_empty("--published", published_name, "the name of a published table (bench compare --help lists them)")
    if published_name:
        from bench.track.compare import published

        table = published.load(published_name)  # an unknown name fails before the store is read
    comp = cmp.compare(tracking_uri=tracking_uri, experiment=experiment, run=run_ref, objective=objective, maximize=maximize)
    note(f"MLflow tracking store: {shown_uri(comp.tracking_uri)}; experiment '{comp.experiment}', {comp.describe()}: "
         f"{len(comp.trials)} trial(s)" + cmp.missing_note(comp))
    # the attacks' columns: a second table on the terminal, after the ranked columns in markdown and CSV (as
    # bench run's summary.md/csv); they were left out of every file format (compare audit, 2026-12-07)
    attack_cols = [c for c in report.attack_columns(t.metrics for t in comp.trials if t.finished) if c not in comp.columns]
    if fmt == "table":
        from rich.console import Console

        # piped: wide enough for every column (at 200 the continual columns' headers were cut, js_to_retrain…)
        console = Console() if sys.stdout.isatty() else Console(width=400)
        report.render(comp.rows, console, comp.ranks, comp.columns, title=cmp.title(comp))
        if attack_cols:  # as bench run prints it: the methods' rows (in rank order, unranked), retrain's the target
            report.render([r for r in comp.rows if not report.is_reference(r)], console, None, attack_cols,
                          title="attacks on the forget set (target: retrain's values)")
        if table is not None:  # 2 + 3 x 6 columns: wider than the summary
            published.render(table, comp.rows, Console() if sys.stdout.isatty() else Console(width=400))
    elif fmt == "markdown":  # its caption names the run and the objective, as LaTeX's does (said only on stderr before)
        click.echo(f"*{report.md_escape(cmp.title(comp))}*\n\n" + report.to_markdown(comp.rows, comp.ranks,
                                                                                   [*comp.columns, *attack_cols]), nl=False)
        if table is not None:
            click.echo("\n" + published.to_markdown(table, comp.rows), nl=False)
    elif fmt == "latex":  # a booktabs table for a paper (bench.track.latex)
        from bench.track.latex import to_latex

        label = f"tab:bench-{'all' if comp.pooled else comp.target.info.run_id[:8]}"  # one per table of a paper
        click.echo(to_latex(comp.rows, comp.ranks, comp.columns, caption=cmp.title(comp), label=label), nl=False)
        if attack_cols:  # a page is too narrow for them beside the ranked columns
            note(f"the attacks' columns ({', '.join(attack_cols)}) are left out of the LaTeX table; --format markdown "
                 "or csv has them after the ranked columns")
        if table is not None:
            note(f"the published table {table.name} is printed with --format table, markdown or csv; it is on the plot")
    elif table is None:
        click.echo(report.to_csv(comp.rows, comp.ranks, [*comp.columns, *attack_cols]), nl=False)
    else:  # one CSV on stdout (two blocks in one stream parsed as one table with a second header row)
        click.echo(published.to_csv(table, comp.rows), nl=False)
        note(f"the CSV is ours beside {table.name}, one line per (setting, method, column); "
             f"the ranked comparison's CSV is `bench compare --format csv` without --published")
    for line in [*report.partial_rank_notes(comp.rows, comp.ranks, comp.objective), *cmp.seed_notes(comp),
                 *cmp.cost_notes(comp), *cmp.stopped_notes(comp)]:
        note(line)
    for parent in comp.parents:  # said when the run was made, kept with it (a recipe that does not match --original)
        for line in filter(None, parent.data.tags.get(Tag.WARNINGS, "").splitlines()):
            note(f"warning recorded with run {parent.info.run_id}: {line.removeprefix('warning: ')}")
    _print_links(comp, note)

    if no_plot:
        return
    path = plot_path or cmp.default_plot_path(comp)
    points = published.plot_points(table, gap_metric) if table is not None else None
    label = f"published: {table.name}" if table is not None else "published"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        # the run's artifact is a PNG whatever --plot writes (the MLflow UI shows it): one figure, saved twice
        png = Path(path) if Path(path).suffix.lower() == ".png" else Path(tmp) / "pareto.png"
        try:
            optimal = cmp.plot_pareto(comp, path, gap_metric, published=points, published_label=label,
                                      also=() if png == Path(path) else (png,))
        except cmp.NothingToPlot as exc:  # the comparison above stands; only the plot has no point
            note(f"no Pareto plot: {str(exc).removeprefix('Nothing to plot: ')}")
            if plot_path is not None:  # asked for by name: that file was not written
                sys.exit(1)
            return
        front = "; ".join((f"{' / '.join(setting)}: " if len(optimal) > 1 else "") + ", ".join(names)
                          for setting, names in optimal.items())
        note(f"Pareto plot ({gap_metric} vs {cmp.UTILITY_METRIC}; Pareto-optimal: {front}) written to {Path(path).resolve()}")
        if comp.target.info.status == "RUNNING" or comp.unfinished or comp.not_started:  # a plot of part of a run
            # (someone else's, maybe, with --run all) was stored in it as its plot (concurrency audit, 2026-12-07)
            note(f"not logged to run {comp.target.info.run_id}: the plot shows part of its planned trials (above); "
                 "`bench compare` logs it once they have all ended")
            return
        try:
            uri = cmp.log_plot(comp, png)
        except Exception as exc:  # noqa: BLE001 -- the plot is written; a read-only store must not fail the comparison
            note(f"warning: could not log the plot to run {comp.target.info.run_id}: {exc}")
        else:
            note(f"logged to run {comp.target.info.run_id} as {cmp.artifact_name(comp)} ({uri})")


def _print_links(comp, note) -> None:
    """The MLflow UI's compare view of the compared trials, and the runs page with the key metrics."""
    from mlflow.tracking import MlflowClient

    from bench.track.compare import links

    base, needs_ui = links.default_base_url(comp.tracking_uri)
    ids = [t.run_id for t in comp.trials]
    where = " (start it with `bench ui`; another port changes the address)" if needs_ui else ""
    note(f"MLflow compare view of these {len(ids)} trial(s){where}: {links.compare_url(base, comp.experiment_id, ids)}")
    try:
        key = links.write_runs_view(MlflowClient(comp.tracking_uri), comp.experiment_id, comp.target.info.run_id)
    except Exception as exc:  # noqa: BLE001 -- a read-only store: the compare link above still works
        note(f"warning: could not store the runs-page view in the experiment: {exc}")
    else:
        note(f"runs page with {', '.join(links.KEY_METRICS)} shown: {links.runs_view_url(base, comp.experiment_id, key)}")
