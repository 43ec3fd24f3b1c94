"""``imagefolder:PATH``: images in one folder per class, read by ``torchvision.datasets.ImageFolder``.

Spec: ``imagefolder:PATH[,size=32][,channels=3][,test=0.2][,seed=0]``. Layout either
``PATH/train/<class>/*.png`` and ``PATH/test/<class>/*.png`` (both with the same class folders;
``val/``, ``valid/`` or ``validation/`` serve as the held-out split when there is no ``test/``;
any case), or ``PATH/<class>/*.png``, split here: stratified, ``test`` of the images, seeded by
``seed``; split-named folders in any other arrangement are refused. Any raster format PIL reads (png,
jpg, bmp, gif, tga, ...: ``RASTER``; other files are not read), found anywhere under a class folder
(ImageFolder walks sub-folders); hidden files and folders (a leading dot) are skipped, and are
never classes. Class indices
follow the folder names sorted as text (ImageFolder's ``class_to_idx``: ``10`` before ``2``). Images are converted to RGB (``channels=3``) or grayscale
(``channels=1``), resized to ``size`` x ``size`` when ``size`` is given (bilinear; without it
every image must have the size of the first one), scaled to [0, 1] and normalised per channel
with the training split's mean and standard deviation; ``info["input_bounds"]`` is the image of
[0, 1] under that normalisation. A relative PATH is looked up in the current directory, then
under the data directory. Everything is held in memory as float32 (about 12 KB per 32x32 RGB
image).
"""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import BenchError
from bench.core.memory import check_fits

from .common import channel_bounds, channel_std, normalize_images, parse_options, stratified_split

DEFAULTS = {"size": 0, "channels": 3, "test": 0.2, "seed": 0}
EXAMPLE = "imagefolder:data/flowers,size=32"


class ImageFolderDataset:
    name = "imagefolder"
    description = "Images in one folder per class (torchvision ImageFolder): imagefolder:PATH,size=32 (see docs/datasets.md)."
    default_recipe = {"epochs": 30, "lr": 0.05, "batch_size": 64}

    def load(self, root, download, arg=None):
        opts = parse_options(self.name, arg, DEFAULTS, path=True, example=EXAMPLE)
        if opts["channels"] not in (1, 3) or opts["size"] < 0:
            raise BenchError(f"Bad imagefolder options: channels must be 1 or 3 and size >= 0 (got {opts}).")
        base = Path(opts["path"]).expanduser()
        if not base.is_absolute() and not base.is_dir() and (Path(root) / base).is_dir():
            base = Path(root) / base
        if not base.is_dir():
            what = "is a file, not a folder" if base.exists() else "folder not found"
            raise BenchError(f"Dataset 'imagefolder': {what}: {base}. Give a folder with one sub-folder per "
                             f"class: {EXAMPLE} (relative paths: the current directory, then {root}).")
        import torch

        from bench.core.contracts import Splits

        pair = split_folders(base)
        if pair is not None:
            train_dir, test_dir = pair
            (train_x, train_y), classes = _read(train_dir, opts)
            (test_x, test_y), test_classes = _read(test_dir, opts)
            if test_classes != classes:
                raise BenchError(f"Dataset 'imagefolder': {train_dir} and {test_dir} have different class folders "
                                 f"({classes} vs {test_classes}); both need the same ones.")
            if train_x.shape[1:] != test_x.shape[1:]:  # it was blamed on the plugin, naming no folder (dataset audit)
                (_, h, w), (_, th, tw) = train_x.shape[1:], test_x.shape[1:]
                raise BenchError(f"Dataset 'imagefolder': the images of {train_dir} are {w}x{h}, those of {test_dir} "
                                 f"{tw}x{th}; give a common size, e.g. imagefolder:{opts['path']},size=32.")
            split = f"{train_dir.name}/ and {test_dir.name}/ folders"
        else:
            (x, y), classes = _read(base, opts)
            tr, te = stratified_split(y.numpy(), opts["test"], opts["seed"], "imagefolder")
            tr, te = torch.from_numpy(tr), torch.from_numpy(te)
            train_x, train_y, test_x, test_y = x[tr], y[tr], x[te], y[te]
            split = f"stratified, test fraction {opts['test']}, seed {opts['seed']}"
        if len(classes) < 2:
            raise BenchError(f"Dataset 'imagefolder': {base} has {len(classes)} class folder(s); need at least 2.")
        if len(set(train_y.tolist())) < len(classes):
            raise BenchError(f"Dataset 'imagefolder': some class folders under {base} have no training image.")
        train_x, test_x = train_x.float().div_(255.0), test_x.float().div_(255.0)
        mean = [float(v) for v in train_x.mean(dim=(0, 2, 3))]
        std = [channel_std(v) for v in train_x.std(dim=(0, 2, 3))] if len(train_x) > 1 else [1.0] * len(mean)
        normalize_images(train_x, mean, std)
        normalize_images(test_x, mean, std)
        return Splits(
            train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
            num_classes=len(classes), input_shape=tuple(int(d) for d in train_x.shape[1:]),
            info={"source": str(base), "classes": classes, "split": split,
                  "normalize": "per-channel mean/std of the training split, after scaling pixels to [0, 1]",
                  "mean": [round(v, 6) for v in mean], "std": [round(v, 6) for v in std],
                  "input_bounds": channel_bounds(mean, std), **{k: opts[k] for k in ("size", "channels")}},
        )


#: Folder names that mark a split, not a class (any case); the held-out one: test, else the first of the others.
TRAIN_NAMES = ("train", "training")
HELD_OUT_NAMES = ("test", "testing", "val", "valid", "validation")


