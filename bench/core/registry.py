"""The registry of methods, datasets, models and attacks contributed by plugins.

``Registry.register_callback(kind, origin)`` is the ``register`` function handed to a
plugin's hook: it validates the object against ``bench.core.contracts.REQUIRED``, refuses a
duplicate name (naming both plugins) and records the origin. Lookups accept commas and
fnmatch wildcards and answer unknown names with the closest matches.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from bench.core.contracts import DATA_ACCESS, REQUIRED
from bench.core.errors import BenchError, PluginError

KINDS = ("method", "dataset", "model", "attack")


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any
    origin: str  # the plugin that registered it

    @property
    def builtin(self) -> bool:
        """Registered by bench itself (its plugins' modules are ``bench.*``)."""
        return self.origin.startswith("bench.")

    @property
    def description(self) -> str:
        return str(getattr(self.obj, "description", "")).strip().splitlines()[0] if getattr(self.obj, "description", "") else ""


def _validate(kind: str, obj: Any, origin: str) -> str:
    if isinstance(obj, type):  # register(MyMethod): its methods then lack self (a TypeError inside bench run)
        raise PluginError(f"Plugin '{origin}' registered the class {obj.__name__} as a {kind}; register an instance: "
                          f"register({obj.__name__}()).")
    attrs, callables = REQUIRED[kind]
    missing = [a for a in attrs + callables if not hasattr(obj, a)]
    if missing:
        shown = repr(obj.name) if isinstance(getattr(obj, "name", None), str) else type(obj).__name__
        hint = " (an empty search_space = {} when it has none, or subclass bench.Method)" if "search_space" in missing else ""
        raise PluginError(
            f"Plugin '{origin}' registered a {kind} {shown} without {', '.join(missing)}{hint}. "
            f"A {kind} needs the attributes {', '.join(attrs)} and the callables {', '.join(callables)} "
            f"(see bench.core.contracts)."
        )
    not_callable = [c for c in callables if not callable(getattr(obj, c))]
    if not_callable:
        raise PluginError(f"Plugin '{origin}' registered {kind} {getattr(obj, 'name', obj)!r} whose {', '.join(not_callable)} is not callable.")
    name = obj.name
    if not isinstance(name, str) or not name or any(ch in name for ch in " ,:*?[]"):
        raise PluginError(
            f"Plugin '{origin}' registered a {kind} with the invalid name {name!r}: names are non-empty and "
            f"contain no spaces, commas, colons or wildcard characters."
        )
    if kind == "method":
        unknown = set(obj.requires) - set(DATA_ACCESS)
        if unknown:
            raise PluginError(
                f"Plugin '{origin}' registered method '{name}' requiring {sorted(unknown)}; "
                f"a method may require only {', '.join(DATA_ACCESS)}."
            )
        extra = set(obj.search_space) - set(obj.default_params)
        if extra:
            raise PluginError(
                f"Plugin '{origin}' registered method '{name}' with a search space over {sorted(extra)}, "
                f"which are not among its default_params {sorted(obj.default_params)}."
            )
    return name


class Registry:
    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        #: plugin name -> where it comes from ("builtin", "registered in process" or its distribution),
        #: filled by ``bench.core.plugins.build_registry`` for the duplicate-name message
        self.sources: dict[str, str] = {}

    # -- registration -------------------------------------------------------------------
    def register_callback(self, kind: str, origin: str) -> Callable[[Any], None]:
        def register(obj: Any) -> None:
            self.add(kind, obj, origin)

        return register

    def add(self, kind: str, obj: Any, origin: str) -> None:
        name = _validate(kind, obj, origin)
        existing = self._entries[kind].get(name)
        if existing is not None:
            raise PluginError(
                f"Duplicate {kind} name '{name}': registered by plugin '{existing.origin}' and again by "
                f"plugin '{origin}'. {self._duplicate_advice(kind, existing.origin, origin)}"
            )
        self._entries[kind][name] = Entry(kind, name, obj, origin)

    def _duplicate_advice(self, kind: str, first: str, second: str) -> str:
        """Where the two plugins come from and how to keep only one (a distribution to uninstall,
        the ``BENCH_PLUGINS`` allow-list), or how to rename within one plugin."""
        if first == second:
            return f"Rename one of the two {kind}s in plugin '{first}'."
        where = []
        removable = []
        for plugin in (first, second):
            source = self.sources.get(plugin, "")
            if source == "builtin":
                where.append(f"'{plugin}' is built into unlearning-bench")
            elif source == "registered in process":
                where.append(f"'{plugin}' was registered in this process (register_plugin)")
            elif source in ("", "unknown"):
                where.append(f"'{plugin}' comes from no known distribution")
            else:
                where.append(f"'{plugin}' comes from the distribution '{source}'")
                removable.append(source)
        fix = f"Uninstall one (pip uninstall {removable[-1]})" if removable else "Drop one of them"
        return (f"{'; '.join(where)}. {fix}, or load only the plugins you want with BENCH_PLUGINS (a comma-separated "
                f"allow-list of entry-point or distribution names; built-ins always load), or rename the {kind} in one plugin.")

    # -- lookup -------------------------------------------------------------------------
    def entries(self, kind: str) -> list[Entry]:
        return sorted(self._entries[kind].values(), key=lambda e: e.name)

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def get(self, kind: str, name: str) -> Any:
        return self.entry(kind, name).obj

    def entry(self, kind: str, name: str) -> Entry:
        if name in self._entries[kind]:
            return self._entries[kind][name]
        raise BenchError(unknown_name_message(kind, name, self.names(kind), self._family_hint(kind)))

    def resolve(self, kind: str, patterns: str | Iterable[str]) -> list[str]:
        """Names matching a comma-separated list of names and fnmatch wildcards, in order, deduplicated."""
        if isinstance(patterns, str):
            patterns = [p.strip() for p in patterns.split(",")]
        out: list[str] = []
        for pat in patterns:
            if not pat:
                continue
            if any(ch in pat for ch in "*?["):
                hits = fnmatch.filter(self.names(kind), pat)
                if not hits:
                    raise BenchError(
                        f"No {kind} matches '{pat}'. Available {kind}s: {', '.join(self.names(kind)) or '(none)'}."
                    )
            else:
                self.entry(kind, pat)  # raises with a suggestion
                hits = [pat]
            out.extend(h for h in hits if h not in out)
        if not out:
            raise BenchError(f"No {kind} given. Available {kind}s: {', '.join(self.names(kind))}.")
        return out

    def _family_hint(self, kind: str) -> str:
        fams = [e.name for e in self.entries(kind) if hasattr(e.obj, "claims")]
        if fams:
            return f" Model families that resolve further names: {', '.join(fams)} (`bench list models PATTERN`)."
        return ""


def unknown_name_message(kind: str, name: str, available: list[str], extra: str = "") -> str:
    close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"Unknown {kind} '{name}'.{hint} Available {kind}s: {', '.join(available) or '(none)'}.{extra}"
