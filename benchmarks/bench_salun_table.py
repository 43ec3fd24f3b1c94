"""The built-in baselines side by side in the layout of SalUn's Table 1 (Fan et al., ICLR 2024).

For each setting, two ``bench run`` calls (in process, ``--executor local``, attacks ``svc`` only),
each of ``retrain`` and a group of built-in methods over the same seeds and cached references:
``base`` (the SalUn paper's methods and the harness's others, run name ``salun-table-<setting>``)
and ``family`` (the distillation, dampening and last-layers family, run name
``salun-table-<setting>-family``; ``unsir`` on class settings only, it takes class requests
only). Every method except the L2UL family is in one of them. Then one Markdown table per setting
from the MLflow child runs of the latest parent run of each group, merged (Retrain's row from
``base``):

    UA = 100 * (1 - forget_acc), RA = 100 * retain_acc, TA = 100 * test_acc,
    MIA = 100 * mia_efficacy (SVC MIA-efficacy, the paper's "MIA" column),
    Avg. Gap = 100 * avg_gap_mia (the paper's four-term gap to retrain),
    s = unlearn_seconds, cost = unlearn_seconds / retrain's unlearn_seconds of the same seed and run
    (each group's own retrain, so a row's cost has a same-run denominator),

each as mean ± std over the seeds (std with ddof=1; blank for one seed).

Left out: ``l2ul``, ``l2ul-adv``, ``l2ul-naive``, ``l2ul-oracle`` (instance-wise unlearning of a
few points, docs/l2ul.md; random 10% and whole-class requests are outside what they target).
``prune`` is in (about 30 s per seed on digits random:10%, one certified patch per cluster of
forget points); ``--no-prune`` drops it where its cost grows with the forget set. ``ga`` runs its
default variant (NegGrad, the paper's "GA"); NegGrad+ is the ``neggrad+`` method (``family``).

Resumable and cheap to repeat: a fixed ``--cache-dir`` (references trained once), a fixed MLflow
store and run name per setting and group, and ``--resume`` semantics (a re-run skips finished
trials; an unchanged finished run only re-reads MLflow). The groups are separate plans so that
adding a method to one leaves the other's finished run resumable (a changed method list is a
new plan: ``--resume`` starts that group afresh).

    .venv/bin/python benchmarks/bench_salun_table.py --out salun-table.md                 # all settings, seeds 0-2
    .venv/bin/python benchmarks/bench_salun_table.py --settings digits-mlp-random --seeds 0
    .venv/bin/python benchmarks/bench_salun_table.py --third-seeds 0 --out salun-table.md  # 1 seed on the larger setting
    .venv/bin/python benchmarks/bench_salun_table.py --groups family --out salun-table.md  # run one group, report both
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
#: group -> methods, each with ``retrain`` first: the paper's row order, then the harness's other
#: methods, then the distillation, dampening and last-layers family (docs/methods.md)
GROUPS = {
    "base": ["retrain", "ft", "rl", "ga", "iu", "be", "bs", "l1-sparse", "salun", "salun-soft", "sisa", "fisher",
             "prune"],
    "family": ["retrain", "scrub", "bad-teacher", "ssd", "lfssd", "unsir", "cf-k", "eu-k", "neggrad+"],
}
#: table row order
METHODS = list(dict.fromkeys(m for ms in GROUPS.values() for m in ms))
#: methods that take class requests only (``forget_kinds``): left out of other settings
CLASS_ONLY = {"unsir"}
LABELS = {"retrain": "Retrain", "ft": "FT", "rl": "RL", "ga": "GA", "iu": "IU", "be": "BE", "bs": "BS",
          "l1-sparse": "l1-sparse", "salun": "SalUn", "salun-soft": "SalUn-soft", "sisa": "SISA",
          "fisher": "Fisher", "prune": "PRUNE", "scrub": "SCRUB", "bad-teacher": "Bad Teacher", "ssd": "SSD",
          "lfssd": "LFSSD", "unsir": "UNSIR", "cf-k": "CF-k", "eu-k": "EU-k", "neggrad+": "NegGrad+"}
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


def _run_name(name: str, group: str) -> str:
    return f"salun-table-{name}" if group == "base" else f"salun-table-{name}-{group}"


def group_methods(name: str, group: str, no_prune: bool) -> list[str]:
    """The methods of ``group`` that run on setting ``name``."""
    forget = SETTINGS[name][2]
    return [m for m in GROUPS[group] if not (no_prune and m == "prune")
            and not (m in CLASS_ONLY and not forget.startswith("class:"))]


def run_setting(name: str, group: str, methods: list[str], seeds: list[int], cache_dir: str, tracking_uri: str,
                threads: int, verbose: bool) -> tuple[int, float]:
    """One in-process ``bench run`` of a group on the setting (resuming an earlier one of the same plan)."""
    from rich.console import Console

    from bench.core.options import merge_options
    from bench.run.runner import run

    dataset, model, forget, recipe = SETTINGS[name]
    opts = merge_options(None, {
        "methods": ",".join(methods), "seeds": ",".join(map(str, seeds)), "datasets": [dataset], "models": [model],
        "forgets": [forget], "recipe": dict(recipe), "attacks": "svc", "executor": "local",
        "cpus_per_trial": float(threads), "tracking_uri": tracking_uri, "experiment": EXPERIMENT,
        "run_name": _run_name(name, group), "cache_dir": cache_dir, "resume": True,
    })
    out = sys.stderr if verbose else io.StringIO()
    start = time.perf_counter()
    code = run(opts, Console(file=out, width=220), quiet=not verbose)
    if code != 0 and not verbose:
        sys.stderr.write(out.getvalue())
    return code, time.perf_counter() - start


def read_trials(name: str, group: str, tracking_uri: str) -> list[dict]:
    """The finished child runs of the latest parent run of the setting's group: one dict per trial."""
    from mlflow.tracking import MlflowClient

    from bench.core.keys import Tag

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    parents = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`{Tag.ROLE}` = 'parent' and attributes.run_name = '{_run_name(name, group)}'"),
        order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        return []
    kids = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`{Tag.PARENT}` = '{parents[0].info.run_id}' and attributes.status = 'FINISHED'"), max_results=5000)
    return [{"method": r.data.tags.get(Tag.METHOD), "seed": int(r.data.tags.get(Tag.SEED)), "group": group,
             **r.data.metrics} for r in kids]


