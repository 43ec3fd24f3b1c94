"""``bench run`` end to end: validate, plan, references, trials, summary, MLflow.

Exit codes: 0 every trial finished; 1 some trial failed (each recorded as a failed child run
with its traceback); 2 bad input (before any work); 130 interrupted (finished trials are
already in MLflow, the parent run is marked KILLED).
"""

from __future__ import annotations

import dataclasses
import contextlib
import socket
import time
from datetime import datetime
from typing import Any, Callable

from bench.core.cache_lock import key_lock
from bench.core.console import Printer, ProgressReporter, set_sink
from bench.core.errors import BenchError, RecordError
from bench.core.keys import Tag, json_record, plan_key
from bench.core.options import RunOptions
from bench.core.plugins import get_registry, plugin_versions
from bench.run.checks import check_cluster_resources, failure_hint
from bench.run.interrupts import held_interrupts
from bench.run.plan import make_plan
from bench.run.validate import validate_options
from bench.track.provenance import package_versions
from bench.track import report, resume, tracking, trial_warnings
from bench.track.store import masked_options, shown_uri


def join_cluster(opts: RunOptions, verbose: bool, say) -> bool:
    """Join the Ray cluster at ``--ray-address`` and refuse per-trial resources no node has."""
    from bench.run.executor import start_ray

    started = start_ray(opts.ray_address, verbose, say)
    try:
        check_cluster_resources(opts.cpus_per_trial, opts.gpus_per_trial)
    except BaseException:
        if started:
            from bench.run.ray_processes import shutdown_ray

            shutdown_ray()
        raise
    return started


def close_run(client, experiment_id: str, parent: str, status: str, started_ray: bool,
              then: str = tracking.RESUME_HINT, clean: bool | None = None, say=None) -> RecordError | None:
    """End a parent run: trials an interrupt cut off become KILLED; shut down the Ray we started
    (removing its session folder when ``clean``: by default when the run FINISHED, no trial failed).
    A Ctrl-C or SIGTERM while the runs are marked waits for the marking (said through ``say``; one
    more stops it): a second Ctrl-C just after the first left the parent run RUNNING until the next
    command reaped it (found in review, 2026-12-07). Returns the ``RecordError`` if the store refused
    (for the caller to raise once no other exception is on its way out), else None."""
    try:
        marking = f"marking the parent run {parent} {status} in the MLflow store"
        with held_interrupts(marking, say), tracking.recording(marking, then):
            if status == "KILLED":
                tracking.kill_unfinished_children(client, experiment_id, parent)
            client.set_terminated(parent, status)
    except RecordError as exc:
        return exc
    finally:
        if started_ray:
            from bench.run.ray_processes import stop_ray

            stop_ray(status == "FINISHED" if clean is None else clean)  # a clean run leaves no Ray folder behind
    return None


def refuse_live_parent(parent) -> None:
    """``--resume`` of a parent run still RUNNING: its driver is alive (on this host a dead driver's
    runs were marked KILLED just before, ``reap_dead_runs``) or on another host, where bench cannot
    tell. Taking it over would run its unfinished trials twice, under one parent."""
    if parent.info.status != "RUNNING":
        return
    tags = parent.data.tags
    pid, host = tags.get(Tag.DRIVER_PID, "?"), tags.get(Tag.DRIVER_HOST, "?")
    where = "this host" if host == socket.gethostname() else f"host {host}"
    hint = (f"stop it (kill {pid}) or wait for it to end" if host == socket.gethostname() else
            f"wait for it to end, or if that machine is gone mark the run KILLED in MLflow (e.g. MlflowClient()."
            f"set_terminated('{parent.info.run_id}', 'KILLED'))")
    raise BenchError(f"--resume: run {parent.info.run_id} ('{parent.info.run_name}') of this plan is still running "
                     f"(driver pid {pid} on {where}); resuming it now would run its trials twice: {hint}, then "
                     f"resume; or leave out --resume for a new run.")


