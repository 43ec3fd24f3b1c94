"""``iu``, ``bs``, ``be`` and ``l1-sparse`` beside their reference code, on the same digits model and data.

Usage: .venv/bin/python benchmarks/upstream_iu_boundary.py --saliency DIR --sparse DIR

DIR are checkouts of the two upstream repositories (the root, or for Unlearn-Saliency also its
``Classification`` folder); the code is imported from there, never copied:

- OPTML-Group/Unlearn-Saliency a6e89fd17ff737c24c6aa16c9574469a234ffd91: ``Classification/unlearn/
  Wfisher.py`` (``Wfisher``, for ``iu``), ``boundary_sh.py`` (``boundary_shrink``, ``FGSM_perturb``,
  for ``bs``), ``boundary_ex.py`` (``expand_model``, ``boundary_expanding_iter``, for ``be``) and the
  loop of their ``impl.py``;
- OPTML-Group/Unlearn-Sparse 80ba55d36d0871465c2d3e3896db26a98070e065: ``unlearn/FT.py`` (``FT_l1``)
  and ``unlearn/impl.py`` (its loop and optimiser), for ``l1-sparse``.

One digits MLP (64-256-256-10) is trained as the harness trains the original (seed 0, the digits
recipe). Every method forgets class 3 of the training split (146 points; the retain set is the other
1,291 in split order, which both sides see); ours and the reference's start from the same weights,
take the same hyperparameters and, where batches are shuffled, the same batches (the reference's
DataLoaders replay the index batches our method draws from ``ctx.seed`` = 0). Printed per method:
each comparison, the max abs difference of the weights (or inputs), forget / retain / test accuracy
(and test accuracy on the other classes) of both models, and a verdict. About 5 s on one CPU thread.

Adapters (no upstream code is changed): the ``unlearn`` package is entered without its
``__init__.py`` (it imports every method and, at a6e89fd, fails: ``trainer/__init__.py`` imports a
missing ``train_with_rewind``), and so is ``trainer`` when its import fails; ``datasets`` and
``einops`` are stubbed when not installed (only ImageNet and Swin paths use them); ``Tensor.cuda``
is the identity during reference calls (all runs on the CPU) and their prints are swallowed. Two
comparisons isolate a documented difference: ``bs`` once with the code's ``discretize`` replaced by
the identity, ``be`` with the code's shadow row overwritten by ours (drawn from ``ctx.seed``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import importlib.util
import io
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the reference wraps its loops in tqdm

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

COMMITS = {"saliency": "a6e89fd17ff737c24c6aa16c9574469a234ffd91",
           "sparse": "80ba55d36d0871465c2d3e3896db26a98070e065"}
NEEDED = {"saliency": ("unlearn/Wfisher.py", "unlearn/boundary_sh.py", "unlearn/boundary_ex.py", "unlearn/impl.py"),
          "sparse": ("unlearn/FT.py", "unlearn/impl.py", "utils.py", "imagenet.py")}
#: Top-level module names both repositories define: cleared before each one is imported.
SHARED = ("utils", "imagenet", "dataset", "models", "pruner", "trainer", "unlearn", "arg_parser", "evaluation",
          "lmdb_dataset")
FORGET_CLASS, SEED = 3, 0


def fail(msg: str) -> None:
    print(f"upstream_iu_boundary: {msg}", file=sys.stderr)
    sys.exit(2)


def code_root(path: str, which: str) -> Path:
    root = Path(path)
    root = root / "Classification" if which == "saliency" and (root / "Classification" / "unlearn").is_dir() else root
    missing = [f for f in NEEDED[which] if not (root / f).is_file()]
    if not root.is_dir() or missing:
        name = "OPTML-Group/Unlearn-Saliency" if which == "saliency" else "OPTML-Group/Unlearn-Sparse"
        fail(f"--{which} {path!r} is not a checkout of {name} (missing: {', '.join(missing) or path})")
    return root


def commit_of(root: Path) -> str:
    head = next((p / ".git" / "HEAD" for p in (root, root.parent) if (p / ".git" / "HEAD").is_file()), None)
    ref = head.read_text().strip() if head else "unknown (not a git checkout)"
    if ref.startswith("ref: "):  # a branch
        ref = (head.parent / ref[5:]).read_text().strip() if (head.parent / ref[5:]).is_file() else "unknown"
    return ref


def _stub(name: str, *attrs: str) -> None:
    """A stand-in for an uninstalled import that only unused (ImageNet, Swin) paths need."""
    top = name.split(".")[0]
    if top in sys.modules or importlib.util.find_spec(top) is not None:
        return
    sys.modules[top] = types.ModuleType(top)
    mod = sys.modules[name] = sys.modules.get(name) or types.ModuleType(name)
    setattr(sys.modules[top], name.rpartition(".")[2], mod)
    for k in attrs:
        setattr(mod, k, _offline)


def _offline(*_a, **_k):
    raise RuntimeError("stubbed: not installed offline")


def _package(name: str, root: Path) -> None:
    sys.modules[name] = types.ModuleType(name)
    sys.modules[name].__path__ = [str(root / name)]


def import_reference(root: Path, modules: list[str]) -> dict:
    """Import ``modules`` from ``root``; the repositories' same-named modules are cleared first."""
    for key in list(sys.modules):
        if key.split(".")[0] in SHARED:
            del sys.modules[key]
    _stub("datasets.load", "load_dataset")
    _stub("einops", "rearrange", "repeat")
    sys.path.insert(0, str(root))
    try:
        _package("unlearn", root)
        try:
            importlib.import_module("trainer")
        except ImportError:
            for key in [k for k in sys.modules if k.split(".")[0] == "trainer"]:
                del sys.modules[key]
            _package("trainer", root)
        return {m: importlib.import_module(m) for m in modules}
    finally:
        sys.path.remove(str(root))


