"""The dataset plugins read the real on-disk formats (written small here: nothing is downloaded),
through torchvision's classes with checksum verification on, and every missing or malformed
file fails with a clear BenchError naming it."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from rich.console import Console

import bench

from bench.nn.augment import augment_batch, random_crop
from bench.datasets.imagefolder import ImageFolderDataset
from bench.datasets.mnist1d import MNIST1D
from bench.datasets.tabular import CSVDataset, builtin_tabular_datasets
from bench.datasets.vision import TorchvisionImages, builtin_vision_datasets
from bench.core.errors import BenchError
from bench.core.recipe import build_recipe
from bench.nn.training import fit, train_epochs

VISION = {d.name: d for d in builtin_vision_datasets()}
TABULAR = {d.name: d for d in builtin_tabular_datasets()}


@pytest.fixture
def fx(data_files):
    """tests/data_files.py: small files in each real format."""
    return data_files


def verified(fx, name: str, checksums: dict) -> TorchvisionImages:
    """The plugin ``name`` reading through a torchvision subclass that verifies ``checksums``."""
    d = VISION[name]
    return TorchvisionImages(d.name, d.class_name, d.num_classes, d.input_shape, d.description, d.default_recipe,
                             tv_class=fx.with_checksums(d.tv_class(), checksums))


def denormalised(splits, part="train"):
    x = getattr(splits, f"{part}_x")
    m = torch.tensor(splits.info["mean"]).view(1, -1, 1, 1)
    s = torch.tensor(splits.info["std"]).view(1, -1, 1, 1)
    return x * s + m


# -- torchvision formats ---------------------------------------------------------------------


@pytest.mark.parametrize("name, cls", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_idx_files_load_as_torchvision_reads_them(tmp_path, name, cls, fx):
    fx.write_mnist(tmp_path, cls, n_train=50, n_test=20)
    s = VISION[name].load(str(tmp_path), False)
    ref = getattr(tvd, cls)(str(tmp_path), train=True)  # torchvision itself, on the same files
    assert s.input_shape == (1, 28, 28) and s.train_x.shape == (50, 1, 28, 28) and s.test_x.shape == (20, 1, 28, 28)
    assert torch.equal(s.train_y, ref.targets)
    assert torch.allclose(denormalised(s), ref.data.unsqueeze(1).float() / 255, atol=1e-5)
    assert abs(float(s.train_x.mean())) < 1e-4 and abs(float(s.train_x.std()) - 1) < 1e-3
    lo, hi = s.info["input_bounds"]
    assert lo == pytest.approx(float(s.train_x.min()), abs=0.05) and hi >= float(s.train_x.max()) - 1e-5
    assert s.info["source"] == f"IDX files in torchvision.datasets.{cls}'s layout, read by bench"  # not torchvision's reader


def test_gzipped_idx_files_are_verified_then_unpacked(tmp_path, fx):
    sums = fx.write_mnist(tmp_path, "KMNIST", n_train=30, n_test=10, gz=True)
    with pytest.raises(BenchError, match=r"train-images-idx3-ubyte\.gz does not match torchvision's md5"):
        VISION["kmnist"].load(str(tmp_path), False)  # the official checksums: the test's archives fail
    s = verified(fx, "kmnist", sums).load(str(tmp_path), False)
    assert s.train_x.shape == (30, 1, 28, 28)
    assert (tmp_path / "KMNIST/raw/train-images-idx3-ubyte").is_file()


def test_an_unpack_cut_short_leaves_no_half_file(tmp_path, fx, monkeypatch):
    """Ctrl-C while a hand-placed .gz was unpacked left a half-written idx file under the final
    name, and every later run refused it as "cut short" though the whole archive lay beside it
    (found in review): the file is written under a temporary name and renamed when whole."""
    import shutil

    sums = fx.write_mnist(tmp_path, "KMNIST", n_train=30, n_test=10, gz=True)
    dataset = verified(fx, "kmnist", sums)
    copy = shutil.copyfileobj

    def interrupted(src, dst, *args):
        dst.write(src.read(100))
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfileobj", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dataset.load(str(tmp_path), False)
    raw = tmp_path / "KMNIST/raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(sums)  # the archives only: no part, no half file
    monkeypatch.setattr(shutil, "copyfileobj", copy)
    assert dataset.load(str(tmp_path), False).train_x.shape == (30, 1, 28, 28)


@pytest.mark.parametrize("num_classes, name", [(10, "cifar10"), (100, "cifar100")])
def test_cifar_batches_load_with_checksums_verified(tmp_path, num_classes, name, fx):
    sums = fx.write_cifar(tmp_path, num_classes, per_batch=30, n_test=20)
    with pytest.raises(BenchError, match=r"checksum mismatch for .*(data_batch_1|train) \(expected md5"):
        VISION[name].load(str(tmp_path), False)  # production path: torchvision's published md5 sums
    plugin = verified(fx, name, sums)
    s = plugin.load(str(tmp_path), False)
    ref = plugin.tv_class()(str(tmp_path), train=True)  # the same subclass through torchvision directly
    assert s.train_x.shape == (150, 3, 32, 32) and s.num_classes == num_classes
    assert s.train_y.tolist() == list(ref.targets)
    assert torch.allclose(denormalised(s), torch.from_numpy(ref.data).permute(0, 3, 1, 2).float() / 255, atol=1e-5)
    assert len(s.info["input_bounds"][0]) == 3
    assert plugin.default_recipe["augment"] == "crop-flip"
    # a byte changed after the checksums were taken: torchvision's check catches it
    folder = tmp_path / ("cifar-10-batches-py" if num_classes == 10 else "cifar-100-python")
    batch = folder / ("data_batch_2" if num_classes == 10 else "test")
    data = bytearray(batch.read_bytes())
    data[-10] ^= 0xFF
    batch.write_bytes(bytes(data))
    with pytest.raises(BenchError, match=rf"checksum mismatch for {batch}"):
        plugin.load(str(tmp_path), False)


def test_svhn_mat_files_load_with_label_10_as_digit_0(tmp_path, fx):
    sums = fx.write_svhn(tmp_path / "SVHN", n_train=40, n_test=20)
    with pytest.raises(BenchError, match="checksum mismatch for .*train_32x32.mat"):
        VISION["svhn"].load(str(tmp_path), False)
    s = verified(fx, "svhn", sums).load(str(tmp_path), False)
    from scipy.io import loadmat

    raw = loadmat(tmp_path / "SVHN/train_32x32.mat")["y"].ravel()
    assert 10 in raw and s.train_y.tolist() == [0 if v == 10 else int(v) for v in raw]
    assert s.train_x.shape == (40, 3, 32, 32)
    assert VISION["svhn"].default_recipe["augment"] == "crop"


@pytest.mark.parametrize("name", sorted(VISION))
def test_missing_torchvision_files_name_the_path_and_the_download_command(tmp_path, name):
    with pytest.raises(BenchError) as err:
        VISION[name].load(str(tmp_path), False)
    msg = str(err.value)
    first = VISION[name].expected_files(str(tmp_path))[0][0]
    assert "missing file(s)" in msg and str(first) in msg
    assert f"bench run --dry-run --dataset {name} --download --data-dir {tmp_path}" in msg


def test_malformed_files_give_clear_errors(tmp_path, fx):
    # MNIST: a wrong magic number
    raw = tmp_path / "MNIST" / "raw"
    fx.write_mnist(tmp_path, "MNIST", n_train=20, n_test=10)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x00\x00garbage")
    with pytest.raises(BenchError, match=r"train-images-idx3-ubyte is 11 bytes, shorter than an IDX images header"):
        VISION["mnist"].load(str(tmp_path), False)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(12))  # a labels file's magic
    with pytest.raises(BenchError, match=r"train-images-idx3-ubyte starts with magic number 0x00000801; an IDX "
                                         r"images file starts with 0x00000803"):
        VISION["mnist"].load(str(tmp_path), False)
    fx.write_mnist(tmp_path, "MNIST", n_train=20, n_test=10)
    (raw / "t10k-labels-idx1-ubyte").write_bytes((raw / "t10k-labels-idx1-ubyte").read_bytes()[:-3])
    with pytest.raises(BenchError, match=r"t10k-labels-idx1-ubyte declares 10 bytes of labels after its header but "
                                         r"holds 7: cut short"):
        VISION["mnist"].load(str(tmp_path), False)
    # MNIST: images and labels disagree in count
    fx.write_mnist(tmp_path, "MNIST", n_train=20, n_test=10)
    (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05" + bytes(5))
    with pytest.raises(BenchError, match=r"images of shape \(20, 1, 28, 28\) and 5 labels"):
        VISION["mnist"].load(str(tmp_path), False)
    # CIFAR: right checksum, but not a pickle
    sums = fx.write_cifar(tmp_path, 10, per_batch=4, n_test=4)
    (tmp_path / "cifar-10-batches-py/test_batch").write_bytes(b"not a pickle")
    sums["test_batch"] = fx.md5(tmp_path / "cifar-10-batches-py/test_batch")
    with pytest.raises(BenchError, match="could not read the files under"):
        verified(fx, "cifar10", sums).load(str(tmp_path), False)
    # CIFAR-100 labels out of range for the dataset
    sums = fx.write_cifar(tmp_path / "c100", 100, per_batch=30, n_test=4)
    path = tmp_path / "c100/cifar-100-python/test"
    entry = pickle.loads(path.read_bytes())
    entry["fine_labels"][0] = 150
    path.write_bytes(pickle.dumps(entry))
    sums["test"] = fx.md5(path)
    with pytest.raises(BenchError, match=r"test labels .* span \[\d+, 150\]; expected 0..99"):
        verified(fx, "cifar100", sums).load(str(tmp_path / "c100"), False)
    # SVHN: not a .mat file
    sums = fx.write_svhn(tmp_path / "SVHN")
    (tmp_path / "SVHN/test_32x32.mat").write_bytes(b"junk")
    sums["test_32x32.mat"] = fx.md5(tmp_path / "SVHN/test_32x32.mat")
    with pytest.raises(BenchError, match="could not read"):
        verified(fx, "svhn", sums).load(str(tmp_path), False)
    with pytest.raises(BenchError, match=r"Bad cifar10 option 'x=1': expected KEY=VALUE with KEY one of holdout"):
        VISION["cifar10"].load(str(tmp_path), False, "x=1")
    with pytest.raises(BenchError, match=r"holdout must lie in \[0, 1\)"):
        VISION["cifar10"].load(str(tmp_path), False, "holdout=1.5")
    with pytest.raises(BenchError, match=r"holdout_seed in 0\.\.2\*\*32-1 \(got .*holdout_seed=99999999999\)"):  # NumPy's raw error, blaming the plugin
        VISION["cifar10"].load(str(tmp_path), False, "holdout=0.1,holdout_seed=99999999999")


def test_cifar_holdout_drops_salun_s_stratified_tenth(tmp_path, fx):
    """``cifar10:holdout=0.1`` keeps the images SalUn's loader keeps: per class in ascending
    order, ``int(0.1 * n_c)`` drawn by one RandomState(2) (Unlearn-Saliency dataset.py)."""
    sums = fx.write_cifar(tmp_path, 10, per_batch=60, n_test=20)
    plugin = verified(fx, "cifar10", sums)
    full = plugin.load(str(tmp_path), False)
    part = plugin.load(str(tmp_path), False, "holdout=0.1")
    y = full.train_y.numpy()
    rng = np.random.RandomState(2)
    dropped = set()
    for c in range(10):
        members = np.where(y == c)[0]
        dropped |= set(rng.choice(members, int(0.1 * len(members)), replace=False).tolist())
    kept = [i for i in range(len(y)) if i not in dropped]
    assert len(dropped) == sum(int(0.1 * int((y == c).sum())) for c in range(10)) > 0
    assert part.train_y.tolist() == y[kept].tolist()
    assert torch.allclose(denormalised(part), denormalised(full)[kept], atol=1e-5)
    assert part.test_y.tolist() == full.test_y.tolist()
    assert part.info["held_out"] == len(dropped) and part.info["holdout_seed"] == 2
    other = plugin.load(str(tmp_path), False, "holdout=0.1,holdout_seed=3")
    assert len(other.train_y) == len(part.train_y) and other.train_y.tolist() != part.train_y.tolist()


# -- mnist1d ---------------------------------------------------------------------------------


def test_mnist1d_is_generated_locally_and_leaves_global_generators_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.random.seed(123)
    expected_next = np.random.RandomState(123).rand()
    s = MNIST1D().load(str(tmp_path), False)
    assert np.random.rand() == expected_next  # make_dataset's seeding was undone
    assert s.train_x.shape == (4000, 40) and s.test_x.shape == (1000, 40) and s.num_classes == 10
    assert sorted(s.train_y.unique().tolist()) == list(range(10))
    lo, hi = s.info["input_bounds"]
    assert lo == float(s.train_x.min()) and hi == float(s.train_x.max())
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or pickled into the working directory
    small = MNIST1D().load(str(tmp_path), False, "n=1000,seed=1")
    assert small.train_x.shape == (800, 40) and not torch.equal(small.train_x[:10], s.train_x[:10])
    with pytest.raises(BenchError, match="Bad mnist1d option 'm=3'"):
        MNIST1D().load(str(tmp_path), False, "m=3")


# -- tabular ---------------------------------------------------------------------------------


@pytest.mark.parametrize("onehot", [True, False])
def test_purchase_npz_with_the_paper_split(tmp_path, onehot, fx):
    fx.write_binary_npz(tmp_path / "purchase/purchase20.npz", n=120, onehot=onehot)
    s = TABULAR["purchase20"].load(str(tmp_path), False)
    raw = np.load(tmp_path / "purchase/purchase20.npz")
    y = raw["labels"].argmax(1) if onehot else raw["labels"]
    # PRUNE's split: train rows [0, floor(0.8 N)), test rows after the next one
    assert s.train_x.shape == (96, 600) and s.test_x.shape == (23, 600)
    assert torch.equal(s.train_x, torch.from_numpy(raw["features"][:96].astype(np.float32)))
    assert s.train_y.tolist() == y[:96].tolist() and s.test_y.tolist() == y[97:].tolist()
    assert s.info["input_bounds"] == (0.0, 1.0) and "[0, 96) train, [97, 120) test" in s.info["split"]
    assert TABULAR["purchase20"].default_recipe["lr"] == 1e-3 and TABULAR["purchase20"].default_recipe["epochs"] == 150


def test_tabular_npz_explicit_split_and_every_bad_file(tmp_path):
    path = tmp_path / "texas/texas100.npz"
    with pytest.raises(BenchError, match=rf"file not found: {path}\. .*--download does not fetch it"):
        TABULAR["texas100"].load(str(tmp_path), False)
    rng = np.random.default_rng(0)
    x = (rng.random((300, 6169)) < 0.05).astype(np.uint8)
    y = np.arange(300) % 100
    np.savez(path.parent.mkdir(parents=True) or path, features=x, labels=y, train_idx=np.arange(0, 300, 2),
             test_idx=np.arange(1, 300, 2))
    s = TABULAR["texas100"].load(str(tmp_path), False)
    assert s.train_y.tolist() == y[::2].tolist() and s.info["split"] == "train_idx/test_idx from the file"
    p20 = tmp_path / "purchase/purchase20.npz"
    p20.parent.mkdir()
    cases = [
        (dict(features=x[:, :600] * 2, labels=y % 20), "features must be binary"),
        (dict(features=x[:, :500], labels=y % 20), r"features have shape \(300, 500\).*expected \(N, 600\)"),
        (dict(features=x[:, :600], labels=y), r"labels span \[0, 99\]; expected 0..19"),
        (dict(features=x[:, :600], labels=np.eye(19)[y % 19]), r"one-hot of shape \(N, 20\)"),
        # soft labels of the right shape were told their shape was wrong
        (dict(features=x[:, :600], labels=np.full((300, 20), 0.05)),
         r"one-hot \(a single 1 per row, the rest 0\); 300 of 300 rows are not, the first row 0: \[0\.05"),
        (dict(data=x[:, :600]), r"expected arrays 'features' and 'labels'.*\['data'\]"),
        (dict(features=x[:, :600], labels=y % 20, train_idx=np.arange(10), test_idx=np.arange(5, 15)),
         "must be disjoint"),
        # a repeated training row would stay in the retain set when its other copy is forgotten
        (dict(features=x[:, :600], labels=y % 20, train_idx=np.r_[np.arange(100), np.arange(50)],
              test_idx=np.arange(100, 150)), "repeat a row; each row may appear once"),
        (dict(features=x[:, :600], labels=y % 20, train_idx=np.arange(100)), "holds train_idx but not test_idx"),
    ]
    for arrays, message in cases:
        np.savez(p20, **arrays)
        with pytest.raises(BenchError, match=message):
            TABULAR["purchase20"].load(str(tmp_path), False)
    # NumPy took a text file for a pickle and advised loading it unsafely (an auditor's finding)
    for content, kind in ((b"not a zip", "not a zip archive"), (b"", "empty")):
        p20.write_bytes(content)
        with pytest.raises(BenchError, match=rf"not an \.npz file \({kind}\); save it with np\.savez") as err:
            TABULAR["purchase20"].load(str(tmp_path), False)
        assert "allow_pickle" not in str(err.value)
    np.save(tmp_path / "x.npy", x)
    p20.write_bytes((tmp_path / "x.npy").read_bytes())
    with pytest.raises(BenchError, match=r"not an \.npz file \(a \.npy array\)"):
        TABULAR["purchase20"].load(str(tmp_path), False)
    np.savez(p20, features=np.array([object()] * 3, dtype=object), labels=y[:3])
    with pytest.raises(BenchError, match="holds object arrays .* which bench does not load") as err:
        TABULAR["purchase20"].load(str(tmp_path), False)
    assert "allow_pickle" not in str(err.value)
    real_open = open

    def refused(path, *args, **kwargs):  # root reads any file: a permission error as a patched open()
        if str(path) == str(p20):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("builtins.open", refused)
        with pytest.raises(BenchError, match=r"not a readable \.npz file \(PermissionError"):
            TABULAR["purchase20"].load(str(tmp_path), False)
    p20.write_bytes(b"PK\x03\x04 a broken zip")
    with pytest.raises(BenchError, match="not a readable .npz file"):
        TABULAR["purchase20"].load(str(tmp_path), False)


def test_csv_with_a_named_label_column(tmp_path, monkeypatch, fx):
    path = fx.write_csv(tmp_path / "data/train.csv", n=60, features=4, num_classes=3, label="target")
    s = CSVDataset().load(str(tmp_path), False, f"{path},label=target")
    assert s.num_classes == 3 and s.input_shape == (4,) and len(s.train_y) == 48 and len(s.test_y) == 12
    assert s.info["classes"] == ["c0", "c1", "c2"] and s.info["features"] == ["f0", "f1", "f2", "f3"]
    assert s.train_x.mean(0).abs().max() < 1e-5  # standardised with the training split
    assert torch.bincount(s.train_y).tolist() == [16, 16, 16]  # stratified
    lo, hi = s.info["input_bounds"]
    assert lo == s.train_x.min(0).values.tolist() and hi == s.train_x.max(0).values.tolist()
    m = CSVDataset().load(str(tmp_path), False, f"{path},label=target,normalize=minmax,test=0.5")
    assert m.info["input_bounds"] == (0.0, 1.0) and float(m.train_x.min()) == 0 and float(m.train_x.max()) == 1
    monkeypatch.chdir(tmp_path / "data")
    assert torch.equal(CSVDataset().load(str(tmp_path), False, "train.csv,label=target").train_x, s.train_x)
    monkeypatch.chdir(tmp_path)  # relative to the data directory as the fallback
    assert torch.equal(CSVDataset().load(str(tmp_path / "data"), False, "train.csv,label=target").test_x, s.test_x)
    # numeric labels sort numerically (10 after 9)
    num = tmp_path / "num.csv"
    num.write_text("a,label\n" + "".join(f"{i},{[9, 10][i % 2]}\n" for i in range(20)))
    assert CSVDataset().load(str(tmp_path), False, str(num)).info["classes"] == ["9", "10"]
    # classes by value: "2" and "2.0" are one class (they were two)
    num.write_text("a,label\n" + "".join(f"{i},{['2', '2.0', '9'][i % 3]}\n" for i in range(30)))
    same = CSVDataset().load(str(tmp_path), False, str(num))
    assert same.info["classes"] == ["2", "9"] and same.num_classes == 2


def test_csv_errors(tmp_path, fx):
    good = fx.write_csv(tmp_path / "g.csv", label="target")
    cases = {
        str(tmp_path / "nope.csv"): r"file not found: .*nope\.csv",
        f"{good}": r"no label column 'label'\. Columns: f0, f1, f2, f3, target\. Name it with csv:.*,label=COLUMN",
        f"{good},label=target,normalize=zscore": "normalize=zscore: expected one of standard, minmax, none",
        f"{good},label=target,test=1.5": r"test fraction must lie in \(0, 1\)",
        f"{good},label=target,colour=red": "Bad csv option 'colour=red'",
    }
    for arg, message in cases.items():
        with pytest.raises(BenchError, match=message):
            CSVDataset().load(str(tmp_path), False, arg)
    bad = tmp_path / "bad.csv"
    for text, message in [
        ("a,b,label\n1,2,x\n3,oops,y\n", r"line 3, column 'b': 'oops' is not a number"),
        ("a,b,label\n1,2,x\n3,1_000,y\n", r"line 3, column 'b': '1_000' is not a number"),  # float() read 1000
        ("a,b,label\n1,2,x\n3,\u0661\u0660,y\n", r"line 3, column 'b': '\u0661\u0660' is not a number"),  # and 10
        ("a,b,label\n1,2,x\n3,y\n", "line 3 has 2 fields; the header has 3"),
        ("a,label\n1,x\n2,x\n", "has 1 distinct value"),
        ("a,label\n", "needs a header row and at least one data row"),
        ("a,label\nnan,x\n1,y\n", "must be finite"),
    ]:
        bad.write_text(text)
        with pytest.raises(BenchError, match=message):
            CSVDataset().load(str(tmp_path), False, str(bad))
    bad.write_bytes(b"\xff\xfe\x00\x00binary")
    with pytest.raises(BenchError, match="cannot read .* as CSV text"):
        CSVDataset().load(str(tmp_path), False, str(bad))


# -- image folders ---------------------------------------------------------------------------


def test_image_folders_flat_and_split(tmp_path, fx):
    flat = fx.write_image_folder(tmp_path / "flat", num_classes=3, per_class=10, size=12)
    s = ImageFolderDataset().load(str(tmp_path), False, str(flat))
    assert s.num_classes == 3 and s.input_shape == (3, 12, 12) and len(s.train_y) + len(s.test_y) == 30
    assert s.info["classes"] == ["class_0", "class_1", "class_2"]
    split = fx.write_image_folder(tmp_path / "split", num_classes=2, per_class=6, size=10, split=True)
    u = ImageFolderDataset().load(str(tmp_path), False, str(split))
    ref = tvd.ImageFolder(str(split / "train"))  # the pixels and labels are ImageFolder's
    first = np.asarray(ref.loader(ref.samples[0][0]), dtype=np.float32).transpose(2, 0, 1) / 255
    assert torch.allclose(denormalised(u)[0], torch.from_numpy(first), atol=1e-5)
    assert u.train_y.tolist() == ref.targets
    t = ImageFolderDataset().load(str(tmp_path), False, f"{split},size=16,channels=1")
    assert t.input_shape == (1, 16, 16) and len(t.train_y) == 12 and len(t.test_y) == 6
    assert t.info["split"] == "train/ and test/ folders" and isinstance(t.info["input_bounds"][0], float)


def test_image_folder_errors(tmp_path, fx):
    with pytest.raises(BenchError, match=r"folder not found: .*missing\. Give a folder with one sub-folder per class"):
        ImageFolderDataset().load(str(tmp_path), False, str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="no images in class folders under"):
        ImageFolderDataset().load(str(tmp_path), False, str(tmp_path / "empty"))
    mixed = fx.write_image_folder(tmp_path / "mixed", num_classes=2, per_class=4, size=12)
    from PIL import Image

    Image.new("RGB", (20, 14)).save(mixed / "class_1" / "big.png")
    with pytest.raises(BenchError, match=r"big\.png is 20x14, the first image 12x12; give a common size, e\.g\. .*,size=32"):
        ImageFolderDataset().load(str(tmp_path), False, str(mixed))
    assert ImageFolderDataset().load(str(tmp_path), False, f"{mixed},size=8").input_shape == (3, 8, 8)
    (mixed / "class_0" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(BenchError, match=r"cannot read image .*broken\.png"):
        ImageFolderDataset().load(str(tmp_path), False, f"{mixed},size=8")
    split = fx.write_image_folder(tmp_path / "split", num_classes=2, per_class=4, split=True)
    (split / "test" / "class_1").rename(split / "test" / "class_9")
    with pytest.raises(BenchError, match="different class folders"):
        ImageFolderDataset().load(str(tmp_path), False, str(split))


# -- augmentation and placement ----------------------------------------------------------------


def test_crop_flip_gives_shifted_or_mirrored_windows_reproducibly():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = augment_batch(x, "crop-flip", torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    again = augment_batch(x, "crop-flip", torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    for i in range(2):  # every output is one window of the padded image, maybe mirrored
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2)) for w in windows)
    many = random_crop(torch.randn(64, 1, 8, 8), torch.Generator().manual_seed(1))
    assert len({tuple(m.flatten()[:3].tolist()) for m in many}) > 1  # offsets differ per image
    with pytest.raises(BenchError, match="needs image batches"):
        augment_batch(torch.randn(4, 10), "crop-flip", torch.Generator())
    with pytest.raises(BenchError, match="Unknown augment 'rotate'"):
        build_recipe({"augment": "rotate"})


def _setup(seed=0):
    torch.manual_seed(seed)
    x, y = torch.randn(90, 1, 8, 8), torch.randint(0, 3, (90,))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    return model, x, y


def test_augmentation_is_seeded_and_off_means_untouched(monkeypatch):
    recipe = build_recipe({"epochs": 2, "batch_size": 16, "augment": "crop-flip"})
    a, x, y = _setup()
    b, _, _ = _setup()
    c, _, _ = _setup()
    fit(a, x, y, recipe, seed=3)
    fit(b, x, y, recipe, seed=3)
    fit(c, x, y, build_recipe({"epochs": 2, "batch_size": 16}), seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))
    # augment=none never reaches the augmentation code (no random draw): the old loop, unchanged
    import bench.nn.training as training

    monkeypatch.setattr(training, "augment_batch", lambda *a: pytest.fail("augmentation ran with augment=none"))
    d, _, _ = _setup()
    fit(d, x, y, build_recipe({"epochs": 2, "batch_size": 16}), seed=3)
    assert all(torch.equal(p, q) for p, q in zip(c.parameters(), d.parameters(), strict=True))


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_streaming_through_a_dataloader_trains_on_the_same_batches(workers):
    kw = dict(epochs=2, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, schedule="cosine", seed=5)
    a, x, y = _setup()
    b, _, _ = _setup()
    train_epochs(a, x, y, **kw)
    train_epochs(b, x, y, workers=workers, **kw)  # batches through a DataLoader: in process (0) or two worker processes
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_placement_keeps_everything_on_the_cpu_and_limits_the_gpu(monkeypatch):
    from bench.nn import training

    t = torch.zeros(10)
    assert training.device_data_limit("cpu") is None and training.place([t], "cpu")[0] is t

    class Props:
        total_memory = 4000

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: Props)
    assert training.device_data_limit("cuda") == 1000  # DEVICE_DATA_FRACTION of the GPU's memory


@pytest.mark.parametrize("assigned, limit", [(0.25, 250), (0.5, 500), (1.0, 1000), (2.0, 1000), (None, 1000)])
def test_packed_trials_keep_their_share_of_the_gpu_for_data(monkeypatch, assigned, limit):
    """A trial holding a quarter of a GPU (Ray's assigned GPU resource) keeps a quarter of the
    whole-GPU rule for its data: four packed trials' data together take what one trial's may
    (each took a quarter of the GPU before, the whole GPU together). Outside a Ray task (None:
    the driver, --executor local) and with whole GPUs the rule is one GPU's."""
    import sys
    import types

    from bench.nn import training

    class Props:
        total_memory = 4000

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: Props)
    resources = {} if assigned is None else {"GPU": assigned, "CPU": 1.0}
    context = types.SimpleNamespace(get_assigned_resources=lambda: resources)
    fake_ray = types.SimpleNamespace(is_initialized=lambda: True, get_runtime_context=lambda: context)
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    assert training.device_data_limit("cuda") == limit
    monkeypatch.delitem(sys.modules, "ray")  # a process that never imported Ray
    assert training.device_data_limit("cuda") == 1000