def open_parent(plan, opts: RunOptions, versions: dict, plugins: dict, say, tags: dict | None = None):
    """The MLflow side of a run's start: the experiment, runs left RUNNING by dead drivers, the
    parent run (a new one, or the earlier one ``--resume`` continues) and its ``experiment.json``.
    ``tags``: more tags for a new parent run (``bench reproduce``'s). Returns (client, experiment id,
    parent run id, run name, {trial_key: metrics} already done)."""
    from mlflow.tracking import MlflowClient

    experiment_id = tracking.setup_experiment(plan.tracking_uri, opts.experiment)
    client = MlflowClient(plan.tracking_uri)
    with tracking.recording("opening the run in the MLflow store", tracking.NOTHING_RUN):
        reaped = tracking.reap_dead_runs(client)  # before --resume looks for its parent run
        if reaped:
            say(tracking.reap_notice(reaped), always=True)
        pkey = plan_key((t.trial_key for t in plan.trials), (f"device={t.device} threads={t.threads}" for t in plan.trials))
        # two --resume of one plan at once (one machine, one cache): the second waits here for the
        # first to claim the parent, then finds its driver alive and is refused (both had taken it)
        resume_lock = key_lock(plan.cache_dir, f"resume-{pkey}") if opts.resume else contextlib.nullcontext()
        with resume_lock:
            earlier = resume.find_resumable(client, experiment_id, pkey) if opts.resume else None
            if opts.resume and earlier is None:  # a run recorded before the key held the resources: same options?
                old = resume.find_resumable(client, experiment_id, plan_key(t.trial_key for t in plan.trials))
                was = old[0].data.params if old else {}
                if old and (was.get("options.cpus_per_trial"), was.get("options.device")) == (str(opts.cpus_per_trial), opts.device):
                    earlier = old
            done: dict[str, dict] = {}
            if earlier is not None:
                parent_run, done = earlier
                parent, run_name = parent_run.info.run_id, parent_run.info.run_name
                refuse_live_parent(parent_run)  # two drivers would run its trials twice
                resume.reopen_parent(client, experiment_id, parent, {"options": masked_options(opts.as_dict()), "versions": versions,
                                                                     "plugins": plugins})
                unsaved = 0
                if opts.save_models:
                    done, unsaved = resume.drop_unsaved(done)
                done, attack_failed = resume.drop_attack_failures(done)
                done, stale = resume.fresh_results(done, plan.trials)
                say(f"resuming parent run {parent} ('{run_name}'): {sum(t.trial_key in done for t in plan.trials)} of "
                    f"{len(plan.trials)} trial(s) already finished")
                if unsaved:
                    say(f"--resume --save-models: {unsaved} finished trial(s) kept no model (their session did not "
                        f"use --save-models): running them again", always=True)
                if attack_failed:
                    say(f"--resume: {attack_failed} finished trial(s) lack an attack's metrics (it failed in them): "
                        f"running them again", always=True)
                if stale:
                    say(f"--resume: {stale} finished trial(s) were measured with other code (their method's or an "
                        f"attack's plugin, bench or torch changed since): running them again", always=True)
            else:
                options = {k: v for k, v in masked_options(opts.as_dict()).items() if k != "resume"}
                if opts.resume:
                    latest = resume.changed_since_latest(client, experiment_id, tracking.flatten({"options": options}))
                    why = (f"; the latest run, {latest[0]}, differs in {'; '.join(latest[1][:4])}"
                           f"{f' and {len(latest[1]) - 4} more' if len(latest[1]) > 4 else ''}" if latest and latest[1] else "")
                    say(f"--resume: no earlier run of this plan in experiment '{opts.experiment}' (the same trials, "
                        f"--cpus-per-trial and device); starting a new one{why}", always=True)
                run_name = opts.run_name or f"bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
                parent_params = tracking.flatten({"options": options, "versions": versions, "plugins": plugins})
                parent = tracking.start_parent(plan.tracking_uri, experiment_id, run_name, parent_params,
                                               {Tag.TRIALS: str(len(plan.trials)), Tag.PLAN_KEY: pkey,
                                                Tag.CACHE_DIR: str(plan.cache_dir), **(tags or {})})
                say(f"parent run {parent} ('{run_name}')")
                client.log_text(parent, json_record({"options": options, "trials": [t.as_dict() for t in plan.trials]},
                                                    indent=1), "experiment.json")
    return client, experiment_id, parent, run_name, done


