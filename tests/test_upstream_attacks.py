"""Regression tests from running our attacks beside the reference code
(``benchmarks/upstream_attacks.py``); none of them needs the upstream checkout.

Song & Mittal's ``_thre_setting`` (inspire-group/membership-inference-evaluation, copied into
OPTML-Group/Unlearn-Sparse ``evaluation/MIA.py``) keeps the first candidate, in the order members
then non-members, whose balanced accuracy beats every earlier one. ``best_threshold`` used to keep
the smallest of the equally good thresholds, and +inf (nobody is a member) when none beat 0.5:
the same accuracy on the shadow half, but a different classification of the target half, so
``*_class_thresh_acc`` differed from the reference by up to 0.05 on about half of the digits
forget seeds. The rule is restated here as a plain loop over the candidates.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.attacks.population import best_threshold, class_threshold_accuracy


def rule(member, nonmember):
    """The reference's choice, stated independently: the earliest candidate with the top accuracy."""
    cands = list(member) + list(nonmember)
    accs = [0.5 * (np.sum(np.asarray(member) >= v) / len(member) + np.sum(np.asarray(nonmember) < v) / len(nonmember))
            for v in cands]
    top = max(accs)
    return cands[accs.index(top)], top


def test_ties_keep_the_first_candidate_in_member_then_nonmember_order():
    # 0.9 and 0.2 both reach 0.75; the reference keeps 0.9 (listed first), not the smaller 0.2
    assert best_threshold(np.array([0.9, 0.2]), np.array([0.5, 0.1])) == (0.9, 0.75)


def test_no_threshold_above_chance_keeps_the_first_that_reaches_it():
    # only 0.5 is reachable: the reference keeps the member value 0.1 (everyone a member), not +inf
    assert best_threshold(np.array([0.1]), np.array([0.5])) == (0.1, 0.5)


def test_best_threshold_is_the_reference_rule_on_tie_heavy_data():
    rng = np.random.default_rng(7)
    for _ in range(300):
        a = np.round(rng.normal(0.3, 1, rng.integers(1, 25)), 1)
        b = np.round(rng.normal(0, 1, rng.integers(1, 25)), 1)
        assert best_threshold(a, b) == rule(a, b)


def test_class_threshold_accuracy_applies_the_reference_thresholds():
    """End to end on tie-heavy scores: equal to per-class thresholds from the rule above."""
    rng = np.random.default_rng(3)
    for seed in range(20):
        s_m, s_n = np.round(rng.normal(0.2, 1, 80), 1), np.round(rng.normal(0, 1, 120), 1)
        y_m, y_n = rng.integers(0, 4, 80), rng.integers(0, 4, 120)
        r = np.random.default_rng(seed)  # the halves class_threshold_accuracy draws
        pm, pn = r.permutation(80), r.permutation(120)
        sh_m, tg_m, sh_n, tg_n = pm[:40], pm[40:], pn[:60], pn[60:]
        thr = np.array([rule(s_m[sh_m][y_m[sh_m] == c], s_n[sh_n][y_n[sh_n] == c])[0] for c in range(4)])
        want = 0.5 * (np.mean(s_m[tg_m] >= thr[y_m[tg_m]]) + np.mean(s_n[tg_n] < thr[y_n[tg_n]]))
        assert class_threshold_accuracy(s_m, y_m, s_n, y_n, 4, seed) == pytest.approx(want, abs=0)
