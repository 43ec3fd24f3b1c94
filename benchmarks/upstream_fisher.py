"""Our ``fisher`` (Fisher forgetting) beside the reference code, on the same model and data.

The reference is AdityaGolatkar/SelectiveForgetting at commit 4c02825, ``Forgetting.ipynb``, read
from the checkout given by ``--upstream``: the notebook's JSON is parsed at run time and four of its
code cells are executed, unchanged, in a namespace holding the globals they use (nothing of them is
copied here). The cells are picked by what they contain:

- ``modelf = copy.deepcopy(model)``: the setup cell (a copy of the original, ``p.data0`` saved);
  ``model0`` and ``model_scrub`` (the retrained and NTK models, not compared here) are empty modules;
- ``def hessian(``: the diagonal "true" Fisher, one backward pass per example and class, into
  ``p.grad2_acc``; it is called as the notebook calls it, ``hessian(retain_loader.dataset, modelf)``;
- ``def get_mean_var(``: mean and variance of the sampler per weight tensor;
- ``fisher_dir = []``: the cell that applies the noise (alpha 1e-6, ``torch.manual_seed(seed)``).

Globals handed to them: ``torch``, ``nn``, ``F``, ``np``, ``copy``, ``itertools``, ``tqdm`` (the
identity), ``args`` (``device='cpu'``), ``num_classes`` 10, ``seed`` 0, and per request
``class_to_forget``/``num_to_forget``: class:3 is the notebook's class branch (``num_to_forget``
None, ``class_to_forget`` 3); random:10% sets ``num_to_forget`` to the forget-set size (no row
dropped). The retain "dataset" is a ``TensorDataset`` of our retain tensors in the harness's order
(dataset order, as the notebook's ``retain_dataset`` keeps it).

Compared, per model and request: (a) the Fisher diagonal per parameter tensor (``grad2_acc``
against ours, ``methods/fisher.py::fisher_diagonal``: the closed form for the MLP, ``vmap``/``jacrev``
for the CNN; on class:3 both also against the notebook's ``hessian`` run in float64); (b) mean and
variance of ``get_mean_var`` against ours (``mean_var``), each fed its own Fisher, and ours fed the
reference's Fisher; (c) the final weights: our ``unlearn`` with
``ctx.seed`` 0 against the notebook's cell, whose ``torch.manual_seed(0)`` then ``normal_()`` per
tensor gives the same N(0, 1) tensors as ours (``torch.randn`` from a ``Generator`` seeded 0; the
script checks it), plus our ``unlearn`` fed the reference's Fisher; (d) forget/retain/test accuracy
(ours, ``bench.nn.training.accuracy``; "test" is the whole test split, class 3 included).

Optionally (``--ssd DIR``) a second reference: if-loops/selective-synaptic-dampening (cdfdc0e)
``FisherForgetting`` of ``src/forget_full_class_strategies.py`` (class:3) and
``src/forget_random_strategies.py`` (random:10%), on the MLP (its ``get_metric_scores`` stubbed,
``tqdm`` the identity, ``wandb``/``seaborn`` stubbed when not installed; torch's global generator seeded
0 before the call and its ``hessian``'s DataLoader given a generator of its own, so that its noise is
the notebook's draw: it does not reseed, and iterating a DataLoader takes a number from that generator).

Setup: digits, ``MLP(64, (256, 256), 10)`` and ``SmallCNN(1, 10)``, each trained with the digits
recipe, seed 0; class:3 (146 points) and random:10% (the harness's draw, forget seed 0: 144 points).
About 80 s on one CPU thread (the CNN's training and the notebook's per-example loops are most of it;
``--no-cnn``: about 25 s; ``--ssd`` adds about 10 s).

Usage: .venv/bin/python benchmarks/upstream_fisher.py --upstream DIR [--ssd DIR] [--no-cnn]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import importlib
import importlib.util
import io
import itertools
import json
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

COMMIT = "4c02825"
NOTEBOOK = "Forgetting.ipynb"
CELLS = {  # role -> text its cell contains (the first code cell that does is run)
    "setup": "modelf = copy.deepcopy(model)",
    "hessian": "def hessian(",
    "get_mean_var": "def get_mean_var(",
    "apply": "fisher_dir = []",
}
CELLS_SHA256 = "a6bde7a04b97d37e"  # of the four cells' source at 4c02825 (a checkout without .git is checked by this)
SSD_COMMIT = "cdfdc0e35c1908e032a6e150d882b0fa17833f85"
SSD_FILES = {"src/forget_full_class_strategies.py": "def FisherForgetting(",
             "src/forget_random_strategies.py": "def FisherForgetting("}
ALPHA = 1e-6  # the apply cell's own alpha, and our default
FORGET_CLASS = 3
TOL_F = 1e-4  # Fisher and variance: per tensor, max |diff| over the largest entry (float32 summation order)
TOL_W = 1e-4  # weights: max |diff| over the largest move the noise made


def fail(msg: str) -> None:
    print(f"upstream_fisher: {msg}", file=sys.stderr)
    sys.exit(2)


def _head(base: Path) -> str | None:
    if not (base / ".git").exists():
        return None
    out = subprocess.run(["git", "-C", str(base), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def notebook_cells(root: str | None) -> dict:
    """The four cells' source from ``root/Forgetting.ipynb``; one line and exit 2 when not there."""
    if not root:
        fail(f"--upstream DIR is required (a checkout of AdityaGolatkar/SelectiveForgetting at {COMMIT})")
    base = Path(root)
    try:
        nb = json.loads((base / NOTEBOOK).read_text())
        sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                   for c in nb["cells"] if c.get("cell_type") == "code"]
    except (OSError, ValueError, KeyError, TypeError):
        fail(f"--upstream {root!r} is not a SelectiveForgetting checkout (no readable {NOTEBOOK})")
    cells = {}
    for role, marker in CELLS.items():
        found = [s for s in sources if marker in s]
        if not found:
            fail(f"--upstream {root!r}: no cell of {NOTEBOOK} contains {marker!r} (not the notebook at {COMMIT}?)")
        cells[role] = found[0]
    head = _head(base)
    if head is not None and not head.startswith(COMMIT):
        fail(f"--upstream {root!r} is at commit {head[:7]}, not {COMMIT}")
    digest = hashlib.sha256("".join(cells.values()).encode()).hexdigest()[:16]
    if digest != CELLS_SHA256:
        print(f"warning: the cells differ from those at {COMMIT} (sha256 {digest}, expected {CELLS_SHA256})",
              file=sys.stderr)
    return cells