@contextlib.contextmanager
def reference_call():
    """CPU-only, quiet: the reference's ``.cuda()`` calls return the tensor itself."""
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        torch.Tensor.cuda = cuda


def ref_args(**kw) -> argparse.Namespace:
    """The reference's ``args`` (its arg_parser defaults, then ``kw``)."""
    base = dict(unlearn_lr=0.01, momentum=0.9, weight_decay=5e-4, unlearn_epochs=10, decreasing_lr="91,136",
                rewind_epoch=0, imagenet_arch=False, warmup=0, print_freq=50, arch="mlp", gpu=0, batch_size=256,
                alpha=0.2, num_classes=10, no_l1_epochs=0, lr=0.01, unlearn="")
    base.update(kw)
    return argparse.Namespace(**base)


class Replay(torch.utils.data.Sampler):
    """A batch sampler giving, on its e-th pass, the e-th epoch's index batches."""

    def __init__(self, epochs: list[list[torch.Tensor]]):
        self.epochs, self.pass_ = epochs, 0

    def __iter__(self):
        self.pass_ += 1
        return iter([b.tolist() for b in self.epochs[self.pass_ - 1]])

    def __len__(self):
        return len(self.epochs[min(self.pass_, len(self.epochs) - 1)])


def our_batches(n: int, batch_size: int, epochs: int) -> list[list[torch.Tensor]]:
    """The index batches our methods draw in ``epochs`` epochs from ``ctx.seed`` (``batches``)."""
    from bench.nn.training import batches

    g = torch.Generator().manual_seed(SEED)
    return [list(batches(n, batch_size, g, "cpu")) for _ in range(epochs)]


def max_diff(a: nn.Module, b: nn.Module, rows: int | None = None) -> float:
    """Max abs difference of the parameters (the last layer's first ``rows`` outputs when given)."""
    pb = dict(b.named_parameters())
    return max(float((p - (pb[k][:rows] if pb[k].shape != p.shape else pb[k])).detach().abs().max())
               for k, p in a.named_parameters())


def verdict(diff: float, reason: str) -> str:
    tol = next((t for t in (1e-6, 1e-5, 1e-4) if diff <= t), None)
    return f"agree to {tol:g}" if tol else f"differ: {reason}"


