"""Shadow-model attacks: ``lira``, ``lira_offline``, ``ulira`` and ``rmia``
(Carlini et al. S&P 2022, Hayes et al. arXiv 2403.01218, Zarifzadeh et al. ICML 2024; below).

All use the ``--shadow-models`` shadow models (``ctx.shadows``, see ``bench.eval.shadows``): the
trial's architecture trained with the original's recipe on random halves of the pool (training
split followed by test split), in complementary pairs, each pool point IN about half of them.
Targets: members = the forget set D_f, non-members = the test set D_t (RMIA keeps a seeded
half of D_t as its population, see there). Queries use the identity view only (the reference's
horizontal-flip query augmentation does not fit digits or tabular data).

- ``lira`` (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022;
  ``tensorflow/privacy`` ``research/mi_lira_2021``): signal phi = log p_y - log sum_{c!=y} p_c
  (``score.py``). Per target, Gaussians fitted to the IN and OUT shadows' phi (mean = median, as
  ``plot.py``); score = log N(phi_obs; IN) - log N(phi_obs; OUT) (online). phi is exact
  (``signals.logit_conf``); ``score.py`` adds 1e-45 inside both logs, which caps phi at about 103.6
  (a choice; equal below that margin). Below 64 shadow
  models the variance is fixed, as the paper advises: one std shared by every target example of
  the three sets (forget, retain, test) and both Gaussians (the pooled spread of the shadows'
  scores around their per-example medians; ``plot.py``'s ``fix_variance`` also shares one std over
  all examples, ``np.std(dat_in)``, which gives the same ranking); from 64 on it is per example. ``LiRA(fixed_variance=...)``
  forces either. Also ``retain_auc`` (retain vs test, the training-privacy check). Choice: each
  example is fitted on all its IN/OUT shadows; ``plot.py`` keeps the smallest count of any example
  for every example (rectangular arrays), which differs where a pool point has fewer (an odd pool:
  each complementary pair leaves one point out); equal otherwise (``benchmarks/upstream_lira.py``).
- ``lira_offline`` (needs 4 shadow models: with 2, sigma_out is 0): OUT shadows only. Main score is the paper's one-sided test
  log Phi((phi_obs - mu_out) / sigma_out); ``nll_*`` metrics use ``plot.py``'s
  -log N(phi_obs; mu_out, sigma_out^2).
- ``ulira`` (Hayes et al., "Inexact Unlearning Needs More Careful Evaluations to Avoid a False
  Sense of Privacy", arXiv 2403.01218): every shadow m then runs the trial's own method, forgetting
  F_m = D_f ∩ D_m (the targets it trained on) and retaining D_m minus F_m. Per forget point x, the
  "unlearned" distribution is phi of the unlearned shadows that had x in D_m, the "never seen"
  one phi of the shadows that did not; score = log-likelihood ratio of the two Gaussians (fixed
  variance as above). Members = the trial's unlearned model on D_f; non-members = the trial's
  retrained reference (trained on D_r like the original, the harness's retrain-equivalent) on the
  same points, scored alike: AUC 0.5 means the unlearned model's scores on D_f are distributed as
  a retrained model's. A choice, and a fix of ours: the paper's targets are shadow-like models in
  which each x was unlearned or never seen; until 2026-12-06 the non-members here were the
  never-seen shadows, which had trained on the other forget points and on half the pool, so exact
  unlearning (the ``retrain`` method) read 0.55 on random:10%, 0.7 on random:50% and 0.99 on
  class:3 (found in review). Needs 4 shadow models (``min_shadow_models``). No official code
  exists; this is our reading of section 4 of the paper. Cost: one unlearning run per shadow model.
- ``rmia`` (Zarifzadeh et al., "Low-Cost High-Power Membership Inference Attacks", ICML 2024;
  ``privacytrustlab/ml_privacy_meter`` ``attacks.py`` ``run_rmia``), offline: Pr(x|theta) = p_y,
  Pr(x) = (1+a)/2 * mean over OUT shadows of p_y + (1-a)/2, r = Pr(x|theta)/Pr(x); score(x) =
  fraction of population points z with r_x / r_z > 1 (gamma = 1), by ``searchsorted``. The
  population Z is a seeded half of D_t (non-members of the target); the other half are the
  non-member targets. ``a`` is chosen on the grid 0, 0.1, ..., 1 by the AUC of attacking shadow 0
  with the shadows outside its pair as references, on a seeded 500 + 500 of its members and
  non-members, and logged as ``a``; with fewer than 4 shadows there is none outside pair 0 and
  ``a`` = 0.5 untuned (a choice: ``tune_offline_a`` uses one reference pair and every
  point). Run beside ml_privacy_meter (e384af8) by ``benchmarks/upstream_rmia.py``: equal on the
  same arrays (docs/reference-code.md); the population inside the shadows' pool (the reference's lies
  outside every model) and the odd pool's extra OUT shadow are choices.
"""

