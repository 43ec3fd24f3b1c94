"""Our ``rmia`` attack beside the RMIA reference code.

The reference is privacytrustlab/ml_privacy_meter (Zarifzadeh et al., "Low-Cost High-Power
Membership Inference Attacks", ICML 2024; commit e384af8), imported from a checkout given on the
command line, never copied:

- ``get_signals.py`` ``get_softmax``: p_y of a model on labelled points (float32), compared with our
  ``signals.confidence`` (float64 from the logits).
- ``attacks.py`` ``run_rmia`` (offline RMIA: the OUT reference models' mean of p_y, the offline
  ``a``, the population ratio count with gamma = 1) and ``tune_offline_a`` (``a`` on 0, 0.1, ..., 1
  by the AUC of attacking the target's paired model with one reference pair), and ``audit.py``
  ``compute_attack_results`` (sklearn AUC, TPR at FPR <= 1%, <= 0.1%).

Setup: digits, the harness's default MLP (256-256) and digits recipe, forget ``random:10%`` (forget
seed 0, 144 points); ``--shadows`` shadow models (default 8) trained by ``bench.eval.shadows`` on
random halves of the pool (training split then test split), the same models for both. Attacked:
the original (the forget set are members) and the model retrained without the forget set (they are
not). Targets as our ``rmia`` scores them: the forget set and the seeded half of the test set that
is not the population (``ctx.seed`` = 0).

Adapters (no reference code is changed): the reference indexes models by column and skips the
target's pair, so its ``all_signals`` get the target in column 0, a copy of it in column 1 (the
"pair", never read) and the shadows after; ``num_reference_models`` = M/2, so that its
"top M/2 of the masked signals" keeps exactly the OUT shadows of a target with M/2 of them. Its
population is assumed OUT of every model; ours lies in the pool (each population point IN about
half of the shadows), so the shadows' IN signals on the population are given as 0, which its rule
then leaves out (same arrays, same numbers). ``transformers`` (when not installed) and the
reference's ``dataset`` package (its data loaders, which pull pandas and torchvision) are stubbed:
``get_softmax`` is called on our tensors and never reaches them.

Printed: the signal gap, the scores per target and the metrics (same arrays, same ``a``); ``a``
tuned by both rules; then the design differences: ``a`` by the reference's rule (one reference pair,
every candidate point) and the reference's population rule (a population outside every shadow,
emulated by a second shadow set trained without the population half of the test split). About 12 s
on one thread.

Usage: python benchmarks/upstream_rmia.py --ref DIR [--shadows 8] [--threads 1]
  DIR: a checkout of privacytrustlab/ml_privacy_meter
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import io
import sys
import types
from pathlib import Path

from _upstream import attack_setup, checkout

FILES = {"attacks.py": "def run_rmia(", "get_signals.py": "def get_softmax(", "audit.py": "def compute_attack_results("}


def _check_dir(root: str | None) -> Path:
    return checkout(root, FILES, "privacytrustlab/ml_privacy_meter", flag="--ref")


@contextlib.contextmanager
def reference(root: Path):
    """The reference's ``attacks``, ``get_signals`` and ``audit`` modules, imported from ``root``
    (first on sys.path); ``transformers`` stubbed when not installed and the reference's ``dataset``
    package always (neither is reached here). On exit whatever came from ``root`` or a stub leaves
    sys.modules."""
    before = set(sys.modules)
    tops = {p.stem for p in root.iterdir()}
    stubs = {}
    if importlib.util.find_spec("transformers") is None:
        tf = stubs["transformers"] = types.ModuleType("transformers")
        tf.PreTrainedModel = type("PreTrainedModel", (), {})  # isinstance(model, ...) is False: the plain path
        tf.AutoTokenizer = type("AutoTokenizer", (), {})
    pkg = stubs["dataset"] = types.ModuleType("dataset")
    pkg.__path__ = []
    utils = stubs["dataset.utils"] = types.ModuleType("dataset.utils")

    def load_dataset_subsets(*args, **kwargs):  # get_model_signals' loader: not used (get_softmax on our tensors)
        raise NotImplementedError("stub: upstream_rmia.py calls get_softmax on its own tensors")

    utils.load_dataset_subsets = load_dataset_subsets
    pkg.utils = utils
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    sys.path.insert(0, str(root))
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # tqdm / matplotlib chatter on import
            mods = [importlib.import_module(n) for n in ("attacks", "get_signals", "audit")]
        yield types.SimpleNamespace(attacks=mods[0], signals=mods[1], audit=mods[2])
    finally:
        sys.path.remove(str(root))
        for key in set(sys.modules) - before:
            if key.split(".")[0] in tops or key in stubs:
                del sys.modules[key]
        for key, mod in saved.items():
            if mod is not None:
                sys.modules[key] = mod


class _Log:
    """The ``logger`` that ``tune_offline_a`` writes its per-``a`` AUCs to."""

    def __init__(self):
        self.lines = []

    def info(self, msg, *args):
        self.lines.append(msg % args if args else msg)


def ref_columns(target, shadows, zero_in=None):
    """The reference's [points, models] layout: the target in column 0, its copy as the skipped pair
    in column 1, the shadows after; with ``zero_in`` ([M, points]) the shadows' IN signals are 0 (the
    population adapter, see the module docstring)."""
    import numpy as np

    sh = np.asarray(shadows, dtype=np.float64)
    if zero_in is not None:
        sh = np.where(zero_in, 0.0, sh)
    return np.column_stack([target, target, sh.T])


def ref_members(target_keep, shadow_keep):
    """Memberships in the same layout (the pair column the complement of the target's)."""
    import numpy as np

    t = np.asarray(target_keep, dtype=bool)
    return np.column_stack([t, ~t, np.asarray(shadow_keep, dtype=bool).T])


def ref_metrics(ref, scores, members) -> dict:
    import numpy as np

    r = ref.audit.compute_attack_results(np.asarray(scores), np.asarray(members, dtype=bool))
    return {"auc": r["auc"], "tpr_at_1fpr": r["one_fpr"], "tpr_at_0.1fpr": r["one_tenth_fpr"]}


def fmt(ours: dict, ref: dict) -> str:
    return ", ".join(f"{k} {ours[k]:.6f}/{ref[k]:.6f}" for k in ref)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", help="checkout of privacytrustlab/ml_privacy_meter")
    ap.add_argument("--shadows", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.shadows < 4 or a.shadows % 2:
        ap.error("--shadows must be even and at least 4: rmia tunes a on shadow 0 with the shadows outside its pair")
    base = _check_dir(a.ref)
    import numpy as np
    import torch

    from bench.attacks import RMIA, signals
    from bench.attacks.lira import shadow_signal
    from bench.eval import scoring
    from bench.eval.shadows import shadow_set

    M, seed = a.shadows, 0
    s = attack_setup(M, a.threads)
    d, fx, fy, tx, ty, recipe, model_obj, arg = s.d, s.fx, s.fy, s.tx, s.ty, s.recipe, s.model_obj, s.arg
    targets, shadows, ctx, f_pos, t_pos = s.targets, s.shadows, s.ctx, s.f_pos, s.t_pos
    keep, P = shadows.keep, shadows.keep.shape[1]
    models = shadows.models("cpu")
    pool_x, pool_y = torch.cat([d.train_x, d.test_x]), torch.cat([d.train_y, d.test_y])
    conf_pool = shadow_signal(models, pool_x, pool_y, signals.confidence)  # [M, P], p_y
    # our rmia's draws (RMIA.evaluate, RMIA.tune_a): the test half kept as non-member targets and the
    # population, then 500 members and 500 non-members of shadow 0 for tuning a
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(t_pos))
    tgt, pop = np.sort(perm[: len(t_pos) // 2]), np.sort(perm[len(t_pos) // 2:])
    rng_tune = np.random.default_rng(seed)
    rng_tune.permutation(len(t_pos))
    state = rng_tune.bit_generator.state
    z_idx = t_pos[pop]
    z_tune = z_idx[~keep[0, z_idx]]
    cand = np.setdiff1d(np.arange(P), z_idx)
    mem = rng_tune.choice(cand[keep[0, cand]], size=min(500, int(keep[0, cand].sum())), replace=False)
    non = rng_tune.choice(cand[~keep[0, cand]], size=min(500, int((~keep[0, cand]).sum())), replace=False)
    n_out = (~keep).sum(0)
    print(f"reference: {base} (attacks.py, get_signals.py, audit.py); {M} shadow models; pool {P} points; "
          f"{len(f_pos)} forget, {len(tgt)} test targets, {len(pop)} population; pool points with more than {M // 2} "
          f"OUT shadows (the odd pool): {np.flatnonzero(n_out != M // 2).tolist()}")

    with reference(base) as ref:
        # 1. the signal
        gap, f32 = 0.0, {}
        for name, net in [*targets.items(), *((f"shadow{m}", net) for m, net in enumerate(models))]:
            with contextlib.redirect_stderr(io.StringIO()):  # tqdm's bar
                f32[name] = ref.signals.get_softmax(net, pool_x, pool_y, 5000, "cpu")[:, 0].astype(np.float64)
            ours = signals.confidence(signals.logits_of(net, pool_x), pool_y)
            gap = max(gap, float(np.max(np.abs(f32[name] - ours))))
        conf32 = np.stack([f32[f"shadow{m}"] for m in range(M)])
        print(f"p_y (get_softmax vs signals.confidence) on {M + 2} models x {P} points: largest difference {gap:.1e} "
              "(get_softmax float32, ours float64); both sides below get our float64 signals")

        # 2. a, tuned: shadow 0 attacked, same targets and population. The reference's tune_offline_a
        # attacks the target's pair with num_reference_models = 1, i.e. shadows 2 and 3 as references:
        # ours with shadows 0-3 only has exactly those. Target index 1 makes shadow 0 the attacked pair.
        rows = np.r_[mem, non]
        log = _Log()
        sig_t = conf_pool[:, rows].T
        mem_t = keep[:, rows].T
        pop_t = np.where(keep[:, z_tune], 0.0, conf_pool[:, z_tune]).T  # shadows' IN signals 0 (adapter)
        pop_t[:, 0] = conf_pool[0, z_tune]  # shadow 0 is OUT on these anyway
        a_ref = round(float(ref.attacks.tune_offline_a(1, sig_t, pop_t, mem_t, log)[0]), 1)  # its np.arange grid
        # its AUC per a, as tune_offline_a computes it (its log keeps 4 decimals)
        ref_auc = [ref_metrics(ref, ref.attacks.run_rmia(0, sig_t, pop_t, mem_t, 1, g), mem_t[:, 0])["auc"]
                   for g in np.arange(0, 1.1, 0.1)]
        rmia = RMIA()
        rng4 = np.random.default_rng()
        rng4.bit_generator.state = state
        a_ours4 = rmia.tune_a(conf_pool[:4], keep[:4], z_idx, rng4)
        means4 = rmia.out_mean(conf_pool[2:4], keep[2:4])
        p0 = conf_pool[0]
        ours_auc4 = [scoring.score_metrics(rmia.score(p0[mem], means4[mem], p0[z_tune], means4[z_tune], g),
                                           rmia.score(p0[non], means4[non], p0[z_tune], means4[z_tune], g))["auc"]
                     for g in rmia.GRID]
        worst_tune = max(abs(x - y) for x, y in zip(ref_auc, ours_auc4))
        print(f"a tuned on shadow 0 ({len(mem)} members, {len(non)} non-members, {len(z_tune)} population), "
              f"references shadows 2-3: ours {a_ours4} / reference {a_ref}; AUC per a on 0..1 largest difference "
              f"{worst_tune:.1e}")
        rng8 = np.random.default_rng()
        rng8.bit_generator.state = state
        a_ours = rmia.tune_a(conf_pool, keep, z_idx, rng8)
        print(f"a tuned as shipped (references: the {M - 2} shadows outside pair 0): {a_ours}")

        # 3. the scores on the target models, same arrays and the same a
        means = rmia.out_mean(conf_pool, keep)
        cols = np.r_[f_pos, t_pos[tgt]]
        bal_x = n_out[cols] == M // 2
        bal_z = n_out[z_idx] == M // 2
        worst = worst_tune
        results = {}
        for name, target in targets.items():
            ours_metrics = rmia.evaluate(target, ctx)
            p_f = signals.confidence(signals.logits_of(target, fx), fy)
            p_t = signals.confidence(signals.logits_of(target, tx), ty)
            p_x, p_z = np.r_[p_f, p_t[tgt]], p_t[pop]
            s_ours = rmia.score(p_x, means[cols], p_z, means[z_idx], a_ours)
            nf = len(f_pos)
            mine = scoring.score_metrics(s_ours[:nf], s_ours[nf:])
            assert abs(mine["auc"] - ours_metrics["auc"]) < 1e-12 and ours_metrics["a"] == a_ours, "script != evaluate"
            labels = np.r_[np.ones(nf, bool), np.zeros(len(tgt), bool)]  # the attack's question: forget = member
            sig, memb = ref_columns(p_x, conf_pool[:, cols]), ref_members(np.zeros(len(cols), bool), keep[:, cols])
            pop_sig = ref_columns(p_z, conf_pool[:, z_idx], zero_in=keep[:, z_idx])
            s_ref = ref.attacks.run_rmia(0, sig, pop_sig, memb, M // 2, a_ours)
            # balanced: targets and population with exactly M/2 OUT shadows
            s_bal = rmia.score(p_x[bal_x], means[cols][bal_x], p_z[bal_z], means[z_idx][bal_z], a_ours)
            s_ref_bal = ref.attacks.run_rmia(0, sig[bal_x], pop_sig[bal_z], memb[bal_x], M // 2, a_ours)
            diff_all = np.abs(s_ours - s_ref)
            diff_bal = float(np.max(np.abs(s_bal - s_ref_bal)))
            lab_b = labels[bal_x]
            mb = scoring.score_metrics(s_bal[lab_b], s_bal[~lab_b])
            rb = ref_metrics(ref, s_ref_bal, lab_b)
            ra = ref_metrics(ref, s_ref, labels)
            worst = max([worst, diff_bal] + [abs(mb[k] - v) for k, v in rb.items()])
            print(f"{name:9s} scores, {len(cols)} targets: {int((diff_all > 0).sum())} differ (largest "
                  f"{diff_all.max():.1e}); {bal_x.sum()} targets x {bal_z.sum()} population with {M // 2} OUT: "
                  f"largest difference {diff_bal:.1e}")
            print(f"{name:9s} all targets, ours/reference: {fmt(mine, ra)}")
            print(f"{name:9s} balanced,    ours/reference: {fmt(mb, rb)}")
            # end to end on get_softmax's float32 signals (target and shadows), balanced targets
            t_off = d.train_size
            p32_x = np.r_[f32[name][f_pos], f32[name][t_off + tgt]]
            p32_z = f32[name][t_off + pop]
            s32 = ref.attacks.run_rmia(0, ref_columns(p32_x, conf32[:, cols])[bal_x],
                                       ref_columns(p32_z, conf32[:, z_idx], zero_in=keep[:, z_idx])[bal_z],
                                       memb[bal_x], M // 2, a_ours)
            r32 = ref_metrics(ref, s32, lab_b)
            print(f"{name:9s} balanced, reference on its float32 signals: {int((s32 != s_ref_bal).sum())} scores of "
                  f"{bal_x.sum()} differ from ours; ours/reference: {fmt(mb, r32)}")
            results[name] = dict(p_f=p_f, p_t=p_t, mine=mine, p_x=p_x, p_z=p_z)

        # 4. design differences: a by the reference's rule; its population rule
        every = np.setdiff1d(np.arange(P), z_idx)
        a_ref_every = round(float(ref.attacks.tune_offline_a(1, conf_pool[:, every].T, pop_t, keep[:, every].T,
                                                               _Log())[0]), 1)
        print(f"a by the reference's rule (one reference pair, all {len(every)} candidate points): {a_ref_every}; "
              f"as shipped {a_ours}")
        for name, r in results.items():
            s_g = rmia.score(r["p_x"], means[cols], r["p_z"], means[z_idx], a_ref_every)
            m_g = scoring.score_metrics(s_g[:len(f_pos)], s_g[len(f_pos):])
            print(f"{name:9s} as shipped but a={a_ref_every}: AUC {m_g['auc']:.6f}, TPR@1% {m_g['tpr_at_1fpr']:.4f} "
                  f"(a={a_ours}: {r['mine']['auc']:.6f}, {r['mine']['tpr_at_1fpr']:.4f})")
        # the spread between two shadow sets of the same (shipped) design: shadow seed 1
        shadows1 = shadow_set("shadows", M, model_obj, arg, d, recipe, seed=1)
        ctx1 = dataclasses.replace(ctx, shadows=shadows1)
        for name, target in targets.items():
            m1 = rmia.evaluate(target, ctx1)
            print(f"{name:9s} as shipped with another shadow set (shadow seed 1): a={m1['a']}, AUC {m1['auc']:.6f}, "
                  f"TPR@1% {m1['tpr_at_1fpr']:.4f}")
        held = dataclasses.replace(d, test_x=d.test_x[tgt], test_y=d.test_y[tgt])  # population out of the pool
        shadows2 = shadow_set("shadows", M, model_obj, arg, held, recipe, seed=0)
        conf2 = shadow_signal(shadows2.models("cpu"), torch.cat([held.train_x, held.test_x]),
                              torch.cat([held.train_y, held.test_y]), signals.confidence)
        zc2 = shadow_signal(shadows2.models("cpu"), tx[pop], ty[pop], signals.confidence)  # [M, pop], OUT for all
        cols2 = np.r_[f_pos, d.train_size + np.arange(len(tgt))]
        means2 = rmia.out_mean(conf2, shadows2.keep)[cols2]
        for name, r in results.items():
            p_x, p_z = np.r_[r["p_f"], r["p_t"][tgt]], r["p_t"][pop]
            nf = len(r["p_f"])
            row = {}
            for g in sorted({a_ours, a_ref_every}):
                s_paper = rmia.score(p_x, means2, p_z, zc2.mean(0), g)  # Pr(z): every reference model
                s_top = ref.attacks.run_rmia(0, ref_columns(p_x, conf2[:, cols2]), ref_columns(p_z, zc2),
                                             ref_members(np.zeros(len(p_x), bool), shadows2.keep[:, cols2]), M // 2, g)
                m1 = scoring.score_metrics(s_paper[:nf], s_paper[nf:])
                m2 = scoring.score_metrics(s_top[:nf], s_top[nf:])
                row[g] = (m1, m2, float(np.mean(s_paper == 1.0)), float(np.mean(s_top == 1.0)))
            print(f"{name:9s} population outside every shadow (second shadow set), Pr(z) from the mean of all {M} / "
                  f"the reference's top {M // 2}: " + "; ".join(
                      f"a={g}: AUC {m1['auc']:.6f}/{m2['auc']:.6f}, TPR@1% {m1['tpr_at_1fpr']:.4f}/"
                      f"{m2['tpr_at_1fpr']:.4f}, targets scored 1 {t1:.3f}/{t2:.3f}"
                      for g, (m1, m2, t1, t2) in row.items())
                + f"  (as shipped: AUC {r['mine']['auc']:.6f}, TPR@1% {r['mine']['tpr_at_1fpr']:.4f})")
    same_a = a_ours4 == a_ref
    print("verdict:", ("equal" if worst < 1e-9 and same_a else f"largest difference {worst:.2e}, a {a_ours4}/{a_ref}")
          + " on the balanced targets and population (scores, AUC, TPR) and the same a from the same inputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
