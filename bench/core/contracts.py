"""The contracts between the harness and its plugins.

Methods, datasets, models and attacks are plain objects with the attributes below; the
``Protocol`` classes document them and ``REQUIRED`` lists what ``register`` checks. This
module imports no torch, so plugins can be listed without loading any heavy library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

#: What a method may ask the harness for. The harness passes nothing else, and records it.
DATA_ACCESS = ("forget", "retain", "recipe")


class Method(Protocol):
    """An unlearning method: what ``register`` requires of it (``REQUIRED["method"]``).

    Attributes:
        name: unique name used on the command line (``--methods NAME``).
        description: one line shown by ``bench list methods``.
        requires: which of ``"forget"``, ``"retain"`` (the data) and ``"recipe"`` (the training
            recipe of the original model) the method uses. Data it does not declare is
            ``None`` in its request.
        default_params: hyperparameters and their defaults (JSON-serialisable values).
        search_space: Ray Tune search space for some of those, built from ``bench.core.space``
            (no ray import in plugins).

    The optional members (``requires_for``, ``check_params``, ``check_setting``, ``dataset_params``,
    ``continual``, ``continual_note``, ``forget_kinds``, ``trains``, ``prepare``) are documented, with their defaults, on the optional base class
    :class:`bench.core.method.Method` (``bench.Method``); the harness reads them through the
    accessors of that module, so an object without the base class works the same. A method that
    trains its own original implements :class:`OwnTraining` as well.
    """

    name: str
    description: str
    requires: frozenset[str]
    default_params: Mapping[str, Any]
    search_space: Mapping[str, Any]

    def unlearn(self, model: nn.Module, request: ForgetRequest, params: dict, ctx: MethodContext) -> nn.Module:
        """Return the unlearned model. ``model`` is the trial's own copy of the original."""


@runtime_checkable
class OwnTraining(Protocol):
    """The optional protocol of a method that trains its own original model (SISA's sharded
    ensemble); ``bench.run.method_training`` drives it.

    ``train(x, y, params, ctx) -> nn.Module`` trains the method's original on the whole training
    split (``x``, ``y`` on ``ctx.device``; ``ctx.new_model()`` gives the seeded fresh model and
    ``ctx.recipe`` the original's training recipe, always set here). ``save_trained(model) ->
    bytes`` returns that model as safetensors bytes (never pickle) with everything its ``unlearn``
    needs; ``load_trained(data, params, ctx) -> nn.Module`` reads it back. Optional:
    ``training_params(params) -> dict`` (the params that change what ``train`` produces; default
    all) and ``train_version`` (a string in the cache key: bump it when the training code
    changes). The harness trains it once per (dataset content, model, recipe, seed, training
    params) into the reference cache; each trial of the method then starts from it and reports
    ``train_seconds`` and ``method_original_*``.
    """

    def train(self, x: torch.Tensor, y: torch.Tensor, params: dict, ctx: MethodContext) -> nn.Module: ...

    def save_trained(self, model: nn.Module) -> bytes: ...

    def load_trained(self, data: bytes, params: dict, ctx: MethodContext) -> nn.Module: ...


class Dataset(Protocol):
    """A classification dataset.

    ``load(root, download, arg)`` returns :class:`Splits`. ``arg`` is the text after the first
    colon of the dataset spec (``synthetic:n=2000`` -> ``"n=2000"``), ``None`` without one.
    Optional ``default_recipe``: a dict of training-recipe defaults for this dataset.
    """

    name: str
    description: str

    def load(self, root: str, download: bool, arg: str | None) -> Splits: ...


class Model(Protocol):
    """A model architecture factory.

    ``create(num_classes, input_shape, arg)`` returns a fresh, randomly initialised
    ``nn.Module`` mapping a batch of shape ``(B, *input_shape)`` to logits ``(B, num_classes)``.
    A family that resolves many names (timm) also defines ``claims(name) -> bool`` and
    ``list_names(pattern) -> list[str]``. Optional ``default_recipe`` as for datasets.
    """

    name: str
    description: str

    def create(self, num_classes: int, input_shape: tuple[int, ...], arg: str | None) -> nn.Module: ...


