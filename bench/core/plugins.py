"""Plugin loading: built-ins from ``DEFAULT_PLUGINS``, third parties from the ``bench`` entry points.

Built-in methods, datasets, models and attacks are ordinary plugins registered exactly like
third-party ones. ``BENCH_PLUGINS`` restricts which entry-point plugins load: a comma-separated
allow-list of distribution or entry-point names; set it to the empty string to load none
(the test suite does, so an installed plugin cannot change its results).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache

import pluggy

from bench import __version__
from bench.core import hookspecs
from bench.core.errors import PluginError
from bench.core.registry import KINDS, Registry

DEFAULT_PLUGINS = (
    "bench.nn.models",
    "bench.methods",
    "bench.datasets",
    "bench.attacks",
)

HOOKS = {f"register_{kind}s": kind for kind in KINDS}


@dataclass
class PluginInfo:
    name: str
    version: str | None
    hooks: list[str]
    source: str  # "builtin" or the distribution name
    registered: dict[str, list[str]] = field(default_factory=dict)


def _allowed_entry_points() -> set[str] | None:
    raw = os.environ.get("BENCH_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


_IN_PROCESS: list = []


def register_plugin(plugin) -> None:
    """Add a plugin object (module or instance with hookimpls) for this process: notebooks, tests.
    Registering the same object again changes nothing (a notebook cell run twice broke every later
    registry call: pluggy refused the object under a second name)."""
    if not any(p is plugin for p in _IN_PROCESS):
        _IN_PROCESS.append(plugin)
    reset()


def unregister_plugin(plugin) -> None:
    """Remove a plugin ``register_plugin`` added; one that is not registered is left alone."""
    _IN_PROCESS[:] = [p for p in _IN_PROCESS if p is not plugin]
    reset()


def in_process_plugins() -> tuple:
    return tuple(_IN_PROCESS)


def _in_process_name(pm: pluggy.PluginManager, plugin) -> str:
    """The name of a plugin registered in process: a module's or class's ``__name__`` (as pluggy
    names them), an instance's class (pluggy would name it by its id, a number no message or record
    can point a reader to); a second of the same name gets ``#2``."""
    base = getattr(plugin, "__name__", None) or f"{type(plugin).__module__}.{type(plugin).__qualname__}"
    base = re.sub(r"[^\w.:/ -]", "", base)  # recorded as MLflow param keys ("plugins.NAME"): "<locals>" -> "locals"
    name, n = base, 1
    while pm.has_plugin(name):
        n += 1
        name = f"{base}#{n}"
    return name


def _builtin_manager() -> pluggy.PluginManager:
    """A plugin manager holding bench's own plugins (``DEFAULT_PLUGINS``) alone."""
    pm = pluggy.PluginManager("bench")
    pm.add_hookspecs(hookspecs)
    for modname in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(modname), name=modname)
    return pm


def make_plugin_manager(extra_plugins: tuple = ()) -> pluggy.PluginManager:
    pm = _builtin_manager()
    allowed = _allowed_entry_points()
    try:
        _load_entry_points(pm, allowed)
        for plugin in extra_plugins:
            if not pm.is_registered(plugin):  # an installed plugin's module registered in process too
                pm.register(plugin, name=_in_process_name(pm, plugin))
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(_one_line(exc)) from None
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        hook = re.search(r"unknown hook '([^']+)'", str(exc))
        name = pm.get_name(exc.plugin) if getattr(exc, "plugin", None) is not None else None
        if hook is None or name is None:
            raise PluginError(f"Invalid plugin: {exc} (a misspelt hook name? valid hooks: {', '.join(HOOKS)})") from None
        raise PluginError(f"Plugin {_described(name)} implements the unknown hook '{hook.group(1)}' (a misspelt hook "
                          f"name? valid hooks: {', '.join(HOOKS)}). Fix it or uninstall it; to run without it, name the "
                          f"plugins to load: BENCH_PLUGINS=NAME,... (BENCH_PLUGINS= loads none).") from None
    _warn_hookless(pm)
    return pm


