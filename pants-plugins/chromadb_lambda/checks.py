"""Checks of a handler's closure that inference alone cannot make (pure functions, no engine).

- every Python file parses (a syntax error names its file and line);
- dynamic imports (`importlib.import_module(name)`, `__import__(name)` with a non-literal name) are
  reported: no inference can see what they load, so the modules must be declared in `dependencies`;
- a context larger than a threshold is reported with its largest files: usually a mistake.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Iterable, Sequence

from pants.util.strutil import bullet_list, softwrap


class ClosureSyntaxError(Exception):
    """A Python file in a handler's closure does not parse."""


@dataclass(frozen=True)
class DynamicImport:
    path: str
    line: int
    call: str


def _is_dynamic_import_call(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name) and func.id in ("__import__", "import_module"):
        name = func.id
    elif isinstance(func, ast.Attribute) and func.attr == "import_module":
        name = f"{getattr(func.value, 'id', '...')}.import_module"
    else:
        return None
    if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return None  # A literal name: Pants' inference sees string imports where configured.
    return name


def parse_python(path: str, source: bytes) -> ast.Module:
    """Parses one file, or raises `ClosureSyntaxError` naming its path and line."""
    try:
        return ast.parse(source, filename=path)
    except SyntaxError as e:
        raise ClosureSyntaxError(f"{path}:{e.lineno}: {e.msg}") from e


def scan_python_file(path: str, source: bytes) -> tuple[DynamicImport, ...]:
    """Parses one file; returns its dynamic imports or raises `ClosureSyntaxError`."""
    tree = parse_python(path, source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            call = _is_dynamic_import_call(node)
            if call:
                found.append(DynamicImport(path, node.lineno, call))
    return tuple(sorted(found, key=lambda d: d.line))


def dynamic_imports_message(address: str, imports: Sequence[DynamicImport]) -> str:
    return softwrap(
        f"""
        The handler closure of {address} imports modules by a computed name, which no dependency
        inference can see; the modules they load will be missing from the image unless declared:

        {bullet_list(f"{d.path}:{d.line}: {d.call}(...)" for d in imports)}

        Add the modules they can load to the `dependencies` field of {address}.
        """
    )


def large_context_message(address: str, total: int, threshold: int, files: Iterable[tuple[str, int]]) -> str:
    largest = sorted(files, key=lambda f: (-f[1], f[0]))[:5]
    return softwrap(
        f"""
        The build context of {address} is {total} bytes, over `[lambda-image].context_size_warning`
        ({threshold}); a handler closure this large usually pulls in something by mistake.
        Largest files:

        {bullet_list(f"{path}: {size} bytes" for path, size in largest)}

        Run `pants lambda-context {address}` to see why each file is there.
        """
    )
