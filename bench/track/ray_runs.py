"""The trials' child runs under Ray Tune, written beside Tune's loop rather than inside it.

:func:`make_ray_callback` returns ``BenchMLflowCallback``, a subclass of Ray's
``MLflowLoggerCallback`` with our run names, nesting, batched logging and tracebacks (the helpers
of ``bench.track.tracking``, which ``--executor local`` uses too). It runs in the driver, so a
SQLite store has one writer.

Tune calls its callbacks inside its event loop, and a trial's next step (the next trial on a
reused actor) waits until they return. Writing a finished trial's run and drawing its ROC plots
took 0.1-0.2 s of that loop per trial, time in which a one-CPU cluster's only worker sat idle. So
the callback only hands each event to one writer thread, in the order Tune reported them (start,
results, end of each trial), and returns: every MLflow call of the child runs is made by that
thread. ``drain()`` waits until everything handed over is written and raises ``RecordError`` if a
write failed (``bench`` then ends with that line and exit status 1; the trial's run, if it exists,
is marked FAILED, never FINISHED without its result, and its "done" line is not printed); the
executor calls ``close()`` (``drain()``, then the thread ends) when Tune returns, after an
interrupt too, so nothing measured is lost and no failed write passes silently.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Sequence

from bench.core.errors import RecordError
from bench.core.keys import ARTIFACTS_KEY, Tag
from bench.core.spec import TrialSpec, spec_of
from bench.track.tracking import RESUME_HINT, child_tags, error_line, format_exception, log_artifacts, log_earlier_steps, \
    log_metrics, log_params, record_failure, trial_metrics, trial_params


def make_ray_callback(tracking_uri: str, experiment_name: str, parent_run_id: str, table: Sequence[TrialSpec] = ()):
    """The tracking callback of one Tune run (``table``: the specs a grid's configs index, ``spec_of``)."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class BenchMLflowCallback(MLflowLoggerCallback):
        def setup(self, *args, **kwargs):
            super().setup(*args, **kwargs)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="bench-mlflow")
            self._runs: dict = {}  # trial -> Future of its child run's id
            self._jobs: list[Future] = []  # every write not yet drained
            self._of: dict = {}  # trial -> its writes so far

        def __getstate__(self):  # Tune pickles its callbacks with the experiment state
            return {k: v for k, v in self.__dict__.items() if k not in ("_writer", "_runs", "_jobs", "_of")}

        def _submit(self, trial, fn, *args) -> Future:
            job = self._writer.submit(fn, *args)
            self._jobs.append(job)
            self._of.setdefault(trial, []).append(job)
            return job

        def _write_error(self, trial) -> BaseException | None:
            """The first of ``trial``'s writes so far that failed (call on the writer thread: they are done)."""
            return next((job.exception() for job in self._of.get(trial, []) if job.done() and job.exception()), None)

        def run_id(self, trial) -> str | None:
            """The child run of ``trial`` (waits for its creation), or None if it has none."""
            run = getattr(self, "_runs", {}).get(trial)
            return None if run is None or run.exception() is not None else run.result()

        def after_record(self, trial, fn) -> None:
            """Call ``fn`` once everything handed over so far (``trial``'s end among it) is written,
            unless a write of ``trial``'s failed (``close`` raises it)."""
            self._submit(trial, lambda: None if self._write_error(trial) else fn())

        def drain(self) -> None:
            """Wait for every write handed over so far; raise ``RecordError`` if any failed."""
            jobs, self._jobs = getattr(self, "_jobs", []), []
            wait(jobs)
            failed = [job.exception() for job in jobs if job.exception() is not None]
            if failed:
                raise RecordError(f"{len(failed)} write(s) of the trials' runs to the MLflow store failed, the first: "
                                  f"{error_line(format_exception(failed[0]))}. {RESUME_HINT}") from failed[0]

        def close(self) -> None:
            """``drain``, then end the writer thread (the process's exit waits for threads left running)."""
            try:
                self.drain()
            finally:
                if getattr(self, "_writer", None) is not None:
                    self._writer.shutdown(wait=True)

        def log_trial_start(self, trial):
            if trial in self._runs:
                return
            spec = spec_of(trial.config, table)
            self._runs[trial] = self._submit(trial, self._start, spec, {**child_tags(spec, parent_run_id), "trial_name": str(trial)})

        def _start(self, spec: TrialSpec, tags: dict) -> str:
            run = self.mlflow_util.start_run(tags=tags, run_name=spec.trial_name, set_active=False)
            log_params(self.mlflow_util._get_client(), run.info.run_id, trial_params(spec))
            return run.info.run_id

        def log_trial_result(self, iteration, trial, result):
            self.log_trial_start(trial)
            self._submit(trial, self._result, self._runs[trial], dict(result))
            # taken out of the result Tune keeps (Tune lets a callback change it in place): every trial's
            # files, --save-models' model among them, were written hex-encoded into Tune's
            # experiment_state-*.json under the cache, 279 MB for one digits run (metrics audit)
            result.pop(ARTIFACTS_KEY, None)

        def _result(self, run: Future, result: dict) -> None:
            client, run_id = self.mlflow_util._get_client(), run.result()
            step = int(result.get("training_iteration", 1)) - 1  # intermediate reports (ASHA) are steps
            step = log_earlier_steps(client, run_id, result, step)
            log_metrics(client, run_id, trial_metrics(result), step=step)
            log_artifacts(client, run_id, result)

        def log_trial_end(self, trial, failed=False):
            self.log_trial_start(trial)  # a trial that failed before it started (its actor could not start) has no run yet
            # a scheduler (ASHA) stopped it on an intermediate result
            early = not failed and "unlearn_seconds" not in (trial.last_result or {})
            error = None
            if failed:
                error = ""
                if trial.error_file and Path(trial.error_file).is_file():
                    error = Path(trial.error_file).read_text()
                error = error or "trial failed (no traceback recorded)"
            self._submit(trial, self._end, trial, early, error)

        def _end(self, trial, early: bool, error: str | None) -> None:
            client, run_id = self.mlflow_util._get_client(), self._runs[trial].result()
            if error is None and (failed := self._write_error(trial)) is not None:  # never FINISHED without its result
                error = f"the trial finished, but recording its result failed:\n{format_exception(failed)}"
            if early:
                client.set_tag(run_id, Tag.STOPPED_EARLY, "true")
            if error is not None:
                record_failure(client, run_id, error)
            client.set_terminated(run_id, "FAILED" if error is not None else "FINISHED")

    return BenchMLflowCallback(tracking_uri=tracking_uri, experiment_name=experiment_name)
