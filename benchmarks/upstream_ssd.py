"""Our ``ssd``, ``lfssd`` and ``unsir`` beside the reference code, on the same model and data.

The reference is if-loops/selective-synaptic-dampening at commit
cdfdc0e35c1908e032a6e150d882b0fa17833f85, imported from the checkout given by ``--upstream``
(its ``src/`` put on ``sys.path``; ``wandb`` and ``seaborn``, imported there but never used on
these paths, are stubbed when not installed). It runs:

- ``ssd``: ``src/ssd.py`` ``ParameterPerturber.calc_importance`` (importances of D_f and of D =
  D_r then D_f) and ``src/forget_full_class_strategies.py`` ``ssd_tuning`` end to end (the
  importances, then ``modify_weight``), on unshuffled DataLoaders over our tensors (batch 64,
  as ``forget_full_class_main.py``; ``forget_random_main.py``'s 128 for D_f is run as well).
  ``src/forget_random_strategies.py`` ``ssd_tuning`` is called too: at this commit it raises
  ``UnboundLocalError`` (its local ``ssd`` shadows the module), so the full-class driver, which
  is otherwise the same, is the one compared on the random request. Both sides get the same
  order: on class:3, D_r sorted by class (the reference's ``build_retain_forget_sets``); on
  random:10%, dataset order. Ours is also run on class:3 with D_r in dataset order (what
  ``bench run`` passes), to show how much the order of D moves the batch estimate.
- ``lfssd``: the same code with the README's "Implementing LFSSD" change applied from outside:
  the criterion the reference builds is swapped for the batch mean of the squared l2 norm of the
  logits, and a gradient hook hands the reference's loop sqrt|g|, which its square turns back
  into |g| (so the loop itself runs unchanged; the round trip costs a few ulps).
- ``unsir``: ``src/forget_full_class_strategies.py`` ``UNSIR`` end to end (with ``src/unlearn.py``
  ``UNSIR_noise``, ``UNSIR_noise_train``, ``UNSIR_create_noisy_loader``,
  ``fit_one_unlearning_cycle``). Its noise is hard-coded to 3 channels, so the reference sees the
  digits as 3x8x8 images (channel 0 the digit, 1-2 zero) through a wrapper that feeds channel 0
  to the MLP; Adam is elementwise and the l2 penalty separable, so channel 0 of its noise follows
  the same path as our 1x8x8 noise. Aligned: the noise's initial values (channel 0 set to our
  seeded draw), the shuffled loaders' orders (our permutations for impair and repair handed to
  them as samplers), and the retain order (both given D_r sorted by class, the order the
  reference's ``build_retain_forget_sets`` makes). Its noisy loader keeps 80 copies of only the
  first 3 noise rows (the inner loop counts ``batch[0].size(0)``, the channels of one noise
  image), ours 80 of all 32: "ours, 3 rows" runs our ``unlearn`` with ``learn_noise`` wrapped to
  return the first 3 rows, which gives the reference's noisy set in its order. The reference is
  run as published and with the model gradients its noise steps leave behind zeroed before the
  impair cycle (our documented fix); at its lr 1e-4 and at our digits lr 3e-3 (passed to its
  ``fit_one_unlearning_cycle``).

The reference's ``get_metric_scores`` (ZRF, MIA) is replaced by a stub that returns nothing;
accuracies are ours (``bench.nn.training.accuracy``). Setup: digits, ``MLP(64, (256, 256), 10)``
trained with the digits recipe, seed 0; class 3 (146 points), random 10% (the harness's draw, seed 0);
``ctx.seed`` 0. Hyperparameters: ours for digits (ssd alpha 15, lfssd 4.5, unsir lr 3e-3), published (10, 1; 1e-4).

Usage: .venv/bin/python benchmarks/upstream_ssd.py --upstream DIR
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import sys
import types
from pathlib import Path

import torch
from _upstream import checkout, digits_original, patched, verdict, weights

COMMIT = "cdfdc0e35c1908e032a6e150d882b0fa17833f85"
FILES = {"src/ssd.py": "class ParameterPerturber", "src/forget_full_class_strategies.py": "def UNSIR(",
         "src/forget_random_strategies.py": "def ssd_tuning(", "src/unlearn.py": "def UNSIR_noise_train("}
FORGET_CLASS = 3
REF_NOISE_ROWS = 3  # what UNSIR_create_noisy_loader's inner loop counts: batch[0].size(0), 3 channels


def _check_dir(root: str | None) -> Path:
    return checkout(root, FILES, "if-loops/selective-synaptic-dampening", commit=COMMIT)


def load_reference(base: Path):
    """Import the reference modules from ``base/src``."""
    for name in ("wandb", "seaborn"):  # imported by src/ssd.py, never used on these paths
        if importlib.util.find_spec(name) is None:
            sys.modules[name] = types.ModuleType(name)
    importlib.import_module("matplotlib").use("Agg")  # src/ssd.py imports pyplot
    sys.dont_write_bytecode = True  # leave the checkout as it is
    src = str((base / "src").resolve())
    sys.path.insert(0, src)
    mods = [importlib.import_module(m) for m in ("ssd", "unlearn", "forget_full_class_strategies",
                                                  "forget_random_strategies")]
    for m in mods:
        if not str(Path(m.__file__).resolve()).startswith(src):
            print(f"error: module {m.__name__} was imported from {m.__file__}, not {src}", file=sys.stderr)
            sys.exit(2)
    return mods


def quiet():
    return contextlib.redirect_stdout(io.StringIO())  # the reference prints parameters, losses, epochs


def triples(x, y):
    """(x, y, y) items, the reference's (image, label, class label) layout; labels as Python ints."""
    return [(x[i], int(y[i]), int(y[i])) for i in range(len(y))]


