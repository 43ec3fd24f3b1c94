"""``bench reproduce``: run a recorded ``bench run`` again from its record and check its numbers."""

from __future__ import annotations

import math
import os
import sys
import uuid

import click

from bench.cli.options import not_empty
from bench.core.keys import DEFAULT_EXPERIMENT

#: the tag that tells one reproduction's run from another of the same recorded run
REPRODUCTION_TAG = "bench.reproduction"


def _tolerance(flag: str, value: float) -> None:
    from bench.core.errors import BenchError

    if not math.isfinite(value) or value < 0:
        raise BenchError(f"Bad {flag} {value}: expected a finite number >= 0 (0: the numbers must be equal), "
                         f"e.g. {flag} 1e-6.")


@click.command()
@click.argument("run_ref", metavar="RUN_ID")
@click.option("--experiment", "-e", default=DEFAULT_EXPERIMENT, show_default=True, help="MLflow experiment of the run.")
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI",
              help="MLflow store holding the run; the new run is recorded there too (also MLFLOW_TRACKING_URI). "
                   "[default: sqlite:///$PWD/mlflow.db]")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Reference-model cache of the new run: an empty directory retrains the references too. "
                   "[default: the recorded run's]")
@click.option("--executor", type=click.Choice(["ray", "local"]), default=None,
              help="Where the trials run. [default: the recorded run's]")
@click.option("--rtol", type=float, default=0.0, show_default=True, help="Relative tolerance of the comparison.")
@click.option("--atol", type=float, default=0.0, show_default=True, help="Absolute tolerance of the comparison.")
@click.option("--verbose", "-v", is_flag=True, help="Show Ray's and the trials' logs.")
@click.option("--quiet", "-q", is_flag=True, help="Only the run's summary and the comparison.")
def reproduce(run_ref, experiment, tracking_uri, cache_dir, executor, rtol, atol, verbose, quiet):
    """Run a recorded `bench run` again from its record and check every trial's numbers.

    RUN_ID is a parent run of the experiment (its id, a unique prefix of 4+ characters, its name, or
    latest). Its recorded options (experiment.json) are run again, in the directory it ran in, as a
    new parent run tagged bench.reproduces; each trial is then paired with the recorded one by its
    trial key and every metric compared, except times and memory (*_seconds, *_mb, speedup*), which
    no two runs share. Exit 0 when every recorded trial gives the same numbers, 1 when one differs
    or fails, 2 for bad input.

    \b
    Examples:
      bench reproduce latest
      bench reproduce 3f2a9c --cache-dir /tmp/empty-cache      (retrain the references too)
      bench reproduce 3f2a9c --executor local --rtol 1e-6
    """
    from bench.core.stops import decide_status, sigterm_handled_as_ctrl_c

    with sigterm_handled_as_ctrl_c():
        code = decide_status(_reproduce(run_ref, experiment, tracking_uri, cache_dir, executor, rtol, atol, verbose, quiet))
    sys.exit(code)