class Bench:
    def __init__(self):
        from bench.core.contracts import ForgetRequest
        from bench.core.recipe import build_recipe
        from bench.datasets.digits import Digits
        from bench.nn.nets import MLP
        from bench.nn.training import fit

        d = self.d = Digits().load(None, False, None)
        forget = d.train_y == FORGET_CLASS
        self.request = ForgetRequest(
            num_classes=10, kind="class", forget_class=FORGET_CLASS, forget_indices=forget.nonzero()[:, 0].numpy(),
            forget_x=d.train_x[forget], forget_y=d.train_y[forget], retain_x=d.train_x[~forget],
            retain_y=d.train_y[~forget], input_bounds=d.info["input_bounds"])

        def new_model():
            torch.manual_seed(SEED)
            return MLP(64, (256, 256), 10)

        self.new_model, self.criterion = new_model, nn.CrossEntropyLoss()
        self.original = fit(new_model(), d.train_x, d.train_y, build_recipe(Digits.default_recipe), seed=SEED)

    def copy(self) -> nn.Module:
        return copy.deepcopy(self.original)

    def ours(self, method, **params) -> tuple[nn.Module, dict]:
        from bench.core.contracts import MethodContext

        ctx = MethodContext(SEED, "cpu", self.new_model)
        return method.unlearn(self.copy(), self.request, {**method.default_params, **params}, ctx), ctx.metrics

    def accs(self, model: nn.Module, classes: int | None = None) -> str:
        from bench.nn.training import predict_logits

        r, d = self.request, self.d

        def acc(x, y):
            return float((predict_logits(model, x)[:, :classes].argmax(1) == y).float().mean())

        other = d.test_y != FORGET_CLASS
        return (f"forget {acc(r.forget_x, r.forget_y):.4f}  retain {acc(r.retain_x, r.retain_y):.4f}  "
                f"test {acc(d.test_x, d.test_y):.4f}  test-other {acc(d.test_x[other], d.test_y[other]):.4f}")

    def loaders(self, forget_epochs=None, retain_epochs=None) -> dict:
        """The reference's ``data_loaders``: in order, or replaying our batches of each epoch."""
        r, out = self.request, {}
        for k, x, y, e in (("forget", r.forget_x, r.forget_y, forget_epochs),
                           ("retain", r.retain_x, r.retain_y, retain_epochs)):
            order = {"batch_size": 256} if e is None else {"batch_sampler": Replay(e)}
            out[k] = DataLoader(TensorDataset(x, y), **order)
        return out


def report(what: str, diff: float, rows: list[tuple[str, str]], result: str, moved: float | None = None) -> None:
    extra = "" if moved is None else f" (the reference moved the weights by up to {moved:.3g})"
    print(f"  {what}\n    max abs diff {diff:.3g}{extra}\n" + "".join(f"    {n:34} {a}\n" for n, a in rows)
          + f"    verdict: {result}")


def run_iu(b: Bench, wf) -> None:
    from bench.methods.influence import InfluenceUnlearning

    m = InfluenceUnlearning()
    alpha = m.dataset_params["digits"]["alpha"]
    print(f"\n== iu (alpha {alpha:g}, digits; damping 1000 = the code's N) vs Unlearn-Saliency Wfisher.py ==")
    ref = b.copy()
    with reference_call():
        wf.Wfisher(b.loaders(), ref, b.criterion, ref_args(alpha=alpha, batch_size=256, unlearn="wfisher"))
    ours_ref, met = b.ours(m, alpha=alpha, recursion="reference")
    d = max_diff(ours_ref, ref)
    report(f"recursion=reference vs Wfisher (one step; m = {met['iu_retain_examples']:.0f} retain examples "
           "on both)", d, [("ours recursion=reference", b.accs(ours_ref)), ("reference Wfisher", b.accs(ref))],
           verdict(d, "unexplained"), moved=max_diff(b.original, ref))
    ours, met = b.ours(m, alpha=alpha)
    d = max_diff(ours, ref)
    report(f"default (recursion=woodfisher, m = {met['iu_retain_examples']:.0f}) vs Wfisher", d,
           [("ours default", b.accs(ours)), ("reference Wfisher", b.accs(ref))],
           verdict(d, "fix: the true rank-one WoodFisher recursion (the code rescales the first retain "
                      "gradient only); and m capped by the 128 MB budget"))


