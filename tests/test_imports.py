"""The package's shape: no import circle, stages import only earlier stages and the shared services, no big modules.

Every `import` and `from ... import` of a `latentrm` module counts, at module level or inside a function: a
deferred import still ties the two modules together, it only hides the circle until run time. The graph is
read from the source with `ast`, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "latentrm"

# Shared services: any module may import them; they import only each other.
SERVICES = {"errors", "_version", "io", "registry", "stages", "models", "generation", "features", "pairs",
            "judges", "validate", "presets", "ranks"}
# Stage packages in import order: a stage may import an earlier one, never a later one. eval comes before
# audit and rl because it only measures a policy (data + judges), and the audit's Goodhart curve and RL's
# periodic eval call it.
STAGE_ORDER = ["data", "rm", "eval", "audit", "rl", "serve", "integrations", "report", "pipeline"]
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # `from latentrm.rm import model` imports the submodule
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path `a -> b -> ... -> a`, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_cli(module: str) -> bool:
    """Command modules (and the package facade) glue stages together; they sit above every stage."""
    return module in ("latentrm", "latentrm.__main__") or module.split(".")[-1] in ("cli", "__main__")


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        if _is_cli(module):
            continue
        source = _top(module)
        for target in sorted(targets):
            if target == "latentrm":
                bad.append(f"{module} imports the package facade `latentrm`; import the module itself")
                continue
            destination = _top(target)
            if destination == source or destination in SERVICES:
                continue
            if _is_cli(target):
                bad.append(f"{module} imports the command module {target}")
            elif source in SERVICES:
                bad.append(f"shared service {module} imports stage module {target}")
            elif source not in STAGE_ORDER or destination not in STAGE_ORDER:
                bad.append(f"{module} -> {target}: add the package to SERVICES or STAGE_ORDER")
            elif STAGE_ORDER.index(destination) > STAGE_ORDER.index(source):
                bad.append(f"{module} (stage {source}) imports {target} (later stage {destination})")
    return bad


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_stages_import_only_earlier_stages_and_services():
    assert layering_violations(import_graph()) == []


def test_no_module_is_too_big():
    big = {name: n for name, path in _modules().items()
           if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}, f"modules over {MAX_LINES} lines: split them"


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"a2", "b"}, "a2": set(), "b": {"b"}}, ["b", "b"]),
])
def test_find_cycle_finds_planted_circles(graph, expected):
    assert find_cycle(graph) == expected


def test_layering_flags_planted_violations():
    graph = {"latentrm.io": {"latentrm.rm.model"}, "latentrm.rm.model": {"latentrm.rl.reward"},
             "latentrm.rl.reward": {"latentrm.rm.model", "latentrm.io"}, "latentrm.rm.cli": {"latentrm.rl.cli"},
             "latentrm.data.build": {"latentrm"}}
    assert layering_violations(graph) == [
        "latentrm.data.build imports the package facade `latentrm`; import the module itself",
        "shared service latentrm.io imports stage module latentrm.rm.model",
        "latentrm.rm.model (stage rm) imports latentrm.rl.reward (later stage rl)",
    ]
