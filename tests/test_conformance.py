"""The conformance kit ``bench.testing``: every built-in plugin passes it, and it catches
broken plugins with a message naming the object and the check.

The broken plugins below are small but real (each one unlearns, loads or attacks), with one
defect each; a small loss-threshold attack is defined here too, as a third party would write one.
"""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F

import bench.testing as kit
from bench.datasets.digits import Digits
from bench.datasets.synthetic import Synthetic
from bench.methods import GradientAscent
from bench.core.plugins import DEFAULT_PLUGINS, get_registry
from bench.testing import check_attack, check_dataset, check_method, parametrize_with_checks

REGISTRY = get_registry()  # tests/conftest.py sets BENCH_PLUGINS="": built-ins only
BUILTIN_METHODS = [e.obj for e in REGISTRY.entries("method") if e.origin in DEFAULT_PLUGINS]
ALL_BUILTIN_DATASETS = [e.obj for e in REGISTRY.entries("dataset") if e.origin in DEFAULT_PLUGINS]


def _file_datasets() -> list:
    """The built-in datasets that read files, with small files written in their formats (CIFAR and
    SVHN through torchvision subclasses verifying the written files' checksums), and mnist1d smaller."""
    import atexit
    import importlib.util
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    from bench.datasets.vision import TorchvisionImages

    # tests/data_files.py, loaded by path here and not through the data_files fixture: the
    # parametrization below needs the files at collection time. Same module name as the fixture's.
    name = "bench_tests_data_files"
    fx = sys.modules.get(name)
    if fx is None:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("data_files.py"))
        fx = importlib.util.module_from_spec(spec)
        sys.modules[name] = fx
        spec.loader.exec_module(fx)

    root = Path(tempfile.mkdtemp(prefix="bench-conformance-data-"))
    atexit.register(shutil.rmtree, root, True)
    sums = {}
    for cls in ("MNIST", "FashionMNIST", "KMNIST"):
        fx.write_mnist(root, cls, n_train=40, n_test=10)
    sums["cifar10"] = fx.write_cifar(root, 10, per_batch=10, n_test=10)
    sums["cifar100"] = fx.write_cifar(root, 100, per_batch=20, n_test=10)
    sums["svhn"] = fx.write_svhn(root / "SVHN", n_train=30, n_test=10)
    fx.write_binary_npz(root / "purchase/purchase20.npz", n=100, num_classes=20)
    fx.write_binary_npz(root / "purchase/purchase100.npz", n=300, num_classes=100, onehot=False)
    fx.write_binary_npz(root / "texas/texas100.npz", n=300, features=6169, num_classes=100)
    fx.write_csv(root / "t.csv", label="target")
    fx.write_image_folder(root / "images", num_classes=3, per_class=6, size=8)
    out = []
    for obj in ALL_BUILTIN_DATASETS:
        opts = {"root": str(root)}
        if obj.name in sums:
            obj = TorchvisionImages(obj.name, obj.class_name, obj.num_classes, obj.input_shape, obj.description,
                                    obj.default_recipe, tv_class=fx.with_checksums(obj.tv_class(), sums[obj.name]))
        if obj.name in ("digits", "synthetic"):
            continue
        opts.update({"mnist1d": {"arg": "n=500"}, "csv": {"arg": "t.csv,label=target"},
                     "imagefolder": {"arg": "images"}}.get(obj.name, {}))
        out.append((obj, opts))
    return out


FILE_DATASETS = _file_datasets()
BUILTIN_DATASETS = [d for d in ALL_BUILTIN_DATASETS if d.name in ("digits", "synthetic")]
BUILTIN_ATTACKS = [e.obj for e in REGISTRY.entries("attack") if e.origin in DEFAULT_PLUGINS]

# Finding: GradientAscent._neggrad_plus calls next() on itertools.cycle([]) when the forget set
# is empty (StopIteration). Fix: drop the forget term when there are no forget batches. The
# xfail is strict: once fixed, this test fails until the entry is removed.
KNOWN_FAILURES: dict = {  # {"plugin id": {"check_name": "reason"}}
    "cf-k": {"check_forgets": "fine-tuning the last block on the retain set does not forget a digits class "
                              "(measured, docs/methods.md); the method is kept with its published defaults"},
    "ssd": {"check_forgets": "the digits alpha 15, measured on the harness's 256-256 MLP trained on all of digits, "
                             "selects no weight on the kit's 64-64 MLP of 500 points (I_f/I_D <= 8.9 there): "
                             "SSD's selection window is narrow and model-specific (docs/methods.md)"},
}


