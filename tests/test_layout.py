"""The packages' imports run one way: read from the source with ``ast``, nothing imported.

``import_graph`` parses every ``.py`` file of the packages and collects every import it
finds, wherever it stands: at module level, inside functions, under ``if TYPE_CHECKING:``,
in ``try`` blocks, and ``importlib.import_module("literal")`` calls; all of them count, since
each names a module the importer depends on.  ``from pkg import name`` resolves to the
module ``pkg.name`` when that is a module of the packages, else to ``pkg``; relative imports
resolve against the importer's package.  Importing ``a.b`` runs ``a/__init__.py`` too, but
that implicit edge is not recorded (every module would then sit in a cycle with its
package's ``__init__``).  Only edges between modules of the packages are kept.

``find_cycle`` returns one import cycle of a graph, or None.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("conformance", "reference")


def module_names(root: Path, packages: Sequence[str] = PACKAGES) -> dict[str, Path]:
    """Every module of ``packages`` under ``root`` by dotted name (a package by its own name,
    for its ``__init__.py``)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def import_graph(root: Path, packages: Sequence[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (see the module docstring)."""
    modules = module_names(root, packages)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {target for imported in _imported_names(tree, package)
                       if (target := _resolve(imported, modules)) is not None
                       and target != name}
    return graph


def _imported_names(tree: ast.AST, package: str) -> Iterable[str]:
    """Every dotted name an import in ``tree`` refers to; ``from m import n`` gives ``m.n``
    (which ``_resolve`` cuts back to ``m`` when ``n`` is not a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            yield from (base if alias.name == "*" else f"{base}.{alias.name}"
                        for alias in node.names)
        elif _is_literal_import_call(node):
            assert isinstance(node, ast.Call) and isinstance(node.args[0], ast.Constant)
            yield str(node.args[0].value)


def _absolute(module: str | None, level: int, package: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` inside ``package``."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _is_literal_import_call(node: ast.AST) -> bool:
    """``importlib.import_module("m")``, ``import_module("m")`` or ``__import__("m")``."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    first = node.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return False
    function = node.func
    called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
    return called in ("import_module", "__import__")


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of ``modules``; None for outside modules."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[m1, m2, ..., m1]`` (each imports the next), or None.
    Deterministic: modules are visited in sorted order."""
    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            cycle = _cycle_from(start, graph, done)
            if cycle is not None:
                return cycle
    return None


def _cycle_from(start: str, graph: dict[str, set[str]], done: set[str]) -> list[str] | None:
    """Depth-first from ``start`` without recursion (a deep import chain must not overflow
    the stack); ``done`` collects the modules fully explored."""
    path = [start]
    on_path = {start}
    pending = [iter(sorted(graph.get(start, ())))]
    while pending:
        following = next(pending[-1], None)
        if following is None:
            finished = path.pop()
            on_path.discard(finished)
            done.add(finished)
            pending.pop()
            continue
        if following in on_path:
            return [*path[path.index(following):], following]
        if following not in done:
            path.append(following)
            on_path.add(following)
            pending.append(iter(sorted(graph.get(following, ()))))
    return None


def subgraph(graph: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    """The modules of ``package`` and the imports among them."""
    def inside(name: str) -> bool:
        return name == package or name.startswith(package + ".")
    return {name: {t for t in targets if inside(t)}
            for name, targets in graph.items() if inside(name)}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


# --- the rules ---------------------------------------------------------------------------------


def test_the_graph_sees_the_packages(graph: dict[str, set[str]]) -> None:
    # a parser that found nothing would pass every rule below
    assert "reference.oracle" in graph and "conformance.cli" in graph
    assert "reference.formats" in graph["reference.oracle"] or any(
        "reference.formats" in graph[m] for m in graph["reference.oracle"])
    assert "reference.oracle" in graph["conformance.cases.problem"]


def test_reference_imports_nothing_from_conformance(graph: dict[str, set[str]]) -> None:
    offending = {name: sorted(t for t in targets if t.split(".")[0] == "conformance")
                 for name, targets in graph.items() if name.split(".")[0] == "reference"}
    offending = {name: targets for name, targets in offending.items() if targets}
    assert not offending, f"reference/ imports conformance/: {offending}"


def test_reference_has_no_import_cycle(graph: dict[str, set[str]]) -> None:
    cycle = find_cycle(subgraph(graph, "reference"))
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_no_adapter_imports_another(graph: dict[str, set[str]]) -> None:
    """An ``*_adapter`` module reaches no other ``*_adapter`` module, directly or through
    the modules it imports: each framework's adapter stands alone."""
    adapters = sorted(m for m in graph
                      if m.startswith("conformance.adapters.") and m.endswith("_adapter"))
    assert len(adapters) >= 3  # torch, jax, tensorflow
    for adapter in adapters:
        reached = _reachable(graph, adapter)
        others = sorted(m for m in reached if m in adapters and m != adapter)
        assert not others, f"{adapter} imports {others}"


# The pipeline's layers, from the bottom: a module may import its own layer and those below.
LAYERS = (
    ("reference",),
    ("conformance.files", "conformance.cases"),
    ("conformance.results",),
    ("conformance.oracle",),
    ("conformance.adapters",),
    ("conformance.judge",),
    ("conformance.run", "conformance.report", "conformance.hunt"),
    # the package itself is a door: ``conformance.audit`` (in ``auditing``)
    ("conformance", "conformance.cli", "conformance.pytest_plugin", "conformance.__main__",
     "conformance.auditing", "conformance.ci_commands"),
)
SIDE_BY_SIDE = 6  # run and report share a layer and never import each other


def layer_of(module: str) -> int:
    """The index in ``LAYERS`` of the longest prefix naming ``module``'s package."""
    best, depth = -1, -1
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = index, len(prefix)
    assert best >= 0, f"{module} is in no layer of LAYERS"
    return best


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module from a higher layer, or between run and report."""
    found = []
    for module, imported in graph.items():
        for target in imported:
            up = layer_of(target) > layer_of(module)
            across = (layer_of(target) == layer_of(module) == SIDE_BY_SIDE
                      and target.split(".")[1] != module.split(".")[1])
            if up or across:
                found.append(f"{module} -> {target}")
    return sorted(found)


def test_the_whole_tree_has_no_import_cycle(graph: dict[str, set[str]]) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_imports_run_down_the_pipeline(graph: dict[str, set[str]]) -> None:
    assert upward_imports(graph) == []


def test_an_upward_import_is_caught() -> None:
    graph = {"conformance.cases.loading": {"conformance.judge.compare"},
             "conformance.judge.compare": {"reference.formats"},
             "conformance.run.runner": {"conformance.report.page"},
             "conformance.report.page": set(), "reference.formats": set()}
    assert upward_imports(graph) == ["conformance.cases.loading -> conformance.judge.compare",
                                     "conformance.run.runner -> conformance.report.page"]


def test_a_cycle_added_to_the_real_graph_is_caught(graph: dict[str, set[str]]) -> None:
    with_cycle = {**graph, "conformance.run.summary": {*graph["conformance.run.summary"],
                                                       "conformance.run.progress"}}
    assert find_cycle(with_cycle) == ["conformance.run.progress", "conformance.run.summary",
                                      "conformance.run.progress"]


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for following in graph.get(todo.pop(), ()):
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


# --- the checker itself --------------------------------------------------------------------------


def _package(root: Path, files: dict[str, str]) -> Path:
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text('"""A tiny package."""\n')
    for name, text in files.items():
        (root / "pkg" / f"{name}.py").write_text(text)
    return root


@pytest.mark.parametrize("b_imports_a", [
    "from pkg import a\n",
    "import pkg.a as alias\n",
    "from . import a\n",
    "from .a import thing\n",
    "def late():\n    from pkg.a import thing\n    return thing\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import thing\n",
    "import importlib\nimportlib.import_module('pkg.a')\n",
])
def test_find_cycle_catches_two_modules_that_import_each_other(tmp_path: Path,
                                                               b_imports_a: str) -> None:
    root = _package(tmp_path, {"a": "import os\nfrom pkg.b import other\nthing = 1\n",
                               "b": b_imports_a + "other = 2\n"})
    graph = import_graph(root, ["pkg"])
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]


def test_find_cycle_passes_an_acyclic_pair(tmp_path: Path) -> None:
    root = _package(tmp_path, {"a": "from pkg.b import other\nthing = 1\n",
                               "b": "import os\nfrom pkg import __doc__ as doc\nother = 2\n"})
    graph = import_graph(root, ["pkg"])
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg"}}
    assert find_cycle(graph) is None


def test_find_cycle_on_longer_and_diamond_graphs() -> None:
    diamond = {"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}
    assert find_cycle(diamond) is None  # d is reached twice, but no path returns
    assert find_cycle({**diamond, "d": {"a"}}) == ["a", "b", "d", "a"]
    assert find_cycle({"x": {"x"}}) == ["x", "x"]
