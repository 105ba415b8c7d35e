"""No import cycles between panoplace's modules, counting imports made inside functions.

The graph is read from the source with ``ast``: every ``import``/``from ... import`` anywhere in a
module (top level, inside functions, classes, ``try`` blocks) is an edge, except imports under
``if TYPE_CHECKING:`` (they never run). ``from pkg import name`` points at ``pkg.name`` when that
is a module, else at ``pkg`` (its ``__init__``). Importing ``a.b.c`` also runs ``a/__init__`` and
``a/b/__init__``; those implicit parent-package edges are not counted, or every re-exporting
``__init__`` would form a "cycle" with its own submodules.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, Set, Tuple

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "panoplace"

# Cycles that exist on main today and are being removed by their owners (issue 10 item 9).
# The test fails when one of these disappears too, so remove its entry when you break it;
# the list must end empty.
KNOWN_CYCLES: Set[FrozenSet[str]] = set()

# Imports made inside functions are for optional heavy extras only (one clear error line when the
# extra is missing). Two other places may import lazily: the CLI verb modules (`panoplace/cli/`),
# which `panoplace --help` imports all at once, so each imports its library step when it runs.
OPTIONAL_EXTRAS = ("ray", "fastapi", "uvicorn", "starlette", "multipart", "onnxruntime", "onnx", "av",
                   "torch.utils.tensorboard", "tensorboard", "playwright", "prometheus_client")
LAZY_IMPORT_PACKAGES = ("panoplace.cli",)
# Function-level imports of core dependencies and of panoplace's own modules that exist today
# (import statements per module). A module may not exceed its count and no other module may have
# any: import at module level, or move the shared piece down a layer if that makes a cycle.
# Lower a count when you remove some. What is left: torch (a core dependency) imported inside the
# one function of a torch-free module that needs it, so that importing the module stays light.
FUNCTION_LEVEL_DEBT: Dict[str, int] = {
    "panoplace.decode": 1,
    "panoplace.scene.categories": 1,
}


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[Tuple[ast.stmt, bool]]:
    """Every import statement with whether it sits inside a function."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[Tuple[ast.stmt, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    yield from walk_stmt(sub, in_function)
                continue
            yield from walk_stmt(child, in_function)

    def walk_stmt(node: ast.AST, in_function: bool) -> Iterator[Tuple[ast.stmt, bool]]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
            return
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from walk(node, inner)

    yield from walk(tree, False)


def import_graph(root: Path) -> Tuple[Dict[str, Set[str]], List[Tuple[str, int, str]]]:
    """Edges between the modules of the package at ``root`` and the function-level imports.

    Returns ``(graph, function_level)``: ``graph[a]`` is the set of package modules ``a`` imports;
    ``function_level`` lists ``(module, line, target)`` for imports made inside functions.
    """
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    graph: Dict[str, Set[str]] = {m: set() for m in modules}
    function_level: List[Tuple[str, int, str]] = []
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, in_function in _imports(tree):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                if in_function:
                    function_level.append((mod, node.lineno, target))
                # `import a.b.c` or `from a.b import c` where a.b.c is not ours: nearest module of ours
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != mod:
                    graph[mod].add(target)
    return graph, function_level


def cycles(graph: Dict[str, Set[str]]) -> Set[FrozenSet[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    found: Set[FrozenSet[str]] = set()
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.add(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.add(frozenset(comp))
    return found


def _write(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "pkg"


def test_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from pkg import b\n    return b\n",
        "pkg/b.py": "from .c import thing\n",
        "pkg/c.py": "import pkg.a\nthing = 1\n",
        "pkg/d.py": "import os\n",
    })
    graph, function_level = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.d"] == set()
    assert function_level == [("pkg.a", 2, "pkg.b")]
    assert cycles(graph) == {frozenset({"pkg.a", "pkg.b", "pkg.c"})}


def test_graph_skips_type_checking_imports(tmp_path: Path) -> None:
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "from pkg.sub.x import X\n",
        "pkg/sub/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.y import Y\nX = 1\n",
        "pkg/sub/y.py": "from pkg.sub import x\nY = 2\n",
    })
    graph, _ = import_graph(pkg)
    assert graph["pkg.sub.x"] == set()
    assert graph["pkg.sub.y"] == {"pkg.sub.x"}
    assert graph["pkg.sub"] == {"pkg.sub.x"}
    assert cycles(graph) == set()


def test_no_import_cycles_in_panoplace() -> None:
    graph, _ = import_graph(PACKAGE_ROOT)
    found = cycles(graph)
    new = found - KNOWN_CYCLES
    gone = KNOWN_CYCLES - found
    assert not new, f"import cycles (move the shared piece down a layer): {[sorted(c) for c in new]}"
    assert not gone, f"these listed cycles are gone, remove them from KNOWN_CYCLES: {[sorted(c) for c in gone]}"


def _is_extra(target: str) -> bool:
    return any(target == e or target.startswith(e + ".") for e in OPTIONAL_EXTRAS)


def needless_function_level_imports(function_level: List[Tuple[str, int, str]]) -> Dict[str, List[int]]:
    """Lines of function-level imports that are neither of an optional extra nor in the CLI."""
    out: Dict[str, List[int]] = {}
    for mod, line, target in function_level:
        if _is_extra(target) or any(mod == p or mod.startswith(p + ".") for p in LAZY_IMPORT_PACKAGES):
            continue
        if line not in out.setdefault(mod, []):
            out[mod].append(line)
    return out


def test_needless_function_level_imports_are_counted(tmp_path: Path) -> None:
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    import numpy\n    import ray\n    from pkg import b, c\n",
        "pkg/b.py": "",
        "pkg/c.py": "",
    })
    _, function_level = import_graph(pkg)
    assert needless_function_level_imports(function_level) == {"pkg.a": [2, 4]}


def test_function_level_imports_only_for_optional_extras() -> None:
    _, function_level = import_graph(PACKAGE_ROOT)
    found = needless_function_level_imports(function_level)
    over = {m: lines for m, lines in found.items() if len(lines) > FUNCTION_LEVEL_DEBT.get(m, 0)}
    assert not over, (
        "imports inside functions (module: lines) beyond FUNCTION_LEVEL_DEBT; import at module level "
        f"(lazy imports are for optional extras {OPTIONAL_EXTRAS} only): {over}")


if __name__ == "__main__":  # pragma: no cover - a listing for humans
    g, fl = import_graph(PACKAGE_ROOT)
    for m, line, t in fl:
        print(f"{m}:{line} -> {t}")
    print(len({(m, line) for m, line, _ in fl}), "function-level import statements;",
          sorted(sorted(c) for c in cycles(g)))
    pytest.main([__file__, "-q"])
