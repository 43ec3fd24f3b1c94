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

        with pytest.raises(BenchError, match=r"the model method 'wrapped' returned is not a plain 'mlp' .*load_file"):
            load_trial_model(runs.loc["wrapped", "run_id"], store)
        import mlflow

        path = mlflow.tracking.MlflowClient(store).download_artifacts(runs.loc["wrapped", "run_id"], "model.safetensors",
                                                                       str(workdir))
        state, meta = read_model_file(path)
        assert set(state) == {"0.net.1.weight", "0.net.1.bias", "0.net.3.weight", "0.net.3.bias", "0.net.5.weight",
                              "0.net.5.bias"}
        assert meta["method"] == "wrapped" and meta["input_shape"] == "1,8,8" and meta["num_classes"] == "10"
        assert meta["trial_key"] == runs.loc["wrapped", "tags.bench.trial_key"]


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


def test_a_file_that_is_not_a_saved_model_is_one_line(tmp_path):
    from safetensors.torch import save_file

    from bench.run.saved_models import read_model_file

    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BenchError, match=r"junk.safetensors: not a readable safetensors file"):
        read_model_file(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(BenchError, match=r"its header lacks model, num_classes, input_shape; it was not written by bench"):
        read_model_file(tmp_path / "plain.safetensors")
