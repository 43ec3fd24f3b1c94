"""``bench ui``: the MLflow UI on the store ``bench run`` wrote, until Ctrl-C."""

from __future__ import annotations

import signal

import click
from click.core import ParameterSource

from bench.core.keys import DEFAULT_EXPERIMENT


class _Stop(BaseException):
    """SIGTERM or SIGHUP: stop like Ctrl-C. A BaseException, as KeyboardInterrupt is: the signal
    can land inside MLflow code that catches Exception and wraps it (a traceback and exit 1 when
    SIGTERM came within half a second of "ready")."""


#: the stop signals received by this ``bench ui``: a handler's exception is lost when the signal
#: lands inside a weakref callback or ``__del__`` (Python prints "Exception ignored" and goes on:
#: SQLAlchemy's class registry, 1 in 30 SIGTERMs just after "ready" on a loaded machine, and the
#: command then waited on the server for ever), so :func:`_serve` also reads them here
_received: list[str] = []


def _raise_stop(signum, frame):
    if signum == signal.SIGHUP:  # the terminal is gone: the clean-up's lines must not fail on it
        from bench.core.stops import leave_hung_up_terminal

        leave_hung_up_terminal()
    _received.append(signal.Signals(signum).name)
    raise _Stop(signal.Signals(signum).name)


def _interrupt(signum, frame):
    _received.append("SIGINT")
    raise KeyboardInterrupt


def _serve(proc, poll_s: float = 0.25) -> int:
    """The server's exit code once it exits on its own; :class:`_Stop` (or KeyboardInterrupt) as soon
    as a stop signal was received, even one whose exception was lost (see :data:`_received`)."""
    import subprocess

    while True:
        if _received:
            if _received[-1] == "SIGINT":
                raise KeyboardInterrupt
            raise _Stop(_received[-1])
        try:
            return proc.wait(poll_s)
        except subprocess.TimeoutExpired:
            continue


def _finite_seconds(ctx, param, value: float) -> float:
    """``--start-timeout``: FloatRange lets NaN and inf through (no comparison holds for NaN)."""
    import math

    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds; expected a finite number >= 1.")
    return value


@click.command()
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI",
              help="The MLflow store `bench run` wrote (also MLFLOW_TRACKING_URI). [default: sqlite:///$PWD/mlflow.db]")
@click.option("--experiment", "-e", default=DEFAULT_EXPERIMENT, show_default=True, help="MLflow experiment to open.")
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=5000, show_default=True,
              help="Port of the UI; the next free one when it is taken.")
@click.option("--host", default="127.0.0.1", envvar="BENCH_UI_HOST", show_default=True,
              help="Interface to bind. Anything but a loopback address exposes the UI to the network and must be "
                   "given on the command line (BENCH_UI_HOST may only name a loopback address).")
@click.option("--no-browser-hint", is_flag=True, help="Print only the URLs, without the how-to-open hint.")
@click.option("--start-timeout", type=click.FloatRange(1), default=90, show_default=True,
              callback=_finite_seconds,
              help="Seconds to wait for the server to answer /health.")
