"""``bench run --save-models``: each trial keeps the model it measured, which loads back
(``bench.run.saved_models``) and gives the recorded numbers again."""

from __future__ import annotations

import pytest
import torch

import bench
from bench.core.errors import BenchError


class _Wrapped:
    """Returns its input inside another module: other parameter names than the plain model."""

    name = "wrapped"
    description = "test method returning its model wrapped in a Sequential"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):
        with torch.no_grad():
            next(model.parameters()).flatten()[0] += 1.0
        return torch.nn.Sequential(model)


class _Plugin:
    @bench.hookimpl
    def register_methods(self, register):
        register(_Wrapped())


@pytest.mark.slow
def test_saved_models_load_back_and_give_the_recorded_numbers(workdir, shared_cache, run_harness, trial_runs, plugged):
    from bench.core.plugins import get_registry
    from bench.run.saved_models import load_trial_model, read_model_file

    store = f"sqlite:///{workdir / 'mlflow.db'}"
    with plugged(_Plugin()):
        code, out = run_harness(workdir, methods="ga,wrapped", attacks="", recipe={"epochs": 5}, save_models=True,
                                cache_dir=str(shared_cache))
        assert code == 0, out
        runs = trial_runs(workdir)
        model = load_trial_model(runs.loc["ga", "run_id"], store)
        splits = get_registry().get("dataset", "digits").load(str(workdir), False)
        with torch.no_grad():
            acc = float((model(splits.test_x).argmax(1) == splits.test_y).float().mean())
        assert acc == runs.loc["ga", "metrics.test_acc"]  # the model measured, bit for bit
        assert not model.training
        # the references it was compared with: their cache keys are recorded, the entries are there
        # (a reader matched them by bit-equality with a retrain trial; metrics audit, 2026-12-07)
        import json

        from bench.core.forget import INDICES_ARTIFACT
        from bench.core.keys import sha256_bytes

        for kind in ("original", "retrain"):
            key = runs.loc["ga", f"params.references.{kind}"]
            meta = json.loads((shared_cache / f"{key}.json").read_text())["document"]
            assert meta["kind"] == kind and (shared_cache / f"{key}.safetensors").is_file(), meta
        import mlflow

        text = mlflow.artifacts.load_text(f"runs:/{runs.loc['ga', 'run_id']}/{INDICES_ARTIFACT}")
        idx = [int(line) for line in text.splitlines() if not line.startswith("#")]
        import numpy as np

        assert meta["forget_sha256"] == sha256_bytes(np.asarray(sorted(idx), np.int64).tobytes())

        with pytest.raises(BenchError, match=r"the model method 'wrapped' returned is not a plain 'mlp' .*load_file") as info:
            load_trial_model(runs.loc["wrapped", "run_id"], store)
        # it names the artifact and how to fetch it, not the temporary download deleted on return
        assert "load_file('" not in str(info.value) and "download_artifacts(run_id=" in str(info.value), str(info.value)
        import mlflow

        path = mlflow.tracking.MlflowClient(store).download_artifacts(runs.loc["wrapped", "run_id"], "model.safetensors",
                                                                       str(workdir))
        state, meta = read_model_file(path)
        assert set(state) == {"0.net.1.weight", "0.net.1.bias", "0.net.3.weight", "0.net.3.bias", "0.net.5.weight",
                              "0.net.5.bias"}
        assert meta["method"] == "wrapped" and meta["input_shape"] == "1,8,8" and meta["num_classes"] == "10"
        assert meta["trial_key"] == runs.loc["wrapped", "tags.bench.trial_key"]


@pytest.mark.slow
def test_prune_and_sisa_models_load_back_as_measured(workdir, shared_cache, run_harness, trial_runs):
    """The main job's methods return other architectures (PRUNE's patched network, SISA's ensemble):
    their saved files carry what rebuilds them (``saved_header``) and load back through the method's
    ``load_saved``, giving the recorded accuracies bit for bit (they were refused before)."""
    import json

    import mlflow

    from bench.core.plugins import get_registry
    from bench.methods.prune.modules import PatchedModel
    from bench.methods.sisa_ensemble import SisaEnsemble
    from bench.run.saved_models import load_model, load_trial_model, read_model_file

    store = f"sqlite:///{workdir / 'mlflow.db'}"
    code, out = run_harness(workdir, methods="prune,sisa", attacks="", recipe={"epochs": 5}, save_models=True,
                            params={"sisa": {"weighting": "proportional", "aggregation": "softmax"}},
                            cache_dir=str(shared_cache))
    assert code == 0, out
    runs = trial_runs(workdir)
    splits = get_registry().get("dataset", "digits").load(str(workdir), False)
    for method, kind in (("prune", PatchedModel), ("sisa", SisaEnsemble)):
        model = load_trial_model(runs.loc[method, "run_id"], store)
        assert isinstance(model, kind) and not model.training
        with torch.no_grad():
            acc = float((model(splits.test_x).argmax(1) == splits.test_y).float().mean())
        assert acc == runs.loc[method, "metrics.test_acc"], method
    path = mlflow.tracking.MlflowClient(store).download_artifacts(runs.loc["sisa", "run_id"], "model.safetensors",
                                                                   str(workdir))
    state, meta = read_model_file(path)
    sisa = json.loads(meta["sisa"])
    assert sisa["aggregation"] == "softmax" and sisa["weighting"] == "proportional" and len(sisa["weights"]) == 5
    assert abs(sum(sisa["weights"]) - 1) < 1e-9 and len(set(sisa["weights"])) > 1  # proportional: the shard sizes
    # the weights are the file's, not uniform: changing them changes the prediction
    from safetensors.torch import save_file

    meta["sisa"] = json.dumps({**sisa, "weights": [1.0] + [0.0] * 4})
    save_file(state, str(workdir / "one.safetensors"), metadata=meta)
    one = load_model(workdir / "one.safetensors")
    first = load_model(path).constituents[0]
    with torch.no_grad():
        assert torch.equal(one(splits.test_x).argmax(1), first(splits.test_x).argmax(1))
    # a file without the method's entry (saved before it existed) is one line naming the method and the file
    del meta["sisa"]
    save_file(state, str(workdir / "old.safetensors"), metadata=meta)
    with pytest.raises(BenchError, match=r"old.safetensors: method 'sisa' could not rebuild its model from the file "
                                         r"\(the file has no 'sisa' entry in its header"):
        load_model(workdir / "old.safetensors")