# -- the built-ins pass ---------------------------------------------------------------------


#: Plugins whose checks take seconds each (adversarial examples, LPs, shadow models): their
#: conformance checks run in the full suite only (marked slow); their own test modules keep quick tests.
SLOW_PLUGINS = frozenset({"l2ul(max_epochs=100)", "l2ul-adv(max_epochs=100)", "l2ul-naive", "prune", "ulira", "epsilon"})

#: L2UL's digits defaults allow 1000 epochs; on the kit's 64-64 MLP of 500 points the full method never
#: misclassifies the whole class (goal fraction 0.34 at the cap, measured), so each of its calls ran all
#: 1000 epochs (14 s, about 200 s for the two variants' checks). The contract checks do not need the
#: budget: they run with 100 epochs. The defaults are checked on the default setting elsewhere
#: (tests/test_all_methods.py, tests/test_l2ul.py).
CHEAPER = {"l2ul": {"max_epochs": 100}, "l2ul-adv": {"max_epochs": 100}}


def _slow_for(mark, slow_ids):
    """``mark`` (parametrize_with_checks's) with the cases of the plugins ``slow_ids`` marked slow."""
    cases = [pytest.param(*c.values, id=c.id, marks=[*c.marks, pytest.mark.slow]) if c.id.rsplit("-check_", 1)[0] in slow_ids
             else c for c in mark.args[1]]
    assert {c.id.rsplit("-check_", 1)[0] for c in mark.args[1]} >= slow_ids, "a slow plugin is not among the cases"
    return pytest.mark.parametrize(mark.args[0], cases)


@_slow_for(parametrize_with_checks(
    [*[(m, {"params": CHEAPER[m.name]}) if m.name in CHEAPER else m for m in BUILTIN_METHODS],
     (GradientAscent(), {"params": {"variant": "neggrad+"}}),
     *BUILTIN_DATASETS, (Synthetic(), {"arg": "n=300,features=6,classes=3"}), *FILE_DATASETS, *BUILTIN_ATTACKS],
    expected_failed_checks=KNOWN_FAILURES,
), SLOW_PLUGINS)
def test_builtin_plugins_conform(plugin, check):
    check(plugin)


def test_builtins_are_all_covered():
    assert {m.name for m in BUILTIN_METHODS} >= {"retrain", "ft", "ga"}
    assert {d.name for d in BUILTIN_DATASETS} >= {"digits", "synthetic"}
    covered = {d.name for d in BUILTIN_DATASETS} | {d.name for d, _ in FILE_DATASETS}
    assert covered == {d.name for d in ALL_BUILTIN_DATASETS}
    assert {a.name for a in BUILTIN_ATTACKS} >= {"loss", "confidence", "entropy", "mentropy", "svc", "lira", "lira_offline",
                                                "ulira", "rmia", "epsilon"}


# -- a small real attack, defined here (not a built-in) ---------------------------------------


class LossThresholdAUC:
    """Loss-threshold membership inference (Yeom et al., CSF 2018): the AUC of ``-loss`` as a
    score separating forget points (members) from an equal-sized, seeded sample of test points."""

    name = "loss-auc"
    description = "Loss-threshold membership inference AUC, forget vs test."

    def evaluate(self, model, ctx):
        from sklearn.metrics import roc_auc_score

        from bench.nn.training import predict_logits

        g = torch.Generator().manual_seed(ctx.seed)
        n = min(len(ctx.forget_y), len(ctx.test_y))
        pick = torch.randperm(len(ctx.test_y), generator=g)[:n]
        f_loss = F.cross_entropy(predict_logits(model, ctx.forget_x), ctx.forget_y, reduction="none")
        t_loss = F.cross_entropy(predict_logits(model, ctx.test_x[pick]), ctx.test_y[pick], reduction="none")
        scores = torch.cat([-f_loss, -t_loss]).numpy()
        labels = [1] * len(f_loss) + [0] * len(t_loss)
        return {"auc": float(roc_auc_score(labels, scores)), "forget_loss": float(f_loss.mean())}