def run_bs(b: Bench, sh) -> None:
    from bench.methods.boundary import BoundaryShrink, fgsm, neighbour_labels
    from bench.methods.l2ul_blocks import _bounds

    m, r = BoundaryShrink(), b.request
    print("\n== bs (class 3) vs Unlearn-Saliency boundary_sh.py ==")
    frozen = b.copy().eval()
    with reference_call():
        x_ref = sh.FGSM_perturb(r.forget_x, r.forget_y, model=frozen, bound=0.1, criterion=b.criterion)
        lab_ref = frozen(x_ref).argmax(1)
    lo, hi = _bounds(r, r.forget_x)
    x_ours = fgsm(b.copy(), r.forget_x, r.forget_y, 0.1, lo, hi)
    exclude = r.forget_y.new_full(r.forget_y.shape, FORGET_CLASS)
    lab_adv, success = neighbour_labels(b.copy(), r.forget_x, r.forget_y, r, 0.1, "adv", exclude)
    lab_wrong, _ = neighbour_labels(b.copy(), r.forget_x, r.forget_y, r, 0.1, "wrong", exclude)
    d_round, d_raw = float((sh.discretize(x_ours) - x_ref).abs().max()), float((x_ours - x_ref).abs().max())
    n_adv = int((lab_adv != lab_ref).sum())
    print(f"  FGSM targets (bound 0.1, frozen eval-mode original, all {len(r.forget_y)} forget points)\n"
          f"    x': max abs diff {d_raw:.3g}; after the code's 1/255 rounding applied to ours: {d_round:.3g}\n"
          f"    labels: neighbour=adv differs from the code's on {n_adv} of {len(r.forget_y)}; the code keeps the "
          f"true label on {int((lab_ref == r.forget_y).sum())} (attack success {success:.3f}); neighbour=wrong "
          f"differs on {int((lab_wrong != lab_ref).sum())}\n"
          f"    verdict: x' {verdict(d_round, 'unexplained')} up to the rounding (choice: no 1/255 rounding); labels "
          + ("equal" if n_adv == 0 else f"differ on {n_adv}: the rounding moves x' across a boundary"))
    epochs = our_batches(len(r.forget_y), 256, 10)
    ours, _ = b.ours(m, lr=0.01, epochs=10, batch_size=256, bound=0.1, neighbour="adv", stop_forget_acc=-1)
    refs = {}
    for rounding in (False, True):
        ref = refs[rounding] = b.copy()
        discretize = sh.discretize
        if not rounding:
            sh.discretize = lambda x: x  # adapter: the code's FGSM without its 1/255 rounding
        try:
            with reference_call():
                sh.boundary_shrink(b.loaders(forget_epochs=epochs), ref, b.criterion,
                                   ref_args(unlearn="boundary_shrink"))
        finally:
            sh.discretize = discretize
        d = max_diff(ours, ref)
        report(f"code's settings (neighbour=adv, lr 0.01, 10 epochs, no stop), same batches; reference "
               f"{'as is' if rounding else 'with discretize() the identity'}", d,
               [("ours neighbour=adv", b.accs(ours)), ("reference boundary_shrink", b.accs(ref))],
               verdict(d, f"choice: no 1/255 rounding ({n_adv} FGSM label(s) differ)" if rounding else "unexplained"),
               moved=max_diff(b.original, ref))
    ref = refs[True]
    ours, met = b.ours(m, **m.dataset_params["digits"])
    report("ours default (neighbour=wrong, digits lr 1e-3, stop at forget 0) vs the code's run above",
           max_diff(ours, ref),
           [(f"ours default ({met['bs_steps']:.0f} steps)", b.accs(ours)), ("reference boundary_shrink", b.accs(ref))],
           "differ: fix neighbour=wrong (the code keeps the true label where the attack fails); choices: early "
           "stop, digits lr 1e-3")