from __future__ import annotations

import numpy as np

from . import signals

#: Below this many shadows LiRA fixes the variance (Carlini et al., section VI.A).
FIXED_VARIANCE_BELOW = 64


def _need_shadows(name: str, ctx, minimum: int = 2):
    from bench.core.errors import BenchError

    from .population import require_sets

    require_sets(name, ctx)
    if ctx.shadows is None or ctx.forget_indices is None:
        raise BenchError(f"Attack '{name}' needs shadow models: run it through `bench run --attacks {name}` "
                         f"(which trains --shadow-models of them) or give the AttackContext a ShadowSet.")
    if len(ctx.shadows) < minimum:
        raise BenchError(f"Attack '{name}' needs at least {minimum} shadow models (got {len(ctx.shadows)}); "
                         f"raise --shadow-models.")
    return ctx.shadows


def target_positions(ctx, shadows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool positions of the forget, retain and test points."""
    f = np.asarray(ctx.forget_indices, dtype=np.int64)
    r = np.setdiff1d(np.arange(shadows.train_size), f)
    t = shadows.train_size + np.arange(len(ctx.test_y))
    return f, r, t


def shadow_signal(models, x, y, fn=signals.logit_conf) -> np.ndarray:
    """``[M, n]`` signal of every model on (x, y)."""
    return np.stack([fn(signals.logits_of(m, x), y) for m in models]) if len(y) else np.zeros((len(models), 0))


def gaussian_fit(values: np.ndarray, mask: np.ndarray, fixed_sd: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (median, std) of ``values[mask]``; ``fixed_sd``: that std for every column.
    Columns without any masked value fall back to the global median."""
    import warnings

    v = np.where(mask, values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mu = np.nanmedian(v, axis=0)
        sd = np.nanstd(v, axis=0)
    everything = values[mask]
    g_mu = float(np.median(everything)) if everything.size else 0.0
    g_sd = float(np.std(everything)) if everything.size else 1.0
    mu = np.where(np.isnan(mu), g_mu, mu)
    sd = np.full_like(mu, fixed_sd) if fixed_sd is not None else np.where(np.isnan(sd) | (sd == 0), g_sd, sd)
    return mu, np.maximum(sd, 1e-30)


def pooled_sd(values: np.ndarray, *masks: np.ndarray) -> float:
    """One global std: the spread of every masked score around its column's median, pooled over
    the given masks (IN and OUT for the online test). With one std shared by both Gaussians the
    likelihood ratio ranks exactly as with ``plot.py``'s ``fix_variance`` (any shared std gives
    the same ranking); its size only matters for the one-sided offline test."""
    res = []
    for mask in masks:
        mu, _ = gaussian_fit(values, mask)
        res.append((values - mu[None, :])[mask])
    r = np.concatenate(res) if res else np.zeros(0)
    return float(np.sqrt(np.mean(r**2))) if r.size else 1.0


def log_normal(x, mu, sd) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)


class LiRA:
    """Likelihood-ratio attack; see the module docstring."""

    needs = frozenset({"shadows"})

    def __init__(self, offline: bool = False, fixed_variance: bool | None = None) -> None:
        self.offline = offline
        self.fixed_variance = fixed_variance
        #: One OUT shadow per point (2 models) has no spread to fit: sigma_out would be 0.
        self.min_shadow_models = 4 if offline else 2
        self.name = "lira_offline" if offline else "lira"
        self.description = ("LiRA offline (Carlini et al. S&P'22): OUT shadow models only, forget vs test."
                            if offline else "LiRA online (Carlini et al. S&P'22): IN/OUT shadow models, forget vs test.")

    def __reduce__(self):
        return (LiRA, (self.offline, self.fixed_variance))

    def shared_sd(self, phi_sh: np.ndarray, keep: np.ndarray) -> float:
        """The fixed-variance std of ``phi_sh`` [M, n] over every target column at once (IN and OUT
        shadows online, OUT only offline), so that every target is scored with the same std."""
        return pooled_sd(phi_sh, ~keep) if self.offline else pooled_sd(phi_sh, keep, ~keep)

    def scores(self, phi_obs: np.ndarray, phi_sh: np.ndarray, keep: np.ndarray, shared: float | None,
               one_sided: bool = True):
        """Scores of the targets (columns); ``shared``: the one std of every Gaussian (fixed
        variance, from :meth:`shared_sd` over all the targets compared), ``None``: per example."""
        from scipy.stats import norm

        if self.offline:
            mu_out, sd_out = gaussian_fit(phi_sh, ~keep, shared)
            if one_sided:
                return norm.logcdf((phi_obs - mu_out) / sd_out)
            return -log_normal(phi_obs, mu_out, sd_out)
        mu_out, sd_out = gaussian_fit(phi_sh, ~keep, shared)
        mu_in, sd_in = gaussian_fit(phi_sh, keep, shared)
        return log_normal(phi_obs, mu_in, sd_in) - log_normal(phi_obs, mu_out, sd_out)

    def score_sets(self, obs: dict, sh: dict, keep: dict, fixed: bool) -> tuple[dict, dict]:
        """Scores of each set of targets (``obs[k]`` [n_k], ``sh[k]`` [M, n_k], ``keep[k]`` [M, n_k]);
        the second dict: ``plot.py``'s -log N for the offline attack (not for ``"r"``). With fixed
        variance one std serves every target of every set (``plot.py``'s ``fix_variance``: one
        ``np.std`` over all examples); a std per set would scale one set's scores against the
        other's and change their ranking."""
        shared = self.shared_sd(np.concatenate(list(sh.values()), axis=1),
                                np.concatenate(list(keep.values()), axis=1)) if fixed else None
        sc = {k: self.scores(obs[k], sh[k], keep[k], shared) for k in obs}
        sc2 = {k: self.scores(obs[k], sh[k], keep[k], shared, one_sided=False) for k in obs if k != "r"} if self.offline else {}
        return sc, sc2

    def evaluate(self, model, ctx) -> dict[str, float]:
        from bench.eval import scoring

        shadows = _need_shadows(self.name, ctx, self.min_shadow_models)
        fixed = len(shadows) < FIXED_VARIANCE_BELOW if self.fixed_variance is None else self.fixed_variance
        f_pos, r_pos, t_pos = target_positions(ctx, shadows)
        models = shadows.models(ctx.device)
        sets = {"f": (f_pos, ctx.forget_x, ctx.forget_y), "r": (r_pos, ctx.retain_x, ctx.retain_y),
                "t": (t_pos, ctx.test_x, ctx.test_y)}
        obs = {k: signals.logit_conf(signals.logits_of(model, x), y) for k, (_, x, y) in sets.items()}
        sh = {k: shadow_signal(models, x, y) for k, (_, x, y) in sets.items()}
        sc, sc2 = self.score_sets(obs, sh, {k: shadows.keep[:, pos] for k, (pos, _, _) in sets.items()}, fixed)
        out = scoring.score_metrics(sc["f"], sc["t"])
        if len(r_pos):
            out["retain_auc"] = scoring.score_metrics(sc["r"], sc["t"])["auc"]
        curves = {"forget vs test": scoring.roc(sc["f"], sc["t"])}
        if self.offline:
            out.update({f"nll_{k}": v for k, v in scoring.score_metrics(sc2["f"], sc2["t"]).items()})
            curves["forget vs test (plot.py -log N)"] = scoring.roc(sc2["f"], sc2["t"])
        ctx.artifacts[f"roc/{self.name}.png"] = scoring.RocPlot(curves, title=f"{self.name}, {len(shadows)} shadow models")
        return out


class ULiRA:
    """U-LiRA (Hayes et al. 2024); see the module docstring."""

    name = "ulira"
    description = ("U-LiRA (Hayes et al. 2024): per-example likelihood ratio of shadows unlearned with the same method "
                   "vs never-seen ones, the trial's model against the retrained reference on D_f.")
    needs = frozenset({"shadows", "unlearn", "reference"})
    #: With 2 models each forget point has one model per side and no spread to fit.
    min_shadow_models = 4

    def evaluate(self, model, ctx) -> dict[str, float]:
        from bench.eval import scoring
        from bench.core.errors import BenchError

        shadows = _need_shadows(self.name, ctx, self.min_shadow_models)
        if ctx.unlearn is None or ctx.reference is None:
            raise BenchError("Attack 'ulira' runs the trial's method on its shadow models and scores the retrained reference: "
                             "the AttackContext has no unlearn() or reference().")
        f_pos, _, _ = target_positions(ctx, shadows)
        keep = shadows.keep[:, f_pos]  # [M, n]: x in D_m
        M = len(shadows)
        unlearned_phi = np.full(keep.shape, np.nan)
        seen_phi = shadow_signal(shadows.models(ctx.device), ctx.forget_x, ctx.forget_y)
        for m in range(M):
            in_m = np.flatnonzero(shadows.keep[m])
            forget_m = f_pos[keep[m]]
            if len(forget_m) == 0:
                continue
            retain_m = np.setdiff1d(in_m, forget_m)
            u = ctx.unlearn(shadows.model(m, ctx.device), forget_m, retain_m, ctx.seed * 1000 + m)
            unlearned_phi[m] = signals.logit_conf(signals.logits_of(u, ctx.forget_x), ctx.forget_y)
        has_u = keep & ~np.isnan(unlearned_phi)
        both = np.where(has_u, np.nan_to_num(unlearned_phi), seen_phi)  # unlearned where x in D_m, else never seen
        shared = pooled_sd(both, has_u, ~keep)
        mu_u, sd_u = gaussian_fit(both, has_u, shared)
        mu_n, sd_n = gaussian_fit(seen_phi, ~keep, shared)

        def score(target) -> np.ndarray:  # per forget point: log N(phi; unlearned) - log N(phi; never seen)
            obs = signals.logit_conf(signals.logits_of(target, ctx.forget_x), ctx.forget_y)
            return log_normal(obs, mu_u, sd_u) - log_normal(obs, mu_n, sd_n)

        # the same score of the retrained reference, trained like the trial's original on D_r: exact
        # unlearning draws both sides from one distribution, whatever the forget set (a class, most
        # of the data); the never-seen shadows as non-members had trained on the other forget points
        # and on half the pool, and put exact unlearning at 0.99 on class:3 (found in review)
        members, nonmembers = score(model), score(ctx.reference())
        out = scoring.score_metrics(members, nonmembers)
        ctx.artifacts["roc/ulira.png"] = scoring.RocPlot(
            {"trial's model vs retrained reference on D_f": scoring.roc(members, nonmembers)},
            title=f"U-LiRA, {M} shadow models")
        return out


class RMIA:
    """Offline RMIA (Zarifzadeh et al. 2024); see the module docstring."""

    name = "rmia"
    description = "RMIA offline (Zarifzadeh et al. ICML'24): reference models + population data, forget vs test."
    needs = frozenset({"shadows"})
    GRID = tuple(round(0.1 * i, 1) for i in range(11))

    @staticmethod
    def score(p_target: np.ndarray, p_out_mean: np.ndarray, pz_target: np.ndarray, pz_out_mean: np.ndarray, a: float):
        """Fraction of population points z with r_x / r_z > 1."""
        def pr(mean_out):
            return (1 + a) / 2 * mean_out + (1 - a) / 2

        rx = p_target / np.maximum(pr(p_out_mean), 1e-30)
        rz = np.sort(pz_target / np.maximum(pr(pz_out_mean), 1e-30))
        return np.searchsorted(rz, rx, side="left") / max(len(rz), 1)

    @staticmethod
    def out_mean(conf: np.ndarray, keep: np.ndarray) -> np.ndarray:
        out = ~keep
        cnt = out.sum(0)
        s = np.where(out, conf, 0.0).sum(0)
        glob = conf[out].mean() if out.any() else 0.5
        return np.where(cnt > 0, s / np.maximum(cnt, 1), glob)

    def tune_a(self, conf_pool: np.ndarray, keep_pool: np.ndarray, z_idx: np.ndarray, rng) -> float:
        """The grid value of ``a`` maximising AUC when shadow 0 is the target and the shadows
        outside its pair (0, 1) are the references (ml_privacy_meter ``tune_offline_a`` tunes with one
        reference pair on every point: the same AUC per grid value from the same inputs)."""
        from bench.eval import scoring

        M = conf_pool.shape[0]
        if M < 4:
            return 0.5
        refs = np.arange(2, M)
        target, keep0 = conf_pool[0], keep_pool[0]
        z = z_idx[~keep0[z_idx]]
        cand = np.setdiff1d(np.arange(conf_pool.shape[1]), z_idx)
        mem, non = cand[keep0[cand]], cand[~keep0[cand]]
        mem = rng.choice(mem, size=min(500, len(mem)), replace=False)
        non = rng.choice(non, size=min(500, len(non)), replace=False)
        if len(z) == 0 or len(mem) == 0 or len(non) == 0:
            return 0.5
        means = self.out_mean(conf_pool[refs], keep_pool[refs])
        best, best_auc = 0.5, -1.0
        for a in self.GRID:
            s_m = self.score(target[mem], means[mem], target[z], means[z], a)
            s_n = self.score(target[non], means[non], target[z], means[z], a)
            auc = scoring.score_metrics(s_m, s_n)["auc"]
            if auc > best_auc + 1e-12:
                best, best_auc = a, auc
        return float(best)

    def evaluate(self, model, ctx) -> dict[str, float]:
        import torch

        from bench.eval import scoring

        shadows = _need_shadows(self.name, ctx)
        rng = np.random.default_rng(ctx.seed)
        f_pos, _, t_pos = target_positions(ctx, shadows)
        n_t = len(t_pos)
        perm = rng.permutation(n_t)
        tgt, pop = np.sort(perm[: n_t // 2]), np.sort(perm[n_t // 2 :])
        if len(tgt) == 0 or len(pop) == 0:
            from bench.core.errors import BenchError

            raise BenchError("Attack 'rmia' splits the test set into non-member targets and population: need >= 2 test points.")
        # p_y of every shadow on the whole pool (for the references' OUT means and for tuning a)
        tr_x = torch.cat([ctx.retain_x, ctx.forget_x])
        tr_y = torch.cat([ctx.retain_y, ctx.forget_y])
        _, r_pos, _ = target_positions(ctx, shadows)
        order = np.r_[r_pos, f_pos]
        models = shadows.models(ctx.device)
        conf_train = shadow_signal(models, tr_x, tr_y, signals.confidence)
        conf_test = shadow_signal(models, ctx.test_x, ctx.test_y, signals.confidence)
        P = shadows.keep.shape[1]
        conf_pool = np.zeros((len(models), P))
        conf_pool[:, order] = conf_train
        conf_pool[:, t_pos] = conf_test
        a = self.tune_a(conf_pool, shadows.keep, t_pos[pop], rng)
        means = self.out_mean(conf_pool, shadows.keep)
        p_f = signals.confidence(signals.logits_of(model, ctx.forget_x), ctx.forget_y)
        p_t = signals.confidence(signals.logits_of(model, ctx.test_x), ctx.test_y)
        z_p, z_m = p_t[pop], means[t_pos[pop]]
        s_f = self.score(p_f, means[f_pos], z_p, z_m, a)
        s_t = self.score(p_t[tgt], means[t_pos[tgt]], z_p, z_m, a)
        out = scoring.score_metrics(s_f, s_t)
        out["a"] = a
        ctx.artifacts["roc/rmia.png"] = scoring.RocPlot({"forget vs test": scoring.roc(s_f, s_t)},
                                                         title=f"RMIA offline, a={a}, {len(models)} references")
        return out
