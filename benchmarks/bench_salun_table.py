"""The built-in baselines side by side in the layout of SalUn's Table 1 (Fan et al., ICLR 2024).

For each setting, one ``bench run`` (in process, ``--executor local``, attacks ``svc`` only) of
``retrain`` and every built-in method except the L2UL family, over the seeds, then
one Markdown table per setting from the MLflow child runs of that run:

    UA = 100 * (1 - forget_acc), RA = 100 * retain_acc, TA = 100 * test_acc,
    MIA = 100 * mia_efficacy (SVC MIA-efficacy, the paper's "MIA" column),
    Avg. Gap = 100 * avg_gap_mia (the paper's four-term gap to retrain),
    s = unlearn_seconds, cost = unlearn_seconds / retrain's unlearn_seconds of the same seed and run,

each as mean ± std over the seeds (std with ddof=1; blank for one seed).

Left out: ``l2ul``, ``l2ul-adv``, ``l2ul-naive``, ``l2ul-oracle`` (instance-wise unlearning of a
few points, docs/l2ul.md; random 10% and whole-class requests are outside what they target).
``prune`` is in (about 30 s per seed on digits random:10%, one certified patch per cluster of
forget points); ``--no-prune`` drops it where its cost grows with the forget set. ``ga`` runs its
default variant (NegGrad, the paper's "GA"); NegGrad+ is ``ga.variant=neggrad+`` and needs a
separate run.

Resumable and cheap to repeat: a fixed ``--cache-dir`` (references trained once), a fixed MLflow
store and run name per setting, and ``--resume`` semantics (a re-run skips finished trials; an
unchanged finished run only re-reads MLflow).

    .venv/bin/python benchmarks/bench_salun_table.py --out salun-table.md                 # all settings, seeds 0-2
    .venv/bin/python benchmarks/bench_salun_table.py --settings digits-mlp-random --seeds 0
    .venv/bin/python benchmarks/bench_salun_table.py --third-seeds 0 --out salun-table.md  # 1 seed on the larger setting
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from pathlib import Path

#: name -> (dataset, model, forget, recipe overrides)
SETTINGS = {
    "digits-mlp-random": ("digits", "mlp", "random:10%", {}),
    "digits-cnn-class": ("digits", "cnn", "class:3", {}),
    "mnist1d-mlp-random": ("mnist1d", "mlp", "random:10%", {}),
}
#: the paper's row order, then the harness's other methods
METHODS = ["retrain", "ft", "rl", "ga", "iu", "be", "bs", "l1-sparse", "salun", "salun-soft", "sisa", "fisher", "prune"]
LABELS = {"retrain": "Retrain", "ft": "FT", "rl": "RL", "ga": "GA", "iu": "IU", "be": "BE", "bs": "BS",
          "l1-sparse": "l1-sparse", "salun": "SalUn", "salun-soft": "SalUn-soft", "sisa": "SISA",
          "fisher": "Fisher", "prune": "PRUNE"}
COLUMNS = ["UA", "RA", "TA", "MIA", "Avg. Gap", "s", "cost vs retrain"]
EXPERIMENT = "salun-table"


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    return out


def _mean_std(values: list[float], digits: int) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def run_setting(name: str, methods: list[str], seeds: list[int], cache_dir: str, tracking_uri: str, threads: int,
                verbose: bool) -> tuple[int, float]:
    """One in-process ``bench run`` of the setting (resuming an earlier one of the same plan)."""
    from rich.console import Console

    from bench.core.options import merge_options
    from bench.run.runner import run

    dataset, model, forget, recipe = SETTINGS[name]
    opts = merge_options(None, {
        "methods": ",".join(methods), "seeds": ",".join(map(str, seeds)), "datasets": [dataset], "models": [model],
        "forgets": [forget], "recipe": dict(recipe), "attacks": "svc", "executor": "local",
        "cpus_per_trial": float(threads), "tracking_uri": tracking_uri, "experiment": EXPERIMENT,
        "run_name": f"salun-table-{name}", "cache_dir": cache_dir, "resume": True,
    })
    out = sys.stderr if verbose else io.StringIO()
    start = time.perf_counter()
    code = run(opts, Console(file=out, width=220), quiet=not verbose)
    if code != 0 and not verbose:
        sys.stderr.write(out.getvalue())
    return code, time.perf_counter() - start


def read_trials(name: str, tracking_uri: str) -> list[dict]:
    """The finished child runs of the latest parent run of the setting: one dict per trial."""
    from mlflow.tracking import MlflowClient

    from bench.core.keys import Tag

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    parents = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`{Tag.ROLE}` = 'parent' and attributes.run_name = 'salun-table-{name}'"),
        order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        return []
    kids = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`{Tag.PARENT}` = '{parents[0].info.run_id}' and attributes.status = 'FINISHED'"), max_results=5000)
    return [{"method": r.data.tags.get(Tag.METHOD), "seed": int(r.data.tags.get(Tag.SEED)), **r.data.metrics} for r in kids]


def table(name: str, trials: list[dict], methods: list[str], seconds: float | None) -> str:
    dataset, model, forget, _ = SETTINGS[name]
    retrain_s = {t["seed"]: t["unlearn_seconds"] for t in trials if t["method"] == "retrain"}
    seeds = sorted({t["seed"] for t in trials})
    lines = [f"**{dataset} / {model} / {forget}**, seeds {','.join(map(str, seeds))}"
             + (f" (this call: {seconds / 60:.1f} min)" if seconds else ""), "",
             "| method | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for method in methods:
        rows = [t for t in trials if t["method"] == method]
        if not rows:
            lines.append(f"| {LABELS.get(method, method)} | " + " | ".join("–" for _ in COLUMNS) + " |")
            continue

        def col(key, scale=100.0, rows=rows):
            return [scale * r[key] if key in r else float("nan") for r in rows]

        ua = [100.0 - v for v in col("forget_acc")]
        cost = [r["unlearn_seconds"] / retrain_s[r["seed"]] for r in rows if r["seed"] in retrain_s]
        cells = [_mean_std(ua, 2), _mean_std(col("retain_acc"), 2), _mean_std(col("test_acc"), 2),
                 _mean_std(col("mia_efficacy"), 2), _mean_std(col("avg_gap_mia"), 2),
                 _mean_std(col("unlearn_seconds", 1.0), 2), _mean_std(cost, 3)]
        lines.append(f"| {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--third-seeds", default=None, help="seeds of mnist1d-mlp-random (default: --seeds)")
    ap.add_argument("--no-prune", action="store_true", help="leave prune out")
    ap.add_argument("--cache-dir", default="~/.cache/unlearning-bench/salun-table/cache",
                    help="reference cache, kept between runs [default: ~/.cache/unlearning-bench/salun-table/cache]")
    ap.add_argument("--tracking-uri", default=None, help="MLflow store [default: sqlite:///<cache-dir>/../mlflow.db]")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    ap.add_argument("--out", default=None, help="also write the tables (Markdown) to this file")
    ap.add_argument("--report-only", action="store_true", help="read MLflow, run nothing")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    cache = Path(args.cache_dir).expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    tracking_uri = args.tracking_uri or f"sqlite:///{cache.parent / 'mlflow.db'}"
    methods = [m for m in METHODS if not (args.no_prune and m == "prune")]
    names = [s for s in args.settings.split(",") if s]
    unknown = set(names) - set(SETTINGS)
    if unknown:
        ap.error(f"unknown settings: {', '.join(sorted(unknown))}")
    parts = [(f"Methods: {', '.join(methods)}; SVC MIA; seeds {args.seeds}; one CPU thread per trial; "
              f"UA/RA/TA/MIA/Avg. Gap in %, s = unlearn seconds, cost = s / retrain's s (same seed and run).\n")]
    failed = 0
    for name in names:
        seeds = _seeds(args.third_seeds if (args.third_seeds and name == "mnist1d-mlp-random") else args.seeds)
        seconds = None
        if not args.report_only:
            code, seconds = run_setting(name, methods, seeds, str(cache), tracking_uri, args.threads, args.verbose)
            failed += code != 0
        text = table(name, read_trials(name, tracking_uri), methods, seconds)
        print(text, flush=True)
        parts.append(text)
    if args.out:
        Path(args.out).write_text("\n".join(parts))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
