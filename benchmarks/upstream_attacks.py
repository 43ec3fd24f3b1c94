"""Our ``svc`` attack and Song & Mittal's per-class threshold attacks beside the reference code.

Runs the upstream implementations, imported from a checkout given on the command line, on the
same models and the same member/non-member sets as ours, and prints per metric both values, the
difference and a verdict:

- ``mia_efficacy`` (``svc``): OPTML-Group/Unlearn-Sparse ``evaluation/SVC_MIA.py`` at commit
  80ba55d36d0871465c2d3e3896db26a98070e065, ``SVC_MIA(shadow_train=retain[:|D_t|],
  shadow_test=D_t, target_train=None, target_test=D_f)`` as ``main_forget.py`` calls it, its
  ``"confidence"`` entry.
- ``svc_mentropy_efficacy``: the same call's ``"m_entropy"`` entry; it differs from ours by design
  (see docs/attacks.md), so the reference's own SVC step (``SVC_fit_predict``) is also run on the
  modified entropy of the reference's Song & Mittal copy (``black_box_benchmarks._m_entr_comp``),
  which should reproduce our value.
- ``confidence|entropy|mentropy_class_thresh_acc`` (``attacks/population.py``): the copy of Song &
  Mittal's ``black_box_benchmarks`` (``_thre_setting`` / ``_mem_inf_thre``, from
  inspire-group/membership-inference-evaluation) in Unlearn-Sparse ``evaluation/MIA.py``, fed our
  split: shadow = the seeded half of D_f and of D_t our attack draws, target = the other halves.

Setup: digits, ``MLP(64, (256, 256), 10)``, digits recipe, seed 0, forget ``random:10%`` (forget
seed 0, 144 points). Three models are attacked: the original, the model retrained on D_r, and
the original unlearned with our ``ft`` method (default parameters, seed 0). The reference reads
the models through DataLoaders over our tensors (batch 64, no shuffling). Unlearn-Sparse's
``imagenet`` module (needed by ``SVC_MIA.py`` for dict batches only) imports Hugging Face
``datasets``; when that is missing a stub module stands in (never called on tensor batches).
``--sweep K`` then repeats the comparison on the original model for forget seeds 0..K-1 and sorts
each disagreement into float32 precision (the reference run on our float64 probabilities agrees),
threshold tie-breaking (same per-class optimum on the shadow half, another threshold) or
unexplained. ``--saliency`` also checks that OPTML-Group/Unlearn-Saliency
``Classification/evaluation/SVC_MIA.py`` (a6e89fd) defines the same functions (print statements
and import order aside). Takes ~10 s on one thread.

Usage: python benchmarks/upstream_attacks.py --sparse DIR [--saliency DIR] [--sweep 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import io
import sys
import types
from pathlib import Path

SPARSE_FILES = {"evaluation/SVC_MIA.py": "def SVC_MIA(", "evaluation/MIA.py": "class black_box_benchmarks"}
SALIENCY_FILE = "Classification/evaluation/SVC_MIA.py"


def _check_dir(flag: str, root: str | None, files: dict[str, str], repo: str) -> Path:
    base = Path(root or "")
    for rel, marker in files.items():
        f = base / rel
        if not root or not f.is_file() or marker not in f.read_text(errors="replace"):
            print(f"error: {flag} {root!r} is not an OPTML-Group/{repo} checkout "
                  f"({rel} with '{marker}' not found)", file=sys.stderr)
            sys.exit(2)
    return base


def load_reference(sparse: Path):
    """Import the reference ``SVC_MIA`` and ``MIA`` modules from ``sparse/evaluation``."""
    sys.path.insert(0, str(sparse))
    sys.path.insert(0, str(sparse / "evaluation"))
    try:
        importlib.import_module("imagenet")
    except ImportError:  # Hugging Face `datasets` (or torchvision) not installed: stub the one name used
        stub = types.ModuleType("imagenet")

        def get_x_y_from_data_dict(batch, device):  # only reached for dict batches, never here
            raise NotImplementedError("dict batches are not used by upstream_attacks.py")

        stub.get_x_y_from_data_dict = get_x_y_from_data_dict
        sys.modules["imagenet"] = stub
    return importlib.import_module("SVC_MIA"), importlib.import_module("MIA")


def _functions(path: Path) -> dict[str, str]:
    """ast dumps of the module's functions with ``print(...)`` statements dropped."""
    class Strip(ast.NodeTransformer):
        def visit_Expr(self, node):
            c = node.value
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "print":
                return None
            return node

    tree = Strip().visit(ast.parse(path.read_text()))
    return {n.name: ast.dump(n) for n in tree.body if isinstance(n, ast.FunctionDef)}