def preimport_tune(ray_imported, cancelled) -> None:
    """Import Ray Tune and its MLflow callback (seconds) while the main thread waits for Ray to
    start, once the main thread has imported ``ray`` itself (``ray_imported`` is set): the trials'
    set-up then finds them imported. A failure here is left to the main thread's own import."""
    if not ray_imported.wait(timeout=120) or cancelled.is_set():
        return
    try:
        import ray.air.integrations.mlflow  # noqa: F401
        import ray.tune  # noqa: F401

        import bench.run.progress  # noqa: F401
    except Exception:
        pass


def start_executor(opts: RunOptions, verbose: bool, started_ray: bool, say, ray_imported=None) -> bool:
    """Import the executor (torch, ray), stop Ray processes of dead bench drivers and start (or
    join) Ray; returns whether this process started it."""
    from bench.run.executor import start_ray  # torch: only once validated
    from bench.run.ray_processes import reap_leftover_ray

    if opts.executor == "ray" and ray_imported is not None:
        import ray  # noqa: F401

        ray_imported.set()

    leftover = reap_leftover_ray()
    if leftover:
        say(f"stopped {len(leftover)} Ray process(es) left running by a bench process that died", always=True)
    if opts.executor == "ray" and not started_ray:
        started_ray = start_ray(opts.ray_address, verbose, say)
    return started_ray


def _nothing_left(opening, plan) -> bool:
    """Whether the (resumed) parent run ``opening`` opens has every trial of ``plan`` finished; waits
    for it (a resume only: a fresh run opens its parent while Ray starts)."""
    done = opening.result()[4]
    return all(t.trial_key in done for t in plan.trials)


def _abandon_start(opening, status: str, started_ray: bool) -> None:
    """Starting the executor failed or was interrupted: close the parent run the MLflow thread
    opened (if it did), and shut down a Ray this process started."""
    try:
        client, experiment_id, parent, _, _ = opening.result()
    except BaseException:
        client = None
    if client is not None:
        close_run(client, experiment_id, parent, status, started_ray)
    elif started_ray:
        from bench.run.ray_processes import shutdown_ray

        shutdown_ray()


def _fail_blocked(plan, todo: list[int], payload, client, experiment_id: str, parent: str, say) -> dict[int, str]:
    """Record as failed (child run, traceback in error.txt, one line here) every trial to run that
    needs a reference which failed to train; returns ``{plan position: error text}``."""
    from bench.run.payload import blocked_trials

    blocked = {todo[i]: text for i, text in blocked_trials([plan.trials[i] for i in todo], payload).items()}
    for i, text in sorted(blocked.items()):
        spec = plan.trials[i]
        with tracking.recording(f"recording trial {spec.trial_name} in the MLflow store"):
            run_id = tracking.log_local_trial(plan.tracking_uri, experiment_id, parent, spec, None, text)
        say(tracking.failure_line("[not run]", spec.trial_name, text, run_id), always=True)
    return blocked


