"""Checks that a handler names a function its module defines (pure functions, no engine)."""
from __future__ import annotations

import ast
import difflib
from typing import Mapping

from chromadb_lambda.util_rules.checks import parse_python


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


def handler_binding_problem(function: str, bindings: Mapping[str, str]) -> str | None:
    """Why `function` cannot be the Lambda's handler, from how its module binds top-level names
    (`source_scan.py`): missing, a class, or a literal value. None when it may be a function; names
    bound at run time (`handle = make_handler()`) are checked in the image (the import check).
    """
    kind = bindings.get(function)
    if kind is None and "*" in bindings:
        return None  # A star import may bind it: the import check in the image tells.
    if kind is None:
        suggestions = close_names(function, frozenset(bindings))
        hint = f" Did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        return f"does not define it.{hint}"
    if kind == "class":
        return "defines it as a class: the Lambda runtime calls the handler with (event, context), so name a function."
    if kind == "literal":
        return "binds it to a literal value, which the Lambda runtime cannot call: name a function."
    return None


def close_names(name: str, candidates: frozenset[str]) -> list[str]:
    return difflib.get_close_matches(name, sorted(candidates), n=3)
