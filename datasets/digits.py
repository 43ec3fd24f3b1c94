"""scikit-learn's handwritten digits (Alpaydin & Kaynak, UCI optdigits), shipped with scikit-learn.

1,797 grayscale 8x8 images, 10 classes, pixel values 0..16 scaled to [0, 1], shaped
(1, 8, 8). The train/test split is fixed: stratified, 20% test, ``random_state=0``
(1,437 train, 360 test), independent of the trial seed so every run compares on the same
test set. ``info["input_bounds"]`` is the unit box (0, 1).
"""

from __future__ import annotations

from bench.core.errors import BenchError

TEST_FRACTION = 0.2
SPLIT_SEED = 0


class Digits:
    name = "digits"
    description = "scikit-learn digits: 1,797 8x8 grayscale images in [0,1], 10 classes, fixed stratified 80/20 split (default)."
    default_recipe = {"epochs": 30, "lr": 0.05, "batch_size": 64}

    def load(self, root, download, arg=None):
        if arg:
            raise BenchError(f"Dataset 'digits' takes no options (got 'digits:{arg}').")
        import numpy as np
        import torch
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        from bench.core.contracts import Splits

        data = load_digits()
        x = (data.images.astype(np.float32) / 16.0)[:, None, :, :]
        y = data.target.astype(np.int64)
        idx = np.arange(len(y))
        tr, te = train_test_split(idx, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED)
        tr.sort()
        te.sort()
        return Splits(
            train_x=torch.from_numpy(x[tr]),
            train_y=torch.from_numpy(y[tr]),
            test_x=torch.from_numpy(x[te]),
            test_y=torch.from_numpy(y[te]),
            num_classes=10,
            input_shape=(1, 8, 8),
            info={"source": "sklearn.datasets.load_digits", "split_seed": SPLIT_SEED, "test_fraction": TEST_FRACTION,
                  "normalize": "pixels / 16", "input_bounds": (0.0, 1.0)},
        )
