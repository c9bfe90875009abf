"""The layout is a contract too: the core names no plugin's node types, has no import cycle, keeps
its modules small, and the plugin API does not pull in the machinery at import time."""

from __future__ import annotations

import ast
from pathlib import Path

import cgc_framework
from cgc_framework.engine.registry import load_registry

CORE = Path(cgc_framework.__file__).resolve().parent


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def _top_level_imports(name: str, tree: ast.Module) -> set[str]:
    """cgc_framework modules imported at module level (not inside functions or TYPE_CHECKING)."""
    found: set[str] = set()
    package = name if name.count(".") == 0 or name.endswith("__init__") else name.rsplit(".", 1)[0]
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in [node] if not isinstance(node, (ast.Try, ast.If)) else ast.walk(node):
            if isinstance(sub, ast.Import):
                found |= {a.name for a in sub.names if a.name.startswith("cgc_framework")}
            elif isinstance(sub, ast.ImportFrom):
                mod = sub.module or ""
                if sub.level:
                    base = package.split(".")[: len(package.split(".")) - sub.level + 1]
                    mod = ".".join(base + ([mod] if mod else []))
                if mod.startswith("cgc_framework"):
                    found.add(mod)
    return found


def test_no_core_module_names_a_plugins_node_type():
    registry = load_registry()
    names: set[str] = set()
    for kind in ("graph_builder", "edge_source"):
        for comp in registry.names(kind):
            info = registry.get(kind, comp)
            try:
                schema = registry.create(kind, comp, info.params() if info.params else None).schema()
            except Exception:  # noqa: BLE001 - a component that needs params: its default schema is not needed
                continue
            names |= set(schema.node_types)
    assert {"compound", "atom", "compartment", "channel", "residue"} <= names
    offenders = []
    for mod, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                offenders.append(f"{mod}:{node.lineno} {node.value!r}")
    assert not offenders, "core modules name plugin node types: " + ", ".join(offenders)


def test_core_has_no_import_cycle_and_small_modules():
    mods = _modules()
    graph = {m: {i for i in _top_level_imports(m, t) if i in mods and i != m} for m, t in mods.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    sizes = {p.relative_to(CORE).as_posix(): len(p.read_text().splitlines()) for p in CORE.rglob("*.py")}
    assert max(sizes.values()) < 450, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_the_plugin_api_does_not_import_the_machinery_at_import_time():
    mods = _modules()
    for name, tree in mods.items():
        if name.startswith("cgc_framework.plugin"):
            bad = {i for i in _top_level_imports(name, tree) if i.startswith(("cgc_framework.engine",
                                                                              "cgc_framework.bench",
                                                                              "cgc_framework.api"))}
            assert not bad, f"{name} imports {bad} at module level"