def load_ssd(root: str):
    """``(full_class, random)`` strategy modules of selective-synaptic-dampening from ``root/src``."""
    base = Path(root)
    for rel, marker in SSD_FILES.items():
        f = base / rel
        if not f.is_file() or marker not in f.read_text(errors="replace"):
            fail(f"--ssd {root!r} is not a selective-synaptic-dampening checkout ({rel} with {marker!r} not found)")
    head = _head(base)
    if head is not None and head != SSD_COMMIT:
        fail(f"--ssd {root!r} is at commit {head[:7]}, not {SSD_COMMIT[:7]}")
    for name in ("wandb", "seaborn"):  # imported there, unused on these paths
        if importlib.util.find_spec(name) is None:
            sys.modules[name] = types.ModuleType(name)
    importlib.import_module("matplotlib").use("Agg")
    sys.dont_write_bytecode = True
    src = str((base / "src").resolve())
    sys.path.insert(0, src)
    with contextlib.redirect_stdout(io.StringIO()):
        mods = [importlib.import_module(m) for m in ("forget_full_class_strategies", "forget_random_strategies")]
    for m in mods:
        if not str(Path(m.__file__).resolve()).startswith(src):
            fail(f"module {m.__name__} was imported from {m.__file__}, not {src}")
        m.tqdm = lambda it, *a, **k: it
        m.get_metric_scores = lambda *a, **k: None
    return mods


# ---------------------------------------------------------------- comparisons

