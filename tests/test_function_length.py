"""No function in src/ is over 80 lines (DESIGN.md style: small functions; split into setup / work / finish)."""

import ast
from pathlib import Path

import fluidrec

LIMIT = 80


def long_functions(root: Path, limit: int = LIMIT) -> list[str]:
    out = []
    for p in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit:
                out.append(f"{p.relative_to(root.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    return out


def test_finder_counts_lines(tmp_path):
    (tmp_path / "m.py").write_text("def short():\n    return 1\n\n\ndef long():\n" + "    x = 1\n" * 5)
    assert long_functions(tmp_path, limit=5) == [f"{tmp_path.name}/m.py:5 long (6 lines)"]


def test_no_function_over_80_lines():
    assert long_functions(Path(fluidrec.__file__).resolve().parent) == []
