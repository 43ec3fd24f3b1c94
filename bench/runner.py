"""``bench run`` end to end: validate, plan, references, trials, summary, MLflow.

Exit codes: 0 every trial finished; 1 some trial failed (each recorded as a failed child run
with its traceback); 2 bad input (before any work); 130 interrupted (finished trials are
already in MLflow, the parent run is marked KILLED).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Callable

from .experiment import Plan, RunOptions, make_plan, package_versions
from .plugins import get_registry, plugin_versions


def reference_jobs(plan: Plan):
    import numpy as np

    from .references import RefJob

    jobs = []
    for g in plan.groups:
        model_obj, arg, _ = plan.models[g.model]
        sp = plan.splits[g.dataset]
        common = dict(model_obj=model_obj, arg=arg, splits=sp, recipe=g.recipe, seed=g.seed, device=plan.device,
                      threads=max(1, int(plan.options.cpus_per_trial)))
        jobs.append(RefJob(key=g.original_key, doc=g.original_doc, train_idx=None, **common))
        keep = np.setdiff1d(np.arange(sp.train_size), g.forget_idx)
        jobs.append(RefJob(key=g.retrain_key, doc=g.retrain_doc, train_idx=keep, **common))
        if g.steps is not None:  # continual requests: a retrained reference per request
            from .continual import step_jobs

            jobs.extend(step_jobs(g, common, sp.train_size))
    return jobs


def build_payload(plan: Plan, refs: dict):
    """Evaluate both references of every group once; bundle what the trials share."""
    from .cache import load_state
    from .evaluation import EvalData, evaluate_model
    from .trial import GroupPayload, Payload, model_factory, split_data

    groups = {}
    ref_rows = []
    for g in plan.groups:
        sp = plan.splits[g.dataset]
        model_obj, arg, _ = plan.models[g.model]
        (rx, ry), (fx, fy), (tx, ty) = split_data(sp, g.forget_idx, plan.device)
        data = EvalData(rx, ry, fx, fy, tx, ty, g.forget.label if g.forget.kind == "class" else None)
        evals = {}
        for kind, key in (("original", g.original_key), ("retrain", g.retrain_key)):
            model = model_factory(model_obj, arg, sp, g.seed, plan.device)()
            load_state(model, refs[key][0])
            evals[kind] = evaluate_model(model, data)
        retrain_seconds = float(refs[g.retrain_key][1]["train_seconds"])
        groups[g.gid] = GroupPayload(
            splits=sp, forget_idx=g.forget_idx, forget_kind=g.forget.kind, forget_class=data.forget_class,
            original_state=refs[g.original_key][0], retrain_seconds=retrain_seconds, original_eval=evals["original"], retrain_eval=evals["retrain"],
        )
        row = {"setting": (g.dataset, g.model, g.forget.text), "seed": g.seed,
               "original": evals["original"].accs, "retrain": evals["retrain"].accs, "retrain_seconds": retrain_seconds}
        if g.steps is not None:  # continual requests: every request's references (bench.continual)
            from .continual import reference_summary, step_payloads

            groups[g.gid].steps = step_payloads(g, sp, model_obj, arg, refs, plan.device)
            row["original"], row["retrain"] = reference_summary(groups[g.gid].steps, row["original"], row["retrain"])
        ref_rows.append(row)
    payload = Payload(groups=groups, methods={m.name: m.obj for m in plan.methods}, models=plan.models, attacks=plan.attacks)
    return payload, ref_rows


def prepare_references(plan: Plan, versions: dict, say: Callable[[str], None]):
    """Load or train every reference (Ray tasks under the ray executor), then evaluate them once.

    Returns the trials' shared payload, the reference rows of the summary and how many were trained.
    """
    from .cache import ReferenceCache
    from .references import ensure_references

    opts = plan.options
    if opts.executor == "ray":
        from .executor import train_many_ray

        train_many = train_many_ray(opts.cpus_per_trial, opts.gpus_per_trial)
    else:
        from .executor import train_many_local as train_many
    from .method_training import attach_originals, method_training_jobs

    jobs = reference_jobs(plan) + method_training_jobs(plan)  # + methods' own originals (SISA)
    refs, trained = ensure_references(jobs, ReferenceCache(plan.cache_dir), train_many, say, versions)
    say(f"references: {trained} trained, {len(refs) - trained} from cache ({plan.cache_dir})")
    payload, ref_rows = build_payload(plan, refs)
    attach_originals(plan, payload, refs)
    from .shadows import attach_attack_models

    attach_attack_models(plan, payload, refs, say, versions)  # shadow models etc. that the attacks declare
    return payload, ref_rows, trained


def close_run(client, experiment_id: str, parent: str, status: str, started_ray: bool) -> None:
    """End a parent run: trials an interrupt cut off become KILLED; shut down the Ray we started."""
    from . import tracking

    if status == "KILLED":
        tracking.kill_unfinished_children(client, experiment_id, parent)
    client.set_terminated(parent, status)
    if started_ray:
        import ray

        ray.shutdown()


def run(opts: RunOptions, console, verbose: bool = False, quiet: bool = False) -> int:
    from .console import Printer

    say = Printer(console, quiet)
    registry = get_registry()
    t_start = time.perf_counter()
    versions = package_versions()
    plugins = plugin_versions()
    plan = make_plan(registry, opts, versions, plugins)
    say(f"{len(plan.trials)} trial(s): methods {', '.join(m.name for m in plan.methods)} x seeds "
        f"{','.join(map(str, opts.seeds))} on {', '.join(opts.datasets)} / {', '.join(opts.models)} / {', '.join(opts.forgets)}")
    say(f"MLflow tracking store: {plan.tracking_uri} (experiment '{opts.experiment}')")

    from . import tracking

    from mlflow.tracking import MlflowClient

    from .experiment import plan_key

    experiment_id = tracking.setup_experiment(plan.tracking_uri, opts.experiment)
    client = MlflowClient(plan.tracking_uri)
    pkey = plan_key(plan.trials)
    earlier = tracking.find_resumable(client, experiment_id, pkey) if opts.resume else None
    done: dict[str, dict] = {}
    if earlier is not None:
        parent_run, done = earlier
        parent, run_name = parent_run.info.run_id, parent_run.info.run_name
        tracking.kill_unfinished_children(client, experiment_id, parent)  # left RUNNING by a killed run
        client.update_run(parent, status="RUNNING")
        say(f"resuming parent run {parent} ('{run_name}'): {sum(t['trial_key'] in done for t in plan.trials)} of "
            f"{len(plan.trials)} trial(s) already finished")
    else:
        if opts.resume:
            say(f"--resume: no earlier run of this plan in experiment '{opts.experiment}'; starting a new one")
        run_name = opts.run_name or f"bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        options = {k: v for k, v in opts.as_dict().items() if k != "resume"}
        parent_params = tracking.flatten({"options": options, "versions": versions, "plugins": plugins})
        parent = tracking.start_parent(plan.tracking_uri, experiment_id, run_name, parent_params,
                                       {"bench.trials": str(len(plan.trials)), "bench.plan_key": pkey})
        say(f"parent run {parent} ('{run_name}')")
        client.log_text(parent, json.dumps({"options": options, "trials": plan.trials}, indent=1, default=str), "experiment.json")
    todo = [i for i, t in enumerate(plan.trials) if t["trial_key"] not in done]
    started_ray = False
    status = "FAILED"
    try:
        if opts.executor == "ray":
            from .executor import start_ray

            started_ray = start_ray(opts.ray_address, verbose, say)
        payload, ref_rows, trained = prepare_references(plan, versions, say)
        tracking.log_metrics(client, parent, {"references_trained": trained})

        trials = [plan.trials[i] for i in todo]
        if not trials:
            from .executor import Outcome

            outcome = Outcome()
        elif opts.executor == "ray":
            from .executor import run_ray

            callback = tracking.make_ray_callback(plan.tracking_uri, opts.experiment, parent)
            outcome = run_ray(trials, payload, cpus=opts.cpus_per_trial, gpus=opts.gpus_per_trial,
                              storage=f"{plan.cache_dir}/ray_results", name=f"{run_name}-{parent[:8]}-{int(time.time())}",
                              callbacks=[callback], say=say)
        else:
            from .executor import run_local

            def log_trial(spec, metrics, error):
                tracking.log_local_trial(plan.tracking_uri, experiment_id, parent, spec, metrics, error)

            outcome = run_local(trials, payload, log_trial, say)
        # back to plan positions, with the trials an earlier (resumed) run finished
        results = {todo[i]: m for i, m in outcome.results.items()}
        failures = {todo[i]: e for i, e in outcome.failures.items()}
        results.update({i: done[t["trial_key"]] for i, t in enumerate(plan.trials) if t["trial_key"] in done})

        from . import report

        attack_cols = report.attack_columns(results.values())
        rows = report.build_rows(plan.trials, results, failures, ref_rows, attack_cols)
        columns = report.columns_for(rows)
        report.render(rows, console, columns=columns)
        if attack_cols:  # the methods' rows only: attacks run on unlearned models, not on the references
            report.render([r for r in rows if not report.is_reference(r)], console, columns=attack_cols,
                          title="attacks on the forget set (target: retrain's values)")
            if not any(t["method"] == "retrain" for t in plan.trials):
                say("attacks run on unlearned models only: add 'retrain' to --methods for the values to compare with.")
        client.log_text(parent, report.to_markdown(rows, columns=columns + attack_cols), "summary.md")
        client.log_text(parent, report.to_csv(rows, columns=columns + attack_cols), "summary.csv")
        tracking.log_metrics(client, parent, {"trials_finished": len(results), "trials_failed": len(failures),
                                              "wall_seconds": time.perf_counter() - t_start})
        if outcome.interrupted:
            status = "KILLED"
            say("interrupted: finished trials are recorded in MLflow.", always=True)
            code = 130
        elif outcome.failures:
            say(f"{len(outcome.failures)} trial(s) failed; their tracebacks are in MLflow (artifact error.txt).", always=True)
            code = 1
        else:
            status = "FINISHED"
            code = 0
    except KeyboardInterrupt:
        status = "KILLED"
        say("interrupted: finished trials are recorded in MLflow.", always=True)
        code = 130
    finally:
        close_run(client, experiment_id, parent, status, started_ray)
    say(f"MLflow tracking store: {plan.tracking_uri}; parent run {parent}; wall time {time.perf_counter() - t_start:.1f}s", always=True)
    return code