def compare_saliency(sparse: Path, saliency: Path) -> str:
    a, b = _functions(sparse / "evaluation/SVC_MIA.py"), _functions(saliency / SALIENCY_FILE)
    if a == b:
        return (f"Unlearn-Saliency {SALIENCY_FILE}: the same {len(a)} functions as Unlearn-Sparse's "
                "(the files differ only in import order and a print(m) line)")
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return f"Unlearn-Saliency {SALIENCY_FILE}: functions differ from Unlearn-Sparse's: {', '.join(diff)}"


def loader(x, y, batch_size: int = 64):
    import torch

    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def build(threads: int):
    """Digits, the forget split, and the three models (original, retrained, ft)."""
    import torch

    from bench.core.contracts import ForgetRequest, MethodContext
    from bench.core.forget import parse_forget
    from bench.core.recipe import build_recipe
    from bench.datasets.digits import Digits
    from bench.methods.finetune import FineTune
    from bench.nn.nets import MLP
    from bench.nn.training import fit, set_threads
    from bench.run.request import split_data

    set_threads(threads)
    d = Digits().load(None, False, None)
    forget_idx = parse_forget("random:10%").select(d.train_y.numpy(), d.num_classes, 0)
    (rx, ry), (fx, fy), (tx, ty) = split_data(d, forget_idx, "cpu")
    recipe = build_recipe(Digits.default_recipe)

    def new_model():
        torch.manual_seed(0)
        return MLP(64, (256, 256), d.num_classes)

    original = fit(new_model(), d.train_x, d.train_y, recipe, seed=0)
    retrained = fit(new_model(), rx, ry, recipe, seed=0)
    ft = FineTune()
    model = new_model()
    model.load_state_dict(original.state_dict())
    request = ForgetRequest(num_classes=d.num_classes, kind="random", forget_indices=forget_idx,
                            forget_x=fx, forget_y=fy, retain_x=rx, retain_y=ry)
    unlearned = ft.unlearn(model, request, dict(ft.default_params), MethodContext(0, "cpu", new_model))
    sets = dict(rx=rx, ry=ry, fx=fx, fy=fy, tx=tx, ty=ty, num_classes=d.num_classes)
    return d, sets, {"original": original, "retrained": retrained, "ft": unlearned}


def ours(model, s) -> dict[str, float]:
    from bench.attacks import PopulationAttack, SVCEfficacy
    from bench.core.contracts import AttackContext

    def ctx():
        return AttackContext(s["fx"], s["fy"], s["rx"], s["ry"], s["tx"], s["ty"], s["num_classes"], 0, "cpu")

    out = SVCEfficacy().evaluate(model, ctx())
    res = {"mia_efficacy": out["mia_efficacy"], "svc_mentropy_efficacy": out["mentropy_efficacy"]}
    for sig in ("confidence", "entropy", "mentropy"):
        res[f"{sig}_class_thresh_acc"] = PopulationAttack(sig).evaluate(model, ctx())["class_thresh_acc"]
    return res


def halves(n_m: int, n_n: int, seed: int = 0):
    """The shadow/target halves ``population.class_threshold_accuracy`` draws (same generator calls)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pm, pn = rng.permutation(n_m), rng.permutation(n_n)
    return pm[: n_m // 2], pm[n_m // 2:], pn[: n_n // 2], pn[n_n // 2:]


def _bbb_acc(mia_mod, pf, yf, pt, yt, split, num_classes) -> dict[str, float]:
    """Song & Mittal's attack (the reference copy) on probabilities of D_f and D_t, our halves."""
    import numpy as np

    sh_m, tg_m, sh_n, tg_n = split
    with contextlib.redirect_stdout(io.StringIO()):
        bb = mia_mod.black_box_benchmarks((pf[sh_m], yf[sh_m]), (pt[sh_n], yt[sh_n]), (pf[tg_m], yf[tg_m]),
                                          (pt[tg_n], yt[tg_n]), num_classes)
        r = bb._mem_inf_benchmarks()
    return {f"{sig}_class_thresh_acc": float(np.mean(r[key]))
            for sig, key in (("confidence", "confidence"), ("entropy", "entropy"), ("mentropy", "m_entropy"))}


