"""Our ``rl``, ``salun``, ``salun-soft``, ``ft`` and ``ga`` beside the reference code they follow,
on the same digits MLP, data, hyperparameters, batch order and random labels.

Runs OPTML-Group/Unlearn-Saliency at commit a6e89fd17ff737c24c6aa16c9574469a234ffd91, imported from
the checkout given (nothing of it is copied here): ``Classification/unlearn/RL.py`` (RL, and SalUn
with a mask), ``Classification/generate_mask.py`` (``save_gradient_ratio``: SalUn's mask),
``Classification/unlearn/RL_pro.py`` (``RL_proximal``: SalUn-soft), ``Classification/unlearn/FT.py``,
``Classification/unlearn/GA.py``, all driven by ``Classification/unlearn/impl.py`` with the
defaults of ``Classification/arg_parser.py``.

One original ``mlp`` (256,256) is trained on the digits training split with the digits recipe,
seed 0. Each comparison starts ours and the reference from copies of it, with the forget set
``random:10%`` (the harness's draw, forget seed 0: 144 points) or ``class:3`` (146 points). The
randomness is aligned, not just seeded alike: ours draws shuffles and labels from a
``torch.Generator`` seeded 0; the reference draws from torch's global generator, seeded 0 just
before the call, and its loaders are replaced by DataLoaders over our tensors whose batch sampler
calls ``torch.randperm`` at the same point of the stream as ours (its own ``np.random.randint``
labels of the joint pass become the same ``torch.randint`` draw; in the joint pass each batch lists
its forget points first, as ours concatenates them, which only fixes the summation order). No
final batch of one occurs with these sizes, so our skipping of it does not enter. Adapters, not
changes to the reference: ``.cuda()`` is the identity, its prints are swallowed, and where the
checkout's ``trainer`` package or the ``datasets`` (Hugging Face) package cannot be imported, stubs
stand in (neither is used by the functions run here).

Compared: ``rl`` (both passes), ``salun`` (its mask, computed by both over the forget set in order
in batches of 256, then RL with the reference's own mask), ``salun-soft`` (both passes, and the
alternating one again with an adapter that advances k per retain step as the reference does, to
isolate that documented choice), ``ft`` and ``ga`` (our early stop off; then ours with it on).
Printed per comparison: the max abs weight difference after the first epoch and after the full
run, forget/retain/test accuracy of both, and a verdict: ``agree to 1e-6`` or ``differ: <why>``.
About 10 s on one thread.

    .venv/bin/python benchmarks/upstream_saliency.py --upstream PATH/TO/Unlearn-Saliency
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import subprocess
import sys
import tempfile
import types
from pathlib import Path

COMMIT = "a6e89fd17ff737c24c6aa16c9574469a234ffd91"
SIGNATURES = {  # file -> text it must contain at that commit
    "unlearn/RL.py": "def _restore_masked_params",
    "unlearn/RL_pro.py": "def RL_proximal",
    "unlearn/FT.py": "def FT_iter",
    "unlearn/GA.py": "def GA(",
    "unlearn/impl.py": "def _iterative_unlearn_impl",
    "generate_mask.py": "def save_gradient_ratio",
    "arg_parser.py": "--unlearn_epochs",
}
TOL = 1e-6


def classification_dir(path: str) -> Path | None:
    """The ``Classification`` folder of an Unlearn-Saliency checkout at ``path`` (the repository
    root or that folder), or None when ``path`` is not one."""
    for cand in (Path(path) / "Classification", Path(path)):
        try:
            if all(sig in (cand / f).read_text() for f, sig in SIGNATURES.items()):
                return cand.resolve()
        except OSError:
            continue
    return None


def checkout_commit(cls_dir: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(cls_dir), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def import_reference(cls_dir: Path):
    """The reference's modules, imported from ``cls_dir`` with stubs for what cannot load offline."""
    sys.path.insert(0, str(cls_dir))
    try:
        importlib.import_module("datasets.load")
    except ImportError:  # Hugging Face datasets, used by the reference's ImageNet loader only
        for name in [m for m in sys.modules if m == "datasets" or m.startswith("datasets.")]:
            del sys.modules[name]
        stub, load = types.ModuleType("datasets"), types.ModuleType("datasets.load")
        stub.__path__, stub.load = [], load
        load.load_dataset = lambda *a, **k: (_ for _ in ()).throw(ImportError("datasets stub"))
        sys.modules.update({"datasets": stub, "datasets.load": load})
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            importlib.import_module("trainer")
        except ImportError:  # its __init__ names train_with_rewind, absent from trainer/train.py
            pkg = types.ModuleType("trainer")
            pkg.__path__ = [str(cls_dir / "trainer")]
            sys.modules["trainer"] = pkg
            train, val = importlib.import_module("trainer.train"), importlib.import_module("trainer.val")
            pkg.train, pkg.validate = train.train, val.validate
            pkg.get_optimizer_and_scheduler = train.get_optimizer_and_scheduler
        mods = {n: importlib.import_module(n) for n in ("arg_parser", "unlearn", "generate_mask")}
    return types.SimpleNamespace(**mods, rl_mod=sys.modules["unlearn.RL"], pro_mod=sys.modules["unlearn.RL_pro"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", help="a checkout of OPTML-Group/Unlearn-Saliency at " + COMMIT[:7])
    args = ap.parse_args()
    cls_dir = classification_dir(args.upstream) if args.upstream else None
    if cls_dir is None:
        print(f"upstream_saliency: --upstream must name a checkout of OPTML-Group/Unlearn-Saliency at {COMMIT[:7]} "
              f"(its root or its Classification folder){'' if args.upstream else '; none given'}", file=sys.stderr)
        sys.exit(2)
    head = checkout_commit(cls_dir)
    if head is not None and head != COMMIT:
        print(f"warning: the checkout is at {head[:7]}, not {COMMIT[:7]}", file=sys.stderr)
    run(cls_dir)


def run(cls_dir: Path) -> None:
    import torch
    from bench.datasets.digits import Digits
    from bench.methods.finetune import FineTune
    from bench.methods.gradient_ascent import GradientAscent
    from bench.methods.rl import RandomLabels, train_random_labels
    from bench.methods.salun import Proximal, SalUn, SalUnSoft, saliency_mask, schedule_steps
    from torch import nn

    from bench.core.contracts import ForgetRequest, MethodContext
    from bench.core.forget import parse_forget
    from bench.core.recipe import build_recipe
    from bench.nn.nets import MLP
    from bench.nn.training import accuracy, fit

    torch.set_num_threads(1)
    ref = import_reference(cls_dir)
    d = Digits().load(None, False, None)
    torch.manual_seed(0)
    original = fit(MLP(64, (256, 256), d.num_classes), d.train_x, d.train_y, build_recipe(Digits.default_recipe), 0)

    def request(text):
        idx = parse_forget(text).select(d.train_y.numpy(), d.num_classes, 0)
        f = torch.zeros(len(d.train_y), dtype=torch.bool)
        f[idx] = True
        return ForgetRequest(num_classes=d.num_classes, kind=text.split(":")[0], forget_indices=idx,
                             forget_class=3 if text == "class:3" else None, forget_x=d.train_x[f],
                             forget_y=d.train_y[f], retain_x=d.train_x[~f], retain_y=d.train_y[~f])

    requests = {t: request(t) for t in ("random:10%", "class:3")}
    real_loader = torch.utils.data.DataLoader

    class Rows(torch.utils.data.Dataset):
        """Our tensors with the ``data``/``targets`` attributes the reference reads and rewrites."""

        def __init__(self, x, y):
            self.data, self.targets = x, y.numpy().copy()

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, i):
            return self.data[i], int(self.targets[i])

    class Order:
        """Batches of a permutation drawn from torch's global generator when iteration starts, as
        ``bench.nn.training.batches`` draws from ours; ``split``: each batch lists its indices
        below it first (our joint pass concatenates forget rows, then retain rows)."""

        def __init__(self, n, batch_size, shuffle, split=None):
            self.n, self.bs, self.shuffle, self.split = n, batch_size, shuffle, split
            assert n % batch_size != 1, "a final batch of one would meet our skipping choice"

        def __len__(self):
            return -(-self.n // self.bs)

        def __iter__(self):
            order = torch.randperm(self.n) if self.shuffle else torch.arange(self.n)
            for s in range(0, self.n, self.bs):
                b = order[s:s + self.bs]
                if self.split is not None:
                    b = torch.cat([b[b < self.split], b[b >= self.split]])
                yield b.tolist()

    def loader(dataset, batch_size=1, shuffle=False, **_):
        split = len(dataset.datasets[0]) if isinstance(dataset, torch.utils.data.ConcatDataset) else None
        return real_loader(dataset, batch_sampler=Order(len(dataset), batch_size, shuffle, split),
                           generator=torch.Generator())  # its base-seed draw must not touch the global stream

    def randint(low, high, size):  # the reference's np.random.randint, drawn as our torch.randint
        return torch.randint(low, high, tuple(size) if isinstance(size, tuple) else (size,)).numpy()

    @contextlib.contextmanager
    def cpu_reference():
        saved = (torch.Tensor.cuda, torch.utils.data.DataLoader, ref.rl_mod.np, ref.pro_mod.np)
        torch.Tensor.cuda = lambda self, *a, **k: self
        torch.utils.data.DataLoader = loader
        shim = types.SimpleNamespace(random=types.SimpleNamespace(randint=randint))
        ref.rl_mod.np = ref.pro_mod.np = shim
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            torch.Tensor.cuda, torch.utils.data.DataLoader, ref.rl_mod.np, ref.pro_mod.np = saved

    def ref_args(**over):
        argv, sys.argv = sys.argv, ["arg_parser"]
        try:
            a = ref.arg_parser.parse_args()  # the reference's own defaults, then ours where we set them
        finally:
            sys.argv = argv
        for k, v in {"num_classes": d.num_classes, "print_freq": 10**9, **over}.items():
            setattr(a, k, v)
        return a

    def ref_loaders(req, bs, shuffle=True):
        return {"forget": loader(Rows(req.forget_x, req.forget_y), bs, shuffle),
                "retain": loader(Rows(req.retain_x, req.retain_y), bs, shuffle)}

    def run_ref(fn, req, args, mask=None):
        model = copy.deepcopy(original)
        with cpu_reference():
            loaders = ref_loaders(req, args.batch_size)
            torch.manual_seed(0)
            fn(loaders, model, nn.CrossEntropyLoss(), args, mask=mask)
        return model

    def ctx():
        return MethodContext(0, "cpu", lambda: MLP(64, (256, 256), d.num_classes))

    def run_ours(method, req, params, constraint=None):
        model = copy.deepcopy(original)
        if constraint is None:
            method.unlearn(model, req, params, ctx())
        else:
            train_random_labels(model, req, params, ctx(), constraint(req, params))
        return model

    def maxdiff(a, b):
        return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True))

    def accs(model, req):
        return (accuracy(model, req.forget_x, req.forget_y), accuracy(model, req.retain_x, req.retain_y),
                accuracy(model, d.test_x, d.test_y))

    def fmt(a):
        return "/".join(f"{v:.3f}" for v in a)

    def report(name, what, req_text, diffs, ours, theirs, why):
        req = requests[req_text]
        worst = max(diffs)
        verdict = f"differ: {why}" if worst > TOL else f"agree to {TOL:g}" + (" (bit-identical)" if worst == 0 else "")
        print(f"\n[{name}] {req_text}: {what}\n  max|w_ours - w_ref|: "
              + ", ".join(f"{k} {v:.1e}" for k, v in zip(("1 epoch", "full run"), diffs)) +
              f"\n  forget/retain/test acc  ours {fmt(accs(ours, req))}  reference {fmt(accs(theirs, req))}"
              f"\n  verdict: {verdict}")

    def compare(name, what, req_text, method, params, fn, args, why, mask_fn=None, constraint=None):
        """Ours and the reference after 1 epoch and after params['epochs']."""
        req, diffs, models = requests[req_text], [], None
        for epochs in (1, params["epochs"]):
            p = {**params, "epochs": epochs}
            ours = run_ours(method, req, p, constraint)
            theirs = run_ref(fn, req, ref_args(**args, unlearn_epochs=epochs),
                             mask=mask_fn(req) if mask_fn else None)
            diffs.append(maxdiff(ours, theirs))
            models = ours, theirs
        report(name, what, req_text, diffs, *models, why)

    def sgd(p):
        return {"unlearn_lr": p["lr"], "momentum": p["momentum"], "weight_decay": p["weight_decay"],
                "batch_size": p["batch_size"]}

    print(f"digits / mlp (256,256), original seed 0; unlearning seed 0; upstream {COMMIT[:7]} ({cls_dir})")
    print("accuracies: forget/retain/test; 'full run' = the method's default epochs")

    # -- rl ------------------------------------------------------------------------------------------
    rl = RandomLabels()
    p_rl = dict(rl.default_params)
    for t in requests:
        compare("rl", "RL.py, alternating pass (its cifar10/svhn path), our defaults", t, rl, p_rl,
                ref.unlearn.RL, {**sgd(p_rl), "dataset": "cifar10"}, "unexplained")
    compare("rl", "RL.py, joint pass (its cifar100 path), passes=joint", "random:10%", rl,
            {**p_rl, "passes": "joint"}, ref.unlearn.RL, {**sgd(p_rl), "dataset": "cifar100"}, "unexplained")

    # -- salun: the mask, then RL with the reference's own mask ----------------------------------------
    su = SalUn()
    p_su = dict(su.default_params)
    tmp = tempfile.TemporaryDirectory()

    def ref_mask(req, threshold=p_su["threshold"]):
        args = ref_args(**sgd(p_su), dataset="cifar10", save_dir=tmp.name)
        model = copy.deepcopy(original)
        with cpu_reference():
            loaders = ref_loaders(req, p_su["batch_size"], shuffle=False)
            ref.generate_mask.save_gradient_ratio(loaders, model, nn.CrossEntropyLoss(), args)
        return torch.load(Path(tmp.name) / f"with_{threshold}.pt")

    for t, req in requests.items():
        ours_m = saliency_mask(copy.deepcopy(original), req.forget_x, req.forget_y, p_su["batch_size"], p_su["threshold"])
        theirs_m = ref_mask(req)
        names = [n for n, _ in original.named_parameters()]
        wrong = sum(int((m != theirs_m[n].bool()).sum()) for m, n in zip(ours_m, names, strict=True))
        kept = sum(int(m.sum()) for m in ours_m)
        print(f"\n[salun] {t}: mask (generate_mask.py save_gradient_ratio, threshold {p_su['threshold']}, "
              f"forget set in order in batches of {p_su['batch_size']})\n  entries kept {kept} of "
              f"{sum(m.numel() for m in ours_m)}; entries that differ: {wrong}\n  verdict: "
              + ("identical" if wrong == 0 else "differ: ties at the threshold broken differently"))
        compare("salun", "RL.py with its own mask (PR #33 restore), alternating pass, our defaults", t, su, p_su,
                ref.unlearn.RL, {**sgd(p_su), "dataset": "cifar10"}, "unexplained", mask_fn=ref_mask)

    # -- salun-soft ----------------------------------------------------------------------------------
    ss = SalUnSoft()
    p_ss = {**ss.default_params, "passes": "joint"}
    pro_args = {**sgd(p_ss), "mask_ratio": p_ss["mask_ratio"]}  # fix: arg_parser.py never defines mask_ratio
    compare("salun-soft", "RL_pro.py, joint pass (its cifar10/cifar100 path), our defaults (passes=joint)",
            "random:10%", ss, p_ss, ref.unlearn.RL_proximal, {**pro_args, "dataset": "cifar10"},
            "unexplained (before our fix, k's L was the joint pass's steps, not len(forget)+len(retain))")
    p_alt = {**p_ss, "passes": "alternate"}
    compare("salun-soft", "RL_pro.py, alternating pass (its svhn path), passes=alternate (our digits default)",
            "random:10%", ss, p_alt, ref.unlearn.RL_proximal, {**pro_args, "dataset": "svhn"},
            "documented choice: k constant within an epoch (the reference's svhn retain loop advances it per step)")

    class PerStepK(Proximal):
        """Adapter: k advanced per retain step as RL_pro.py's svhn path does (to isolate that choice)."""

        def __init__(self, req, params):
            super().__init__(params["mask_ratio"], params["epochs"], schedule_steps(req, params))
            self.nf = -(-len(req.forget_y) // params["batch_size"])

        def start_epoch(self, model, epoch):
            super().start_epoch(model, epoch)
            self.step, self.epoch = 0, epoch

        def after_step(self, model, optimizer, epoch):
            i = self.step - self.nf  # index in the retain pass; negative in the forget pass
            total, n = self.epochs * self.steps, sum(a.numel() for a in self.anchor)
            if i >= 0:
                self.k = int(self.mask_ratio * ((total - (self.epoch * self.steps + i + 1)) / total * n))
            self.step += 1
            super().after_step(model, optimizer, epoch)

    compare("salun-soft", "as above, ours with k advanced per retain step (adapter isolating that choice)",
            "random:10%", ss, p_alt, ref.unlearn.RL_proximal, {**pro_args, "dataset": "svhn"},
            "unexplained", constraint=PerStepK)

    # -- ft, ga ----------------------------------------------------------------------------------------
    ft = FineTune()
    p_ft = dict(ft.default_params)
    for t in requests:
        compare("ft", f"FT.py, our defaults (batch {p_ft['batch_size']}; the reference's default is 256)", t, ft,
                p_ft, ref.unlearn.FT, {**sgd(p_ft), "dataset": "cifar10"}, "unexplained")
    ga = GradientAscent()
    p_ga = {**ga.default_params, "stop_forget_acc": -1.0}
    for t in requests:
        compare("ga", "GA.py, our lr/epochs/batch defaults (0.005/5/64), our early stop off", t, ga, p_ga,
                ref.unlearn.GA, {**sgd(p_ga), "dataset": "cifar10"}, "unexplained")
        stopped = run_ours(ga, requests[t], dict(ga.default_params))
        print(f"  ours with its default early stop (stop_forget_acc 0, a documented choice): "
              f"{fmt(accs(stopped, requests[t]))}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
