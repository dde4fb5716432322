"""The import graph of ``mdtrace.*`` has no cycles (issue 12, layering).

Edges are every ``import mdtrace...`` / ``from mdtrace... import`` (absolute or relative), at
module level AND inside functions: a lazy import only postpones a cycle to the first call, and
the issue asks for no circle at all.  Imports under ``if TYPE_CHECKING:`` are left out: they
never run.  A ``from pkg import name`` whose name is a submodule is an edge to that submodule.

Packages are checked too: a subpackage imports another when any module under it does (so the
engine and its detectors, now ``mdtrace.engine.detectors``, cannot lean on each other across a
package line again).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mdtrace"


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        pkg = parts[-1] == "__init__"
        if pkg:
            parts.pop()
        mods[".".join(parts)] = (p, pkg)
    return mods


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_edges(mods: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """module -> the mdtrace modules it imports (any level, TYPE_CHECKING excluded)."""
    def known(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, (path, pkg) in mods.items():
        base = mod if pkg else mod.rpartition(".")[0]
        todo: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
        while todo:
            node = todo.pop()
            for ch in ast.iter_child_nodes(node):
                if _is_type_checking(ch):
                    todo.extend(ch.orelse)
                    continue
                targets: list[str] = []
                if isinstance(ch, ast.ImportFrom):
                    if ch.level:
                        b = base
                        for _ in range(ch.level - 1):
                            b = b.rpartition(".")[0]
                        src = b + ("." + ch.module if ch.module else "")
                    else:
                        src = ch.module or ""
                    if src == "mdtrace" or src.startswith("mdtrace."):
                        for a in ch.names:
                            sub = f"{src}.{a.name}"
                            targets.append(sub if sub in mods else known(src))
                elif isinstance(ch, ast.Import):
                    targets = [known(a.name) for a in ch.names
                               if a.name == "mdtrace" or a.name.startswith("mdtrace.")]
                edges[mod].update(t for t in targets if t and t != mod)
                todo.append(ch)
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def package_graph(mods: dict[str, tuple[Path, bool]],
                  edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Subpackage -> subpackages, where each module belongs to its innermost package and an
    edge joins two packages neither of which contains the other."""
    pkgs = {m for m, (_, pkg) in mods.items() if pkg}

    def owner(m: str) -> str:
        return m if m in pkgs else m.rpartition(".")[0]

    g: dict[str, set[str]] = {p: set() for p in pkgs}
    for src, dsts in edges.items():
        a = owner(src)
        for dst in dsts:
            b = owner(dst)
            if a == b or a.startswith(b + ".") or b.startswith(a + "."):
                continue    # a package and its own subpackages: checked at module level
            g[a].add(b)
    return g


def _describe(found: list[list[str]], edges: dict[str, set[str]]) -> str:
    lines = []
    for comp in found:
        inside = set(comp)
        lines.append(" <-> ".join(comp) + ": " + "; ".join(
            f"{a} -> {b}" for a in comp for b in sorted(edges.get(a, ())) if b in inside))
    return "\n".join(lines)


def test_the_graph_is_real(tmp_path: Path) -> None:
    """The walk sees the imports it must: a test of the test."""
    mods = _modules()
    edges = import_edges(mods)
    assert "mdtrace.engine.core" in mods and "mdtrace.engine.detectors.base" in mods
    assert "mdtrace.engine.detectors" in edges["mdtrace.engine.core"]
    assert "mdtrace.engine.model" in edges["mdtrace.engine.detectors.not_reaped"]
    # a function-level import counts (render() imports each renderer when asked for it)
    assert "mdtrace.frontends.report.text" in edges["mdtrace.frontends.report"]
    # a TYPE_CHECKING-only import is not an edge
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                 "    from mdtrace import b\n")
    b.write_text("def f():\n    from mdtrace import a\n")
    toy = import_edges({"mdtrace.a": (a, False), "mdtrace.b": (b, False)})
    assert toy == {"mdtrace.a": set(), "mdtrace.b": {"mdtrace.a"}}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_import_cycle() -> None:
    mods = _modules()
    edges = import_edges(mods)
    found = cycles(edges)
    assert not found, "import cycles between mdtrace modules:\n" + _describe(found, edges)


def test_no_package_import_cycle() -> None:
    mods = _modules()
    graph = package_graph(mods, import_edges(mods))
    found = cycles(graph)
    assert not found, "import cycles between mdtrace packages:\n" + _describe(found, graph)
