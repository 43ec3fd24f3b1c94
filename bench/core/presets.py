"""Protocols as presets: TOML experiment files shipped inside the package (``bench/core/preset_files/``).

A preset is an ordinary experiment file (its keys are those of ``bench run``, see
:mod:`bench.core.options`) plus a ``[preset]`` table that says where the protocol comes from and
what it costs::

    [preset]
    title = "..."          # one line: the paper and the setting
    source = "..."         # the citation (paper, table, upstream code)
    runs = "..."           # what it runs: methods x seeds on dataset / model / forget request
    cost = "..."           # expected cost, and on what hardware
    compare = "..."        # optional: the published table to compare with (`bench compare --published`)
    deviations = ["..."]   # where it differs from the source, and why

``bench run --preset NAME`` (or ``--config preset:NAME``) reads the experiment keys as the TOML
layer (defaults < preset < command line); ``bench presets`` lists them. Nothing here imports
anything heavy: the files are read with ``tomllib`` through ``importlib.resources``, so a wheel
install finds them as package data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.core.errors import BenchError

PREFIX = "preset:"
META = "preset"
REQUIRED = ("title", "source", "runs", "cost", "deviations")
FOLDER = "preset_files"


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    source: str
    runs: str
    cost: str
    deviations: tuple[str, ...]
    compare: str | None
    options: dict[str, Any]  # the experiment keys, as a TOML experiment file has them
    text: str  # the file as shipped

    def short_source(self) -> str:
        return self.source.split(";")[0].strip()


def _files():
    from importlib.resources import files

    return files("bench.core").joinpath(FOLDER)


def names() -> list[str]:
    """The shipped presets, sorted."""
    return sorted(p.name[: -len(".toml")] for p in _files().iterdir() if p.name.endswith(".toml"))


def is_reference(value: Any) -> bool:
    """``preset:NAME`` given where an experiment file is expected (``--config``)."""
    return isinstance(value, str) and value.startswith(PREFIX)


def load(name: str) -> Preset:
    """The preset ``name``; a BenchError naming the shipped ones when it is unknown."""
    import tomllib

    name = name.strip()
    known = names()
    if name not in known:
        hint = ""
        close = [n for n in known if name and (name in n or n in name)]
        if close:
            hint = f" Did you mean {', '.join(close)}?"
        raise BenchError(f"Unknown preset '{name}'.{hint} Presets: {', '.join(known)} (see `bench presets`).")
    text = _files().joinpath(f"{name}.toml").read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # a packaging fault, not the user's: say which file
        raise BenchError(f"The shipped preset '{name}' is not valid TOML: {exc}.") from None
    meta = data.pop(META, None)
    if not isinstance(meta, dict) or any(k not in meta for k in REQUIRED):
        raise BenchError(f"The shipped preset '{name}' lacks its [{META}] table ({', '.join(REQUIRED)}).")
    extra = set(meta) - set(REQUIRED) - {"compare"}
    if extra:  # an experiment key written after [preset] lands in that table: refuse, never ignore it
        raise BenchError(f"The shipped preset '{name}' has unknown keys in [{META}]: {', '.join(sorted(extra))} "
                         f"(experiment keys go before the [{META}] table).")
    deviations = meta["deviations"]
    return Preset(name=name, title=str(meta["title"]), source=str(meta["source"]), runs=str(meta["runs"]),
                  cost=str(meta["cost"]), deviations=tuple(str(d) for d in deviations), compare=meta.get("compare"),
                  options=data, text=text)


def load_all() -> list[Preset]:
    return [load(n) for n in names()]
