"""``ctx.resolved``: the value a method's automatic parameter (0 = automatic) took, recorded as the
trial's param ``resolved.<name>`` (the end-to-end record: tests/test_all_methods.py)."""

from __future__ import annotations

import pytest
import torch

from bench.core.contracts import MethodContext
from bench.core.errors import BenchError
from bench.run.trial import add_method_outputs


def _ctx(**resolved) -> MethodContext:
    ctx = MethodContext(seed=0, device="cpu", new_model=lambda: torch.nn.Linear(2, 2))
    ctx.resolved.update(resolved)
    return ctx


def test_resolved_values_are_kept_per_parameter_and_each_distinct_value_once_in_order():
    resolved: dict = {}
    params = {"chunk_size": 0, "max_retain": 0, "lr": 0.1}
    for step in ({"chunk_size": 256, "max_retain": 40}, {"chunk_size": 256, "max_retain": 30},
                 {"max_retain": __import__("numpy").int64(40)}):  # NumPy's integer: the same text
        add_method_outputs("m", {}, _ctx(**step), params, resolved)
    assert resolved == {"chunk_size": ["256"], "max_retain": ["40", "30"]}


@pytest.mark.parametrize("key, value, said", [
    ("chunk", 256, r"ctx.resolved\['chunk'\], which is not one of its parameters \(chunk_size, lr\)"),
    ("chunk_size", [256], r"ctx.resolved\['chunk_size'\] = \[256\], a list; record a number, a string or a bool"),
    ("chunk_size", torch.tensor(3), r"ctx.resolved\['chunk_size'\] = tensor\(3\), a Tensor; record a number"),
])
def test_a_resolved_value_for_no_parameter_or_of_another_type_fails_the_trial(key, value, said):
    with pytest.raises(BenchError, match=rf"^Method 'm' set {said}"):
        add_method_outputs("m", {}, _ctx(**{key: value}), {"chunk_size": 0, "lr": 0.1}, {})


def test_direct_calls_record_what_the_automatic_parameters_took():
    """Fisher's and IU's chunks and IU's retain count, SSD's per-example chunks: what ran."""
    from bench.methods.fisher import FisherForgetting, auto_chunk
    from bench.methods.influence import InfluenceUnlearning
    from bench.methods.ssd import SelectiveSynapticDampening

    from bench.run.request import build_request

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    request = build_request(num_classes=3, kind="random", forget_indices=list(range(5)), forget_class=None,
                            forget=(x[:5], y[:5]), retain=(x[5:], y[5:]), access={"forget", "retain"}, bounds=None)
    fisher = FisherForgetting()
    ctx = _ctx()
    fisher.unlearn(model, request, dict(fisher.default_params), ctx)
    assert ctx.resolved == {"chunk_size": auto_chunk(model, 3)}
    ctx = _ctx()
    fisher.unlearn(model, request, {**fisher.default_params, "chunk_size": 7}, ctx)
    assert ctx.resolved == {}  # given, not automatic: params.chunk_size says it
    iu = InfluenceUnlearning()
    ctx = _ctx()
    iu.unlearn(model, request, dict(iu.default_params), ctx)
    assert set(ctx.resolved) == {"chunk_size", "max_retain"} and ctx.resolved["max_retain"] == ctx.metrics[
        "iu_retain_examples"]
    ssd = SelectiveSynapticDampening()
    ctx = _ctx()
    ssd.unlearn(model, request, {**ssd.default_params, "batch_size": 1}, ctx)
    assert ctx.resolved == {"chunk_size": auto_chunk(model, 1)}


def test_the_values_taken_do_not_split_a_runs_methods_into_settings():
    """bench compare read resolved.* as part of a trial's setting: iu (resolved.chunk_size=1024,
    resolved.max_retain=394) was ranked in a setting of its own, apart from the run's other methods."""
    from bench.track.compare.query import _setting_params

    assert _setting_params({"resolved.chunk_size": "1024", "resolved.max_retain": "394", "recipe.epochs": "30",
                            "params.lr": "0.1"}) == {"recipe.epochs": "30"}
