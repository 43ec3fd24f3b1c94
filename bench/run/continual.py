"""Continual (sequential) forget requests: ``--forget seq:5x20`` and ``--forget seq:class:1,3,5``.

The requests of a ``seq:`` spec are applied one after the other: request t is handed to
``method.unlearn`` with, as ``model``, what the method returned for request t-1 (the original
model for the first), the new request's points (``forget_x/y``, ``forget_indices``) and as retain
set every training point not forgotten so far. The reference for request t is the model retrained
from scratch on what remains after requests 1..t (same recipe and seed as every reference, in the
same content-addressed cache: it is the retrained reference of an ``indices:`` request for the
union of requests 1..t). This is the continual protocol of L2UL (Cha et al., AAAI 2024), whose
code has none; our reconstruction of its protocol (paper, section 4 and the supplement) measures
after every request the accuracy on the current request, on every request so far (to catch relearning), on
the retain set and on the test set.

Metrics after every request t (MLflow metric steps t-1 of the trial's child run): the usual
metrics of a trial computed against request t's references (``forget_acc`` on request t,
``retain_acc`` on what remains, ``test_acc``, the gaps, ``avg_gap``, JS divergences,
``unlearn_seconds`` of request t alone, ``retrain_seconds`` of its reference,
``speedup_vs_retrain``, memory, ``forget_size`` = size of request t) plus
``forget_all_acc`` (accuracy on every point forgotten so far; ``original_forget_all_acc``,
``retrain_forget_all_acc`` and ``forget_all_gap`` alongside), ``forget_all_size``, ``request``
(t, from 1), ``cumulative_unlearn_seconds`` and ``cumulative_retrain_seconds`` (sums over requests
1..t) and ``cumulative_speedup_vs_retrain`` (their ratio: retraining at every step vs the method).
The trial's final result is the last request's metrics (so ``bench compare``, ``--resume`` and the
summary read the last step and the totals); the earlier steps travel with it under
``bench.core.keys.STEPS_KEY`` and are logged as earlier metric steps. Attacks run once, on the final model,
with every forgotten point as the forget set.

A method that cannot continue from its own output sets ``continual = False`` (and
``continual_note``, one sentence saying why); a ``seq:`` request for it is refused before any
training (``bench.run.validate.check_continual``). ``ctx.report`` (intermediate results for ASHA)
is not offered during continual trials. The trial itself runs in ``bench.run.trial``, the same
code as a single request (a single request is a sequence of one); this module holds what only
sequences need: the references of every request and the summary rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.core.cache import cache_key, sha256_bytes


def seen_after_each(steps) -> list:
    """The union of requests 1..t, for every t (sorted int64 arrays)."""
    seen, out = np.empty(0, dtype=np.int64), []
    for idx in steps:
        seen = np.union1d(seen, idx).astype(np.int64)
        out.append(seen)
    return out


def step_references(steps, base: dict) -> list[tuple[str, dict]]:
    """(cache key, document) of the retrained reference of every request: trained on what remains
    after it. The document is the one of an ordinary retrained reference for the same union, so
    the cache is shared with single requests."""
    refs = []
    for seen in seen_after_each(steps):
        doc = {"kind": "retrain", **base, "forget_sha256": sha256_bytes(np.asarray(seen, np.int64).tobytes())}
        refs.append((cache_key(doc), doc))
    return refs


def step_training_sets(group, train_size: int) -> list[tuple[str, dict, Any]]:
    """(key, document, training indices) of the retrained reference of every request of a
    ``seq:`` group (the last one is the group's retrained reference; the cache skips duplicates)."""
    return [(key, doc, np.setdiff1d(np.arange(train_size), seen))
            for seen, (key, doc) in zip(seen_after_each(group.steps), group.step_refs, strict=True)]


def reference_summary(steps) -> tuple[dict, dict]:
    """The two reference rows of the summary for a ``seq:`` group: the last request's values plus
    ``forget_all_acc`` and, for the retrained reference, retraining at every request in total."""
    last = steps[-1]
    original = {**last.original_eval.accs, "forget_all_acc": last.original_forget_all_acc}
    retrain = {**last.retrain_eval.accs, "forget_all_acc": last.retrain_forget_all_acc,
               "cumulative_unlearn_seconds": sum(s.retrain_seconds for s in steps)}
    return original, retrain