def diff(a: dict, b: dict, names=None) -> tuple[float, float, str]:
    """Max abs difference, the largest per-tensor max abs difference over that tensor's largest |b|,
    and the tensor where that relative difference is largest."""
    names = names or list(b)
    worst, rel, at = 0.0, 0.0, ""
    for k in names:
        d = float((a[k] - b[k]).abs().max())
        scale = float(b[k].abs().max())
        r = d / scale if scale else d
        worst = max(worst, d)
        if r >= rel:
            rel, at = r, k
    return worst, rel, at


def elementwise_rel(a: dict, b: dict) -> float:
    """Max |a-b|/|b| over elements with |b| > 1e-6 x the tensor's largest (tiny entries are clamped away)."""
    out = 0.0
    for k in b:
        keep = b[k].abs() > 1e-6 * b[k].abs().max()
        if keep.any():
            out = max(out, float(((a[k] - b[k]).abs()[keep] / b[k].abs()[keep]).max()))
    return out


def verdict(value: float, tol: float, reason: str = "see above") -> str:
    if value == 0:
        return "agree: bit-identical"
    return f"agree (<= {tol:g})" if value <= tol else f"DIFFER: {reason}"


class Env:
    def __init__(self):
        from bench.core.forget import parse_forget
        from bench.datasets.digits import Digits

        self.d = d = Digits().load(None, False, None)
        y = d.train_y
        self.requests = {"class:3": self._request(y == FORGET_CLASS, "class")}
        pick = torch.zeros(len(y), dtype=torch.bool)  # the harness's random:10% draw, forget seed 0
        pick[torch.as_tensor(parse_forget("random:10%").select(y.numpy(), d.num_classes, 0))] = True
        self.requests["random:10%"] = self._request(pick, "random")

    def _request(self, forget, kind):
        from bench.core.contracts import ForgetRequest

        d = self.d
        return ForgetRequest(num_classes=d.num_classes, kind=kind,
                             forget_class=FORGET_CLASS if kind == "class" else None,
                             forget_indices=torch.nonzero(forget).flatten().numpy(), forget_x=d.train_x[forget],
                             forget_y=d.train_y[forget], retain_x=d.train_x[~forget], retain_y=d.train_y[~forget])

    def train(self, factory):
        from bench.core.recipe import build_recipe
        from bench.datasets.digits import Digits
        from bench.nn.training import fit

        new_model = lambda: (torch.manual_seed(0), factory())[1]  # noqa: E731
        original = fit(new_model(), self.d.train_x, self.d.train_y, build_recipe(Digits.default_recipe), seed=0)
        return new_model, original.eval()

    def accs(self, model, req) -> str:
        from bench.nn.training import accuracy

        d = self.d
        f, r = accuracy(model, req.forget_x, req.forget_y), accuracy(model, req.retain_x, req.retain_y)
        return f"{f:.3f} / {r:.3f} / {accuracy(model, d.test_x, d.test_y):.3f}"


def copy_of(new_model, original):
    m = new_model()
    m.load_state_dict(original.state_dict())
    return m.eval()


def weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _namespace(model, req, num_classes, seed=0) -> dict:
    """The globals the four cells read: imports of the notebook's first cell, ``args``, the request."""
    return {"torch": torch, "nn": torch.nn, "F": torch.nn.functional, "np": np, "copy": copy, "itertools": itertools,
            "tqdm": lambda it, *a, **k: it, "args": types.SimpleNamespace(device="cpu"), "num_classes": num_classes,
            "seed": seed, "model": model, "model0": torch.nn.Module(), "model_scrub": torch.nn.Module(),
            "class_to_forget": req.forget_class if req.kind == "class" else None,
            "num_to_forget": None if req.kind == "class" else len(req.forget_y)}


def run_notebook(cells, original, req, num_classes, seed=0):
    """The four cells on a copy of ``original``: returns the namespace (the noised model is ``ns['modelf']``),
    the Fisher per parameter name (``grad2_acc``) and ``get_mean_var``'s (mu, var) per name."""
    ns = _namespace(copy.deepcopy(original), req, num_classes, seed)
    with contextlib.redirect_stdout(io.StringIO()):
        for role in ("setup", "hessian", "get_mean_var"):
            exec(compile(cells[role], f"{NOTEBOOK}:{role}", "exec"), ns)
        modelf = ns["modelf"]
        # as the notebook's cell "hessian(retain_loader.dataset, modelf)"
        ns["hessian"](torch.utils.data.TensorDataset(req.retain_x, req.retain_y), modelf)
        fisher = {k: p.grad2_acc.detach().clone() for k, p in modelf.named_parameters()}
        mv = {k: ns["get_mean_var"](p, False, alpha=ALPHA) for k, p in modelf.named_parameters()}
        exec(compile(cells["apply"], f"{NOTEBOOK}:apply", "exec"), ns)
    return ns, fisher, mv


