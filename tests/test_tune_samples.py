"""The samples of `bench tune` are fixed by the search alone (what `--resume` finds again)."""

from __future__ import annotations

import dataclasses

import pytest

import bench

from bench.core.space import choice, loguniform, randint, uniform
from bench.core.spec import TrialSpec
from bench.run.tune_samples import kept_samples, sample_number, samples, search_key

SPACE = {"lr": loguniform(1e-5, 1e-1), "epochs": randint(1, 20), "w": uniform(0.0, 1.0), "mode": choice(["a", "b", "c"])}


def test_sample_k_does_not_depend_on_how_many_are_drawn():
    few = samples(SPACE, 4, seed=3, first=[{"lr": 0.005, "epochs": 5, "w": 0.5, "mode": "a"}])
    many = samples(SPACE, 40, seed=3, first=[{"lr": 0.005, "epochs": 5, "w": 0.5, "mode": "a"}])
    assert many[:4] == few and few[0] == {"lr": 0.005, "epochs": 5, "w": 0.5, "mode": "a"}
    assert samples(SPACE, 40, seed=4)[1:] != many[1:]  # the seed matters
    for s in many[1:]:
        assert 1e-5 <= s["lr"] < 1e-1 and 1 <= s["epochs"] < 20 and 0.0 <= s["w"] < 1.0 and s["mode"] in "abc"
        assert type(s["lr"]) is float and type(s["epochs"]) is int  # plain values: JSON, MLflow params
    assert len({s["lr"] for s in many}) == 40 and {s["mode"] for s in many} == {"a", "b", "c"}
    # log-uniform: about as many draws below the geometric middle as above it
    assert 10 <= sum(s["lr"] < 10 ** -3 for s in many[1:]) <= 29


def test_the_search_key_is_the_search_less_its_size():
    first = [{"lr": 0.005}]
    key = search_key("t", "avg_gap", "min", "fifo", 0, SPACE, first)
    assert key == search_key("t", "avg_gap", "min", "fifo", 0, dict(reversed(SPACE.items())), first)
    for other in (("u", "avg_gap", "min", "fifo", 0, SPACE, first), ("t", "test_acc", "max", "fifo", 0, SPACE, first),
                  ("t", "avg_gap", "min", "asha", 0, SPACE, first), ("t", "avg_gap", "min", "fifo", 1, SPACE, first),
                  ("t", "avg_gap", "min", "fifo", 0, {**SPACE, "lr": loguniform(1e-4, 1e-1)}, first),
                  ("t", "avg_gap", "min", "fifo", 0, SPACE, [])):
        assert search_key(*other) != key, other


def _spec(**params) -> TrialSpec:
    return TrialSpec(trial_name="ga seed=0", method="ga", method_plugin="", params=params, data_access=frozenset(), seed=0,
                     forget_seed=0, dataset="digits", data={}, model="mlp", forget="random:10%", forget_size=144,
                     group="g0", recipe={}, attacks=(), shadow_models=0, device="cpu", threads=1, versions={}, plugins={},
                     measured_with="code-1")


def test_resume_keeps_a_sample_only_when_it_measured_the_same_with_the_same_code():
    specs = [_spec(lr=0.1), _spec(lr=0.2), _spec(lr=0.3), _spec(lr=0.4)]
    finished = {0: (specs[0].trial_key, "code-1", {"avg_gap": 0.1}),
                1: (_spec(lr=0.25).trial_key, "code-1", {"avg_gap": 0.2}),  # another value drawn then
                2: (specs[2].trial_key, "code-0", {"avg_gap": 0.3}),  # other code
                7: ("x", "code-1", {"avg_gap": 0.0})}  # beyond this search's size
    assert kept_samples(finished, specs) == {0: {"avg_gap": 0.1}}
    unknown = [dataclasses.replace(s, measured_with="") for s in specs]  # no identity to compare: the key decides
    assert set(kept_samples(finished, unknown)) == {0, 2}


def test_sample_numbers_are_read_from_trial_names():
    assert sample_number("ga seed=0 sample 12") == 12
    assert sample_number("ga seed=0") is None and sample_number("ga seed=0 sample x") is None


def test_resume_with_asha_is_refused_before_any_work(tmp_path, invoke_bench):
    proc = invoke_bench("tune", "-m", "ft", "-n", "2", "--scheduler", "asha", "--resume", "--cache-dir", str(tmp_path / "c"),
                        "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path)
    assert proc.returncode == 2 and "--resume with --scheduler asha" in proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "c").exists()


