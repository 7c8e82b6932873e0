"""Messages of the closure checks that inference alone cannot make (pure functions, no engine).

- dynamic imports (`importlib.import_module(name)`, `__import__(name)` with a computed name) are
  reported: no inference can see what they load, so the modules must be declared in `dependencies`;
- a context larger than a threshold is reported with its largest files: usually a mistake.

What the files say (syntax, imports) comes from `source_scan.py`, run by the Lambda's interpreter.
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


def parse_python(path: str, source: bytes) -> ast.Module:
    """Parses one file with Pants' own interpreter (only for `tailor`, which reads handler candidates
    before any target exists); closure checks use the Lambda's interpreter (see `source_scan.py`)."""
    try:
        return ast.parse(source, filename=path)
    except SyntaxError as e:
        raise ClosureSyntaxError(f"{path}:{e.lineno}: {e.msg}") from e


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
