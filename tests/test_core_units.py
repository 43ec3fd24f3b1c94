"""Unit tests of training, evaluation, the cache and the forget specs on real (small) data."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from bench.core.cache import ReferenceCache, cache_key, load_state, state_to_bytes
from bench.datasets.digits import Digits
from bench.eval.evaluation import EvalData, compare_to_references, evaluate_model, js_divergence
from bench.nn.nets import MLP
from bench.core.recipe import build_recipe
from bench.nn.training import accuracy, fit, set_threads, warm_up


@pytest.fixture(scope="module")
def digits():
    return Digits().load(None, False, None)


def _trained(digits, seed=0, epochs=30):
    set_threads(1)
    torch.manual_seed(seed)
    model = MLP(64, (256, 256), 10)
    return fit(model, digits.train_x, digits.train_y, build_recipe({"epochs": epochs}), seed=seed)


def test_digits_split_is_fixed_stratified_and_scaled(digits):
    assert digits.train_x.shape == (1437, 1, 8, 8) and digits.test_x.shape == (360, 1, 8, 8)
    assert float(digits.train_x.min()) >= 0.0 and float(digits.train_x.max()) <= 1.0
    again = Digits().load(None, False, None)
    assert torch.equal(again.test_y, digits.test_y)
    train_frac = np.bincount(digits.train_y.numpy()) / len(digits.train_y)
    test_frac = np.bincount(digits.test_y.numpy()) / len(digits.test_y)
    assert np.abs(train_frac - test_frac).max() < 0.01


@pytest.mark.slow
def test_original_model_reaches_95_percent_and_training_is_deterministic(digits):
    a = _trained(digits, seed=0)
    b = _trained(digits, seed=0)
    c = _trained(digits, seed=1)
    assert accuracy(a, digits.test_x, digits.test_y) >= 0.95
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.state_dict()["net.1.weight"], c.state_dict()["net.1.weight"])


def test_warm_up_leaves_the_model_untouched(digits):
    model = _trained(digits, epochs=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    warm_up(model, digits.train_x, digits.train_y)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_js_divergence_bounds_and_symmetry():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    js = js_divergence(p, q)
    assert math.isclose(float(js[0]), math.log(2), rel_tol=1e-6)  # disjoint supports: ln 2
    assert float(js[1]) == pytest.approx(0.0, abs=1e-12)
    assert torch.allclose(js, js_divergence(q, p))
    # hand-computed value of the third row
    m = [(0.9 + 0.2) / 2, (0.1 + 0.8) / 2]
    kl = lambda a, b: sum(x * math.log(x / y) for x, y in zip(a, b, strict=True))  # noqa: E731
    assert float(js[2]) == pytest.approx(0.5 * kl([0.9, 0.1], m) + 0.5 * kl([0.2, 0.8], m), rel=1e-9)


def test_gaps_and_avg_gap_are_relative_to_retrained_model(digits):
    original = _trained(digits, epochs=10)
    forget = torch.arange(0, 100)
    keep = torch.arange(100, len(digits.train_y))
    data = EvalData(digits.train_x[keep], digits.train_y[keep], digits.train_x[forget], digits.train_y[forget],
                    digits.test_x, digits.test_y)
    e_orig = evaluate_model(original, data)
    torch.manual_seed(3)
    bad = evaluate_model(MLP(64, (8,), 10), data)  # an untrained model
    m = compare_to_references(bad, e_orig, e_orig)
    for name in ("retain", "forget", "test"):
        assert m[f"{name}_gap"] == pytest.approx(abs(bad.accs[f"{name}_acc"] - e_orig.accs[f"{name}_acc"]))
    assert m["avg_gap"] == pytest.approx((m["retain_gap"] + m["forget_gap"] + m["test_gap"]) / 3)
    same = compare_to_references(e_orig, e_orig, e_orig)
    assert same["avg_gap"] == 0 and same["js_to_retrain_forget"] == pytest.approx(0, abs=1e-12)
    assert m["js_to_retrain_test"] > 0.1


def test_cache_roundtrip_and_key_sensitivity(tmp_path, digits):
    model = _trained(digits, epochs=1)
    cache = ReferenceCache(tmp_path)
    doc = {"kind": "original", "recipe": build_recipe().as_dict(), "seed": 0}
    key = cache_key(doc)
    assert key == cache_key(dict(reversed(list(doc.items()))))
    assert key != cache_key({**doc, "seed": 1})
    assert key != cache_key({**doc, "recipe": build_recipe({"epochs": 31}).as_dict()})
    assert cache.get(key) is None
    cache.put(key, state_to_bytes(model), {"train_seconds": 1.5})
    data, meta = cache.get(key)
    assert meta["train_seconds"] == 1.5
    fresh = MLP(64, (256, 256), 10)
    load_state(fresh, data)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True))
    # the safetensors layout (8-byte little-endian header length, JSON header), not a pickle
    import json
    import struct

    header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    assert set(header) - {"__metadata__"} == set(model.state_dict())


def test_load_state_is_strict(digits):
    model = _trained(digits, epochs=1)
    with pytest.raises(RuntimeError):
        load_state(MLP(64, (128,), 10), state_to_bytes(model))


# --- bench.eval.measure: peak memory of one call ------------------------------------------------------


def _transient_allocation(mb: int, hold: float = 0.0) -> None:
    import time

    block = np.ones(mb * 2**20 // 8)  # touched: resident
    time.sleep(hold)
    del block


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel-high-water-mark", "sampling-thread"])
def test_measure_sees_a_transient_peak_and_not_earlier_ones(kernel, monkeypatch):
    from bench.eval import measure as measure_mod

    if not kernel:  # the portable path: no clear_refs, a sampling thread
        monkeypatch.setattr(measure_mod, "_reset_peak_rss", lambda: False)
    elif not measure_mod._reset_peak_rss():
        pytest.skip("this kernel does not let a process reset its RSS high-water mark")
    _transient_allocation(300)  # a peak before the call must not count
    with measure_mod.measure("cpu") as m:
        _transient_allocation(120, hold=0.0 if kernel else 0.05)  # the sampler's period is 10 ms
    assert m.seconds > 0
    assert 100 <= m.memory["memory_delta_mb"] < 250, m.memory
    assert m.memory["peak_memory_mb"] >= m.memory["memory_delta_mb"]


def test_measure_freezes_survivors_only_between_an_executors_calls_and_still_collects_their_garbage():
    """The executors' trial loops freeze what survives each call's collection (the next collection then
    scans only newer objects: 0.2-0.5 s saved per trial); a cycle dropped by a trial is still
    collected by the next call, and an in-process caller's heap is handed back unfrozen."""
    import gc
    import weakref

    from bench.eval.measure import frozen_between_calls, measure

    class Node:
        pass

    assert gc.get_freeze_count() == 0
    with measure("cpu"):
        pass
    assert gc.get_freeze_count() == 0  # outside a trial loop: nothing frozen
    try:
        with frozen_between_calls():
            with measure("cpu"):
                a, b = Node(), Node()
                a.other, b.other = b, a  # a trial's cyclic garbage
                gone = weakref.ref(a)
            frozen = gc.get_freeze_count()
            assert frozen > 1000  # the survivors of the first call (torch, bench, pytest ...)
            del a, b
            assert gone() is not None  # only the collector frees a cycle
            with measure("cpu"):
                pass
            assert gone() is None  # allocated after the freeze: the next call collected it
            assert gc.get_freeze_count() >= frozen
            with frozen_between_calls():  # nested (a Ray trial inside a local run): the outer block thaws
                pass
            assert gc.get_freeze_count() >= frozen
        assert gc.get_freeze_count() == 0  # the outermost block handed everything back
        with frozen_between_calls(thaw=False):  # a Ray worker of bench's own keeps them frozen
            with measure("cpu"):
                pass
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_measure_counts_allocations_that_reuse_memory_earlier_work_freed():
    """Freed heap pages the allocator kept (earlier trials in the worker) would absorb the call's own
    allocations: ``memory_delta_mb`` read 0.07 MB for a call allocating 64 MB after 256 MB freed in
    64 KB blocks (below glibc's mmap threshold: heap, not handed back on free)."""
    import subprocess

    code = (
        "import torch\n"
        "from bench.eval.measure import measure\n"
        "junk = [torch.ones(16 * 1024) for _ in range(4000)]\n"
        "del junk\n"
        "with measure('cpu') as m:\n"
        "    keep = [torch.ones(16 * 1024) for _ in range(1000)]\n"
        "print(m.memory['memory_delta_mb'])\n"
    )  # a new process: this one's heap holds whatever the tests before it freed
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[-1]) > 50