@click.pass_context
def ui(ctx, tracking_uri, experiment, port, host, no_browser_hint, start_timeout):
    """Start the MLflow UI on the runs of `bench run` and print the URL of the runs page.

    The server (mlflow server, one worker, no job runner) listens on 127.0.0.1 and stops, with its
    whole process tree, on Ctrl-C or SIGTERM.

    \b
    Examples:
      bench ui
      bench ui --tracking-uri sqlite:////data/exp/mlflow.db --port 5050
      bench ui -e my-experiment --no-browser-hint
    """
    from bench.core.stops import lost_stops_unprinted, stop_signals
    from bench.track import ui as ui_lib
    from bench.track.store import shown_uri

    # the options first, then the store (which reads the database file); the warning once both pass
    warning = ui_lib.check_host(host, explicit=ctx.get_parameter_source("host") == ParameterSource.COMMANDLINE)
    store = ui_lib.resolve_ui_store(tracking_uri)
    chosen = ui_lib.choose_port(host, port)  # resolves --host: no exposure warning for a host that does not exist
    if warning:
        click.echo(warning, err=True)
    if chosen != port:
        click.echo(f"port {port} is in use on {host}: using {chosen}")

    handled = stop_signals()
    previous = {s: signal.getsignal(s) for s in handled}
    # SIGINT too: a shell starts background jobs (`bench ui &`) with SIGINT ignored
    _received.clear()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGHUP, _raise_stop)
    server = None
    keep_log = False
    exit_code = 0
    with lost_stops_unprinted(_Stop):  # a stop lost in a weakref callback: _serve reads _received
        try:
            server = ui_lib.start_server(store, host=host, port=chosen)
            # look the experiment up while the server boots (both take about a second of CPU)
            experiment_id = ui_lib.find_experiment(store, experiment)
            click.echo(f"MLflow tracking store: {shown_uri(store)} (experiment '{experiment}', id {experiment_id})")
            click.echo(f"starting the MLflow UI on {host}:{chosen} (server log: {server.log_path})")
            keep_log = True  # if it never answers, the error names the log
            seconds = server.wait_ready(start_timeout)
            keep_log = False
            click.echo(f"MLflow UI ready in {seconds:.1f} s")
            runs_page, compare_page, trials = _views(store, experiment, experiment_id, server.base_url)
            click.echo(f"runs page:  {runs_page or server.runs_url(experiment_id)}")
            click.echo(f"all trials: {server.trials_url(experiment_id)}")
            if compare_page:
                click.echo(f"compare:    {compare_page}")
            if not no_browser_hint:
                click.echo(_how_to_open(compare_page, trials, chosen))
            click.echo("Ctrl-C stops the server.")
            code = _serve(server.proc)
            keep_log = True
            click.echo(f"Error: the MLflow server exited on its own (code {code}). Last lines of its log "
                       f"({server.log_path}):\n{server.log_tail()}", err=True)
            exit_code = 1
        except (KeyboardInterrupt, _Stop):
            for s in handled:
                signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
            if server is not None:
                click.echo("stopping the MLflow server ...")
            keep_log = False
        finally:
            for s in handled:
                signal.signal(s, signal.SIG_IGN)
            try:
                if server is not None:
                    server.stop()
                    if not keep_log:
                        server.cleanup()
            finally:
                for s, handler in previous.items():
                    if handler is not None:
                        signal.signal(s, handler)
    if exit_code:
        ctx.exit(exit_code)
    click.echo("stopped")


def _how_to_open(compare_page: str | None, trials: int, port: int) -> str:
    latest = ("the latest run opens expanded, with forget_acc, test_acc, avg_gap and unlearn_seconds as "
              "columns" if compare_page else "no `bench run` with trials yet: `bench tune` searches list their "
              "samples the same way")
    return (
        "Open the runs page in a browser: one row per `bench run`; click + on a row to show its trials "
        f"(one child run per method x seed; {latest}). 'all trials' lists every trial as its own row, lowest "
        "avg_gap first"
        + (f"; 'compare' shows the {trials} trial(s) of the latest run side by side (params, metrics, plots)"
           if compare_page else "") + ".\n"
        f"On a remote machine: ssh -L {port}:127.0.0.1:{port} HOST, then open the same URL locally."
    )


def _views(store: str, experiment: str, experiment_id: str, base_url: str) -> tuple[str | None, str | None, int]:
    """(runs page opening with the key metric columns, compare view of the latest run's trials,
    number of trials); None for what the store cannot give (no bench run yet, a read-only store)."""
    from bench.core.errors import BenchError
    from bench.track.compare import links

    try:
        client, _, parent, ids = links.latest_trials(store, experiment)
    except BenchError:
        return None, None, 0
    compare_page = links.compare_url(base_url, experiment_id, ids) if ids else None
    try:
        key = links.write_runs_view(client, experiment_id, parent.info.run_id)
    except Exception as exc:  # noqa: BLE001 -- the plain runs page still works
        click.echo(f"note: could not store the runs-page view (key metric columns): {exc}", err=True)
        return None, compare_page, len(ids)
    return links.runs_view_url(base_url, experiment_id, key), compare_page, len(ids)
