"""The MNIST family's IDX files (LeCun et al., http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"):
a big-endian header of magic number 0x00000803 (unsigned-byte images, 3 dimensions) or
0x00000801 (labels, 1 dimension) and the dimension sizes as 32-bit integers, then the bytes.

Read here rather than by ``torchvision.datasets.MNIST``, which prefers an older torchvision's
``processed/training.pt`` and ``test.pt`` whenever both exist (the raw files, the ones checked and
recorded, were then not what was loaded) and reports a wrong magic number as a bare
AssertionError. The bytes read are those ``torchvision.datasets.mnist.read_image_file`` /
``read_label_file`` give (``tests/test_datasets.py`` compares them with torchvision's ``MNIST`` on
the same files; ``tests/test_dataset_layouts.py`` the processed files left beside them).
"""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import BenchError

#: magic number -> (what, dimensions)
KINDS = {"images": (0x00000803, 3), "labels": (0x00000801, 1)}


def read_idx(path: Path, kind: str, dataset: str):
    """uint8 ``(N, 28, 28)``-like images or int64 labels from the IDX file at ``path`` as a tensor;
    any fault in one line naming the file and what was expected."""
    import numpy as np
    import torch

    magic, ndim = KINDS[kind]
    where = f"Dataset '{dataset}': {path}"
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise BenchError(f"{where} is a folder; expected the unpacked official IDX {kind} file there.") from None
    except OSError as exc:  # a permission: it was blamed on a bug of the dataset plugin (dataset audit)
        raise BenchError(f"{where}: cannot read it ({exc.strerror or exc}). Check the file's permissions.") from None
    head = 4 + 4 * ndim
    if len(data) < head:
        raise BenchError(f"{where} is {len(data)} bytes, shorter than an IDX {kind} header ({head} bytes); expected "
                         f"the unpacked official file. Replace it.")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise BenchError(f"{where} starts with magic number 0x{found:08x}; an IDX {kind} file starts with "
                         f"0x{magic:08x}. Replace it with the unpacked official file (is it still gzipped, or the "
                         f"other file of the pair?).")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    size = int(np.prod(dims))
    if len(data) != head + size:
        raise BenchError(f"{where} declares {' x '.join(map(str, dims))} bytes of {kind} after its header but holds "
                         f"{len(data) - head}: cut short or padded. Replace it with the official file.")
    arr = np.frombuffer(data, dtype=np.uint8, offset=head).reshape(dims)
    return torch.from_numpy(arr.copy()) if kind == "images" else torch.from_numpy(arr.astype(np.int64))
