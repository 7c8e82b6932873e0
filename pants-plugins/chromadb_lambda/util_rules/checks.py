"""The checks of a Lambda's closure, with their error types and messages (pure functions, no engine).

Errors: the closure does not parse, reaches a requirement the base lacks, splits a package with the
base, puts two files on one task-root path, keeps growing, or its handler is no function of its
module. Warnings: dynamic imports with a computed name (no inference can see what they load, so the
modules must be declared in `dependencies`) and a context over `[lambda-image].context_size_warning`
(usually a mistake). What the files say (syntax, imports, bindings) comes from `source_scan.py`, run
by the Lambda's interpreter; `closure.py` runs the checks.
"""
from __future__ import annotations

import ast
import difflib
import logging
from typing import Any, Iterable, Mapping, Sequence

from pants.backend.python.target_types import PythonRequirementsField
from pants.backend.python.util_rules.faas import ResolvedPythonFaaSHandler
from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException, Target
from pants.util.strutil import bullet_list, softwrap

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.target_types import ChromadbLambdaHandlerField
from chromadb_lambda.util_rules.module_uses import DynamicImport, computed_dynamic_imports, syntax_problems

logger = logging.getLogger(__name__)

# Star imports and literal dynamic imports can bring modules that bring more: a few rounds suffice.
MAX_INFERENCE_ROUNDS = 10


class ClosureSyntaxError(Exception):
    """A Python file in a handler's closure does not parse."""


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


class MissingThirdPartyRequirementError(Exception):
    """The handler imports a requirement that the base image does not install."""


class SplitPackageError(Exception):
    """The Lambda would copy files into a package whose `__init__.py` only the base image has."""


class UnresolvedClosureError(Exception):
    """Following star imports and literal dynamic imports did not settle."""


class ContextPathCollisionError(Exception):
    """Two closure files land on the same path in the task root once source roots are stripped."""


def missing_requirements(closure: tuple[Target, ...], base_closure: tuple[Target, ...]) -> tuple[Address, ...]:
    """Third-party requirement targets the handler reaches but the base image does not install."""
    provided = {t.address for t in base_closure if t.has_field(PythonRequirementsField)}
    return tuple(
        sorted(t.address for t in closure if t.has_field(PythonRequirementsField) and t.address not in provided)
    )


def missing_requirements_message(address: Address, base: Address, missing: tuple[Address, ...]) -> str:
    return softwrap(
        f"""
        The handler of {address} imports third-party requirements that its `base_image`
        ({base}) does not install, so the image would fail with ImportError at run time:

        {bullet_list(str(a) for a in missing)}

        Add them to the dependencies of {base} (its PEX), or set
        `[lambda-image].missing_third_party = "warning"` to build anyway.
        """
    )