def _reproduce(run_ref, experiment, tracking_uri, cache_dir, executor, rtol, atol, verbose, quiet) -> int:
    from bench.core.errors import BenchError

    for flag, value, what in (("RUN_ID", run_ref, "a parent run id, name or latest"),
                              ("--experiment", experiment, "an experiment name"),
                              ("--tracking-uri", tracking_uri, "an MLflow store"),
                              ("--cache-dir", cache_dir, "a directory")):
        not_empty(flag, value, what)
    _tolerance("--rtol", rtol)
    _tolerance("--atol", atol)
    if run_ref.strip() == "all":
        raise BenchError("RUN_ID all: reproduce takes one run; give its id, name or latest.")

    from bench.cli.options import console
    from bench.core.keys import Tag
    from bench.core.plugins import plugin_versions
    from bench.run.runner import run as run_experiment
    from bench.track.provenance import package_versions
    from bench.track import reproduce as rep
    from bench.track.compare.query import find_experiment, open_store, select_parents

    uri, client = open_store(tracking_uri)
    exp = find_experiment(client, experiment)
    (parent,) = select_parents(client, exp, run_ref, flag="RUN_ID", command="reproduce")
    pid = parent.info.run_id
    if parent.info.status in ("RUNNING", "SCHEDULED"):  # its trials are not all recorded yet
        raise BenchError(f"Run {pid} ('{parent.info.run_name}') is still running, or was left RUNNING by a driver that "
                         f"died (the next bench run on this store marks it); reproduce it once it has ended.")
    opts = rep.recorded_options(client, parent)
    opts.tracking_uri, opts.experiment = uri, exp.name
    opts.run_name = f"reproduce-{parent.info.run_name}"
    if executor is not None:
        opts.executor = executor

    def say(line: str) -> None:
        click.echo(line, err=True)

    used = parent.data.tags.get(Tag.CACHE_DIR)  # resolved (the option is None when it came from the environment)
    if cache_dir is not None:
        opts.cache_dir = os.path.abspath(os.path.expanduser(cache_dir))  # given here, used there (the recorded directory)
    elif opts.cache_dir is None and used:  # the cache it used, not this environment's (outputs audit, 2026-12-07)
        if os.path.isdir(used):
            opts.cache_dir = used
        else:
            say(f"note: the run used the cache {used}, which does not exist here: using this environment's "
                "(references missing there are trained again)")

    tags = parent.data.tags
    say(f"reproducing run {pid} ('{parent.info.run_name}') of experiment '{exp.name}': "
        f"{tags.get(Tag.COMMAND, '(its command line was not recorded)')}")
    changed = (rep.version_changes(parent.data.params, "versions", package_versions())
               + rep.version_changes(parent.data.params, "plugins", plugin_versions()))
    if changed:
        say(f"note: not as recorded: {'; '.join(changed)} (numbers may differ in their last digits)")
    token = uuid.uuid4().hex  # this reproduction's own run, even when another of the same run goes on beside it
    here, there = os.getcwd(), tags.get(Tag.CWD)
    if there and there != here:
        if os.path.isdir(there):
            say(f"running in {there}, the directory the run was made in (relative paths of its options are relative to it)")
        else:
            say(f"note: the run was made in {there}, which does not exist here: running in {here}")
            there = None
    try:
        if there:
            os.chdir(there)
        record = rep.trial_results(client, exp.experiment_id, pid)

        def before_work(plan) -> None:  # said at once, not after the whole rerun (repro audit, 2026-12-07)
            from bench.track.tracking import trial_params

            lines = rep.plan_differences(record, {t.trial_name: trial_params(t) for t in plan.trials})
            if lines:
                say(f"note: {len(lines)} recorded trial(s) cannot give the same numbers, as the plan made now differs "
                    f"from the record (Ctrl-C stops here): " + " | ".join(lines[:4])
                    + (f" | and {len(lines) - 4} more" if len(lines) > 4 else ""))

        try:
            code = run_experiment(opts, console(), verbose=verbose, quiet=quiet,
                                  tags={Tag.REPRODUCES: pid, REPRODUCTION_TAG: token}, on_plan=before_work)
        except BenchError as exc:  # an indices file gone since: the record keeps every trial's forget set
            files = [f for f in opts.forgets if f.startswith("indices:")]
            if not files or "no file at" not in str(exc):
                raise
            raise BenchError(f"{exc} The recorded run kept each trial's forget set (artifact forget_indices.txt): "
                             f"`bench run` with --forget indices:TRIAL_RUN_ID (one of run {pid}'s trials) forgets "
                             f"exactly it again; reproduce needs the file.") from None
    finally:
        os.chdir(here)
    if code == 130:
        return code
    new = client.search_runs([exp.experiment_id], filter_string=f"tags.`{REPRODUCTION_TAG}` = '{token}'",
                             max_results=1)[0]
    checks = rep.check_trials(record, rep.trial_results(client, exp.experiment_id, new.info.run_id), rtol, atol)
    finished = sum(status == "FINISHED" for _, status, *_ in record.values())
    same = sum(c.verdict == "identical" for c in checks)
    # every line identical, and at least one: a record without a finished trial confirms nothing
    verdict = "identical" if checks and same == len(checks) else "differs"
    tolerance = f" within rtol {rtol:g}, atol {atol:g}" if rtol or atol else ""
    width = max((len(c.trial) for c in checks), default=0)
    lines = [f"reproduction of run {pid} by run {new.info.run_id}: {same} of {finished} recorded trial(s) "
             f"give the same numbers{tolerance} (times and memory left out)"
             + ("; the record has no finished trial, so nothing was confirmed" if not finished else ""),
             *(c.line(width) for c in checks)]
    click.echo("\n".join(lines))
    client.set_tag(new.info.run_id, Tag.REPRODUCED, verdict)
    client.log_text(new.info.run_id, "\n".join(lines) + "\n", "reproduction.txt")
    return 0 if verdict == "identical" else 1
