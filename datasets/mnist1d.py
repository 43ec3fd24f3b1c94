"""MNIST-1D (Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D", ICML 2024;
github.com/greydanus/mnist1d), generated locally by the PyPI package ``mnist1d``
(Apache-2.0) with ``mnist1d.data.make_dataset``. Its ``get_dataset`` helper is never called:
it downloads a pickle by default and writes it to the working directory.

Spec: ``mnist1d`` or ``mnist1d:n=5000,seed=42`` (the package's ``num_samples`` and ``seed``;
its other generation arguments keep their defaults). The default gives the package's standard
4,000 train / 1,000 test sequences of 40 values, 10 classes, with the package's own split
(``train_split`` 0.8). Inputs are used as generated: ``make_dataset`` already standardises the
whole generated set to mean 0 and standard deviation 1. ``info["input_bounds"]`` is the
smallest and largest value of the training split.
"""

from __future__ import annotations

from bench.core.errors import BenchError
from bench.core.memory import check_fits

from .common import parse_options

DEFAULTS = {"n": 5000, "seed": 42}


class MNIST1D:
    name = "mnist1d"
    description = "MNIST-1D, generated locally (mnist1d.make_dataset): 4,000/1,000 sequences of 40 values, 10 classes."
    #: Adam 1e-2 and batch 100 as in the reference notebooks; 30 epochs is 1,200 steps.
    default_recipe = {"optimizer": "adam", "lr": 0.01, "batch_size": 100, "epochs": 30, "weight_decay": 0.0}

    def load(self, root, download, arg=None):
        opts = parse_options(self.name, arg, DEFAULTS, example="mnist1d:n=5000,seed=42")
        if opts["n"] < 100:
            raise BenchError(f"Bad mnist1d option n={opts['n']}: need at least 100 samples (10 per class).")
        # make_dataset's peak: 1,434 bytes a sample measured at n=200,000 (float64 work arrays), then the
        # float32 splits: 2,000 bytes a sample in all
        check_fits(f"Dataset 'mnist1d:n={opts['n']}'", opts["n"] * 2000.0, "give a smaller n, e.g. mnist1d:n=5000")
        if not 0 <= opts["seed"] < 2**32:  # NumPy's legacy seeding, which the package uses
            raise BenchError(f"Bad mnist1d option seed={opts['seed']}: expected an integer in [0, 2**32), e.g. mnist1d:seed=42.")
        import numpy as np
        import torch

        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError:
            raise BenchError("Dataset 'mnist1d' needs the mnist1d package: pip install mnist1d") from None
        from bench.core.contracts import Splits

        args = get_dataset_args()
        args.num_samples, args.seed = opts["n"], opts["seed"]
        import random

        state, py_state = np.random.get_state(), random.getstate()  # make_dataset seeds both: restore
        try:
            data = make_dataset(args)
        finally:
            np.random.set_state(state)
            random.setstate(py_state)
        train_x = torch.from_numpy(np.asarray(data["x"], np.float32))
        test_x = torch.from_numpy(np.asarray(data["x_test"], np.float32))
        lo, hi = float(train_x.min()), float(train_x.max())
        return Splits(
            train_x=train_x, train_y=torch.from_numpy(np.asarray(data["y"], np.int64)),
            test_x=test_x, test_y=torch.from_numpy(np.asarray(data["y_test"], np.int64)),
            num_classes=10, input_shape=(int(train_x.shape[1]),),
            info={"source": "mnist1d.data.make_dataset", "input_bounds": (lo, hi), **opts,
                  "normalize": "mnist1d standardises the generated set (mean 0, std 1)"},
        )
