"""Small files in the real on-disk formats the file-based datasets read, for the tests (no
internet needed): MNIST idx (optionally gzipped), CIFAR-10/100 pickled batches with their meta
file, SVHN ``.mat``, image folders, CSV and the binary ``.npz`` tabular format. Not part of the
installed package: tests get it from the ``data_files`` fixture (tests/conftest.py loads it by
path, as test modules cannot import each other).

Each writer returns what a test needs to load the files with checksum verification on:
torchvision's CIFAR and SVHN classes verify fixed md5 sums of the official files, so
:func:`with_checksums` derives a subclass of the torchvision class that carries the md5 sums of
the files just written (the production plugins use torchvision's own classes, and so the official
checksums). Images are random pixels whose class shows in a per-class mean brightness, so that
a model can learn them.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _images(n: int, channels: int, size: int, num_classes: int, seed: int):
    """(uint8 images (n, size, size, channels), int labels): every class present, class-dependent means."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    rng.shuffle(y)
    base = (y[:, None, None, None] * (200 // max(1, num_classes - 1))).astype(np.int64)
    x = np.clip(base + rng.integers(0, 56, size=(n, size, size, channels)), 0, 255).astype(np.uint8)
    return x, y.astype(np.int64)


def write_mnist(root, class_name: str = "MNIST", n_train: int = 60, n_test: int = 20, gz: bool = False,
                seed: int = 0) -> dict[str, str]:
    """The four idx files of ``torchvision.datasets.<class_name>`` under ``root/<class_name>/raw``
    (images: magic 0x803, N, 28, 28; labels: magic 0x801, N; big-endian). With ``gz`` only the
    ``.gz`` archives are written. Returns {file name: md5} of what was written."""
    raw = Path(root) / class_name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        x, y = _images(n, 1, 28, 10, s)
        files = {f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 0x803, n, 28, 28) + x.tobytes(),
                 f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 0x801, n) + y.astype("uint8").tobytes()}
        for name, data in files.items():
            path = raw / (name + ".gz" if gz else name)
            path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
            out[path.name] = md5(path)
    return out


def write_cifar(root, num_classes: int = 10, per_batch: int = 30, n_test: int = 20, seed: int = 0) -> dict[str, str]:
    """CIFAR-10 (``cifar-10-batches-py``: data_batch_1..5, test_batch, batches.meta) or CIFAR-100
    (``cifar-100-python``: train, test, meta) pickled batches: ``data`` uint8 (N, 3072) in R, G, B
    planes and ``labels`` / ``fine_labels``. Returns {file name: md5}."""
    import numpy as np

    folder = Path(root) / ("cifar-10-batches-py" if num_classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    if num_classes == 10:
        parts = [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
        meta = ("batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072})
    else:
        parts = [("train", max(per_batch * 5, num_classes)), ("test", n_test)]
        meta = ("meta", {"fine_label_names": [f"fine{i}" for i in range(num_classes)],
                         "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    out = {}
    for i, (name, n) in enumerate(parts):
        x, y = _images(n, 3, 32, num_classes, seed + i)
        entry = {"batch_label": name, "data": np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(n, 3072)}
        if num_classes == 10:
            entry["labels"] = y.tolist()
        else:
            entry["fine_labels"], entry["coarse_labels"] = y.tolist(), (y % 20).tolist()
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1], protocol=2))
    for path in folder.iterdir():
        out[path.name] = md5(path)
    return out


def write_svhn(root, n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict[str, str]:
    """``train_32x32.mat`` and ``test_32x32.mat`` in ``root`` (scipy.io.savemat): ``X`` uint8
    (32, 32, 3, N) and ``y`` (N, 1) with labels 1..10, 10 meaning the digit 0. Returns {file: md5}."""
    import numpy as np
    from scipy.io import savemat

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n, s in (("train_32x32.mat", n_train, seed), ("test_32x32.mat", n_test, seed + 1)):
        x, y = _images(n, 3, 32, 10, s)
        savemat(root / name, {"X": np.ascontiguousarray(x.transpose(1, 2, 3, 0)), "y": np.where(y == 0, 10, y)[:, None].astype(np.uint8)})
        out[name] = md5(root / name)
    return out


def with_checksums(tv_class: type, checksums: dict[str, str]) -> type:
    """A subclass of the torchvision dataset class ``tv_class`` that verifies ``checksums``
    ({file name: md5}) instead of the official sums; same class name, so same folders."""
    attrs: dict = {}
    if hasattr(tv_class, "train_list"):  # CIFAR10 / CIFAR100
        attrs["train_list"] = [[f, checksums.get(f, m)] for f, m in tv_class.train_list]
        attrs["test_list"] = [[f, checksums.get(f, m)] for f, m in tv_class.test_list]
        attrs["meta"] = {**tv_class.meta, "md5": checksums.get(tv_class.meta["filename"], tv_class.meta["md5"])}
    if hasattr(tv_class, "split_list"):  # SVHN
        attrs["split_list"] = {k: [u, f, checksums.get(f, m)] for k, (u, f, m) in tv_class.split_list.items()}
    if hasattr(tv_class, "resources"):  # MNIST family (.gz archives)
        attrs["resources"] = [(u, checksums.get(Path(u).name, m)) for u, m in tv_class.resources]
    return type(tv_class.__name__, (tv_class,), attrs)


def write_image_folder(path, num_classes: int = 3, per_class: int = 6, size: int = 12, split: bool = False,
                       seed: int = 0) -> Path:
    """PNG images in ``path/<class>/`` (or ``path/train/<class>/`` and ``path/test/<class>/``)."""
    from PIL import Image

    path = Path(path)
    subsets = [("train", per_class, seed), ("test", max(2, per_class // 2), seed + 1)] if split else [("", per_class, seed)]
    for sub, n, s in subsets:
        x, y = _images(n * num_classes, 3, size, num_classes, s)
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            folder = path / sub / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img, "RGB").save(folder / f"{i:04d}.png")
    return path


def write_csv(path, n: int = 60, features: int = 4, num_classes: int = 3, label: str = "target", seed: int = 0) -> Path:
    """A header row, then ``features`` numeric columns and a string label column ``label``
    (values ``c0``, ``c1``, ...), class-dependent feature means."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    x = rng.normal(size=(n, features)) + y[:, None]
    lines = [",".join([f"f{j}" for j in range(features)] + [label])]
    lines += [",".join([f"{v:.6f}" for v in row] + [f"c{c}"]) for row, c in zip(x, y, strict=True)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_binary_npz(path, n: int = 120, features: int = 600, num_classes: int = 20, onehot: bool = True,
                     seed: int = 0) -> Path:
    """The tabular ``.npz`` format: ``features`` (n, features) of 0/1 and ``labels`` one-hot
    (n, num_classes) or integers (n,); each class switches on its own block of features."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    rng.shuffle(y)
    x = (rng.random((n, features)) < 0.1).astype(np.uint8)
    block = max(1, features // num_classes)
    for i, c in enumerate(y):
        x[i, c * block : (c + 1) * block] |= (rng.random(block) < 0.6).astype(np.uint8)
    labels = np.eye(num_classes, dtype=np.uint8)[y] if onehot else y.astype(np.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=x, labels=labels)
    return path
