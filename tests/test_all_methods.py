"""Every built-in method in one run: ``bench run --methods '*' --seeds 0`` on digits (the default
forget request, random:10%) finishes with each method in one summary table (``unsir``, which takes
class requests only, is left out of the wildcard with a note)."""

from __future__ import annotations

import pytest

from bench.core.plugins import get_registry


@pytest.mark.slow
def test_every_builtin_method_runs_in_one_table(workdir, run_harness, trial_runs):
    names = [n for n in get_registry().names("method") if n != "unsir"]  # unsir takes class requests only
    code, out = run_harness(workdir, methods="*", seeds=[0], attacks="")
    assert code == 0, out
    assert "left out of --methods '*': unsir (they cannot take random:10%" in out
    runs = trial_runs(workdir)
    assert sorted(runs.index) == sorted(names)
    assert (runs["status"] == "FINISHED").all()
    assert runs["metrics.forget_acc"].notna().all() and runs["metrics.test_acc"].notna().all()
    table = out[out.index("unlearning-bench summary"):]
    for name in names:
        assert f"│ {name} " in table, name
