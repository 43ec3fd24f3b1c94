"""Generated classification data: scikit-learn's ``make_classification`` (Guyon, NIPS 2003 design).

Spec: ``synthetic`` or ``synthetic:n=2000,features=20,classes=4,informative=10,clusters=2,seed=0``.
Features are standardised with the training split's mean and standard deviation; the
train/test split is stratified, 20% test, seeded by ``seed`` (the data seed, not the trial seed).
``info["input_bounds"]``: each standardised feature's range on the training split.
"""

from __future__ import annotations

from bench.core.errors import BenchError
from bench.core.memory import check_fits

DEFAULTS = {"n": 2000, "features": 20, "classes": 4, "informative": None, "clusters": 1, "seed": 0}


def parse_options(arg: str | None) -> dict:
    opts = dict(DEFAULTS)
    seen: dict[str, str] = {}
    for part in arg.split(",") if arg else []:
        key, sep, value = part.partition("=")
        key = key.strip()
        if sep and key in seen and seen[key] != value.strip():  # synthetic:n=2000,n=3000 took 3000 without a word
            raise BenchError(f"Bad synthetic spec: {key} is set twice ({seen[key]!r}, {value.strip()!r}); give it once.")
        seen[key] = value.strip()
        if not sep or key not in DEFAULTS:
            raise BenchError(
                f"Bad synthetic option '{part}': expected KEY=VALUE with KEY one of {', '.join(DEFAULTS)}, "
                f"e.g. synthetic:n=2000,features=20,classes=4."
            )
        try:
            opts[key] = int(value)
        except ValueError:
            raise BenchError(f"Bad synthetic option '{part}': {key} must be an integer.") from None
    if opts["clusters"] < 1 or not 0 <= opts["seed"] < 2**32 or (opts["informative"] is not None and opts["informative"] < 1):
        raise BenchError(f"Bad synthetic options {arg!r}: need clusters >= 1, informative >= 1 and seed in "
                         f"[0, 2**32) (scikit-learn's random_state), e.g. synthetic:clusters=2,seed=1.")
    informative = opts["informative"] or max(2, min(opts["features"], opts["features"] // 2))
    opts["informative"] = informative
    if opts["classes"] < 2 or opts["features"] < 2 or opts["n"] < 10 * opts["classes"]:
        raise BenchError(
            f"Bad synthetic options {arg!r}: need classes >= 2, features >= 2 and n >= 10 * classes."
        )
    if opts["classes"] * opts["clusters"] > 2 ** informative or informative > opts["features"]:
        raise BenchError(
            f"Bad synthetic options {arg!r}: need informative <= features and classes * clusters <= 2**informative."
        )
    return opts


class Synthetic:
    name = "synthetic"
    description = "make_classification data; options in the spec, e.g. synthetic:n=2000,features=20,classes=4."
    default_recipe = {"epochs": 30, "lr": 0.05, "batch_size": 64}

    def load(self, root, download, arg=None):
        opts = parse_options(arg)
        # scikit-learn's float64 work arrays, the split and the standardised float32 copies: 50 bytes a value
        # at their peak, measured at n=400,000, features=50
        check_fits(f"Dataset 'synthetic' (n={opts['n']}, features={opts['features']})", opts["n"] * opts["features"] * 50.0,
                   "give a smaller n or fewer features, e.g. synthetic:n=2000,features=20")
        import numpy as np
        import torch
        from sklearn.datasets import make_classification
        from sklearn.model_selection import train_test_split

        from bench.core.contracts import Splits

        x, y = make_classification(
            n_samples=opts["n"],
            n_features=opts["features"],
            n_informative=opts["informative"],
            n_redundant=0,
            n_classes=opts["classes"],
            n_clusters_per_class=opts["clusters"],
            random_state=opts["seed"],
        )
        tr, te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=opts["seed"])
        tr.sort()
        te.sort()
        mean, std = x[tr].mean(0), x[tr].std(0) + 1e-8
        x = ((x - mean) / std).astype(np.float32)
        y = y.astype(np.int64)
        return Splits(
            train_x=torch.from_numpy(x[tr]),
            train_y=torch.from_numpy(y[tr]),
            test_x=torch.from_numpy(x[te]),
            test_y=torch.from_numpy(y[te]),
            num_classes=opts["classes"],
            input_shape=(opts["features"],),
            info={"source": "sklearn.datasets.make_classification", **opts, "normalize": "standard (training split)",
                  "input_bounds": ([float(v) for v in x[tr].min(0)], [float(v) for v in x[tr].max(0)])},
        )
