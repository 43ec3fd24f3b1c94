"""Built-in model architectures: ``mlp``, ``cnn`` and every timm architecture.

A model spec is ``NAME`` or ``NAME:ARG``: ``mlp:256,256`` (hidden sizes), ``cnn:32,64``
(conv widths), ``resnet18`` or ``timm:resnet18`` (any name ``timm.list_models()`` knows,
built with ``timm.create_model(name, pretrained=False, num_classes=K, in_chans=C)``; nothing
is downloaded). ``resnet18-cifar`` (bench/nn/resnet_cifar.py) is the default for 32x32 images.
"""

from __future__ import annotations

import bench
from bench.core.errors import BenchError


def _ints(arg: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in arg.split(",") if v.strip())
    except ValueError:
        raise BenchError(f"Bad {what} '{arg}': expected comma-separated positive integers, e.g. 256,256.") from None
    if not vals or any(v <= 0 for v in vals):
        raise BenchError(f"Bad {what} '{arg}': expected comma-separated positive integers, e.g. 256,256.")
    return vals


class MLPModel:
    name = "mlp"
    description = "ReLU MLP on flattened inputs; hidden sizes in the spec, e.g. mlp:256,256 (default 256,256)."

    def create(self, num_classes, input_shape, arg=None):
        from bench.nn.nets import MLP, flat_size

        hidden = _ints(arg, "mlp hidden sizes") if arg else (256, 256)
        return MLP(flat_size(input_shape), hidden, num_classes)


class CNNModel:
    name = "cnn"
    description = "Small ReLU CNN (2 conv layers, max pool, ReLU MLP head) for (C,H,W) inputs; widths e.g. cnn:32,64."

    def create(self, num_classes, input_shape, arg=None):
        from bench.nn.nets import SmallCNN

        if len(input_shape) != 3:
            raise BenchError(
                f"Model 'cnn' needs image inputs of shape (C, H, W); this dataset's inputs have shape "
                f"{tuple(input_shape)}. Use --model mlp for vector data."
            )
        widths = _ints(arg, "cnn widths") if arg else (32, 64)
        if len(widths) != 2:
            raise BenchError(f"Bad cnn widths '{arg}': expected two integers, e.g. cnn:32,64.")
        return SmallCNN(input_shape[0], num_classes, widths)


class TimmModels:
    """Every timm architecture, randomly initialised (``pretrained=False``)."""

    name = "timm"
    description = "Any timm architecture by name (resnet18, test_resnet, ...), pretrained=False; `bench list models 'resnet*'`."

    def claims(self, name: str) -> bool:
        import timm

        return timm.is_model(name)

    def list_names(self, pattern: str = "*") -> list[str]:
        import timm

        return timm.list_models(pattern)

    def create(self, num_classes, input_shape, arg=None):
        import timm

        if not arg:
            raise BenchError("Model 'timm' needs an architecture name: timm:resnet18, or just resnet18.")
        if not timm.is_model(arg):
            raise BenchError(f"Unknown timm architecture '{arg}'. List them with: bench list models '{arg[:3]}*'")
        if len(input_shape) != 3:
            raise BenchError(
                f"timm model '{arg}' needs image inputs of shape (C, H, W); this dataset's inputs have shape "
                f"{tuple(input_shape)}. Use --model mlp for vector data."
            )
        return timm.create_model(arg, pretrained=False, num_classes=num_classes, in_chans=input_shape[0])


@bench.hookimpl
def register_models(register):
    register(MLPModel())
    register(CNNModel())
    register(TimmModels())
    from bench.nn.resnet_cifar import ResNet18Cifar

    register(ResNet18Cifar())
