"""Terminal output of a run: progress lines with the elapsed time, silenced by ``--quiet``; and the
per-epoch progress of long work (a reference's training, a method's own original, a trial).

Progress of long work flows in one direction. Work that trains wraps itself in :func:`task`
(``bench.run.executor`` does it for every reference job and every trial); the training loop
(``bench.nn.training.train_epochs``) calls :func:`epoch` after each epoch. Each call becomes an
event (a plain dict: task id, name, epochs done and in all, seconds elapsed, seconds left) given to
this process's *sink*: in the driver a :class:`ProgressReporter`, which draws a rich progress bar on
a terminal or prints a plain line now and then when the output is piped; in a Ray worker a sink that
posts the events to a relay actor the driver drains (``bench.run.executor``). With no sink (a plain
library call, the tests' direct calls) every call here returns at once: nothing is measured or
changed, so progress reporting cannot change a result.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator


class Printer:
    """``say(msg)`` prints a progress line prefixed with the seconds since the start;
    ``say(msg, always=True)`` (failures, where the results went) prints even when quiet."""

    def __init__(self, console, quiet: bool = False) -> None:
        self.console, self.quiet, self.t0 = console, quiet, time.perf_counter()

    def __call__(self, msg: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        # piped, a line is never cut: wrapped at the console's width, the results line's path and the
        # command to reuse the best parameters lost their own line's prefix (found in review)
        self.console.print(f"{time.perf_counter() - self.t0:6.1f}s  {msg}", highlight=False, markup=False,
                           soft_wrap=not getattr(self.console, "is_terminal", False))


# -- per-epoch progress of long work ------------------------------------------------------------

Event = dict
_sink: Callable[[Event], None] | None = None
_tasks: list["_Task"] = []  # the open tasks of this process, innermost last
_ids = itertools.count(1)
#: Seconds between two events of one task that a worker sends (the last epoch is always sent).
SEND_INTERVAL = 0.5
#: Seconds a task may go without an event before a heartbeat says it is still running (and where):
#: an epoch of SCRUB on 20,000 CIFAR-sized images under Ray printed nothing for 52-78 s, an
#: evaluation or a first epoch nothing at all (scale audit, 2026-12-07).
HEARTBEAT = 30.0
_TICK = 5.0  # how often the heartbeat thread looks
_ticker: threading.Thread | None = None
_wake = threading.Event()  # a new task wakes the heartbeat thread (it sleeps _TICK otherwise)


def set_sink(sink: Callable[[Event], None] | None) -> Callable[[Event], None] | None:
    """Make ``sink`` receive this process's progress events; returns the previous sink."""
    global _sink
    previous, _sink = _sink, sink
    return previous


def get_sink() -> Callable[[Event], None] | None:
    return _sink


@contextmanager
def sink(new: Callable[[Event], None] | None) -> Iterator[None]:
    previous = set_sink(new)
    try:
        yield
    finally:
        set_sink(previous)


class _Task:
    def __init__(self, name: str, total: int | None) -> None:
        self.id = f"{os.getpid()}-{next(_ids)}"
        self.name, self.total = name, total
        self.t0 = time.perf_counter()
        self.loop_t0: float | None = None  # start of the first epoch of the current accounting
        self.done_before = 0  # epochs of finished loops (when the total spans several loops)
        self.loops = 0
        self.last_sent = self.t0
        self.phase: str | None = None  # the part of the work running now (:func:`set_phase`)
        self.last: tuple[int, int, str] | None = None  # the latest (done, total, unit), sent or not


def set_phase(text: str | None) -> None:
    """Name the part of the innermost task running now (``"method 'scrub'"``, ``"attack 'lira'"``):
    a heartbeat says it. No-op without a task."""
    if _tasks:
        _tasks[-1].phase = text


