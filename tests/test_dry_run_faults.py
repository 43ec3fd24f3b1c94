"""``bench run --dry-run`` refuses what ``bench run`` refuses (bench/cli/dry_run.py): a bad dataset
spec, an explicit path that does not exist, corrupt files, and a GPU the machine does not have are
one line on stderr and exit status 2, never "NOT READY" with exit 0. Only a dataset whose files are
missing (``DataFilesMissing``) is reported as not ready while the dry run exits 0. In process."""

from __future__ import annotations

from pathlib import Path

import pytest


def _store(tmp_path: Path) -> list[str]:
    return ["--cache-dir", str(tmp_path / "cache"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]


def _refused(proc, message: str) -> None:
    """Exit status 2, one line on stderr holding ``message``, no traceback, no plan verdict."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], proc.stderr
    assert "NOT READY" not in proc.stdout and "The plan is valid" not in proc.stdout, proc.stdout


BAD_SPECS = [
    ("synthetic:n=abc", "Bad synthetic option 'n=abc': n must be an integer."),
    ("synthetic:classes=1", "need classes >= 2"),
    ("digits:x=1", "Dataset 'digits' takes no options"),
    ("purchase20:x=1", "Dataset 'purchase20' takes no options"),
    ("cifar10:holdout=2", "holdout must lie in [0, 1)"),
    ("csv:{tmp}/nonexistent.csv", "Dataset 'csv': file not found:"),
    ("imagefolder:{tmp}/no-such-folder", "Dataset 'imagefolder': folder not found:"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS, ids=[s for s, _ in BAD_SPECS])
def test_a_bad_dataset_spec_is_refused_not_reported_as_missing_files(spec, message, invoke_bench, tmp_path):
    (tmp_path / "data").mkdir()  # empty: the files of cifar10 and purchase20 are missing too
    spec = spec.format(tmp=tmp_path)
    proc = invoke_bench("run", "-d", spec, "--data-dir", str(tmp_path / "data"), "--dry-run", *_store(tmp_path))
    _refused(proc, message)
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("spec", ["synthetic:n=abc", "csv:{tmp}/nonexistent.csv"])
def test_the_dry_run_refuses_with_the_line_of_a_real_run(spec, invoke_bench, tmp_path):
    spec = spec.format(tmp=tmp_path)
    args = ["run", "-d", spec, "--executor", "local", "--data-dir", str(tmp_path / "data"), *_store(tmp_path)]
    real, dry = invoke_bench(*args), invoke_bench(*args, "--dry-run")
    assert real.returncode == dry.returncode == 2, real.stderr + dry.stderr
    assert real.stderr.strip().splitlines()[-1] == dry.stderr.strip(), (real.stderr, dry.stderr)


def test_corrupt_dataset_files_are_refused(invoke_bench, tmp_path):
    """Files that are there but are not torchvision's: a run stops with the checksum error, so the
    dry run does too (only missing files are "not ready")."""
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (folder / name).write_bytes(b"not a CIFAR batch")
    proc = invoke_bench("run", "-d", "cifar10", "--data-dir", str(tmp_path / "data"), "--dry-run", *_store(tmp_path))
    _refused(proc, "Dataset 'cifar10': checksum mismatch")


def test_an_original_is_checked_before_its_dataset_files_are_there(invoke_bench, tmp_path):
    """--original with the data files missing: the dry run said the plan was valid without opening the
    file (a pickled module, the digits MLP's file for MNIST; own-model audit 2026-12-07). It reads the
    file and fits it to the model the plugin's declared shape builds; SISA's own original is said."""
    import torch
    from safetensors.torch import save_file

    from bench.nn.models import MLPModel

    empty = tmp_path / "empty"
    empty.mkdir()
    torch.save(torch.nn.Linear(3, 3), tmp_path / "whole.pt")
    for name, shape in (("digits", (1, 8, 8)), ("mnist", (1, 28, 28))):
        net = MLPModel().create(10, shape, None)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / f"{name}.safetensors"))
    base = ("run", "-d", "mnist", "--data-dir", str(empty), "--dry-run", "-m", "ga,sisa", *_store(tmp_path))
    for file, message in (("whole.pt", "the file holds objects other than tensors, which are never unpickled"),
                          ("digits.safetensors", "'net.1.weight' (256, 64) (the model: (256, 784))")):
        proc = invoke_bench(*base, "--original", str(tmp_path / file))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stdout + proc.stderr
        assert "The plan is valid" not in proc.stdout, proc.stdout
    fits = invoke_bench(*base, "--original", str(tmp_path / "mnist.safetensors"))
    assert fits.returncode == 0, fits.stdout + fits.stderr
    assert "for mnist/mlp: fits the model; its test accuracy is measured once the data files are there" in fits.stdout
    assert "note: sisa train(s) their own original (their own training); --original does not apply to them" in fits.stdout


@pytest.mark.parametrize("spec", ["cifar10", "purchase20"])
def test_missing_dataset_files_are_not_ready_and_the_dry_run_exits_0(spec, invoke_bench, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = invoke_bench("run", "-d", spec, "--data-dir", str(empty), "--dry-run", *_store(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stderr.strip(), proc.stderr
    assert f"dataset {spec}: NOT READY: " in proc.stdout and str(empty) in proc.stdout, proc.stdout
    assert f"The plan is valid, but {spec} cannot load yet: place the files" in proc.stdout


def test_dry_run_with_download_fetches_the_files_and_trains_nothing(invoke_bench, tmp_path, monkeypatch):
    """The missing-files message suggests `bench run --dry-run ... --download` to fetch the files
    only: the dry run passes --download to the dataset (it passed False, so nothing was fetched)."""
    from bench.datasets.vision import TorchvisionImages

    seen = []
    real = TorchvisionImages.load

    def recording(self, data_dir, download, arg):
        seen.append(download)
        return real(self, data_dir, False, arg)  # no network here: the files stay missing

    monkeypatch.setattr(TorchvisionImages, "load", recording)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = invoke_bench("run", "-d", "cifar10", "--data-dir", str(empty), "--dry-run", "--download", *_store(tmp_path))
    assert proc.returncode == 0 and seen == [True], (seen, proc.stdout + proc.stderr)
    assert "--download fetches missing dataset files" in proc.stdout
    assert f"bench run --dry-run --dataset cifar10 --download --data-dir {empty}" in proc.stdout


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as torch sees it without a GPU, whatever it has."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize(("flags", "message"), [
    (["--gpus-per-trial", "1"], "--gpus-per-trial 1 but torch sees no GPU on this machine"),
    (["--device", "cuda"], "--device cuda but torch sees no GPU on this machine"),
    (["--device", "cuda:0", "--executor", "local"], "--device cuda:0 but torch sees no GPU on this machine"),
])
def test_the_dry_run_refuses_a_gpu_the_machine_does_not_have(flags, message, no_gpu, invoke_bench, tmp_path):
    proc = invoke_bench("run", *flags, "--dry-run", *_store(tmp_path))
    _refused(proc, message)
    real = invoke_bench("run", *flags, *_store(tmp_path))  # the run refuses the same, with the same line
    assert real.returncode == 2 and real.stderr.strip().splitlines()[-1] == proc.stderr.strip(), real.stderr


def test_the_dry_run_on_the_cpu_still_passes(no_gpu, invoke_bench, tmp_path):
    proc = invoke_bench("run", "--device", "cpu", "--dry-run", *_store(tmp_path))
    assert proc.returncode == 0 and "The plan is valid and its data loads" in proc.stdout, proc.stdout + proc.stderr


def test_dry_run_says_which_methods_a_wildcard_leaves_out(invoke_bench, tmp_path):
    proc = invoke_bench("run", "--methods", "*", "--dry-run", *_store(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "left out of --methods '*': unsir (they cannot take random:10%; name one to see why)" in proc.stdout


def test_dry_run_counts_shadow_models_only_for_attacks_that_use_them(invoke_bench, tmp_path):
    plain = invoke_bench("run", "--attacks", "loss,svc", "--dry-run", *_store(tmp_path))
    assert "attacks:     loss,svc\n" in plain.stdout, plain.stdout  # neither trains shadow models
    shadowed = invoke_bench("run", "--attacks", "loss,lira", "--shadow-models", "4", "--dry-run", *_store(tmp_path))
    assert "attacks:     loss,lira; 4 shadow models (for lira)" in shadowed.stdout, shadowed.stdout


def test_the_dry_run_creates_no_cache_directory(invoke_bench, tmp_path):
    cache = tmp_path / "not" / "yet"
    proc = invoke_bench("run", "--dry-run", "--cache-dir", str(cache), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (tmp_path / "not").exists()
    (tmp_path / "file").write_text("")
    proc = invoke_bench("run", "--dry-run", "--cache-dir", str(tmp_path / "file" / "c"),
                        "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert proc.returncode == 2 and "is a file, not a directory" in proc.stderr, proc.stderr


@pytest.fixture
def one_gpu(monkeypatch):
    """This machine as torch would see it with one GPU (nothing runs on it: the options are refused)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize(("flags", "message"), [
    (["--device", "cuda:abc", "--executor", "local"], "Bad --device 'cuda:abc': expected cuda or cuda:N"),
    (["--device", "cuda:3", "--executor", "local"], "--device cuda:3 but this machine has 1 GPU(s) (cuda:0..cuda:0)"),
    (["--device", "cuda:1", "--gpus-per-trial", "0.5"], "--device cuda:1 under Ray: Ray gives each trial its own GPU(s), "
                                                         "numbered from cuda:0"),
    (["--device", "cpu", "--gpus-per-trial", "0.25"], "--gpus-per-trial 0.25 with --device cpu: the trials would hold "
                                                       "GPU shares they never use"),
])
def test_device_numbers_and_gpu_shares_that_name_no_gpu_are_refused(flags, message, one_gpu, invoke_bench, tmp_path):
    """Accepted by the plan and failed in every reference and trial on a GPU machine ('cuda:abc': Invalid
    device string; cuda:N past the machine's GPUs, or N > 0 under Ray: invalid device ordinal), or Ray
    holding GPU shares for trials on the CPU (found in review, with a fake GPU on a CPU machine)."""
    _refused(invoke_bench("run", *flags, "--dry-run", *_store(tmp_path)), message)


def test_a_driver_without_a_gpu_is_refused_with_ray_address_too(no_gpu, invoke_bench, tmp_path, monkeypatch):
    """It skipped the check and advised --ray-address; the driver then evaluated the references on
    the device and failed with a raw "Found no NVIDIA driver on your system", exit 1 (found in review)."""
    import bench.run.validate as validate

    monkeypatch.setattr(validate, "check_ray_address", lambda address: None)  # as if a head answered there
    proc = invoke_bench("run", "--gpus-per-trial", "0.25", "--ray-address", "127.0.0.1:1", "--dry-run", *_store(tmp_path))
    _refused(proc, "--gpus-per-trial 0.25 but torch sees no GPU on this machine: use --device cpu (and no "
                   "--gpus-per-trial), or run bench on a node of the cluster that has a GPU")


def test_the_dry_run_counts_the_references_a_run_trains(invoke_bench, tmp_path):
    """seq:1000x1 trains 1,000 retrained references, which the plan did not say (hostile audit)."""
    proc = invoke_bench("run", "--dry-run", "-f", "seq:5x20", "-f", "random:10%", "-s", "0,1", *_store(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert ("references: 2 original(s) and 12 retrained model(s) to train or find in the cache (seq:5x20: one "
            "retrained model per request)") in proc.stdout, proc.stdout


def test_two_model_specs_of_one_network_are_noted(invoke_bench, tmp_path):
    """--model mlp --model mlp:256,256 ran every trial twice under two names (hostile audit)."""
    same = invoke_bench("run", "--dry-run", "--model", "mlp", "--model", "mlp:256,256", *_store(tmp_path))
    assert same.returncode == 0, same.stderr
    assert "note: --model mlp and --model mlp:256,256 build the same network" in same.stdout, same.stdout
    other = invoke_bench("run", "--dry-run", "--model", "mlp", "--model", "mlp:128", *_store(tmp_path))
    assert other.returncode == 0 and "build the same network" not in other.stdout, other.stdout