def test_loss_threshold_attack_conforms_and_measures_membership():
    check_attack(LossThresholdAUC())
    setting = kit.toy_setting()
    out = LossThresholdAUC().evaluate(setting.original_copy(), kit._attack_ctx(setting))
    assert out["auc"] > 0.6, out  # the toy model was trained on the forget points: they leak


@parametrize_with_checks([LossThresholdAUC()])
def test_attack_checks_parametrized(plugin, check):
    check(plugin)


# -- broken plugins, one defect each ---------------------------------------------------------


class _GA:
    """Gradient ascent on the forget set, seeded from ctx.seed: the sound base of the broken methods."""

    description = "test method"
    requires = frozenset({"forget"})
    default_params = {"lr": 0.05, "epochs": 3}
    search_space: dict = {}

    def ascend(self, model, x, y, params, seed):
        from bench.nn.training import batches

        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=0.9)
        model.train()
        for _ in range(params["epochs"]):
            for idx in batches(len(y), 64, g, x.device):
                loss = -F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return model


class SoundGA(_GA):
    name = "sound-ga"

    def unlearn(self, model, request, params, ctx):
        return self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed)


class ReadsUndeclaredRetain(_GA):
    """Declares only the forget set, then repairs on the retain set it never asked for."""

    name = "reads-retain"

    def unlearn(self, model, request, params, ctx):
        from bench.nn.training import train_epochs

        self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed)
        return train_epochs(model, request.retain_x, request.retain_y, epochs=1, batch_size=64, optimizer="sgd",
                            lr=0.01, momentum=0.9, weight_decay=0.0, schedule="constant", seed=ctx.seed)


class UnseededNoise(_GA):
    """Adds weight noise from torch's global generator instead of one seeded by ctx.seed."""

    name = "unseeded-noise"

    def unlearn(self, model, request, params, ctx):
        self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1e-3 * torch.randn_like(p))
        return model


class ForgetsNothing(_GA):
    """A no-op baseline: returns the model as it is."""

    name = "no-op"
    requires = frozenset()
    default_params: dict = {}

    def unlearn(self, model, request, params, ctx):
        return model


class ReturnsStateDict(_GA):
    name = "returns-state-dict"

    def unlearn(self, model, request, params, ctx):
        return self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed).state_dict()


class ReportsBadMetrics(_GA):
    """Reports a metric under a harness metric's name, one MLflow refuses, or a text: each failed
    every trial in the harness and passed the kit (2026-12-06)."""

    name = "reports-bad-metrics"

    def __init__(self, metrics=None, resolved=None):
        self.metrics, self.resolved = metrics or {}, resolved or {}

    def unlearn(self, model, request, params, ctx):
        ctx.metrics.update(self.metrics)
        ctx.resolved.update(self.resolved)
        return self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed)


class MutatesRequest(_GA):
    """Standardises the forget inputs in place: the harness would then evaluate on altered data."""

    name = "mutates-request"

    def unlearn(self, model, request, params, ctx):
        x = request.forget_x
        x.sub_(x.mean()).div_(x.std() + 1e-8)
        return self.ascend(model, x, request.forget_y, params, ctx.seed)


class MovesBounds(_GA):
    """Clamps its ascent to the input box, widening the box's lower end in place."""

    name = "moves-bounds"

    def unlearn(self, model, request, params, ctx):
        request.input_bounds[0].sub_(1.0)
        return self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed)


class NamedLikeABuiltin(SoundGA):
    name = "ga"  # bench's own gradient ascent: every bench command refuses two methods named ga


class RetainAttack(LossThresholdAUC):
    name = "retain"  # reporting "acc" makes retain_acc, the harness's own

    def evaluate(self, model, ctx):
        return {"acc": super().evaluate(model, ctx)["auc"]}


class LeavesGradOff(_GA):
    """Switches autograd off for the whole process and never back."""

    name = "leaves-grad-off"

    def unlearn(self, model, request, params, ctx):
        out = self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed)
        torch.set_grad_enabled(False)
        return out


class OffByOneClasses:
    """Digits reporting num_classes=9: label 9 is out of range."""

    name = "digits-9"
    description = "digits with a wrong class count"

    def load(self, root, download, arg=None):
        splits = Digits().load(root, download, arg)
        splits.num_classes = 9
        return splits