def _heartbeats() -> None:
    """A daemon thread's loop: every task of this process silent for HEARTBEAT seconds gets an event
    with ``"beat": True`` (its latest counts, elapsed time and phase). Reads the tasks only: what
    is trained cannot change."""
    while True:
        _wake.wait(_TICK)
        _wake.clear()
        now = time.perf_counter()
        for t in list(_tasks):
            if now - t.last_sent < HEARTBEAT:
                continue
            t.last_sent = now
            event: Event = {"id": t.id, "name": t.name, "elapsed": now - t.t0, "beat": True, "phase": t.phase}
            if t.last is not None:
                done, total, unit = t.last
                event.update({"done": done, "total": total, **({"unit": unit} if unit != "epoch" else {})})
            _emit(event)


def _start_heartbeats() -> None:
    global _ticker
    if _ticker is None or not _ticker.is_alive():
        _ticker = threading.Thread(target=_heartbeats, name="bench-heartbeat", daemon=True)
        _ticker.start()
    _wake.set()


@contextmanager
def task(name: str, total_epochs: int | None = None) -> Iterator[None]:
    """Report the epochs of the training loops run inside as the progress of ``name``.

    ``total_epochs``: the epochs of every loop inside together (the progress then spans them);
    unknown (None), each loop is reported on its own. Does nothing without a sink."""
    if _sink is None:
        yield
        return
    t = _Task(name, total_epochs)
    _tasks.append(t)
    _start_heartbeats()
    try:
        yield
    finally:
        _tasks.remove(t)
        _emit({"id": t.id, "name": t.name, "end": True})


def expect_epochs(total: int) -> None:
    """Tell the innermost task how many epochs its loops will run in all (SISA: shards x slices)."""
    if _tasks:
        t = _tasks[-1]
        t.total, t.done_before, t.loop_t0 = int(total), 0, None


def epoch(done: int, epochs: int, unit: str = "epoch") -> None:
    """Called by a training loop with ``done`` of its ``epochs`` finished (0 at its start). Work that
    is not counted in epochs names its ``unit`` ("example": Fisher's per-example gradients, "forget
    point": PRUNE's patches), shown instead of "epoch"."""
    if _sink is None or not _tasks:
        return
    t = _tasks[-1]
    now = time.perf_counter()
    if done == 0:
        t.loops += 1
        t.last = (t.done_before, max(t.total, t.done_before), unit) if t.total is not None else (0, int(epochs), unit)
        if t.total is None or t.loop_t0 is None:
            t.loop_t0 = now
            if t.total is None:
                t.done_before = 0
        return
    if t.loop_t0 is None:
        t.loop_t0 = now
    if t.total is not None:
        finished, total = t.done_before + done, max(t.total, t.done_before + done)
        if done == epochs:
            t.done_before += epochs
    else:
        finished, total = done, epochs
    last = finished >= total
    t.last = (finished, total, unit)
    if not last and now - t.last_sent < SEND_INTERVAL:
        return
    t.last_sent = now
    spent = now - t.loop_t0
    # a loop's number where epochs of several loops count on their own; another unit names itself
    name = t.name if t.total is not None or t.loops <= 1 or unit != "epoch" else f"{t.name} (loop {t.loops})"
    _emit({"id": t.id, "name": name, "done": finished, "total": total, "elapsed": now - t.t0,
           "left": spent / finished * (total - finished) if finished else None, **({"unit": unit} if unit != "epoch" else {})})


def epochs(n: int, unit: str = "epoch") -> Iterator[int]:
    """``range(n)`` for a method's own loop of ``n`` epochs (or other ``unit``s), each finished one
    reported with :func:`epoch` as the enclosing task's progress (a trial's, on the terminal or in
    the plain lines): only loops through ``bench.nn.training`` reported before, and a 40 s trial of
    l1-sparse printed nothing between its start and its end (found in review). A loop that stops
    early simply reports no more."""
    n = int(n)
    epoch(0, n, unit)
    for e in range(n):
        yield e
        epoch(e + 1, n, unit)


def _emit(event: Event) -> None:
    s = _sink
    if s is None:
        return
    try:
        s(event)
    except Exception:  # progress must never fail the work it reports on
        pass