def split_packages(kept: Iterable[str], provided: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """Packages whose `__init__.py` the base provides while the Lambda copies other files of them.

    Python imports such a package from the base (a regular package wins over the task root's
    directory without `__init__.py`), so the copied files could never be imported or read.
    """
    split: dict[str, list[str]] = {}
    for path in kept:
        if path in provided:
            continue
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            package = "/".join(parts[:depth])
            if f"{package}/__init__.py" in provided:
                split.setdefault(package, []).append(path)
                break
    return {package: tuple(sorted(paths)) for package, paths in sorted(split.items())}


def split_packages_message(address: Address, base: Address, split: dict[str, tuple[str, ...]]) -> str:
    files = [path for paths in split.values() for path in paths]
    packages = ", ".join(f"`{p.replace('/', '.')}`" for p in split)
    return softwrap(
        f"""
        The handler of {address} needs files of {packages}, but its `base_image` ({base}) installs
        only part of that: Python would import the package from the base image and never see these
        files copied to the task root:

        {bullet_list(files)}

        Add the targets owning them to the dependencies of {base}, or take the package out of the
        base entirely.
        """
    )


def stripped_path(path: str, source_roots: Iterable[str], unrooted: frozenset[str]) -> str:
    """Where a file lands under the task root: its path below the longest source root that holds it.

    `files` targets are not stripped (Pants semantics): they keep their path from the build root.
    """
    if path in unrooted:
        return path
    roots = sorted((r for r in source_roots if r == "." or path.startswith(f"{r}/")), key=len, reverse=True)
    if not roots or roots[0] == ".":
        return path
    return path[len(roots[0]) + 1 :]


def path_collisions(
    paths: Iterable[str], source_roots: Iterable[str], unrooted: frozenset[str]
) -> dict[str, tuple[str, ...]]:
    """Task-root paths that two or more closure files would both be copied to."""
    origins: dict[str, list[str]] = {}
    roots = tuple(source_roots)
    for path in paths:
        origins.setdefault(stripped_path(path, roots, unrooted), []).append(path)
    return {dest: tuple(sorted(srcs)) for dest, srcs in sorted(origins.items()) if len(srcs) > 1}


def path_collisions_message(address: Address, collisions: dict[str, tuple[str, ...]]) -> str:
    lines = [f"{dest} <- {', '.join(srcs)}" for dest, srcs in collisions.items()]
    return softwrap(
        f"""
        The handler closure of {address} has files from different source roots that would be copied
        to the same path in the image (only one could win, and imports would see that one):

        {bullet_list(lines)}

        Rename one of the modules, or drop the dependency that brings the wrong one (see
        `pants lambda-context {address}` for why each file is there).
        """
    )


def check_context(
    address: Address, report: dict, files: Iterable[tuple[str, int]], subsystem: ChromadbLambdaSubsystem
) -> None:
    """Dynamic imports with computed names and an oversized context warn."""
    dynamic = computed_dynamic_imports(report)
    if dynamic and subsystem.warn_dynamic_imports:
        logger.warning(dynamic_imports_message(str(address), dynamic))
    files = tuple(files)
    total = sum(size for _, size in files)
    if subsystem.context_size_warning and total > subsystem.context_size_warning:
        logger.warning(large_context_message(str(address), total, subsystem.context_size_warning, files))


def check_syntax(address: Address, handler_path: str | None, report: dict) -> None:
    """Every file parses with the Lambda's Python; errors name the path from the build root."""
    problems = syntax_problems(report)
    if not problems:
        return
    python = ".".join(str(v) for v in report.get("python", ()))
    handler_problems = [p for p in problems if p.path == handler_path]
    if handler_problems:
        raise InvalidFieldException(
            f"The handler module of {address} does not parse with the Lambda's Python ({python}): {handler_problems[0]}"
        )
    raise ClosureSyntaxError(
        f"A file in the handler closure of {address} does not parse with the Lambda's Python ({python}): {problems[0]}"
    )


def check_handler_defined(
    target: Target, handler: ResolvedPythonFaaSHandler, handler_path: str | None, report: dict
) -> None:
    field = target[ChromadbLambdaHandlerField]
    if handler_path is None:
        raise InvalidFieldException(
            softwrap(
                f"""
                The `{field.alias}` field in target {target.address} names the module
                `{handler.module}`, but no `python_source` target in its closure owns it
                (looked for {' or '.join(module_path_candidates(handler.module))} under a source root).
                Check the module path, or run `pants tailor` to create the missing `python_sources`.
                """
            )
        )
    problem = handler_binding_problem(handler.func, report.get("handler_bindings") or {})
    if problem:
        raise InvalidFieldException(
            f"The `{field.alias}` field in target {target.address} names `{handler.func}`, but "
            f"`{handler.module}` ({handler_path}) {problem}"
        )


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


def unresolved_closure_message(address: Address, new: Mapping[Address, Any]) -> str:
    """`new`: the roots the last round still added, with what needs each (`ModuleUse`)."""
    return softwrap(
        f"""
        The handler closure of {address} kept growing after {MAX_INFERENCE_ROUNDS}
        rounds of following star imports and literal dynamic imports; still new:

        {bullet_list(f"{a}: {use.describe()}" for a, use in sorted(new.items()))}

        Declare these modules in the `dependencies` field of {address}.
        """
    )