class OverlappingDigits:
    """Digits whose test split is training rows (``how="overlap"``), or whose input bounds are
    reversed (``how="bounds"``): bench run refused both, the kit passed them (plugins audit)."""

    description = "digits that bench run refuses"

    def __init__(self, how):
        self.how, self.name = how, f"digits-{how}"

    def load(self, root, download, arg=None):
        from bench.core.contracts import Splits

        s = Digits().load(root, download, arg)
        if self.how == "overlap":
            return Splits(s.train_x, s.train_y, s.train_x[:300].clone(), s.train_y[:300].clone(), s.num_classes,
                          s.input_shape, dict(s.info))
        return Splits(s.train_x, s.train_y, s.test_x, s.test_y, s.num_classes, s.input_shape,
                      {**s.info, "input_bounds": [1.0, 0.0]})


class NaNAttack(LossThresholdAUC):
    name = "nan-attack"

    def evaluate(self, model, ctx):
        return {**super().evaluate(model, ctx), "ratio": float("nan")}


class UnseededAttack(LossThresholdAUC):
    """Subsamples the test set with torch's global generator before the seeded attack."""

    name = "unseeded-attack"

    def evaluate(self, model, ctx):
        pick = torch.randperm(len(ctx.test_y))[: 2 * len(ctx.forget_y)]
        return super().evaluate(model, dataclasses.replace(ctx, test_x=ctx.test_x[pick], test_y=ctx.test_y[pick]))


class ReturnsProbabilities(_GA):
    """Wraps the unlearned model in a final softmax: bench run fails every trial of it, and the kit
    passed it (found in review)."""

    name = "returns-probabilities"

    def unlearn(self, model, request, params, ctx):
        return torch.nn.Sequential(self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed),
                                   torch.nn.Softmax(dim=1))


class ReturnsNoisyModel(_GA):
    """Its model applies F.dropout in a forward hook, active in eval mode: bench run fails every trial
    of it; the kit failed it blaming a missing saved_header (found in review, 2026-12-07)."""

    name = "returns-noisy-model"

    def unlearn(self, model, request, params, ctx):
        out = self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed)
        out.register_forward_pre_hook(lambda module, args: (torch.nn.functional.dropout(args[0], 0.5),))
        return out


class KeepsItsFirstResult(_GA):
    """Keeps the first model it returns and returns it (or a copy) ever after: the kit passed it, and
    bench run scored seed 0's unlearned model as seed 1's, exit 0 (found in review, 2026-12-07)."""

    name = "keeps-its-first-result"

    def __init__(self, copies: bool) -> None:
        self.copies, self.kept = copies, []

    def unlearn(self, model, request, params, ctx):
        if not self.kept:
            self.kept.append(self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed))
        return copy.deepcopy(self.kept[0]) if self.copies else self.kept[0]


class SeededNoise(_GA):
    """Adds noise drawn from ctx.seed to the weights it is given and ignores the request: a sanity
    baseline, not a kept result."""

    name = "seeded-noise"

    def unlearn(self, model, request, params, ctx):
        g = torch.Generator().manual_seed(ctx.seed)
        with torch.no_grad():
            for weight in model.parameters():
                weight.add_(0.01 * torch.randn(weight.shape, generator=g))
        return model


_CONSTANT = torch.ones(10)


class SharedConstant(_GA):
    """Wraps its model with a module-level constant (never written) as a buffer: shared by every
    returned model, legitimately."""

    name = "shared-constant"

    def unlearn(self, model, request, params, ctx):
        class Scaled(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner
                self.register_buffer("scale", _CONSTANT)

            def forward(self, x):
                return self.inner(x) * self.scale

        return Scaled(self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed))


class PercentAttack(LossThresholdAUC):
    """Reports its AUC in percent: bench drops the attack's numbers in every trial; the kit passed it."""

    name = "percent-attack"

    def evaluate(self, model, ctx):
        return {"auc": 100 * super().evaluate(model, ctx)["auc"]}


class GradDigits:
    """Digits whose training inputs require grad: the original trained, the reference then failed in
    backward ("Trying to backward through the graph a second time"), blaming training."""

    name = "grad-digits"
    description = "digits with inputs that require grad"

    def load(self, root, download, arg=None):
        splits = Digits().load(root, download, arg)
        splits.train_x.requires_grad_(True)
        return splits