def test_a_joined_cluster_runs_the_jobs_workers_with_one_malloc_arena(monkeypatch):
    """bench's own Ray passes MALLOC_ARENA_MAX=1 through its environment (tests/test_progress.py checks
    a worker); a joined cluster's workers get it through the job's runtime env (memory_delta_mb read
    under what a trial allocated in Tune's thread; metrics audit, 2026-12-07)."""
    import ray

    from bench.run import executor

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(executor, "_ray_init", lambda **kw: seen.update(kw))
    monkeypatch.setattr(executor.stops, "sigterm_as_interrupt", lambda: None)
    monkeypatch.setattr(executor.os, "environ", dict(executor.os.environ))  # Ray's settings it makes stay here
    executor.start_ray("10.0.0.1:6379", False, lambda *a, **k: None)
    assert seen["address"] == "10.0.0.1:6379" and seen["runtime_env"] == {"env_vars": {"MALLOC_ARENA_MAX": "1"}}


def test_concurrent_slots_counts_trials_that_fit_at_once(monkeypatch):
    import ray

    from bench.run.ref_tasks import concurrent_slots

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 1.0})
    assert concurrent_slots(1, 0) == 2
    assert concurrent_slots(0.5, 0) == 4
    assert concurrent_slots(1, 0.1) == 2  # CPUs bind first
    assert concurrent_slots(0.1, 0.1) == 10  # 1 / 0.1 in floating point is not 9
    assert concurrent_slots(4, 0) == 1  # never 0: Tune still needs a pending trial


