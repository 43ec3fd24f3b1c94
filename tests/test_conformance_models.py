"""The model checks of the conformance kit: every built-in architecture passes them, and each
check catches a small real model (it trains and classifies) with one defect."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bench.testing as kit
from bench.methods import GradientAscent
from bench.nn.models import CNNModel, MLPModel, TimmModels
from bench.nn.resnet_cifar import ResNet18Cifar
from bench.testing import check_model, parametrize_with_checks

CIFAR = {"input_shape": (3, 32, 32)}


@parametrize_with_checks([MLPModel(), (MLPModel(), {"arg": "32"}), CNNModel()])
def test_builtin_models_conform(plugin, check):
    check(plugin)


@pytest.mark.slow  # timm's import, and an 11M-parameter network: seconds
@parametrize_with_checks([(TimmModels(), {"arg": "test_resnet", **CIFAR}), (ResNet18Cifar(), CIFAR)])
def test_timm_and_resnet18_cifar_conform(plugin, check):
    check(plugin)


class Net(nn.Module):
    """A flatten-linear-ReLU-linear classifier; the defects below change one thing each."""

    def __init__(self, num_classes, input_shape, hidden=16):
        super().__init__()
        self.fc1 = nn.Linear(int(np.prod(input_shape)), hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def features(self, x):
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x):
        return self.fc2(self.features(x))


class Sound:
    name = "sound-net"
    description = "A two-layer ReLU network (a test model)."
    net = Net

    def create(self, num_classes, input_shape, arg=None):
        return self.net(num_classes, input_shape)


def _model(name, forward=None, init=None, create=None, **attrs):
    """A model plugin whose network is ``Net`` with ``forward`` (and ``__init__`` extra ``init``)
    replaced, or whose ``create`` is ``create``."""
    body = {}
    if forward is not None:
        body["forward"] = forward
    if init is not None:
        def __init__(self, num_classes, input_shape):
            Net.__init__(self, num_classes, input_shape)
            init(self)
        body["__init__"] = __init__
    net = type(f"Net_{name}", (Net,), body)
    cls = type(f"Model_{name}", (Sound,), {"name": name, "net": net, **({"create": create} if create else {}),
                                         **attrs})
    globals()[cls.__qualname__] = cls  # found by pickle, as a plugin's module-level class is
    return cls()


def _fails(model, check_name, match, **options):
    check = getattr(kit, check_name)
    with pytest.raises(AssertionError, match=match) as info:
        check(model, **options)
    assert str(info.value).startswith(f"model '{model.name}"), str(info.value)
    assert check_name in str(info.value)
    return str(info.value)


def test_a_sound_model_passes_every_check():
    check_model(Sound())
    assert [c.func for c in kit.checks_for(Sound(), arg="x")] == kit.MODEL_CHECKS
    check_model(Sound(), input_shape=(5,), num_classes=3)


def test_catches_probabilities_and_non_tensor_outputs():
    _fails(_model("softmax", forward=lambda self, x: self.fc2(self.features(x)).softmax(-1)),
           "check_outputs_logits", "returns probabilities")
    _fails(_model("pair", forward=lambda self, x: (self.fc2(self.features(x)), self.features(x))),
           "check_outputs_logits", "returned a tuple, not a tensor")
    _fails(_model("double", forward=lambda self, x: self.fc2(self.features(x)).double()),
           "check_outputs_logits", "dtype torch.float64")


def test_catches_a_cached_module_and_unseeded_initial_weights():
    class Cached(Sound):
        name = "cached"

        def create(self, num_classes, input_shape, arg=None):
            if not hasattr(self, "_net"):
                self._net = Net(num_classes, input_shape)
            return self._net

    _fails(Cached(), "check_create_fresh_and_seeded", "the same module")

    def numpy_init(self):
        with torch.no_grad():
            self.fc2.weight.copy_(torch.from_numpy(np.random.standard_normal(self.fc2.weight.shape)).float())

    _fails(_model("numpy-init", init=numpy_init), "check_create_fresh_and_seeded", "'fc2.weight' differs")


def test_catches_batch_statistics_and_dropout_at_evaluation():
    def batch_stats(self, x):
        h = self.features(x)
        return self.fc2(h - h.mean(0))  # centred on the batch's mean, in eval mode too

    _fails(_model("batch-stats", forward=batch_stats), "check_rows_independent_in_eval",
           "a row's logits depend on the other rows of its batch")
    _fails(_model("mc-dropout", forward=lambda self, x: self.fc2(F.dropout(self.features(x), 0.5, training=True))),
           "check_rows_independent_in_eval", "gives other logits for the same inputs in eval mode")
    # BatchNorm layers (running statistics in eval mode) and nn.Dropout pass
    bn = _model("bn", init=lambda self: setattr(self, "bn", nn.BatchNorm1d(16)),
                forward=lambda self, x: self.fc2(F.dropout(self.bn(self.features(x)), 0.5, self.training)))
    check_model(bn)


def test_catches_an_in_place_change_of_the_input():
    def normalise_in_place(self, x):
        x.sub_(x.mean())
        return self.fc2(self.features(x))

    _fails(_model("in-place", forward=normalise_in_place), "check_leaves_input_untouched", "changed its input in place")


def test_catches_detached_logits_and_models_without_parameters():
    _fails(_model("detached", forward=lambda self, x: self.fc2(self.features(x)).detach()),
           "check_gradients_reach_parameters", "do not require grad")
    # a parameter no output reads is allowed: bench's methods give it a zero gradient (iu, fisher did not
    # until 2026-12-06); so is a frozen one
    kit.check_gradients_reach_parameters(_model("unused", init=lambda self: setattr(self, "extra", nn.Linear(3, 3))))
    frozen = _model("frozen", init=lambda self: setattr(self, "extra", nn.Linear(3, 3).requires_grad_(False)))
    kit.check_gradients_reach_parameters(frozen)
    _fails(_model("no-params", init=lambda self: self.requires_grad_(False)), "check_create_returns_module",
           "no trainable parameter")
    _fails(_model("f64", init=lambda self: self.double(), forward=lambda self, x: self.fc2(self.features(x.double()))),
           "check_create_returns_module", "'fc1.weight' has dtype torch.float64")


def test_catches_state_outside_the_state_dict():
    def scale_init(self):
        self.scale = torch.rand(16) + 0.5  # a plain attribute, not a buffer: not in the state dict

    model = _model("attr", init=scale_init, forward=lambda self, x: self.fc2(self.features(x) * self.scale))
    _fails(model, "check_state_survives_the_cache", "tensors outside the state dict")
    as_buffer = _model("buffer", init=lambda self: self.register_buffer("scale", torch.rand(16) + 0.5),
                       forward=lambda self, x: self.fc2(self.features(x) * self.scale))
    kit.check_state_survives_the_cache(as_buffer)


def test_catches_a_model_that_cannot_be_deep_copied():
    _fails(_model("locked", init=lambda self: setattr(self, "lock", threading.Lock())), "check_deepcopy",
           "deepcopy.*raised TypeError")


class HalfFamily(Sound):
    name = "half-family"

    def claims(self, name):
        return True


class Liar(HalfFamily):
    name = "liar"

    def claims(self, name):
        return False

    def list_names(self, pattern="*"):
        return ["a", "b"]


class ClashingName(Sound):
    name = "mlp"


def test_model_attributes_pickling_and_families():
    kit.check_model_attributes(Sound())
    _fails(_model(""), "check_model_attributes", "registry refuses")
    unpicklable = Sound()
    unpicklable.hook = lambda: 1
    _fails(unpicklable, "check_model_attributes", "cannot be pickled")
    _fails(HalfFamily(), "check_model_attributes", "not the other")
    _fails(Liar(), "check_model_attributes", "lists 'a', which claims")
    _fails(ClashingName(), "check_model_attributes", "built-in model named 'mlp'")


def test_a_refused_setting_says_to_give_options_and_leaks_are_caught():
    msg = _fails(CNNModel(), "check_outputs_logits", "refused the setting.*input_shape=", input_shape=(64,))
    assert msg.startswith("model 'cnn' failed check_outputs_logits")

    def leak(self, num_classes, input_shape, arg=None):
        torch.set_grad_enabled(False)
        return Net(num_classes, input_shape)

    _fails(_model("leaky", create=leak), "check_create_returns_module", "grad mode")
    assert torch.is_grad_enabled()
    with pytest.raises(TypeError, match="unknown option"):
        kit.check_outputs_logits(Sound(), params={})


def test_check_model_names_arg_and_collects():
    with pytest.raises(AssertionError, match=r"^model 'mlp:0' failed check_create_returns_module: create\(10, \(1, 8, 8\), '0'\)"):
        check_model(MLPModel(), "0")
    broken = _model("two-defects", forward=lambda self, x: self.fc2(self.features(x)).softmax(-1),
                    init=lambda self: setattr(self, "scale", torch.rand(16)))
    broken.net.forward = lambda self, x: (self.fc2(self.features(x)) * self.scale[:10].sum()).softmax(-1)
    with pytest.raises(AssertionError, match=r"^2 check\(s\) failed") as info:
        check_model(broken, collect=True)
    assert "check_outputs_logits" in str(info.value) and "check_state_survives_the_cache" in str(info.value)
    # options the test gives wrongly are the test's mistake, not the model's; NumPy integers are taken
    with pytest.raises(AssertionError, match=r"TypeError: the option input_shape must be a tuple of positive ints"):
        kit.check_outputs_logits(Sound(), input_shape=64)
    kit.check_outputs_logits(Sound(), input_shape=(np.int64(1), 8, 8))
    with pytest.raises(TypeError, match=r"has no create\(\); use check_method"):
        check_model(GradientAscent())


def test_every_model_check_is_documented_and_registered():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "testing.md").read_text()
    for check in kit.MODEL_CHECKS:
        assert f"`{check.__name__}`" in doc, check.__name__
    assert len(kit.MODEL_CHECKS) == 9
