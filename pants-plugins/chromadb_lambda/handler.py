"""Checks that a handler names a function its module defines (pure functions, no engine)."""
from __future__ import annotations

import ast
import difflib

from chromadb_lambda.checks import parse_python


def module_path_candidates(module: str) -> tuple[str, str]:
    """Source-root-relative paths a module may live at: `a/b.py` or `a/b/__init__.py`."""
    base = module.replace(".", "/")
    return f"{base}.py", f"{base}/__init__.py"


def defined_names(source: bytes, path: str) -> frozenset[str]:
    """Top-level names a module binds: functions, classes, assignments and imports.

    Raises `ClosureSyntaxError` (path and line) if the module does not parse.
    """
    tree = parse_python(path, source)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


def close_names(name: str, candidates: frozenset[str]) -> list[str]:
    return difflib.get_close_matches(name, sorted(candidates), n=3)
