"""Small networks of the built-in ``models`` plugin (imported lazily: it imports torch)."""

from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Module):
    """A ReLU multilayer perceptron on flattened inputs: ``in -> hidden... -> classes``."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two 3x3 conv-ReLU blocks with max pooling, then a ReLU MLP head.

    ``features`` (conv stack, pooled to 4x4 and flattened) and ``head`` are separate
    submodules so that head-only methods (PRUNE on CNNs) can freeze the extractor.
    """

    def __init__(self, in_chans: int, num_classes: int, widths: tuple[int, int] = (32, 64), hidden: int = 128) -> None:
        super().__init__()
        c1, c2 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c1, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(c2 * 16, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def flat_size(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))


def model_factory(model_obj, arg, splits, seed: int, device: str):
    """A function returning a freshly initialised model of a model plugin, seeded by ``seed``, on ``device``."""

    def new_model():
        torch.manual_seed(seed)
        return model_obj.create(splits.num_classes, tuple(splits.input_shape), arg).to(device)

    return new_model
