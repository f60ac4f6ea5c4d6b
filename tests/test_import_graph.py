"""Imports among avsearch's modules flow one way: no circles (STYLE.md, "one-way flow").

The graph is read from the source with ast (nothing is imported): an edge for every `import avsearch.x` and
`from avsearch.x import y` (y a module when it is one), at module level or inside a function (a deferred
import still ties the two modules together), `if TYPE_CHECKING:` blocks left out (they never run). A
package's __init__ is an edge only where it is named. `python tests/test_import_graph.py` lists the circles.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import networkx as nx  # a dependency of torch

PACKAGE = Path(__file__).resolve().parent.parent / "avsearch"
# Circles someone else is taking apart, each with its reason; nothing else may join one, and an entry whose
# circle is gone fails the test (remove it). media/detect <-> media/image (issue 28) went with the video
# work's media/pil_open.py (c8667ae); bridge/meta -> fast -> io -> model/heads -> meta went when reading a
# released .pt's metadata moved from meta.py to fast.py (read_bridge_meta).
# store/ann_build -> ann_spill (the guided kind, issue 26 goal 1) -> ann_build (build_spilled's deferred import of
# empty_index and training_rows, which now live in store/ann_train.py): goes when ann_spill imports them from there.
ALLOWED: set[frozenset[str]] = set()


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module under the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, `if TYPE_CHECKING:` bodies left out."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph(root: Path = PACKAGE) -> nx.DiGraph:
    """module -> the avsearch modules it imports."""
    modules = module_names(root)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name)
    return graph


def cycles(graph: nx.DiGraph) -> list[list[str]]:
    """The circles: every strongly connected group of two or more modules, sorted."""
    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def test_no_import_circles_among_avsearch_modules() -> None:
    found = cycles(import_graph())
    new = [c for c in found if frozenset(c) not in ALLOWED]
    assert new == [], "import circles (python tests/test_import_graph.py lists each module's imports):\n" + "\n".join(
        " <-> ".join(c) for c in new
    )
    gone = ALLOWED - {frozenset(c) for c in found}
    assert not gone, f"circles in ALLOWED that are gone (remove them): {[sorted(c) for c in gone]}"


def test_the_walker_sees_a_circle_deferred_and_relative(tmp_path: Path) -> None:
    """The check itself: a circle closed by a relative import inside a function is one; a TYPE_CHECKING
    import and a from-import of a name (not a module) are not edges."""
    pkg = tmp_path / "avsearch"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from avsearch.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import avsearch.d\n")
    (pkg / "d.py").write_text("from avsearch.c import name\n")
    assert cycles(import_graph(pkg)) == [["avsearch.sub.a", "avsearch.sub.b"]]


# Packages every module names but a cold command may not pay for: imported where first used (a function's
# import, or avsearch/lazy_import.py's lazy_module), never when a module is imported.
LAZY = ("faiss",)


def eager_imports(path: Path) -> set[str]:
    """Top-level packages a module imports when it is itself imported: its module and class bodies, with
    their if/try/with blocks (`if TYPE_CHECKING:` bodies left out), not its functions."""
    found: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"), str(path))]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        stack.extend(ast.iter_child_nodes(node))
    return found


def test_faiss_is_imported_on_first_use_only() -> None:
    eager = {name: sorted(eager_imports(path) & set(LAZY)) for name, path in module_names().items()}
    assert {name: found for name, found in eager.items() if found} == {}


def test_the_eager_import_walker(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import faiss\ndef f():\n    import faiss\n"
        "try:\n    from faiss.contrib import x\nexcept ImportError:\n    pass\n"
    )
    assert eager_imports(source) == {"typing", "faiss"}


if __name__ == "__main__":
    graph = import_graph()
    for circle in cycles(graph):
        allowed = " (allowed: ALLOWED)" if frozenset(circle) in ALLOWED else ""
        print(" <-> ".join(circle) + allowed)
        for module in circle:
            print(f"  {module} imports {', '.join(sorted(set(graph.successors(module)) & set(circle)))}")
    sys.exit(1 if any(frozenset(c) not in ALLOWED for c in cycles(graph)) else 0)
