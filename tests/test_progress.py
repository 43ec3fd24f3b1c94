"""Per-epoch progress of long work (bench.core.console): events from the training loop, the
driver's reporter (plain lines when piped, a rich bar on a terminal), forwarding from Ray
workers, and that reporting never changes what is trained."""

from __future__ import annotations

import io
import os
import time

import pytest
import torch
from rich.console import Console

from bench.core import console
from bench.nn.training import train_epochs


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _train(model, x, y, epochs=5):
    return train_epochs(model, x, y, epochs=epochs, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.9,
                        weight_decay=0.0, schedule="cosine", seed=3)


def test_training_loop_reports_each_epoch_of_the_enclosing_task(monkeypatch):
    monkeypatch.setattr(console, "SEND_INTERVAL", 0.0)
    events = []
    x, y = _data()
    with console.sink(events.append):
        with console.task("reference digits/mlp", total_epochs=5):
            _train(_net(), x, y)
    steps = [e for e in events if not e.get("end")]
    assert [e["done"] for e in steps] == [1, 2, 3, 4, 5]
    assert all(e["total"] == 5 and e["name"] == "reference digits/mlp" and e["elapsed"] >= 0 for e in steps)
    assert steps[-1]["left"] == 0 and all(e["left"] is not None for e in steps)
    assert events[-1] == {"id": steps[0]["id"], "name": "reference digits/mlp", "end": True}
    assert console.get_sink() is None


def test_a_total_spans_several_loops_and_unknown_totals_count_each_loop(monkeypatch):
    monkeypatch.setattr(console, "SEND_INTERVAL", 0.0)
    x, y = _data()
    events = []
    with console.sink(events.append), console.task("sisa original"):
        console.expect_epochs(6)
        _train(_net(), x, y, epochs=3)
        _train(_net(), x, y, epochs=3)
    assert [(e["done"], e["total"]) for e in events if not e.get("end")] == [(i, 6) for i in range(1, 7)]
    events.clear()
    with console.sink(events.append), console.task("a trial"):
        _train(_net(), x, y, epochs=2)
        _train(_net(), x, y, epochs=2)
    assert [(e["name"], e["done"], e["total"]) for e in events if not e.get("end")] == [
        ("a trial", 1, 2), ("a trial", 2, 2), ("a trial (loop 2)", 1, 2), ("a trial (loop 2)", 2, 2)]


def test_events_are_throttled_but_the_last_epoch_is_always_sent():
    x, y = _data()
    events = []
    with console.sink(events.append), console.task("t", total_epochs=20):
        _train(_net(), x, y, epochs=20)
    steps = [e for e in events if not e.get("end")]
    assert steps[-1]["done"] == 20 and len(steps) < 20


def test_reporting_changes_nothing_trained_and_without_a_sink_nothing_happens(monkeypatch):
    monkeypatch.setattr(console, "SEND_INTERVAL", 0.0)
    x, y = _data()
    plain = _train(_net(), x, y)
    with console.task("no sink"):  # a no-op: nobody listens
        again = _train(_net(), x, y)
    with console.sink(lambda e: None), console.task("reported", 5):
        reported = _train(_net(), x, y)
    for a, b, c in zip(plain.parameters(), again.parameters(), reported.parameters()):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_a_failing_sink_does_not_fail_the_training(monkeypatch):
    monkeypatch.setattr(console, "SEND_INTERVAL", 0.0)

    def broken(event):
        raise RuntimeError("terminal gone")

    x, y = _data()
    with console.sink(broken), console.task("t", 5):
        _train(_net(), x, y)


def test_plain_lines_when_piped_every_interval_with_elapsed_and_left():
    out = io.StringIO()
    rep = console.ProgressReporter(Console(file=out, width=200), interval=0.0)
    assert rep.plain
    for done in (1, 2, 3):
        rep({"id": "a", "name": "retrained digits/mlp seed=0", "done": done, "total": 3, "elapsed": 2.0 * done,
             "left": 2.0 * (3 - done)})
    rep({"id": "a", "name": "retrained digits/mlp seed=0", "end": True})
    rep.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # not the last epoch's: the work's own line says it ended (it came after it)
    assert "retrained digits/mlp seed=0: epoch 1/3, 2.0s elapsed, about 4.0s left" in lines[0]
    assert "epoch 2/3, 4.0s elapsed, about 2.0s left" in lines[1]
    out.truncate(0)
    out.seek(0)
    rep = console.ProgressReporter(Console(file=out, width=200), interval=5.0)
    rep({"id": "b", "name": "slow", "done": 1, "total": 30, "elapsed": 6.0, "left": 170.0})  # the first after 5 s
    for done in range(2, 31):  # then at most one line per 5 s of the driver's clock
        rep({"id": "b", "name": "slow", "done": done, "total": 30, "elapsed": 6.0 + done, "left": 1.0})
    assert len(out.getvalue().splitlines()) == 1


