"""Built-in datasets plugin (installed as ``bench.datasets``): ``digits`` (the default),
``synthetic``, the torchvision image benchmarks (``mnist``, ``fashion-mnist``, ``kmnist``,
``cifar10``, ``cifar100``, ``svhn``), ``mnist1d``, the binary tabular sets (``purchase20``,
``purchase100``, ``texas100``), ``csv:PATH`` and ``imagefolder:PATH``. docs/datasets.md
describes each one's files, normalisation and augmentation."""

from __future__ import annotations

import bench

from .digits import Digits
from .imagefolder import ImageFolderDataset
from .mnist1d import MNIST1D
from .synthetic import Synthetic
from .tabular import CSVDataset, builtin_tabular_datasets
from .vision import builtin_vision_datasets


@bench.hookimpl
def register_datasets(register):
    register(Digits())
    register(Synthetic())
    for dataset in builtin_vision_datasets():
        register(dataset)
    register(MNIST1D())
    for dataset in builtin_tabular_datasets():
        register(dataset)
    register(CSVDataset())
    register(ImageFolderDataset())