def split_folders(base: Path) -> tuple[Path, Path] | None:
    """(train folder, held-out folder) when ``base`` holds split folders (``train/`` with ``test/``,
    or with ``val/``, ``valid/``, ``validation/`` when there is no ``test/``; any case); None for
    one folder per class. Split-named folders that do not make such a pair are refused: read as
    classes they made a 2-class dataset of the splits (``train/`` + ``val/``: exit 0, wrong task)."""
    subdirs = {d.name.lower(): d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")}
    trains = [subdirs[n] for n in TRAIN_NAMES if n in subdirs]
    held = [subdirs[n] for n in HELD_OUT_NAMES if n in subdirs]
    if not trains and not held:
        return None
    named = ", ".join(sorted(f"{d.name}/" for d in trains + held))
    if len(trains) == 1 and held:
        others = sorted(d.name for k, d in subdirs.items() if k not in TRAIN_NAMES + HELD_OUT_NAMES)
        if others:
            raise BenchError(f"Dataset 'imagefolder': {base} holds split folders ({named}) and other folders "
                             f"({', '.join(others)}); expected either split folders, each with one sub-folder per "
                             f"class, or one folder per class.")
        return trains[0], held[0]
    raise BenchError(f"Dataset 'imagefolder': {base} holds {named}, which name splits, not classes; expected "
                     f"train/ with test/ (or val/) beside it, each with one sub-folder per class, or one folder per "
                     f"class. Point imagefolder: at the folder that holds both splits, or rename the folder.")


#: Raster image extensions: torchvision's ImageFolder list and the other formats of 8-bit images
#: PIL reads (gif, tga, ...); files with another extension (a README, an .h5 or .eps file: PIL
#: registers stubs for those) are not images of the dataset.
RASTER = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".ppm", ".pgm", ".pbm", ".pnm", ".bmp", ".dib", ".tif",
                    ".tiff", ".webp", ".gif", ".tga", ".icb", ".vda", ".vst", ".pcx", ".sgi", ".rgb", ".rgba", ".bw",
                    ".ras", ".ico", ".icns", ".dds", ".xbm", ".xpm", ".psd", ".im", ".msp", ".qoi", ".jp2", ".j2k",
                    ".jpc", ".jpf", ".jpx", ".j2c"})


def _check_fits(count: int, pixels: int, opts: dict) -> None:
    """``count`` images of ``pixels`` values each fit the free memory: the uint8 images, their stack
    and split, the float32 copies and the normalisation's temporaries peak at about 27 bytes a value
    (26.7 measured on 200 images at size=256)."""
    check_fits(f"Dataset 'imagefolder' ({count} images of {pixels:,} values)", count * pixels * 27.0,
               f"give a smaller size, e.g. imagefolder:{opts['path']},size=32")


def _read(folder: Path, opts: dict):
    """(uint8 images (N, C, H, W), labels), class names: every image under ``folder`` (files with a
    raster image extension PIL reads, :data:`RASTER`; hidden files and folders are skipped). Until 2026-12-06 torchvision's own
    extension list dropped .gif/.tga/... files without a word, and a hidden folder (``.thumbnails``)
    was class 0, moving every label by one, exit 0 (found in review)."""
    import os

    import numpy as np
    import torch
    from PIL import Image
    from torchvision.datasets import ImageFolder

    Image.init()  # the raster image formats this PIL opens, by extension (not its stubs: .h5, .fits, .grib, ...)
    extensions = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN and ext in RASTER}

    def is_image(path: str) -> bool:
        """An image file by its extension, and not hidden or under a hidden folder of the class."""
        parts = Path(path).relative_to(folder).parts
        return not any(p.startswith(".") for p in parts) and Path(path).suffix.lower() in extensions

    class Folders(ImageFolder):
        def find_classes(self, directory):  # hidden folders (.thumbnails, .git) are not classes
            classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
            if not classes:
                raise FileNotFoundError(f"no class folders in {directory}")
            return classes, {name: i for i, name in enumerate(classes)}

    try:
        ds = Folders(str(folder), is_valid_file=is_image)
    except (FileNotFoundError, OSError) as exc:
        raise BenchError(f"Dataset 'imagefolder': no images in class folders under {folder} ({exc}). Expected "
                         f"{folder}/<class>/<image>.png, one folder per class.") from None
    mode, size = ("RGB" if opts["channels"] == 3 else "L"), opts["size"]
    if size:  # before the first resize: size=100000 asked for 4.8 TB on 40 images, and the kernel killed bench
        _check_fits(len(ds.samples), opts["channels"] * size * size, opts)
    images, shape = [], None
    for path, _ in ds.samples:
        try:
            with Image.open(path) as img:
                if img.mode in ("I", "F") or img.mode.startswith("I;16"):  # convert() would clip them at 255
                    raise BenchError(f"Dataset 'imagefolder': {path} has {img.mode} pixels (16-bit or wider); this "
                                     "loader reads 8-bit images (PIL would clip every value above 255). Convert the "
                                     "images to 8 bits, scaling their range, and point imagefolder: at those.")
                img = img.convert(mode)
                if size:
                    img = img.resize((size, size), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # the bomb guard: not an OSError
            raise BenchError(f"Dataset 'imagefolder': cannot read image {path} ({type(exc).__name__}: {exc}).") from None
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if shape is None:
            shape = arr.shape
            _check_fits(len(ds.samples), arr.size, opts)
        elif arr.shape != shape:
            raise BenchError(f"Dataset 'imagefolder': {path} is {arr.shape[2]}x{arr.shape[1]}, the first image "
                             f"{shape[2]}x{shape[1]}; give a common size, e.g. imagefolder:{opts['path']},size=32.")
        images.append(arr)
    x = torch.from_numpy(np.stack(images))
    y = torch.as_tensor(ds.targets, dtype=torch.long)
    return (x, y), list(ds.classes)
