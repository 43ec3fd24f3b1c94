"""A table of bad inputs to ``bench run``: each is refused at plan time, before any work.

Every row runs the command in process (click's CliRunner) with its own cache directory and
SQLite store, and must: exit with code 2; print a message naming the problem (a regex per row);
print no traceback; leave Ray unstarted (``start_ray`` never called, ``ray.is_initialized()``
false); cache nothing (no ``.safetensors`` in the cache directory); record nothing (the SQLite
store does not exist or holds no runs). Bad datasets come from plugins registered in process
(``bench.core.plugins.register_plugin``), as a third-party plugin's would. The whole table runs in
seconds: validation stops every row before training.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import pytest

import bench

# -- bad datasets from plugins ------------------------------------------------------------------

def make_splits(*, n_train=40, n_test=10, features=4, classes=2, input_shape=None, num_classes=None, edit=None, info=None,
                as_tuple=False):
    """Valid synthetic splits (labels alternate 0..classes-1), then ``edit(parts)`` breaks them."""
    import torch

    from bench.core.contracts import Splits

    g = torch.Generator().manual_seed(0)
    parts = {
        "train_x": torch.randn(n_train, features, generator=g), "train_y": torch.arange(n_train) % classes,
        "test_x": torch.randn(n_test, features, generator=g), "test_y": torch.arange(n_test) % classes,
    }
    if edit is not None:
        edit(parts)
    if as_tuple:
        return tuple(parts.values())
    return Splits(**parts, num_classes=classes if num_classes is None else num_classes,
                  input_shape=(features,) if input_shape is None else input_shape, info=info or {})


def _set(key, index, value):
    def edit(parts):
        parts[key][index] = value
    return edit


def _retype(key, dtype: str):
    def edit(parts):
        import torch

        parts[key] = parts[key].to(getattr(torch, dtype))
    return edit


def _cut(key, n):
    def edit(parts):
        parts[key] = parts[key][:n]
    return edit


BAD_DATASETS = {
    "labels-high": dict(edit=_set("train_y", 3, 7)),
    "labels-negative": dict(edit=_set("train_y", 0, -1)),
    "test-labels-high": dict(edit=_set("test_y", 0, 2)),
    "nan-inputs": dict(edit=_set("train_x", (5, 1), float("nan"))),
    "inf-test-inputs": dict(edit=_set("test_x", (2, 0), float("inf"))),
    "shape-mismatch": dict(input_shape=(5,)),
    "three-rows": dict(n_train=2, n_test=1),
    "class-missing": dict(num_classes=3),
    "float-labels": dict(edit=_retype("train_y", "float32")),
    "int32-labels": dict(edit=_retype("train_y", "int32")),
    "int-inputs": dict(edit=_retype("train_x", "int64")),
    "labels-short": dict(edit=_cut("train_y", 30)),
    "one-class": dict(classes=1),
    "float64-inputs": dict(edit=_retype("train_x", "float64")),
    "bounds-text": dict(info={"input_bounds": "zero-one"}),
    "bounds-reversed": dict(info={"input_bounds": (1.0, 0.0)}),
    "bounds-wide": dict(info={"input_bounds": ([0.0] * 5, [1.0] * 5)}),
    "tuple": dict(as_tuple=True),
    "requires-grad": dict(edit=lambda parts: parts["train_x"].requires_grad_(True)),
}


class BadDataset:
    description = "a dataset that breaks the Splits contract (tests/test_bad_inputs.py)"

    def __init__(self, name, kw):
        self.name, self.kw = f"bad-{name}", kw

    def load(self, root, download, arg=None):
        return make_splits(**self.kw)


class GoodDataset(BadDataset):
    def __init__(self):
        self.name, self.kw = "tiny-ok", {}


class MisspeltRecipe(GoodDataset):
    """A dataset whose default_recipe misspells a key: said as --recipe's, which the user never gave."""

    default_recipe = {"epoch": 5}

    def __init__(self):
        self.name, self.kw = "bad-recipe-key", {}


class ZeroLrRecipe(GoodDataset):
    """A dataset whose default_recipe holds a value bench refuses: said as the user's (plugins audit)."""

    default_recipe = {"lr": 0.0}

    def __init__(self):
        self.name, self.kw = "bad-recipe-value", {}


class TanhMLP:
    """A model PRUNE cannot patch (a Tanh between its Linear layers): refused by its check_setting."""

    name = "tanh-mlp"
    description = "Linear-Tanh-Linear (tests/test_bad_inputs.py)"

    def create(self, num_classes, input_shape, arg=None):
        import math

        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16), nn.Tanh(), nn.Linear(16, num_classes))


class ConvHead:
    """A model whose classifier is a convolution (no nn.Linear): be and cf-k/eu-k refuse it at plan time."""

    name = "conv-head"
    description = "Conv2d(kernel = input) to the classes, flattened (tests/test_bad_inputs.py)"

    def create(self, num_classes, input_shape, arg=None):
        from torch import nn

        return nn.Sequential(nn.Conv2d(input_shape[0], num_classes, tuple(input_shape[1:])), nn.Flatten())


class TupleOut:
    """A model whose forward returns (logits, features): the plan read .shape of a tuple, a raw traceback."""

    name = "tuple-out"
    description = "returns (logits, features) (tests/test_bad_inputs.py)"

    def create(self, num_classes, input_shape, arg=None):
        import math

        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(math.prod(input_shape), num_classes)

            def forward(self, x):
                return self.fc(x.flatten(1)), x

        return Net()


class SoftmaxOut:
    """A model whose forward ends in a softmax: bench applies softmax again for the divergences and
    the attacks' scores, wrong numbers with exit 0 (accuracies alone stay right)."""

    name = "softmax-out"
    description = "Linear then softmax (tests/test_bad_inputs.py)"

    def create(self, num_classes, input_shape, arg=None):
        import math

        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes), nn.Softmax(dim=1))


class CachedModule:
    """create() returns one module it keeps: the retrained reference was the original itself
    (retrain_* = original_*, every gap measured against the original, exit 0; found in review)."""

    name = "cached-module"
    description = "One Linear module, created once (tests/test_bad_inputs.py)"
    _net = None

    def create(self, num_classes, input_shape, arg=None):
        import math

        from torch import nn

        if CachedModule._net is None:
            CachedModule._net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
        return CachedModule._net


