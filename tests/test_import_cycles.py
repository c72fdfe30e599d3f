"""No import cycles in agentflow, budgets and tracing (DESIGN.md, "Layout and dependency
direction": inside each package the imports form a DAG).

Every import statement counts: module level, inside functions and under ``if
TYPE_CHECKING:``, relative ones resolved, so a cycle cannot hide behind a lazy import.
``from pkg import name`` is an edge to the submodule ``pkg.name`` when there is one,
else to ``pkg`` (its ``__init__``), which is also how a submodule that imports its own
package's ``__init__`` shows up. Importing ``a.b.c`` also runs the ``__init__`` of ``a``
and ``a.b``: those are edges too, unless they are the importer's own ancestors (already
running). ``importlib.import_module`` calls are not import statements and are not
counted. A failure lists every cycle with a shortest path through it and the
``file:line`` of each import on the path: remove or move one of them.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agentflow", "budgets", "tracing")


@dataclass(frozen=True)
class Import:
    """One import statement: ``source`` imports ``target`` at ``path:line``, ``where``
    being "module level", "in f()", "under TYPE_CHECKING" or a combination."""

    source: str
    target: str
    path: Path
    line: int
    where: str


# source -> target -> the import statements making that edge
Graph = dict[str, dict[str, list[Import]]]


def find_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the packages; a package's name
    maps to its ``__init__.py``."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _ancestors(module: str) -> list[str]:
    """The packages whose ``__init__`` runs before ``module``: ``a.b.c`` -> a, a.b."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


class _Collector(ast.NodeVisitor):
    """The imports of one module, resolved to modules of ``modules``."""

    def __init__(self, name: str, path: Path, modules: Mapping[str, Path]) -> None:
        self.name = name
        self.path = path
        self.modules = modules
        # the package relative imports start from: the module itself for an __init__
        self.package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        self.context: list[str] = []
        self.imports: list[Import] = []

    def _add(self, target: str, node: ast.stmt) -> None:
        """An edge to ``target`` when it is one of our modules, once per statement;
        external modules (and missing ones, which fail elsewhere) and the module
        itself are ignored."""
        if target not in self.modules or target == self.name:
            return
        where = ", ".join(self.context) or "module level"
        found = Import(self.name, target, self.path, node.lineno, where)
        if found not in self.imports:
            self.imports.append(found)
        # importing a.b.c runs the __init__ of a and a.b first: an edge to each package
        # on the way that is not already initialising (not one of our own ancestors)
        ours = set(_ancestors(self.name))
        for package in _ancestors(target):
            if package not in ours and package in self.modules and package != self.name:
                implied = Import(
                    self.name, package, self.path, node.lineno, f"{where}, via {target}"
                )
                if implied not in self.imports:
                    self.imports.append(implied)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            package = self.package.split(".")
            if node.level - 1 > len(package) - 1:
                raise ValueError(f"{self.path}:{node.lineno}: relative import beyond the top")
            base_parts = package[: len(package) - (node.level - 1)]
            if node.module:
                base_parts += node.module.split(".")
            base = ".".join(base_parts)
        else:
            base = node.module or ""
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in self.modules else base, node)

    def _nested(self, node: ast.AST, label: str) -> None:
        self.context.append(label)
        self.generic_visit(node)
        self.context.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._nested(node, f"in {node.name}()")

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._nested(node, f"in {node.name}()")

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.context.append("under TYPE_CHECKING")
        for statement in node.body:
            self.visit(statement)
        self.context.pop()
        for statement in node.orelse:
            self.visit(statement)


