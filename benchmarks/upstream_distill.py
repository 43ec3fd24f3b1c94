"""Run the reference code of bad-teacher, scrub, cf-k, eu-k and neggrad+ beside ours on one digits model.

One original (harness ``mlp`` 64-256-256-10, digits recipe, seed 0), one request (class 3: 146 forget, 1,291
retain points). Per method ours runs through ``Method.unlearn`` (seed 0, digits ``dataset_params``) and the
reference on a copy of the same original, with the same hyperparameters (put into its own configuration) and
the same batches (ours are recorded, the reference's DataLoaders replay them in order). Printed: max abs weight
difference after one epoch (``epochs=1``) and after the full run, both models' forget/retain/test accuracies,
a verdict. Upstream code run, imported from the checkouts at run time (nothing of it is copied here):

- vikram2000b/bad-teaching-unlearning f1aa988f71cccf1be6d50e0c6f7b2b905e4c9126: ``unlearn.py``
  ``blindspot_unlearner`` (with ``dataset.py::UnLearningData``); the retain subset (README: 30 %) is ours.
- meghdadk/SCRUB 98ffb1196ffbec2665092598c13ad3b6ec3d095d: the SCRUB cells of ``small_scale_unlearning.ipynb``
  (batch sizes, hyperparameters, copies, optimiser, epoch loop) exec'd from the notebook, with
  ``thirdparty/repdistiller`` (``train_distill``, ``validate``, ``DistillKL``, ``adjust_learning_rate``).
- xcadet/deepunlearn 6830ff6e5fd72f4793890ee31904814892625acf: ``munl/unlearning/catastrophic_forgetting_k.py``,
  ``exact_unlearning_k.py`` (``unlearn``, ``scrub_utils.py::fk_finetune``), ``neggradplus.py``. Its
  ``select_last_k_blocks`` knows only ResNet/TinyViT; on our MLP the blocks are ours: hidden Linear layers
  ``net.1``, ``net.3`` (k = 1: ``net.3``), classifier ``net.5``. Packages it imports that are not installed
  (omegaconf, optuna, hydra, tensorboard) are empty stubs; the code run does not use them.

    .venv/bin/python benchmarks/upstream_distill.py --badteacher DIR --scrub DIR --deepunlearn DIR

Omit a flag to skip its methods; a missing or wrong directory exits 2. CPU only, one thread, about 10 s.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import os
import sys
import types
import warnings
from importlib import abc, machinery, util
from pathlib import Path

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the notebooks' loops move batches to CUDA when they see one

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import bench.methods.bad_teacher as bad_teacher_module  # noqa: E402
from bench.core.contracts import ForgetRequest, MethodContext  # noqa: E402
from bench.core.recipe import build_recipe  # noqa: E402
from bench.datasets.digits import Digits  # noqa: E402
from bench.methods.bad_teacher import BadTeacher  # noqa: E402
from bench.methods.last_k import CatastrophicForgettingK, ExactUnlearningK  # noqa: E402
from bench.methods.neggrad_plus import NegGradPlus  # noqa: E402
from bench.methods.scrub import Scrub, resolve  # noqa: E402
from bench.nn import training  # noqa: E402
from bench.nn.nets import MLP  # noqa: E402

REQUIRED = {  # flag: (repository, files that must be there)
    "badteacher": ("vikram2000b/bad-teaching-unlearning", ["unlearn.py", "dataset.py", "utils.py"]),
    "scrub": ("meghdadk/SCRUB", ["small_scale_unlearning.ipynb", "thirdparty/repdistiller/helper/loops.py"]),
    "deepunlearn": ("xcadet/deepunlearn", [f"munl/unlearning/{m}.py" for m in ("catastrophic_forgetting_k", "exact_unlearning_k", "neggradplus")]),
}
MISSING_OK = ("omegaconf", "optuna", "hydra", "hydra_zen", "tensorboard")
SEED, CLASS = 0, 3


def fail(msg: str) -> None:
    print(f"upstream_distill: {msg}", file=sys.stderr)
    sys.exit(2)


def check_dir(flag: str, path: str | None) -> Path | None:
    repo, files = REQUIRED[flag]
    missing = [f for f in files if path is not None and not (Path(path) / f).is_file()]
    if missing:
        fail(f"--{flag} {path}: not a checkout of {repo} (missing {', '.join(missing)})")
    return None if path is None else Path(path)


class _Stub(types.ModuleType):
    """An empty module for a package that is not installed; any attribute is a fresh empty class."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        setattr(self, name, type(name, (types.SimpleNamespace,), {}))
        return getattr(self, name)