def loader(x, y, batch):
    return torch.utils.data.DataLoader(triples(x, y), batch_size=batch, shuffle=False)


def max_diff(a: dict, b: dict) -> tuple[float, float, int]:
    """Max abs difference, max abs difference over the largest |b|, and the number of unequal elements."""
    diff = max(float((a[k] - b[k]).abs().max()) for k in b)
    scale = max(float(b[k].abs().max()) for k in b)
    unequal = sum(int((a[k] != b[k]).sum()) for k in b)
    return diff, diff / scale if scale else diff, unequal


class Env:
    """The digits data, the trained original and the requests, shared by every comparison."""

    def __init__(self):
        from bench.core.contracts import ForgetRequest
        from bench.core.forget import parse_forget

        d, self.new_model, self.original = digits_original()
        self.d = d
        n, y = len(d.train_y), d.train_y

        def request(forget, kind, sort_retain):
            r = torch.nonzero(~forget).flatten()
            if sort_retain:  # the reference's build_retain_forget_sets: class by class, stable within
                r = r[torch.argsort(y[r], stable=True)]
            return ForgetRequest(num_classes=d.num_classes, kind=kind, forget_class=FORGET_CLASS if kind == "class" else None,
                                 forget_indices=torch.nonzero(forget).flatten().numpy(),
                                 forget_x=d.train_x[forget], forget_y=y[forget], retain_x=d.train_x[r], retain_y=y[r])

        self.cls = request(y == FORGET_CLASS, "class", True)
        self.cls_harness = request(y == FORGET_CLASS, "class", False)
        pick = torch.zeros(n, dtype=torch.bool)  # the harness's random:10% draw, forget seed 0
        pick[torch.as_tensor(parse_forget("random:10%").select(y.numpy(), d.num_classes, 0))] = True
        self.rnd = request(pick, "random", False)

    def copy(self):
        m = self.new_model()
        m.load_state_dict(self.original.state_dict())
        return m.eval()

    def accs(self, model, req) -> str:
        from bench.nn.training import accuracy

        d = self.d
        f, r = accuracy(model, req.forget_x, req.forget_y), accuracy(model, req.retain_x, req.retain_y)
        return f"forget {f:.3f} retain {r:.3f} test {accuracy(model, d.test_x, d.test_y):.3f}"

    def ctx(self):
        from bench.core.contracts import MethodContext

        return MethodContext(0, "cpu", self.new_model)


@contextlib.contextmanager
def label_free(ssd_mod, model):
    """The README's LFSSD change around the unchanged reference loop: loss = batch mean of ||f(x)||^2,
    importance += |g| (a hook hands the loop sqrt|g|, which it squares)."""
    crit = types.SimpleNamespace(CrossEntropyLoss=lambda: (lambda out, y: torch.linalg.vector_norm(out, dim=1).pow(2).mean()))
    hooks = [p.register_hook(lambda g: g.abs().sqrt()) for p in model.parameters()]
    try:
        with patched((ssd_mod, "nn", crit)):
            yield
    finally:
        for h in hooks:
            h.remove()