def build_graph(root: Path, packages: Iterable[str]) -> Graph:
    """Every module of ``packages`` under ``root`` and the modules of theirs it imports."""
    modules = find_modules(root, packages)
    graph: Graph = {}
    for name, path in modules.items():
        collector = _Collector(name, path, modules)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges = graph.setdefault(name, {})
        for found in collector.imports:
            edges.setdefault(found.target, []).append(found)
    return graph


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit); each
    component sorted, components in the order Tarjan completes them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def enter(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for root in sorted(graph):
        if root in index:
            continue
        enter(root)
        work = [(root, iter(sorted(graph[root])))]
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    enter(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def import_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (the collector drops
    self-imports), sorted."""
    return sorted(c for c in strongly_connected(graph) if len(c) > 1)


def shortest_path(
    graph: Mapping[str, Iterable[str]], start: str, goal: str, within: set[str]
) -> list[str]:
    """A shortest path ``start -> ... -> goal`` through modules of ``within`` (breadth
    first, ties broken alphabetically)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [goal]
            while path[-1] != start:
                path.append(previous[path[-1]])
            return path[::-1]
        for successor in sorted(graph.get(node, ())):
            if successor in within and successor != start and successor not in previous:
                previous[successor] = node
                queue.append(successor)
    raise ValueError(f"no path {start} -> {goal} inside {sorted(within)}")


def describe(graph: Graph, cycles: Iterable[list[str]], root: Path) -> str:
    """Each cycle's modules, then shortest cycles through its edges until every edge
    inside it is on one, with the import statements making each edge: breaking every
    cycle printed breaks the whole component."""
    lines: list[str] = []
    for members in cycles:
        within = set(members)
        lines.append(f"import cycle among {len(members)} modules: {', '.join(members)}")
        edges = sorted((s, t) for s in members for t in graph[s] if t in within)
        covered: set[tuple[str, str]] = set()
        for source, target in edges:
            if (source, target) in covered:
                continue
            path = [source, *shortest_path(graph, target, source, within)]
            lines.append("  " + " -> ".join(path))
            for edge in pairwise(path):
                covered.add(edge)
                where = "; ".join(
                    f"{i.path.relative_to(root)}:{i.line} ({i.where})"
                    for i in graph[edge[0]][edge[1]]
                )
                lines.append(f"      {edge[0]} -> {edge[1]}: {where}")
    return "\n".join(lines)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    graph = build_graph(ROOT, PACKAGES)
    assert any(name.startswith(f"{package}.") for name in graph), f"no modules in {package}"
    cycles = [c for c in import_cycles(graph) if any(m.split(".")[0] == package for m in c)]
    assert not cycles, f"{len(cycles)} import cycle(s) in {package}:\n" + describe(
        graph, cycles, ROOT
    )


_SYNTHETIC: dict[str, tuple[dict[str, str], list[list[str]]]] = {
    "module level": (
        {"a.py": "from pkg import b\n", "b.py": "import pkg.a\n"},
        [["pkg.a", "pkg.b"]],
    ),
    "in a function, relative": (
        {"a.py": "def f():\n    from . import b\n", "b.py": "from .a import thing\n"},
        [["pkg.a", "pkg.b"]],
    ),
    "under TYPE_CHECKING": (
        {
            "a.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.b import B\n",
            "b.py": "from pkg.a import A\n",
        },
        [["pkg.a", "pkg.b"]],
    ),
    "submodule to its package's __init__": (
        {
            "sub/__init__.py": "from pkg.sub.m import M\n",
            "sub/m.py": "class M:\n    def f(self):\n        from ..sub import helper\n",
        },
        [["pkg.sub", "pkg.sub.m"]],
    ),
    "through another package's __init__": (
        {
            "local/__init__.py": "from pkg.cli.serve import add\n",
            "local/install.py": "X = 1\n",
            "cli/__init__.py": "",
            "cli/serve.py": "from pkg.local.install import X\n",
        },
        [["pkg.cli.serve", "pkg.local"]],
    ),
    "three modules": (
        {"a.py": "import pkg.b\n", "b.py": "from pkg.c import x\n", "c.py": "from . import a\n"},
        [["pkg.a", "pkg.b", "pkg.c"]],
    ),
    "a DAG": (
        {
            "__init__.py": "from pkg.a import A\nfrom pkg import b\n",
            "a.py": "import os\nfrom pkg.b import B\nfrom . import c\n",
            "b.py": "from .c import C\nfrom pkg import c\nimport pkg.c\n",
            "c.py": "import json\nfrom pkg import c\n",
        },
        [],
    ),
}


@pytest.mark.parametrize(("files", "expected"), _SYNTHETIC.values(), ids=_SYNTHETIC.keys())
def test_the_checker_finds_cycles(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    for relative, source in {"__init__.py": "", **files}.items():
        path = tmp_path / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    graph = build_graph(tmp_path, ["pkg"])
    cycles = import_cycles(graph)
    assert cycles == expected
    report = describe(graph, cycles, tmp_path)
    for members in expected:
        for member in members:
            assert member in report
        assert f"{members[0]} -> " in report