class TrainModeAttack(LossThresholdAUC):
    """Switches the model to train mode and runs it before the attack: batch-norm statistics move."""

    name = "train-mode-attack"

    def evaluate(self, model, ctx):
        model.train()
        model(ctx.forget_x)
        model.eval()
        return super().evaluate(model, ctx)


def _fails(check, obj, pattern: str, **options):
    """``check(obj)`` fails with a message naming the object and the check, and matching ``pattern``."""
    kind = "dataset" if hasattr(obj, "load") else "attack" if hasattr(obj, "evaluate") else "method"
    with pytest.raises(AssertionError) as info:
        check(obj, **options)
    message = str(info.value)
    assert message.startswith(f"{kind} '{obj.name}' failed {check.__name__}: "), message
    assert re.search(pattern, message), message
    return message


def test_sound_base_passes_everything():
    """The defects above are the only thing wrong with the broken methods."""
    check_method(SoundGA())


def test_catches_an_unpicklable_method():
    class LocalGA(SoundGA):  # a class defined in a function cannot be pickled for a Ray worker
        name = "local-ga"

    _fails(kit.check_method_attributes, LocalGA(), r"cannot be pickled")


class _Checked(SoundGA):
    """A check_params that takes lr up to 1 only."""

    def check_params(self, params):
        if not 0 < params["lr"] <= 1:
            raise ValueError(f"lr={params['lr']}: expected a number in (0, 1]")


def test_catches_defaults_and_search_spaces_its_own_check_params_refuses():
    """Both passed the kit, then every bench run (told the user to fix it with -p) or bench tune refused them."""
    from bench.core import space

    bad_default = type("BadDefault", (_Checked,), {"name": "bad-default", "default_params": {"lr": 5.0, "epochs": 3}})
    _fails(kit.check_params_and_search_space, bad_default(), r"its check_params refuses the parameters bench run would "
                                                            r"use .*lr=5.0: expected a number in \(0, 1\]")
    wide = type("Wide", (_Checked,), {"name": "wide", "search_space": {"lr": space.loguniform(1e-3, 5.0)}})
    _fails(kit.check_params_and_search_space, wide(), r"search_space\['lr'\] loguniform\(0.001, 5(.0)?\) samples "
                                                      r"lr=4.99.*narrow the domain")
    kit.check_params_and_search_space(type("Fine", (_Checked,), {"name": "fine", "search_space": {
        "lr": space.loguniform(1e-3, 1.0)}})())


def test_a_refused_default_is_said_to_be_the_plugins_bug():
    from bench.core.errors import BenchError
    from bench.core.method import check_params

    bad_default = type("BadDefault", (_Checked,), {"name": "bad-default", "default_params": {"lr": 5.0, "epochs": 3}})()
    with pytest.raises(BenchError, match=r"Fix it with -p bad-default.lr=VALUE; lr=5.0 is the method's own default, "
                                         r"which its check_params refuses: a bug of the plugin"):
        check_params("bad-default", bad_default, dict(bad_default.default_params))
    with pytest.raises(BenchError) as given:  # a value the user gave: no such note
        check_params("bad-default", bad_default, {"lr": 7.0, "epochs": 3})
    assert "own default" not in str(given.value)


def test_catches_undeclared_data_access():
    message = _fails(kit.check_data_access, ReadsUndeclaredRetain(), r"data-access violation")
    assert "request.retain_x" in message and "['forget']" in message
    # every other check that calls unlearn points at the same cause
    _fails(kit.check_returns_module, ReadsUndeclaredRetain(), r"looks like a data-access violation")


def test_catches_unseeded_randomness():
    _fails(kit.check_deterministic_under_seed, UnseededNoise(), r"different weights .*ctx\.seed")
    # with the global generator seeded as the harness seeds it, two calls agree: not a side effect
    kit.check_leaves_inputs_untouched(UnseededNoise())


def test_catches_a_method_that_forgets_nothing_unless_it_opts_out():
    _fails(kit.check_forgets, ForgetsNothing(), r"did not forget.*forget accuracy at 1\.000")
    check_method(ForgetsNothing(), forgets=False)


def test_catches_a_non_module_return():
    _fails(kit.check_returns_module, ReturnsStateDict(), r"returned OrderedDict .* torch\.nn\.Module")


