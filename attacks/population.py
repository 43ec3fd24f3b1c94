"""Population attacks on the attacked model alone (no shadow models): ``loss``, ``confidence``,
``entropy``, ``mentropy`` (Yeom et al. CSF 2018; Song & Mittal USENIX Security 2021; below).

Each scores members (the forget set D_f) against non-members (the test set D_t) with one signal
of the model's output, oriented so that higher means "member", and logs the shared metrics of
``bench.eval.scoring`` (``auc``, ``tpr_at_1fpr``, ``tpr_at_0.1fpr``, ``balanced_acc``) plus
``retain_auc``, the same attack on retain vs test: the training-privacy check (how much the
unlearned model still leaks about the data it keeps). A log-scale ROC plot of both is saved as the
artifact ``roc/<attack>.png``.

- ``loss`` (Yeom et al., "Privacy Risk in Machine Learning", CSF 2018): score -CE. Also
  ``yeom_acc``: balanced accuracy of Yeom's rule, "member iff loss <= the mean loss on the
  training data" (the retain set's mean loss here; the attacker is assumed to know it).
- ``confidence`` (Yeom et al.; Song & Mittal): score p_y.
- ``entropy`` and ``mentropy`` (Song & Mittal, "Systematic Evaluation of Privacy Risks of Machine
  Learning Models", USENIX Security 2021; ``inspire-group/membership-inference-evaluation``):
  scores -Entr and -Mentr. With ``confidence``, these three also log ``class_thresh_acc``, the
  paper's attack: per-class thresholds chosen to maximise (TPR + TNR)/2 on "shadow" data, here a
  seeded half of the members and of the non-members (a held-out split of the same model's data
  in place of a shadow model, so no extra training), applied to the other half; balanced accuracy.
  Thresholds follow the reference's ``_thre_setting`` (including which of equally good
  thresholds it keeps), found by sorting and binary search, O(n log n) per class, where it tries
  every value in a quadratic loop. A class absent from one side of the shadow half gets the
  threshold of all classes together.
"""

from __future__ import annotations

import numpy as np

from . import signals


def _attack_name_scores(kind: str, logits: np.ndarray, y) -> np.ndarray:
    """Membership score (higher = member) of one signal."""
    if kind == "loss":
        return -signals.loss(logits, y)
    if kind == "confidence":
        return signals.confidence(logits, y)
    if kind == "entropy":
        return -signals.entropy(logits, y)
    if kind == "mentropy":
        return -signals.mentropy(logits, y)
    raise ValueError(kind)


def best_threshold(member: np.ndarray, nonmember: np.ndarray) -> tuple[float, float]:
    """Threshold t maximising (TPR + TNR)/2 for "member iff score >= t": the rule of Song &
    Mittal's ``_thre_setting``, by sorting and binary search (O(n log n)) instead of its loop.

    Candidates are the observed values in the reference's order (members, then non-members), and
    the first one reaching the maximum wins, as the reference's strict ``>`` does: equally good
    thresholds on the shadow half can classify the target half differently, so the tie-break is
    part of the attack (the smallest value reaches 0.5, so the result is never below it).
    Returns (t, its balanced accuracy); (+inf, 0.5) when either side is empty.
    """
    nm, nn = len(member), len(nonmember)
    if nm == 0 or nn == 0:
        return float("inf"), 0.5
    vals = np.r_[member, nonmember]
    tpr = (nm - np.searchsorted(np.sort(member), vals, side="left")) / nm  # members with score >= t
    tnr = np.searchsorted(np.sort(nonmember), vals, side="left") / nn  # non-members with score < t
    acc = 0.5 * (tpr + tnr)
    i = int(np.argmax(acc))  # the first maximum in candidate order
    return float(vals[i]), float(acc[i])