class _StubFinder(abc.MetaPathFinder, abc.Loader):
    names: tuple[str, ...] = ()  # the packages it stubs

    def find_spec(self, name, path, target=None):
        hit = any(name == n or name.startswith(n + ".") for n in self.names)
        return machinery.ModuleSpec(name, self, is_package=True) if hit else None

    def create_module(self, spec):  # a package: the spec gives it an empty __path__
        return _Stub(spec.name)

    def exec_module(self, module):
        pass


@contextlib.contextmanager
def upstream(root: Path):
    """``root`` first on sys.path, stubs for missing packages; on exit what was loaded from ``root`` (or stubbed)
    leaves sys.modules, so the next checkout's same-named ``utils``/``thirdparty`` is imported afresh."""
    names = [n for n in MISSING_OK if util.find_spec(n) is None]
    finder = _StubFinder()
    finder.names = tuple(names + ["torch.utils.tensorboard"] * ("tensorboard" in names))
    tops, before = {p.stem for p in root.iterdir()}, set(sys.modules)
    sys.meta_path.insert(0, finder)
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        sys.path.remove(str(root))
        for key in set(sys.modules) - before:
            if key.split(".")[0] in tops or isinstance(sys.modules[key], _Stub):
                del sys.modules[key]


class Planned:
    """A batch sampler that replays recorded batches, one recorded epoch per iteration."""

    def __init__(self, epochs):
        self.epochs = [[b.tolist() for b in epoch] for epoch in epochs]

    def __iter__(self):
        return iter(self.epochs.pop(0))

    def __len__(self):
        return len(self.epochs[0]) if self.epochs else 0


def replay(dataset, calls, n) -> DataLoader:  # our tensors, in our recorded batches over range(n), in order
    return DataLoader(dataset, batch_sampler=Planned([b for m, b in calls if m == n]))


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


class Setup:
    """The digits data, the class-3 request and the seed-0 original; runs of our methods on copies."""

    def __init__(self):
        d = self.data = Digits().load(None, False, None)
        f = d.train_y == CLASS
        self.request = r = ForgetRequest(
            num_classes=d.num_classes, kind="class", forget_class=CLASS, forget_indices=torch.nonzero(f).flatten().numpy(),
            forget_x=d.train_x[f], forget_y=d.train_y[f], retain_x=d.train_x[~f], retain_y=d.train_y[~f])
        self.original = training.fit(self.new_model(), d.train_x, d.train_y, build_recipe(Digits.default_recipe), seed=SEED)
        self.nf, self.nr = len(r.forget_y), len(r.retain_y)
        assert self.nf != self.nr  # recorded batch lists are told apart by their length
        self.forget_data = lambda: TensorDataset(r.forget_x, r.forget_y)
        self.retain_data = lambda: TensorDataset(r.retain_x, r.retain_y)

    def new_model(self):
        torch.manual_seed(SEED)
        return MLP(64, (256, 256), self.data.num_classes)

    def copy(self):
        return copy.deepcopy(self.original)

    def ours(self, method, params, new_model=None):
        """Our method on a copy of the original; returns the model and every index batch it drew from
        ``bench.nn.training.batches``, in order: [(n, [batches])]."""
        calls, real = [], training.batches

        def record(n, batch_size, generator, device):
            out = list(real(n, batch_size, generator, device))
            calls.append((n, [i.cpu() for i in out]))
            return iter(out)

        training.batches = record
        try:
            ctx = MethodContext(SEED, "cpu", new_model or self.new_model)
            return method.unlearn(self.copy(), self.request, dict(params), ctx), calls
        finally:
            training.batches = real

    def accs(self, model):
        r, d = self.request, self.data
        sets = ((r.forget_x, r.forget_y), (r.retain_x, r.retain_y), (d.test_x, d.test_y))
        return "/".join(f"{training.accuracy(model, x, y):.3f}" for x, y in sets)