class _Scaled(torch.nn.Module):
    """The model times a factor held as a plain attribute (not in the state dict)."""

    def __init__(self, model, factor):
        super().__init__()
        self.inner, self.factor = model, factor

    def forward(self, x):
        return self.inner(x) * self.factor


class WrapsModel(_GA):
    """Returns another architecture (the model inside a wrapper with a plain-attribute setting),
    with or without the hooks that rebuild it from a --save-models file."""

    name = "wraps-model"

    def __init__(self, header=None, loader=True):
        self.header, self.loader = header, loader

    def unlearn(self, model, request, params, ctx):
        return _Scaled(self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed), 2.0)

    def saved_header(self, model):
        return {"wraps-model": str(model.factor)} if self.header is None else self.header

    def __getattr__(self, name):
        if name == "load_saved" and self.__dict__.get("loader"):
            return self._load
        raise AttributeError(name)

    @staticmethod
    def _load(state, header, new_model):
        inner = new_model()
        inner.load_state_dict({k.removeprefix("inner."): v for k, v in state.items()})
        return _Scaled(inner, float(header.get("wraps-model", 1.0)))


def test_the_returned_model_must_load_back_from_its_saved_file():
    """--save-models kept files that no one could load (PRUNE's, SISA's until 2026-12-07): the kit
    saves the returned model as bench does and loads it back."""
    kit.check_returns_module(WrapsModel())  # saved_header + load_saved: the same logits
    _fails(kit.check_returns_module, WrapsModel(loader=False),
           r"not the plain architecture .*no load_saved: `bench run --save-models` keeps a file nobody can load")
    _fails(kit.check_returns_module, WrapsModel(header={}), r"other logits than the returned model .*saved_header must "
                                                           r"carry what the state dict does not")
    _fails(kit.check_returns_module, WrapsModel(header={"model": "x"}), r"saved_header sets the harness's own header "
                                                                       r"entries model")
    # every entry bench run writes is reserved in the kit too (it reserved four of seven; diff review)
    _fails(kit.check_returns_module, WrapsModel(header={"seed": "1"}), r"saved_header sets the harness's own header "
                                                                      r"entries seed")


def test_catches_reported_metrics_the_harness_refuses():
    kit.check_returns_module(ReportsBadMetrics({"patches": 3, "loss": float("nan")}))
    _fails(kit.check_returns_module, ReportsBadMetrics({"forget_acc": 0.0}), r"ctx\.metrics: .*'forget_acc'.*a metric bench itself measures")
    _fails(kit.check_returns_module, ReportsBadMetrics({"damp ascent!": 1.0}), r"ctx\.metrics: .*a metric name is up to 250")
    _fails(kit.check_returns_module, ReportsBadMetrics({"ok": "high"}), r"ctx\.metrics: .*not a number")
    # ctx.resolved: a parameter's value, as the harness takes it (a wrong key failed every trial)
    kit.check_returns_module(ReportsBadMetrics(resolved={"epochs": 3}))
    _fails(kit.check_returns_module, ReportsBadMetrics(resolved={"chunk": 3}), r"ctx\.resolved\['chunk'\], which is not one "
           r"of its parameters \(.*epochs.*\)")


def test_catches_mutated_request_tensors():
    _fails(kit.check_leaves_inputs_untouched, MutatesRequest(), r"modified request\.forget_x in place")
    kit.check_deterministic_under_seed(MutatesRequest())  # the kit hands every call fresh tensors


def test_catches_a_method_moving_the_input_bounds_in_place():
    """request.input_bounds' (lo, hi) tensors sit in a tuple: written in place, they passed the kit
    and bench failed the trial (found in review)."""
    message = _fails(kit.check_leaves_inputs_untouched, MovesBounds(), r"modified request\.input_bounds in place")
    assert "lo = request.input_bounds[0].clone()" in message, message


def test_catches_names_that_clash_with_bench_s_own():
    """The kit registered into an empty registry: a method named like a built-in passed it, and
    every bench command then refused the two; an attack named `retain` reporting `acc` passed it,
    and bench dropped its numbers in every trial (found in review)."""
    _fails(kit.check_method_attributes, NamedLikeABuiltin(), r"bench has a built-in method named 'ga' .*rename it")
    kit.check_method_attributes(get_registry().get("method", "ga"))  # the built-in itself passes
    _fails(kit.check_attack_returns_finite_floats, RetainAttack(),
           r"metric 'acc' makes 'retain_acc', a metric bench itself measures in every trial")
    kit.check_attack_returns_finite_floats(LossThresholdAUC())  # loss-auc_auc, loss-auc_forget_loss: its own