def same_noise_stream(model, seed=0) -> bool:
    """Ours draws torch.randn(shape, generator=Generator().manual_seed(seed)) per tensor; the notebook
    torch.manual_seed(seed) then torch.empty_like(p).normal_(): the same tensors?"""
    g = torch.Generator().manual_seed(seed)
    ours = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in model.parameters()]
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    theirs = [torch.empty_like(p.detach()).normal_() for p in model.parameters()]
    torch.set_rng_state(state)
    return all(torch.equal(a, b) for a, b in zip(ours, theirs))


@contextlib.contextmanager
def recording(ours_mod, store: dict, replace: dict | None = None):
    """Record the Fisher our ``unlearn`` computes (into ``store``), or hand it ``replace`` instead."""
    real = ours_mod.fisher_diagonal

    def fisher_diagonal(*a, **k):
        out = {n: v.clone() for n, v in replace.items()} if replace is not None else real(*a, **k)
        store.update({n: v.clone() for n, v in out.items()})
        return out

    ours_mod.fisher_diagonal = fisher_diagonal
    try:
        yield
    finally:
        ours_mod.fisher_diagonal = real


def float64_fisher(cells, original, req, num_classes) -> dict:
    """The notebook's ``hessian`` cell on a float64 copy of the model and data (the yardstick)."""
    req64 = types.SimpleNamespace(kind=req.kind, forget_class=req.forget_class, forget_y=req.forget_y,
                                  retain_x=req.retain_x.double(), retain_y=req.retain_y)
    ns = _namespace(copy.deepcopy(original).double(), req64, num_classes)
    with contextlib.redirect_stdout(io.StringIO()):
        for role in ("setup", "hessian"):
            exec(compile(cells[role], f"{NOTEBOOK}:{role}", "exec"), ns)
        ns["hessian"](torch.utils.data.TensorDataset(req64.retain_x, req64.retain_y), ns["modelf"])
    return {k: p.grad2_acc.detach().clone() for k, p in ns["modelf"].named_parameters()}


