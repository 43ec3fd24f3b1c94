"""``bench tune``: search a method's declared hyperparameter space with Ray Tune.

Each sample is an ordinary trial (same references, same evaluation, same MLflow child run, with
the sampled values as its ``params.*``) under one parent run tagged ``bench.kind=tune``. The
samples are drawn beforehand from the domains of the method's ``search_space``, each with its own
generator seeded by ``--seed`` and its number (``bench.run.tune_samples``: ``--resume`` runs the
ones an interrupted search did not finish), and Tune runs them; sample 0 is the method's defaults
for the setting (``--no-defaults-first`` leaves them out), so that the best saved is never
worse than what ``bench run`` gives without ``--params``; ``--scheduler asha`` adds Tune's ASHA, which stops samples early on
the intermediate results a method reports through ``ctx.report`` (one per epoch for ``ft`` and
``ga``). The best sample's parameters are saved as JSON ``{"METHOD": {...all parameters...}}``
(``--output``, and the parent run's artifact ``best_params.json``) for ``bench run --params``.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.core.console import Printer, ProgressReporter, set_sink
from bench.core.errors import BenchError
from bench.core.fs import check_writable_file
from bench.core.options import RunOptions
from bench.core.plugins import get_registry, plugin_versions
from bench.eval.metrics import CLASS_ONLY, CONTINUAL_ONLY, METRIC_DIRECTIONS, PER_EPOCH, objective_attack
from bench.run.checks import failure_hint
from bench.run.plan import make_plan
from bench.run.validate import validate_options
from bench.run.runner import close_run, join_cluster
from bench.run import tune_samples
from bench.run.tune_params import TUNED_ON, best_sample, defaults_fate, defaults_ran, sample_counts, saved_params, tied_with
from bench.run.tune_space import check_tunable, fit_space, refused_samples
from bench.track.provenance import package_versions
from bench.track import tracking, trial_warnings
from bench.track.ray_runs import make_ray_callback
from bench.track.store import masked_options, shown_uri

def check_objective(plan, registry, objective: str, scheduler: str) -> None:
    """An objective the planned setting produces: a continual metric needs a ``seq:`` request, a
    class metric a class request, an attack's metric that attack; under ASHA one that every
    per-epoch report holds (otherwise Ray Tune stops the search at the first report, after the
    references were trained)."""
    forget = plan.groups[0].forget if plan.groups else None
    if forget is None:
        return
    continual = forget.kind == "seq"
    by_class = forget.kind == "class" or (continual and forget.labels is not None)
    where = f"--forget {forget.text}"
    if objective in CONTINUAL_ONLY and not continual:
        raise BenchError(f"Objective '{objective}' is measured over a sequence of requests, and {where} is a single "
                         f"request: give --forget seq:NxK or seq:class:A,B,..., or another objective (e.g. avg_gap).")
    if objective in CLASS_ONLY and not by_class:
        raise BenchError(f"Objective '{objective}' is measured on class requests, and {where} is not one: give "
                         f"--forget class:C (or seq:class:A,B,...), or another objective (e.g. test_acc).")
    owner = objective_attack(objective, {e.name: e.obj for e in registry.entries("attack")})
    if owner is not None and owner not in plan.attacks:
        raise BenchError(f"Objective '{objective}' is a metric of attack '{owner}', which this search does "
                         f"not run: add --attacks {owner} (or choose another objective).")
    cuda = str(plan.device).startswith("cuda")
    if objective in ("peak_memory_reserved_mb",) and not cuda or objective == "memory_delta_mb" and cuda:
        have, other = ("the CPU", "a GPU (--device cuda)") if not cuda else ("a GPU", "the CPU")
        raise BenchError(f"Objective '{objective}' is measured on {other} only, and this search runs on {have}: "
                         f"choose peak_memory_mb (measured on both) or run on {other}.")
    if scheduler == "asha" and continual:  # a sequence reports no epochs: ASHA stopped nothing, silently (seq audit)
        raise BenchError(f"--scheduler asha stops samples on their per-epoch reports, and {where} (a sequence of "
                         f"requests) reports none: use --scheduler fifo.")
    if scheduler == "asha" and objective not in PER_EPOCH:
        raise BenchError(f"Objective '{objective}' is measured once a sample ends, and --scheduler asha compares "
                         f"samples on their per-epoch reports ({', '.join(PER_EPOCH[:8])}, ...): use --scheduler "
                         f"fifo for it, or one of those objectives.")


def check_output(output: str | None, method: str) -> Path:
    """``--output``: where the best parameters go, checked before any work and without creating
    anything: an existing file we can open for writing, or a new file in a directory that exists
    (or can be created under its nearest existing parent) and takes a new file (``probe_write``)."""
    if output is not None and not output.strip():
        raise BenchError(f"Empty --output: expected a file for the best parameters; drop it to write "
                         f"best-params-{method}.json here.")
    given = output or f"best-params-{method}.json"
    fix = f"Pass a writable file path, e.g. --output {Path(tempfile.gettempdir()) / f'best-params-{method}.json'}."
    return check_writable_file(given, "--output", fix, "a file to write the best parameters to")


def tune_method(opts: RunOptions, method: str, objective: str, num_samples: int, scheduler: str, seed: int,
                output: str | None, console, verbose: bool = False, quiet: bool = False, defaults_first: bool = True) -> int:

    say = Printer(console, quiet)
    registry = get_registry()
    check_tunable(registry, method, objective, num_samples, scheduler)
    path = check_output(output, method)
    if len(opts.datasets) != 1 or len(opts.models) != 1 or len(opts.forgets) != 1 or len(opts.seeds) != 1:
        raise BenchError("bench tune searches one setting: give one --dataset, --model, --forget and --seed.")
    if opts.resume and scheduler == "asha":
        raise BenchError("--resume with --scheduler asha: ASHA stops samples on how every other sample did at the same "
                         "epoch, which a resumed search no longer has for the earlier samples. Resume a fifo search, or "
                         "run this one again without --resume.")
    opts.methods = method
    opts.executor = "ray"
    validate_options(registry, opts)  # the cheap checks first: bad input is refused with no other line
    say(f"bench tune: planning method '{method}' on {opts.datasets[0]} / {opts.models[0]} / {opts.forgets[0]} "
        "(loading the data)")  # the first line came after 3.5 s (found in review)
    versions, plugins = package_versions(), plugin_versions()
    plan = make_plan(registry, opts, versions, plugins, say)
    check_objective(plan, registry, objective, scheduler)
    method_obj = registry.get("method", method)
    mode = METRIC_DIRECTIONS[objective]
    t_start = time.perf_counter()

    from mlflow.tracking import MlflowClient

    from bench.run.executor import (  # torch and ray: only once validated
        Outcome,
        run_ray,
        start_ray,
    )
    from bench.run.ray_processes import reap_leftover_ray
    from bench.run.prepare import prepare_references

    if not any(k not in opts.params.get(method, {}) for k in method_obj.search_space):
        raise BenchError(f"Every parameter of '{method}' with a search space is fixed by --param: nothing left to tune.")
    domains = fit_space(plan.methods[0], plan, opts.params.get(method, {}), say)
    # the defaults as they apply here (the dataset's, with -p), restricted to what is searched
    defaults = {k: plan.trials[0].params[k] for k in domains} if defaults_first else None
    experiment_id = tracking.setup_experiment(plan.tracking_uri, opts.experiment)
    client = MlflowClient(plan.tracking_uri)
    reaped = tracking.reap_dead_runs(client)
    if reaped:
        say(tracking.reap_notice(reaped), always=True)
    if reap_leftover_ray():
        say("stopped Ray process(es) left running by a bench process that died", always=True)
    run_name = opts.run_name or f"tune-{method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    params = tracking.flatten({
        "tune": {"method": method, "objective": objective, "mode": mode, "num_samples": num_samples, "scheduler": scheduler,
                 "seed": seed, "space": {k: d.describe() for k, d in domains.items()}, "defaults_first": defaults_first},
        "options": {k: v for k, v in masked_options(opts.as_dict()).items() if k != "resume"}, "versions": versions,
        "plugins": plugins,
    })
    # every sample fixed beforehand (bench.run.tune_samples): what --resume finds again
    first = [] if defaults is None else [defaults]
    base = plan.trials[0]
    specs = [base.with_params(p, f"{base.trial_name} sample {k}")
             for k, p in enumerate(tune_samples.samples(domains, num_samples, seed, first))]
    key = tune_samples.search_key(base.trial_key, objective, mode, scheduler, seed, domains, first)
    unrunnable = refused_samples(plan.methods[0], plan, specs)  # combinations the setting refuses: not run
    if len(unrunnable) == num_samples:
        raise BenchError(f"Every sample of the search is refused on this setting ({next(iter(unrunnable.values()))}). "
                         f"Fix a parameter with -p {method}.NAME=VALUE, or tune on another setting.")
    parent, run_name, kept = tune_samples.open_search(
        client, tracking_uri=plan.tracking_uri, experiment_id=experiment_id, key=key, resume=opts.resume,
        run_name=run_name, params=params, specs=specs, say=say,
        record={"num_samples": num_samples, "options": masked_options(opts.as_dict()), "versions": versions,
                "plugins": plugins})
    say(f"tuning '{method}' over {', '.join(domains)}: {num_samples} sample(s), objective {objective} ({mode}), scheduler {scheduler}")
    if defaults is not None:
        say("sample 0 runs the defaults (" + ", ".join(f"{k}={v!r}" for k, v in defaults.items()) + "): the best saved "
            "is never worse than them (--no-defaults-first draws every sample)")
    say(f"MLflow tracking store: {shown_uri(plan.tracking_uri)}; parent run {parent} ('{run_name}')")
    started_ray = clean_ray = searched = False  # clean_ray: no sample failed (Ray's session folder then goes)
    status, code = "FAILED", 1
    reporter = ProgressReporter(console, quiet, say=say)  # per-epoch progress of long work (bench.core.console)
    previous_sink = set_sink(reporter)
    try:
        if unrunnable:
            k, why = next(iter(unrunnable.items()))
            shown = ", ".join(f"{n}={specs[k].params[n]!r}" for n in domains)
            say(f"note: {len(unrunnable)} of {num_samples} sample(s) of this search are refused by the setting and are not "
                f"run (sample {k}: {shown}: {why}); fix one of those parameters with -p to search the rest.", always=True)
        todo = [k for k in range(num_samples) if k not in kept and k not in unrunnable]  # (--resume: the unfinished)
        payload, warnings, failures = None, (), {}
        if todo:  # else nothing to train or run: the best of the kept samples is saved
            # on a cluster, a sample that fits no node hung at "training N reference model(s)" (found in review)
            started_ray = join_cluster(opts, verbose, say) if opts.ray_address else start_ray(None, verbose, say)
            payload, _, _ = prepare_references(plan, versions, say)
            warnings, failures = payload.warnings, payload.failures
            failures = failures or _unscorable(objective, payload)
        if warnings:  # kept with the search, as bench run keeps them (a recipe that does not match --original)
            with tracking.recording("recording the warnings in the MLflow store"):
                tracking.set_warnings(client, parent, warnings)
        if failures:  # the one group's reference (or the method's own original) did not train
            text = next(iter(failures.values()))
            with tracking.recording("recording the failure in the MLflow store"):
                tracking.record_failure(client, parent, text)
            say(f"no sample can run: {tracking.error_line(text)} (traceback: MLflow run {parent}, error.txt)."
                + failure_hint(failures.values(), opts.gpus_per_trial), always=True)
        else:
            sched = None
            if scheduler == "asha":  # the defaults' sample, when first, runs to its end
                sched = tune_samples.asha_keeping(0 if defaults is not None else None)
            outcome = Outcome()
            if todo:
                outcome = run_ray(
                    plan.trials, payload, cpus=opts.cpus_per_trial, gpus=opts.gpus_per_trial,
                    storage=f"{plan.cache_dir}/ray_results", name=f"{run_name}-{parent[:8]}-{int(time.time())}",
                    callbacks=[make_ray_callback(plan.tracking_uri, opts.experiment, parent)], say=say,
                    search={"samples": [(k, {n: specs[k].params[n] for n in domains}) for k in todo], "metric": objective,
                            "mode": mode, "scheduler": sched}, verbose=verbose)
            searched = True
            ran = {i: r for i, r in outcome.results.items() if i in outcome.specs}
            clean_ray = not outcome.failures
            # with the samples an earlier session of the search finished (--resume), past this one's indices
            outcome.specs.update({num_samples + k: specs[k] for k in kept})
            outcome.results.update({num_samples + k: m for k, m in kept.items()})
            best = best_sample(outcome, objective, mode)
            finished = {i: r for i, r in outcome.results.items() if i in outcome.specs}
            # a sample that scored the original's numbers; an attack (not the objective's) that failed
            from bench.run.references import chance_rates

            unchanged = (trial_warnings.method_warnings(outcome.specs, finished, "sample", chance_rates(plan))
                         + trial_warnings.attack_error_lines(outcome.specs, ran, "sample"))
            for line in unchanged:  # kept with the search
                say(line, always=True)
            # a resumed search's earlier lines may no longer hold: rewritten (unless nothing ran now:
            # no references were prepared, and the earlier session's lines still hold)
            if todo and (unchanged or opts.resume):
                with tracking.recording("recording the warnings in the MLflow store"):
                    tracking.set_warnings(client, parent, (*warnings, *unchanged))
            written = False
            counts = sample_counts(outcome, num_samples, len(unrunnable))
            done = counts["samples_finished"]
            if outcome.failures and best is None:
                say(f"{len(outcome.failures)} of {num_samples} sample(s) failed (their runs hold the tracebacks) and none "
                    "finished: no best parameters to save.", always=True)
            elif outcome.failures:
                say(f"{len(outcome.failures)} of {num_samples} sample(s) failed (their runs hold the tracebacks); the "
                    "best is chosen among the others.", always=True)
            elif best is None:
                say("no sample finished: no best parameters to save.", always=True)
            if outcome.interrupted:  # not where a finished search writes: an earlier complete result stays
                path = path.with_name(f"{path.stem}.partial{path.suffix}")
            if outcome.interrupted and best is not None:
                say(f"interrupted after {done} of {num_samples} sample(s) finished: the best of those is saved, not "
                    f"the best of the whole search, to {path.name} (tagged bench.best_partial)"
                    + ("; the same command with --resume runs the rest." if scheduler == "fifo" else "."), always=True)
            with tracking.recording("writing the search's counts to the MLflow store"):
                tracking.log_metrics(client, parent, {**counts, "wall_seconds": time.perf_counter() - t_start})
            if best is not None:
                spec, value, complete = best
                if not complete:
                    say(f"no sample ran to its end (the scheduler stopped every one early): the best by its last "
                        f"report ({objective}={value:.4f}, intermediate) is saved; for samples compared at their end "
                        "use --scheduler fifo or more samples.", always=True)
                if defaults is not None and not defaults_ran(outcome):  # a --trial-timeout, a failure, an interrupt
                    say("the defaults' sample (sample 0) " + defaults_fate(outcome, scheduler) + ": the best saved was "
                        "not compared with the defaults and may be worse than them.", always=True)
                best_params = {method: saved_params(spec.params, domains, opts.params.get(method, {})),
                               TUNED_ON: {"run": parent, "dataset": opts.datasets[0], "model": opts.models[0],
                                          "forget": opts.forgets[0], "seed": opts.seeds[0], "objective": objective,
                                          "validation": opts.validation}}
                written = True
                try:  # checked before any work (check_output); a late failure still keeps them in MLflow
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(best_params, indent=1) + "\n")
                except OSError as exc:
                    written = False
                    say(f"cannot write {path} ({exc.strerror or exc}): the best parameters are only in MLflow "
                        f"(run {parent}, best_params.json).", always=True)
                saved = f"They are saved in {path}." if written else "They are in no file: the write failed above."
                with tracking.recording("writing the best parameters to the MLflow store", saved):
                    client.log_text(parent, json.dumps(best_params, indent=1), "best_params.json")
                    client.set_tag(parent, "bench.best_sample", spec.trial_name)
                    best_now = tracking.flatten({"best": dict(spec.params)})
                    had = {k: v for k, v in client.get_run(parent).data.params.items() if k.startswith("best.")}
                    if not had:  # MLflow sets a param once: a resumed search that found a better sample says it
                        tracking.log_params(client, parent, best_now)  # in best_params.json and the tag
                    elif had != best_now:
                        client.set_tag(parent, "bench.best_params_superseded", "true")
                    elif "bench.best_params_superseded" in client.get_run(parent).data.tags:  # back to the first
                        client.delete_tag(parent, "bench.best_params_superseded")
                    if not complete:  # the value is a stopped sample's last report, not a full run's
                        client.set_tag(parent, "bench.best_stopped_early", "true")
                    if outcome.interrupted:  # the best of the samples that finished before the interrupt
                        client.set_tag(parent, "bench.best_partial", f"{done} of {num_samples}")
                    elif "bench.best_partial" in client.get_run(parent).data.tags:  # a resumed search, now whole
                        client.delete_tag(parent, "bench.best_partial")
                    tracking.log_metrics(client, parent, {f"best_{objective}": value})
                same = defaults is not None and all(spec.params[k] == v for k, v in defaults.items())
                ties = tied_with(outcome, objective, value, complete)
                say(f"best sample: {spec.trial_name}: {objective}={value:.4f} with "
                    + ", ".join(f"{k}={spec.params[k]!r}" for k in domains)
                    + ((" (the defaults: no sample beat them)" if done > 1 else " (the defaults: the only sample that "
                        "finished)") if same else "")
                    + (f" ({ties} samples tie at that value: the search cannot tell them apart, the lowest-numbered is "
                       "saved)" if ties > 1 and not same else ""), always=same or ties > 1)
                trial_seed = opts.seeds[0]  # the tuning audit: this was said nowhere
                if opts.validation:
                    say(f"the search selected on seed {trial_seed}'s forget and retain sets and a validation split "
                        f"(--validation {opts.validation:g}), not the test set: report the parameters with bench run "
                        "without --validation, on other seeds too.", always=True)
                else:
                    say(f"the search selected on seed {trial_seed}'s forget, retain and test sets (--validation F keeps "
                        f"the test set out): `bench run` with these parameters on seed {trial_seed} repeats the selected "
                        "sample; report them on other seeds, and read test accuracy knowing the test set took part in "
                        "the choice.", always=True)
                if written:
                    say(f"best parameters written to {path} and to MLflow (run {parent}, best_params.json); "
                        f"reuse them with: bench run --params {path}", always=True)
                else:
                    say(f"best parameters written to MLflow only (run {parent}, best_params.json); reuse them with: "
                        f"bench run --params {parent}", always=True)
            # a search with no finished sample is FAILED, as a run whose trials failed (it read FINISHED, no metrics)
            status, code = ("KILLED", 130) if outcome.interrupted else (
                ("FINISHED", 0 if written else 1) if best is not None else ("FAILED", 1))
    except KeyboardInterrupt:  # before the search (references, Ray's start) or in its write-up
        status, code = "KILLED", 130
        say("interrupted while the search's result was written: its finished samples are recorded in MLflow"
            if searched else "interrupted before any sample of this session ran: nothing new is recorded",
            always=True)  # until 2026-12-07 an interrupt before the search said nothing (found in review)
        say("the same command with --resume goes on from there.", always=True)
    finally:
        set_sink(previous_sink)
        reporter.close()
        refused = close_run(client, experiment_id, parent, status, started_ray, "The samples' runs written before it are kept.",
                            clean=status == "FINISHED" and clean_ray, say=say)
    if refused is not None:
        raise refused
    return code


def _unscorable(objective: str, payload) -> dict[str, str]:
    """``{group: why}`` when the objective's attack cannot run in the search's group (its shadow
    models failed to train, ``bench.run.prepare.attack_models``): no sample could score, so none runs."""
    owner = objective_attack(objective, payload.attacks)
    for gid, group in payload.groups.items():
        errors = (group.attack_models or {}).get("errors", {})
        broken = [k for k in getattr(payload.attacks.get(owner), "needs", ()) if k in errors]
        if broken:
            return {gid: f"{errors[broken[0]]}\nAttack '{owner}', whose {objective} is the objective, needs them: no "
                         f"sample could score."}
    return {}
