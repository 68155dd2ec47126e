"""The house rules, measured from the code: the import graph of the library, the CLI and
the benchmark suite has no circle and no import that runs back up a floor, and no
source file is over 500 lines (docs/architecture.md, "Floors").

Every ``import`` counts, wherever it stands: at the top, inside a function, or under
``TYPE_CHECKING`` (a reader follows it all the same).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Top-level package name -> folder.
PACKAGES = {"numbacnn": ROOT / "numbacnn", "numbacnn_cli": ROOT / "cli", "bench": ROOT / "bench"}
MAX_LINES = 500

# The floors, lowest first: a module may import its own floor (without a circle) and the
# floors below it, never one above. A module is on the floor of its longest matching prefix.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("numbacnn.errors", "numbacnn.limits", "numbacnn.version", "numbacnn.geometry",
     "numbacnn.init"),
    ("numbacnn.kernels",),
    ("numbacnn.backends",),
    ("numbacnn.device",),
    ("numbacnn.layers",),
    ("numbacnn.spec", "numbacnn.shapes", "numbacnn.network"),
    ("numbacnn.io",),
    ("numbacnn.tools",),
    ("numbacnn.training",),
    ("numbacnn", "numbacnn.api"),  # the package itself: the public names
    ("numbacnn_cli",),
    ("bench",),
)


def module_files() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) if parts else None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports (bench's scripts import each other by bare
    name: ``import suite`` is ``bench.suite``)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names = [stem] + [f"{stem}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is None and module.startswith("bench."):
                target = _resolve(f"bench.{name}", modules)
            if target is not None and target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def floor_of(module: str) -> int:
    best, best_len = -1, -1
    for index, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS")
    return best


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_on_a_floor():
    for module in module_files():
        floor_of(module)


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_no_import_runs_up_a_floor():
    graph = import_graph()
    upward = sorted(f"{a} (floor {floor_of(a)}) imports {b} (floor {floor_of(b)})"
                    for a, targets in graph.items() for b in targets
                    if floor_of(b) > floor_of(a))
    assert upward == []


@pytest.mark.parametrize("folder", ["numbacnn", "cli", "bench", "tests"])
def test_no_source_file_over_500_lines(folder):
    long = sorted(f"{path.relative_to(ROOT)}: {n} lines"
                  for path in (ROOT / folder).rglob("*.py")
                  if (n := len(path.read_text().splitlines())) > MAX_LINES)
    assert long == []


def test_the_checks_see_a_circle_and_an_upward_import():
    """The checks themselves can fail: a made-up graph with both faults is caught."""
    graph = {"numbacnn.network": {"numbacnn.training.trainer"},
             "numbacnn.training.trainer": {"numbacnn.network"}}
    assert circles(graph) == [["numbacnn.network", "numbacnn.training.trainer"]]
    assert floor_of("numbacnn.training.trainer") > floor_of("numbacnn.network")
