"""Pieces of the Ray Tune run the executor builds (``bench.run.executor.run_ray``): the searcher
that hands Tune its trials' configs in order, and Tune's log sent to a file.

Why a searcher and not ``tune.grid_search``: Tune's default generator deep-copies the whole
unresolved search space, the grid's list of values included, for every trial it makes, so making
N trials costs N x N copies. A grid of 3,000 ``bench tune`` samples (``{"number", "sample"}``
dicts) took 39 s of the driver before the first trial started, and 2.8 s as a grid of 3,000
integers; the searcher below hands out each config once (measured: benchmarks/bench_tune_start.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence


def in_order(configs: Sequence[dict[str, Any]]):
    """A Ray Tune searcher that suggests ``configs`` one after another, each once, then finishes.
    Tune merges each into the run's constant ``param_space``; run it with
    ``TuneConfig(search_alg=in_order(configs), num_samples=len(configs))``."""
    from ray.tune.search import Searcher

    class InOrder(Searcher):
        def __init__(self) -> None:
            super().__init__()
            self.configs, self.next = [dict(c) for c in configs], 0

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            self._metric, self._mode = metric, mode  # kept for Tune's schedulers; the order is fixed
            return True

        def suggest(self, trial_id: str):
            if self.next >= len(self.configs):
                return Searcher.FINISHED
            self.next += 1
            return self.configs[self.next - 1]

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            pass  # nothing to learn from: every config is run as given

        def save(self, checkpoint_path: str) -> None:  # Tune's experiment checkpoint (JSON, never pickle)
            Path(checkpoint_path).write_text(json.dumps({"configs": self.configs, "next": self.next}))

        def restore(self, checkpoint_path: str) -> None:
            state = json.loads(Path(checkpoint_path).read_text())
            self.configs, self.next = state["configs"], int(state["next"])

    return InOrder()


def tune_log_to_file(path: Path):
    """Send the ``ray.tune`` loggers' records (a failed trial's traceback, "Trials did not
    complete") to ``path`` instead of the terminal. Returns what :func:`restore_tune_log` undoes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s -- %(message)s"))
    logger = logging.getLogger("ray.tune")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    return handler, logger, propagate


def restore_tune_log(handler, logger, propagate) -> None:
    logger.removeHandler(handler)
    logger.propagate = propagate
    handler.close()