def test_catches_a_method_that_leaves_torch_settings_changed():
    _fails(kit.check_leaves_inputs_untouched, LeavesGradOff(), r"left torch's grad mode changed \(True -> False\)")
    assert torch.is_grad_enabled()  # set back by the check


class LeavesFloat64(_GA):
    """Leaves grad mode off and the default dtype float64 (the auditor's GlobalState)."""

    name = "leaves-float64"

    def unlearn(self, model, request, params, ctx):
        out = self.ascend(model, request.forget_x, request.forget_y, params, ctx.seed)
        torch.set_grad_enabled(False)
        torch.set_default_dtype(torch.float64)
        return out


def test_every_check_that_runs_the_method_catches_and_restores_a_leak_and_the_next_plugin_is_unharmed():
    """check_data_access and check_returns_module, run first, neither restored nor checked torch's
    settings: check_leaves_inputs_untouched then saw the leaked state as normal and passed the
    method, and the next method under parametrize_with_checks failed all 8 checks ("element 0 of
    tensors does not require grad"; an auditor's finding)."""
    for check in kit.checks_for(LeavesFloat64(), forgets=False):
        name = getattr(check, "func", check).__name__
        if name in ("check_method_attributes", "check_params_and_search_space"):
            check(LeavesFloat64())  # they never call unlearn
        else:
            with pytest.raises(AssertionError, match=r"left torch's (grad mode|default dtype) changed"):
                check(LeavesFloat64())
        assert torch.is_grad_enabled() and torch.get_default_dtype() == torch.float32, name
    kit.check_method(SoundGA())  # after it, in the same process: every check passes


def test_a_method_that_keeps_its_result_between_calls_is_caught():
    _fails(kit.check_leaves_inputs_untouched, KeepsItsFirstResult(copies=False), r"a second call returned the very "
                                                                                 r"model object the first call returned")
    _fails(kit.check_leaves_inputs_untouched, KeepsItsFirstResult(copies=True), r"a single-point request with another "
                                                                                r"seed .* returned the very weights")
    # no false alarm (found in review): a method blind to the request (seeded noise on the weights it is
    # given), and one whose returned model shares a module-level constant tensor
    kit.check_leaves_inputs_untouched(SeededNoise())
    kit.check_leaves_inputs_untouched(SharedConstant())


def test_catches_what_bench_run_refuses_although_the_kit_passed_it():
    _fails(kit.check_returns_module, ReturnsProbabilities(), r"gives probabilities .*drop the final softmax")
    _fails(kit.check_returns_module, ReturnsNoisyModel(), r"the returned model gives other logits for the same inputs "
                                                          r"in eval mode: randomness at evaluation")
    _fails(kit.check_attack_returns_finite_floats, PercentAttack(), r"metric 'auc' \(as 'percent-attack_auc'\) is \d+.*"
                                                                     r"rate in \[0, 1\] \(not a percentage\)")
    _fails(kit.check_load_returns_splits, GradDigits(), r"Splits\.train_x requires grad")
    _fails(kit.check_attack_leaves_inputs_untouched, TrainModeAttack(), r"evaluate changed the model it evaluates "
                                                                         r"\('1\.running_mean' differs")


def test_catches_labels_out_of_range():
    _fails(kit.check_labels_in_range, OffByOneClasses(), r"train_y holds \d+ label\(s\) outside \[0, 9\)")


def test_catches_broken_attacks():
    _fails(kit.check_attack_returns_finite_floats, NaNAttack(), r"metric 'ratio' is nan")
    _fails(kit.check_attack_deterministic_under_seed, UnseededAttack(), r"two evaluations with ctx\.seed=0")
    # a NaN is not a seeding fault (NaN != NaN blamed ctx.seed)
    _fails(kit.check_attack_deterministic_under_seed, NaNAttack(), r"metric\(s\) 'ratio' are not finite")