def ssd_section(env: Env, ref, method_name: str) -> None:
    from bench.methods.ssd import LabelFreeSSD, SelectiveSynapticDampening, importances

    ssd_mod, _, fcs, frs = ref
    method = LabelFreeSSD() if method_name == "lfssd" else SelectiveSynapticDampening()
    lf = method.label_free
    lf_ctx = (lambda m: label_free(ssd_mod, m)) if lf else (lambda m: contextlib.nullcontext())
    digits_alpha = method.dataset_params["digits"]["selection_weighting"]
    ref_params = {"lower_bound": 1, "exponent": 1, "magnitude_diff": None, "min_layer": -1, "max_layer": -1,
                  "forget_threshold": 1, "dampening_constant": 1.0, "selection_weighting": 10.0}
    print(f"\n== {method_name} ({'LFSSD: README change on ' if lf else ''}ParameterPerturber / ssd_tuning), lambda 1")
    for label, req in (("class:3", env.cls), ("random:10%", env.rnd)):
        full_x, full_y = torch.cat([req.retain_x, req.forget_x]), torch.cat([req.retain_y, req.forget_y])
        # importances: the reference's calc_importance beside ours, batch 64, same order
        model_o, model_r = env.copy(), env.copy()
        ours = [importances(model_o, req.forget_x, req.forget_y, 64, lf), importances(model_o, full_x, full_y, 64, lf)]
        with quiet(), lf_ctx(model_r):
            pdr = ssd_mod.ParameterPerturber(model_r, torch.optim.SGD(model_r.parameters(), lr=0.1), "cpu", ref_params)
            theirs = [pdr.calc_importance(loader(req.forget_x, req.forget_y, 64)),
                      pdr.calc_importance(loader(full_x, full_y, 64))]
        for name, a, b in (("I_f", ours[0], theirs[0]), ("I_D", ours[1], theirs[1])):
            diff, rel, neq = max_diff(a, b)
            print(f"  {label} {name} (calc_importance, batch 64): max abs diff {diff:.2e}, relative to the largest "
                  f"{rel:.2e}, {neq} unequal elements -> {verdict(rel, 'see above')}")
        # the whole method: ssd_tuning (importances + modify_weight) beside our unlearn
        for alpha in (digits_alpha, 10.0):
            params = {**method.default_params, "selection_weighting": alpha}
            ctx = env.ctx()
            ours_m = method.unlearn(env.copy(), req, params, ctx)
            theirs_m = env.copy()
            with quiet(), patched((fcs, "get_metric_scores", lambda *a, **k: None)), lf_ctx(theirs_m):
                fcs.ssd_tuning(theirs_m, None, None, None, loader(req.forget_x, req.forget_y, 64), None, None,
                               dampening_constant=1.0, selection_weighting=alpha,
                               full_train_dl=loader(full_x, full_y, 64), device="cpu")
            w0 = weights(env.original)
            sel_ref = sum(int((weights(theirs_m)[k] != w0[k]).sum()) for k in w0) / sum(v.numel() for v in w0.values())
            diff, _, neq = max_diff(weights(ours_m), weights(theirs_m))
            tag = "digits default" if alpha == digits_alpha else "published"
            print(f"  {label} alpha {alpha:g} ({tag}), batch 64/64: weights max abs diff {diff:.2e} ({neq} unequal); "
                  f"dampened ours {ctx.metrics['ssd_selected_fraction']:.2%} / ref {sel_ref:.2%}")
            print(f"      ours {env.accs(ours_m, req)} | ref {env.accs(theirs_m, req)} -> {verdict(diff, 'see above')}")
        if label == "random:10%":  # forget_random_main.py's batches: 128 for D_f, 64 for D
            theirs_m = env.copy()
            with quiet(), lf_ctx(theirs_m):
                pdr = ssd_mod.ParameterPerturber(theirs_m, torch.optim.SGD(theirs_m.parameters(), lr=0.1), "cpu",
                                                 {**ref_params, "selection_weighting": digits_alpha})
                theirs_m.eval()
                i_f = pdr.calc_importance(loader(req.forget_x, req.forget_y, 128))
                pdr.modify_weight(pdr.calc_importance(loader(full_x, full_y, 64)), i_f)
            ours_m = method.unlearn(env.copy(), req, {**method.default_params, "selection_weighting": digits_alpha},
                                    env.ctx())
            diff, _, neq = max_diff(weights(ours_m), weights(theirs_m))
            print(f"  {label} alpha {digits_alpha:g}, ref batches 128 (D_f) / 64 (D) as forget_random_main.py, ours "
                  f"64/64: weights max abs diff {diff:.2e} ({neq} unequal)")
            print(f"      ours {env.accs(ours_m, req)} | ref {env.accs(theirs_m, req)} -> "
                  f"{verdict(diff, 'choice: one batch_size (64) for D_f and D')}")
    # the order of D: what bench run passes (dataset order) against the class-sorted order above
    params = {**method.default_params, **method.dataset_params["digits"]}
    c1, c2 = env.ctx(), env.ctx()
    m1, m2 = method.unlearn(env.copy(), env.cls, params, c1), method.unlearn(env.copy(), env.cls_harness, params, c2)
    print(f"  class:3 alpha {digits_alpha:g}, ours on D_r class-sorted (as above): dampened "
          f"{c1.metrics['ssd_selected_fraction']:.2%}, {env.accs(m1, env.cls)}")
    print(f"  class:3 alpha {digits_alpha:g}, ours on D_r in dataset order (bench run): dampened "
          f"{c2.metrics['ssd_selected_fraction']:.2%}, {env.accs(m2, env.cls)}")
    if not lf:
        try:
            with quiet():
                frs.ssd_tuning(env.copy(), None, None, None, loader(env.rnd.forget_x, env.rnd.forget_y, 128), None, None,
                               dampening_constant=1.0, selection_weighting=10.0,
                               full_train_dl=loader(env.rnd.retain_x, env.rnd.retain_y, 64), device="cpu")
            print("  forget_random_strategies.ssd_tuning ran")
        except UnboundLocalError as e:
            print(f"  note: forget_random_strategies.ssd_tuning raises UnboundLocalError at this commit ({e})")


