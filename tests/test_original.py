"""``--original``: a model trained outside bench as the original of a run (bench/run/original.py).

The main test trains the digits MLP with a plain PyTorch loop written here (no bench code in the
loop: only the architecture's module names match bench's ``mlp``), saves it as safetensors and as a
torch state dict, and runs ``bench run --original`` with each: the trial's metrics are the same as
when bench trains the original itself with the same recipe and seed, because the weights are the
same bit for bit (asserted against bench's cache entry). The refusals of bad files at plan time
(wrong architecture, missing tensors, NaN weights, unreadable files, pickles) are rows of
tests/test_bad_inputs.py.
"""

from __future__ import annotations

import json
import math

import pytest

from bench.core.errors import BenchError

EPOCHS = 5  # a short recipe keeps the three runs cheap; the plain loop below uses the same
RECIPE = {"epochs": EPOCHS}


def train_plain_torch(epochs: int = EPOCHS, lr: float = 0.05, seed: int = 0):
    """The digits MLP 256-256 trained with a hand-written loop: SGD (momentum 0.9, weight decay 5e-4),
    batches of 64 from a seeded permutation (a last batch of one skipped), cosine per step."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from bench.datasets.digits import Digits

    torch.set_num_threads(1)
    d = Digits().load(None, False, None)
    x, y = d.train_x, d.train_y

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                     nn.Linear(256, 10))

        def forward(self, inputs):
            return self.net(inputs)

    torch.manual_seed(seed)
    net = Net()
    g = torch.Generator().manual_seed(seed)
    n, bs = len(y), 64
    total = epochs * sum(1 for s in range(0, n, bs) if min(bs, n - s) > 1)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    net.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        for s in range(0, n, bs):
            idx = order[s:s + bs]
            if len(idx) == 1:
                continue
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(d.test_x).argmax(1) == d.test_y).float().mean())
    return net.state_dict(), acc


@pytest.fixture(scope="module")
def plain_files(tmp_path_factory):
    """The plain-torch original saved both ways, and its test accuracy."""
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("plain")
    state, acc = train_plain_torch()
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "mine.safetensors"))
    torch.save(state, root / "mine.pt")
    torch.save({"epoch": 5, "state_dict": state}, root / "checkpoint.pt")  # a training checkpoint wrapping it
    return root, state, acc


#: Trial metrics that measure time or memory (they vary from run to run).
VOLATILE = ("seconds", "speedup", "_mb")


def _metrics(trial_runs, workdir) -> dict[str, float]:
    df = trial_runs(workdir)
    row = df.loc["ga"]
    return {c[len("metrics."):]: float(row[c]) for c in df.columns
            if c.startswith("metrics.") and not any(v in c for v in VOLATILE) and row[c] == row[c]}


@pytest.mark.slow  # four in-process runs (about a minute on the shared machine)
def test_plain_torch_original_gives_the_metrics_of_bench_training(plain_files, tmp_path, run_harness, trial_runs):
    from safetensors.torch import load_file

    root, state, acc = plain_files
    cache = tmp_path / "cache"
    common = dict(methods="ga", forgets=["random:16"], attacks="", recipe=RECIPE, cache_dir=str(cache))

    ours = {}
    for name in ("mine.safetensors", "mine.pt", "checkpoint.pt"):
        work = tmp_path / name.replace(".", "-")
        work.mkdir()
        code, out = run_harness(work, original={"": str(root / name)}, **common)
        assert code == 0, out
        assert f"original    {root / name}" in out and f"test accuracy {acc:.4f}" in out  # printed at plan time
        assert "from --original" in out and "warning: your original" not in out
        ours[name] = _metrics(trial_runs, work)
        row = trial_runs(work).loc["ga"]  # recorded with the run: path and digest
        assert row["params.original.path"] == str((root / name).resolve())
        assert len(row["params.original.sha256"]) == 64
    # the file was used: no original was trained (or cached); the retrained reference was trained once
    kinds = [json.loads(p.read_text())["document"]["kind"] for p in cache.glob("*.json")]
    assert kinds == ["retrain"]

    (tmp_path / "bench").mkdir()
    code, out = run_harness(tmp_path / "bench", **common)
    assert code == 0, out
    bench_metrics = _metrics(trial_runs, tmp_path / "bench")
    # bench's own original holds the same weights as the plain loop's, bit for bit
    entries = [json.loads(p.read_text()) for p in cache.glob("*.json")]
    key = next(e["key"] for e in entries if e["document"]["kind"] == "original")
    cached = load_file(str(cache / f"{key}.safetensors"))
    assert sorted(cached) == sorted(state) and all(bool((cached[k] == state[k]).all()) for k in state)
    for name, mine in ours.items():
        assert mine == bench_metrics, name
        assert set(mine) >= {"forget_acc", "test_acc", "retain_acc", "avg_gap", "original_test_acc"}
        assert mine["original_test_acc"] == pytest.approx(acc)


@pytest.mark.slow
def test_recipe_mismatch_warns(tmp_path, run_harness, trial_runs):
    """An original trained much longer than the run's recipe: test accuracies apart -> a warning."""
    import torch

    state, acc = train_plain_torch(epochs=1, lr=0.001)
    path = tmp_path / "weak.pt"
    torch.save(state, path)
    code, out = run_harness(tmp_path, methods="ga", forgets=["random:16"], attacks="", recipe=RECIPE,
                            original={"": str(path)})
    assert code == 0, out
    assert f"test accuracy {acc:.4f}" in out
    assert "warning: your original for digits/mlp has test_acc" in out and "more than 3 points apart" in out
    assert trial_runs(tmp_path).loc["ga"]["metrics.original_test_acc"] == pytest.approx(acc)  # the file's model
    # kept with the run, and said again by bench compare (it reached the console only)
    from click.testing import CliRunner
    from mlflow.tracking import MlflowClient

    from bench.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = trial_runs(tmp_path).loc["ga"]["tags.mlflow.parentRunId"]
    assert "your original for digits/mlp has test_acc" in MlflowClient(uri).get_run(parent).data.tags["bench.warnings"]
    res = CliRunner().invoke(main, ["compare", "--tracking-uri", uri, "--no-plot"])
    assert res.exit_code == 0 and f"warning recorded with run {parent}: your original for digits/mlp" in res.stderr


