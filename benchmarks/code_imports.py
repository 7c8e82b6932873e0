"""What a person can know about a Lambda by reading its code, independent of the plugin: the files its
handler's import statements reach (followed through first-party modules) and the COPY list a person
writes for it (whole top-level packages)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

SOURCE_ROOTS = ("src", "lambdas")


def module_index(root: Path) -> dict[str, str]:
    """Module name -> repo-relative path, for every Python file under the source roots."""
    index = {}
    for source_root in SOURCE_ROOTS:
        for path in sorted((root / source_root).rglob("*.py")):
            rel = path.relative_to(root / source_root).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if parts:
                index[".".join(parts)] = str(path.relative_to(root))
    return index


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Every module name a file's import statements may load, parents included, relative ones resolved."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return names


def module_closure(root: Path, index: dict[str, str], start: str) -> set[str]:
    """The first-party files importing `start` loads, by following import statements."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen or module not in index:
            continue
        seen.add(module)
        path = index[module]
        todo.extend(imported_names((root / path).read_text(), module, path.endswith("__init__.py")))
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # its packages' __init__
    return {index[m] for m in seen}


def base_provided_packages(root: Path) -> set[str]:
    """First-party packages the base image installs (`src/<package>` dependencies in base/BUILD)."""
    return set(re.findall(r'"src/([A-Za-z0-9_]+)', (root / "base" / "BUILD").read_text()))


def hand_written_copy_list(closure: set[str], provided: set[str]) -> list[str]:
    """Whole top-level packages (and the Lambda's folder) holding the files the handler imports."""
    tops = sorted({"/".join(path.split("/")[:2]) for path in closure})
    return [top for top in tops if top.split("/")[1] not in provided]