def test_attack_columns_pick_each_attack_headline_in_order():
    from bench.track.report import attack_columns

    results = [{"forget_acc": 1.0, "loss_auc": 0.5, "loss_retain_auc": 0.6, "loss_tpr_at_1fpr": 0.01},
               {"mia_efficacy": 0.1, "avg_gap_mia": 0.0, "lira_auc": 0.52, "loss_auc": 0.4, "epsilon_score": 0.9}]
    assert attack_columns(results) == ("loss_auc", "mia_efficacy", "lira_auc", "epsilon_score")
    assert attack_columns([{"forget_acc": 1.0}]) == ()


def test_summary_cells_average_only_numbers_and_say_how_many():
    from bench.track.report import aggregate, fmt, to_csv, to_markdown

    nan = float("nan")
    assert fmt([0.2, nan]) == "0.200"  # one number: no standard deviation (it showed "0.200 ± 0.000")
    assert fmt([0.2, nan], of=2) == "0.200 (n=1)"
    assert fmt([0.2, 0.4], of=2) == "0.300 ± 0.141"
    assert fmt([nan, nan], of=2) == "-" and fmt([]) == "-"
    assert fmt([0.00042]) == "4.20e-04" and fmt([0.0004, 0.0006]) == "5.00e-04 ± 1.4e-04"  # not "0.000"
    assert fmt([0.0]) == "0.000" and fmt([123.45]) == "123.5"
    assert fmt([1e300]) == "1.00e+300" and fmt([-2e6, -4e6]) == "-3.00e+06 ± 1.4e+06"  # not hundreds of digits
    setting = ("digits", "mlp", "random:10%")
    rows = aggregate([(setting, "m", {"a": 0.2, "b": 1.0}), (setting, "m", {"a": nan, "b": 3.0}),
                      (setting, "m", {"b": 2.0})], keep=None)
    md = to_markdown(rows, columns=("a", "b"))
    assert "| 0.200 (n=1) | 2.000 ± 1.000 | 3 |" in md, md
    # the CSV: mean, no std, and over how many (the auditor's 2-of-3 mean looked complete)
    assert "0.2,,1,2.0,1.0,3,3,0,0" in to_csv(rows, columns=("a", "b"))