def reference(model, s, svc_mod, mia_mod) -> dict[str, float]:
    """The same metrics from the upstream code, plus two diagnostic runs (keys starting with _)."""
    import torch

    from bench.attacks import signals

    n, cpu = len(s["ty"]), torch.device("cpu")
    with contextlib.redirect_stdout(io.StringIO()):
        m = svc_mod.SVC_MIA(shadow_train=loader(s["rx"][:n], s["ry"][:n]), shadow_test=loader(s["tx"], s["ty"]),
                            target_train=None, target_test=loader(s["fx"], s["fy"]), model=model)
    res = {"mia_efficacy": float(m["confidence"]), "svc_mentropy_efficacy": float(m["m_entropy"])}

    # diagnostic: the reference's SVC step on the correct modified entropy (its Song & Mittal copy)
    perf = {"r": mia_mod.collect_performance(loader(s["rx"][:n], s["ry"][:n]), model, cpu),
            "t": mia_mod.collect_performance(loader(s["tx"], s["ty"]), model, cpu),
            "f": mia_mod.collect_performance(loader(s["fx"], s["fy"]), model, cpu)}
    bbb = mia_mod.black_box_benchmarks.__new__(mia_mod.black_box_benchmarks)  # only for _m_entr_comp
    me = {k: torch.from_numpy(bbb._m_entr_comp(*perf[k])) for k in "rtf"}
    with contextlib.redirect_stdout(io.StringIO()):
        res["_mentropy_correct_feature"] = float(svc_mod.SVC_fit_predict(me["r"], me["t"], torch.zeros(0), me["f"]))

    # Song & Mittal's per-class thresholds on our halves; once on the reference's own float32
    # probabilities, once (diagnostic) on ours (float64 softmax of the logits, attacks/signals.py)
    (pf, yf), (pt, yt) = perf["f"], perf["t"]
    split = halves(len(yf), len(yt))
    res.update(_bbb_acc(mia_mod, pf, yf, pt, yt, split, s["num_classes"]))
    pf64 = signals.softmax(signals.logits_of(model, s["fx"]))
    pt64 = signals.softmax(signals.logits_of(model, s["tx"]))
    res.update({"_f64_" + k: v for k, v in _bbb_acc(mia_mod, pf64, yf, pt64, yt, split, s["num_classes"]).items()})
    return res


def verdict(metric: str, a: float, b: float, extra: dict) -> str:
    d = abs(a - b)
    if d == 0:
        return "agree exactly"
    if metric == "svc_mentropy_efficacy":
        c = extra["_mentropy_correct_feature"]
        return ("differ: documented fix (the reference's m_entropy indexes whole columns and uses log p off-label); "
                "its SVC on the correct feature gives " + ("exactly ours" if c == a else f"{c:.6f}, ours {a:.6f}"))
    if metric.endswith("_class_thresh_acc") and extra.get("_f64_" + metric) == a:
        return ("differ: precision (the reference's float32 softmax rounds near-0/1 values; "
                "on our float64 probabilities it gives exactly ours)")
    if metric.endswith("_class_thresh_acc"):
        return "differ: threshold tie-breaking (see the sweep below)"
    return f"differ by {d:.2e}"


METRICS = ("mia_efficacy", "svc_mentropy_efficacy", "confidence_class_thresh_acc", "entropy_class_thresh_acc",
           "mentropy_class_thresh_acc")
SIGNALS = ("confidence", "entropy", "mentropy")