def _plan(tmp_path, **options):
    from bench.core.options import RunOptions
    from bench.core.plugins import get_registry
    from bench.run.plan import make_plan

    opts = RunOptions(executor="local", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", cache_dir=str(tmp_path / "c"),
                      methods="ga,ft", forgets=["random:16"], attacks="", **options)
    notes: list[str] = []
    return make_plan(get_registry(), opts, {}, {}, notes.append), notes


def test_digest_keys_the_original_and_the_trials(plain_files, tmp_path):
    """The file's content (not its path) is in the original's cache key and every trial's key; the
    retrained reference's key does not depend on it."""
    import shutil

    import torch

    root, state, _ = plain_files
    copy = tmp_path / "copy.safetensors"
    shutil.copy(root / "mine.safetensors", copy)
    other = {k: v.clone() for k, v in state.items()}
    other["net.5.bias"][0] += 1.0
    torch.save(other, tmp_path / "other.pt")

    recipe, _ = _plan(tmp_path)
    a, notes = _plan(tmp_path, original={"": str(root / "mine.safetensors")})
    b, _ = _plan(tmp_path, original={"mlp": str(copy)})
    c, _ = _plan(tmp_path, original={"": str(tmp_path / "other.pt")})
    assert any("test accuracy" in n for n in notes)
    ga, gb, gc, gr = a.groups[0], b.groups[0], c.groups[0], recipe.groups[0]
    assert gr.original_doc["kind"] == "original" and ga.original_doc["kind"] == "original-file"
    assert len({gr.original_key, ga.original_key, gc.original_key}) == 3
    assert ga.original_doc["original_sha256"] == gb.original_doc["original_sha256"] != gc.original_doc["original_sha256"]
    assert ga.retrain_key == gb.retrain_key == gc.retrain_key == gr.retrain_key
    keys = [{t.method: t.trial_key for t in p.trials} for p in (recipe, a, b, c)]
    assert keys[1] == keys[2]  # same content, another path: the same trials (--resume finds them)
    assert keys[0]["ga"] != keys[1]["ga"] != keys[3]["ga"] and keys[0]["ga"] != keys[3]["ga"]
    spec = a.trials[0].as_dict()
    assert spec["original"] == {"path": str((root / "mine.safetensors").resolve()), "sha256": ga.original_doc["original_sha256"]}
    assert "original" not in recipe.trials[0].as_dict()  # recipe-trained: recorded as before
    assert a.originals[("mlp", "digits")]["sha256"] == ga.original_doc["original_sha256"]