class EvalFlaw:
    """A linear model with one flaw at evaluation (found in review: ``F.dropout(x, p)`` is active in
    eval mode too, and the retrain method measured 0.995 against its own reference's 1.000, exit 0):
    ``dropout``, batch ``centring`` (a row's logits depend on its batch) or an ``inplace`` change of
    the input (a method was blamed for changing the request's tensors)."""

    description = "Linear model with a flaw at evaluation (tests/test_bad_inputs.py)"

    def __init__(self, flaw):
        self.name, self.flaw = f"eval-{flaw}", flaw

    def create(self, num_classes, input_shape, arg=None):
        import math

        import torch.nn.functional as F
        from torch import nn

        flaw = self.flaw

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(math.prod(input_shape), num_classes)

            def forward(self, x):
                if flaw == "inplace":
                    x.mul_(0.5)
                h = x.flatten(1)
                if flaw == "dropout":
                    h = F.dropout(h, 0.5)
                if flaw == "centring":
                    h = h - h.mean(0)
                if flaw == "nan":  # a log of inputs that can be negative: NaN != NaN read as randomness
                    h = h.log()
                return self.fc(h)

        return Net()


class DataPlugin:
    @bench.hookimpl
    def register_datasets(self, register):
        register(GoodDataset())
        register(MisspeltRecipe())
        register(ZeroLrRecipe())
        for name, kw in BAD_DATASETS.items():
            register(BadDataset(name, kw))

    @bench.hookimpl
    def register_models(self, register):
        register(TanhMLP())
        register(ConvHead())
        register(TupleOut())
        register(SoftmaxOut())
        register(CachedModule())
        for how in ("raises", "none", "none-first"):
            register(FlakyCreate(how))
        for flaw in ("dropout", "centring", "inplace", "nan"):
            register(EvalFlaw(flaw))


class FlakyCreate:
    """create() builds a module on its first call only: the second (the plan's shared-module check)
    raised, or returned None (``how``); a raw traceback even under --dry-run (plugins audit)."""

    description = "create() that works once (tests/test_bad_inputs.py)"

    def __init__(self, how):
        self.how, self.name, self.calls = how, f"create-{how}", 0

    def create(self, num_classes, input_shape, arg=None):
        import math

        from torch import nn

        self.calls += 1
        if self.how == "none-first" or self.calls > 1:
            if self.how == "raises":
                raise RuntimeError("no more models (planted)")
            return None
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


class DuplicateMethod:
    name = "ga"
    description = "a second 'ga' (tests/test_bad_inputs.py)"
    requires = frozenset({"forget"})
    default_params: dict = {}
    search_space: dict = {}

    def unlearn(self, model, request, params, ctx):  # pragma: no cover - never runs
        return model


class DuplicatePlugin:
    @bench.hookimpl
    def register_methods(self, register):
        register(DuplicateMethod())


# -- the table ----------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unwritable() -> Path | None:
    """A directory no file can be created in, even by root (/sys), or None where there is none."""
    for candidate in (Path("/sys"), Path("/proc")):
        try:
            fd, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(fd)
        os.unlink(probe)
    return None


UNWRITABLE = _unwritable()


def _file(w: Path, name: str, text: str) -> Path:
    path = w / name
    path.write_text(text)
    return path


def toml(text):
    """Arguments naming an experiment file with ``text``."""
    return lambda w: ["--config", str(_file(w, "exp.toml", text))]


def indices(text):
    return lambda w: ["-f", f"indices:{_file(w, 'forget.txt', text)}"]


def original(kind: str, *, model: str = ""):
    """Arguments ``--original [MODEL=]PATH`` with a file of ``kind`` (a broken state dict of the digits MLP)."""
    def build(w):
        import torch
        from safetensors.torch import save_file

        from bench.nn.nets import MLP, SmallCNN

        torch.manual_seed(0)
        state = MLP(64, (256, 256), 10).state_dict()
        path = w / "original.safetensors"
        if kind == "cnn":
            state = SmallCNN(1, 10).state_dict()
        elif kind == "narrow":
            state = MLP(64, (128, 128), 10).state_dict()
        elif kind == "missing":
            state.pop("net.5.bias")
        elif kind == "module":  # saved from a DataParallel wrapper
            state = {f"module.{k}": v for k, v in state.items()}
        elif kind == "compiled":  # saved from a torch.compile wrapper
            state = {f"_orig_mod.{k}": v for k, v in state.items()}
        elif kind == "truncated":
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in state.items()}, str(path))
            path.write_bytes(path.read_bytes()[:-100])
            return ["--original", str(path)]
        elif kind == "dir":
            return ["--original", str(w)]
        elif kind == "nan":
            state["net.3.weight"][2, 7] = float("nan")
        elif kind == "text":
            path = w / "original.pt"
            path.write_text("not weights\n")
        elif kind == "pickle":  # runs code when unpickled without weights_only
            path = w / "original.pt"
            torch.save({"net.1.weight": torch.zeros(1), "x": Marker()}, path)
        if kind not in ("text", "pickle"):
            save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return ["--original", f"{model}={path}" if model else str(path)]
    return build


class Marker:
    """An object whose unpickling would print a marker (refused by torch.load(weights_only=True))."""

    def __reduce__(self):
        return (print, ("UNPICKLED-MARKER",))


def below_a_file(flag):
    return lambda w: [flag, str(_file(w, "afile", "x") / "sub")]


def unwritable(*args_of):
    def build(w):
        if UNWRITABLE is None:
            pytest.skip("no unwritable directory on this machine")
        return [a.format(u=UNWRITABLE) for a in args_of]
    return build


def plugin(*args):
    """Rows whose dataset comes from the in-process DataPlugin."""
    return ("data", list(args))


def _image_folder(w: Path) -> Path:
    from PIL import Image

    for c in ("a", "b"):
        (w / "imgs" / c).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i + (c == "b") * 7, 0, 0)).save(w / "imgs" / c / f"{i}.png")
    return w / "imgs"


