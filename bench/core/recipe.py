"""The training recipe of the original model (and of every retrained reference).

Precedence, lowest first: ``Recipe`` defaults < the dataset plugin's ``default_recipe`` <
the model plugin's ``default_recipe`` < the TOML experiment file's ``[recipe]`` < ``--recipe
KEY=VALUE`` on the command line. The resolved recipe is part of every reference's cache key
and is recorded with every trial.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from bench.core.errors import BenchError
from bench.core.params import fits_float32, number_from_text

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant", "step")
AUGMENTS = ("none", "flip", "crop", "crop-flip")  # training-time augmentation on the device: bench/nn/augment.py


@dataclass(frozen=True)
class Recipe:
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 30
    batch_size: int = 64
    schedule: str = "cosine"  # per-step cosine to 0; "step": x0.1 at 50% and 75% of the epochs (make_schedule)
    augment: str = "none"  # "crop-flip": random crop of the 4-pixel-padded image + horizontal flip (CIFAR)

    def as_dict(self) -> dict[str, Any]:
        """The recipe as recorded and keyed (every field: records and cache keys stay comparable
        across versions; a record without ``momentum`` under Adam split pooled runs and failed
        reproductions of older ones, found in review)."""
        return asdict(self)

    def shown(self) -> dict[str, Any]:
        """The recipe as printed: ``momentum`` only with SGD (Adam and AdamW never read it; the
        neurips23 plan printed ``optimizer=adam, momentum=0.9``)."""
        out = asdict(self)
        if self.optimizer != "sgd":
            del out["momentum"]
        return out


FIELD_TYPES = {f.name: f.type for f in fields(Recipe)}
#: The numeric recipe values' bounds, and an example of each (for the messages).
RULES = {"lr": "> 0", "epochs": ">= 1", "batch_size": ">= 1", "weight_decay": ">= 0", "momentum": "in [0, 1)"}
EXAMPLES = {"lr": "0.05", "epochs": "20", "batch_size": "64", "weight_decay": "5e-4", "momentum": "0.9"}


def _coerce(key: str, value: Any) -> Any:
    kind = {"str": str, "float": float, "int": int}[FIELD_TYPES[key]]
    if isinstance(value, bool):  # a TOML true is an int to Python: epochs = true is not 1 epoch
        raise BenchError(f"Bad recipe value {key}={value!r}: expected {kind.__name__}, not a boolean.")
    try:
        if kind in (int, float) and isinstance(value, str):
            value = number_from_text(value, kind is int)
        out = kind(value)
    except (TypeError, ValueError):
        raise BenchError(f"Bad recipe value {key}={value!r}: expected {kind.__name__}.") from None
    if kind is int and isinstance(value, float) and value != int(value):
        raise BenchError(f"Bad recipe value {key}={value!r}: expected an integer.")
    return out


def build_recipe(*layers: Mapping[str, Any], sources: tuple[str, ...] = ()) -> Recipe:
    """Merge override layers (lowest precedence first) onto the defaults and validate. ``sources``
    names the layers that are not the user's (a plugin's ``default_recipe``), by position: a bad
    key or value there is said as that plugin's, not as a ``--recipe`` the user never gave."""
    values: dict[str, Any] = Recipe().as_dict()
    set_in: dict[str, int] = {}  # key -> the highest layer that sets it
    for n, layer in enumerate(layers):
        source = sources[n] if n < len(sources) else ""
        for key, value in (layer or {}).items():
            set_in[key] = n
            if key not in FIELD_TYPES:
                raise BenchError(
                    f"Unknown recipe key '{key}' in {source}; valid keys: {', '.join(FIELD_TYPES)}. Fix the plugin's "
                    f"default_recipe." if source else
                    f"Unknown recipe key '{key}'. Valid keys: {', '.join(FIELD_TYPES)} (e.g. --recipe epochs=20)."
                )
            try:
                values[key] = _coerce(key, value)
            except BenchError as exc:
                raise _fault_of(source, str(exc)) from None
    r = Recipe(**values)

    def source_of(key: str) -> str:  # a plugin's default_recipe that set it: its fault, not the user's (plugins audit)
        n = set_in.get(key)
        return sources[n] if n is not None and n < len(sources) and sources[n] else ""

    def refuse(key: str, text: str) -> BenchError:
        return _fault_of(source_of(key), text)

    if r.optimizer not in OPTIMIZERS:
        raise refuse("optimizer", f"Unknown optimizer '{r.optimizer}' in the recipe; expected one of {', '.join(OPTIMIZERS)}.")
    if r.optimizer != "sgd" and set_in.get("momentum", -1) >= set_in.get("optimizer", len(layers)):
        raise BenchError(f"Recipe momentum={r.momentum} has no effect with optimizer={r.optimizer} (momentum is SGD's; "
                         f"{r.optimizer} uses betas (0.9, 0.999)): drop momentum from the recipe, or use optimizer=sgd.")
    if r.schedule not in SCHEDULES:
        raise refuse("schedule", f"Unknown schedule '{r.schedule}' in the recipe; expected one of {', '.join(SCHEDULES)}.")
    if r.augment not in AUGMENTS:
        raise refuse("augment", f"Unknown augment '{r.augment}' in the recipe; expected one of {', '.join(AUGMENTS)}.")
    limits = (("lr", r.lr > 0), ("epochs", r.epochs >= 1), ("batch_size", r.batch_size >= 1),
              ("weight_decay", r.weight_decay >= 0), ("momentum", 0 <= r.momentum < 1))
    for key, ok in limits:
        value = getattr(r, key)
        if not ok or not math.isfinite(value) or not fits_float32(value):
            need = (f"Bad recipe value {key}={value!r}: {key} must be a finite number {RULES[key]} within float32's "
                    f"range (need {', '.join(f'{k} {v}' for k, v in RULES.items())})")
            raise refuse(key, f"{need}." if source_of(key) else f"{need}; e.g. --recipe {key}={EXAMPLES[key]}.")
    return r


def _fault_of(source: str, text: str) -> BenchError:
    """``text`` as the fault of ``source`` (a plugin's default_recipe) when there is one, else the user's."""
    return BenchError(f"{text} (in {source}: fix the plugin's default_recipe)" if source else text)


def parse_assignments(items: list[str] | tuple[str, ...], what: str) -> dict[str, str]:
    """``["epochs=20", "lr=0.1"]`` -> ``{"epochs": "20", "lr": "0.1"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"Bad {what} '{item}': expected KEY=VALUE.")
        key, value = key.strip(), value.strip()
        if key in out and out[key] != value:  # the last won without a word (-p ga.lr=0.1 -p ga.lr=0.2 ran 0.2)
            raise BenchError(f"{what} sets {key} twice ({out[key]!r}, {value!r}); give it once.")
        out[key] = value
    return out
