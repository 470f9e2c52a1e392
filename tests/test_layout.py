"""The package layout keeps its promises: fixtures stay out of the product, no import circles,
the engine never imports the TUI's or the report's libraries at module level (DESIGN §2)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import sculpt

ROOT = Path(sculpt.__file__).resolve().parent.parent


def _modules() -> dict[str, Path]:
    found = {}
    for folder, prefix in (
        ("core", ["sculpt"]),
        ("tui", ["sculpt", "tui"]),
        ("reports", ["sculpt", "reports"]),
    ):
        for path in (ROOT / folder).rglob("*.py"):
            parts = prefix + list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, less `if TYPE_CHECKING:` blocks (annotations only, never run)."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _imports(path: Path, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else _runtime_nodes(tree)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_everything_imports_as_sculpt():
    assert importlib.util.find_spec("sculpt.tui.app") is not None
    assert importlib.util.find_spec("sculpt.reports.render") is not None
    assert Path(importlib.util.find_spec("sculpt.scan.run").origin).parent.name == "scan"


def test_the_product_never_imports_the_testing_fixtures():
    offenders = [
        name
        for name, path in _modules().items()
        if not name.startswith("sculpt.testing")
        and any(i.startswith("sculpt.testing") for i in _imports(path, module_level_only=False))
    ]
    assert offenders == []


def test_no_import_circles():
    """Deferred imports count too: a circle hidden in a function is still a circle."""
    modules = _modules()
    graph = {
        name: {i for i in _imports(path, False) if i in modules and i != name}
        for name, path in modules.items()
    }
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for dep in graph[name]:
            if state.get(dep) == 1:
                circles.append([*trail[trail.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_the_engine_leaves_textual_and_jinja2_to_the_tui_and_the_report():
    heavy = ("textual", "jinja2")
    offenders = [
        name
        for name, path in _modules().items()
        if not name.startswith(("sculpt.tui", "sculpt.reports", "sculpt.testing"))
        and any(i.split(".")[0] in heavy for i in _imports(path, module_level_only=True))
    ]
    assert offenders == []
