"""``--validation F``: measure on a validation split carved from the training data, not on the test set.

``bench tune`` chooses hyperparameters by an objective measured on the trial's forget, retain and
test sets; without a validation split the test set took part in the choice, and a `bench run` of
the best parameters on the search's seed repeated the selected sample (tune audit, 2026-12-07).
With ``--validation F`` every dataset of the run keeps ``round(F * n_c)`` training examples of
each class c aside (at least one, drawn by ``numpy.random.default_rng(VALIDATION_SEED)`` class by
class, the same for every trial seed) as the split the trials are measured on in place of the
test set; the rest is the training set the originals, the references and the forget requests use.
The test set is not used. ``Splits.info`` records ``validation`` and ``validation_size`` (params
``data.validation*``; the data digests cover the new splits, so such trials have keys and
references of their own). ``bench run --params`` of a search made so says where it was selected.
"""

from __future__ import annotations

import math
from typing import Any

from bench.core.errors import BenchError

#: the draw of the validation examples: one split per dataset for every seed, as the train/test split
VALIDATION_SEED = 0


def check_validation(value: Any) -> None:
    """``--validation``: 0 (off) or a fraction in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value < 1:
        raise BenchError(f"Bad --validation {value!r}: expected a fraction of the training set in (0, 1), e.g. "
                         "--validation 0.2, or 0 to measure on the test set.")


def validation_splits(spec: str, sp: Any, fraction: float) -> Any:
    """``sp`` with ``fraction`` of each class of its training set as the split measured on (``test_*``)."""
    import dataclasses

    import numpy as np
    import torch

    y = sp.train_y.cpu().numpy()
    rng = np.random.default_rng(VALIDATION_SEED)
    held = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        k = max(1, int(round(fraction * len(rows))))
        if k >= len(rows):
            raise BenchError(f"--validation {fraction:g} leaves no training example of class {int(c)} of dataset '{spec}' "
                             f"({len(rows)} in all): give a smaller fraction.")
        held.append(rng.choice(rows, size=k, replace=False))
    val = np.sort(np.concatenate(held))
    keep = np.setdiff1d(np.arange(len(y)), val)
    val_t, keep_t = torch.as_tensor(val, device=sp.train_x.device), torch.as_tensor(keep, device=sp.train_x.device)
    info = {**sp.info, "validation": float(fraction), "validation_size": int(len(val)), "validation_seed": VALIDATION_SEED}
    return dataclasses.replace(sp, train_x=sp.train_x[keep_t], train_y=sp.train_y[keep_t], test_x=sp.train_x[val_t],
                               test_y=sp.train_y[val_t], info=info)
