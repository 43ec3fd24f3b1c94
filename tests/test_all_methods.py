"""Every built-in method in one run: ``bench run --methods '*' --seeds 0`` on digits (the default
forget request, random:10%, and the default attacks: the run tests/conftest.py's baseline_trials
shares with the baselines' tests) finishes with each method in one summary table (``unsir``, which takes
class requests only, is left out of the wildcard with a note). ``l2ul`` and ``l2ul-adv`` run with
20 epochs there and ``l2ul-oracle`` with 60: on 144 points they take 16-48 s to their goal
(docs/l2ul.md, "The default request"), and this run checks the table, not the goal."""

from __future__ import annotations

import pytest

from bench.core.plugins import get_registry


@pytest.mark.slow
@pytest.mark.xdist_group("baselines")  # the shared run of conftest.baseline_trials
def test_every_builtin_method_runs_in_one_table(baseline_trials):
    names = [n for n in get_registry().names("method") if n != "unsir"]  # unsir takes class requests only
    code, out, runs = baseline_trials("random:10%")
    assert code == 0, out
    assert "left out of --methods '*': unsir (they cannot take random:10%" in out
    assert sorted(runs.index) == sorted(names)
    assert (runs["status"] == "FINISHED").all()
    assert runs["metrics.forget_acc"].notna().all() and runs["metrics.test_acc"].notna().all()
    # every method that keeps its input's parameters moved them (none returned the original: no warning)
    assert "unchanged (weight_change 0)" not in out
    moved = runs["metrics.weight_change"]
    assert (moved.dropna() > 0).all(), moved
    # not comparable parameter for parameter: PRUNE adds its patches to the original (SISA's ensemble
    # is compared with its own original, the model it was given)
    assert list(moved[moved.isna()].index) == ["prune"], moved
    table = out[out.index("unlearning-bench summary"):]
    for name in names:
        assert f"│ {name} " in table, name
    # a parameter whose 0 means "automatic" is recorded with the value it took (ctx.resolved)
    resolved = {name: {k[len("params.resolved."):]: v for k, v in runs.loc[name].items()
                       if k.startswith("params.resolved.") and isinstance(v, str)} for name in runs.index}
    assert sorted(resolved["prune"]) == ["lp_threads", "region"] and int(resolved["prune"]["lp_threads"]) >= 1
    assert resolved["prune"]["region"] == "activation"  # region=auto on the MLP's hidden layers
    assert resolved["sisa"] == {"epochs": runs.loc["sisa", "params.recipe.epochs"]}, resolved["sisa"]
    assert resolved["fisher"]["chunk_size"].isdigit() and int(resolved["fisher"]["chunk_size"]) > 0
    assert resolved["iu"] == {"chunk_size": resolved["iu"]["chunk_size"],
                              "max_retain": str(int(runs.loc["iu", "metrics.iu_retain_examples"]))}, resolved["iu"]
    assert "chunk_size" not in resolved["ssd"]  # batch_size 64: no per-example chunks, nothing resolved
    assert {n for n, r in resolved.items() if r} == {"prune", "sisa", "fisher", "iu"}, resolved
