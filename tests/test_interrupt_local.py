"""Ctrl-C while ``--executor local`` writes a finished trial: the record is completed first."""

from __future__ import annotations

import os
import signal

import pytest

from bench.core.stops import sigterm_as_interrupt
from bench.run import executor


@pytest.fixture
def bench_sigterm():
    """bench's SIGTERM (and SIGHUP) handler for the test, the previous ones put back after it."""
    before = sigterm_as_interrupt()
    yield
    for stop, handler in before.items():
        signal.signal(stop, handler)


@pytest.fixture
def default_sigint():
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _trials(n):
    class Spec:
        def __init__(self, i):
            self.trial_name = f"t{i}"
    return [Spec(i) for i in range(n)]


@pytest.mark.parametrize("fails", [False, True])
def test_one_ctrl_c_while_writing_finishes_the_record_then_stops(monkeypatch, default_sigint, fails):
    def fake_trial(spec, payload):
        if fails:
            raise ValueError("boom")
        return {"forget_acc": 0.5}

    monkeypatch.setattr(executor, "run_trial", fake_trial)
    monkeypatch.setattr(executor, "summary_line", lambda m: "")
    written, lines = [], []

    def log_trial(spec, metrics, error):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands in the middle of the write
        written.append((spec.trial_name, metrics, error is not None))  # the rest of the write still happens
        return "run-id"

    out = executor.run_local(_trials(3), None, log_trial, lambda *a, **k: lines.append(a[0]))
    assert written == [("t0", None if fails else {"forget_acc": 0.5}, fails)]  # t1, t2 never started
    assert out.interrupted
    assert (out.failures if fails else out.results).keys() == {0}
    assert any("writing finished trial t0 to the MLflow store first" in line for line in lines)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_aborts_the_write(monkeypatch, default_sigint):
    monkeypatch.setattr(executor, "run_trial", lambda spec, payload: {"forget_acc": 0.5})
    monkeypatch.setattr(executor, "summary_line", lambda m: "")
    written = []

    def log_trial(spec, metrics, error):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        written.append(spec.trial_name)

    with pytest.raises(KeyboardInterrupt):
        executor.run_local(_trials(2), None, log_trial, lambda *a, **k: None)
    assert written == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_of_a_background_job_waits_for_the_write_too(monkeypatch, bench_sigterm):
    """A shell starts background jobs with SIGINT ignored: SIGTERM (bench's handler turns it into a
    Ctrl-C) raised KeyboardInterrupt in the middle of the write."""
    monkeypatch.setattr(executor, "run_trial", lambda spec, payload: {"forget_acc": 0.5})
    monkeypatch.setattr(executor, "summary_line", lambda m: "")
    before_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    written = []

    def log_trial(spec, metrics, error):
        os.kill(os.getpid(), signal.SIGTERM)
        written.append(spec.trial_name)

    try:
        out = executor.run_local(_trials(2), None, log_trial, lambda *a, **k: None)
        assert written == ["t0"] and out.interrupted and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before_int)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # the lost interrupt is not printed
def test_a_ctrl_c_python_swallows_in_a_finalizer_still_stops_the_run(monkeypatch, default_sigint):
    """gc.collect() at a trial's start frees the previous trial's matplotlib figures; a Ctrl-C
    landing in one of their callbacks was printed as "Exception ignored in ..." and swallowed, and
    the local executor ran every remaining trial and exited 0 (found in review). Now the trial it
    landed in finishes and is recorded, and no other starts."""
    # as the SIGINT handler runs inside a finalizer: Python swallows what it raises
    ran, written, out = _stop_in_a_finalizer(monkeypatch, lambda: signal.getsignal(signal.SIGINT)(signal.SIGINT, None))
    assert ran == ["t0"] and written == ["t0"] and out.interrupted and out.results.keys() == {0}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _stop_in_a_finalizer(monkeypatch, stop):
    """``run_local`` of three stand-in trials; ``stop()`` runs in a finalizer during the first
    (``gc.collect()``, as at a trial's start). Returns (trials run, trials written, outcome)."""
    import gc

    class Finalized:
        def __del__(self):
            stop()

    ran, written = [], []

    def fake_trial(spec, payload):
        ran.append(spec.trial_name)
        if spec.trial_name == "t0":
            Finalized()
            gc.collect()
        return {"forget_acc": 0.5}

    monkeypatch.setattr(executor, "run_trial", fake_trial)
    monkeypatch.setattr(executor, "summary_line", lambda m: "")
    out = executor.run_local(_trials(3), None, lambda spec, m, e: written.append(spec.trial_name), lambda *a, **k: None)
    return ran, written, out


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # the lost interrupt is not printed
def test_a_sigterm_of_a_background_job_lost_in_a_finalizer_still_stops_the_run(monkeypatch, bench_sigterm):
    """A background job (SIGINT ignored) has no SIGINT handler to note the interrupt: a SIGTERM whose
    KeyboardInterrupt Python swallowed in a finalizer (gc.collect() at a trial's start freeing
    matplotlib's figures) let the local run go on to exit 0, with "Exception ignored in ..." and a
    traceback on the terminal (8 of 8 tries 0-20 ms after "running", found in review 2026-12-07)."""
    import time

    before_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # bench's SIGTERM handler runs inside the finalizer: Python swallows what it raises
        ran, written, out = _stop_in_a_finalizer(monkeypatch,
                                                 lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(0.5)))
    finally:
        signal.signal(signal.SIGINT, before_int)
    assert ran == ["t0"] and written == ["t0"] and out.interrupted and out.results.keys() == {0}
    from bench.core import stops

    assert stops.TERM_LISTENERS == []  # the run's list was taken out again