def test_original_in_the_experiment_file(tmp_path):
    from bench.core.options import merge_options, parse_originals

    assert merge_options({"original": "a.pt"}, {}).original == {"": "a.pt"}
    assert merge_options({"original": {"mlp": "a.pt", "cnn": "b.pt"}}, {}).original == {"mlp": "a.pt", "cnn": "b.pt"}
    # the command line replaces the file's table
    assert merge_options({"original": {"mlp": "a.pt"}}, {"original": parse_originals(["c.pt"])}).original == {"": "c.pt"}
    assert parse_originals(["mlp:128=x.pt", "./odd=name.pt"]) == {"mlp:128": "x.pt", "": "./odd=name.pt"}


def test_a_timm_architecture_takes_its_state_dict_and_refuses_another_head(tmp_path):
    """A timm model's own state dict (as ``timm.create_model(NAME, pretrained=False, num_classes=K,
    in_chans=C)`` builds it for the dataset) is checked and used the same way; a checkpoint with
    another classifier (an ImageNet one: 1000 classes) is refused, naming the tensor."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    net = timm.create_model("test_resnet", pretrained=False, num_classes=10, in_chans=1)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "tr.safetensors"))
    plan, notes = _plan(tmp_path, models=["test_resnet"], original={"": str(tmp_path / "tr.safetensors")})
    assert plan.groups[0].original_doc["kind"] == "original-file" and any("test_resnet" in n for n in notes)

    imagenet = timm.create_model("test_resnet", pretrained=False, num_classes=1000, in_chans=1)
    save_file({k: v.contiguous() for k, v in imagenet.state_dict().items()}, str(tmp_path / "in1k.safetensors"))
    with pytest.raises(BenchError, match=r"'fc\.weight' \(1000, \d+\) \(the model: \(10, \d+\)\)"):
        _plan(tmp_path, models=["test_resnet"], original={"": str(tmp_path / "in1k.safetensors")})


def test_timm_pretrained_weights_from_a_local_file(tmp_path):
    """``timm:NAME,pretrained=PATH``: timm starts from the file's weights (through
    ``pretrained_cfg_overlay``, nothing downloaded); an ImageNet-sized classifier is left out and
    initialised afresh, one of the dataset's size is kept; the plan pins the file's SHA-256 into
    the model spec, so the reference and trial keys follow the content, and a file changed after
    planning is refused where the model is built."""
    timm = pytest.importorskip("timm")
    import torch
    from safetensors.torch import save_file

    from bench.nn.models import TimmModels

    def save(net, path):
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))

    torch.manual_seed(1)
    imagenet = timm.create_model("test_resnet", pretrained=False, num_classes=1000, in_chans=1)
    save(imagenet, tmp_path / "in1k.safetensors")
    own = timm.create_model("test_resnet", pretrained=False, num_classes=10, in_chans=1)
    save(own, tmp_path / "own.safetensors")

    plugin = TimmModels()
    net = plugin.create(10, (1, 8, 8), f"test_resnet,pretrained={tmp_path / 'in1k.safetensors'}")
    ref = imagenet.state_dict()
    body = [k for k in ref if not k.startswith("fc.")]
    assert body and all(torch.equal(net.state_dict()[k], ref[k]) for k in body)
    assert net.fc.weight.shape == (10, ref["fc.weight"].shape[1])  # a fresh 10-class head
    kept = plugin.create(10, (1, 8, 8), f"test_resnet,pretrained={tmp_path / 'own.safetensors'}")
    assert all(torch.equal(kept.state_dict()[k], v) for k, v in own.state_dict().items())

    spec = f"timm:test_resnet,pretrained={tmp_path / 'in1k.safetensors'}"
    a, _ = _plan(tmp_path, models=[spec])
    b, _ = _plan(tmp_path, models=[spec])
    assert a.groups[0].model.startswith(spec + ",sha256=") and a.trials[0].model == a.groups[0].model
    assert a.groups[0].original_key == b.groups[0].original_key and a.trials[0].trial_key == b.trials[0].trial_key
    save(own, tmp_path / "in1k.safetensors")  # other content at the same path: other keys
    c, _ = _plan(tmp_path, models=[spec])
    assert c.groups[0].original_key != a.groups[0].original_key and c.trials[0].trial_key != a.trials[0].trial_key
    with pytest.raises(BenchError, match="changed since the run was planned"):
        plugin.create(10, (1, 8, 8), a.groups[0].model.partition(":")[2])
    with pytest.raises(BenchError, match=r"Bad timm model option 'weights=x'.*pretrained=PATH"):
        plugin.create(10, (1, 8, 8), "test_resnet,weights=x")
    (tmp_path / "junk.bin").write_bytes(b"not weights")
    with pytest.raises(BenchError, match=r"pretrained file .*junk\.bin: neither a safetensors file"):
        plugin.create(10, (1, 8, 8), f"test_resnet,pretrained={tmp_path / 'junk.bin'}")


def test_a_timm_pretrained_file_that_leaves_tensors_random_is_refused(tmp_path, invoke_bench):
    """With a classifier of another size (the ImageNet-to-K case) timm loads the file without
    strictness: a file holding only the classifier, or one whose body keys are renamed, left every
    other tensor at its random initialisation, exit 0 (an auditor's finding); seresnet18 from
    resnet18's weights left its SE blocks random."""
    timm = pytest.importorskip("timm")
    import torch
    from safetensors.torch import save_file

    from bench.nn.models import TimmModels

    imagenet = timm.create_model("test_resnet", pretrained=False, num_classes=1000, in_chans=1)
    state = {k: v.contiguous() for k, v in imagenet.state_dict().items()}
    save_file({k: v for k, v in state.items() if k.startswith("fc.")}, str(tmp_path / "fc-only.safetensors"))
    save_file({("encoder." + k if not k.startswith("fc.") else k): v for k, v in state.items()},
              str(tmp_path / "renamed.safetensors"))
    partial = dict(state)
    partial.pop("conv1.0.weight")
    save_file(partial, str(tmp_path / "partial.safetensors"))
    plugin = TimmModels()
    total = sum(1 for _ in imagenet.parameters())
    with pytest.raises(BenchError, match=rf"fc-only\.safetensors leaves \d+ of the {total} parameter tensors of "
                                         r"timm's test_resnet at their random initialisation \(.*\): the file lacks them"):
        plugin.create(10, (1, 8, 8), f"test_resnet,pretrained={tmp_path / 'fc-only.safetensors'}")
    with pytest.raises(BenchError, match=r"partial\.safetensors leaves 1 of the \d+ parameter tensors .*\(conv1\.0\.weight\)"):
        plugin.create(10, (1, 8, 8), f"test_resnet,pretrained={tmp_path / 'partial.safetensors'}")
    with pytest.raises(BenchError, match=rf"renamed\.safetensors leaves \d+ of the {total}"):
        plugin.create(10, (1, 8, 8), f"test_resnet,pretrained={tmp_path / 'renamed.safetensors'}")
    # a tensor the model does not have, beside all it has: nothing is left random
    save_file({**state, "extra.weight": state["fc.bias"].clone()}, str(tmp_path / "extra.safetensors"))
    torch.manual_seed(3)
    net = plugin.create(10, (1, 8, 8), f"test_resnet,pretrained={tmp_path / 'extra.safetensors'}")
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items() if not k.startswith("fc."))
    # the check leaves the caller's random state alone: the fresh classifier follows the seed
    torch.manual_seed(3)
    again = plugin.create(10, (1, 8, 8), f"test_resnet,pretrained={tmp_path / 'extra.safetensors'}")
    assert torch.equal(net.fc.weight, again.fc.weight)
    # one line, exit 2, at planning (a dry run builds every model)
    res = invoke_bench("run", "--dry-run", "-m", "ft", "--model", f"timm:test_resnet,pretrained={tmp_path / 'fc-only.safetensors'}",
                       cwd=tmp_path)
    assert res.returncode == 2 and "at their random initialisation" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_a_kuangliu_style_checkpoint_reads_its_net_entry(tmp_path):
    """kuangliu/pytorch-cifar (the training code resnet18-cifar follows) saves {'net', 'acc', 'epoch'}:
    it was refused as "entries acc, epoch, net are not tensors" (own-model audit, 2026-12-07)."""
    import torch

    from bench.core.weights import read_weights

    state = {"w": torch.ones(2, 2), "b": torch.zeros(2)}
    torch.save({"net": state, "acc": 93.1, "epoch": 199}, tmp_path / "ckpt.pth")
    got = read_weights(tmp_path / "ckpt.pth", "--original ckpt.pth")
    assert set(got.state) == {"w", "b"} and torch.equal(got.state["w"], state["w"])
