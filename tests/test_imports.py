"""The harness's imports run one way (docs/architecture.md): no cycle among bench's modules, no
module importing a higher layer, nothing in the harness importing the conformance kit, and no
module over 400 lines. Read from the source with ``ast``, function-local imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import bench

ROOT = Path(bench.__file__).parent
#: Bottom to top; a module may import its own layer and those below it.
LAYERS = ("core", "nn", "eval", "track", "run", "cli", "testing")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    """Every module of the ``bench`` package, the built-in plugin folders (installed as
    ``bench.methods``, ``bench.datasets``, ``bench.attacks``) included."""
    import bench.attacks
    import bench.datasets
    import bench.methods

    out = {}
    roots = [(ROOT, "bench")] + [(Path(p.__path__[0]), p.__name__) for p in (bench.methods, bench.datasets, bench.attacks)]
    for root, prefix in roots:
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((prefix, *parts))] = path
    return out


def _resolve(name: str, known: dict) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """``{module: {bench modules it imports}}``: every import statement, at any depth."""
    known = _modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for mod, path in known.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for target in targets:
                if target.startswith("bench"):
                    dep = _resolve(target, known)
                    if dep and dep != mod and dep != "bench":
                        graph[mod].add(dep)
    return graph


def _layer(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_among_bench_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_run_downhill_through_the_layers():
    rank = {name: i for i, name in enumerate(LAYERS)}
    uphill = []
    for mod, deps in import_graph().items():
        here = _layer(mod)
        for dep in deps:
            there = _layer(dep)
            if here and there and rank[there] > rank[here]:
                uphill.append(f"{mod} -> {dep}")
    assert not uphill, "imports going up a layer:\n" + "\n".join(sorted(uphill))


def test_the_harness_never_imports_the_conformance_kit():
    users = sorted(m for m, deps in import_graph().items()
                   if _layer(m) != "testing" and any(_layer(d) == "testing" for d in deps) and m != "bench")
    assert not users, f"production modules importing bench.testing: {users}"


def test_the_plugin_folders_import_no_harness_internals_above_eval():
    """Built-in methods, datasets and attacks are plugins: they use the contracts and helpers
    (bench.core, bench.nn, bench.eval), never the run, tracking or CLI layers."""
    graph = import_graph()
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.split(".")[1:2] and m.split(".")[1] in ("methods", "datasets", "attacks")
                 for d in deps if _layer(d) in ("track", "run", "cli", "testing"))
    assert not bad, bad


def test_no_module_over_400_lines():
    """Every module of ``bench`` and of the built-in plugin folders (methods/, datasets/, attacks/)."""
    long = {mod: n for mod, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules by concern: {long}"
