"""Progress from Ray workers: the per-epoch events of ``bench.core.console`` reach the driver.

A worker's progress events go to a small relay actor (no CPU reserved) that the driver drains
from a thread into its own sink. The relay is created by the first worker with something to say:
only work that has run RELAY_AFTER seconds posts, so short trials and cached runs start no extra
process. It is named after the driver, detached (it must outlive the worker that created it)
and killed by the driver when the run's Ray work ends.
"""

from __future__ import annotations

import os
import time

from bench.core import console

#: Seconds a worker's task runs before its progress is forwarded to the driver: the interval of
#: the plain progress lines (``bench.core.console.ProgressReporter``), so piped output is the same
#: as with any threshold. The relay is a Ray worker process (1.3 s of CPU, measured on the main
#: job, where a 2 s threshold started it for PRUNE's 9 s trial and the bar showed for 7 s).
RELAY_AFTER = 10.0


class _RelaySink:
    """A worker's sink: posts the events of tasks that have run RELAY_AFTER seconds to the relay
    ``name`` (creating it on first use), fire-and-forget."""

    def __init__(self, name: str, namespace: str, after: float = RELAY_AFTER) -> None:
        self.name, self.namespace, self.after, self.handle = name, namespace, after, None
        self.posted: set[str] = set()

    def __call__(self, event: dict) -> None:
        if event.get("end"):
            if event["id"] not in self.posted:
                return
            self.posted.discard(event["id"])
        elif event["elapsed"] < self.after and event["id"] not in self.posted:
            return
        else:
            self.posted.add(event["id"])
        if self.handle is None:
            import ray

            # the actor's class lives in bench.core.console: its process imports neither torch nor bench.run
            self.handle = ray.remote(num_cpus=0, max_restarts=0)(console.ProgressRelay).options(
                name=self.name, namespace=self.namespace, lifetime="detached", get_if_exists=True).remote()
        self.handle.post.remote(event)


class ForwardProgress:
    """Driver side, while Ray work runs: drains the relay into this process's progress sink.
    ``sink_spec()`` is what workers need to post (None when nobody listens)."""

    POLL = 0.5

    def __init__(self) -> None:
        import threading

        self.sink = console.get_sink()
        self.name = f"bench-progress-{os.getpid()}-{int(time.time() * 1000)}"
        self.namespace = "bench-progress"
        self.stop = threading.Event()
        self.thread = None
        self.handle = None

    def sink_spec(self) -> tuple[str, str, float] | None:
        return None if self.sink is None else (self.name, self.namespace, RELAY_AFTER)

    def __enter__(self) -> "ForwardProgress":
        import threading

        if self.sink is not None:
            self.thread = threading.Thread(target=self._loop, name="bench-progress", daemon=True)
            self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stop.wait(self.POLL):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        import ray

        try:
            if self.handle is None:
                try:
                    self.handle = ray.get_actor(self.name, namespace=self.namespace)
                except ValueError:  # no worker has posted yet
                    return
            for event in ray.get(self.handle.drain.remote(), timeout=10):
                self.sink(event)
        except Exception:  # progress is best effort: never fail the run over it
            pass

    def __exit__(self, *exc) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join(timeout=15)
        if self.sink is not None:
            import ray

            try:
                handle = self.handle or ray.get_actor(self.name, namespace=self.namespace)
                ray.kill(handle)
            except Exception:
                pass


def in_worker_progress(spec: tuple[str, str, float] | None):
    """The progress sink a Ray worker installs for one job: the relay's, or none."""
    return console.sink(None if spec is None else _RelaySink(*spec))