def test_short_work_prints_no_plain_line_and_quiet_prints_none():
    out = io.StringIO()
    rep = console.ProgressReporter(Console(file=out, width=200), interval=10.0)
    rep({"id": "a", "name": "ft seed=0", "done": 1, "total": 2, "elapsed": 0.4, "left": 0.4})
    rep({"id": "a", "name": "ft seed=0", "done": 2, "total": 2, "elapsed": 0.8, "left": 0.0})
    quiet = console.ProgressReporter(Console(file=out, width=200), quiet=True, interval=0.0)
    quiet({"id": "b", "name": "x", "done": 1, "total": 2, "elapsed": 50.0, "left": 50.0})
    assert out.getvalue() == ""
    rep({"id": "c", "name": "long", "done": 1, "total": 9, "elapsed": 75.0, "left": 600.0})
    assert "long: epoch 1/9, 1m15s elapsed, about 10m00s left" in out.getvalue()


def test_rich_bar_on_a_terminal():
    out = io.StringIO()
    rep = console.ProgressReporter(Console(file=out, force_terminal=True, width=120), interval=0.0)
    assert not rep.plain
    for done in (1, 2):
        rep({"id": "a", "name": "original digits/mlp seed=0", "done": done, "total": 4, "elapsed": 12.5 * done,
             "left": 12.5 * (4 - done)})
    rep.bars.refresh()
    rep.close()
    # the task's own times (a Ray worker's, forwarded): rich's clock read 0:00:00 elapsed, 0:00:01 left
    # halfway, having started at the driver's first event (found in review)
    assert "original digits/mlp seed=0" in out.getvalue()
    assert "25.0s elapsed" in out.getvalue() and "about 25.0s left" in out.getvalue(), out.getvalue()


def test_local_executor_reports_reference_training(tmp_path, monkeypatch):
    """A reference trained in process reports through the driver's sink, named as the job."""
    from bench.run import ref_tasks

    monkeypatch.setattr(console, "SEND_INTERVAL", 0.0)

    class Job:  # the RefJob interface train_job uses
        recipe = type("R", (), {"epochs": 3})()

        def describe(self):
            return "original toy"

        def run(self):
            x, y = _data()
            _train(_net(), x, y, epochs=3)
            return b"", 0.0

    events = []
    with console.sink(events.append):
        ref_tasks.train_many_local([Job()])
    steps = [e for e in events if not e.get("end")]
    assert [e["done"] for e in steps] == [1, 2, 3] and steps[0]["name"] == "original toy"


@pytest.mark.slow
def test_ray_workers_forward_progress_to_the_driver(monkeypatch):
    ray = pytest.importorskip("ray")
    from bench.run import executor, forward as fwd

    monkeypatch.setattr(fwd, "RELAY_AFTER", 0.0)
    started = executor.start_ray(None, False, lambda *a, **k: None, num_cpus=1)
    try:
        @ray.remote(num_cpus=1)
        def work(spec):
            from bench.core import console as c

            c.SEND_INTERVAL = 0.0
            with fwd.in_worker_progress(spec), c.task("remote job", 4):
                x, y = _data()
                _train(_net(), x, y, epochs=4)
            c.HEARTBEAT, c._TICK = 0.3, 0.05
            with fwd.in_worker_progress(spec), c.task("silent job"):  # its heartbeat reaches the driver too
                time.sleep(1.0)
            return os.environ.get("MALLOC_ARENA_MAX")

        events = []
        with console.sink(events.append):
            with fwd.ForwardProgress() as forward:
                assert forward.sink_spec() is not None
                # one malloc arena in every worker of bench's Ray: a trial's memory_delta_mb read under
                # what it allocated in Tune's trial thread (bench.run.executor.WORKER_ENV_VARS)
                assert ray.get(work.remote(forward.sink_spec())) == "1"
                assert "MALLOC_ARENA_MAX" not in os.environ  # the driver's own environment is left as it was
                deadline = time.time() + 20  # the worker's posts reach the relay on their own
                while sum(bool(e.get("end")) for e in events) < 2 and time.time() < deadline:
                    time.sleep(0.1)
        steps = [e for e in events if not e.get("end") and e["name"] == "remote job"]
        assert [e["done"] for e in steps] == [1, 2, 3, 4], events
        assert steps[0]["name"] == "remote job" and events[-1].get("end")
        assert any(e.get("beat") and e["name"] == "silent job" for e in events), events
        with pytest.raises(ValueError):  # the relay is gone with the run's Ray work
            ray.get_actor(forward.name, namespace=forward.namespace)
    finally:
        if started:
            ray.shutdown()


