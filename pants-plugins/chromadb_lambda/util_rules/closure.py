"""What goes into a Lambda image: the handler's first-party closure minus what the base provides.

This is the one source of truth for an image's content: packaging, the context manifest and (later)
the content key all read `LambdaClosure`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterable

from pants.backend.docker.target_types import DockerImageSourceField, DockerImageTarget
from pants.backend.python.dependency_inference.module_mapper import (
    PythonModuleOwners,
    PythonModuleOwnersRequest,
)
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PythonRequirementsField, PythonResolveField, PythonSourceField
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.faas import (
    ResolvedPythonFaaSHandler,
    ResolvePythonFaaSHandlerRequest,
)
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFiles,
    PythonSourceFilesRequest,
    StrippedPythonSourceFiles,
)
from pants.engine.addresses import Address, AddressInput, Addresses, UnparsedAddressInputs
from pants.engine.fs import CreateDigest, Digest, DigestEntries, FileEntry
from pants.engine.internals.graph import Owners, OwnersRequest
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    Dependencies,
    DependenciesRequest,
    ExplicitlyProvidedDependencies,
    InvalidFieldException,
    Target,
    Targets,
    TransitiveTargets,
    TransitiveTargetsRequest,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.util.strutil import bullet_list, softwrap

from chromadb_lambda.util_rules.checks import (
    ClosureSyntaxError,
    dynamic_imports_message,
    large_context_message,
)
from chromadb_lambda.util_rules.handler_checks import handler_binding_problem, module_path_candidates
from chromadb_lambda.util_rules.module_uses import (
    AmbiguousImportError,
    ModuleUse,
    ModuleOwners,
    ambiguous_imports_message,
    computed_dynamic_imports,
    module_uses,
    resolve_module_uses,
    syntax_problems,
)
from chromadb_lambda.util_rules.scan import ScannedFile, SourceScan, SourceScanRequest
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem, MissingThirdPartyBehavior
from chromadb_lambda.target_types import (
    ChromadbLambdaBaseImageField,
    ChromadbLambdaDependenciesField,
    ChromadbLambdaHandlerField,
    base_image_address_input,
)

logger = logging.getLogger(__name__)


class MissingThirdPartyRequirementError(Exception):
    """The handler imports a requirement that the base image does not install."""


class SplitPackageError(Exception):
    """The Lambda would copy files into a package whose `__init__.py` only the base image has."""


class UnresolvedClosureError(Exception):
    """Following star imports and literal dynamic imports did not settle."""


class ContextPathCollisionError(Exception):
    """Two closure files land on the same path in the task root once source roots are stripped."""


@dataclass(frozen=True)
class ContextFile:
    path: str  # Relative to the task root (source root stripped).
    size: int


@dataclass(frozen=True)
class LambdaClosureRequest:
    address: Address


@dataclass(frozen=True)
class LambdaClosure:
    address: Address
    handler_module: str
    handler_function: str
    base_address: Address
    # Where the closure starts: the handler's module and declared dependencies (not the base).
    roots: tuple[Address, ...]
    # The files to copy into the task root, source roots stripped, minus what the base provides.
    digest: Digest
    files: tuple[ContextFile, ...]
    # Closure files left out because the base image already provides them.
    provided_by_base: tuple[str, ...]
    # Roots the plugin added because a closure file needs them where Pants infers nothing (a star
    # import through `__all__`, a literal `import_module`), with the place that needs each.
    inferred_roots: tuple[tuple[Address, str], ...] = ()

    @property
    def handler(self) -> str:
        """The handler as AWS Lambda names it: `dotted.module.function`."""
        return f"{self.handler_module}.{self.handler_function}"

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


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


def module_name(stripped: str) -> str:
    """The module a file is in the task root: `pkg/mod.py` -> `pkg.mod`, `pkg/__init__.py` -> `pkg`."""
    base = stripped[: -len(".py")]
    if base == "__init__" or base.endswith("/__init__"):
        base = base[: -len("__init__")].rstrip("/")
    return base.replace("/", ".")


def check_context(
    address: Address, report: dict, files: tuple[ContextFile, ...], subsystem: ChromadbLambdaSubsystem
) -> None:
    """Dynamic imports with computed names and an oversized context warn."""
    dynamic = computed_dynamic_imports(report)
    if dynamic and subsystem.warn_dynamic_imports:
        logger.warning(dynamic_imports_message(str(address), dynamic))
    total = sum(f.size for f in files)
    if subsystem.context_size_warning and total > subsystem.context_size_warning:
        logger.warning(
            large_context_message(str(address), total, subsystem.context_size_warning, ((f.path, f.size) for f in files))
        )


async def _resolve_base_image(target: Target) -> Target:
    field = target[ChromadbLambdaBaseImageField]
    addresses = await Get(Addresses, UnparsedAddressInputs, base_image_address_input(field, target.address))
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(addresses[0], description_of_origin=f"the `{field.alias}` field of {target.address}"),
    )
    base = wrapped.target
    if not base.has_field(DockerImageSourceField):
        raise InvalidFieldException(
            softwrap(
                f"""
                The `{field.alias}` field in target {target.address} must be the address of a
                `{DockerImageTarget.alias}` target, but {base.address} is a `{base.alias}`.
                """
            )
        )
    return base


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


def _check_handler_defined(
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


async def _scan_closure(
    address: Address,
    closure: TransitiveTargets,
    unstripped: PythonSourceFiles,
    handler_path: str | None,
    python_setup: PythonSetup,
) -> dict:
    """The scan report of every Python file of the closure, by the Lambda's interpreter."""
    entries = await Get(DigestEntries, Digest, unstripped.source_files.snapshot.digest)
    roots = unstripped.source_roots
    unrooted = frozenset(unstripped.source_files.unrooted_files)
    files = tuple(
        ScannedFile(e, module_name(stripped_path(e.path, roots, unrooted)))
        for e in entries
        if isinstance(e, FileEntry) and e.path.endswith(".py")
    )
    constraints = InterpreterConstraints.create_from_targets(closure.closure, python_setup) or InterpreterConstraints(
        python_setup.interpreter_constraints
    )
    scan = await Get(
        SourceScan,
        SourceScanRequest(files, constraints, handler_path or "", f"Reading the Python files of {address}"),
    )
    return scan.parsed()