CASES: dict[str, tuple] = {
    # names
    "unknown-method": (["-m", "sisaa"], r"Unknown method 'sisaa'\. Did you mean: sisa\?"),
    "no-method-matches": (["-m", "zz*"], r"No method matches 'zz\*'"),
    "empty-methods": (["-m", ""], r"No method given\. Available methods:"),
    "unknown-dataset": (["-d", "digitz"], r"Unknown dataset 'digitz'\. Did you mean: digits\?"),
    "unknown-model": (["--model", "mlpp"], r"Unknown model 'mlpp'\. Did you mean: mlp\?"),
    "unknown-attack": (["--attacks", "mia"], r"Unknown attack 'mia'"),
    "dataset-option": (["-d", "digits:small"], r"Dataset 'digits' takes no options"),
    "synthetic-option": (["-d", "synthetic:n=abc"], r"Bad synthetic option 'n=abc'"),
    "csv-missing": (["-d", "csv:/nonexistent/x.csv"], r"file not found: /nonexistent/x\.csv"),
    "csv-three-rows": (lambda w: ["-d", f"csv:{_file(w, 'three.csv', 'a,b,label' + chr(10) + '1,2,0' + chr(10) + '3,4,1' + chr(10) + '5,6,0' + chr(10))}"],
                       r"Dataset 'csv:.*three\.csv' is too small: 2 training and 1 test rows"),
    "cnn-on-vectors": (["--model", "cnn", "-d", "synthetic:n=400"], r"Model 'cnn' needs image inputs"),
    # a key given twice: the last won without a word (found in review)
    "param-twice": (["-m", "ga", "-p", "ga.lr=0.1", "-p", "ga.lr=0.2"], r"--param sets ga\.lr twice \('0\.1', '0\.2'\); give it once"),
    "recipe-twice": (["-r", "epochs=5", "-r", "epochs=6"], r"--recipe sets epochs twice \('5', '6'\); give it once"),
    "synthetic-twice": (["-d", "synthetic:n=2000,n=3000"], r"Bad synthetic spec: n is set twice \('2000', '3000'\)"),
    "csv-continuous-label": (lambda w: ["-d", f"csv:{_file(w, 'cont.csv', 'a,b' + chr(10) + chr(10).join(f'{i},{i * 0.37:.2f}' for i in range(60)) + chr(10))},label=b"],
                             r"60 of the 60 values of the label column 'b' occur in one row only \(0\.00, 0\.37, 0\.74, \.\.\.\).*"
                             r"Is 'b' the class column\?"),
    "csv-classes-past-test-rows": (lambda w: ["-d", f"csv:{_file(w, 'many.csv', 'a,label' + chr(10) + chr(10).join(f'{i * 0.1},{i % 200}' for i in range(600)) + chr(10))}"],
                                   r"cannot split 600 examples of 200 classes into train and test with test=0\.2 .*give a "
                                   r"larger test fraction"),
    # found in the hostile audit, 2026-12-07: a repeated column name and a missing label were taken
    "csv-duplicate-column": (lambda w: ["-d", f"csv:{_file(w, 'dup.csv', 'a,a,label' + chr(10) + chr(10).join(f'{i},{i},{i % 2}' for i in range(40)) + chr(10))}"],
                             r"the header names column\(s\) 'a' more than once"),
    "csv-missing-label": (lambda w: ["-d", f"csv:{_file(w, 'nol.csv', 'a,label' + chr(10) + chr(10).join(f'{i},{i % 2 if i != 7 else chr(32)}' for i in range(40)) + chr(10))}"],
                          r"line 9 has no label \(column 'label' is ' '\)"),
    "csv-beyond-float32": (lambda w: ["-d", f"csv:{_file(w, 'f32.csv', 'a,label' + chr(10) + chr(10).join(f'{1e39 if i == 0 else i},{i % 2}' for i in range(40)) + chr(10))},normalize=none"],
                           r"column 'a' of line 2 lies beyond float32's range, .*\(value 1e\+39\)"),
    "csv-twice": (lambda w: ["-d", f"csv:{_file(w, 'two.csv', 'a,b' + chr(10) + '1,0' + chr(10))},label=a,label=b"],
                  r"Bad csv spec: label is set twice"),
    "forget-seed-unused": (["-f", "class:3", "--forget-seed", "5"], r"--forget-seed 5 has no effect: class:3 draw\(s\) nothing"),
    "mlp-empty-width": (["--model", "mlp:256,,256"], r"Bad mlp hidden sizes '256,,256'"),
    # sizes past the machine's memory: the kernel killed a --dry-run at size=100000, exit 137, no word
    "imagefolder-huge": (lambda w: ["-d", f"imagefolder:{_image_folder(w)},size=100000"],
                         r"Dataset 'imagefolder' \(6 images of 30,000,000,000 values\) needs about .* of memory, more than "
                         r"this machine has free .*size=32"),
    "mnist1d-huge": (["-d", "mnist1d:n=2000000000"], r"Dataset 'mnist1d:n=2000000000' needs about .* more than this machine"),
    "synthetic-huge": (["-d", "synthetic:n=2000000000"], r"Dataset 'synthetic' \(n=2000000000, features=20\) needs about"),
    # forget requests
    "forget-0%": (["-f", "random:0%"], r"Bad forget request 'random:0%'.*strictly between 0% and 100%"),
    "forget-1.5": (["-f", "random:1.5"], r"Bad forget request 'random:1\.5'"),
    "forget-nan": (["-f", "random:nan"], r"Bad forget request 'random:nan'"),
    "forget-kind": (["-f", "rand:10%"], r"Unknown forget request kind 'rand'"),
    "forget-class-text": (["-f", "class:three"], r"expected an integer class label"),
    "forget-twice": (["-f", "random:10%", "-f", "random:10%"], r"A forget request is given twice"),
    # --dry-run planned these twice and the run did them once
    "dataset-twice": (["-d", "digits", "-d", "digits"], r"The dataset digits is given twice \(--dataset\)"),
    "model-twice": (["--model", "mlp", "--model", "mlp"], r"The model mlp is given twice \(--model\)"),
    # the same written two ways ran every trial twice (hostile audit, 2026-12-07)
    "indices-directory": (lambda w: ["-f", f"indices:{w}"], r"Forget request 'indices:.*': .* is a directory\. Give a text file in it"),
    "param-of-a-wildcard-dropout": (["-m", "*", "-p", "unsir.lr=0.1"], r"Parameters given for method\(s\) unsir, which --methods '\*' leaves out here \(they cannot take random:10%\)"),
    "seeds-empty-item": (["-s", "0,,1"], r"Bad seeds '0,,1': an empty item \(two commas in a row, or one at an end\)"),
    "ray-port-range": (["--ray-address", "127.0.0.1:99999"], r"Bad --ray-address '127\.0\.0\.1:99999': .*a port in 1\.\.65535"),
    "forget-two-ways": (["-f", "random:10%", "-f", "random:0.1"], r"The forget requests random:10% and random:0\.1 are the same request written two ways"),
    "dataset-trailing-colon": (["-d", "digits", "-d", "digits:"], r"The dataset digits is given twice \(--dataset\)"),
    "forget-class-12": (["-f", "class:12"], r"Forget request 'class:12': unknown class 12; this dataset has classes 0\.\.9"),
    "forget-count-too-big": (["-f", "random:5000"], r"5000 points requested but the training set has 1437"),
    "forget-seq-syntax": (["-f", "seq:5xx"], r"Bad forget request 'seq:5xx'"),
    "indices-missing": (["-f", "indices:/nonexistent/forget.txt"], r"no file at /nonexistent/forget\.txt"),
    "indices-empty": (indices(""), r"lists no indices"),
    "indices-out-of-range": (indices("0\n2000\n"), r"indices out of range \[2000\]"),
    "indices-duplicate": (indices("3\n3\n"), r"duplicate indices \[3\]"),
    "indices-not-int": (indices("3\nfive\n"), r"line 2 of .* is 'five', not an integer index"),
    # your own original (--original)
    "original-missing": (["--original", "/nonexistent/original.safetensors"], r"--original /nonexistent/original\.safetensors \(for --model mlp\): no such file\. Give"),
    # relative: the folder it was looked for in (an experiment file's folder was taken for it)
    "original-missing-relative": (["--original", "runs/original.safetensors"], r"--original runs/original\.safetensors \(for --model mlp\): no such file \(a relative path, from --original or an experiment file's original, is taken from the current directory, /"),
    "original-other-arch": (original("cnn"), r"none of its 8 tensors \(features\.0\.bias, .*\) is a tensor of the model, which has net\.1\.bias, .*the file is of another architecture"),
    "original-other-size": (original("narrow"), r"5 tensor\(s\) of other shapes: 'net\.1\.weight' \(128, 64\) \(the model: \(256, 64\)\); "
                            r"'net\.1\.bias' \(128,\) \(the model: \(256,\)\); .*; and 1 more\. The file is of another architecture"),
    "original-module-prefix": (original("module"), r"its tensors are the model's with a 'module\.' prefix .*save model\.module\.state_dict\(\)"),
    "original-compiled-prefix": (original("compiled"), r"an '_orig_mod\.' prefix \(saved from a torch\.compile wrapper\): save model\._orig_mod\.state_dict\(\)"),
    "original-truncated": (original("truncated"), r"a damaged safetensors file \(its header does not match the bytes after it: truncated\?\)"),
    "original-directory": (original("dir"), r"\(for --model mlp\): a directory, not a file"),
    "original-missing-keys": (original("missing"), r"missing 1 tensor\(s\) the model has: net\.5\.bias\. Expected exactly the model's 6 tensors"),
    "original-nan": (original("nan"), r"tensor 'net\.3\.weight' holds 1 NaN value\(s\) of 65536; expected finite weights"),
    "original-not-weights": (original("text"), r"neither a safetensors file nor a torch state dict"),
    "original-pickle": (original("pickle"), r"holds objects other than tensors, which are never unpickled"),
    "original-unknown-model": (original("nan", model="cnn"), r"names model 'cnn', which is not a --model \(given: mlp\)"),
    "original-two-models": (lambda w: ["--model", "mlp", "--model", "mlp:128", *original("missing")(w)],
                            r"names no model, but there are 2 --model specs.*--original MODEL=PATH"),
    "toml-original-type": (toml("original = 3\n"), r"Bad value in the experiment file: original = 3 \(expected str or dict\)"),
    # recipe
    "recipe-key": (["-r", "epoch=3"], r"Unknown recipe key 'epoch'\. Valid keys"),
    "recipe-syntax": (["-r", "epochs"], r"Bad --recipe 'epochs': expected KEY=VALUE"),
    "recipe-epochs-0": (["-r", "epochs=0"], r"Bad recipe value epochs=0: epochs must be a finite number >= 1"),
    "recipe-lr-nan": (["-r", "lr=nan"], r"Bad recipe value lr=nan: lr must be a finite number > 0"),
    "recipe-batch-0": (["-r", "batch_size=0"], r"Bad recipe value batch_size=0"),
    "recipe-optimizer": (["-r", "optimizer=rmsprop"], r"Unknown optimizer 'rmsprop'"),
    "recipe-schedule": (["-r", "schedule=linear"], r"Unknown schedule 'linear'"),
    "recipe-augment": (["-r", "augment=mixup"], r"Unknown augment 'mixup'"),
    "recipe-augment-vectors": (["-d", "synthetic", "-r", "augment=crop"],
                               r"Recipe augment='crop' needs image inputs \(C, H, W\); dataset 'synthetic' has inputs of shape \(20,\)"),
    "recipe-momentum-adam": (["-r", "optimizer=adam", "-r", "momentum=0.5"], r"Recipe momentum=0\.5 has no effect with optimizer=adam"),
    "recipe-momentum-mnist1d": (["-d", "mnist1d", "-r", "momentum=0.5"], r"Recipe momentum=0\.5 has no effect with optimizer=adam"),
    # method parameters
    "param-syntax": (["-p", "lr=0.1"], r"Bad --param 'lr=0\.1': expected METHOD\.NAME=VALUE"),
    "param-unknown": (["-m", "ga", "-p", "ga.foo=1"], r"Unknown parameter 'foo' for method 'ga'"),
    "param-unselected": (["-m", "ga", "-p", "ft.lr=0.1"], r"Parameters given for method 'ft' .*which is not selected \(selected: ga\)"),
    "param-type": (["-m", "ga", "-p", "ga.epochs=abc"], r"Bad value for ga\.epochs: 'abc' is not an integer"),
    "param-bool": (["-m", "ga", "-p", "ga.train_mode=maybe"], r"Bad value for ga\.train_mode: 'maybe' is not true or false"),
    "param-negative-lr": (["-m", "ga", "-p", "ga.lr=-1"], r"Bad parameters for method 'ga': lr=-1\.0"),
    "param-variant": (["-m", "ga", "-p", "ga.variant=bogus"], r"Bad parameters for method 'ga': variant='bogus': expected one of ga, neggrad\+"),
    "params-file-missing": (["-m", "ga", "--params", "/nonexistent/best.json"], r"/nonexistent/best\.json"),
    "param-iu-alpha": (["-m", "iu", "-p", "iu.alpha=-5"], r"Bad parameters for method 'iu': alpha=-5\.0: expected a positive number"),
    "param-scrub-milestones": (["-m", "scrub", "-p", "scrub.milestones=²"], r"Bad parameters for method 'scrub': milestones='²'"),
    # method parameters that do not fit the setting (check_setting, once the data are loaded)
    "setting-sisa-shards": (["-m", "sisa", "-p", "sisa.shards=2000"],
                            r"Method 'sisa' cannot run on digits / mlp / random:10%: shards=2000 x slices=1 needs at "
                            r"least 2,000 training points, and digits has 1,437\. Fix it with -p sisa\.shards=VALUE or "
                            r"-p sisa\.slices=VALUE\.$"),
    "setting-sisa-slices": (["-m", "sisa", "-p", "sisa.slices=1000"],  # it said to fix shards only (hostile audit)
                            r"shards=5 x slices=1000 needs at least 5,000 .*Fix it with -p sisa\.shards=VALUE or -p sisa\.slices=VALUE"),
    "setting-salun-threshold": (["-m", "salun", "-p", "salun.threshold=1e-6"],
                                r"Method 'salun' cannot run on .*threshold=1e-06 keeps int\(85,002 x 1e-06\) = 0 of mlp's"),
    "setting-l2ul-relabel": (["-m", "l2ul", "-p", "l2ul.mode=relabel", "-p", "l2ul.relabel_to=99"],
                             r"Method 'l2ul' cannot run on .*relabel_to=99 is not a class of digits \(0\.\.9\)"),
    "setting-fisher-alpha-0": (["-m", "fisher", "-p", "fisher.alpha=0"],
                               r"Method 'fisher' cannot run on digits / mlp / random:10%: alpha=0 leaves every weight "
                               r"as it is on random:10%"),
    "setting-prune-box": (["-m", "prune", "-p", "prune.region=box"],
                          r"Method 'prune' cannot run on .*region='box' is for a single linear head, and mlp's head has "
                          r"512 hidden ReLU units"),
    "setting-be-classifier": (("data", ["-m", "be", "--model", "conv-head"]),
                              r"Method 'be' cannot run on digits / conv-head / random:10%: adds a shadow class "
                              r"to the model's final linear layer, but Sequential has no nn\.Linear with 10 outputs"),
    "setting-cfk-blocks": (("data", ["-m", "cf-k", "--model", "conv-head"]),
                           r"Method 'cf-k' cannot run on digits / conv-head / random:10%: trains the last "
                           r"k blocks of the model, but it does not know the blocks"),
    "continual-epsilon": (["-m", "ga", "-f", "seq:3x10", "--attacks", "epsilon"],
                          r"Attack 'epsilon' runs the trial's method again in one shot on every forgotten point, and "
                          r"the continual request seq:3x10 unlearns them in a sequence"),
    "continual-ulira": (["-m", "ga", "-f", "seq:3x10", "--attacks", "loss,ulira"], r"Attack 'ulira' runs the trial's method again"),
    "sisa-ulira": (["-m", "sisa", "--attacks", "ulira"], r"Attack 'ulira' runs the trial's method on plain shadow models, and sisa"),
    # ulira and epsilon run the method on forget sets they draw (indices requests): unsir takes class requests only
    "unsir-ulira": (["-m", "unsir", "-f", "class:3", "--attacks", "ulira"],
                    r"Attack 'ulira' runs the trial's method again on forget sets it draws itself \(an indices request\), "
                    r"and unsir take\(s\) no such request"),
    "plugin-recipe-value": (plugin("-d", "bad-recipe-value"),
                            r"Bad recipe value lr=0\.0: lr must be a finite number > 0 .*\)\. \(in the default_recipe of "
                            r"dataset plugin 'bad-recipe-value': fix the plugin's default_recipe\)"),
    "plugin-recipe-key": (plugin("-d", "bad-recipe-key"),
                          r"Unknown recipe key 'epoch' in the default_recipe of dataset plugin 'bad-recipe-key'; valid keys: .*"
                          r"Fix the plugin's default_recipe\."),
    "model-returns-tuple": (("data", ["-m", "ft", "--model", "tuple-out"]),
                            r"Model 'tuple-out' returned a tuple on dataset 'digits', not a tensor; expected logits of "
                            r"shape \(N, 10\): return them alone from forward\(\)\."),
    "model-returns-probabilities": (("data", ["-m", "ft", "--model", "softmax-out"]),
                                    r"Model 'softmax-out' returns probabilities on dataset 'digits' \(non-negative rows "
                                    r"that sum to 1\); bench expects logits .*drop the final softmax from forward\(\)\."),
    "model-create-cached": (("data", ["-m", "ft", "--model", "cached-module"]),
                            r"Model 'cached-module': two create\(\) calls returned the same module; create\(\) must "
                            r"build a new model on every call"),
    "model-create-fails-later": (("data", ["-m", "ft", "--model", "create-raises"]),
                                 r"Model 'create-raises': create\(\) failed on its second call \(RuntimeError: no more "
                                 r"models \(planted\)\); bench calls it once for every model it trains"),
    "model-create-none-later": (("data", ["-m", "ft", "--model", "create-none"]),
                                r"Model 'create-none': create\(\) returned NoneType on its second call, not a "
                                r"torch\.nn\.Module"),
    "model-create-none": (("data", ["-m", "ft", "--model", "create-none-first"]),
                          r"Model 'create-none-first': create\(\) returned NoneType, not a torch\.nn\.Module; it must "
                          r"return the network it builds\."),
    "model-eval-dropout": (("data", ["-m", "ft", "--model", "eval-dropout"]),
                           r"Model 'eval-dropout' on dataset 'digits': gives other logits for the same inputs in eval mode: "
                           r"randomness at evaluation .*use nn\.Dropout, which eval\(\) turns off\."),
    "model-eval-batch-statistics": (("data", ["-m", "ft", "--model", "eval-centring"]),
                                    r"Model 'eval-centring' on dataset 'digits': in eval mode a row's logits depend on "
                                    r"the other rows of its batch \(batch statistics at evaluation\?\)"),
    "model-nan-logits": (("data", ["-m", "ft", "--model", "eval-nan"]),
                         r"Model 'eval-nan' returns NaN or infinite logits on two test inputs of dataset 'digits'"),
    "model-changes-input": (("data", ["-m", "ft", "--model", "eval-inplace"]),
                            r"Model 'eval-inplace' changes its input in place on dataset 'digits' .*work on a copy"),
    "setting-prune-model": (("data", ["-m", "prune", "--model", "tanh-mlp"]),
                            r"Method 'prune' cannot run on digits / tanh-mlp / random:10%: PRUNE cannot patch the model "
                            r"\(Sequential\): it contains a Tanh"),
    # seeds
    "seeds-text": (["-s", "a,b"], r"Bad seeds 'a,b': expected integers"),
    "seeds-reversed": (["-s", "3-1"], r"Bad seeds '3-1': the range 3-1 is empty"),
    "seeds-repeated": (["-s", "0,1,0"], r"Bad seeds '0,1,0': a seed is repeated"),
    "seeds-huge-range": (["-s", "0-100000"], r"Bad seeds '0-100000': the range 0-100000 holds 100001 seeds; a run takes at most 1000"),
    "seeds-too-large": (["-s", "2147483648"], r"seed 2147483648 is too large; seeds lie in 0\.\.2147483647"),
    "forget-seed-negative": (["--forget-seed", "-1"], r"Bad --forget-seed -1: expected an integer in 0\.\.2147483647"),
    "forget-seed-huge": (["--forget-seed", "99999999999"], r"Bad --forget-seed 99999999999"),
    # resources, executor, device
    "cpus-too-many": (["--cpus-per-trial", "999"], r"--cpus-per-trial 999 is more than this machine has \(\d+ CPUs\)"),
    "cpus-zero": (["--cpus-per-trial", "0"], r"--cpus-per-trial must be positive \(got 0\)"),
    "cpus-nan": (["--cpus-per-trial", "nan"], r"Bad --cpus-per-trial nan: expected a finite number"),
    "cpus-tiny": (["--cpus-per-trial", "0.00001"], r"Bad --cpus-per-trial 1e-05: Ray counts resources in steps of 0\.0001"),
    "timeout-zero": (["--trial-timeout", "0"], r"Bad --trial-timeout 0\.0: expected a number of seconds > 0"),
    "timeout-inf": (["--trial-timeout", "inf"], r"Bad --trial-timeout inf: expected a number of seconds > 0"),
    "gpus-negative": (["--gpus-per-trial", "-1"], r"--gpus-per-trial must be >= 0 \(got -1\)"),
    "gpus-inf": (["--gpus-per-trial", "inf"], r"Bad --gpus-per-trial inf: expected a finite number"),
    "gpus-too-many": (["--gpus-per-trial", "64"], r"--gpus-per-trial 64 (but torch sees no GPU|is more than this machine has)"),
    "device-unknown": (["--device", "gpu"], r"Unknown device 'gpu': expected auto, cpu or cuda"),
    "shadow-odd": (["--shadow-models", "3"], r"--shadow-models must be an even integer >= 2 \(got 3\)"),
    "executor-unknown": (["--executor", "dask"], r"Invalid value for '--executor'"),
    "local-with-address": (["--executor", "local", "--ray-address", "127.0.0.1:6379"], r"--ray-address needs the ray executor"),
    "ray-address-syntax": (["--ray-address", "myhead"], r"Bad --ray-address 'myhead': expected HOST:PORT"),
    "ray-address-closed": (lambda w: ["--ray-address", f"127.0.0.1:{_closed_port()}"], r"No Ray head answers at 127\.0\.0\.1:\d+"),
    # tracking store, names
    "tracking-garbage": (["--tracking-uri", "garbage"], r"Unsupported tracking URI 'garbage': a plain path.*sqlite:///"),
    "tracking-file-uri": (["--tracking-uri", "file:///tmp/mlruns"], r"Unsupported tracking URI 'file:///tmp/mlruns'.*sqlite:////tmp/mlruns\.db"),
    "tracking-plain-path": (lambda w: ["--tracking-uri", str(w / "store.db")], r"a plain path.*--tracking-uri sqlite:///.*store\.db"),
    "tracking-ftp": (["--tracking-uri", "ftp://host/x"], r"Unsupported tracking URI 'ftp://host/x'"),
    "tracking-two-slashes": (["--tracking-uri", "sqlite://m.db"], r"a SQLite store is sqlite:///PATH \(three slashes\)"),
    "tracking-empty": (["--tracking-uri", ""], r"Empty --tracking-uri"),
    # a byte that is not UTF-8 (kept by Python as a lone surrogate): the dry run passed it, the run
    # failed as "opening the run in the MLflow store failed ... surrogates not allowed" (hostile audit)
    "nonutf8-csv-path": (["-d", "csv:data/g\udcff.csv"], r"Bad --dataset 'csv:data/g\\xff\.csv': it holds a byte that is not UTF-8"),
    "nonutf8-original": (["--original", "orig/g\udcff.pt"], r"Bad --original .*g\\xff\.pt.*: it holds a byte that is not UTF-8"),
    "nonutf8-run-name": (["--run-name", "\udcff"], r"Bad --run-name '\\xff': it holds a byte that is not UTF-8"),
    # each '' (an unset shell variable) was read as not given: the shared default directories, no file
    "cache-dir-empty": (["--cache-dir", ""], r"Empty --cache-dir: expected a directory; drop it to use the default"),
    "data-dir-empty": (["--data-dir", ""], r"Empty --data-dir: expected a directory"),
    "config-empty": (["-c", ""], r"Empty --config: expected an experiment file"),
    "preset-empty": (["--preset", ""], r"Empty --preset: expected the name of a preset"),
    "params-empty": (["--params", ""], r"Empty --params: expected a JSON file or the run id"),
    "tracking-no-dir": (lambda w: ["--tracking-uri", f"sqlite:///{w / 'nope' / 'm.db'}"], r"the directory .*nope does not exist"),
    "tracking-is-dir": (lambda w: ["--tracking-uri", f"sqlite:///{w}"], r"is not a file \(a directory\?\)"),
    "tracking-server-down": (lambda w: ["--tracking-uri", f"http://127.0.0.1:{_closed_port()}"], r"MLflow tracking server .* does not answer"),
    # a database store: its driver and its server are checked before any work (a 100-line traceback
    # after loading the data; hostile audit 2026-12-07), and its password is never printed
    "tracking-db-driver": (["--tracking-uri", "mssql://u:secret@127.0.0.1/db"], r"Tracking store mssql://u:\*\*\*@127\.0\.0\.1/db: its database driver is not installed \(No module named 'pyodbc'\)"),
    "tracking-db-dialect": (["--tracking-uri", "postgresql+nosuch://u:p@h/db"], r"Bad tracking URI 'postgresql\+nosuch://u:\*\*\*@h/db': Can't load plugin"),
    "tracking-unwritable": (unwritable("--tracking-uri", "sqlite:///{u}/m.db"), r"Tracking store .*: the directory .* is not writable"),
    "experiment-empty": (["-e", ""], r"Bad --experiment '': expected a non-empty name"),
    "experiment-blank": (["-e", "   "], r"Bad --experiment '   ': expected a non-empty name"),
    "experiment-newline": (["-e", "a\nb"], r"Bad --experiment 'a\\nb': the name holds control characters"),
    "experiment-long": (["-e", "x" * 300], r"Bad --experiment: the name has 300 characters; at most 256"),
    "run-name-empty": (["--run-name", ""], r"Bad --run-name '': expected a non-empty name"),
    "run-name-tab": (["--run-name", "a\tb"], r"Bad --run-name 'a\\tb': the name holds control characters"),
    # directories
    "cache-below-file": (below_a_file("--cache-dir"), r"Bad --cache-dir .*afile/sub: cannot write there \(.*afile is a file, not a directory\)"),
    "cache-unwritable": (unwritable("--cache-dir", "{u}/bench-cache"), r"Bad --cache-dir .*bench-cache: cannot write there"),
    "data-dir-is-file": (lambda w: ["--data-dir", str(_file(w, "afile", "x"))], r"Directory '.*afile' is a file"),
    "download-below-file": (lambda w: ["--download", *below_a_file("--data-dir")(w)], r"Bad --data-dir .*afile/sub: cannot write there"),
    "download-unwritable": (unwritable("--download", "--data-dir", "{u}/bench-data"), r"Bad --data-dir .*bench-data: cannot write there"),
    # experiment files
    "toml-missing": (["--config", "/nonexistent/exp.toml"], r"/nonexistent/exp\.toml"),
    "toml-invalid": (toml("methods = [ga\n"), r"is not valid TOML"),
    "toml-unknown-key": (toml('methods = "ga"\ndatasets = ["digits"]\n'), r"Unknown keys in the experiment file: datasets\. Valid keys:"),
    "toml-wrong-type": (toml("cpus_per_trial = \"2\"\n"), r"Bad value in the experiment file: cpus_per_trial = '2' \(expected int or float\)"),
    "toml-seeds-type": (toml("seeds = 1.5\n"), r"Bad value in the experiment file: seeds = 1\.5"),
    "toml-recipe-not-table": (toml('recipe = "epochs=3"\n'), r"Bad value in the experiment file: recipe = 'epochs=3'"),
    "toml-params-not-tables": (toml("[params]\nga = 5\n"), r"Bad value in the experiment file: params ="),
    "toml-params-unselected": (toml('methods = "ga"\n[params.nope]\nlr = 1\n'),
                               r"Parameters given for method 'nope' .*\[params\.nope\] in the experiment file"),
    "toml-param-unknown": (toml('methods = "ga"\n[params.ga]\nfoo = 1\n'), r"Unknown parameter 'foo' for method 'ga'"),
    "toml-param-float-for-int": (toml('methods = "ga"\n[params.ga]\nepochs = 1.5\n'), r"Bad value for ga\.epochs: 1\.5 is not an integer"),
    "toml-recipe-epochs-0": (toml("[recipe]\nepochs = 0\n"), r"Bad recipe value epochs=0"),
    "toml-forget-seed-bool": (toml("forget_seed = true\n"), r"Bad value in the experiment file: forget_seed = True"),
    "toml-experiment-empty": (toml('experiment = ""\n'), r"Bad --experiment '': expected a non-empty name"),
    "toml-seeds-huge": (toml('seeds = "0-5000"\n'), r"Bad seeds '0-5000'.*at most 1000"),
    # datasets from a plugin that break the contract
    "plugin-labels-high": (plugin("-d", "bad-labels-high"), r"Dataset 'bad-labels-high': train_y spans labels 0\.\.7, outside 0\.\.1"),
    "plugin-requires-grad": (plugin("-d", "bad-requires-grad"),
                             r"Dataset 'bad-requires-grad': train_x or train_y requires grad; return plain data \(x\.detach\(\)\)"),
    "plugin-labels-negative": (plugin("-d", "bad-labels-negative"), r"train_y spans labels -1\.\.1, outside 0\.\.1"),
    "plugin-test-labels-high": (plugin("-d", "bad-test-labels-high"), r"test_y spans labels 0\.\.2, outside 0\.\.1"),
    "plugin-nan-inputs": (plugin("-d", "bad-nan-inputs"), r"train_x holds NaN or infinite values in 1 of 40 rows"),
    "plugin-inf-test-inputs": (plugin("-d", "bad-inf-test-inputs"), r"test_x holds NaN or infinite values"),
    "plugin-shape-mismatch": (plugin("-d", "bad-shape-mismatch"), r"train_x has shape \(40, 4\), which does not match input_shape \(5,\)"),
    "plugin-three-rows": (plugin("-d", "bad-three-rows"), r"Dataset 'bad-three-rows' is too small: 2 training and 1 test rows"),
    "plugin-class-missing": (plugin("-d", "bad-class-missing"), r"class\(es\) 2 of 0\.\.2 have no training rows"),
    "plugin-float-labels": (plugin("-d", "bad-float-labels"), r"train_y has dtype torch\.float32; expected int64"),
    "plugin-int32-labels": (plugin("-d", "bad-int32-labels"), r"train_y has dtype torch\.int32; expected int64"),
    "plugin-int-inputs": (plugin("-d", "bad-int-inputs"), r"train_x has dtype torch\.int64; expected float32"),
    # each passed the plan (and --dry-run) and failed every reference or trial (2026-12-06)
    "plugin-float64-inputs": (plugin("-d", "bad-float64-inputs"), r"train_x has dtype torch\.float64; expected float32"),
    "plugin-bounds-text": (plugin("-d", "bad-bounds-text"), r"info\['input_bounds'\] is 'zero-one'; expected \(low, high\)"),
    "plugin-bounds-reversed": (plugin("-d", "bad-bounds-reversed"), r"info\['input_bounds'\] is \(1\.0, 0\.0\).*low <= high"),
    "plugin-bounds-wide": (plugin("-d", "bad-bounds-wide"), r"info\['input_bounds'\] is \(\[0\.0, 0\.0"),
    "plugin-tuple": (plugin("-d", "bad-tuple"), r"Dataset 'bad-tuple': load\(\) returned tuple; expected a bench\.Splits"),
    "plugin-labels-short": (plugin("-d", "bad-labels-short"), r"train_y has shape \(30,\) for 40 inputs"),
    "plugin-one-class": (plugin("-d", "bad-one-class"), r"num_classes is 1; expected an integer >= 2"),
    "plugin-forget-class": (plugin("-d", "tiny-ok", "-f", "class:5"), r"Forget request 'class:5': unknown class 5; this dataset has classes 0\.\.1"),
    "plugin-forget-count": (plugin("-d", "tiny-ok", "-f", "random:40"), r"40 points requested but the training set has 40"),
    "plugin-duplicate-name": (("duplicate", ["-m", "ga"]),
                              r"Duplicate method name 'ga': registered by plugin 'bench\.methods' and again by plugin .*BENCH_PLUGINS"),
}