class _CtrlC:
    """A method during whose unlearn Ctrl-C is pressed."""

    name = "ctrl-c"
    description = "test method interrupted by Ctrl-C"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        raise KeyboardInterrupt


@pytest.mark.slow
def test_the_trial_an_interrupt_cuts_off_is_recorded_killed(workdir, shared_cache, boom_plugin, run_harness, trial_runs,
                                                            default_sigint):
    """--executor local recorded a trial only when it ended: the one a Ctrl-C cut off had no run, and
    bench compare showed neither it nor its method ("2 (1 killed)" promised; found in review)."""
    boom_plugin(_CtrlC())
    code, out = run_harness(workdir, methods="ft,ctrl-c", attacks="", recipe={"epochs": 3}, cache_dir=str(shared_cache))
    assert code == 130, out
    kids = trial_runs(workdir)
    assert kids.loc["ft", "status"] == "FINISHED" and kids.loc["ctrl-c", "status"] == "KILLED"
    assert kids.loc["ctrl-c", "params.seed"] == "0"  # its spec recorded, as a started trial's


def test_ray_shutdown_at_the_end_finishes_through_one_stop_and_a_second_stops_it(monkeypatch, bench_sigterm):
    """A SIGTERM 0.1-0.3 s after the summary cut Ray's shutdown short: Ray's agents were left running
    and the command ended with "Interrupted." and status 1, every trial recorded FINISHED (found in
    review). One stop now waits for the shutdown; a second still stops it."""
    import ray

    from bench.run.ray_processes import stop_ray

    shut = []

    def shutdown(stops):
        def run():
            for _ in range(stops):
                os.kill(os.getpid(), signal.SIGTERM)
            shut.append(stops)
        return run

    before_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        monkeypatch.setattr(ray, "shutdown", shutdown(1))
        stop_ray(clean=False)  # no exception: the shutdown ran to its end
        assert shut == [1]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers put back
        monkeypatch.setattr(ray, "shutdown", shutdown(2))
        with pytest.raises(KeyboardInterrupt):
            stop_ray(clean=False)
        assert shut == [1]  # the second stop cut it short
    finally:
        signal.signal(signal.SIGINT, before_int)


def test_a_second_stop_while_the_parent_run_is_marked_waits_for_the_marking(default_sigint, bench_sigterm):
    """The first Ctrl-C stopped the run; a second one 0.15 s later landed in the marking of the
    parent run and left it RUNNING until the next command reaped it (found in review, 2026-12-07).
    A stop there now waits for the marking (said in a line); one more still aborts it."""
    from bench.run.runner import close_run

    class Client:
        def __init__(self, stops):
            self.stops, self.marked = stops, []

        def search_runs(self, *a, **k):  # kill_unfinished_children: no child left running
            return []

        def set_terminated(self, run_id, status):
            for stop in self.stops:
                os.kill(os.getpid(), stop)
            self.marked.append((run_id, status))

    def closed(client, *args, **kwargs):
        try:
            return close_run(client, *args, **kwargs)
        except KeyboardInterrupt:  # (escaping, it would end the test session instead of failing the test)
            pytest.fail("one stop cut the marking of the parent run short")

    said = []
    client = Client([signal.SIGINT])
    assert closed(client, "0", "p1", "KILLED", False, say=lambda line, **k: said.append(line)) is None
    assert client.marked == [("p1", "KILLED")]
    assert said == ["interrupt: marking the parent run p1 KILLED in the MLflow store first (Ctrl-C again to abort it)"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    client = Client([signal.SIGTERM])  # a scheduler's kill (or a hang-up) the same way
    assert closed(client, "0", "p2", "FINISHED", False) is None and client.marked == [("p2", "FINISHED")]
    client = Client([signal.SIGINT, signal.SIGINT])
    with pytest.raises(KeyboardInterrupt):
        close_run(client, "0", "p3", "KILLED", False)
    assert client.marked == []