def self_file_dependencies(target: Target) -> tuple[str, ...]:
    """Files named in the `dependencies` field by a file address with no target name."""
    paths = []
    for raw in target[ChromadbLambdaDependenciesField].value or ():
        if raw.startswith("!"):
            continue
        parsed = AddressInput.parse(
            raw, relative_to=target.address.spec_path, description_of_origin=f"the `dependencies` of {target.address}"
        )
        if parsed.target_component is None and parsed.generated_component is None:
            if os.path.splitext(parsed.path_component)[1]:
                paths.append(parsed.path_component)
    return tuple(paths)


def handler_source_path(
    handler: ResolvedPythonFaaSHandler, paths: Iterable[str], roots: Iterable[str], unrooted: frozenset[str]
) -> str | None:
    """The build-root path of the handler's module among the closure's files."""
    candidates = module_path_candidates(handler.module)
    roots = tuple(roots)
    return next((p for p in sorted(paths) if stripped_path(p, roots, unrooted) in candidates), None)


# Star imports and literal dynamic imports can bring modules that bring more: a few rounds suffice.
MAX_INFERENCE_ROUNDS = 10


@rule(desc="Computing the context of a chromadb_lambda image")
async def compute_lambda_closure(
    request: LambdaClosureRequest, subsystem: ChromadbLambdaSubsystem, python_setup: PythonSetup
) -> LambdaClosure:
    wrapped = await Get(
        WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>")
    )
    target = wrapped.target
    handler_field = target[ChromadbLambdaHandlerField]
    base = await _resolve_base_image(target)
    handler, direct_deps, base_closure = await MultiGet(
        Get(ResolvedPythonFaaSHandler, ResolvePythonFaaSHandlerRequest(handler_field)),
        Get(Targets, DependenciesRequest(target[ChromadbLambdaDependenciesField])),
        Get(TransitiveTargets, TransitiveTargetsRequest([base.address])),
    )

    # The base image is a dependency (for `--changed-since`), but its closure is what gets subtracted,
    # not what gets copied. The Lambda itself is no root: a dependency on a file of its own folder
    # must not make it its own dependency.
    roots = [
        t.address
        for t in direct_deps
        if t.address not in (base.address, target.address) and not t.has_field(DockerImageSourceField)
    ]
    if any(t.address == target.address for t in direct_deps):
        # `dependencies=["./polling.py"]`: a file address without a target name names the target
        # called like its folder, which is this Lambda when it is named after its folder. What the
        # user means is the file: take its owners instead.
        owners = await Get(Owners, OwnersRequest(self_file_dependencies(target)))
        owner_targets = await Get(Targets, Addresses(a for a in owners if a != target.address))
        # A Python file may also be in a `files` target (copied unstripped): prefer its python_source.
        python_owners = [t.address for t in owner_targets if t.has_field(PythonSourceField)]
        roots.extend(a for a in python_owners or [t.address for t in owner_targets] if a not in roots)
    resolve = target[PythonResolveField].normalized_value(python_setup)
    extra: dict[Address, ModuleUse] = {}
    for _ in range(MAX_INFERENCE_ROUNDS):
        closure = await Get(TransitiveTargets, TransitiveTargetsRequest([*roots, *extra]))
        # Checked on the unstripped files: stripping would merge two files of one path into an engine error.
        unstripped = await Get(
            PythonSourceFiles, PythonSourceFilesRequest(closure.closure, include_resources=True, include_files=True)
        )
        unrooted = frozenset(unstripped.source_files.unrooted_files)
        collisions = path_collisions(unstripped.source_files.snapshot.files, unstripped.source_roots, unrooted)
        if collisions:
            raise ContextPathCollisionError(path_collisions_message(target.address, collisions))
        handler_path = handler_source_path(
            handler, unstripped.source_files.snapshot.files, unstripped.source_roots, unrooted
        )
        report = await _scan_closure(target.address, closure, unstripped, handler_path, python_setup)
        check_syntax(target.address, handler_path, report)
        uses = module_uses(report)
        modules = sorted({u.module for u in uses})
        owners = await MultiGet(Get(PythonModuleOwners, PythonModuleOwnersRequest(m, resolve)) for m in modules)
        resolution = resolve_module_uses(
            uses,
            {m: ModuleOwners(o.unambiguous, o.ambiguous) for m, o in zip(modules, owners)},
            frozenset(t.address for t in closure.closure),
        )
        if resolution.ambiguous:
            raise AmbiguousImportError(ambiguous_imports_message(target.address, resolution.ambiguous))
        new = {a: use for a, use in resolution.extra.items() if a not in extra}
        if not new:
            break
        for address, use in new.items():
            logger.debug(f"{target.address}: {use.describe()}, so {address} is in its context")
        extra.update(new)
    else:
        raise UnresolvedClosureError(
            softwrap(
                f"""
                The handler closure of {target.address} kept growing after {MAX_INFERENCE_ROUNDS}
                rounds of following star imports and literal dynamic imports; still new:

                {bullet_list(f"{a}: {use.describe()}" for a, use in sorted(new.items()))}

                Declare these modules in the `dependencies` field of {target.address}.
                """
            )
        )

    missing = missing_requirements(closure.closure, base_closure.closure)
    excused = [a for a in missing if a in resolution.type_checking_only]
    if excused:
        # Imported only under TYPE_CHECKING, unless a target also declares it: then it may be loaded
        # at run time in a way no import shows (a SQLAlchemy dialect, a plugin entry point).
        declared = await MultiGet(
            Get(ExplicitlyProvidedDependencies, DependenciesRequest(t[Dependencies]))
            for t in closure.closure
            if t.has_field(Dependencies)
        )
        explicit = {a for d in declared for a in d.includes}
        excused = [a for a in excused if a not in explicit]
    missing = tuple(a for a in missing if a not in excused)
    if missing:
        message = missing_requirements_message(target.address, base.address, missing)
        if subsystem.missing_third_party == MissingThirdPartyBehavior.error:
            raise MissingThirdPartyRequirementError(message)
        logger.warning(message)

    _check_handler_defined(target, handler, handler_path, report)
    sources, base_sources = await MultiGet(
        Get(StrippedPythonSourceFiles, PythonSourceFilesRequest(closure.closure, include_resources=True, include_files=True)),
        Get(StrippedPythonSourceFiles, PythonSourceFilesRequest(base_closure.closure, include_resources=True, include_files=True)),
    )
    snapshot = sources.stripped_source_files.snapshot
    base_files = frozenset(base_sources.stripped_source_files.snapshot.files)
    # A source root's own `__init__.py` would land at the task root itself, where no import finds it.
    keep = frozenset(f for f in snapshot.files if f not in base_files and f != "__init__.py")
    provided = tuple(sorted(f for f in snapshot.files if f in base_files))
    split = split_packages(keep, base_files)
    if split:
        raise SplitPackageError(split_packages_message(target.address, base.address, split))
    # Exact paths, never globs: a file may be named `[id].json`.
    entries = await Get(DigestEntries, Digest, snapshot.digest)
    kept_entries = tuple(sorted((e for e in entries if isinstance(e, FileEntry) and e.path in keep), key=lambda e: e.path))
    digest = await Get(Digest, CreateDigest(kept_entries))
    files = tuple(ContextFile(e.path, e.file_digest.serialized_bytes_length) for e in kept_entries)
    check_context(target.address, report, files, subsystem)
    return LambdaClosure(
        address=target.address,
        handler_module=handler.module,
        handler_function=handler.func,
        base_address=base.address,
        roots=tuple([*roots, *extra]),
        digest=digest,
        files=files,
        provided_by_base=provided,
        inferred_roots=tuple((a, use.describe()) for a, use in extra.items()),
    )


def rules():
    return collect_rules()