# -- models ----------------------------------------------------------------------------------


def test_resnet18_cifar_has_the_cifar_stem():
    from bench.nn.resnet_cifar import ResNet18Cifar

    model = ResNet18Cifar().create(10, (3, 32, 32))
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # kuangliu/pytorch-cifar's ResNet18
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    model.eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(BenchError, match="needs image inputs"):
        ResNet18Cifar().create(10, (40,))


# -- end to end, in process --------------------------------------------------------------------


@pytest.mark.slow
def test_mnist1d_run_retrain_ft_ga_offline(tmp_path, monkeypatch):
    import mlflow

    from bench.core.options import RunOptions
    from bench.run.runner import run

    monkeypatch.chdir(tmp_path)
    opts = RunOptions(executor="local", datasets=["mnist1d"], methods="retrain,ft,ga", models=["mlp:64"],
                      recipe={"epochs": 4}, forgets=["random:100"], cache_dir=str(tmp_path / "cache"),
                      data_dir=str(tmp_path / "data"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = io.StringIO()
    assert run(opts, Console(file=out, width=200)) == 0, out.getvalue()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["unlearning-bench"])
    kids = df[df["tags.bench.role"] == "trial"].set_index("tags.bench.method")
    assert sorted(kids.index) == ["ft", "ga", "retrain"] and (kids["status"] == "FINISHED").all()
    assert (kids["metrics.original_test_acc"] > 0.3).all()  # well above chance (0.1) after 4 epochs
    assert kids.loc["retrain", "params.data.source"] == "mnist1d.data.make_dataset"
    assert kids.loc["retrain", "params.recipe.optimizer"] == "adam"  # the dataset's default recipe
    assert kids.loc["retrain", "params.recipe.augment"] == "none"
    assert not (tmp_path / "data").exists()  # nothing downloaded or written



class _CifarFiles:
    """Registers the cifar10 plugin, reading through a checksum subclass, as ``cifar10-files``."""

    def __init__(self, plugin):
        self.plugin = plugin

    @bench.hookimpl
    def register_datasets(self, register):
        register(self.plugin)


@pytest.mark.slow
def test_cifar_files_run_through_the_harness_with_augmentation(tmp_path, monkeypatch, fx):
    import mlflow

    from bench.core.options import RunOptions
    from bench.core.plugins import register_plugin, unregister_plugin
    from bench.run.runner import run

    sums = fx.write_cifar(tmp_path / "data", 10, per_batch=40, n_test=40)
    d = verified(fx, "cifar10", sums)
    d.name = "cifar10-files"
    plugin = _CifarFiles(d)
    register_plugin(plugin)
    try:
        monkeypatch.chdir(tmp_path)
        opts = RunOptions(executor="local", datasets=["cifar10-files"], methods="ft", models=["cnn:8,16"],
                          recipe={"epochs": 2, "lr": 0.05}, forgets=["random:20"], data_dir=str(tmp_path / "data"),
                          cache_dir=str(tmp_path / "cache"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        out = io.StringIO()
        assert run(opts, Console(file=out, width=200)) == 0, out.getvalue()
    finally:
        unregister_plugin(plugin)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["unlearning-bench"])
    kid = df[df["tags.bench.role"] == "trial"].iloc[0]
    assert kid["status"] == "FINISHED" and kid["params.recipe.augment"] == "crop-flip"  # the dataset's recipe
    assert kid["params.recipe.epochs"] == "2" and kid["params.recipe.batch_size"] == "128"
    assert kid["params.data.source"] == "torchvision.datasets.CIFAR10" and kid["params.data.mean"].startswith("[")
    assert kid["params.data.input_bounds"].startswith("([")  # per-channel lows and highs


@pytest.mark.slow
def test_cli_run_on_mnist1d_offline(tmp_path, run_bench, store_args):
    """The issue's command through the console script and MLflow, with no network. The local executor:
    Ray's workers get the data from the driver (the object store) and never load a dataset, so a Ray
    run adds nothing here that tests/test_e2e_ray.py does not check (and cost this test ~25 s)."""
    (tmp_path / "cache").mkdir()
    proc = run_bench("run", "--dataset", "mnist1d", "--methods", "retrain,ft,ga", "--model", "mlp:64",
                     "--recipe", "epochs=3", "--data-dir", str(tmp_path / "data"), "--executor", "local",
                     *store_args(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["unlearning-bench"])
    kids = df[df["tags.bench.role"] == "trial"]
    assert sorted(kids["tags.bench.method"]) == ["ft", "ga", "retrain"] and (kids["status"] == "FINISHED").all()
    assert (kids["params.dataset"] == "mnist1d").all() and (kids["metrics.test_acc"] > 0.2).all()
    assert not (tmp_path / "data").exists() and not list(tmp_path.glob("*.pkl"))


@pytest.mark.slow  # a fresh interpreter (the quick loop was at 120 s)
def test_digits_loads_without_scikit_learn_and_matches_its_loader_and_split():
    """digits reads scikit-learn's CSV file and the written-out split without importing scikit-learn
    (2.5 s on the path of every run); the arrays and the split equal load_digits and
    train_test_split(stratify, random_state=0)."""
    import subprocess
    import sys

    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from bench.datasets.digits import Digits

    code = ("import sys\nfrom bench.datasets.digits import Digits\nDigits().load(None, False, None)\n"
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stdout + out.stderr
    s = Digits().load(None, False, None)
    d = load_digits()
    tr, te = train_test_split(np.arange(len(d.target)), test_size=0.2, stratify=d.target, random_state=0)
    tr.sort()
    te.sort()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    assert np.array_equal(s.train_x.numpy(), x[tr]) and np.array_equal(s.test_x.numpy(), x[te])
    assert np.array_equal(s.train_y.numpy(), d.target[tr]) and np.array_equal(s.test_y.numpy(), d.target[te])


def test_imagefolder_refuses_16_bit_images(tmp_path):
    """PIL's convert() clips 16-bit pixels at 255: every value above read as 255 (constant inputs)."""
    from PIL import Image

    from bench.datasets.imagefolder import ImageFolderDataset

    for c in ("a", "b"):
        (tmp_path / "img16" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 1000 * (i + 1), np.uint16)).save(tmp_path / "img16" / c / f"{i}.png")
    with pytest.raises(BenchError, match=r"has I;16 pixels \(16-bit or wider\); this loader reads 8-bit images"):
        ImageFolderDataset().load(str(tmp_path), False, f"{tmp_path / 'img16'},channels=1")


def test_a_class_request_on_named_classes_says_which_label_it_forgets():
    """class:2 on a CSV labelled 1, 2, 3 forgets label '3' (classes are numbered in sorted label
    order): the dry run said so, a run did not (an auditor's finding)."""
    from types import SimpleNamespace

    from bench.core.forget import parse_forget
    from bench.run.plan import class_label_notes

    named = {"csv:one.csv": SimpleNamespace(info={"classes": ["1", "2", "3"]})}
    numbered = {"digits": SimpleNamespace(info={"classes": [str(k) for k in range(10)]}), "synthetic": SimpleNamespace(info={})}
    assert class_label_notes([parse_forget("class:2")], named) == [
        "note: class:2 on csv:one.csv: class 2 is '3' (classes are numbered in sorted label order: 1, 2, 3)"]
    assert class_label_notes([parse_forget("seq:class:0,2")], named) == [
        "note: seq:class:0,2 on csv:one.csv: class 0 is '1', class 2 is '3' (classes are numbered in sorted label order: 1, 2, 3)"]
    assert class_label_notes([parse_forget("class:2"), parse_forget("random:10%")], numbered) == []


def test_a_datasets_info_of_tensors_and_arrays_is_recorded_as_their_values():
    """A plugin's Splits.info holding a tensor was logged as its repr ('tensor([0.5000, 0.2000])'),
    the docs saying JSON values (an auditor's finding); JSON values are kept as they were."""
    import numpy as np

    from bench.run.plan import data_params

    got = data_params({"mean": torch.tensor([0.5, 0.25]), "std": np.array([1.0, 2.0]), "n": np.int64(3),
                       "bounds": (0.0, 1.0), "source": "x", "long": list(range(200))})
    assert got["mean"] == [0.5, 0.25] and got["std"] == [1.0, 2.0] and got["n"] == 3
    assert got["bounds"] == (0.0, 1.0) and got["source"] == "x"  # JSON-native: untouched (trial keys unchanged)
    assert got["long"].endswith("... (890 characters)")


def test_csv_standardises_columns_near_the_float64_limit(tmp_path):
    """Values near 1e308: the std overflowed to inf and the column became zeros, exit 0 (hostile
    audit, 2026-12-07). Each such column is scaled by its largest magnitude first; ordinary columns
    are standardised exactly as before (the same bits)."""
    import numpy as np

    from bench.datasets.tabular import CSVDataset

    rows = ["a,b,label"] + [f"{(1e308, -1e308, 5e307)[i % 3]},{i * 0.5},{i % 2}" for i in range(60)]
    (tmp_path / "big.csv").write_text("\n".join(rows) + "\n")
    sp = CSVDataset().load(None, False, f"{tmp_path / 'big.csv'}")
    a, b = sp.train_x[:, 0].numpy(), sp.train_x[:, 1].numpy()
    assert np.isfinite(a).all() and abs(float(a.std()) - 1) < 0.05 and len(np.unique(a)) == 3  # not zeros
    assert abs(float(b.mean())) < 1e-6 and abs(float(b.std()) - 1) < 1e-5
    # the ordinary column comes out as it does without the big one beside it: the same bits
    (tmp_path / "small.csv").write_text("\n".join(["b,label"] + [f"{i * 0.5},{i % 2}" for i in range(60)]) + "\n")
    alone = CSVDataset().load(None, False, f"{tmp_path / 'small.csv'}")
    assert np.array_equal(alone.train_x[:, 0].numpy(), b)


def test_csv_refuses_a_test_row_far_outside_the_training_rows(tmp_path):
    """A value near 1e300 in a test row only: standardised by the training rows it overflowed float32
    with a raw NumPy warning, then the run blamed the dataset plugin (diff review, 2026-12-07)."""
    import warnings

    import numpy as np

    from bench.core.errors import BenchError
    from bench.datasets.common import stratified_split
    from bench.datasets.tabular import CSVDataset

    y = np.array([i % 2 for i in range(40)])
    seed = next(k for k in range(50) if 39 in stratified_split(y, 0.5, k, "csv")[1])  # row 39 in the test split
    rows = ["a,label"] + [f"{1e300 if i == 39 else i},{i % 2}" for i in range(40)]
    (tmp_path / "far.csv").write_text("\n".join(rows) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw NumPy warning on the way
        with pytest.raises(BenchError, match=r"column 'a' of line 41 lies beyond float32's range, which the models "
                                             r"compute in, once normalized \(standard\) by the training rows"):
            CSVDataset().load(None, False, f"{tmp_path / 'far.csv'},test=0.5,seed={seed}")


# -- faults of the files, said as such (dataset audit, 2026-12-07) --------------------------------


def test_file_faults_are_said_as_faults_of_the_files(tmp_path, fx, monkeypatch):
    """Each of these was blamed on a bug of the dataset plugin, named another class, or called a
    path of the wrong kind "not found"."""
    from pathlib import Path

    from bench.run.checks import check_splits

    raw = tmp_path / "MNIST" / "raw"
    fx.write_mnist(tmp_path, "MNIST", n_train=20, n_test=10)
    real = Path.read_bytes

    def refused(self):
        if self.name == "train-images-idx3-ubyte":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refused)
    with pytest.raises(BenchError, match=r"train-images-idx3-ubyte: cannot read it \(Permission denied\)\. Check the "
                                         r"file's permissions\.$"):
        VISION["mnist"].load(str(tmp_path), False)
    monkeypatch.undo()
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").mkdir()
    with pytest.raises(BenchError, match=r"t10k-labels-idx1-ubyte is a folder; expected the official file there"):
        VISION["mnist"].load(str(tmp_path), False)
    # a class with no training rows in a built-in dataset: its files, not a plugin
    fx.write_mnist(tmp_path / "m2", "MNIST", n_train=20, n_test=10)
    sp = VISION["mnist"].load(str(tmp_path / "m2"), False)
    sp.train_y[sp.train_y == 3] = 4
    with pytest.raises(BenchError, match=r"class\(es\) 3 of 0\.\.9 have no training rows.*Check the spec's options and "
                                         r"the dataset's files \(docs/datasets\.md\)") as err:
        check_splits("mnist", sp, builtin=True)
    assert "plugin" not in str(err.value)
    # CIFAR-100 named as itself (it said "Expected CIFAR10 files"); with --download, why and what to do
    sums = fx.write_cifar(tmp_path / "c100", 100, per_batch=30, n_test=4)
    monkeypatch.setattr(tvd.CIFAR100, "__init__", lambda self, *a, **k: (_ for _ in ()).throw(KeyError("fine_labels")))
    with pytest.raises(BenchError, match=r"torchvision's CIFAR100 could not read .*Expected CIFAR100 files"):
        verified(fx, "cifar100", sums).load(str(tmp_path / "c100"), False)
    (tmp_path / "c100/cifar-100-python/meta").unlink()
    with pytest.raises(BenchError, match=r"could not download or read .*1 of the 3 files are missing or fail "
                                         r"torchvision's md5 \(meta\), so it tried to download them\. Without internet, "
                                         r"copy the official files there and run without --download") as err:
        verified(fx, "cifar100", sums).load(str(tmp_path / "c100"), True)
    assert "--download --data-dir" not in str(err.value)
    # the official train and t10k files swapped: a run trained on the test set (a small train set is allowed)
    fx.write_mnist(tmp_path / "m3", "FashionMNIST", n_train=12, n_test=30)
    assert len(VISION["fashion-mnist"].load(str(tmp_path / "m3"), False).train_y) == 12
    import bench.datasets.vision as vision

    real_read = vision.TorchvisionImages._read_idx
    monkeypatch.setattr(vision.TorchvisionImages, "_read_idx", lambda self, root, train: (
        torch.zeros(10_000 if train else 60_000, 1, 28, 28, dtype=torch.uint8), torch.arange(10_000 if train else 60_000) % 10))
    with pytest.raises(BenchError, match=r"the train files in .*FashionMNIST/raw hold 10,000 images and the t10k \(test\) "
                                         r"files 60,000, the official sizes the other way round: the files are swapped"):
        VISION["fashion-mnist"].load(str(tmp_path / "m3"), False)
    monkeypatch.setattr(vision.TorchvisionImages, "_read_idx", real_read)
    # paths of the wrong kind
    with pytest.raises(BenchError, match=r"Dataset 'csv': is a folder, not a file: "):
        CSVDataset().load(str(tmp_path), False, str(tmp_path))
    with pytest.raises(BenchError, match=r"Dataset 'imagefolder': is a file, not a folder: "):
        ImageFolderDataset().load(str(tmp_path), False, str(raw / "train-images-idx3-ubyte"))


def test_image_folders_of_two_sizes_and_a_constant_channel(tmp_path, fx):
    """train/ images 8x8 and test/ images 9x9 were blamed on the plugin; a channel constant over the
    training images was divided by 1e-6 (input bounds near 1e6, its value -1.73 instead of 0)."""
    from PIL import Image

    split = fx.write_image_folder(tmp_path / "split", num_classes=2, per_class=4, size=8, split=True)
    for png in (split / "test").rglob("*.png"):
        Image.open(png).resize((9, 9)).save(png)
    with pytest.raises(BenchError, match=r"the images of .*train are 8x8, those of .*test 9x9; give a common size, "
                                         r"e\.g\. imagefolder:.*,size=32"):
        ImageFolderDataset().load(str(tmp_path), False, str(split))
    flat = fx.write_image_folder(tmp_path / "flat", num_classes=2, per_class=6, size=8)
    for png in flat.rglob("*.png"):
        img = np.asarray(Image.open(png)).copy()
        img[..., 2] = 200
        Image.fromarray(img).save(png)
    sp = ImageFolderDataset().load(str(tmp_path), False, str(flat))
    assert sp.info["std"][2] == 1.0 and sp.info["std"][0] != 1.0
    lo, hi = sp.info["input_bounds"]
    assert max(map(abs, lo + hi)) < 10 and sp.train_x[:, 2].abs().max() < 1e-5


def test_a_csv_without_a_header_is_refused_not_missing_its_first_row(tmp_path, fx):
    """A header-less CSV given label=<a value of its first row> lost that row (159 train / 40 test of
    200, exit 0; dataset audit, 2026-12-07). Integer column names ("0", "1", ...) are names."""
    good = fx.write_csv(tmp_path / "good.csv", n=60)
    body = good.read_text().splitlines()[1:]
    (tmp_path / "bare.csv").write_text("\n".join(body) + "\n")
    first = body[0].split(",")
    with pytest.raises(BenchError, match=r"the first line holds '.*', numbers rather than column names: the file has "
                                         r"no header line\?"):
        CSVDataset().load(str(tmp_path), False, f"{tmp_path / 'bare.csv'},label={first[-1]}")
    named = ["0", "1", "2", "3", "target"]
    (tmp_path / "ints.csv").write_text(",".join(named) + "\n" + "\n".join(body) + "\n")
    sp = CSVDataset().load(str(tmp_path), False, f"{tmp_path / 'ints.csv'},label=target")
    assert len(sp.train_y) + len(sp.test_y) == 60
