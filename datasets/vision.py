"""Image benchmarks through torchvision's dataset classes: ``mnist``, ``fashion-mnist``,
``kmnist``, ``cifar10``, ``cifar100``, ``svhn``.

Sources: MNIST (LeCun et al. 1998), Fashion-MNIST (Xiao et al. 2017, arXiv:1708.07747),
Kuzushiji-MNIST (Clanuwat et al. 2018, arXiv:1812.01718), CIFAR-10/100 (Krizhevsky 2009),
SVHN cropped digits (Netzer et al., NIPS DL workshop 2011). Files are read by
``torchvision.datasets.CIFAR10/CIFAR100/SVHN``, and the MNIST family's raw IDX files by
``datasets/idx.py`` (an older torchvision's ``processed/*.pt`` beside them is ignored), from the data
directory (``--data-dir``, default ``~/.local/share/unlearning-bench/data``), in torchvision's
own layout, and nothing is downloaded unless ``--download`` is given (then torchvision
downloads and verifies them). torchvision verifies the md5 of every CIFAR batch and meta file
and of the SVHN ``.mat`` files on each load; for the MNIST family it checks the md5 of the
``.gz`` archives when it downloads them; ``.gz`` archives placed by hand are verified here
against torchvision's published checksums before they are unpacked.

Inputs are scaled to [0, 1] and normalised per channel with the mean and standard deviation of
the training split (recorded in ``Splits.info``; for the official files these are the usual
constants, e.g. CIFAR-10 (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616)).
``info["input_bounds"]`` is the image of the pixel range [0, 1] under that normalisation.
The official train/test splits are used (SVHN: ``train`` and ``test``, without ``extra``).

Option ``holdout=F[,holdout_seed=S]`` (e.g. ``cifar10:holdout=0.1``) drops a stratified fraction
F of every class from the training split before anything else sees it, as SalUn's loaders do
(OPTML-Group/Unlearn-Saliency, ``Classification/dataset.py``: ``int(0.1 * n_class)`` images per
class drawn with ``np.random.RandomState(seed)``, classes in ascending order, ``--seed`` default 2
in ``arg_parser.py``): CIFAR-10's 50,000 become their 45,000. The held-out images are not used
(SalUn's unlearning uses them only as a validation loader; its ``main_train.py`` trains the
original on the split of ``dataset.py``'s default seed 1 and keeps the checkpoint best on that
split's held-out images, where the harness uses one split throughout); the normalisation
statistics come from the remaining training images.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError, DataFilesMissing

from .common import channel_bounds, channel_std, normalize_images, parse_options

#: ``holdout``: fraction of each class dropped from the training split (SalUn: 0.1);
#: ``holdout_seed``: the seed of that draw (SalUn's ``--seed`` default, 2).
HOLDOUT_DEFAULTS = {"holdout": 0.0, "holdout_seed": 2}

#: kuangliu/pytorch-cifar's recipe (SGD 0.1, momentum 0.9, weight decay 5e-4, batch 128,
#: cosine over 200 epochs, random crop + flip): ResNet-18 reaches about 93-95% on CIFAR-10.
CIFAR_RECIPE = {"epochs": 200, "lr": 0.1, "batch_size": 128, "momentum": 0.9, "weight_decay": 5e-4,
                "schedule": "cosine", "augment": "crop-flip"}
MNIST_RECIPE = {"epochs": 20, "lr": 0.05, "batch_size": 128}
#: Crops without flips: a mirrored digit is another glyph (the issue's "crop and flip" would
#: teach mirrored digits; ``--recipe augment=crop-flip`` restores it).
SVHN_RECIPE = {"epochs": 50, "lr": 0.05, "batch_size": 128, "momentum": 0.9, "weight_decay": 5e-4,
               "schedule": "cosine", "augment": "crop"}


class TorchvisionImages:
    """One torchvision image dataset. ``tv_class`` overrides the torchvision class (tests pass
    a subclass carrying the checksums of the files they wrote; production uses torchvision's)."""

    def __init__(self, name: str, class_name: str, num_classes: int, input_shape: tuple[int, int, int],
                 description: str, default_recipe: dict[str, Any], tv_class: type | None = None) -> None:
        self.name = name
        self.class_name = class_name
        self.num_classes = num_classes
        self.input_shape = input_shape
        self.description = description
        self.default_recipe = dict(default_recipe)
        self._tv_class = tv_class

    # -- where the files are --------------------------------------------------------------

    def tv_class(self):
        if self._tv_class is not None:
            return self._tv_class
        import torchvision.datasets as tvd

        return getattr(tvd, self.class_name)

    def family(self) -> str:
        cls = self.tv_class()
        import torchvision.datasets as tvd

        for base in ("MNIST", "CIFAR10", "SVHN"):
            if issubclass(cls, getattr(tvd, base)):
                return base
        raise BenchError(f"Dataset '{self.name}': unsupported torchvision class {cls.__name__}.")

    def tv_root(self, root: str) -> Path:
        """The ``root`` argument given to the torchvision class (SVHN gets its own folder)."""
        return Path(root) / "SVHN" if self.family() == "SVHN" else Path(root)

    def expected_files(self, root: str) -> list[tuple[Path, str | None]]:
        """Every file the torchvision class reads, with the md5 it verifies (None: none)."""
        cls, base = self.tv_class(), self.tv_root(root)
        family = self.family()
        if family == "MNIST":
            raw = base / cls.__name__ / "raw"
            return [(raw / Path(url).name.removesuffix(".gz"), None) for url, _ in cls.resources]
        if family == "CIFAR10":
            folder = base / cls.base_folder
            return [(folder / f, md5) for f, md5 in [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]]
        return [(base / cls.split_list[s][1], cls.split_list[s][2]) for s in ("train", "test")]

    def _how(self, root: str) -> str:
        return (f"Download them (and nothing else) with: bench run --dry-run --dataset {self.name} --download "
                f"--data-dir {root}  (needs internet; or copy torchvision's files there; see docs/datasets.md).")

    # -- loading ----------------------------------------------------------------------------

    def _unpack_archives(self, root: str) -> None:
        """MNIST-family ``.gz`` archives placed by hand: verify torchvision's md5, then unpack."""
        from torchvision.datasets.utils import check_integrity

        cls = self.tv_class()
        raw = self.tv_root(root) / cls.__name__ / "raw"
        for url, md5 in cls.resources:
            archive = raw / Path(url).name
            target = raw / archive.name.removesuffix(".gz")
            if target.exists() or not archive.exists():
                continue
            if not check_integrity(str(archive), md5):
                raise BenchError(
                    f"Dataset '{self.name}': {archive} does not match torchvision's md5 {md5} (corrupt, partial or "
                    f"not the official file). Delete it. {self._how(root)}"
                )
            # unpacked beside it under a temporary name, renamed when whole: an interrupt (Ctrl-C) once
            # left a half-written file that every later run refused as "cut short" (found in review)
            part = target.with_name(f".{target.name}.{os.getpid()}.part")
            try:
                with gzip.open(archive, "rb") as src, open(part, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(part, target)
            except OSError as exc:
                raise BenchError(f"Dataset '{self.name}': cannot unpack {archive}: {exc}") from None
            finally:
                part.unlink(missing_ok=True)

    def _check_files(self, root: str) -> None:
        from torchvision.datasets.utils import check_integrity

        files = self.expected_files(root)
        folders = [str(p) for p, _ in files if p.is_dir()]
        if folders:
            raise BenchError(f"Dataset '{self.name}': {', '.join(folders[:4])} is a folder; expected the official file "
                             f"there. {self._how(root)}")
        missing = [str(p) for p, _ in files if not p.is_file()]
        if missing:
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise DataFilesMissing(f"Dataset '{self.name}': missing file(s) {shown}. {self._how(root)}")
        bad = [f"{p} (expected md5 {md5})" for p, md5 in files if md5 and not check_integrity(str(p), md5)]
        if bad:
            raise BenchError(
                f"Dataset '{self.name}': checksum mismatch for {', '.join(bad)}: the file is corrupt, partial or not "
                f"torchvision's release. Delete it and re-run with --download, or copy the official file there."
            )

    def _open(self, root: str, train: bool, download: bool):
        cls, base = self.tv_class(), str(self.tv_root(root))
        kw = {"split": "train" if train else "test"} if self.family() == "SVHN" else {"train": train}
        try:
            return cls(base, download=download, **kw)
        except BenchError:
            raise
        except Exception as exc:
            from torchvision.datasets.utils import check_integrity

            what = "download or read" if download else "read"
            expected = self.expected_files(root)
            files = ", ".join(str(p) for p, _ in expected)
            # (it said "CIFAR10 files" for cifar100, and with --download suggested the command that just failed)
            if download:
                absent = [p.name for p, md5 in expected if not p.is_file() or (md5 and not check_integrity(str(p), md5))]
                fix = (f"{len(absent)} of the {len(expected)} files are missing or fail torchvision's md5 "
                       f"({', '.join(absent[:4])}{', ...' if len(absent) > 4 else ''}), so it tried to download them. "
                       f"Without internet, copy the official files there and run without --download (see "
                       f"docs/datasets.md).") if absent else "Replace them with the official files (see docs/datasets.md)."
            else:
                fix = f"Replace them with the official files ({self._how(root)})"
            raise BenchError(
                f"Dataset '{self.name}': torchvision's {cls.__name__} could not {what} the files under {base} "
                f"({type(exc).__name__}: {exc}). Expected {cls.__name__} files in torchvision's format: {files}. {fix}"
            ) from None

    def arrays(self, root: str, download: bool):
        """(train_x uint8 (N, C, H, W), train_y, test_x, test_y) as tensors, through torchvision."""
        import numpy as np
        import torch

        if not download:
            if self.family() == "MNIST":
                self._unpack_archives(root)
            self._check_files(root)
        out = []
        family = self.family()
        if family == "MNIST" and download:  # torchvision downloads, verifies and unpacks the archives
            self._download_mnist(root)
            self._check_files(root)
        for train in (True, False):
            if family == "MNIST":  # the raw IDX files, never an older torchvision's processed/*.pt (datasets/idx.py)
                x, y = self._read_idx(root, train)
                self._validate(x, y, "train" if train else "test", root)
                out += [x, y]
                continue
            ds = self._open(root, train, download)
            if family == "CIFAR10":
                x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
                y = torch.as_tensor(ds.targets, dtype=torch.long)
            else:
                x, y = torch.from_numpy(np.ascontiguousarray(ds.data)), torch.from_numpy(ds.labels.astype(np.int64))
            self._validate(x, y, "train" if train else "test", root)
            out += [x, y]
        # the official files swapped (only the .gz archives are checked against an md5); a train set cut down
        # below its test set for a quick run is the user's choice (diff review, 2026-12-07)
        if family == "MNIST" and (len(out[1]), len(out[3])) == (10_000, 60_000):
            raw = self.tv_root(root) / self.tv_class().__name__ / "raw"
            raise BenchError(f"Dataset '{self.name}': the train files in {raw} hold 10,000 images and the t10k (test) "
                             f"files 60,000, the official sizes the other way round: the files are swapped. Put the "
                             f"train-* and t10k-* files under their own names.")
        return out

    def _download_mnist(self, root: str) -> None:
        """torchvision's MNIST-family download alone (verified archives, unpacked; nothing when the raw
        files are there): its constructor returns before downloading whenever an older torchvision's
        ``processed/*.pt`` exist, and then read them, not the raw files (found in review)."""
        cls = self.tv_class()
        fetcher = cls.__new__(cls)  # download() needs only the root; the constructor would parse the files
        fetcher.root = str(self.tv_root(root))
        try:
            fetcher.download()
        except Exception as exc:  # torchvision's message spans a line per mirror: one line here
            said = " ".join(str(exc).split())
            raise BenchError(
                f"Dataset '{self.name}': the download failed ({type(exc).__name__}: {said[:300]}"
                f"{'...' if len(said) > 300 else ''}). Without internet, copy torchvision's {cls.__name__} files (the "
                f".gz archives or the unpacked idx files) to {fetcher.raw_folder} and run without --download."
            ) from None

    def _read_idx(self, root: str, train: bool):
        """(images (N, 1, 28, 28) uint8, labels int64) of one split from its raw IDX files."""
        from .idx import read_idx

        prefix = "train" if train else "t10k"
        files = {p.name: p for p, _ in self.expected_files(root)}
        x = read_idx(files[f"{prefix}-images-idx3-ubyte"], "images", self.name)
        y = read_idx(files[f"{prefix}-labels-idx1-ubyte"], "labels", self.name)
        return x.unsqueeze(1), y

    def _validate(self, x, y, part: str, root: str) -> None:
        if tuple(x.shape[1:]) != self.input_shape or len(x) != len(y) or len(y) == 0:
            raise BenchError(
                f"Dataset '{self.name}': the {part} files under {self.tv_root(root)} hold images of shape "
                f"{tuple(x.shape)} and {len(y)} labels; expected (N, {', '.join(map(str, self.input_shape))}) with one "
                f"label per image."
            )
        if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise BenchError(
                f"Dataset '{self.name}': the {part} labels under {self.tv_root(root)} span [{int(y.min())}, "
                f"{int(y.max())}]; expected 0..{self.num_classes - 1}."
            )

    def load(self, root, download, arg=None):
        opts = parse_options(self.name, arg, HOLDOUT_DEFAULTS, example=f"{self.name}:holdout=0.1")
        if not 0.0 <= opts["holdout"] < 1.0 or not 0 <= opts["holdout_seed"] < 2**32:
            raise BenchError(f"Bad {self.name} options: holdout must lie in [0, 1) and holdout_seed in 0..2**32-1 "
                             f"(got holdout={opts['holdout']}, holdout_seed={opts['holdout_seed']}); "
                             f"e.g. {self.name}:holdout=0.1.")
        from bench.core.contracts import Splits

        train_x, train_y, test_x, test_y = self.arrays(root, download)
        held_out = 0
        if opts["holdout"] > 0:
            keep = holdout_keep(train_y.numpy(), opts["holdout"], opts["holdout_seed"])
            held_out = len(train_y) - len(keep)
            train_x, train_y = train_x[keep], train_y[keep]
        train_x, test_x = train_x.float().div_(255.0), test_x.float().div_(255.0)
        mean = [float(v) for v in train_x.mean(dim=(0, 2, 3), dtype=train_x.dtype)]
        std = [channel_std(v) for v in train_x.std(dim=(0, 2, 3))]
        normalize_images(train_x, mean, std)
        normalize_images(test_x, mean, std)
        return Splits(
            train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
            num_classes=self.num_classes, input_shape=self.input_shape,
            info={
                # MNIST's family is read from its raw IDX files by bench (datasets/idx.py), in torchvision's layout
                "source": (f"IDX files in torchvision.datasets.{self.tv_class().__name__}'s layout, read by bench"
                           if self.family() == "MNIST" else f"torchvision.datasets.{self.tv_class().__name__}"),
                "files": str(self.tv_root(root)),
                "normalize": "per-channel mean/std of the training split, after scaling pixels to [0, 1]",
                "mean": [round(v, 6) for v in mean], "std": [round(v, 6) for v in std],
                "input_bounds": channel_bounds(mean, std),
                **({"holdout": opts["holdout"], "holdout_seed": opts["holdout_seed"], "held_out": held_out}
                   if opts["holdout"] > 0 else {}),
            },
        )


def holdout_keep(y, fraction: float, seed: int):
    """Sorted indices of the training examples kept after holding out ``int(fraction * n_c)``
    examples of every class c, drawn without replacement by one ``np.random.RandomState(seed)``
    class after class in ascending order (SalUn's ``Classification/dataset.py`` draw)."""
    import numpy as np
    import torch

    rng = np.random.RandomState(seed)
    held = [rng.choice(np.where(y == c)[0], int(fraction * int((y == c).sum())), replace=False)
            for c in range(int(y.max()) + 1)]
    mask = np.ones(len(y), dtype=bool)
    mask[np.concatenate(held)] = False
    return torch.from_numpy(np.flatnonzero(mask))


def builtin_vision_datasets() -> list[TorchvisionImages]:
    gray, rgb = (1, 28, 28), (3, 32, 32)
    table = [  # name, torchvision class, classes, input shape, description, default recipe
        ("mnist", "MNIST", 10, gray, "MNIST handwritten digits, 60k/10k 28x28", MNIST_RECIPE),
        ("fashion-mnist", "FashionMNIST", 10, gray, "Fashion-MNIST clothing images, 60k/10k 28x28", MNIST_RECIPE),
        ("kmnist", "KMNIST", 10, gray, "Kuzushiji-MNIST cursive Japanese characters, 60k/10k 28x28", MNIST_RECIPE),
        ("cifar10", "CIFAR10", 10, rgb, "CIFAR-10, 50k/10k 32x32 colour images; crop+flip augmentation", CIFAR_RECIPE),
        ("cifar100", "CIFAR100", 100, rgb, "CIFAR-100 fine labels, 50k/10k 32x32; crop+flip augmentation", CIFAR_RECIPE),
        ("svhn", "SVHN", 10, rgb, "SVHN cropped digits, 73,257/26,032 32x32 (no 'extra'); crop augmentation", SVHN_RECIPE),
    ]
    return [TorchvisionImages(name, cls, k, shape, f"{text} (torchvision's files under --data-dir).", recipe)
            for name, cls, k, shape, text, recipe in table]