class Attack(Protocol):
    """A membership-inference attack or privacy metric.

    ``evaluate(model, ctx) -> dict[str, float]``; the harness prefixes each key with the
    attack's name, except the keys listed in an optional ``unprefixed`` attribute (metric names
    shared across attacks, such as ``mia_efficacy``), which must not collide with the harness's.
    ``ctx`` is an :class:`AttackContext`; an optional ``needs`` attribute asks for shadow models,
    the method itself or the retrained reference (see there).
    """

    name: str
    description: str

    def evaluate(self, model: nn.Module, ctx: AttackContext) -> dict[str, float]: ...


#: Attributes and callables that ``register`` checks, per kind.
REQUIRED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind: (attributes, callables)
    "method": (("name", "description", "requires", "default_params", "search_space"), ("unlearn",)),
    "dataset": (("name", "description"), ("load",)),
    "model": (("name", "description"), ("create",)),
    "attack": (("name", "description"), ("evaluate",)),
}


@dataclass
class Splits:
    """A dataset in memory: train and test tensors, inputs float32, labels int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def train_size(self) -> int:
        return int(self.train_y.shape[0])


@dataclass(frozen=True)
class Setting:
    """What a method's ``check_setting`` sees of a trial setting at plan time, after the data are
    loaded and before anything is trained (``bench.core.method.Method.check_setting``).

    ``dataset``, ``model`` and ``forget`` are the specs as given (``digits``, ``mlp:64``,
    ``random:10%``); ``train_size`` the training split's rows, ``forget_size`` the forget request's
    points (for a ``seq:`` request, its largest step); ``network`` a freshly initialised instance of
    the model on this dataset (the architecture, not the original's weights: read its layers and
    parameter counts, never change it).
    """

    dataset: str
    model: str
    forget: str
    train_size: int
    forget_size: int
    num_classes: int
    input_shape: tuple[int, ...]
    network: Any


@dataclass
class ForgetRequest:
    """What a method receives about the forget request; undeclared data is ``None``.

    ``kind`` is ``"random"``, ``"class"`` or ``"indices"``; ``forget_class`` is set for
    class requests. Inputs and labels are tensors on the trial's device. ``forget_indices``
    (always set) are the positions of the forget points in the dataset's training split, sorted
    (a numpy int64 array; the points themselves only when ``"forget"`` was declared): methods that
    keep per-point state, such as SISA's shards, need them. ``input_bounds`` is the valid input
    domain ``(lo, hi)``, two tensors broadcastable to one input (the dataset's
    ``Splits.info["input_bounds"]``, else the per-feature min/max of the training split).
    """

    num_classes: int
    kind: str
    forget_indices: Any = None
    forget_x: torch.Tensor | None = None
    forget_y: torch.Tensor | None = None
    retain_x: torch.Tensor | None = None
    retain_y: torch.Tensor | None = None
    forget_class: int | None = None
    input_bounds: Any = None


class Rendered(Protocol):
    """An artifact drawn where the trial is recorded rather than where it runs: a picklable object
    whose ``render()`` returns the file's ``str`` or ``bytes``. The harness calls it in the process
    that writes the trial's MLflow run (the driver under Ray), so a drawing library loads once per
    run instead of once in every trial worker: ``bench.eval.scoring.RocPlot`` (matplotlib's import
    alone cost a 1-CPU trial 0.9 s, measured). Keep what it holds small: it travels with the
    trial's result. A ``render()`` that raises is recorded as ``<name>.error.txt`` instead."""

    def render(self) -> str | bytes: ...


def render(artifact: Rendered) -> str | bytes:
    """``artifact.render()``, refused (TypeError) when it is no ``str`` or ``bytes``."""
    from bench.core.errors import no_exit

    with no_exit(f"{type(artifact).__name__}.render()"):  # sys.exit there ended a local run, exit 0
        content = artifact.render()
    if not isinstance(content, (str, bytes)):
        raise TypeError(f"{type(artifact).__name__}.render() returned {type(content).__name__}, not str or bytes")
    return content