def test_a_float_ranges_open_end_is_probed_just_below_it_in_few_digits():
    """The check before a search probes a float range just below its open end; a refusal printed
    that probe as lr=4.9999999950000005."""
    from bench.core.space import probes

    assert probes(loguniform(1e-5, 5.0)) == [1e-5, 4.999999995] and probes(uniform(0.0, 1.0)) == [0.0, 0.999999999]
    for domain in (loguniform(1e-9, 1e-8), uniform(-3.0, -2.5), uniform(1.0, 1.0 + 1e-12)):
        low, below = probes(domain)
        assert low <= below < float(domain.args[1]), domain


class _Pairs:
    """Two parameters that constrain each other: a x b above 6 is refused on every setting."""

    name = "pairs"
    description = "test method whose parameters constrain each other"
    requires = frozenset({"forget"})
    default_params = {"a": 1, "b": 1}

    def __init__(self) -> None:
        from bench import space

        self.search_space = {"a": space.randint(1, 5), "b": space.randint(1, 5)}

    def check_setting(self, params, setting):
        if params["a"] * params["b"] > 6:
            raise ValueError(f"a={params['a']} x b={params['b']}: at most 6")

    def unlearn(self, model, request, params, ctx):
        return model


class _PairsPlugin:
    @bench.hookimpl
    def register_methods(self, register):
        register(_Pairs())