def test_shadow_models_report_their_epochs(tmp_path, monkeypatch):
    """The attacks' shadows are trained by the driver before the trials (minutes on large data):
    their epochs are reported as one task, stacked (one loop for all) or one after another (the
    progress spans every model)."""
    import numpy as np

    from bench.core.cache import ReferenceCache
    from bench.core.recipe import Recipe
    from bench.datasets.digits import Digits
    from bench.eval.shadows import ensure_shadow_set, train_models
    from bench.nn.models import MLPModel

    monkeypatch.setattr(console, "SEND_INTERVAL", 0.0)
    splits = Digits().load(None, False, None)
    events = []
    with console.sink(events.append):
        ensure_shadow_set("shadows", 2, model_obj=MLPModel(), arg="16", splits=splits, recipe=Recipe(epochs=3),
                          group_seed=0, base_doc={"dataset": "digits", "model": "mlp:16", "data_sha256": "0" * 64},
                          forget_idx=np.arange(10), device="cpu", cache=ReferenceCache(tmp_path),
                          say=lambda *a, **k: None, versions={})
    steps = [(e["name"], e["done"], e["total"]) for e in events if not e.get("end")]
    assert steps == [("2 shadows for digits/mlp:16", d, 3) for d in (1, 2, 3)], steps

    events.clear()
    x, y = splits.train_x[:200], splits.train_y[:200]
    with console.sink(events.append), console.task("two in turn"):
        train_models(lambda s: MLPModel().create(10, (64,), "16"), x, y, [np.arange(100), np.arange(100, 200)],
                     [1, 2], Recipe(epochs=2), vectorize=False)
    assert [(e["done"], e["total"]) for e in events if not e.get("end")] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_methods_with_their_own_loops_report_their_epochs(monkeypatch):
    """Only loops through bench.nn.training reported: a 40 s l1-sparse trial printed nothing between
    its start and its end, as did ga, rl, salun, scrub, cf-k, bad-teacher, l2ul and boundary (found
    in review); SISA's unlearning reported each shard's retraining as its own loop, the time left a
    loop's."""
    import copy

    from bench.core.plugins import get_registry
    from bench.testing.calls import _ctx, _request
    from bench.testing.toy import toy_setting

    monkeypatch.setattr(console, "SEND_INTERVAL", 0.0)
    setting = toy_setting()
    registry = get_registry()
    for name, params in (("l1-sparse", {"epochs": 3}), ("rl", {"epochs": 2}), ("ga", {"epochs": 2}),
                         ("scrub", {"epochs": 2}), ("bad-teacher", {"epochs": 2})):
        method = registry.get("method", name)
        access = frozenset(method.requires)
        merged = {**method.default_params, **params}
        events = []
        with console.sink(events.append), console.task(f"{name} seed=0"):
            method.unlearn(setting.original_copy(), _request(setting, "class", access), copy.deepcopy(merged),
                           _ctx(setting, access))
        steps = [(e["done"], e["total"]) for e in events if not e.get("end")]
        assert steps and steps[-1][1] == params["epochs"] and steps[0][0] == 1, (name, steps)
    # SISA: one total over every retrained shard's slices
    from bench.testing.calls import _original_copy

    sisa = registry.get("method", "sisa")
    access = frozenset(sisa.requires)
    params = {**sisa.default_params, "shards": 3, "slices": 2, "epochs": 4}
    model = _original_copy(sisa, setting, params)
    events = []
    with console.sink(events.append), console.task("sisa seed=0"):
        sisa.unlearn(model, _request(setting, "class", access), params, _ctx(setting, access))
    steps = [e for e in events if not e.get("end")]
    assert {e["name"] for e in steps} == {"sisa seed=0"} and steps[-1]["done"] == steps[-1]["total"], steps[-3:]


def test_piped_lines_are_never_wrapped():
    """Piped, the console is 200 columns wide: the results line's path and the command to reuse the
    best parameters wrapped onto a line without the time prefix (found in review)."""
    out = io.StringIO()
    say = console.Printer(Console(file=out, width=200))
    say("best parameters written to " + "/very/deep" * 30 + "/best.json; reuse them with: bench run --params x.json")
    assert out.getvalue().count("\n") == 1 and out.getvalue().rstrip().endswith("--params x.json")



