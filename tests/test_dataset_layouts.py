"""Dataset files that loaded as something else with exit 0, or failed with an unclear line: image
folders split as train/ + val/, numeric class folders, an older torchvision's MNIST processed/*.pt
beside the raw files, IDX headers, .npz index and feature dtypes, a CSV with a byte-order mark,
generator options, and a class request the test split cannot measure."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.datasets.imagefolder import ImageFolderDataset
from bench.datasets.tabular import CSVDataset, builtin_tabular_datasets
from bench.datasets.vision import builtin_vision_datasets

VISION = {d.name: d for d in builtin_vision_datasets()}
TABULAR = {d.name: d for d in builtin_tabular_datasets()}


def _load(path, arg=""):
    return ImageFolderDataset().load(str(path.parent), False, f"{path}{arg}")


@pytest.mark.parametrize("names", [("train", "val"), ("Train", "Test"), ("training", "validation"), ("train", "valid")])
def test_imagefolder_reads_train_and_a_held_out_folder_as_splits(tmp_path, data_files, names):
    # train/ + val/ was read as one folder per class: a 2-class dataset of the splits, exit 0
    root = data_files.write_image_folder(tmp_path / "imgs", num_classes=3, per_class=4, size=8, split=True)
    for old, new in zip(("train", "test"), names, strict=True):
        if old != new:
            (root / old).rename(root / new)
    s = _load(root)
    assert s.num_classes == 3 and s.info["classes"] == ["class_0", "class_1", "class_2"], s.info
    assert len(s.train_y) == 12 and len(s.test_y) == 6 and s.info["split"] == f"{names[0]}/ and {names[1]}/ folders"


def test_imagefolder_prefers_test_over_val_and_refuses_other_split_arrangements(tmp_path, data_files):
    root = data_files.write_image_folder(tmp_path / "three", num_classes=2, per_class=4, size=8, split=True)
    shutil.copytree(root / "test", root / "val")
    shutil.rmtree(root / "val" / "class_1")
    assert _load(root).info["split"] == "train/ and test/ folders"
    lone = data_files.write_image_folder(tmp_path / "lone", num_classes=2, per_class=4, size=8, split=True)
    shutil.rmtree(lone / "test")
    with pytest.raises(BenchError, match=r"holds train/, which name splits, not classes; expected train/ with test/"):
        _load(lone)
    mixed = data_files.write_image_folder(tmp_path / "mixed", num_classes=2, per_class=4, size=8, split=True)
    shutil.copytree(mixed / "train" / "class_0", mixed / "class_9")
    with pytest.raises(BenchError, match=r"holds split folders \(test/, train/\) and other folders \(class_9\)"):
        _load(mixed)


def test_imagefolder_reads_every_format_pil_reads_and_skips_hidden_folders(tmp_path, data_files):
    """torchvision's extension list dropped .gif and .tga images without a word (24 images loaded as
    12), and a hidden folder (.thumbnails) was class 0, every label moved up by one, exit 0 (found
    in review): every file with an extension PIL registers is read; hidden files and folders are
    skipped and are never classes; other files (a README) are not images."""
    from PIL import Image

    root = data_files.write_image_folder(tmp_path / "fmt", num_classes=2, per_class=3, size=8)
    rng = np.random.default_rng(0)
    for c in range(2):
        for k, ext in enumerate((".gif", ".tga", ".JPG")):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / f"class_{c}" / f"extra{k}{ext}")
        (root / f"class_{c}" / "README.txt").write_text("not an image")
        (root / f"class_{c}" / "features.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))  # PIL has a stub for it
        (root / f"class_{c}" / ".hidden").mkdir()
        shutil.copy(root / f"class_{c}" / "extra0.gif", root / f"class_{c}" / ".hidden" / "thumb.png")
    (root / ".thumbnails").mkdir()
    shutil.copy(root / "class_0" / "extra0.gif", root / ".thumbnails" / "t.png")
    s = _load(root, ",test=0.5")
    assert s.info["classes"] == ["class_0", "class_1"] and s.num_classes == 2
    assert len(s.train_y) + len(s.test_y) == 2 * (3 + 3)
    assert sorted(torch.cat([s.train_y, s.test_y]).tolist()) == [0] * 6 + [1] * 6


def test_imagefolder_numbers_classes_as_text_and_the_dry_run_names_the_folder(tmp_path, data_files, invoke_bench):
    root = data_files.write_image_folder(tmp_path / "num", num_classes=11, per_class=5, size=8)
    for c in range(11):
        (root / f"class_{c}").rename(root / str(c))
    s = _load(root)
    assert s.info["classes"][:4] == ["0", "1", "10", "2"]  # ImageFolder's class_to_idx: sorted as text
    res = invoke_bench("run", "--dry-run", "-d", f"imagefolder:{root},size=8", "-f", "class:2", "-m", "ga",
                       "--cache-dir", str(tmp_path / "c"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                       cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "forget class:2: 4 of 44 training points (class 2 is '10'; classes are numbered in the order 0, 1, 10, 2, ...)" \
        in res.stdout, res.stdout


def test_mnist_reads_the_raw_idx_files_not_an_older_torchvisions_processed_files(tmp_path, data_files):
    # torchvision's MNIST loads processed/training.pt and test.pt whenever both exist: 30/12 images
    # of other data were loaded while the raw 50/20 files were the ones checked and recorded
    data_files.write_mnist(tmp_path, "MNIST", n_train=50, n_test=20)
    processed = tmp_path / "MNIST" / "processed"
    processed.mkdir()
    for name, n in (("training.pt", 30), ("test.pt", 12)):
        torch.save((torch.zeros(n, 28, 28, dtype=torch.uint8), torch.zeros(n, dtype=torch.long)), processed / name)
    s = VISION["mnist"].load(str(tmp_path), False)
    assert len(s.train_y) == 50 and len(s.test_y) == 20
    raw = (tmp_path / "MNIST/raw/train-labels-idx1-ubyte").read_bytes()[8:]
    assert s.train_y.tolist() == list(raw)


def test_download_is_not_skipped_by_processed_files_and_a_failed_one_is_one_line(tmp_path, data_files, monkeypatch):
    """torchvision's MNIST constructor returns before downloading whenever an older torchvision's
    processed/*.pt exist: `--download` fetched nothing and then said to run `--download` (found in
    review). The download runs alone; a failed one (one line per mirror in torchvision's message)
    is one line that does not suggest the command that just failed."""
    import gzip
    import shutil

    import torchvision.datasets.mnist as tv_mnist

    served = tmp_path / "served"
    data_files.write_mnist(served, "KMNIST", n_train=30, n_test=10, gz=True)
    root = tmp_path / "data"
    processed = root / "KMNIST" / "processed"
    processed.mkdir(parents=True)
    for name, n in (("training.pt", 7), ("test.pt", 3)):
        torch.save((torch.zeros(n, 28, 28, dtype=torch.uint8), torch.zeros(n, dtype=torch.long)), processed / name)

    def fetch(url, download_root, filename, md5):  # what torchvision's download does, from the test's files
        shutil.copy(served / "KMNIST/raw" / filename, f"{download_root}/{filename}")
        with gzip.open(f"{download_root}/{filename}") as src, open(f"{download_root}/{filename[:-3]}", "wb") as dst:
            shutil.copyfileobj(src, dst)

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", fetch)
    s = VISION["kmnist"].load(str(root), True)
    assert len(s.train_y) == 30 and len(s.test_y) == 10

    def offline(url, download_root, filename, md5):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    with pytest.raises(BenchError) as failed:
        VISION["mnist"].load(str(tmp_path / "empty"), True)
    text = str(failed.value)
    assert "\n" not in text and "the download failed (RuntimeError: Error downloading" in text, text
    assert "--download" in text and "run without --download" in text and "with: bench run" not in text, text


def test_npz_split_indices_must_be_integers_and_bool_features_are_binary(tmp_path, data_files):
    path = data_files.write_binary_npz(tmp_path / "purchase/purchase20.npz", n=120)
    raw = dict(np.load(path))
    tr, te = np.arange(0, 80), np.arange(80, 120)
    np.savez(path, **raw, train_idx=tr + 0.7, test_idx=te)  # cut to tr without a word before
    with pytest.raises(BenchError, match=r"train_idx \(float64\) must hold integer row indices"):
        TABULAR["purchase20"].load(str(tmp_path), False)
    np.savez(path, features=raw["features"].astype(bool), labels=raw["labels"], train_idx=tr, test_idx=te)
    s = TABULAR["purchase20"].load(str(tmp_path), False)  # "must be binary (0/1); found other values" before
    assert torch.equal(s.train_x, torch.from_numpy(raw["features"][tr].astype(np.float32)))


def test_csv_with_a_byte_order_mark_finds_its_first_column(tmp_path, data_files):
    path = data_files.write_csv(tmp_path / "d.csv", n=60, features=3, num_classes=3, label="label")
    lines = path.read_text().splitlines()
    cols = lines[0].split(",")
    reordered = [",".join([r.split(",")[-1], *r.split(",")[:-1]]) for r in lines]  # the label first
    path.write_text("\ufeff" + "\n".join(reordered) + "\n", encoding="utf-8")
    s = CSVDataset().load(str(tmp_path), False, f"{path},label=label")
    assert s.info["features"] == cols[:-1] and s.num_classes == 3


@pytest.mark.parametrize("spec, message", [
    ("synthetic:seed=-1", r"seed in \[0, 2\*\*32\)"),
    ("synthetic:clusters=0", r"need clusters >= 1"),
    ("synthetic:informative=0", r"informative >= 1"),  # 0 was taken as "the default" silently
    ("mnist1d:seed=-3", r"Bad mnist1d option seed=-3: expected an integer in \[0, 2\*\*32\)"),
])
def test_generator_options_are_the_users_mistake_not_the_plugins(spec, message, tmp_path, invoke_bench):
    res = invoke_bench("run", "--dry-run", "-d", spec, "--cache-dir", str(tmp_path / "c"),
                       "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 2 and "dataset plugin" not in out and "Traceback" not in out, out
    assert len([line for line in out.splitlines() if line.startswith("Error:")]) == 1, out
    import re

    assert re.search(message, out), out


def test_a_class_the_test_split_lacks_is_said_and_recorded(tmp_path):
    from bench.run.references import warn_untestable_classes

    said = []
    step = SimpleNamespace(forget_class=3)
    group = SimpleNamespace(gid="g", dataset="purchase20", forget=SimpleNamespace(text="class:3"))
    plan = SimpleNamespace(groups=[group], splits={"purchase20": SimpleNamespace(test_y=torch.tensor([0, 1, 2, 0]))})
    payload = SimpleNamespace(groups={"g": SimpleNamespace(steps=[step])})
    out = warn_untestable_classes(plan, payload, lambda line, always=False: said.append(line))
    assert out == said and len(out) == 1 and "has no point of class 3" in out[0] and "test_forget_class_acc is NaN" in out[0]
    plan.splits["purchase20"].test_y = torch.tensor([0, 3])
    assert warn_untestable_classes(plan, payload, lambda *a, **k: None) == []


def test_attacks_on_a_handful_of_forgotten_points_are_said_and_recorded():
    """random:1 with the attacks: loss_auc 0.881 and mia_efficacy 0.000 over one positive, exit 0
    and no word (hostile audit, 2026-12-07): said, kept with the run, the numbers still logged."""
    import numpy as np

    from bench.run.references import MIN_ATTACK_POINTS, warn_few_attack_points

    def group(forget, idx, steps=None):
        return SimpleNamespace(dataset="digits", forget=SimpleNamespace(text=forget), forget_idx=np.asarray(idx),
                               steps=steps)

    quiet = lambda *a, **k: None  # noqa: E731
    plan = SimpleNamespace(attacks={"loss": None}, groups=[group("random:1", [4]), group("random:1", [7])])
    (line,) = warn_few_attack_points(plan, quiet)  # once per dataset and request
    assert "score 1 forgotten point(s) of digits (forget random:1): an AUC" in line and f"at least {MIN_ATTACK_POINTS}" in line
    assert warn_few_attack_points(SimpleNamespace(attacks={}, groups=plan.groups), quiet) == []
    big = SimpleNamespace(attacks={"loss": None}, groups=[group("random:10%", range(144))])
    assert warn_few_attack_points(big, quiet) == []
    seq = SimpleNamespace(attacks={"loss": None}, groups=[group("seq:2x5", range(5), (np.arange(5), np.arange(5, 10)))])
    assert warn_few_attack_points(seq, quiet) == []  # ten points forgotten by the last request


@pytest.mark.slow
def test_the_few_points_warning_reaches_the_console_and_the_run(tmp_path, run_harness):
    import mlflow

    code, out = run_harness(tmp_path, methods="ga", forgets=["random:1"], attacks="loss", recipe={"epochs": 2})
    assert code == 0 and "warning: the attacks (loss) score 1 forgotten point(s) of digits" in out, out
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = mlflow.search_runs(experiment_names=["unlearning-bench"], filter_string="tags.`bench.role` = 'parent'")
    assert "score 1 forgotten point(s)" in parent.iloc[0]["tags.bench.warnings"]


@pytest.mark.slow
def test_the_untestable_class_warning_reaches_the_console_the_run_and_compare(tmp_path, data_files, invoke_bench):
    """purchase20 whose test split has no row of class 19: a `-f class:19` run says why
    test_forget_class_acc is NaN, keeps the line with the run and `bench compare` says it again."""
    import mlflow

    path = data_files.write_binary_npz(tmp_path / "data/purchase/purchase20.npz", n=160)
    raw = dict(np.load(path))
    y = raw["labels"].argmax(1)
    train = np.flatnonzero((np.arange(len(y)) < 120) | (y == 19))
    test = np.setdiff1d(np.arange(len(y)), train)
    np.savez(path, **raw, train_idx=train, test_idx=test)
    store = ["--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    res = invoke_bench("run", "-d", "purchase20", "--data-dir", str(tmp_path / "data"), "-m", "retrain", "-f", "class:19",
                       "--executor", "local", "--attacks", "", "-r", "epochs=1", "--cache-dir", str(tmp_path / "c"), *store,
                       cwd=tmp_path)
    line = "the test split of purchase20 has no point of class 19 (forget class:19): test_forget_class_acc is NaN"
    assert res.returncode == 0 and line in res.stdout + res.stderr, res.stdout + res.stderr
    client = mlflow.tracking.MlflowClient(store[1])
    runs = client.search_runs([client.get_experiment_by_name("unlearning-bench").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("bench.role") == "parent")
    assert line in parent.data.tags["bench.warnings"]
    shown = invoke_bench("compare", *store, "--no-plot", cwd=tmp_path)
    assert shown.returncode == 0 and line in shown.stdout + shown.stderr, shown.stdout + shown.stderr