def run(opts: RunOptions, console, verbose: bool = False, quiet: bool = False, tags: dict | None = None,
        on_plan: Callable[[Any], None] | None = None) -> int:
    """``bench run``: plan, references, trials, summary; returns the exit status. ``tags``: more tags
    for the parent run (``bench reproduce`` names the run it reproduces); ``on_plan(plan)``: called
    once the plan is made, before anything is recorded or trained (``bench reproduce`` says there
    what its record will not match)."""
    say = Printer(console, quiet)
    t_start = time.perf_counter()
    registry = get_registry()
    validate_options(registry, opts)  # the cheap checks (again in make_plan): bad input is refused with no other line
    say(f"bench run: planning methods '{opts.methods}' x seeds {','.join(map(str, opts.seeds))} on "
        f"{', '.join(opts.datasets)} / {', '.join(opts.models)} / {', '.join(opts.forgets)} (loading the data)")
    versions = package_versions()
    plugins = plugin_versions()
    plan = make_plan(registry, opts, versions, plugins, say)
    left_out = [n for n in registry.resolve("method", opts.methods) if n not in {m.name for m in plan.methods}]
    if left_out:
        say(f"left out of --methods '{opts.methods}': {', '.join(left_out)} (they cannot take "
            f"{', '.join(opts.forgets)}; name one to see why)", always=True)
    say(f"{len(plan.trials)} trial(s): methods {', '.join(m.name for m in plan.methods)} x seeds "
        f"{','.join(map(str, opts.seeds))} on {', '.join(opts.datasets)} / {', '.join(opts.models)} / {', '.join(opts.forgets)}")
    say(f"MLflow tracking store: {shown_uri(plan.tracking_uri)} (experiment '{opts.experiment}')")
    if on_plan is not None:
        on_plan(plan)

    started_ray = False
    if opts.executor == "ray" and opts.ray_address:  # join the cluster and check that a trial fits, before recording
        started_ray = join_cluster(opts, verbose, say)

    # The parent run is created in MLflow on a thread while this one imports torch and starts Ray
    # (seconds each, independent): the run is recorded before any reference or trial work starts.
    # Under Ray another thread imports Ray Tune meanwhile.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    ray_imported, cancelled = threading.Event(), threading.Event()
    if opts.executor == "ray":
        threading.Thread(target=preimport_tune, args=(ray_imported, cancelled), name="bench-import-tune", daemon=True).start()
    with ThreadPoolExecutor(1, thread_name_prefix="bench-mlflow") as pool:
        opening = pool.submit(open_parent, plan, opts, versions, plugins, say, tags)
        try:
            if opts.resume and opts.executor == "ray" and not started_ray and _nothing_left(opening, plan):
                # every trial finished before: no Ray for the summary (it started one, 11.5 s; repro audit)
                cancelled.set()
                ray_imported.set()
                plan = dataclasses.replace(plan, options=dataclasses.replace(opts, executor="local"))
                start_executor(plan.options, verbose, False, say)  # the leftover-Ray reaper; starts nothing
            else:
                started_ray = start_executor(opts, verbose, started_ray, say, ray_imported)
            # a Ctrl-C while this waits for the parent (--executor local: about 2 s) closes it KILLED too
            client, experiment_id, parent, run_name, done = opening.result()
        except BaseException as exc:
            cancelled.set()
            ray_imported.set()
            _abandon_start(opening, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", started_ray)
            if isinstance(exc, KeyboardInterrupt):
                say("interrupted: finished trials are recorded in MLflow.", always=True)
                return 130
            raise
    todo = [i for i, t in enumerate(plan.trials) if t.trial_key not in done]
    status = "FAILED"
    reporter = ProgressReporter(console, quiet, say=say)  # per-epoch progress of long work (bench.core.console)
    previous_sink = set_sink(reporter)
    stage = "references"  # what an interrupt cuts: said (it said "finished trials are recorded" with none run)
    try:
        from bench.run.executor import (  # torch: only once validated
            Outcome,
            run_local,
            run_ray,
        )
        from bench.run.prepare import prepare_references
        from bench.track.ray_runs import make_ray_callback

        payload, ref_rows, trained = prepare_references(plan, versions, say)
        stage = "trials"
        with tracking.recording("recording the references in the MLflow store", "The references are cached: rerun once "
                                "the store takes writes."):
            tracking.log_metrics(client, parent, {"references_trained": trained})
            if payload.warnings:  # kept with the run: bench compare says them again (they were on the console only)
                tracking.set_warnings(client, parent, payload.warnings)

        blocked = _fail_blocked(plan, todo, payload, client, experiment_id, parent, say)
        ran = [i for i in todo if i not in blocked]
        trials = [plan.trials[i] for i in ran]
        if not trials:
            outcome = Outcome()
        elif opts.executor == "ray":
            callback = make_ray_callback(plan.tracking_uri, opts.experiment, parent, trials)
            outcome = run_ray(trials, payload, cpus=opts.cpus_per_trial, gpus=opts.gpus_per_trial,
                              storage=f"{plan.cache_dir}/ray_results", name=f"{run_name}-{parent[:8]}-{int(time.time())}",
                              callbacks=[callback], say=say, verbose=verbose)
        else:
            def log_trial(spec, metrics, error):
                with tracking.recording(f"recording trial {spec.trial_name} in the MLflow store"):
                    return tracking.log_local_trial(plan.tracking_uri, experiment_id, parent, spec, metrics, error)

            outcome = run_local(trials, payload, log_trial, say)
            if outcome.cut is not None:  # recorded KILLED, as under Ray: bench compare lost it (found in review)
                cut = trials[outcome.cut].trial_name
                try:  # a second Ctrl-C just then waits for the write, as a finished trial's does
                    with held_interrupts(f"recording the interrupted trial {cut} as KILLED in the MLflow store", say):
                        tracking.log_local_trial(plan.tracking_uri, experiment_id, parent, trials[outcome.cut], None,
                                                 None, killed=True)
                except Exception as exc:  # noqa: BLE001 -- the interrupt's exit status stands; the record says less
                    # (the exception's type too: an empty message said nothing, found in review)
                    say(f"note: the interrupted trial {cut} is not in the store ({type(exc).__name__}: {exc})")
        reporter.close()  # no progress bar under the summary
        # back to plan positions, with the trials an earlier (resumed) run finished
        results = {ran[i]: m for i, m in outcome.results.items()}
        failures = {ran[i]: e for i, e in outcome.failures.items()} | blocked
        # cut off by an interrupt (recorded KILLED in MLflow, or never started): neither finished nor failed
        killed = {ran[i] for i in range(len(trials))
                  if outcome.interrupted and i not in outcome.results and i not in outcome.failures}
        results.update({i: done[t.trial_key] for i, t in enumerate(plan.trials) if t.trial_key in done})

        from bench.run.references import chance_rates

        unchanged = trial_warnings.method_warnings(plan.trials, results, chance=chance_rates(plan))
        attack_errors = trial_warnings.attack_error_lines(plan.trials, results)
        for line in (*unchanged, *attack_errors):
            say(line, always=True)
        # kept with the run's other warnings: bench compare says them again (a resumed run's earlier
        # session may have left lines that no longer hold: rewritten)
        if unchanged or attack_errors or opts.resume:
            with tracking.recording("recording the warnings in the MLflow store"):
                tracking.set_warnings(client, parent, (*payload.warnings, *unchanged, *attack_errors))
        if opts.resume and ran:  # the finished runs a rerun replaced: tagged with the run now counted
            from bench.track.resume import mark_superseded

            with tracking.recording("tagging the trial runs this resume replaced in the MLflow store"):
                mark_superseded(client, experiment_id, parent)
        attack_cols = report.attack_columns(results.values())
        rows = report.build_rows(plan.trials, results, failures, ref_rows, attack_cols, killed=killed)
        columns = report.columns_for(rows)
        report.render(rows, console, columns=columns)
        if attack_cols:  # the methods' rows only: attacks run on unlearned models, not on the references
            report.render([r for r in rows if not report.is_reference(r)], console, columns=attack_cols,
                          title="attacks on the forget set (target: retrain's values)")
            if not any(t.method == "retrain" for t in plan.trials):
                say("attacks run on unlearned models only: add 'retrain' to --methods for the values to compare with.")
        with tracking.recording("writing the run's summary to the MLflow store"):
            client.log_text(parent, report.to_markdown(rows, columns=columns + attack_cols), "summary.md")
            client.log_text(parent, report.to_csv(rows, columns=columns + attack_cols), "summary.csv")
            tracking.log_metrics(client, parent, {"trials_finished": len(results), "trials_failed": len(failures),
                                                  "wall_seconds": time.perf_counter() - t_start})
        if outcome.interrupted:
            status = "KILLED"
            say("interrupted: finished trials are recorded in MLflow.", always=True)
            code = 130
        elif failures:
            ray_log = f"; Ray's log: {outcome.log_path}" if outcome.log_path else ""
            say(f"{len(failures)} trial(s) failed; their tracebacks are in MLflow (artifact error.txt){ray_log}."
                + failure_hint(failures.values(), opts.gpus_per_trial), always=True)
            code = 1
        else:
            status = "FINISHED"
            code = 1 if attack_errors else 0  # a number asked for is missing: not a clean exit
    except KeyboardInterrupt:
        status = "KILLED"
        say("interrupted while training the references: those trained are cached (the next run uses them), the "
            "rest are lost; no trial ran this time." if stage == "references" else
            "interrupted: finished trials are recorded in MLflow.", always=True)
        code = 130
    finally:
        set_sink(previous_sink)
        reporter.close()
        refused = close_run(client, experiment_id, parent, status, started_ray, say=say)
    if refused is not None:
        raise refused
    say(f"MLflow tracking store: {shown_uri(plan.tracking_uri)}; parent run {parent}; wall time {time.perf_counter() - t_start:.1f}s", always=True)
    return code