@pytest.mark.slow  # four methods' calls (3.5 s): full suite only, the quick loop stays under 2 min
def test_work_not_counted_in_epochs_reports_its_own_unit(monkeypatch):
    """Fisher's per-example gradients (a day per trial for resnet18-cifar on CIFAR-10), IU's and SSD's,
    and PRUNE's patches (hours at 2,000 forget points) printed nothing while they ran (scale audit,
    2026-12-07): they report examples and forget points, shown as such, the bar's name cut on a
    narrow terminal before its counts."""
    import copy

    from bench.core.plugins import get_registry
    from bench.testing.calls import _ctx, _request
    from bench.testing.toy import toy_setting

    monkeypatch.setattr(console, "SEND_INTERVAL", 0.0)
    setting = toy_setting()
    registry = get_registry()
    for name, params, unit in (("fisher", {"chunk_size": 7}, "example"), ("iu", {"chunk_size": 7}, "example"),
                               ("ssd", {"batch_size": 1, "chunk_size": 7}, "example"), ("prune", {}, "forget point")):
        method = registry.get("method", name)
        access = frozenset(method.requires)
        events = []
        with console.sink(events.append), console.task(f"{name} seed=0"):
            method.unlearn(setting.original_copy(), _request(setting, "class", access),
                           copy.deepcopy({**method.default_params, **params}), _ctx(setting, access))
        steps = [e for e in events if not e.get("end")]
        assert steps and {e.get("unit") for e in steps} == {unit}, (name, steps[:3])
        assert all(0 < e["done"] <= e["total"] for e in steps) and steps[-1]["done"] == steps[-1]["total"], (name, steps)
    line = console.format_event({**steps[-1], "elapsed": 3.0, "left": 0.0})
    assert line.startswith(f"prune seed=0: forget point {steps[-1]['total']}/{steps[-1]['total']}, 3.0s elapsed"), line
    out = io.StringIO()
    rep = console.ProgressReporter(Console(file=out, force_terminal=True, width=80, color_system=None), interval=0.0)
    rep({"id": "a", "name": "original imagefolder:/work/audit/scale/data/img/mlp seed=0", "done": 3, "total": 30,
         "elapsed": 21.6, "left": 152.0, "unit": "example"})
    rep.bars.refresh()
    rep.close()
    assert "3/30 examples" in out.getvalue() and "about 2m32s left" in out.getvalue(), out.getvalue()


def test_trials_waiting_for_a_shared_clusters_resources_are_said(monkeypatch):
    """A run behind another job's trials on a shared `ray start` cluster printed nothing for as long
    as they held its CPUs (29 s; concurrency audit, 2026-12-07)."""
    from types import SimpleNamespace

    import bench.run.progress as progress

    clock = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    lines = []
    p = progress.Progress([], {}, SimpleNamespace(), lambda line, always=False: lines.append(line))
    waiting = [SimpleNamespace(status="PENDING"), SimpleNamespace(status="PENDING")]
    for t in (110.0, 129.0):  # under WAIT_NOTE: actors may be starting
        clock[0] = t
        p.on_step_begin(0, waiting)
    assert lines == []
    clock[0] = 131.0
    p.on_step_begin(0, waiting)
    assert lines == ["waiting: 2 trial(s) pending, none running for 31s (on a shared Ray cluster, other jobs' trials "
                     "may hold its CPUs or GPUs)"]
    clock[0] = 150.0
    p.on_step_begin(0, waiting)
    assert len(lines) == 1  # once a minute
    clock[0] = 160.0
    p.on_step_begin(0, [SimpleNamespace(status="RUNNING"), waiting[0]])  # one runs: not waiting
    clock[0] = 185.0
    p.on_step_begin(0, waiting)
    assert len(lines) == 1  # 25 s idle since the running one


@pytest.mark.slow  # runs the harness
def test_a_trials_attacks_report_their_progress(workdir, shared_cache, run_harness, monkeypatch):
    """After the method's last epoch a trial's attacks ran silent: 25-65 s a trial at 20,000 images,
    svc's fits 45 s on CIFAR-10 (scale audit, 2026-12-07)."""
    calls = []
    real = console.epoch
    monkeypatch.setattr(console, "epoch", lambda done, total, unit="epoch": (calls.append((done, total, unit)),
                                                                            real(done, total, unit)))
    code, out = run_harness(workdir, methods="ft", attacks="loss,entropy,svc", recipe={"epochs": 5},
                            cache_dir=str(shared_cache))
    assert code == 0, out
    assert [c for c in calls if c[2] == "attack"] == [(0, 3, "attack"), (1, 3, "attack"), (2, 3, "attack")], calls
    line = console.format_event({"id": "t", "name": "ft seed=0", "done": 2, "total": 3, "elapsed": 40.0, "left": 20.0,
                                 "unit": "attack"})
    assert line == "ft seed=0: attack 2/3, 40.0s elapsed, about 20.0s left"


