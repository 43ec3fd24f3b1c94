"""The typed, frozen description of one trial, made once at planning and never changed.

A :class:`TrialSpec` crosses process boundaries (Ray Tune configs, MLflow params, the parent run's
``experiment.json``) in its recorded form, :meth:`TrialSpec.as_dict`, and comes back with
:meth:`TrialSpec.from_dict`; the recorded form is also what the trial key hashes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from bench.core.keys import trial_key


class FrozenDict(dict):
    """A dict that refuses changes (a spec's params, recipe, versions...); pickles as a dict would."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a trial spec is read-only: make a new one (TrialSpec.with_params)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self):
        return (FrozenDict, (dict(self),))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def freeze(value: Any) -> Any:
    """Dicts (nested) as :class:`FrozenDict`; other values unchanged (a sequence keeps its type,
    so the recorded params read exactly as the dataset or method gave them)."""
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    return value


def thaw(value: Any) -> Any:
    """The recorded form of a frozen value: plain dicts."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class OwnOriginal:
    """The method-trained original a trial starts from (a method with ``OwnTraining``, e.g. SISA):
    its reference-cache key and the training params it was trained with."""

    key: str
    train_params: Mapping[str, Any]


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a method with its params on one group (dataset, model, forget request, seed)."""

    trial_name: str
    method: str
    method_plugin: str
    params: Mapping[str, Any]
    data_access: frozenset[str]
    seed: int
    forget_seed: int
    dataset: str
    data: Mapping[str, Any]  # the dataset's Splits.info, shortened for the record (bench.run.plan.data_params)
    model: str
    forget: str
    forget_size: int
    group: str
    recipe: Mapping[str, Any]
    attacks: tuple[str, ...]
    shadow_models: int
    device: str
    threads: int
    versions: Mapping[str, str]
    plugins: Mapping[str, str]
    own_original: OwnOriginal | None = None
    original: Mapping[str, str] | None = None  # your own original (--original): {"path", "sha256"}; recorded only when given
    #: SHA-256 of what the trial measures on, so that ``--resume`` never keeps a result measured on
    #: other data behind the same specs (a rewritten dataset or indices file); both in the trial key.
    #: ``data_sha256``: the dataset's train and test tensors (the same for every seed of a setting);
    #: ``forget_sha256``: the forget set (every step's of a ``seq:`` request)
    data_sha256: str = ""
    forget_sha256: str = ""
    trial_key: str = field(default="", compare=False)
    #: the code the trial is measured with (``bench.run.trained_with.measured_with``): not in the
    #: trial key; ``--resume`` keeps a finished trial only when it recorded the same one
    measured_with: str = field(default="", compare=False)
    #: what the model spec built on this dataset (``bench.run.model_probe.architecture``): its class, parameter
    #: counts and a digest of its state-dict layout (``mlp`` resolves to 256-256 inside ``create``);
    #: recorded, not in the trial key (the model's code is in ``measured_with``)
    architecture: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: the plugin (entry-point name; ``bench.*`` for bench's own) that registered the trial's dataset,
    #: model and each attack (``{"dataset": ..., "model": ..., "attack.loss": ...}``; their versions
    #: are in ``plugins``): recorded as ``origins.*``, not in the trial key. Only the method's plugin
    #: was recorded until 2026-12-07 (plugins audit)
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: the reference cache keys of the models its gaps and divergences are measured against (``original``,
    #: ``retrain``; a ``seq:`` request's ``retrain`` is its last request's, ``request_T`` each one's):
    #: recorded as ``references.*``, not in the trial key; ``bench cache list`` lists the entries by key.
    #: A reader could not tell which cached model a trial was compared with (metrics audit, 2026-12-07)
    references: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("params", "data", "recipe", "versions", "plugins", "architecture", "origins", "references"):
            object.__setattr__(self, name, freeze(dict(getattr(self, name))))
        object.__setattr__(self, "data_access", frozenset(self.data_access))
        object.__setattr__(self, "attacks", tuple(self.attacks))
        if self.original is not None:
            object.__setattr__(self, "original", freeze(dict(self.original)))
        if self.own_original is not None:
            object.__setattr__(self, "own_original", OwnOriginal(self.own_original.key, freeze(dict(self.own_original.train_params))))
        object.__setattr__(self, "trial_key", trial_key(self._recorded()))

    def _recorded(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("own_original", "trial_key", "measured_with", "architecture") or (
                    f.name == "original" and self.original is None):
                continue
            value = getattr(self, f.name)
            if f.name in ("data_access", "attacks"):
                value = ",".join(sorted(value) if f.name == "data_access" else value)
            out[f.name] = thaw(value)
        return out

    def as_dict(self) -> dict[str, Any]:
        """The recorded form: JSON values, ``data_access`` and ``attacks`` comma-joined (as MLflow params)."""
        out = self._recorded()
        out["trial_key"] = self.trial_key
        if self.measured_with:
            out["measured_with"] = self.measured_with
        if self.architecture:
            out["architecture"] = thaw(self.architecture)
        if self.own_original is not None:
            out["method_train"] = {"key": self.own_original.key, "train_params": thaw(self.own_original.train_params)}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialSpec:
        names = {f.name for f in dataclasses.fields(cls)} - {"own_original", "trial_key", "original", "measured_with",
                                                             "architecture", "origins", "references"}
        kw = {k: d[k] for k in names}
        kw["origins"] = d.get("origins") or {}
        kw["references"] = d.get("references") or {}
        kw["original"] = d.get("original")
        kw["measured_with"] = d.get("measured_with", "")
        kw["architecture"] = d.get("architecture") or {}
        kw["data_access"] = frozenset(a for a in str(d["data_access"]).split(",") if a)
        kw["attacks"] = tuple(a for a in str(d["attacks"]).split(",") if a)
        own = d.get("method_train")
        return cls(**kw, own_original=OwnOriginal(own["key"], own["train_params"]) if own else None)

    def with_params(self, sample: Mapping[str, Any], trial_name: str | None = None) -> TrialSpec:
        """A new spec with ``sample`` over the params (``bench tune``), its own key and name."""
        return dataclasses.replace(self, params={**self.params, **sample}, trial_name=trial_name or self.trial_name)

    def uses(self, what: str) -> bool:
        """Whether the method declared ``what`` (``"forget"``, ``"retain"``, ``"recipe"``)."""
        return what in self.data_access


def spec_of(config: Mapping[str, Any], table: Sequence[TrialSpec] = ()) -> TrialSpec:
    """The trial spec of a Ray Tune config: ``{"trial": i}`` (the i-th spec of ``table``: a grid of
    trials, whose specs travel once, not in every trial's config), ``{"trial": recorded spec}``, or
    ``{"trial": recorded spec, "pick": {"number": N, "sample": {...}}}``: sample N of ``bench tune``,
    the recorded spec with the sampled hyperparameters."""
    base = config["trial"]
    spec = table[base] if isinstance(base, int) else TrialSpec.from_dict(base)
    pick = config.get("pick")
    if not pick:
        return spec
    return spec.with_params(pick["sample"], f"{spec.trial_name} sample {int(pick['number'])}")