def params_of(method) -> dict:
    return {**method.default_params, **method.dataset_params.get("digits", {})}


def delta(a, b) -> torch.Tensor:
    return torch.cat([(p - q).flatten() for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)])


def report(s: Setup, name, what, ours, ref, reason: str = "unexplained") -> None:
    dw, moved = delta(ours, ref), delta(ours, s.original)
    diff = dw.abs().max().item()
    tol = next((t for t in (0.0, 1e-7, 1e-6, 1e-5) if diff <= t), None)
    verdict = "agree bit for bit" if tol == 0.0 else f"agree to {tol:g}" if tol else f"differ: {reason}"
    print(f"  {name:<11} {what}\n      max|dw| {diff:.3e}, ||dw|| {dw.norm() / moved.norm():.1%} of ours' ||w - w0|| (max "
          f"{moved.abs().max():.3e})   f/r/t ours {s.accs(ours)}  reference {s.accs(ref)}   -> {verdict}")


def runs(base, full=None):
    return (("1 epoch", {**base, "epochs": 1}), (f"full run ({full or base['epochs']} epochs)", base))


def run_bad_teacher(s: Setup, root: Path) -> None:
    with upstream(root):
        import unlearn as ref

        base = params_of(BadTeacher())
        g = torch.Generator().manual_seed(SEED)  # our retain subset: the first draw of our generator
        keep = torch.randperm(s.nr, generator=g)[: int(round(base["retain_fraction"] * s.nr))].sort().values
        retain_subset = TensorDataset(s.request.retain_x[keep], s.request.retain_y[keep])

        def reference(p, calls):
            model, sampler, real = s.copy(), Planned([b for _, b in calls]), ref.DataLoader
            ref.DataLoader = lambda ds, **kw: DataLoader(ds, batch_sampler=sampler)  # ours, in our order
            try:
                with quiet():
                    ref.blindspot_unlearner(model, s.new_model().eval(), s.copy(), retain_subset, s.forget_data(),
                                            epochs=p["epochs"], optimizer="adam", lr=p["lr"], batch_size=p["batch_size"],
                                            num_workers=0, device="cpu", KL_temperature=p["temperature"])
            finally:
                ref.DataLoader = real
            assert not sampler.epochs, "the reference ran fewer epochs than ours"
            return model

        print(f"bad-teacher: digits params {base}; D_u = D_f ({s.nf}) + our 30 % retain subset ({len(keep)}); "
              f"incompetent teacher = ctx.new_model() for both")
        for label, p in runs(base):
            ours, calls = s.ours(BadTeacher(), p)
            refm = reference(p, calls)
            report(s, "bad-teacher", f"{label}, as shipped", ours, refm,
                   "the KL reduction (ours batchmean; the reference's default 'mean' also divides by K = 10), a documented fix")
            real = bad_teacher_module.teacher_kl  # the reference's reduction in ours, for the check:
            bad_teacher_module.teacher_kl = lambda s_logits, target, T: F.kl_div(
                F.log_softmax(s_logits / T, dim=1), target, reduction="mean")
            try:
                ours_mean, _ = s.ours(BadTeacher(), p)
            finally:
                bad_teacher_module.teacher_kl = real
            report(s, "bad-teacher", f"{label}, ours with the reference's reduction='mean'", ours_mean, refm)


SCRUB_ARGS = {"optim": "optimizer", "sgda_learning_rate": "lr", "sgda_weight_decay": "weight_decay", "kd_T": "temperature",
              "gamma": "gamma", "alpha": "alpha", "msteps": "msteps", "sgda_epochs": "epochs", "lr_decay_epochs": "milestones",
              "lr_decay_rate": "lr_decay", "retain_bs": "retain_batch_size", "forget_bs": "forget_batch_size"}  # notebook: ours