def test_silent_work_gets_a_heartbeat_with_its_phase_and_counts(monkeypatch):
    """An epoch of SCRUB on 20,000 CIFAR-sized images under Ray printed nothing for 52-78 s, a trial's
    evaluation nothing at all (scale audit, 2026-12-07): a task silent for HEARTBEAT seconds says it
    is still running, in which part, at which count."""
    from bench.run.deadline import phase

    monkeypatch.setattr(console, "HEARTBEAT", 0.3)
    monkeypatch.setattr(console, "_TICK", 0.05)
    monkeypatch.setattr(console, "SEND_INTERVAL", 0.0)
    events = []
    with console.sink(events.append), console.task("scrub seed=0"):
        with phase("method 'scrub'"):
            time.sleep(0.5)
            console.epoch(0, 10)
            time.sleep(0.5)
            console.epoch(1, 10)
            time.sleep(0.5)
        time.sleep(0.5)
    beats = [e for e in events if e.get("beat")]
    assert beats[0]["phase"] == "method 'scrub'" and "total" not in beats[0] and beats[0]["elapsed"] >= 0.3, beats
    counted = [e for e in beats if e.get("total")]
    assert counted[0]["done"] == 0 and counted[0]["total"] == 10  # the first epoch running
    counted = [e for e in counted if e["done"]]
    assert counted and counted[0]["done"] == 1 and counted[0]["total"] == 10 and counted[0]["phase"] == "method 'scrub'"
    assert beats[-1]["phase"] is None  # the phase ended with its block
    assert events[-1].get("end")
    n = len(events)
    time.sleep(0.4)
    assert len(events) == n  # nothing after the task's end
    assert console.format_event(beats[0] | {"elapsed": 45.0}) == "scrub seed=0: still running in method 'scrub', 45.0s elapsed"
    assert console.format_event(counted[0] | {"elapsed": 75.0}) == (
        "scrub seed=0: still running in method 'scrub', epoch 1/10, 1m15s elapsed")
    out = io.StringIO()  # piped: printed as a line; on a terminal: the bar's clock moves
    console.ProgressReporter(Console(file=out, width=200), interval=0.0)(counted[0] | {"elapsed": 75.0})
    assert "still running in method 'scrub', epoch 1/10, 1m15s elapsed" in out.getvalue()
    out = io.StringIO()
    rep = console.ProgressReporter(Console(file=out, force_terminal=True, width=120, color_system=None), interval=0.0)
    rep(beats[0] | {"elapsed": 45.0})
    rep.bars.refresh()
    rep.close()
    assert "45.0s elapsed" in out.getvalue() and "in method 'scrub'" in out.getvalue(), out.getvalue()


@pytest.mark.slow  # runs the harness
def test_a_trials_slow_evaluation_is_said(workdir, shared_cache, run_harness, monkeypatch):
    """The evaluation of the unlearned model is a phase of its own: its heartbeat and a timeout name it."""
    import functools

    import bench.run.runner as runner
    import bench.run.trial as trial

    monkeypatch.setattr(console, "HEARTBEAT", 0.3)
    monkeypatch.setattr(console, "_TICK", 0.05)
    monkeypatch.setattr(runner, "ProgressReporter", functools.partial(console.ProgressReporter, interval=0.0))
    import bench.run.payload as payload

    real = trial.evaluate_model
    monkeypatch.setattr(trial, "evaluate_model", lambda *a: (time.sleep(0.8), real(*a))[1])
    steps = payload.group_steps  # the references' evaluation before the first trial: 24 s silent at 20,000 images
    monkeypatch.setattr(payload, "group_steps", lambda *a: (time.sleep(0.8), steps(*a))[1])
    code, out = run_harness(workdir, methods="ft", attacks="", recipe={"epochs": 5}, cache_dir=str(shared_cache))
    assert code == 0, out
    assert "ft seed=0: still running in the evaluation of the unlearned model" in out, out
    assert "evaluating the references of 1 setting(s) x seed(s): still running, group 0/1" in out, out
