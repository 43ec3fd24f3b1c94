"""Progress of Ray Tune trials in the terminal (imported only when Ray runs: it imports ray.tune)."""

from __future__ import annotations

import os
import time
from typing import Callable

from ray import tune

from bench.core.keys import ATTACK_ERRORS_KEY
from bench.core.spec import TrialSpec, spec_of
from bench.track.report import summary_line
from bench.track.tracking import failure_line


#: Seconds with trials pending and none running before :meth:`Progress.on_step_begin` says so.
WAIT_NOTE = 30.0


class Progress(tune.Callback):
    """One line per trial event; collects each trial's result and failure into ``out``.

    Tune pickles its callbacks with the experiment state, so the sinks (console, outcome) are
    left out of the pickled state.
    """

    def __init__(self, trials: list[TrialSpec], index: dict[str, int], out, say: Callable[[str], None], total: int | None = None,
                 run_of: Callable[[object], str | None] = lambda trial: None,
                 after_record: Callable[[object, Callable[[], None]], None] = lambda trial, line: line()) -> None:
        self.trials, self.index, self.out, self.say, self.total, self.run_of = trials, index, out, say, total, run_of
        #: ``after_record(trial, line)`` prints a trial's last line once its run is in the store (the
        #: tracking callback writes beside Tune's loop): a trial shown as done is recorded
        self.after_record = after_record
        self.started: dict[str, float] = {}
        self.idle_since, self.said_waiting = time.perf_counter(), float("-inf")

    def __getstate__(self):
        return {"trials": self.trials, "index": self.index, "out": None, "say": None, "started": {}, "total": self.total,
                "run_of": None, "after_record": None, "idle_since": 0.0, "said_waiting": float("-inf")}

    def on_step_begin(self, iteration, trials, **info):
        """Say when trials wait with none running for ``WAIT_NOTE`` seconds (again each minute): on a
        shared cluster another job's trials hold its CPUs, and a run printed nothing for as long as
        they did (29 s behind another run's; concurrency audit, 2026-12-07); not while actors start (seconds each)."""
        now = time.perf_counter()
        if any(t.status == "RUNNING" for t in trials) or self.say is None:
            self.idle_since = now
            return
        pending = sum(t.status == "PENDING" for t in trials)
        if pending and now - self.idle_since >= WAIT_NOTE and now - self.said_waiting >= 60:
            self.said_waiting = now
            self.say(f"waiting: {pending} trial(s) pending, none running for {now - self.idle_since:.0f}s (on a shared "
                     f"Ray cluster, other jobs' trials may hold its CPUs or GPUs)")

    def _where(self, trial) -> tuple[int, str, str]:
        spec = spec_of(trial.config, self.trials)
        name = spec.trial_name
        if name not in self.index:  # a sample of ``bench tune``: numbered in start order
            self.index[name] = len(self.index)
        i = self.index[name]
        self.out.specs[i] = spec
        total = self.total or len(self.trials)
        return i, f"[{i + 1}/{total}]", name

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.perf_counter()
        _, tag, name = self._where(trial)
        self.say(f"{tag} running {name}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.out.results[self._where(trial)[0]] = dict(result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        i, tag, name = self._where(trial)
        self.out.ended.add(i)
        took = time.perf_counter() - self.started.get(trial.trial_id, time.perf_counter())
        result = self.out.results.get(i, {})
        early = "" if "unlearn_seconds" in result else " (stopped early by the scheduler)"
        line = f"{tag} done    {name} in {took:.1f}s: {summary_line(result)}{early}"  # (with the attacks that failed)
        self.after_record(trial, lambda: self.say(line, always=ATTACK_ERRORS_KEY in result))

    def on_trial_error(self, iteration, trials, trial, **info):
        i, tag, name = self._where(trial)
        self.out.ended.add(i)
        error = ""
        if trial.error_file and os.path.isfile(trial.error_file):
            with open(trial.error_file) as fh:
                error = fh.read()
        self.out.failures[i] = error or "trial failed"
        self.out.results.pop(i, None)
        # once the tracking callback (before this one in Tune's list) has recorded the failure
        self.after_record(trial, lambda: self.say(failure_line(tag, name, error or "trial failed", self.run_of(trial)), always=True))
