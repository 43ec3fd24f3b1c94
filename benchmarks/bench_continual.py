"""Continual unlearning cost: time per request and cumulative time over sequential requests, for
each method vs retraining from scratch at every request, measured in one run.

Usage: python benchmarks/bench_continual.py [--requests 10] [--size 10] [--methods retrain,ft,ga,l2ul,l2ul-adv,l2ul-naive]
       [--dataset digits] [--model mlp] [--epochs 30] [--seed 0]

One in-process `bench run` (``--executor local``: no Ray) with ``--forget seq:REQUESTSxSIZE``: every
method gets the requests one after the other on its own previous output, and every request's
retrained reference (trained on what remains after it, the cost of retraining at that step) is
trained first and timed by the harness (``retrain_seconds``). The figures are read back from
the MLflow metric steps of each trial: ``unlearn_seconds`` per request and
``cumulative_unlearn_seconds``, against the reference's ``cumulative_retrain_seconds``; the
``retrain`` method is the same retraining done inside a trial; where it runs, each method's
cumulative time is also divided by its (``cost vs retrain trial``, the harness's
``cost_vs_retrain``): the references are trained before the trials, under another load, so under
load the ``retrain`` trial can read faster than the references' retraining. Also printed: the forget accuracy on
the last request and on every request so far, and the test accuracy after the last request.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

from rich.console import Console


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--size", type=int, default=10, help="training points per request")
    ap.add_argument("--methods", default="retrain,ft,ga,l2ul,l2ul-adv,l2ul-naive")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs of the original and every reference")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.environ.setdefault("BENCH_PLUGINS", "")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import mlflow

    from bench.core.options import RunOptions
    from bench.run.runner import run

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        opts = RunOptions(executor="local", tracking_uri=uri, cache_dir=f"{tmp}/cache", methods=a.methods,
                          datasets=[a.dataset], models=[a.model], forgets=[f"seq:{a.requests}x{a.size}"], seeds=[a.seed],
                          recipe={"epochs": a.epochs} if a.epochs else {})
        t0 = time.perf_counter()
        code = run(opts, Console(file=io.StringIO(), width=250), quiet=True)
        wall = time.perf_counter() - t0
        if code != 0:
            raise SystemExit(f"bench run failed with exit code {code}")
        client = mlflow.tracking.MlflowClient(uri)
        exp = client.get_experiment_by_name("unlearning-bench")
        runs = client.search_runs([exp.experiment_id], filter_string="tags.`bench.role` = 'trial'")

        def history(run_id, key):
            return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]

        by_method = {r.data.tags["bench.method"]: r for r in runs}
        any_run = next(iter(by_method.values())).info.run_id
        retrain_steps = history(any_run, "retrain_seconds")
        retrain_cum = history(any_run, "cumulative_retrain_seconds")
        print(f"{a.requests} sequential requests of {a.size} points, {a.dataset}/{a.model}, seed {a.seed}; "
              f"whole run {wall:.1f}s (in process)")
        print(f"retraining from scratch at every request (the references): per request "
              f"{min(retrain_steps):.3f}-{max(retrain_steps):.3f}s, cumulative {retrain_cum[-1]:.2f}s")
        # the references are trained before the trials, under another load; the retrain trial is timed
        # beside the others (cost_vs_retrain in bench's summary): both ratios, the second where it ran
        own = (history(by_method["retrain"].info.run_id, "cumulative_unlearn_seconds")[-1]
               if "retrain" in by_method else None)
        head = f"{'method':<12} {'mean s/request':>14} {'max s/request':>13} {'cumulative s':>12} {'x faster than retraining':>24} " \
               + (f"{'cost vs retrain trial':>21} " if own else "") + \
               f"{'forget_acc':>10} {'forget_all_acc':>14} {'test_acc':>8}"
        print(head)
        print("-" * len(head))
        for name in a.methods.split(","):
            r = by_method[name]
            steps = history(r.info.run_id, "unlearn_seconds")
            cum = history(r.info.run_id, "cumulative_unlearn_seconds")[-1]
            m = r.data.metrics
            print(f"{name:<12} {sum(steps) / len(steps):>14.4f} {max(steps):>13.4f} {cum:>12.3f} {retrain_cum[-1] / cum:>24.1f} "
                  + (f"{cum / own:>21.3f} " if own else "") +
                  f"{m['forget_acc']:>10.3f} {m['forget_all_acc']:>14.3f} {m['test_acc']:>8.3f}")
        print("\ncumulative seconds after each request:")
        print(f"{'request':<12} " + " ".join(f"{t:>7d}" for t in range(1, a.requests + 1)))
        print(f"{'retraining':<12} " + " ".join(f"{v:>7.3f}" for v in retrain_cum))
        for name in a.methods.split(","):
            print(f"{name:<12} " + " ".join(f"{v:>7.3f}" for v in history(by_method[name].info.run_id, "cumulative_unlearn_seconds")))


if __name__ == "__main__":
    main()
