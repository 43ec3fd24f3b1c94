"""Warnings about what methods did in the finished trials of a run or samples of a search, said at
its end and kept with it (tag ``bench.warnings``): weights returned unchanged, accuracies left the
original's, goals missed, models collapsed to chance, and attacks that failed."""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping

from bench.core.keys import ATTACK_ERRORS_KEY, STEPS_KEY


def unchanged_warnings(trials, results: Mapping[int, dict], unit: str = "trial") -> list[str]:
    """One warning per method that returned the weights it was given unchanged (``weight_change``
    0, on any request of a continual one) in some finished trial while there was something to
    forget (the forget accuracy of the model the method was given above 0: ``input_forget_acc`` on a
    continual request, whose input is the previous request's result, else ``original_forget_acc``;
    a method that stops at once because every forget point is already misclassified changed
    nothing rightly; on continual requests the original's accuracy was read until 2026-12-06, and a
    method given a model that already misclassified them was said to return the original's
    numbers): its metrics are then the original model's, which score well on utility and can rank
    first. ``trials``: the specs (``.method``) by the
    positions of ``results``, their metrics; ``unit``: what one is called ("sample" in bench tune)."""
    unchanged: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i, metrics in results.items():
        steps = metrics.get(STEPS_KEY) or [metrics]  # a continual trial: every request
        counts = unchanged[trials[i].method]
        counts[1] += 1
        counts[0] += any(step.get("weight_change") == 0
                         and step.get("input_forget_acc", step.get("original_forget_acc", 1.0)) > 0 for step in steps)
    return [f"warning: method '{name}' returned the weights it was given unchanged (weight_change 0) in {n} of {of} "
            f"{unit}(s): their metrics are the original model's. If that is not what its parameters meant, check them "
            f"(a step size, a threshold, a selection that picked no weight)."
            for name, (n, of) in unchanged.items() if n]


#: A relative weight change (``weight_change``) below this, with the original's accuracies: "barely moved".
UNMOVED = 0.01


def unmoved_warnings(trials, results: Mapping[int, dict], unit: str = "trial") -> list[str]:
    """One warning per method that moved the weights by less than :data:`UNMOVED` (``weight_change``
    > 0: 0 has :func:`unchanged_warnings`) and left the forget, retain and test accuracies all the
    original's (on the same sets, to the example) in some finished single-request trial where the
    retrained reference's forget accuracy is not the original's (there was something to forget):
    its row reads as a method evaluated. iu, ssd and ga at their digits defaults on 20,000
    CIFAR-shaped images did so without a word (weight_change 0.0003-0.006; scale audit, 2026-12-07).
    A larger change with the same accuracies (ft, ssd on digits' random:10%: 0.02-0.08) is left
    alone: the model moved, and on an easy request the original's answers may be the right ones."""
    unmoved: dict[str, list] = defaultdict(lambda: [0, 0, float("inf")])
    keys = ("forget_acc", "retain_acc", "test_acc")
    for i, m in results.items():
        counts = unmoved[trials[i].method]
        counts[1] += 1
        if STEPS_KEY in m or not m.get("weight_change") or any(k not in m for k in keys):
            continue
        if m["weight_change"] < UNMOVED and all(m[k] == m.get(f"original_{k}") for k in keys) \
                and m.get("retrain_forget_acc") != m["forget_acc"]:
            counts[0] += 1
            counts[2] = min(counts[2], m["weight_change"])
    return [f"warning: method '{name}' moved the weights by under {UNMOVED:.0%} and left the forget, retain and test "
            f"accuracies exactly the original model's in {n} of {of} {unit}(s) (weight_change down to {low:.2g}): its "
            f"numbers are the original's. Its defaults may suit another dataset or model (docs/methods.md gives them, "
            f"and the per-dataset ones): raise its step size, epochs or selection threshold."
            for name, (n, of, low) in unmoved.items() if n]


