"""The project's layering, read from the source with `ast`: no import cycles, no upward imports, no long files.

Every import counts: at the top of a module, inside a function and under ``if TYPE_CHECKING:``.
So do the imports put off until run time: a name given to ``lazy(...)``, ``importlib.import_module(...)``
or ``__import__(...)``, and a ``"package.module:Name"`` string (the backend tables of
`shared.storage` and `shared.launchers`). An import is an edge to the most specific project module
it names: ``from shared.services import datasets`` is an edge to `shared.services.datasets`, and a
submodule's import does not add an edge to its package's ``__init__``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("shared", "functions", "main.py")
MAX_LINES = 600

# The layers, top to bottom: a module may import from its own layer or any layer below it, never
# from one above. "pkg.*" places a package and everything in it; a plain name places that one module.
# The longest pattern that fits wins. A module no pattern places fails the test, so a new folder is
# given its place on purpose.
LAYERS: dict[str, tuple[str, ...]] = {
    # what a process runs: the function targets, the api routes, the dm command and the local stack;
    # process_services wires a function process's collaborators, and only functions build it
    "top": ("main", "functions.*", "shared.cli", "shared.stack", "shared.landing", "shared.supervisor",
            "shared.process_services"),
    # the operations the API and the event handlers are made of
    "services": ("shared.services.*",),
    # self-contained parts the services put together
    "parts": ("shared.events.*", "shared.storage.*", "shared.auth.*", "shared.launchers.*",
              "shared.account_server.*", "shared.jobs.*", "shared.datasets.*", "shared.messages.*",
              "shared.schemas.*", "shared.http_server", "shared.http_streaming", "shared.http_tunnel"),
    # the database and the modules everything may use
    "base": ("shared", "shared.db.*", "shared.config", "shared.errors", "shared.lazy"),
}
ORDER = ("base", "parts", "services", "top")


@dataclass(frozen=True)
class Edge:
    target: str
    line: int
    type_checking: bool


@dataclass
class Module:
    name: str
    path: Path
    package: bool
    edges: list[Edge] = field(default_factory=list)


# --- the checker ------------------------------------------------------------------------------


def _module_name(rel: Path) -> tuple[str, bool]:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def scan(root: Path, sources: tuple[str, ...]) -> dict[str, Module]:
    """Every module under ``sources`` (folders or files below ``root``), with its imports of the others."""
    paths = []
    for source in sources:
        path = root / source
        paths.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    modules = {}
    for path in paths:
        name, package = _module_name(path.relative_to(root))
        modules[name] = Module(name, path, package)
    tops = {name.split(".")[0] for name in modules}
    for module in modules.values():
        module.edges = _edges(module, modules, tops)
    return modules


def _resolve(name: str, modules: dict[str, Module], tops: set[str]) -> str | None:
    """The most specific project module ``name`` reaches, or None for one outside the project."""
    if name.split(".")[0] not in tops:
        return None
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _edges(module: Module, modules: dict[str, Module], tops: set[str]) -> list[Edge]:
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    guarded: set[int] = set()  # ids of the nodes under `if TYPE_CHECKING:`
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: list[Edge] = []

    def add(name: str | None, node: ast.AST) -> None:
        target = _resolve(name, modules, tops) if name else None
        if target is not None and target != module.name:
            found.append(Edge(target, node.lineno, id(node) in guarded))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.name.split(".") if module.package else module.name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base, node)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called not in ("lazy", "import_module", "__import__"):
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                add(arg.value, node)
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                # f"pkg.{name}": any module directly in pkg may be the one imported
                prefix = str(arg.values[0].value)
                if prefix.endswith("."):
                    for name in modules:
                        if name.rpartition(".")[0] == prefix[:-1]:
                            add(name, node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            spec = re.fullmatch(r"([\w.]+):[\w.]+", node.value)
            if spec and spec.group(1) in modules:
                add(spec.group(1), node)
    return found


def cycles(modules: dict[str, Module], *, type_checking: bool = True) -> list[list[tuple[str, int]]]:
    """For each knot of modules that reach one another, the shortest cycle through its first member.

    A cycle is a list of (module, line of its import of the next) steps, ending where it began.
    """
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for module in modules.values():
        for edge in module.edges:
            if type_checking or not edge.type_checking:
                graph[module.name].setdefault(edge.target, edge.line)

    def reach(start: str) -> dict[str, str]:
        """Each module reachable from ``start``, with the one it is first reached from (breadth first)."""
        came_from: dict[str, str] = {}
        queue = [start]
        while queue:
            node = queue.pop(0)
            for nxt in sorted(graph[node]):
                if nxt not in came_from:
                    came_from[nxt] = node
                    queue.append(nxt)
        return came_from

    reached = {name: reach(name) for name in graph}
    found, placed = [], set()
    for start in sorted(graph):
        if start in placed or start not in reached[start]:
            continue
        placed.update(name for name in reached[start] if start in reached[name])
        path = [start]
        while len(path) == 1 or path[-1] != start:
            path.append(reached[start][path[-1]])
        path.reverse()  # start -> ... -> start
        found.append([(a, graph[a][b]) for a, b in zip(path, path[1:])] + [(start, 0)])
    return found


def layer_of(name: str, layers: dict[str, tuple[str, ...]] = LAYERS) -> str | None:
    best, best_len = None, -1
    for layer, patterns in layers.items():
        for pattern in patterns:
            package = pattern[:-2] if pattern.endswith(".*") else None
            fits = name == pattern or (package is not None and (name == package or name.startswith(package + ".")))
            if fits and len(pattern) > best_len:
                best, best_len = layer, len(pattern)
    return best


def unplaced(modules: dict[str, Module], layers: dict[str, tuple[str, ...]] = LAYERS) -> list[str]:
    return sorted(name for name in modules if layer_of(name, layers) is None)


def upward(modules: dict[str, Module], layers: dict[str, tuple[str, ...]] = LAYERS,
           order: tuple[str, ...] = ORDER) -> list[str]:
    """Each import of a module in a higher layer, as "importer:line (layer) -> imported (layer)"."""
    out = []
    for module in modules.values():
        mine = layer_of(module.name, layers)
        for edge in module.edges:
            theirs = layer_of(edge.target, layers)
            if mine and theirs and order.index(theirs) > order.index(mine):
                out.append(f"{module.name}:{edge.line} ({mine}) -> {edge.target} ({theirs})")
    return sorted(set(out))


def exempt_from_length(rel: Path) -> bool:
    """Alembic migrations and generated protobuf code are as long as they need to be."""
    return rel.parts[:3] == ("shared", "db", "migrations") or rel.name.endswith(("_pb2.py", "_pb2.pyi"))


def too_long(root: Path, folders: tuple[str, ...], limit: int = MAX_LINES) -> list[str]:
    out = []
    for folder in folders:
        path = root / folder
        files = [path] if path.is_file() else [p for p in sorted(path.rglob("*.py*")) if p.suffix in (".py", ".pyi")]
        for file in files:
            rel = file.relative_to(root)
            lines = len(file.read_text(encoding="utf-8").splitlines())
            if lines > limit and not exempt_from_length(rel):
                out.append(f"{rel}: {lines} lines")
    return out


def _show(cycle: list[tuple[str, int]]) -> str:
    return " -> ".join(f"{name}:{line}" if line else name for name, line in cycle)


# --- the project ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project() -> dict[str, Module]:
    return scan(ROOT, SOURCES)


def test_the_scan_sees_every_kind_of_import_the_project_uses(project):
    edges = {(name, e.target) for name, m in project.items() for e in m.edges}
    assert ("shared.services.metadata", "shared.services.datasets") in edges  # from package import module
    assert ("functions.api.routes.project", "shared.services.projects") in edges  # lazy("...")
    assert ("shared.storage", "shared.storage.local") in edges  # "module:Class" backend table
    assert ("functions.api.app", "functions.api.routes.project") in edges  # import_module(f"...{name}")
    assert ("main", "functions.api.app") in edges  # inside a function


def test_no_import_cycles(project):
    # TYPE_CHECKING imports count too: they never run, but a pair of modules that need each other's
    # types is still a knot that a later runtime import would close
    found = cycles(project)
    assert not found, "Modules that import each other:\n" + "\n".join(_show(c) for c in found)


def test_every_module_has_a_layer(project):
    missing = unplaced(project)
    assert not missing, f"Modules no entry of LAYERS places (give their folder a layer): {missing}"


def test_no_module_imports_from_a_layer_above(project):
    found = upward(project)
    assert not found, "Imports from a higher layer:\n" + "\n".join(found)


def test_source_modules_are_short():
    found = too_long(ROOT, SOURCES)
    assert not found, f"Modules over {MAX_LINES} lines (split them):\n" + "\n".join(found)


def test_test_and_bench_modules_are_short():
    found = too_long(ROOT, ("tests", "bench"))
    assert not found, f"Test and benchmark modules over {MAX_LINES} lines (split them):\n" + "\n".join(found)


# --- the checker itself, on a planted package ------------------------------------------------

PLANTED = {
    # a package that imports its own submodules is no cycle with them
    "pkg/__init__.py": "from . import low, high\nfrom .mid import thing\n",
    "pkg/low.py": ("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.high import Top\n\n"
                   "def f():\n    import pkg.mid\n"),
    "pkg/mid.py": "from pkg import low\nthing = 1\n",  # low <-> mid, the back edge hidden in a function
    "pkg/high.py": "from shared_lazy import lazy\n\nlow = lazy('pkg.low')\nBACKENDS = {'x': 'pkg.mid:Thing'}\n",
    "pkg/stray/__init__.py": "",
    "tool.py": "from pkg import high\n",
}
PLANTED_LAYERS = {"top": ("tool", "pkg.high"), "middle": ("pkg", "pkg.mid"), "bottom": ("pkg.low",)}


def _plant(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, Module]:
    for rel, text in {**PLANTED, **(extra or {})}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return scan(tmp_path, ("pkg", "tool.py"))


def test_the_checker_resolves_every_kind_of_import(tmp_path):
    modules = _plant(tmp_path)
    edges = {name: sorted((e.target, e.type_checking) for e in m.edges) for name, m in modules.items()}
    assert edges["pkg"] == [("pkg.high", False), ("pkg.low", False), ("pkg.mid", False)]
    assert edges["pkg.low"] == [("pkg.high", True), ("pkg.mid", False)]
    assert edges["pkg.mid"] == [("pkg.low", False)]
    assert edges["pkg.high"] == [("pkg.low", False), ("pkg.mid", False)]
    assert edges["tool"] == [("pkg.high", False)]


def test_the_checker_finds_a_planted_cycle(tmp_path):
    found = cycles(_plant(tmp_path))
    assert [_show(c) for c in found] == ["pkg.high:3 -> pkg.low:4 -> pkg.high"]
    # without the TYPE_CHECKING import the knot left is low <-> mid, found through the function-level import
    assert [_show(c) for c in cycles(_plant(tmp_path), type_checking=False)] == ["pkg.low:7 -> pkg.mid:1 -> pkg.low"]


def test_the_checker_lets_a_package_import_its_own_submodules(tmp_path):
    modules = _plant(tmp_path, {"pkg/low.py": "", "pkg/mid.py": "thing = 1\n", "pkg/high.py": ""})
    assert cycles(modules) == []


def test_the_checker_finds_upward_imports_and_unplaced_modules(tmp_path):
    modules = _plant(tmp_path)
    assert upward(modules, PLANTED_LAYERS, ("bottom", "middle", "top")) == [
        "pkg.low:4 (bottom) -> pkg.high (top)",
        "pkg.low:7 (bottom) -> pkg.mid (middle)",
        "pkg:1 (middle) -> pkg.high (top)",
    ]
    assert unplaced(modules, PLANTED_LAYERS) == ["pkg.stray"]
    assert layer_of("pkg.stray", {"a": ("pkg.*",), "b": ("pkg.stray.*",)}) == "b"  # the longest pattern wins


def test_the_checker_finds_long_files(tmp_path):
    for rel in ("a/long.py", "a/gen_pb2.py", "shared/db/migrations/versions/0001_x.py", "a/short.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n" * (40 if rel == "a/short.py" else 41))
    assert too_long(tmp_path, ("a", "shared"), limit=40) == ["a/long.py: 41 lines"]
