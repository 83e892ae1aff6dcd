"""Layering: training/ never imports inference/ (Ray workers and training share only the core package)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(("." * node.level) + node.module)
    return out


def test_training_never_imports_inference():
    offenders = {
        f"{p.relative_to(ROOT)}: {m}"
        for p in (ROOT / "training").glob("*.py")
        for m in imported_modules(p)
        if m.startswith(("sikap.inference", "inference", "..inference"))
    }
    assert not offenders, sorted(offenders)


def test_the_check_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from sikap.inference.readers import iter_articles\n", encoding="utf-8")
    assert "sikap.inference.readers" in imported_modules(f)
