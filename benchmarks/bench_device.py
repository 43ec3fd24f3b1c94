"""The harness's trial path on a device, without Ray or MLflow: per-method time and memory.

Usage: python benchmarks/bench_device.py [--device cuda] [--methods retrain,ft,ga]
           [--dataset digits] [--model mlp] [--forget random:10%] [--seeds 0] [--recipe epochs=30]

It builds the same plan as ``bench run --executor local`` (same references, same cache keys,
same ``run_trial``), trains or loads the references, runs every trial in process and prints,
per trial, the metrics the harness would log: ``unlearn_seconds``, ``speedup_vs_retrain``,
``peak_memory_mb`` (on CUDA the allocator's peak during the method call) and the accuracies.
Nothing is written to MLflow, so it runs on a machine that has torch but neither ray nor mlflow
installed (the GPU machines this project borrows). On a GPU it also prints the reference
training time on the device next to the same on the CPU when ``--compare-cpu`` is given.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from bench.core.options import RunOptions, parse_seeds
from bench.run.plan import make_plan
from bench.track.provenance import package_versions
from bench.core.plugins import get_registry, plugin_versions
from bench.core.recipe import parse_assignments


def run_plan(opts: RunOptions, say) -> list[tuple[dict, dict | None, str | None]]:
    from bench.run.executor import run_local
    from bench.run.prepare import prepare_references

    versions = package_versions()
    plan = make_plan(get_registry(), opts, versions, plugin_versions())
    t0 = time.perf_counter()
    payload, ref_rows, trained = prepare_references(plan, versions, say)
    say(f"references ready in {time.perf_counter() - t0:.1f}s ({trained} trained)")
    for row in ref_rows:
        say(f"  {row['setting']} seed {row['seed']}: retrain took {row['retrain_seconds']:.2f}s; "
            f"original test_acc {row['original']['test_acc']:.3f}, retrain test_acc {row['retrain']['test_acc']:.3f}")
    rows: list[tuple[dict, dict | None, str | None]] = []
    run_local(plan.trials, payload, lambda spec, m, err: rows.append((spec, m, err)), say)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--methods", default="retrain,ft,ga")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--forget", default="random:10%")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--recipe", action="append", default=[], help="KEY=VALUE (repeatable)")
    ap.add_argument("--cache-dir", default=None, help="reference cache (default: a fresh temporary one)")
    ap.add_argument("--compare-cpu", action="store_true", help="also run the same plan on the CPU")
    a = ap.parse_args()

    def say(msg: str, always: bool = False) -> None:
        print(msg, flush=True)

    devices = [a.device] + (["cpu"] if a.compare_cpu else [])
    tables = {}
    for device in devices:
        with tempfile.TemporaryDirectory() as tmp:
            opts = RunOptions(
                methods=a.methods, datasets=[a.dataset], models=[a.model], forgets=[a.forget], seeds=parse_seeds(a.seeds),
                recipe=parse_assignments(a.recipe, "--recipe") if a.recipe else {}, executor="local", device=device,
                cache_dir=a.cache_dir or tmp, tracking_uri=f"sqlite:///{tmp}/unused.db",
            )
            say(f"== device {device}")
            tables[device] = run_plan(opts, say)
    keys = ("unlearn_seconds", "retrain_seconds", "speedup_vs_retrain", "peak_memory_mb", "peak_memory_reserved_mb",
            "memory_delta_mb", "forget_acc", "retain_acc", "test_acc", "avg_gap")
    for device, rows in tables.items():
        print(f"\n{a.dataset} / {a.model} / {a.forget} on {device}")
        print("trial".ljust(36) + "".join(k[:14].rjust(15) for k in keys))
        for spec, m, err in rows:
            if err:
                print(spec.trial_name.ljust(36) + "  FAILED: " + err.strip().splitlines()[-1])
                continue
            print(spec.trial_name[:35].ljust(36) + "".join((f"{m[k]:.4f}" if k in m else "-").rjust(15) for k in keys))


if __name__ == "__main__":
    main()