@pytest.mark.slow
def test_samples_the_setting_refuses_are_said_and_not_run(tmp_path, invoke_bench, monkeypatch, plugged):
    """Each drawn sample is checked before the search; until 2026-12-06 only the space's corners
    were, and the refused samples failed one by one in Ray."""
    import bench.run.executor as executor

    ran = []

    def fake_run_ray(trials, payload, *, search, **kw):
        out = executor.Outcome()
        for i, (k, p) in enumerate(search["samples"]):
            ran.append(k)
            out.specs[i] = trials[0].with_params(p, f"{trials[0].trial_name} sample {k}")
            out.results[i] = {"avg_gap": 0.5 - 0.01 * k, "unlearn_seconds": 0.1}
        return out

    import bench.run.prepare as prepare
    from types import SimpleNamespace

    monkeypatch.setattr(executor, "run_ray", fake_run_ray)
    monkeypatch.setattr(executor, "start_ray", lambda *a, **k: False)
    # no references either: they train in Ray tasks under bench tune, which would start a Ray here
    monkeypatch.setattr(prepare, "prepare_references", lambda *a, **k: (SimpleNamespace(warnings=(), failures={}, attacks={}, groups={}), [], 0))
    with plugged(_PairsPlugin()):
        proc = invoke_bench("tune", "-m", "pairs", "-n", "12", "-r", "epochs=2", "--cache-dir", str(tmp_path / "c"),
                            "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "-O", str(tmp_path / "b.json"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    drawn = samples(_Pairs().search_space, 12, 0, [{"a": 1, "b": 1}])
    refused = [k for k, p in enumerate(drawn) if p["a"] * p["b"] > 6]
    assert refused and ran == [k for k in range(12) if k not in refused], (refused, ran)
    assert f"note: {len(refused)} of 12 sample(s) of this search are refused by the setting and are not run" in proc.stdout
    assert "a=" in proc.stdout.split("are not run (sample ", 1)[1].split(")", 1)[0]
    import sys

    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()  # nothing left for the next tests


def test_asha_never_stops_the_defaults_sample():
    """Under --scheduler asha the defaults (sample 0, defaults first) were stopped at their first
    rung by a draw 0.001 better there, and a sample worse than the defaults was saved, exit 0 (found
    in review): the scheduler still counts their reports but lets them run to their end."""
    from types import SimpleNamespace

    from bench.run.tune_samples import asha_keeping

    def decisions(keep):
        sched = asha_keeping(keep)
        sched.set_search_properties("avg_gap", "min")
        trials = [SimpleNamespace(trial_id=f"t{k}", config={"pick": {"number": k}}) for k in range(4)]
        for t in trials:
            sched.on_trial_add(None, t)
        # the defaults report last, and worst: plain ASHA stops them
        return {k: sched.on_trial_result(None, t, {"training_iteration": 1, "avg_gap": 0.5 - 0.1 * k if k else 0.9})
                for k, t in reversed(list(enumerate(trials)))}

    assert decisions(None) == {3: "CONTINUE", 2: "STOP", 1: "STOP", 0: "STOP"}  # --no-defaults-first: plain ASHA
    assert decisions(0) == {3: "CONTINUE", 2: "STOP", 1: "STOP", 0: "CONTINUE"}


def test_the_in_order_searcher_hands_out_each_config_once_in_order(tmp_path):
    """Tune's grid deep-copied its whole list of samples for every trial it made (`bench tune -n
    3000`: 39 s of the driver before the first sample, quadratic): the searcher hands Tune each config
    once, in order, then says it has finished; its checkpoint is JSON and restores where it was."""
    from ray.tune.search import SearchGenerator, Searcher

    from bench.run.tune_parts import in_order

    configs = [{"pick": {"number": k, "sample": {"lr": 0.1 * k}}} for k in range(5)]
    searcher = in_order(configs)
    assert searcher.set_search_properties("avg_gap", "min", {}) and searcher.metric == "avg_gap"
    assert [searcher.suggest(f"t{k}") for k in range(3)] == configs[:3]
    searcher.save(str(tmp_path / "state.json"))
    again = in_order([])
    again.restore(str(tmp_path / "state.json"))
    assert [again.suggest(f"t{k}") for k in range(3)] == [*configs[3:], Searcher.FINISHED]
    # through Tune's own generator: every config once, merged into the constant space, then no more
    generator = SearchGenerator(in_order(configs))
    generator.add_configurations({"x": {"run": lambda config: None, "config": {"objective": "avg_gap"}, "num_samples": 5}})
    made = []
    while (trial := generator.next_trial()) is not None:
        made.append(trial.config)
    assert made == [{"objective": "avg_gap", **c} for c in configs] and generator.is_finished()


@pytest.mark.slow  # (imports Ray Tune)
def test_a_sample_whose_end_tune_did_not_process_makes_the_search_interrupted():
    """A stop that reached Tune as its last sample reported: the sample's result was counted, its run
    left RUNNING, the search FINISHED with exit 0 (a hang-up during `bench tune`, found in review
    2026-12-07). A sample counts once Tune processed its end (complete or error)."""
    from types import SimpleNamespace

    from bench.run.executor import Outcome, settle
    from bench.run.progress import Progress

    out = Outcome()
    progress = Progress([_spec(lr=0.1)], {}, out, say=lambda *a, **k: None, total=3)
    trials = [SimpleNamespace(config={"trial": 0, "pick": {"number": k, "sample": {"lr": 0.1 * (k + 1)}}},
                              trial_id=str(k), error_file=None) for k in range(3)]
    for trial in trials:
        progress.on_trial_start(0, trials, trial)
        progress.on_trial_result(0, trials, trial, {"avg_gap": 0.1, "unlearn_seconds": 1.0})
    for trial in trials[:2]:  # the third's end never processed
        progress.on_trial_complete(0, trials, trial)
    settle(out, 3)
    assert out.interrupted and sorted(out.results) == [0, 1]
    whole = Outcome()
    whole.results, whole.ended = {0: {}, 1: {}}, {0, 1}
    assert not settle(whole, 2).interrupted and sorted(whole.results) == [0, 1]


def _fake_search(monkeypatch, ends):
    """``bench tune`` with Ray and the references faked: sample k ends as ``ends(k)`` says, a dict of
    metrics (a full result has unlearn_seconds), the string "fail", or None (never started, an
    interrupt); any None makes the search interrupted."""
    import bench.run.executor as executor
    import bench.run.prepare as prepare
    from types import SimpleNamespace

    def fake_run_ray(trials, payload, *, search, **kw):
        out = executor.Outcome()
        for i, (k, p) in enumerate(search["samples"]):
            end = ends(k)
            if end is None:
                out.interrupted = True
                continue
            out.specs[i] = trials[0].with_params(p, f"{trials[0].trial_name} sample {k}")
            if end in ("fail", "timeout"):
                out.failures[i] = ("Traceback ...\nValueError: boom" if end == "fail" else
                                   "bench.core.errors.BenchError: Trial t ran longer than --trial-timeout 1 s and was stopped")
            else:
                out.results[i] = end
        return out

    monkeypatch.setattr(executor, "run_ray", fake_run_ray)
    monkeypatch.setattr(executor, "start_ray", lambda *a, **k: False)
    monkeypatch.setattr(prepare, "prepare_references",
                        lambda *a, **k: (SimpleNamespace(warnings=(), failures={}, attacks={}, groups={}), [], 0))


FULL = {"avg_gap": 0.2, "unlearn_seconds": 0.1}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["all-fail", "defaults-fail", "defaults-timeout", "defaults-cut", "ties", "mixed",
                                  "only-defaults"])