def test_check_method_stops_at_the_first_failure_or_collects_them():
    with pytest.raises(AssertionError, match=r"^method 'returns-state-dict' failed check_returns_module"):
        check_method(ReturnsStateDict())
    with pytest.raises(AssertionError) as info:
        check_method(ReturnsStateDict(), collect=True)
    failed = re.findall(r"^- method 'returns-state-dict' failed (check_\w+)", str(info.value), re.MULTILINE)
    assert failed == ["check_returns_module", "check_leaves_inputs_untouched", "check_deterministic_under_seed",
                      "check_forgets", "check_empty_request", "check_single_point_request"]
    with pytest.raises(AssertionError, match=r"^dataset 'digits-9' failed check_labels_in_range"):
        check_dataset(OffByOneClasses())


@pytest.mark.parametrize("how,pattern", [
    ("overlap", r"bench run refuses these splits: Dataset 'digits-overlap': 300 of 300 test rows are exact copies of "
                r"training rows"),
    ("bounds", r"bench run refuses these splits: Dataset 'digits-bounds': .*input_bounds"),
])
def test_the_kit_refuses_splits_bench_run_refuses(how, pattern):
    with pytest.raises(AssertionError, match=rf"^dataset 'digits-{how}' failed check_accepted_by_bench: {pattern}"):
        check_dataset(OverlappingDigits(how))


def test_messages_name_params_and_dataset_arguments():
    weak = r"^method 'ga' \(params lr=1e-09, stop_forget_acc=-1\) failed check_forgets: it did not forget"
    with pytest.raises(AssertionError, match=weak):
        kit.check_forgets(GradientAscent(), params={"lr": 1e-9, "stop_forget_acc": -1})
    bad_arg = r"^dataset 'digits-9:x' failed check_load_returns_splits: load\(.*BenchError"
    with pytest.raises(AssertionError, match=bad_arg):
        check_dataset(OffByOneClasses(), "x")


def test_parametrize_ids_options_and_expected_failures():
    mark = parametrize_with_checks(
        [GradientAscent(), (GradientAscent(), {"params": {"variant": "neggrad+"}}),
         (ForgetsNothing(), {"forgets": False}), (Synthetic(), {"arg": "n=200"})],
        expected_failed_checks={"ga(variant=neggrad+)": {"check_empty_request": "an expected failure, as a plugin would declare one"}},
    )
    assert mark.args[0] == ("plugin", "check")
    ids = [p.id for p in mark.args[1]]
    assert "ga-check_deterministic_under_seed" in ids
    assert "ga(variant=neggrad+)-check_empty_request" in ids
    assert "synthetic:n=200-check_labels_in_range" in ids
    assert "no-op-check_forgets" not in ids and "no-op-check_empty_request" in ids
    assert len(ids) == len(set(ids)) == 3 * len(kit.METHOD_CHECKS) - 1 + len(kit.DATASET_CHECKS)
    xfails = [p.id for p in mark.args[1] if p.marks]
    assert xfails == ["ga(variant=neggrad+)-check_empty_request"]
    with pytest.raises(ValueError, match="not among the objects' ids"):
        parametrize_with_checks([GradientAscent()], expected_failed_checks={"gaa": {"check_forgets": "x"}})
    with pytest.raises(TypeError, match="unknown option"):
        check_method(GradientAscent(), param={"lr": 1.0})


def test_every_check_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "testing.md").read_text()
    for check in [*kit.METHOD_CHECKS, *kit.DATASET_CHECKS, *kit.ATTACK_CHECKS]:
        assert f"`{check.__name__}`" in doc, check.__name__


def test_checks_of_request_kinds_a_method_does_not_take_are_left_out():
    from bench.core.method import Method
    from bench.testing import checks_for

    class ClassOnly(Method):
        name = "class-only"
        forget_kinds = frozenset({"class"})

        def unlearn(self, model, request, params, ctx):
            return model

    names = {getattr(c, "__name__", getattr(c, "func", c).__name__) for c in checks_for(ClassOnly())}
    assert "check_data_access" in names and "check_forgets" in names
    assert not names & {"check_empty_request", "check_single_point_request"}
    every = {getattr(c, "__name__", "") for c in checks_for(type("Any", (ClassOnly,), {"forget_kinds": frozenset({"class", "random", "indices"})})())}
    assert {"check_empty_request", "check_single_point_request"} <= every