@dataclass
class MethodContext:
    """Everything else a method may use.

    ``seed`` seeds the method's randomness; ``device`` is the trial's torch device;
    ``recipe`` (a :class:`bench.core.recipe.Recipe`) is set only when the method declared
    ``"recipe"``; ``new_model()`` returns a freshly initialised model of the same
    architecture on the device (seeded by ``seed``). ``report(model)``, when not ``None``
    (``bench tune --scheduler asha``), evaluates an intermediate model and hands the result to
    the scheduler, which may stop the trial there: iterative methods call it once per epoch.

    ``metrics`` and ``artifacts`` start empty; a method may add its own measurements
    (``ctx.metrics["patches"] = 3.0``: floats, logged with the trial's metrics under these names,
    which must not collide with the harness's) and files (``ctx.artifacts["patches.json"] = text``:
    ``str``, ``bytes`` or a :class:`Rendered`, logged as MLflow artifacts of the trial's run).
    ``resolved`` starts empty too: for a parameter whose value means "automatic" (Fisher's
    ``chunk_size=0``), the value the method used (``ctx.resolved["chunk_size"] = 256``: a number,
    a string or a bool), recorded as the trial's param ``resolved.chunk_size`` beside the
    ``params.chunk_size`` it was given; keys must be the method's parameters.
    """

    seed: int
    device: str
    new_model: Callable[[], nn.Module]
    recipe: Any = None
    report: Callable[[nn.Module], None] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str | bytes | Rendered] = field(default_factory=dict)
    resolved: dict[str, int | float | str | bool] = field(default_factory=dict)


@dataclass
class AttackContext:
    """What an attack receives besides the model it attacks (the trial's unlearned model).

    Always set: forget, retain and test tensors on the trial's device, ``num_classes``, ``seed``
    (seed every random choice from it) and ``device``; ``forget_indices``, the forget points'
    positions in the training split (numpy int64, sorted; ``None`` outside the harness);
    ``forgotten_classes``, on a class request the classes forgotten (on a ``seq:`` request every
    one so far), empty on a request of points (an attack that follows a class-wise protocol, such
    as SalUn's, leaves them out of the test set).

    ``artifacts`` starts empty; an attack may add files (``ctx.artifacts["roc/loss.png"] =
    bench.eval.scoring.RocPlot(...)``: ``str``, ``bytes`` or a :class:`Rendered`), logged as MLflow
    artifacts of the trial's run.

    An attack that needs more declares it in an optional ``needs`` attribute (a subset of
    ``bench.eval.shadows.NEEDS``); the harness fills the matching fields, which stay ``None`` otherwise:

    - ``"shadows"`` -> ``shadows``: a :class:`bench.eval.shadows.ShadowSet` of ``--shadow-models`` models
      of the trial's architecture trained with the original's recipe on random halves of the pool
      (the training split followed by the test split), in complementary pairs; cached.
    - ``"retrain_shadows"`` -> ``retrain_shadows``: as many models retrained on D_r with other seeds.
    - ``"unlearn"`` -> ``unlearn(model, forget_pos, retain_pos, seed) -> nn.Module``: runs the
      trial's method (same parameters) on ``model`` with the pool points at ``forget_pos`` as the
      forget set and those at ``retain_pos`` as the retain set (pool positions as above); and
      ``original()``, a fresh copy of the trial's original model.
    - ``"reference"`` -> ``reference()``: a fresh copy of the retrained reference of the trial.
    """

    forget_x: torch.Tensor
    forget_y: torch.Tensor
    retain_x: torch.Tensor
    retain_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    seed: int
    device: str
    forget_indices: Any = None
    artifacts: dict[str, str | bytes | Rendered] = field(default_factory=dict)
    shadows: Any = None
    retrain_shadows: Any = None
    unlearn: Callable[..., nn.Module] | None = None
    original: Callable[[], nn.Module] | None = None
    reference: Callable[[], nn.Module] | None = None
    forgotten_classes: tuple[int, ...] = ()
