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

#: The test split, as a bitmask over the 1,797 images (np.packbits, hex): scikit-learn's
#: ``train_test_split(arange(1797), test_size=0.2, stratify=target, random_state=0)``, written out
#: so that loading digits does not import scikit-learn (2.5 s on the 2-core machine, on the path of
#: every ``bench run``). tests/test_datasets.py checks it against scikit-learn's own split.
TEST_MASK_HEX = (
    "000004883524104000064100934205001a00080100240028062c12001000940a009019120420f8a0028110a000080a88"
    "20441524494240a00a0000004004d80000818020004805c400104008a0100005404800301000020ec409000224840083"
    "a8013c20a6980a0000000b08400804a0184802024041c1008004404684376a810216004480004042a0a4180a5000840b"
    "8561c608108008004c80c02004068e00010882008100380803c008190000100e01008410a0210033282904c044c08068"
    "0e0102830082008822a6402c24042108a860809081a00c02820242120138a41500"
)


def _arrays():
    """(images (1797, 8, 8) float64 in 0..16, labels (1797,) int64) from the CSV file scikit-learn
    ships (``sklearn/datasets/data/digits.csv.gz``, the file ``load_digits`` reads), found without
    importing scikit-learn; None if it is not there (then ``load_digits`` is used)."""
    import importlib.util
    import os

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    for where in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(where, "datasets", "data", "digits.csv.gz")
        if os.path.exists(path):
            data = np.loadtxt(path, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    return None


class Digits:
    name = "digits"
    description = "scikit-learn digits: 1,797 8x8 grayscale images in [0,1], 10 classes, fixed stratified 80/20 split (default)."
    default_recipe = {"epochs": 30, "lr": 0.05, "batch_size": 64}

    def load(self, root, download, arg=None):
        if arg:
            raise BenchError(f"Dataset 'digits' takes no options (got 'digits:{arg}').")
        import numpy as np
        import torch

        from bench.core.contracts import Splits

        found = _arrays()
        if found is not None and len(found[1]) == 1797:
            images, y = found
            test = np.unpackbits(np.frombuffer(bytes.fromhex(TEST_MASK_HEX), dtype=np.uint8))[: len(y)].astype(bool)
            tr, te = np.nonzero(~test)[0], np.nonzero(test)[0]
        else:  # another scikit-learn layout: its own loader and split (the same split)
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split

            data = load_digits()
            images, y = data.images, data.target.astype(np.int64)
            tr, te = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED)
            tr.sort()
            te.sort()
        x = (images.astype(np.float32) / 16.0)[:, None, :, :]
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