# -- the harness --------------------------------------------------------------------------------

def _runs_recorded(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        try:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        except sqlite3.OperationalError:  # no tables yet
            return 0


def _ray_initialized() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if ``bench run`` tries to start or join Ray."""
    import bench.run.executor as executor

    calls = []
    monkeypatch.setattr(executor, "start_ray", lambda *a, **k: calls.append(a) or pytest.fail("Ray was started"))
    return calls


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_before_work(case, tmp_path, invoke_bench, no_ray, monkeypatch):
    from bench.core.plugins import register_plugin, unregister_plugin

    args, pattern = CASES[case]
    extra = None
    if isinstance(args, tuple):
        extra = DataPlugin() if args[0] == "data" else DuplicatePlugin()
        args = args[1]
    if callable(args):
        args = args(tmp_path)
    cache, db = tmp_path / "cache", tmp_path / "mlflow.db"
    store = ["--cache-dir", str(cache), "--tracking-uri", f"sqlite:///{db}", "--data-dir", str(tmp_path / "data")]
    # the row's own values come last and win (click keeps the last of a repeated option)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ray_before = _ray_initialized()
    if extra is not None:
        register_plugin(extra)
    try:
        t0 = time.perf_counter()
        proc = invoke_bench("run", *store, *args, cwd=tmp_path)
        took = time.perf_counter() - t0
    finally:
        if extra is not None:
            unregister_plugin(extra)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, (proc.returncode, out)
    assert "Traceback" not in out, out
    assert re.search(pattern, proc.stderr, re.S), (pattern, proc.stderr)
    assert "trial(s)" not in proc.stdout  # the plan was never announced
    assert no_ray == [] and (ray_before or not _ray_initialized())
    assert not list(cache.rglob("*.safetensors")) if cache.exists() else True
    assert _runs_recorded(db) == 0
    assert "UNPICKLED-MARKER" not in out  # a pickle in an --original file is never run
    assert took < 10, f"{case} took {took:.1f}s to be refused"


def test_table_is_large():
    assert len(CASES) >= 60


def test_numpy_integers_and_a_list_shape_are_made_plain():
    """num_classes = y.max() + 1 is a NumPy integer: the kit passed it and bench refused it ("num_classes
    is np.int64(3); expected an integer >= 2"; found in review); both take it now, and bench makes it
    (and a list input_shape) plain for the JSON records and cache keys."""
    import numpy as np

    from bench.run.checks import check_splits
    from bench.testing import check_load_returns_splits

    sp = make_splits(num_classes=np.int64(2), input_shape=[np.int64(4)])
    out = check_splits("numpy-ints", sp)
    assert type(out.num_classes) is int and out.input_shape == (4,) and type(out.input_shape[0]) is int
    assert type(sp.num_classes) is np.int64  # the plugin's object as it was: it may be read-only
    plain = make_splits()
    assert check_splits("plain", plain) is plain
    import collections

    Frozen = collections.namedtuple("Frozen", "train_x train_y test_x test_y num_classes input_shape info")
    frozen = Frozen(*(getattr(sp, f) for f in Frozen._fields))  # a read-only object with NumPy ints
    assert check_splits("frozen", frozen).num_classes == 2

    class NumpyInts(GoodDataset):
        def load(self, root, download, arg=None):
            return make_splits(num_classes=np.int64(2), input_shape=[4])

    check_load_returns_splits(NumpyInts())



@pytest.mark.slow  # bench processes in process, one per case
@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("model-") and isinstance(CASES[c][0], tuple)])
def test_the_dry_run_refuses_the_models_a_run_refuses(case, tmp_path, invoke_bench):
    """The dry run ran a model on zeros and checked the output's shape only: a final softmax, a model
    returned twice or random at evaluation passed it ("The plan is valid"), and the run refused them
    (found in review). On data whose files are missing the rows are random ones of the declared shape."""
    from bench.core.plugins import register_plugin, unregister_plugin

    args, pattern = CASES[case]
    store = ["--cache-dir", str(tmp_path / "cache"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
             "--data-dir", str(tmp_path / "data"), "--executor", "local", "--dry-run"]
    plugin = DataPlugin()
    register_plugin(plugin)
    try:
        proc = invoke_bench("run", *store, *args[1], cwd=tmp_path)
        missing = invoke_bench("run", *store, *args[1], "-d", "cifar10", cwd=tmp_path) if case == "model-eval-dropout" else None
    finally:
        unregister_plugin(plugin)
    assert proc.returncode == 2 and re.search(pattern, proc.stderr, re.S), (proc.returncode, proc.stdout + proc.stderr)
    if missing is not None:
        assert "NOT READY" in missing.stdout and missing.returncode == 2, missing.stdout + missing.stderr
        assert "Model 'eval-dropout' on dataset 'cifar10': gives other logits for the same inputs" in missing.stderr
