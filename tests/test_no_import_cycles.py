"""No two fluidrec modules import each other, directly or through others, lazy imports included.

A cycle hidden in a function-level import still couples the two modules (the ranker's
backbone once imported its own fast path back); package ``__init__`` files are facades that
re-export, so edges into them are ignored.
"""

import ast
from pathlib import Path

import fluidrec

SRC = Path(fluidrec.__file__).resolve().parent.parent


def _modules() -> dict[str, Path]:
    mods = {}
    for p in (SRC / "fluidrec").rglob("*.py"):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the fluidrec modules it imports anywhere in its body (packages left out)."""
    mods = _modules()
    packages = {m for m, p in mods.items() if p.name == "__init__.py"}
    graph: dict[str, set[str]] = {}
    for m, p in mods.items():
        if m in packages:
            continue
        out = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fluidrec"):
                out |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
        graph[m] = {t for t in out if t in mods and t not in packages and t != m}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_by_hand():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    assert "fluidrec.ranker.backbone" in graph and "fluidrec.encoder.model" in graph  # the scan sees the tree
    assert cycles(graph) == []