def compare(env, cells, label, new_model, original, ssd=None) -> list[str]:
    import bench.methods.fisher as ours_mod
    from bench.core.contracts import MethodContext

    problems = []
    K = env.d.num_classes
    method = ours_mod.FisherForgetting()
    params = {**method.default_params, "alpha": ALPHA}
    noise_ok = same_noise_stream(original)
    print(f"  noise: the notebook's torch.manual_seed(0) + normal_() and our seeded Generator + randn give "
          f"{'the same' if noise_ok else 'DIFFERENT'} N(0,1) tensors")
    if not noise_ok:
        problems.append(f"{label}: noise streams differ")
    w0 = weights(original)
    for rname, req in env.requests.items():
        print(f"  -- {label} {rname} (retain {len(req.retain_y)}, forget {len(req.forget_y)})")
        ns, f_ref, mv_ref = run_notebook(cells, original, req, K)
        w_ref = weights(ns["modelf"])
        f_ours, f_fed = {}, {}
        with recording(ours_mod, f_ours):  # our unlearn end to end, its Fisher recorded on the way
            ours_m = method.unlearn(copy_of(new_model, original), req, params, MethodContext(0, "cpu", new_model))
        with recording(ours_mod, f_fed, replace=f_ref):  # our unlearn handed the reference's Fisher
            fed_m = method.unlearn(copy_of(new_model, original), req, params, MethodContext(0, "cpu", new_model))
        fc = req.forget_class if req.kind == "class" else None
        # (a) Fisher diagonal
        d, rel, at = diff(f_ours, f_ref)
        erel = elementwise_rel(f_ours, f_ref)
        print(f"  (a) Fisher diagonal: max abs diff {d:.2e}; per tensor max |diff| / max |F_ref| {rel:.2e} "
              f"(worst {at}); elementwise relative {erel:.2e} -> {verdict(rel, TOL_F, 'Fisher')}")
        for k in f_ref:
            dk, rk, _ = diff({k: f_ours[k]}, {k: f_ref[k]})
            print(f"        {k:<18} {tuple(f_ref[k].shape)!s:<15} max F {float(f_ref[k].max()):.3e}  "
                  f"abs {dk:.2e}  rel {rk:.2e}")
        if rel > TOL_F:
            problems.append(f"{label} {rname}: Fisher differs ({rel:.1e})")
        if req.kind == "class":  # which of the two float32 sums is nearer the float64 one
            f64 = float64_fisher(cells, original, req, K)
            _, r_ours, _ = diff({k: v.double() for k, v in f_ours.items()}, f64)
            _, r_ref, _ = diff({k: v.double() for k, v in f_ref.items()}, f64)
            print(f"      against the notebook's hessian in float64: ours {r_ours:.2e}, notebook (float32) {r_ref:.2e} "
                  f"(per tensor max |diff| / max |F64|)")
        # (b) mean and variance
        mv_ours = {k: ours_mod.mean_var(w0[k], f_ours[k], ALPHA, K, fc) for k in w0}
        mv_fed = {k: ours_mod.mean_var(w0[k], f_ref[k], ALPHA, K, fc) for k in w0}
        for what, i in (("mean", 0), ("variance", 1)):
            a = {k: v[i] for k, v in mv_ours.items()}
            b = {k: v[i] for k, v in mv_ref.items()}
            fed = {k: v[i] for k, v in mv_fed.items()}
            d, rel, at = diff(a, b)
            erel = elementwise_rel(a, b)
            dfed, _, _ = diff(fed, b)
            print(f"  (b) get_mean_var {what}: max abs diff {d:.2e}, elementwise relative {erel:.2e}"
                  f"{f' (worst {at})' if d else ''} -> {verdict(erel, TOL_F, what)}; ours fed the reference's F: "
                  f"max abs diff {dfed:.2e} -> {verdict(dfed, 0, 'get_mean_var logic')}")
            if erel > TOL_F or dfed != 0:
                problems.append(f"{label} {rname}: {what} differs")
        # (c) final weights, the same noise
        d, _, _ = diff(weights(ours_m), w_ref)
        dfed, _, _ = diff(weights(fed_m), w_ref)
        moved = max(float((w_ref[k] - w0[k]).abs().max()) for k in w0)
        print(f"  (c) weights (alpha {ALPHA:g}, seed 0; the noise moved them by up to {moved:.2e}): max abs diff "
              f"{d:.2e}, {d / moved:.1e} of that -> {verdict(d / moved, TOL_W, 'weights')}; "
              f"ours fed the reference's F: "
              f"{dfed:.2e} -> {verdict(dfed, 0, 'sampling')}")
        if d / moved > TOL_W or dfed != 0:
            problems.append(f"{label} {rname}: weights differ ({d:.1e})")
        # (d) accuracies
        a_ours, a_ref = env.accs(ours_m, req), env.accs(ns["modelf"], req)
        print(f"  (d) forget / retain / test: original {env.accs(original, req)}; ours {a_ours}; notebook {a_ref} -> "
              f"{'agree: identical' if a_ours == a_ref else 'DIFFER'}")
        if a_ours != a_ref:
            problems.append(f"{label} {rname}: accuracies differ")
        if ssd is not None:
            ssd_compare(env, ssd, req, new_model, original, f_ref, w_ref, weights(ours_m), ours_m)
    return problems


class _OwnGenerator(torch.utils.data.DataLoader):
    """A DataLoader that draws its base seed from its own generator, not torch's global one."""

    def __init__(self, *a, generator=None, **k):
        super().__init__(*a, generator=generator if generator is not None else torch.Generator(), **k)


