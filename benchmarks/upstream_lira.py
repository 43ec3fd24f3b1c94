"""Our ``lira`` and ``lira_offline`` attacks beside the LiRA reference code.

The reference is tensorflow/privacy ``research/mi_lira_2021`` (Carlini et al., "Membership
Inference Attacks From First Principles", S&P 2022; commit 97eec1a for both files), run from a
checkout given on the command line:

- ``score.py`` ``load_one``: the logit-scaled confidence phi from saved logits, on our models'
  logits written in its on-disk layout (``<logdir>/<experiment>/logits/*.npy`` of shape
  [examples, 1, 1, classes], ``y_train.npy``); compared with our ``signals.logit_conf``.
- ``plot.py`` ``generate_ours`` (online), ``generate_ours_offline`` (its -log N score, our
  ``lira_offline_nll_*``) and ``sweep``, fixed variance and per example, on the shadow models'
  phi, the target's phi and the membership answers, as ``plot.py``'s ``do_plot`` calls them; AUC,
  balanced accuracy and TPR at 1% and 0.1% FPR (``tpr[fpr < limit][-1]``) compared with ours.
Both files run as published, except that only their ``import`` statements and function
definitions are executed: each ends with a script part (``load_data("exp/cifar10/")``,
``sys.argv[1]``) that would read the experiments of a training run.

Setup: digits, the harness's default MLP (256-256) and digits recipe, forget ``random:10%`` (forget
seed 0, 144 points); targets = the forget set (members) and the test set (non-members, 360), as
our attacks score them; ``--shadows`` shadow models (default 8) trained by ``bench.eval.shadows``
on random halves of the pool (training then test split), the same models for both. Two models are
attacked: the original (trained on every training point: the forget set are members) and the
model retrained without the forget set (they are not). About 20 s on one thread.

Usage: python benchmarks/upstream_lira.py --ref DIR [--shadows 8] [--threads 1]
  DIR: a checkout of tensorflow/privacy (or its research/mi_lira_2021 folder)
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import sys
import tempfile
from pathlib import Path

from _upstream import attack_setup

FILES = {"plot.py": "def generate_ours(", "score.py": "def load_one("}


def _check_dir(root: str | None) -> Path:
    base = Path(root or "")
    if (base / "research/mi_lira_2021").is_dir():
        base = base / "research/mi_lira_2021"
    for name, marker in FILES.items():
        f = base / name
        if not root or not f.is_file() or marker not in f.read_text(errors="replace"):
            print(f"error: --ref {root!r} is not a tensorflow/privacy checkout ({name} with '{marker}' not found in "
                  "research/mi_lira_2021); fetch it and pass its directory", file=sys.stderr)
            sys.exit(2)
    return base


def definitions(path: Path, **globals_) -> dict:
    """The namespace of ``path``'s import statements and function definitions, run as written
    (its script part, module-level calls and assignments, is left out); ``globals_`` stand in for
    the module-level names the functions read (``score.py``: ``logdir``, ``labels``)."""
    tree = ast.parse(path.read_text())
    tree.body = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))]
    namespace = {"__name__": f"reference_{path.stem}", **globals_}
    exec(compile(tree, str(path), "exec"), namespace)
    return namespace


def reference_phi(score_py: Path, logits: dict, labels) -> dict:
    """score.py's phi for each model's logits ([n, classes]) over the same labelled points."""
    import numpy as np

    with tempfile.TemporaryDirectory() as logdir:
        ns = definitions(score_py, logdir=logdir, labels=np.asarray(labels))
        for name, z in logits.items():
            (Path(logdir) / name / "logits").mkdir(parents=True)
            np.save(Path(logdir) / name / "logits" / "0.npy", np.asarray(z, np.float32)[:, None, None, :])
            with contextlib.redirect_stdout(io.StringIO()):  # its progress prints
                ns["load_one"](name)
        return {name: np.load(Path(logdir) / name / "scores" / "0.npy")[:, 0] for name in logits}


def reference_metrics(plot: dict, keep, sh_phi, target_phi, answers, fixed: bool, offline: bool) -> dict:
    """plot.py's AUC, accuracy and TPR at 1% / 0.1% FPR for one target model."""
    import numpy as np

    fn = plot["generate_ours_offline"] if offline else plot["generate_ours"]
    prediction, ans = fn(keep, sh_phi[:, :, None], [answers], [target_phi[:, None]], fix_variance=fixed)
    fpr, tpr, auc, acc = plot["sweep"](np.array(prediction), np.array(ans, dtype=bool))
    return {"auc": auc, "balanced_acc": acc, "tpr_at_1fpr": tpr[np.where(fpr < .01)[0][-1]],
            "tpr_at_0.1fpr": tpr[np.where(fpr < .001)[0][-1]]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", help="checkout of tensorflow/privacy (research/mi_lira_2021)")
    ap.add_argument("--shadows", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.shadows < 4 or a.shadows % 2:
        ap.error("--shadows must be even and at least 4: with 2, a target may have no IN shadow, where plot.py's "
                 "scores are NaN")
    base = _check_dir(a.ref)
    import numpy as np
    import torch

    from bench.attacks import LiRA, signals
    from bench.attacks.lira import shadow_signal
    from bench.eval import scoring

    s = attack_setup(a.shadows, a.threads)
    fx, fy, tx, ty, targets, shadows, ctx, f_pos, t_pos = s.fx, s.fy, s.tx, s.ty, s.targets, s.shadows, s.ctx, s.f_pos, s.t_pos
    cols = np.r_[f_pos, t_pos]
    x, y = torch.cat([fx, tx]), torch.cat([fy, ty])
    answers = np.r_[np.ones(len(f_pos), bool), np.zeros(len(t_pos), bool)]
    keep = shadows.keep[:, cols]
    models = shadows.models("cpu")
    plot = definitions(base / "plot.py")
    print(f"reference: {base} (plot.py, score.py); {a.shadows} shadow models; {len(f_pos)} forget, {len(t_pos)} test")

    logits = {f"shadow{m}": signals.logits_of(net, x) for m, net in enumerate(models)}
    logits.update({name: signals.logits_of(net, x) for name, net in targets.items()})
    ref_phi = reference_phi(base / "score.py", logits, y.numpy())
    ours_phi = {name: signals.logit_conf(z, y) for name, z in logits.items()}
    gap = max(float(np.max(np.abs(ref_phi[k] - ours_phi[k]))) for k in logits)
    print(f"phi (score.py vs signals.logit_conf) on {len(logits)} models x {len(y)} points: largest difference "
          f"{gap:.2e} (score.py reads float32 logits; ours float64)")
    sh_phi = shadow_signal(models, x, y)

    # plot.py keeps the first min-over-examples IN (and OUT) shadows of every example (rectangular
    # arrays); ours fits each example on all of its shadows. The pool (1,797 points) is odd, so a
    # complementary pair leaves one point out of both halves: a few examples have M/2 - 1 IN shadows,
    # and plot.py then drops one IN shadow of every other example. Compared twice: end to end on all
    # the targets, and the scoring alone on the targets with exactly M/2 IN and M/2 OUT shadows.
    half = keep.sum(0) == a.shadows // 2
    print(f"targets with {a.shadows // 2} IN shadows: {half.sum()} of {len(half)} (the others: "
          f"{sorted(set(keep.sum(0)[~half].tolist()))})")
    worst = 0.0
    for name, target in targets.items():
        for fixed in (True, False):
            for offline in (False, True):
                attack = LiRA(offline=offline, fixed_variance=fixed)
                prefix = "nll_" if offline else ""
                label = f"{name:9s} {'lira_offline (nll)' if offline else 'lira':18s} {'fixed' if fixed else 'per-example':11s}"
                ours = attack.evaluate(target, ctx)
                ref = reference_metrics(plot, keep, sh_phi, ours_phi[name], answers, fixed, offline)
                print(f"{label} all targets, ours/reference: "
                      + ", ".join(f"{k} {ours[prefix + k]:.6f}/{v:.6f}" for k, v in ref.items()))
                f, t = half[:len(f_pos)], half[len(f_pos):]
                sc, sc2 = attack.score_sets({"f": ours_phi[name][:len(f_pos)][f], "t": ours_phi[name][len(f_pos):][t]},
                                            {"f": sh_phi[:, :len(f_pos)][:, f], "t": sh_phi[:, len(f_pos):][:, t]},
                                            {"f": keep[:, :len(f_pos)][:, f], "t": keep[:, len(f_pos):][:, t]}, fixed)
                use = sc2 if offline else sc
                mine = scoring.score_metrics(use["f"], use["t"])
                ref = reference_metrics(plot, keep[:, half], sh_phi[:, half], ours_phi[name][half], answers[half],
                                        fixed, offline)
                worst = max([worst] + [abs(mine[k] - v) for k, v in ref.items()])
                print(f"{label} {half.sum()} balanced,  ours/reference: "
                      + ", ".join(f"{k} {mine[k]:.6f}/{v:.6f}" for k, v in ref.items()))
    print("verdict on the balanced targets:", "equal" if worst < 1e-9 else f"largest difference {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