def class_threshold_accuracy(s_m: np.ndarray, y_m: np.ndarray, s_n: np.ndarray, y_n: np.ndarray, num_classes: int,
                             seed: int) -> float:
    """Song & Mittal's per-class threshold attack; shadow = a seeded half of each set, target = the rest."""
    rng = np.random.default_rng(seed)
    pm, pn = rng.permutation(len(s_m)), rng.permutation(len(s_n))
    sh_m, tg_m = pm[: len(pm) // 2], pm[len(pm) // 2 :]
    sh_n, tg_n = pn[: len(pn) // 2], pn[len(pn) // 2 :]
    t_all, _ = best_threshold(s_m[sh_m], s_n[sh_n])
    thr = np.full(num_classes, t_all)
    for c in range(num_classes):
        a, b = s_m[sh_m][y_m[sh_m] == c], s_n[sh_n][y_n[sh_n] == c]
        if len(a) and len(b):
            thr[c] = best_threshold(a, b)[0]
    if len(tg_m) == 0 or len(tg_n) == 0:
        return 0.5
    tpr = float(np.mean(s_m[tg_m] >= thr[y_m[tg_m]]))
    tnr = float(np.mean(s_n[tg_n] < thr[y_n[tg_n]]))
    return 0.5 * (tpr + tnr)


def require_sets(name: str, ctx) -> None:
    """A clear error for an empty forget or test set (nothing to separate)."""
    from bench.core.errors import BenchError

    if len(ctx.forget_y) == 0 or len(ctx.test_y) == 0:
        raise BenchError(f"Attack '{name}' needs a non-empty forget set and test set (got {len(ctx.forget_y)} "
                         f"and {len(ctx.test_y)} points); choose a forget request that selects points.")


class PopulationAttack:
    """A threshold attack on one output signal of the attacked model; see the module docstring."""

    SIGNALS = {
        "loss": "Yeom et al. loss threshold: score -CE, forget vs test (and retain vs test).",
        "confidence": "Yeom et al. / Song & Mittal confidence p_y, forget vs test; per-class thresholds.",
        "entropy": "Song & Mittal prediction entropy, forget vs test; per-class thresholds.",
        "mentropy": "Song & Mittal modified entropy, forget vs test; per-class thresholds.",
    }

    def __init__(self, signal: str) -> None:
        if signal not in self.SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; expected one of {', '.join(self.SIGNALS)}")
        self.signal = signal
        self.name = signal
        self.description = self.SIGNALS[signal]

    def __reduce__(self):
        return (PopulationAttack, (self.signal,))

    def scores(self, model, x, y) -> np.ndarray:
        return _attack_name_scores(self.signal, signals.logits_of(model, x), y)

    def evaluate(self, model, ctx) -> dict[str, float]:
        from bench.eval import scoring

        require_sets(self.name, ctx)
        f = self.scores(model, ctx.forget_x, ctx.forget_y)
        t = self.scores(model, ctx.test_x, ctx.test_y)
        r = self.scores(model, ctx.retain_x, ctx.retain_y)
        out = scoring.score_metrics(f, t)
        if len(r):
            out["retain_auc"] = scoring.score_metrics(r, t)["auc"]
        if self.signal == "loss":
            # Yeom's rule: member iff loss <= mean training loss (score = -loss >= -mean)
            thr = float(np.mean(r)) if len(r) else float(np.mean(f))
            out["yeom_acc"] = 0.5 * (float(np.mean(f >= thr)) + float(np.mean(t < thr)))
        else:
            yf, yt = ctx.forget_y.cpu().numpy(), ctx.test_y.cpu().numpy()
            out["class_thresh_acc"] = class_threshold_accuracy(f, yf, t, yt, ctx.num_classes, ctx.seed)
        curves = {"forget vs test": scoring.roc(f, t)}
        if len(r):
            curves["retain vs test"] = scoring.roc(r, t)
        ctx.artifacts[f"roc/{self.name}.png"] = scoring.RocPlot(curves, title=f"{self.name} attack")
        return out
