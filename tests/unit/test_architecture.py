"""The package's structure: imports run one way, and docs/architecture.md maps every module.

Every import counts, at module top, inside functions and under ``TYPE_CHECKING`` alike: a
lazy import hides a dependency from the reader, not from the design. A sub-package
(``adapters/``, ``flows/``, ``policies/``, ``reporting/``) is one room; the rooms must form no
circle, so the package reads in one direction (data at the bottom, the CLI at the top).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "src" / "rescue_runner"
SUBPACKAGES = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
INIT = "__init__"  # the package's own __init__ (its version): a leaf everyone may import


def _room(module: str) -> str:
    """A top-level module, or the whole sub-package a module belongs to."""
    return module.split(".")[0]


def _module_of(path: Path) -> str:
    parts = [p for p in path.relative_to(PKG).with_suffix("").parts if p != "__init__"]
    return ".".join(parts) or INIT


def _is_module(dotted: str) -> bool:
    base = PKG.joinpath(*dotted.split(".")) if dotted else PKG
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path) -> Iterator[str]:
    """Every project module ``path`` imports (``""`` for the package's ``__init__``)."""
    module = _module_of(path)
    package = module.split(".") if path.name == "__init__.py" and module != INIT else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and (node.module == "rescue_runner" or node.module.startswith("rescue_runner.")):
                target = node.module.removeprefix("rescue_runner").lstrip(".")
            else:
                continue
            for alias in node.names:  # ``from . import audit`` imports a module, ``from . import x`` a name
                sub = f"{target}.{alias.name}" if target else alias.name
                yield sub if _is_module(sub) else target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("rescue_runner."):
                    yield alias.name.removeprefix("rescue_runner.")


def room_graph() -> dict[str, set[str]]:
    """``{room: rooms it imports}`` over the whole package."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        src = _room(_module_of(path))
        graph.setdefault(src, set())
        for target in _imports(path):
            dst = _room(target) if target else INIT
            if dst not in (src, INIT):
                graph[src].add(dst)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    graph = room_graph()
    assert "model" in graph["planner"]  # top-level relative import
    assert "adapters" in graph["pipeline"]  # imported inside a function only
    assert "audit" in graph["reporting"]  # ``from .. import audit``


def test_imports_run_one_way() -> None:
    cycle = _cycle(room_graph())
    assert cycle is None, "import circle (sub-packages count as one room): " + " -> ".join(cycle or [])


def test_architecture_doc_names_every_module() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = (p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py")
               if p.name != "__init__.py" and not p.name.startswith("rr"))  # rules: docs/rules.md
    missing = sorted(m for m in modules if m not in doc)
    assert not missing, f"docs/architecture.md does not mention: {', '.join(missing)}"