def _one_line(exc: BaseException) -> str:
    """pluggy's three-line refusal of a hook whose parameters the hook spec lacks (``def
    register_methods(reg)``), or any other, as one line saying what to write."""
    text = str(exc)
    bad = re.search(r"Plugin '([^']+)' for hook '([^']+)'\s*hookimpl definition: (\S+)\s*Argument\(s\) (\{[^}]*\})", text)
    if bad:
        plugin, hook, definition, args = bad.groups()
        return (f"Invalid plugin {_described(plugin)}: its hook {definition} takes {args}, which bench does not pass; "
                f"write def {hook}(register) (or def {hook}(self, register) in a class) and call register(obj) for "
                f"each object.")
    return "Invalid plugin: " + " ".join(text.split())


def _described(name: str) -> str:
    """'NAME' (module, distribution DIST) for an entry-point plugin; 'NAME' otherwise."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="bench"):
        if ep.name == name:
            return f"'{name}' ({ep.value}{', distribution ' + ep.dist.name if ep.dist else ''})"
    return f"'{name}'"


def _warn_hookless(pm: pluggy.PluginManager) -> None:
    """Warn about a plugin whose ``register_*`` functions lack ``@bench.hookimpl``: it registered
    nothing (or, with one hook decorated, only that hook's objects) without a word, and its names
    were then "unknown" (the second case found in review)."""
    for name, plugin in pm.list_name_plugin():
        if plugin is hookspecs or name in DEFAULT_PLUGINS:
            continue
        implemented = {caller.name for caller in pm.get_hookcallers(plugin) or ()}
        bare = [h for h in HOOKS if h not in implemented and callable(getattr(plugin, h, None))]
        lack = f"{', '.join(bare)} lack{'s' if len(bare) == 1 else ''} the @bench.hookimpl decorator"
        if implemented and bare:
            print(f"warning: plugin {_described(name)}: its {lack}, so what {'it registers' if len(bare) == 1 else 'they register'} "
                  f"is not registered (its other hooks are).", file=sys.stderr)
        elif not implemented:
            why = f"its {lack}" if bare else f"it defines none of {', '.join(HOOKS)}"
            print(f"warning: plugin {_described(name)} implements no bench hook, so it registers nothing: {why}.",
                  file=sys.stderr)


def _load_entry_points(pm: pluggy.PluginManager, allowed: set[str] | None) -> None:
    """Register the installed plugins (entry-point group ``bench``; only those ``allowed`` names
    when BENCH_PLUGINS is set). One that fails to import stops the command in one line naming it
    (a raw traceback, exit 1, from every command before 2026-12-06, whatever the command used)."""
    from importlib.metadata import entry_points

    known: set[str] = set()
    for ep in entry_points(group="bench"):
        dist = ep.dist.name if ep.dist else ""
        known.update({ep.name, dist} - {""})
        if allowed is not None and ep.name not in allowed and dist not in allowed:
            continue
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            text = " ".join(str(exc).split())
            raise PluginError(
                f"Plugin '{ep.name}' ({ep.value}{', distribution ' + dist if dist else ''}) failed to import: "
                f"{type(exc).__name__}{': ' + text if text else ''}. Fix or uninstall it"
                f"{f' (pip uninstall {dist})' if dist else ''}; to run without it, name the plugins to load: "
                f"BENCH_PLUGINS=NAME,... (BENCH_PLUGINS= loads none)."
            ) from None
        pm.register(plugin, name=ep.name)
    unknown = sorted(allowed - known) if allowed else []
    if unknown:  # a misspelt name loads nothing: say so rather than lose the plugin quietly
        print(f"warning: BENCH_PLUGINS names {', '.join(map(repr, unknown))}, which no installed plugin has "
              f"(entry points and distributions: {', '.join(sorted(known)) or 'none'}); it loads nothing.",
              file=sys.stderr)


def build_registry(pm: pluggy.PluginManager) -> tuple[Registry, list[PluginInfo]]:
    """Call every registration hook, one plugin at a time, so each object records its origin."""
    from importlib.metadata import entry_points

    registry = Registry()
    dists = {id(plugin): (dist.project_name, dist.version) for plugin, dist in pm.list_plugin_distinfo()}
    # plugins loaded through the BENCH_PLUGINS allow-list are registered by hand: find their distribution
    ep_dists = {ep.name: (ep.dist.name, ep.dist.version) for ep in entry_points(group="bench") if ep.dist}
    infos: dict[str, PluginInfo] = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is hookspecs:
            continue
        dist = dists.get(id(plugin)) or (ep_dists.get(name) if name not in DEFAULT_PLUGINS else None)
        if dist:
            source, version = dist
        elif name in DEFAULT_PLUGINS:
            source, version = "builtin", _own_version()
        else:
            source, version = "registered in process", _in_process_version(plugin)
        infos[name] = PluginInfo(name=name, version=version, hooks=[], source=source)
        registry.sources[name] = source
    for hook_name, kind in HOOKS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            origin = impl.plugin_name
            info = infos.setdefault(origin, PluginInfo(origin, None, [], "unknown"))
            info.hooks.append(hook_name)
            before = set(registry.names(kind))
            kwargs = {"register": registry.register_callback(kind, origin)} if "register" in impl.argnames else {}
            try:
                returned = impl.function(**kwargs)
            except PluginError:
                raise
            except Exception as exc:  # a broken plugin must say which one it is
                raise PluginError(f"Plugin '{origin}' failed in {hook_name}: {type(exc).__name__}: {exc}") from exc
            new = sorted(set(registry.names(kind)) - before)
            if new:
                info.registered.setdefault(kind, []).extend(new)
            elif returned is not None:  # objects returned, not registered: nothing was, without a word (found in review)
                print(f"warning: plugin {_described(origin)}: {hook_name} returned {type(returned).__name__} and "
                      f"registered nothing; the hook calls register(obj) for each object it adds (its return "
                      f"value is not read).", file=sys.stderr)
    return registry, sorted(infos.values(), key=lambda i: (i.source != "builtin", i.name))


def _own_version() -> str:
    return __version__


def _in_process_version(plugin) -> str:
    """A plugin registered in process (a test, a notebook): its ``__version__``, else its module's,
    else the installed distribution holding its top-level package, else "unversioned" (its code is
    still identified, by the digest of ``measured_with``)."""
    from importlib.metadata import PackageNotFoundError, version

    if getattr(plugin, "__version__", None):
        return str(plugin.__version__)
    module_name = (plugin.__name__ if isinstance(plugin, type(sys)) else plugin.__module__ if isinstance(plugin, type)
                   else type(plugin).__module__)
    module = sys.modules.get(module_name or "")
    if module is not None and getattr(module, "__version__", None):
        return str(module.__version__)
    for dist in _packages_distributions().get((module_name or "").split(".")[0], []):
        try:
            return f"{version(dist)} ({dist})"
        except PackageNotFoundError:
            continue
    return "unversioned"


@lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    """importlib's map of top-level packages to distributions, read once (it scans every installed
    distribution's file list: 0.3-0.5 s a call here)."""
    from importlib.metadata import packages_distributions

    return packages_distributions()


@lru_cache(maxsize=1)
def _default() -> tuple[Registry, list[PluginInfo]]:
    return build_registry(make_plugin_manager(tuple(_IN_PROCESS)))


@lru_cache(maxsize=1)
def builtin_registry() -> Registry:
    """The registry of bench's own plugins alone (the conformance kit checks a plugin's names
    against it: bench refuses a second object of a built-in's name)."""
    return build_registry(_builtin_manager())[0]


def get_registry() -> Registry:
    """The registry of all installed plugins (built once per process)."""
    return _default()[0]


def plugin_infos() -> list[PluginInfo]:
    return _default()[1]


def reset() -> None:
    """Forget the cached registry (tests use it after registering or installing plugins)."""
    _default.cache_clear()


def plugin_versions() -> dict[str, str]:
    """``{plugin name: version}`` for every loaded plugin, recorded with each run."""
    return {i.name: "unknown" if i.version is None else str(i.version) for i in plugin_infos()}