def test_a_method_header_may_not_replace_the_harness_entries():
    from bench.core.method import saved_header

    class M:
        name = "m"

        def __init__(self, extra):
            self.extra = extra

        def saved_header(self, model):
            return self.extra

    assert saved_header(M({"m": "x"}), None, ("method", "model")) == {"m": "x"}
    assert saved_header(M(None), None, ("method",)) == {} and saved_header(object(), None, ()) == {}
    with pytest.raises(ValueError, match=r"saved_header sets the harness's own header entries model"):
        saved_header(M({"model": "mlp:8"}), None, ("method", "model"))
    with pytest.raises(TypeError, match=r"saved_header must return a dict of strings, not dict"):
        saved_header(M({"m": 1}), None, ())


@pytest.mark.slow
def test_without_the_flag_no_model_is_kept(workdir, shared_cache, run_harness, trial_runs):
    from bench.run.saved_models import load_trial_model

    store = f"sqlite:///{workdir / 'mlflow.db'}"
    code, out = run_harness(workdir, methods="ga", attacks="", recipe={"epochs": 5}, cache_dir=str(shared_cache))
    assert code == 0, out
    runs = trial_runs(workdir)
    with pytest.raises(BenchError, match=r"has no model.safetensors: its run did not use --save-models"):
        load_trial_model(runs.loc["ga", "run_id"], store)
    with pytest.raises(BenchError, match=r"is not a trial run"):
        load_trial_model(runs.loc["ga", "tags.mlflow.parentRunId"], store)

    # --resume --save-models runs again the finished trials that kept no model (they were kept, silently)
    common = dict(methods="ga", attacks="", recipe={"epochs": 5}, cache_dir=str(shared_cache), resume=True,
                  save_models=True)
    code, out = run_harness(workdir, **common)
    assert code == 0 and "--resume --save-models: 1 finished trial(s) kept no model" in " ".join(out.split()), out
    again = trial_runs(workdir)
    assert load_trial_model(again.iloc[0]["run_id"] if len(again) == 1 else again.sort_values("start_time").iloc[-1]["run_id"],
                            store) is not None
    code, out = run_harness(workdir, **common)  # now every finished trial has its model: kept
    assert code == 0 and "kept no model" not in out and "1 of 1 trial(s) already finished" in out, out


def test_a_file_that_is_not_a_saved_model_is_one_line(tmp_path):
    from safetensors.torch import save_file

    from bench.run.saved_models import read_model_file

    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BenchError, match=r"junk.safetensors: not a readable safetensors file"):
        read_model_file(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(BenchError, match=r"its header lacks model, num_classes, input_shape; it was not written by bench"):
        read_model_file(tmp_path / "plain.safetensors")


def test_a_timm_model_started_from_a_pretrained_file_loads_without_that_file(tmp_path):
    """The spec keeps the run's pretrained=PATH: loading needed that file, though the saved one holds every weight."""
    from bench.core.cache import model_bytes
    from bench.core.plugins import get_registry
    from bench.run.saved_models import load_model
    from bench.run.validate import resolve_model

    obj, arg, _ = resolve_model(get_registry(), "timm:test_resnet")
    torch.manual_seed(0)
    net = obj.create(10, (1, 8, 8), arg)
    spec = f"timm:test_resnet,pretrained={tmp_path / 'gone.safetensors'},sha256={'0' * 64}"
    (tmp_path / "model.safetensors").write_bytes(model_bytes(net, {
        "method": "ft", "model": spec, "num_classes": "10", "input_shape": "1,8,8"}))
    loaded = load_model(tmp_path / "model.safetensors")
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net.eval()(x))