def goal_warnings(trials, results: Mapping[int, dict], unit: str = "trial") -> list[str]:
    """One warning per method that reported its own goal missed (a ``<...>_goal_reached`` metric of
    0, on any request of a continual one: L2UL at its epoch cap with forget points still classified
    right) in some finished trial; recorded without a word until 2026-12-06."""
    missed: dict[str, list] = defaultdict(lambda: [0, 0, set()])
    for i, metrics in results.items():
        steps = metrics.get(STEPS_KEY) or [metrics]
        counts = missed[trials[i].method]
        counts[1] += 1
        keys = {k for step in steps for k, v in step.items() if k.endswith("_goal_reached") and v == 0}
        counts[0] += bool(keys)
        counts[2] |= keys
    return [f"warning: method '{name}' stopped before reaching its own goal ({', '.join(sorted(keys))} 0) in {n} of "
            f"{of} {unit}(s): it ran out of steps or epochs (its docs name the cap) with part of the forget set not "
            f"yet forgotten as it defines it."
            for name, (n, of, keys) in missed.items() if n]


#: A test accuracy within this of always answering the test split's most common class is "at chance"
#: (the references' warning too: ``bench.run.references.warn_chance_references``).
CHANCE_MARGIN = 0.02


def chance_warnings(trials, results: Mapping[int, dict], chance: Mapping[str, float], margin: float = CHANCE_MARGIN,
                    unit: str = "trial") -> list[str]:
    """One warning per method that left a model no better than chance on the test split (within
    ``margin`` of ``chance[dataset]``, always answering the most common class) in some finished
    trial whose original was better: a collapsed model without a NaN (``ft.lr=1``: test_acc 0.103,
    entropy_auc 0.500, which reads as "the attacker is at chance"; params audit, 2026-12-07)."""
    collapsed: dict[str, list] = defaultdict(lambda: [0, 0, 1.0])
    for i, metrics in results.items():
        rate = chance.get(trials[i].dataset)
        if rate is None:
            continue
        steps = metrics.get(STEPS_KEY) or [metrics]
        counts = collapsed[trials[i].method]
        counts[1] += 1
        low = [s["test_acc"] for s in steps if s.get("test_acc", 1.0) <= rate + margin
               and s.get("original_test_acc", 0.0) > rate + margin]
        counts[0] += bool(low)
        counts[2] = min([counts[2], *low])
    return [f"warning: method '{name}' left a model no better than chance on the test split (test_acc down to "
            f"{lowest:.3f}, the original's well above) in {n} of {of} {unit}(s): it collapsed, and its forget_acc and "
            f"attack scores (an AUC near 0.5) say nothing about forgetting. Check its parameters (a step size too "
            f"large for this model)."
            for name, (n, of, lowest) in collapsed.items() if n]


def method_warnings(trials, results: Mapping[int, dict], unit: str = "trial",
                    chance: Mapping[str, float] | None = None, margin: float = CHANCE_MARGIN) -> list[str]:
    """:func:`unchanged_warnings`, :func:`unmoved_warnings`, :func:`goal_warnings` and (given ``chance``) :func:`chance_warnings`,
    by method."""
    out = unchanged_warnings(trials, results, unit) + unmoved_warnings(trials, results, unit) + goal_warnings(trials, results, unit)
    return out + (chance_warnings(trials, results, chance, margin, unit) if chance else [])


def attack_error_lines(trials, results: Mapping[int, dict], unit: str = "trial") -> list[str]:
    """One line per attack that failed in some finished trial (``ATTACK_ERRORS_KEY``): in how many
    and which, what its first failure said; the trials' other metrics were kept. ``trials``: the
    specs (``.trial_name``) by the positions of ``results``."""
    failed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for i, metrics in sorted(results.items()):
        for attack, text in (metrics.get(ATTACK_ERRORS_KEY) or {}).items():
            failed[attack].append((trials[i].trial_name, text.split("\n", 1)[0]))
    lines = []
    for attack, where in failed.items():
        names = ", ".join(n for n, _ in where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        lines.append(f"attack '{attack}' has no metrics in {len(where)} {unit}(s) ({names}): {where[0][1].rstrip('.')}. "
                     f"The method's metrics and the other attacks' are kept; the traceback is in each {unit}'s MLflow "
                     f"run (artifact attack_errors/{attack}.txt).")
    return lines
