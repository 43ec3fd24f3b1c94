"""Metric names and which way is better: one table for ``bench tune``'s objectives and
``bench compare``'s ranking. No torch import (the CLI reads it at start-up); the metrics
themselves are defined in ``bench.eval.evaluation`` and ``bench.eval.measure``."""

from __future__ import annotations

ACCURACIES = ("retain_acc", "forget_acc", "test_acc")

#: Which way is better, per metric: True = higher, False = lower, None = neither (the target is the
#: retrained model's value: rank by the matching gap instead, or say --maximize / --minimize).
DIRECTIONS: dict[str, bool | None] = {
    "retain_acc": True,
    "test_acc": True,
    "test_retain_class_acc": True,
    "forget_acc": None,
    "test_forget_class_acc": None,
    "retain_gap": False,
    "forget_gap": False,
    "test_gap": False,
    "avg_gap": False,
    "js_to_retrain_forget": False,
    "js_to_retrain_test": False,
    "unlearn_seconds": False,
    "speedup_vs_retrain": True,
    "peak_memory_mb": False,
    "peak_memory_reserved_mb": False,
    "memory_delta_mb": False,
    "forget_size": None,
    # continual requests (bench.run.continual): accuracy on every point forgotten so far has the
    # retrained model's value as its target, like forget_acc; the original's and the retrained
    # model's own values are references, not scores
    "forget_all_acc": None,
    "original_forget_all_acc": None,
    "retrain_forget_all_acc": None,
    "forget_all_size": None,
    "forget_all_gap": False,
    "cumulative_unlearn_seconds": False,
    "cumulative_speedup_vs_retrain": True,
    # the retrained references' times, recorded with every trial: the same for every method of a
    # setting (ranking by them tied every method)
    "retrain_seconds": None,
    "cumulative_retrain_seconds": None,
    # a diagnostic: how far the method moved the weights (0: it changed nothing), no better side
    "weight_change": None,
}
#: The metrics of every trial that are bench's own, not an attack's: the table above, the references'
#: and a method's own original's accuracies, and what a continual request or an own original adds.
#: An attack plugin's metric of one of these names is refused (bench.run.attack_step, the kit).
HARNESS_METRICS = frozenset(DIRECTIONS) | {
    f"{who}_{acc}" for who in ("original", "retrain", "method_original")
    for acc in ACCURACIES + ("test_forget_class_acc", "test_retain_class_acc")
} | {"train_seconds", "input_forget_acc", "request"}
DIRECTIONS |= {
    # attacks (docs/attacks.md): membership metrics have no "better" side in an unlearning study,
    # the target is the retrained model's value (an AUC below it is as telling, the "Streisand
    # effect"); SalUn's four-term gap and the NeurIPS'23 score do have one
    "mia_efficacy": None,
    "avg_gap_mia": False,
    "epsilon_score": True,
    "epsilon_forget_quality": True,
    "epsilon_median_eps": False,
    # the retrained shadow models' mean accuracies, logged with the score (recomputable): the same
    # for every method of a setting (ranking by them tied every method at 1, found in review)
    "epsilon_retrained_retain_acc": None,
    "epsilon_retrained_test_acc": None,
}
#: Attack metrics that are the retrained models' values, the same for every method of a setting:
#: they rank nothing (``bench compare --objective`` and ``bench tune`` refuse them).
RETRAINED_VALUES = frozenset({"epsilon_retrained_retain_acc", "epsilon_retrained_test_acc"})
#: Attack metrics (``<attack>_<name>``) whose target is the retrained model's value: checked before
#: the suffixes below, so that ``loss_balanced_acc`` is not taken for an accuracy to maximise.
NEITHER_SUFFIXES = ("_auc", "_tpr_at_1fpr", "_tpr_at_0.1fpr", "_balanced_acc", "_yeom_acc", "_class_thresh_acc",
                    "_efficacy")
#: Metrics not in the table above (attack plugins' metrics, say) by name pattern.
SUFFIX_DIRECTIONS = (("_gap", False), ("_seconds", False), ("_mb", False), ("_acc", True))
PREFIX_DIRECTIONS = (("js_", False), ("speedup", True), ("cost_vs", False))


def direction(metric: str) -> bool | None:
    """True if higher is better, False if lower is better, None if unknown or neither."""
    if metric in DIRECTIONS:
        return DIRECTIONS[metric]
    if metric.endswith(NEITHER_SUFFIXES):
        return None
    for suffix, maximize in SUFFIX_DIRECTIONS:
        if metric.endswith(suffix):
            return maximize
    for prefix, maximize in PREFIX_DIRECTIONS:
        if metric.startswith(prefix):
            return maximize
    return None


def no_direction_reason(metric: str, available=()) -> str:
    """Why ``metric`` has no better side (one sentence for the messages of ``bench compare`` and
    ``bench tune``), or "" when nothing is known of it."""
    if metric.endswith("_size"):
        return " It counts the forgotten points: a property of the request, not of the method."
    if metric == "weight_change":
        return " It is a diagnostic (how far the method moved the weights it was given), with no better side."
    if metric in ("retrain_seconds", "cumulative_retrain_seconds"):
        own = metric.replace("retrain_seconds", "unlearn_seconds")  # the seq counterpart for the cumulative one
        return f" It is the retrained reference's time, the same for every method: rank by '{own}'."
    if metric in RETRAINED_VALUES:
        return (" It is the retrained shadow models' mean accuracy (attack epsilon), the same for every method of a "
                "setting: it ranks nothing; rank by 'epsilon_score', or by the method's own 'epsilon_unlearned_"
                f"{metric.split('_', 2)[2]}'.")
    if metric.endswith("_acc") and metric in DIRECTIONS:
        gap = metric.replace("_acc", "_gap")
        gap = gap if gap in available or gap in DIRECTIONS else "avg_gap"
        return f" Its target is the retrained model's value, not an extreme: rank by '{gap}' instead."
    if metric in DIRECTIONS or metric.endswith(NEITHER_SUFFIXES):
        return (" An attack's score has the retrained model's value as its target, not an extreme (below it is as "
                "telling as above).")
    return ""


#: The metrics with a known direction, as Ray Tune modes: what ``bench tune`` accepts as an objective.
METRIC_DIRECTIONS = {m: ("max" if up else "min") for m, up in DIRECTIONS.items() if up is not None}


#: What ``ctx.report`` sends per epoch (``bench.eval.evaluation.compare_to_references``): the
#: objectives ``bench tune --scheduler asha`` can compare samples on while they run.
PER_EPOCH = (*ACCURACIES, "retain_gap", "forget_gap", "test_gap", "avg_gap", "js_to_retrain_forget", "js_to_retrain_test",
             "test_retain_class_acc", "test_forget_class_acc")
#: Metrics only a continual request (``seq:``) produces, and only a class request.
CONTINUAL_ONLY = ("forget_all_acc", "forget_all_gap", "forget_all_size", "cumulative_unlearn_seconds",
                  "cumulative_speedup_vs_retrain")
CLASS_ONLY = ("test_retain_class_acc", "test_forget_class_acc")


def objective_attack(objective: str, attacks: dict) -> str | None:
    """The attack (of ``{name: attack}``) whose metric ``objective`` is: one that reports it
    unprefixed, else the longest name it starts with (``lira_offline_auc`` is lira_offline's, not
    lira's)."""
    for name, attack in attacks.items():
        if objective in getattr(attack, "unprefixed", ()):
            return name
    return max((n for n in attacks if objective.startswith(f"{n}_")), key=len, default=None)