def ssd_compare(env, ssd, req, new_model, original, f_ref, w_ref, w_ours, ours_m):
    """selective-synaptic-dampening's FisherForgetting: the global generator is seeded 0 before the call
    and its hessian's DataLoader kept off that generator (as the notebook reseeds right before the noise)."""
    full, rnd = ssd
    m = copy_of(new_model, original)
    retain_dl = torch.utils.data.DataLoader([(req.retain_x[i], int(req.retain_y[i]), int(req.retain_y[i]))
                                             for i in range(len(req.retain_y))], batch_size=1)
    real = torch.utils.data.DataLoader
    torch.utils.data.DataLoader = _OwnGenerator
    try:
        torch.manual_seed(0)
        with contextlib.redirect_stdout(io.StringIO()):
            if req.kind == "class":
                full.FisherForgetting(m, None, retain_dl, None, None, None, None, forget_class=req.forget_class,
                                      num_classes=req.num_classes, device="cpu")
                src = "forget_full_class_strategies"
            else:
                rnd.FisherForgetting(m, None, retain_dl, None, None, None, None, num_classes=req.num_classes,
                                     device="cpu")
                src = "forget_random_strategies"
    finally:
        torch.utils.data.DataLoader = real
    f_ssd = {k: p.grad2_acc.detach().clone() for k, p in m.named_parameters()}
    w_ssd = weights(m)
    w0 = weights(original)
    df, rf, _ = diff(f_ssd, f_ref)
    print(f"  [ssd {src}.FisherForgetting] Fisher vs notebook: max abs diff {df:.2e} -> {verdict(rf, TOL_F)}")
    same = [k for k in w_ref if torch.equal(w_ssd[k], w_ref[k])]
    print(f"      weights bit-identical to the notebook's: {', '.join(same) or 'none'}")
    for k in w_ref:
        if k in same:
            continue
        ratio = float((w_ssd[k] - w0[k]).norm() / (w_ref[k] - w0[k]).norm())
        print(f"      {k}: max abs diff {float((w_ssd[k] - w_ref[k]).abs().max()):.2e} (vs ours "
              f"{float((w_ssd[k] - w_ours[k]).abs().max()):.2e}); |w - w0| ratio to the notebook's {ratio:.4f} "
              f"(1/sqrt(10) = {10 ** -0.5:.4f}: no x10 on the classifier weight)")
    print(f"      forget / retain / test: ssd {env.accs(m, req)}; ours {env.accs(ours_m, req)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", help=f"checkout of AdityaGolatkar/SelectiveForgetting at {COMMIT}")
    ap.add_argument("--ssd", help=f"optional: checkout of if-loops/selective-synaptic-dampening at {SSD_COMMIT[:7]}")
    ap.add_argument("--no-cnn", action="store_true", help="the MLP only (about 15 s)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    cells = notebook_cells(args.upstream)
    ssd = load_ssd(args.ssd) if args.ssd else None
    torch.set_num_threads(args.threads)
    from bench.nn.nets import MLP, SmallCNN
    from bench.nn.training import set_threads

    set_threads(args.threads)
    env = Env()
    K = env.d.num_classes
    print(f"digits, digits recipe, seed 0; SelectiveForgetting {COMMIT} {NOTEBOOK} (cells: "
          f"{', '.join(CELLS)}), alpha {ALPHA:g}")
    print(f"tolerances: Fisher and variance {TOL_F:g} relative, weights {TOL_W:g} of the largest move the noise makes")
    problems = []
    models = [("mlp:256,256 (closed form)", lambda: MLP(64, (256, 256), K), ssd)]
    if not args.no_cnn:
        models.append(("cnn (vmap/jacrev)", lambda: SmallCNN(1, K), None))
    for label, factory, ssd_mods in models:
        new_model, original = env.train(factory)
        print(f"\n== {label}")
        problems += compare(env, cells, label, new_model, original, ssd_mods)
    print()
    if problems:
        print("VERDICT: differ: " + "; ".join(problems))
    else:
        print(f"VERDICT: agree: Fisher diagonal within {TOL_F:g} relative (float32 summation order), get_mean_var "
              f"and the sampling bit-identical given the same Fisher, weights within {TOL_W:g} of the noise, "
              f"accuracies identical ({len(models)} model{'s' if len(models) > 1 else ''} x class:3, random:10%)")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