def test_the_search_counts_how_its_samples_ended_and_says_what_its_best_is_worth(tmp_path, invoke_bench, monkeypatch,
                                                                                 case):
    """Found in review (2026-12-07): every sample failing left the parent FINISHED with no metrics and
    two contradicting lines; samples cut by an interrupt or failed were in no count; a search whose
    defaults' sample failed still promised a best never worse than them; a search whose samples all
    tied saved one without a word."""
    import mlflow

    ends = {"all-fail": lambda k: "fail",
            "defaults-fail": lambda k: "fail" if k == 0 else {**FULL, "avg_gap": 0.3 - 0.01 * k},
            "defaults-timeout": lambda k: "timeout" if k == 0 else {**FULL, "avg_gap": 0.3 - 0.01 * k},
            "defaults-cut": lambda k: None if k == 0 else {**FULL, "avg_gap": 0.3 - 0.01 * k},
            "ties": lambda k: FULL,
            "mixed": lambda k: [FULL, "fail", {"avg_gap": 0.01}, None, {**FULL, "avg_gap": 0.1}][k],
            "only-defaults": lambda k: FULL if k == 0 else None}[case]
    _fake_search(monkeypatch, ends)
    proc = invoke_bench("tune", "-m", "ga", "-n", "5", "--cache-dir", str(tmp_path / "c"), "--tracking-uri",
                        f"sqlite:///{tmp_path / 'm.db'}", "-O", str(tmp_path / "b.json"),
                        *(["--no-defaults-first"] if case == "ties" else []), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    parent = mlflow.search_runs(experiment_names=["unlearning-bench"]).iloc[0]
    counts = {k[len("metrics."):]: parent[k] for k in parent.index if k.startswith("metrics.samples_")}
    if case == "all-fail":
        assert proc.returncode == 1 and parent["status"] == "FAILED", out
        assert "5 of 5 sample(s) failed (their runs hold the tracebacks) and none finished: no best parameters" in out
        assert "chosen among the others" not in out and "no sample finished" not in out, out
        assert counts == {"samples_finished": 0, "samples_stopped_early": 0, "samples_failed": 5, "samples_refused": 0,
                          "samples_unfinished": 0}
        # its run id given to --params: it saved nothing (it said MLflow could not download an artifact; tune audit)
        again = invoke_bench("run", "-m", "ga", "--params", parent["run_id"], "--dry-run", "--tracking-uri",
                             f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path)
        assert again.returncode == 2 and "that search saved no best parameters (status FAILED, 0 sample(s) finished)" in \
            again.stdout + again.stderr, again.stdout + again.stderr
    elif case == "defaults-fail":
        assert proc.returncode == 0 and parent["status"] == "FINISHED", out
        assert "the defaults' sample (sample 0) failed (its run holds the traceback): the best saved was not compared" in out
        assert counts["samples_finished"] == 4 and counts["samples_failed"] == 1
    elif case == "defaults-timeout":  # the advice follows the cause (it was a longer --trial-timeout in every case)
        assert "the defaults' sample (sample 0) ran past --trial-timeout and was stopped" in out and "longer" in out, out
    elif case == "defaults-cut":
        assert proc.returncode == 130, out
        assert "the defaults' sample (sample 0) was cut off by the interrupt; the same command with --resume runs it" in out
        assert "(tagged bench.best_partial); the same command with --resume runs the rest." in out, out
    elif case == "ties":
        assert proc.returncode == 0, out
        assert "sample 0: avg_gap=0.2000" in out and "(5 samples tie at that value: the search cannot tell them apart, " \
               "the lowest-numbered is saved)" in out, out
        # the best was selected on this seed's sets, the test set among them (said nowhere before; tune audit)
        assert "the search selected on seed 0's forget, retain and test sets (--validation F keeps the test set out)" in out, out
    elif case == "only-defaults":  # the others were cut by the interrupt: "no sample beat them" claimed a comparison
        assert proc.returncode == 130 and "(the defaults: the only sample that finished)" in out, out
        assert "no sample beat them" not in out
        assert "did not run to its end" not in out  # no defaults' sample in this search
    else:  # sample 1 failed, sample 2 stopped early, sample 3 cut by the interrupt
        assert proc.returncode == 130 and parent["status"] == "KILLED", out
        assert counts == {"samples_finished": 2, "samples_stopped_early": 1, "samples_failed": 1, "samples_refused": 0,
                          "samples_unfinished": 2}
        assert "interrupted after 2 of 5 sample(s) finished" in out and "tie at" not in out, out