def sweep(model, d, k: int, svc_mod, mia_mod) -> None:
    """Forget seeds 0..k-1 on one model: how often each metric agrees, and why it does not.

    A class-threshold difference on our float64 probabilities is put down to tie-breaking when,
    in every class, the reference's threshold reaches on the shadow half exactly the balanced
    accuracy of ours (same optimum, another of the equally good thresholds)."""
    import numpy as np

    from bench.attacks import population, signals
    from bench.core.forget import parse_forget
    from bench.run.request import split_data

    bbb = mia_mod.black_box_benchmarks.__new__(mia_mod.black_box_benchmarks)  # only for _thre_setting
    score = {"confidence": lambda lg, y: signals.confidence(lg, y), "entropy": lambda lg, y: -signals.entropy(lg),
             "mentropy": lambda lg, y: -signals.mentropy(lg, y)}
    stats = {k_: {"exact": 0, "precision": 0, "tie": 0, "other": 0, "max": 0.0} for k_ in METRICS}
    for fs in range(k):
        idx = parse_forget("random:10%").select(d.train_y.numpy(), d.num_classes, fs)
        (rx, ry), (fx, fy), (tx, ty) = split_data(d, idx, "cpu")
        s = dict(rx=rx, ry=ry, fx=fx, fy=fy, tx=tx, ty=ty, num_classes=d.num_classes)
        o, r = ours(model, s), reference(model, s, svc_mod, mia_mod)
        lf, lt, yf, yt = signals.logits_of(model, fx), signals.logits_of(model, tx), fy.numpy(), ty.numpy()
        sh_m, _, sh_n, _ = halves(len(yf), len(yt))
        for m in METRICS:
            st, diff = stats[m], abs(o[m] - r[m])
            st["max"] = max(st["max"], diff)
            if m == "svc_mentropy_efficacy":
                diff = abs(o[m] - r["_mentropy_correct_feature"])  # ours vs the reference SVC on the correct feature
            if diff == 0:
                st["exact"] += 1
            elif not m.endswith("_class_thresh_acc"):
                st["other"] += 1
            elif r["_f64_" + m] == o[m]:
                st["precision"] += 1
            else:
                f, t = score[m.split("_")[0]](lf, yf), score[m.split("_")[0]](lt, yt)
                same_opt = True
                for c in range(d.num_classes):
                    a, b = f[sh_m][yf[sh_m] == c], t[sh_n][yt[sh_n] == c]
                    thr = bbb._thre_setting(a, b) if len(a) and len(b) else None
                    same_opt &= thr is not None and population.best_threshold(a, b)[1] == max(
                        0.5, 0.5 * (np.mean(a >= thr) + np.mean(b < thr)))
                st["tie" if same_opt else "other"] += 1
    print(f"\nsweep: original model, forget seeds 0-{k - 1} (random:10%); ours vs upstream")
    for m, st in stats.items():
        note = " (exact = ours vs the reference SVC on the correct m-entropy)" if m == "svc_mentropy_efficacy" else ""
        print(f"  {m:<28} exact {st['exact']}/{k}, float32 precision {st['precision']}, tie-breaking {st['tie']}, "
              f"unexplained {st['other']}; max |diff| {st['max']:.6f}{note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparse", required=True, help="checkout of OPTML-Group/Unlearn-Sparse (80ba55d)")
    ap.add_argument("--saliency", help="optional checkout of OPTML-Group/Unlearn-Saliency (a6e89fd)")
    ap.add_argument("--sweep", type=int, default=20, help="forget seeds of the agreement sweep (0: none)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    sparse = _check_dir("--sparse", a.sparse, SPARSE_FILES, "Unlearn-Sparse")
    saliency = None
    if a.saliency:
        saliency = _check_dir("--saliency", a.saliency, {SALIENCY_FILE: "def SVC_MIA("}, "Unlearn-Saliency")

    import torch

    torch.set_num_threads(a.threads)
    svc_mod, mia_mod = load_reference(sparse)
    if saliency is not None:
        print(compare_saliency(sparse, saliency))
    d, sets, models = build(a.threads)
    print(f"digits / MLP(64, (256, 256), 10) / random:10% ({len(sets['fy'])} forget, {len(sets['ry'])} retain, "
          f"{len(sets['ty'])} test points), seed 0")
    print(f"{'model':<10} {'metric':<28} {'ours':>9} {'upstream':>9} {'diff':>9}  verdict")
    for name, model in models.items():
        o, r = ours(model, sets), reference(model, sets, svc_mod, mia_mod)
        for k in METRICS:
            print(f"{name:<10} {k:<28} {o[k]:9.6f} {r[k]:9.6f} {o[k] - r[k]:+9.6f}  {verdict(k, o[k], r[k], r)}")
    if a.sweep > 0:
        sweep(models["original"], d, a.sweep, svc_mod, mia_mod)


if __name__ == "__main__":
    main()