class ChannelZero(torch.nn.Module):
    """Feeds channel 0 of a 3-channel batch to ``net`` (the reference's UNSIR noise is 3-channel)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x[:, :1])


def unsir_section(env: Env, ref) -> None:
    import bench.methods.unsir as ours_mod

    _, unlearn, fcs, _ = ref
    method, req, seed = ours_mod.Unsir(), env.cls, 0
    pad = lambda x: torch.cat([x, torch.zeros(len(x), 2, *x.shape[2:])], 1)  # noqa: E731
    d, p = env.d, ours_mod.Unsir.default_params
    other = d.test_y != FORGET_CLASS
    real_loader, real_learn = torch.utils.data.DataLoader, ours_mod.learn_noise
    shape = (p["noise_batch_size"], *req.retain_x.shape[1:])
    print(f"\n== unsir (forget_full_class_strategies.UNSIR), class:{FORGET_CLASS}, seed {seed}")
    print(f"  the reference's UNSIR_create_noisy_loader adds {p['noise_copies']} x {REF_NOISE_ROWS} noise points (its inner "
          f"loop runs over batch[0].size(0), the channels of one noise image), ours {p['noise_copies']} x "
          f"{p['noise_batch_size']}; 'ours, 3 rows' keeps the first {REF_NOISE_ROWS} learnt rows to match it")
    for lr in (p["lr"], ours_mod.Unsir.dataset_params["digits"]["lr"]):
        params = {**p, "lr": lr}
        ours_m = method.unlearn(env.copy(), req, params, env.ctx())
        with patched((ours_mod, "learn_noise", lambda *a, **k: real_learn(*a, **k)[:REF_NOISE_ROWS])):
            ours3 = method.unlearn(env.copy(), req, params, env.ctx())
        noise_ours = real_learn(env.copy(), FORGET_CLASS, shape, p["noise_steps"], p["noise_lr"], p["noise_reg"], seed,
                                "cpu", req.retain_x.dtype)
        init = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        n_impair = p["noise_copies"] * REF_NOISE_ROWS + len(req.retain_y)
        results = {}
        for leak in (True, False):
            net = env.copy()
            perms = [torch.randperm(n_impair, generator=torch.Generator().manual_seed(seed)),  # our impair order
                     torch.randperm(len(req.retain_y), generator=torch.Generator().manual_seed(seed + 1))]  # repair
            noise_out = []

            def aligned(dataset, batch_size=1, shuffle=False, **kw):
                if not shuffle:
                    return real_loader(dataset, batch_size=batch_size, **kw)
                perm = perms.pop(0)
                assert len(perm) == len(dataset), (len(perm), len(dataset))
                return real_loader(dataset, batch_size=batch_size, sampler=perm.tolist(), **kw)

            class AlignedNoise(unlearn.UNSIR_noise):
                def __init__(self, *dim):
                    super().__init__(*dim)
                    with torch.no_grad():
                        self.noise[:, :1] = init

            def noise_train(noise, m, *a, _orig=unlearn.UNSIR_noise_train, _leak=leak, **k):
                out = _orig(noise, m, *a, **k)
                noise_out.append(out.noise.detach().clone())
                if not _leak:  # our fix: no model gradient carried into the impair cycle
                    m.zero_grad(set_to_none=True)
                return out

            def cycle(epochs, m, train_loader, val_loader, lr=None, device=None, _orig=unlearn.fit_one_unlearning_cycle, _lr=lr):
                return _orig(epochs, m, train_loader, val_loader, lr=_lr, device=device)

            retain_dl = real_loader(triples(pad(req.retain_x), req.retain_y), batch_size=64)
            forget_dl = real_loader(triples(pad(req.forget_x), req.forget_y), batch_size=64)
            valid_dl = real_loader(triples(pad(d.test_x[other]), d.test_y[other]), batch_size=64)
            with quiet(), patched((unlearn, "DataLoader", aligned), (torch.utils.data, "DataLoader", aligned),
                                  (fcs, "UNSIR_noise", AlignedNoise), (fcs, "UNSIR_noise_train", noise_train),
                                  (fcs, "fit_one_unlearning_cycle", cycle), (fcs, "get_metric_scores", lambda *a, **k: None)):
                net.eval()
                fcs.UNSIR(ChannelZero(net), None, retain_dl, valid_dl, forget_dl, None, None, num_classes=d.num_classes,
                          forget_class=FORGET_CLASS, device="cpu")
            assert not perms, "the reference did not build both shuffled loaders"
            results[leak] = (net, noise_out[0])
        noise_diff = float((results[False][1][:, :1] - noise_ours).abs().max())
        tag = "published" if lr == p["lr"] else "digits default"
        print(f"  lr {lr:g} ({tag}): learnt noise (ref channel 0 vs ours, same initial draw) max abs diff "
              f"{noise_diff:.2e} -> {verdict(noise_diff, 'see above')}")
        rows = [("ours, 3 rows", ours3, "ref, leak removed (our fix)", results[False][0], "see above"),
                ("ours, 3 rows", ours3, "ref as published", results[True][0],
                 "fix: the noise steps' model gradients leak into the first impair step"),
                ("ours (the method)", ours_m, "ref as published", results[True][0],
                 f"the leak (fix) and all {p['noise_batch_size']} noise rows, not {REF_NOISE_ROWS}")]
        for a_name, a, b_name, b, reason in rows:
            diff, _, neq = max_diff(weights(a), weights(b))
            print(f"    {a_name} vs {b_name}: weights max abs diff {diff:.2e} ({neq} unequal)")
            print(f"      ours {env.accs(a, req)} | ref {env.accs(b, req)} -> {verdict(diff, reason)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", help="checkout of if-loops/selective-synaptic-dampening at " + COMMIT[:7])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    base = _check_dir(args.upstream)
    torch.set_num_threads(args.threads)
    ref = load_reference(base)
    from bench.nn.training import set_threads

    set_threads(args.threads)
    env = Env()
    print(f"digits / MLP(64, (256, 256), 10) / digits recipe, seed 0; upstream {COMMIT[:7]}")
    print(f"original: class:3 {env.accs(env.original, env.cls)}; random:10% {env.accs(env.original, env.rnd)}")
    ssd_section(env, ref, "ssd")
    ssd_section(env, ref, "lfssd")
    unsir_section(env, ref)


if __name__ == "__main__":
    main()