class ProgressRelay:
    """A Ray actor's class (``bench.run.executor``): workers ``post`` events, the driver ``drain``s
    them. Here, in a module that imports nothing heavy, so the actor's process stays small."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def post(self, event: Event) -> None:
        self.events.append(event)

    def drain(self) -> list[Event]:
        out, self.events = self.events, []
        return out


def format_event(event: Event) -> str:
    left = event.get("left")
    left_text = "" if left is None else f", about {_duration(left)} left"
    counts = f"{event.get('unit', 'epoch')} {event['done']}/{event['total']}, " if event.get("total") else ""
    if event.get("beat"):  # a heartbeat of silent work
        where = f" in {event['phase']}" if event.get("phase") else ""
        return f"{event['name']}: still running{where}, {counts}{_duration(event['elapsed'])} elapsed"
    return f"{event['name']}: {counts}{_duration(event['elapsed'])} elapsed{left_text}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class ProgressReporter:
    """The driver's sink: a rich progress bar per running task on a terminal; when the output is
    piped (or ``plain``), a plain line per task at most every ``interval`` seconds (so short work
    prints nothing). Thread-safe: events arrive from the relay's thread too. ``close()`` removes
    the bars."""

    def __init__(self, console, quiet: bool = False, interval: float = 10.0, plain: bool | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.console, self.quiet, self.interval = console, quiet, interval
        self.plain = (not getattr(console, "is_terminal", False)) if plain is None else plain
        self.say = say or Printer(console, quiet)
        self.lock = threading.Lock()
        self.last_line: dict[str, float] = {}
        self.bars = None
        self.bar_ids: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        with self.lock:
            if self.plain:
                self._plain(event)
            else:
                self._bar(event)

    def _plain(self, event: Event) -> None:
        key = event["id"]
        now = time.perf_counter()
        if event.get("end"):
            self.last_line.pop(key, None)
            return
        if not event.get("beat") and event["done"] >= event["total"]:  # the work's own line says it ended (a worker's last event came
            return  # after "trained ... in 214.0s", "epoch 30/30 ... about 0.0s left"; scale audit)
        since = self.last_line.get(key)
        if event["elapsed"] >= self.interval if since is None else now - since >= self.interval:
            self.last_line[key] = now
            self.say(format_event(event))

    def _bar(self, event: Event) -> None:
        key = event["id"]
        if event.get("end"):
            if key in self.bar_ids and self.bars is not None:
                self.bars.remove_task(self.bar_ids.pop(key))
            return
        if self.bars is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
            from rich.table import Column

            # the task's own elapsed time and estimate, as the plain lines give them: rich's clock and
            # rate started when the driver saw the first event (a Ray worker's task about 10 s in),
            # and read 0:00:00 elapsed, 0:00:01 left halfway through (found in review); a long name
            # (a dataset's path) is cut, not the counts and the time left (scale audit, 80 columns)
            name = Column(no_wrap=True, overflow="ellipsis", max_width=max(16, self.console.width - 60))
            self.bars = Progress(TextColumn("{task.description}", table_column=name), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[unit]}s"),
                                 TextColumn("{task.fields[elapsed]}"), TextColumn("{task.fields[left]}"),
                                 console=self.console, transient=True)
            self.bars.start()
        fields = {"elapsed": _duration(event["elapsed"]) + " elapsed", "unit": event.get("unit", "epoch"),
                  "left": "" if event.get("left") is None else f"about {_duration(event['left'])} left"}
        if event.get("beat"):  # silent work: its clock moves (no counts yet: rich's bar without a total)
            fields["left"] = f"in {event['phase']}" if event.get("phase") else ""
            if key in self.bar_ids:
                fields.pop("unit")
                if event.get("phase") is None:
                    fields.pop("left")  # keep the estimate of its last epoch
        if key not in self.bar_ids:
            self.bar_ids[key] = self.bars.add_task(event["name"], total=event.get("total"), **fields)
        self.bars.update(self.bar_ids[key], completed=event.get("done", 0), total=event.get("total"),
                         description=event["name"], **fields)

    def close(self) -> None:
        with self.lock:
            if self.bars is not None:
                self.bars.stop()
                self.bars = None
                self.bar_ids.clear()