def table(name: str, trials: list[dict], methods: list[str], seconds: float | None) -> str:
    dataset, model, forget, _ = SETTINGS[name]
    """``trials`` of all groups; a method's rows come from the first group that lists it (Retrain's
    from ``base``), each row's cost from the retrain of its own group and seed."""
    retrain_s = {(t["group"], t["seed"]): t["unlearn_seconds"] for t in trials if t["method"] == "retrain"}
    home = {}
    for group, ms in GROUPS.items():
        for m in ms:
            home.setdefault(m, group)

    def seeds_of(group):
        return ",".join(map(str, sorted({t["seed"] for t in trials if t["group"] == group}))) or "none"

    lines = [f"**{dataset} / {model} / {forget}**, seeds " + "; ".join(f"{g} {seeds_of(g)}" for g in GROUPS)
             + (f" (this call: {seconds / 60:.1f} min)" if seconds else ""), "",
             "| method | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for method in methods:
        rows = [t for t in trials if t["method"] == method and t["group"] == home[method]]
        if not rows:
            lines.append(f"| {LABELS.get(method, method)} | " + " | ".join("–" for _ in COLUMNS) + " |")
            continue

        def col(key, scale=100.0, rows=rows):
            return [scale * r[key] if key in r else float("nan") for r in rows]

        ua = [100.0 - v for v in col("forget_acc")]
        cost = [r["unlearn_seconds"] / retrain_s[r["group"], r["seed"]] for r in rows
                if (r["group"], r["seed"]) in retrain_s]
        cells = [_mean_std(ua, 2), _mean_std(col("retain_acc"), 2), _mean_std(col("test_acc"), 2),
                 _mean_std(col("mia_efficacy"), 2), _mean_std(col("avg_gap_mia"), 2),
                 _mean_std(col("unlearn_seconds", 1.0), 2), _mean_std(cost, 3)]
        lines.append(f"| {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    for group in list(GROUPS)[1:]:  # the other groups' own retrain, the denominator of their rows' cost
        own = [t["unlearn_seconds"] for t in trials if t["group"] == group and t["method"] == "retrain"]
        if own:
            lines.append(f"\n(Retrain in the {group} run: s {_mean_std(own, 2)}, the denominator of its rows' cost.)")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--third-seeds", default=None, help="seeds of mnist1d-mlp-random (default: --seeds)")
    ap.add_argument("--groups", default=",".join(GROUPS),
                    help=f"groups to run, comma-separated, of {', '.join(GROUPS)} (the tables report all of them)")
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
    groups = [g for g in args.groups.split(",") if g]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        ap.error(f"unknown groups: {', '.join(sorted(unknown))}")
    parts = [(f"Methods: {', '.join(methods)} ({', '.join(sorted(CLASS_ONLY))} on class settings only); SVC MIA; "
              f"seeds {args.seeds}; one CPU thread per trial; UA/RA/TA/MIA/Avg. Gap in %, s = unlearn seconds, "
              f"cost = s / retrain's s (same seed and run).\n")]
    failed = 0
    for name in names:
        seeds = _seeds(args.third_seeds if (args.third_seeds and name == "mnist1d-mlp-random") else args.seeds)
        seconds = None
        if not args.report_only:
            seconds = 0.0
            for group in groups:
                code, took = run_setting(name, group, group_methods(name, group, args.no_prune), seeds, str(cache),
                                         tracking_uri, args.threads, args.verbose)
                failed += code != 0
                seconds += took
        trials = [t for group in GROUPS for t in read_trials(name, group, tracking_uri)]
        if args.report_only and not trials:  # it printed a table of dashes and exited 0 (benchmarks audit)
            print(f"{name}: no trials in {tracking_uri}: run it without --report-only first", flush=True)
            failed += 1
            continue
        shown = [m for m in methods if any(m in group_methods(name, g, args.no_prune) for g in GROUPS)]
        text = table(name, trials, shown, seconds)
        print(text, flush=True)
        parts.append(text)
    if args.out:
        Path(args.out).write_text("\n".join(parts))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