def run_scrub(s: Setup, root: Path) -> None:
    nb = json.loads((root / "small_scale_unlearning.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]

    def cell(marker):
        hits = [c for c in cells if marker in c]
        if len(hits) != 1:
            fail(f"--scrub {root}: small_scale_unlearning.ipynb has {len(hits)} code cells with {marker!r}, expected 1")
        return hits[0]

    # the loader batch sizes, the SCRUB hyperparameters, the copies, the optimiser, the epoch loop
    sources = [cell(m) for m in ("args.retain_bs =", "args.sgda_weight_decay =", "model_s = copy.deepcopy(student)",
                                 "criterion_div = DistillKL", "module_list.append(model_t)", "maximize_loss = train_distill")]
    with upstream(root):
        from thirdparty.repdistiller.distiller_zoo import DistillKL
        from thirdparty.repdistiller.helper import loops
        from thirdparty.repdistiller.helper.util import adjust_learning_rate

        p = resolve(params_of(Scrub()))
        a = argparse.Namespace()
        exec(sources[0] + "\n" + sources[1], {"args": a})
        off = {k: (getattr(a, k), p[v]) for k, v in SCRUB_ARGS.items()
               if (list(getattr(a, k)) if k == "lr_decay_epochs" else getattr(a, k)) != p[v]}
        print(f"scrub: preset small; the notebook's cells vs ours (incl. batch sizes {a.retain_bs}/{a.forget_bs}): "
              f"{'all equal' if not off else off}; beta {a.beta}, distill {a.distill!r}; our batches replayed")

        def reference(epochs, calls):
            ns = {"args": argparse.Namespace(), "copy": copy, "torch": torch, "nn": torch.nn, "optim": torch.optim,
                  "DistillKL": DistillKL, "sgda_adjust_learning_rate": adjust_learning_rate,
                  "train_distill": loops.train_distill, "teacher": s.copy(), "student": s.copy(), "swa_model": None,
                  # validate only reads the model; it reads in plain order so that the replayed order is training's
                  "validate": lambda loader, *x, **k: loops.validate(DataLoader(loader.dataset, batch_size=256), *x, **k),
                  "forget_loader": replay(s.forget_data(), calls, s.nf),
                  "retain_loader": replay(s.retain_data(), calls, s.nr)}
            exec(sources[1], ns)
            ns["args"].sgda_epochs = epochs
            with quiet():
                for src in sources[2:]:
                    exec(src, ns)
            assert not ns["retain_loader"].batch_sampler.epochs and not ns["forget_loader"].batch_sampler.epochs
            return ns["model_s"]

        for label, q in runs(params_of(Scrub()), p["epochs"]):
            ours, calls = s.ours(Scrub(), q)
            report(s, "scrub", label, ours, reference(resolve(q)["epochs"], calls))


def run_deepunlearn(s: Setup, root: Path) -> None:
    with upstream(root):
        import munl.unlearning.catastrophic_forgetting_k as cfk
        import munl.unlearning.exact_unlearning_k as euk
        import munl.unlearning.neggradplus as ngp
        from munl.models import init_weights

        def blocks(model, k):  # our MLP's blocks: the hidden Linear layers net.1, net.3 (select_last_k_blocks' role)
            return [model.net[1], model.net[3]][-k:]

        for mod in (cfk, euk):
            mod.select_last_k_blocks = blocks
            mod.get_model_classifier = lambda model: model.net[5]
            mod.get_num_classes_from_model = lambda model: model.net[5].out_features

        def last_k(unlearner, default_cfg, p, calls, reinit_seed=None):
            cfg = dataclasses.replace(default_cfg, num_epochs=p["epochs"], batch_size=p["batch_size"], num_blocks=p["k"],
                                      learning_rate=p["lr"], sgda_decay_rate=p["lr_decay"], sgda_weight_decay=p["weight_decay"])
            model, loader = s.copy(), replay(s.retain_data(), calls, s.nr)
            if reinit_seed is not None:
                torch.manual_seed(reinit_seed)  # init_weights draws from the global generator
            with quiet():
                unlearner(cfg, device="cpu").unlearn(model, loader, None, None)
            assert not loader.batch_sampler.epochs
            return model

        def describe(name, c, p):
            ref = dict(k=c.num_blocks, epochs=c.num_epochs, lr=c.learning_rate, weight_decay=c.sgda_weight_decay,
                       lr_decay=c.sgda_decay_rate, batch_size=c.batch_size)
            print(f"{name}: config {ref}, momentum {c.momentum} (fk_finetune ignores it); ours on digits "
                  f"{ {k: p[k] for k in ref} }, passed to it; trained: {['net.1', 'net.3'][-p['k']:]} + net.5")

        cfg_cf, base = cfk.DefaultCatastrophicForgettingKConfig(), params_of(CatastrophicForgettingK())
        describe("cf-k", cfg_cf, base)
        for label, p in runs(base):
            ours, calls = s.ours(CatastrophicForgettingK(), p)
            report(s, "cf-k", label, ours, last_k(cfk.CatastrophicForgettingK, cfg_cf, p, calls))

        cfg_eu, base = euk.DefaultExactUnlearningKConfig(), params_of(ExactUnlearningK())
        describe("eu-k", cfg_eu, base)

        def reference_init():  # a fresh model whose chosen blocks carry the reference's init_weights draw
            m = s.new_model()
            torch.manual_seed(SEED)
            for block in blocks(m, base["k"]) + [m.net[5]]:
                block.apply(init_weights)
            return m

        for label, p in runs(base):
            ours, calls = s.ours(ExactUnlearningK(), p, new_model=reference_init)
            ref = last_k(euk.ExactUnlearningK, cfg_eu, p, calls, SEED)
            report(s, "eu-k", f"{label}, ours re-initialised with the reference's init_weights draw", ours, ref)
            report(s, "eu-k", f"{label}, as shipped (ours re-initialises from ctx.new_model())",
                   s.ours(ExactUnlearningK(), p)[0], ref, "the re-initialisation (ours: the architecture's seeded "
                   "init; the reference: init_weights, Xavier weights and zero biases), a documented choice")

        base, d, opt = params_of(NegGradPlus()), ngp.DefaultNegGradPlusUnlearningConfig(), ngp.neggradplus_default_optimizer()
        print(f"neggrad+: reference config alpha {d.alpha}, epochs {d.num_epochs}, batch {d.batch_size}, weight_decay "
              f"{d.weight_decay}, optimizer {opt}; ours on digits {base}, passed to it")
        omega = sys.modules["omegaconf"]
        make = (lambda x: omega.DictConfig(**x)) if isinstance(omega, _Stub) else omega.OmegaConf.create

        def neggrad(p, calls):
            cfg = types.SimpleNamespace(num_epochs=p["epochs"], alpha=p["alpha"], weight_decay=p["weight_decay"],
                                        optimizer=make({**opt, "learning_rate": p["lr"], "momentum": p["momentum"]}),
                                        scheduler=None, criterion=None)
            model, fl, rl = s.copy(), replay(s.forget_data(), calls, s.nf), replay(s.retain_data(), calls, s.nr)
            ngp.NegGradPlus(cfg, device="cpu").unlearn(model, rl, fl, None)
            assert not rl.batch_sampler.epochs and not fl.batch_sampler.epochs
            return model

        for label, p in runs(base):
            ours, calls = s.ours(NegGradPlus(), p)
            report(s, "neggrad+", label, ours, neggrad(p, calls))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, (repo, _) in REQUIRED.items():
        ap.add_argument(f"--{flag}", metavar="DIR", help=f"a {repo} checkout (omit to skip its methods)")
    args = ap.parse_args()
    roots = {k: check_dir(k, getattr(args, k)) for k in REQUIRED}
    if not any(roots.values()):
        fail("give at least one of --badteacher, --scrub, --deepunlearn")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=FutureWarning)  # timm's deprecated paths (deepunlearn's imports)
    warnings.filterwarnings("ignore", message="reduction: 'mean' divides")  # the bad-teacher check, on purpose
    s = Setup()
    print(f"digits / mlp / class:{CLASS} ({s.nf} forget, {s.nr} retain), original seed {SEED}; accuracies f/r/t = "
          f"forget/retain/test (test: all 10 classes); original {s.accs(s.original)}")
    for flag, run in (("badteacher", run_bad_teacher), ("scrub", run_scrub), ("deepunlearn", run_deepunlearn)):
        if roots[flag]:
            run(s, roots[flag])


if __name__ == "__main__":
    main()