def run_be(b: Bench, ex) -> None:
    from bench.methods.boundary import BoundaryExpanding, find_classifier, prune_shadow, widen_linear

    m, r = BoundaryExpanding(), b.request
    print("\n== be (class 3) vs Unlearn-Saliency boundary_ex.py ==")
    epochs = our_batches(len(r.forget_y), 256, 10)
    ref = b.copy()
    ex.expand_model(ref)
    name, head = find_classifier(b.copy(), 10)
    ours_wide = widen_linear(head, torch.Generator().manual_seed(SEED))  # our shadow row, drawn from ctx.seed
    with torch.no_grad():  # adapter: the reference's widened layer gets our shadow row
        for k in ("weight", "bias"):
            getattr(ref.get_submodule(name), k)[-1].copy_(getattr(ours_wide, k)[-1])
    with reference_call():
        ex.boundary_expanding_iter(b.loaders(forget_epochs=epochs), ref, b.criterion,
                                   ref_args(unlearn="boundary_expanding"))
    ours, _ = b.ours(m, lr=0.01, epochs=10, train_layers="all", stop_forget_acc=-1)
    d = max_diff(ours, ref, rows=10)
    report("code's settings (all layers, lr 0.01, 10 epochs, no stop), same shadow row and batches; weights of "
           f"the real classes (the code keeps {ref.get_submodule(name).out_features} outputs, ours prunes to 10)", d,
           [("ours train_layers=all (pruned)", b.accs(ours)), ("reference, 11 outputs", b.accs(ref)),
            ("reference, first 10 outputs", b.accs(ref, classes=10))],
           verdict(d, "unexplained"), moved=max_diff(b.original, ref, rows=10))
    torch.manual_seed(SEED)  # the code draws its shadow row from the global generator
    ref = b.copy()
    with reference_call():
        ex.boundary_expanding(b.loaders(forget_epochs=epochs), ref, b.criterion,
                              ref_args(unlearn="boundary_expanding"))
    ours, met = b.ours(m, **m.dataset_params["digits"])
    report("ours default (classifier only, stop at forget 0) vs the code as is (its own shadow row draw)",
           max_diff(ours, prune_shadow(ref, name, 10, copy=True)),
           [(f"ours default ({met['be_steps']:.0f} steps)", b.accs(ours)), ("reference, 11 outputs", b.accs(ref)),
            ("reference, first 10 outputs", b.accs(ref, classes=10))],
           "differ: fix (shadow output pruned); choices: early stop, digits train_layers=classifier, shadow row "
           "drawn from ctx.seed")


def run_l1(b: Bench, ft) -> None:
    from bench.methods.l1_sparse import L1Sparse

    m, r = L1Sparse(), b.request
    alpha = m.dataset_params["digits"]["alpha"]
    print(f"\n== l1-sparse (alpha {alpha:g}, digits; batch 64, lr 0.01) vs Unlearn-Sparse FT.py FT_l1 ==")
    for n_epochs, what in ((1, "one epoch (alpha_0 = alpha), same batches"),
                           (10, "default run (10 epochs, linear decay), same batches")):
        epochs = our_batches(len(r.retain_y), 64, n_epochs)
        ref = b.copy()
        with reference_call():
            ft.FT_l1(b.loaders(retain_epochs=epochs), ref, b.criterion,
                     ref_args(alpha=alpha, unlearn_epochs=n_epochs, unlearn_lr=0.01, batch_size=64, unlearn="FT_l1"))
        ours, _ = b.ours(m, alpha=alpha, epochs=n_epochs)
        d = max_diff(ours, ref)
        report(f"{what}: {sum(len(e) for e in epochs)} steps", d,
               [("ours", b.accs(ours)), ("reference FT_l1", b.accs(ref))],
               verdict(d, "float summation order amplified over the steps"), moved=max_diff(b.original, ref))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--saliency", required=True, help="checkout of OPTML-Group/Unlearn-Saliency")
    ap.add_argument("--sparse", required=True, help="checkout of OPTML-Group/Unlearn-Sparse")
    ap.add_argument("--only", default="iu,bs,be,l1-sparse", help="comma-separated subset of iu,bs,be,l1-sparse")
    args = ap.parse_args()
    if set(args.only.split(",")) - {"iu", "bs", "be", "l1-sparse"}:
        ap.error(f"--only {args.only!r}: expected names among iu,bs,be,l1-sparse")
    sal, spa = code_root(args.saliency, "saliency"), code_root(args.sparse, "sparse")
    torch.set_num_threads(1)
    for which, root in (("saliency", sal), ("sparse", spa)):
        got = commit_of(root)
        note = "" if got in (COMMITS[which], "unknown (not a git checkout)") else f" (expected {COMMITS[which]})"
        print(f"{which}: {root.name}, commit {got}{note}")
    try:
        s = import_reference(sal, ["unlearn.Wfisher", "unlearn.boundary_sh", "unlearn.boundary_ex"])
        p = import_reference(spa, ["unlearn.FT"])
    except Exception as e:  # noqa: BLE001 - any failure to import means a wrong or broken checkout
        fail(f"cannot import the reference code ({type(e).__name__}: {e})")
    b = Bench()
    print(f"original (seed {SEED}): {b.accs(b.original)}")
    runs = {"iu": (run_iu, s["unlearn.Wfisher"]), "bs": (run_bs, s["unlearn.boundary_sh"]),
            "be": (run_be, s["unlearn.boundary_ex"]), "l1-sparse": (run_l1, p["unlearn.FT"])}
    for name in args.only.split(","):
        runs[name][0](b, runs[name][1])


if __name__ == "__main__":
    main()