def test_torch_settings_are_read_and_restored_through_either_precision_api():
    """torch 2.14's legacy precision getters raise once the new per-backend API was used: reading
    them failed every later trial of the worker, well-behaved ones too."""
    from torch.overrides import _get_current_function_mode_stack

    from bench.nn.torch_state import restore_torch_globals, torch_globals

    saved = torch_globals()
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"  # the new API
        assert "float32 matmul precision" in restore_torch_globals(saved)
        assert torch_globals() == saved and torch.get_float32_matmul_precision() == "highest"
        torch.set_float32_matmul_precision("high")  # the legacy API
        assert "(highest -> high)" in restore_torch_globals(saved)
        assert torch_globals() == saved
        torch.set_default_device("meta")
        assert "default device changed (cpu -> meta)" in restore_torch_globals(saved)
        assert torch.empty(1).device == torch.device("cpu") and not _get_current_function_mode_stack()
    finally:
        restore_torch_globals(saved)


def test_a_rank_over_fewer_trials_than_finished_is_said():
    """An auditor deleted one seed's avg_gap: ga ranked 2 on 1 of 2 seeds, with only the cell's
    (n=1) to say so."""
    from bench.track.report import Row, partial_rank_notes, rank_rows

    setting = ("digits", "mlp", "random:10%")
    rows = [Row(setting, "original (reference)", {"avg_gap": [0.01]}, 2, 0),
            Row(setting, "ft", {"avg_gap": [0.02, 0.03]}, 2, 0),
            Row(setting, "ga", {"avg_gap": [0.01, float("nan")]}, 2, 0),
            Row(setting, "rl", {"avg_gap": []}, 2, 0)]
    ranks = rank_rows(rows, "avg_gap", maximize=False)
    assert ranks == [None, 2, 1, None]
    assert partial_rank_notes(rows, ranks, "avg_gap") == [
        "note: ga (digits/mlp/random:10%) is ranked 1 on avg_gap over 1 of its 2 finished trial(s); the others lack it"]


def test_batches_skip_only_a_leftover_batch_of_one():
    """A final batch of one left over from larger batches is skipped (BatchNorm cannot train on
    it); at batch size 1 every example is a batch: skipping those skipped every step, and a method
    at batch_size=1 returned its input untrained with exit 0 (found in review)."""
    from bench.nn.training import batches

    sizes = lambda n, b: [len(i) for i in batches(n, b, torch.Generator().manual_seed(0), "cpu")]  # noqa: E731
    assert sizes(5, 1) == [1] * 5
    assert sizes(9, 4) == [4, 4] and sizes(8, 4) == [4, 4] and sizes(10, 4) == [4, 4, 2]
    assert sizes(1, 4) == [1] and sizes(1, 1) == [1]  # a set of one point is still trained on
    assert sorted(torch.cat(list(batches(5, 1, torch.Generator().manual_seed(0), "cpu"))).tolist()) == list(range(5))


def test_probability_outputs_are_told_from_logits_and_log_probabilities():
    from bench.eval.evaluation import returns_probabilities

    logits = torch.nn.Linear(8, 10)(torch.randn(2, 8))
    assert not returns_probabilities(logits)
    assert not returns_probabilities(logits.log_softmax(1))  # softmax of these is softmax of the logits: fine
    assert returns_probabilities(logits.softmax(1)) and returns_probabilities(torch.tensor([[0.0, 1.0], [0.5, 0.5]]))
    assert not returns_probabilities(torch.tensor([[0, 1], [1, 0]]))  # not floating point
    assert not returns_probabilities(torch.tensor([[0.2, 0.2], [0.5, 0.5]]))  # a row that does not sum to 1


def test_a_recorded_non_finite_value_is_strict_json_and_reads_back_as_the_float():
    """experiment.json held a bare NaN (a plugin parameter given as nan), which strict JSON readers
    refuse (outputs audit, 2026-12-07); the string reads back, through -p's conversion, as the float."""
    import json
    import math

    from bench.core.keys import json_record
    from bench.run.validate import coerce_param

    text = json_record({"params": {"m": {"scale": float("nan"), "cap": float("-inf"), "k": [1.5, float("inf")]}},
                        "path": __import__("pathlib").Path("/x")})
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in {text}"))
    assert back == {"params": {"m": {"scale": "nan", "cap": "-inf", "k": [1.5, "inf"]}}, "path": "/x"}
    assert math.isnan(coerce_param("m", "scale", back["params"]["m"]["scale"], 0.1))
    assert coerce_param("m", "cap", back["params"]["m"]["cap"], 0.1) == float("-inf")
