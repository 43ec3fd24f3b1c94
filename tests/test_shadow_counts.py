"""Shadow-model attacks at small shadow counts: U-LiRA scores members and non-members against fits
of the same size (perfect unlearning gives AUC 0.5, not below it), and the attacks that cannot
fit their Gaussians on 2 models (lira_offline, ulira) or need N >= 3 per side (epsilon) are
refused at validation, before any model is trained."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import bench
from bench.attacks.lira import ULiRA, leave_one_out
from bench.core.errors import BenchError
from bench.eval.shadows import pair_keep


class _Table(torch.nn.Module):
    """A model whose logit-scaled confidence on pool point i (input [i]) is phi[i]: logits [phi, 0], label 0."""

    def __init__(self, phi):
        super().__init__()
        self.register_buffer("phi", torch.as_tensor(phi, dtype=torch.float64))

    def forward(self, x):
        p = self.phi[x[:, 0].long()]
        return torch.stack([p, torch.zeros_like(p)], 1).float()


class _Shadows:
    def __init__(self, states, keep, train_size):
        self.states, self.keep, self.train_size = states, keep, train_size

    def __len__(self):
        return len(self.states)

    def model(self, m, device):
        return _Table(self.states[m])

    def models(self, device):
        return [_Table(s) for s in self.states]


def _ulira_auc_of_perfect_unlearning(M: int, seed: int, pool: int = 1500, n_forget: int = 300) -> float:
    """Every model memorises its training points (phi = difficulty + 2, else difficulty, noise 1);
    the trial's model and every unlearned shadow have never seen the forget points (exact
    unlearning), so the attack cannot tell them from the never-seen shadows: AUC 0.5 expected."""
    rng = np.random.default_rng(seed)
    train_size = int(pool * 0.8)
    difficulty = rng.normal(0, 3, pool)
    keep = pair_keep(M, pool, 1)
    states = [np.where(keep[m], difficulty + 2, difficulty) + rng.normal(0, 1, pool) for m in range(M)]
    f_pos = np.sort(rng.choice(train_size, n_forget, replace=False))

    def unlearn(model, forget_m, retain_m, s):
        phi = model.phi.numpy().copy()
        phi[forget_m] = difficulty[forget_m] + np.random.default_rng(s).normal(0, 1, len(forget_m))
        return _Table(phi)

    test = np.arange(train_size, pool)
    ctx = SimpleNamespace(
        forget_x=torch.as_tensor(f_pos, dtype=torch.float32)[:, None], forget_y=torch.zeros(n_forget, dtype=torch.long),
        test_x=torch.as_tensor(test, dtype=torch.float32)[:, None], test_y=torch.zeros(len(test), dtype=torch.long),
        retain_x=torch.zeros(0, 1), retain_y=torch.zeros(0, dtype=torch.long), num_classes=2, device="cpu",
        shadows=_Shadows(states, keep, train_size), forget_indices=f_pos, unlearn=unlearn, seed=seed, artifacts={})
    target = _Table(difficulty + rng.normal(0, 1, pool))
    return ULiRA().evaluate(target, ctx)["auc"]


@pytest.mark.parametrize("M", [4, 8])
def test_ulira_gives_perfect_unlearning_an_auc_of_one_half(M):
    # before the members' fit left one never-seen shadow out as the non-members' does: 0.448 at 4, 0.478 at 8
    aucs = [_ulira_auc_of_perfect_unlearning(M, seed) for seed in range(16)]
    assert abs(np.mean(aucs) - 0.5) < 0.015, (np.mean(aucs), aucs)


def test_leave_one_out_drops_one_model_per_column_uniformly_and_reproducibly():
    mask = np.array([[1, 0, 1, 0], [1, 0, 1, 1], [0, 0, 1, 0]], dtype=bool)
    out = leave_one_out(mask, np.random.default_rng(3))
    assert ((mask.sum(0) - out.sum(0)) == [1, 0, 1, 1]).all() and not (out & ~mask).any()
    assert (out == leave_one_out(mask, np.random.default_rng(3))).all()
    col = np.ones((4, 4000), dtype=bool)  # each of 4 rows dropped about a quarter of the time
    dropped = (~leave_one_out(col, np.random.default_rng(0))).sum(1) / 4000
    assert np.allclose(dropped, 0.25, atol=0.03), dropped


def _validate(tmp_path, attacks, shadow_models):
    from bench.core.options import RunOptions
    from bench.core.plugins import get_registry
    from bench.run.validate import validate_options

    opts = RunOptions(executor="local", attacks=attacks, shadow_models=shadow_models,
                      tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", cache_dir=str(tmp_path / "cache"))
    return validate_options(get_registry(), opts)


@pytest.mark.parametrize("attack", ["lira_offline", "ulira", "epsilon"])
def test_attacks_that_cannot_run_on_two_shadow_models_are_refused_before_work(attack, tmp_path):
    # epsilon failed every trial at its end (after references, shadows and methods); lira_offline's
    # sigma_out was 0 (scores saturated: AUC 0.74 for 0.93); ulira fell back to a global median
    with pytest.raises(BenchError, match=rf"--shadow-models 2 is too few for attack '{attack}': it needs at least 4"):
        _validate(tmp_path, attack, 2)
    _validate(tmp_path, attack, 4)
    _validate(tmp_path, "lira,rmia,loss", 2)  # these run on one complementary pair


def test_the_cli_refuses_too_few_shadow_models_in_one_line(tmp_path, invoke_bench):
    res = invoke_bench("run", "-m", "ga", "--attacks", "lira*", "--shadow-models", "2", "--dry-run",
                       "--cache-dir", str(tmp_path / "c"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path)
    code, out = res.returncode, res.stdout + res.stderr
    assert code == 2 and "Traceback" not in out, out
    assert "too few for attack 'lira_offline'" in out and "Raise --shadow-models to 4 or more" in out, out


class _NeedsSix:
    name = "needs-six"
    description = "an attack that needs six shadow models"
    needs = frozenset({"shadows"})
    min_shadow_models = 6

    def evaluate(self, model, ctx):
        return {"auc": 0.5}


class _Plugin:
    def __init__(self, attack):
        self.attack = attack

    @bench.hookimpl
    def register_attacks(self, register):
        register(self.attack)


def test_a_plugins_min_shadow_models_is_checked_and_enforced(tmp_path, plugged):
    plugin = _Plugin(_NeedsSix())
    with plugged(plugin):
        with pytest.raises(BenchError, match=r"too few for attack 'needs-six': it needs at least 6 shadow models \(its min_shadow_models\)\. Raise --shadow-models to 6"):
            _validate(tmp_path, "needs-six", 4)
        _validate(tmp_path, "needs-six", 6)
    broken = _NeedsSix()
    broken.min_shadow_models = "6"
    plugin = _Plugin(broken)
    with plugged(plugin):
        with pytest.raises(BenchError, match=r"declares min_shadow_models='6': expected an integer >= 2"):
            _validate(tmp_path, "needs-six", 8)


def test_the_kit_checks_min_shadow_models():
    from bench.testing import check_attack

    attack = _NeedsSix()
    with pytest.raises(AssertionError, match=r"min_shadow_models=6: expected an integer from 2 to 4"):
        check_attack(attack)
