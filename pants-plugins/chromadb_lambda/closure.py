"""What goes into a Lambda image: the handler's first-party closure minus what the base provides.

This is the one source of truth for an image's content: packaging, the context manifest and (later)
the content key all read `LambdaClosure`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from pants.backend.docker.target_types import DockerImageSourceField, DockerImageTarget
from pants.backend.python.target_types import PythonRequirementsField
from pants.backend.python.util_rules.faas import (
    ResolvedPythonFaaSHandler,
    ResolvePythonFaaSHandlerRequest,
)
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFiles,
    PythonSourceFilesRequest,
    StrippedPythonSourceFiles,
)
from pants.engine.addresses import Address, Addresses, UnparsedAddressInputs
from pants.engine.fs import Digest, DigestContents, DigestEntries, DigestSubset, FileEntry, PathGlobs
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    DependenciesRequest,
    InvalidFieldException,
    Target,
    Targets,
    TransitiveTargets,
    TransitiveTargetsRequest,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.util.strutil import bullet_list, softwrap

from chromadb_lambda.checks import (
    ClosureSyntaxError,
    dynamic_imports_message,
    large_context_message,
    scan_python_file,
)
from chromadb_lambda.handler import close_names, defined_names, module_path_candidates
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


def check_context(
    address: Address, python_files: DigestContents, files: tuple[ContextFile, ...], subsystem: ChromadbLambdaSubsystem
) -> None:
    """Syntax errors fail; dynamic imports and an oversized context warn (see `checks`)."""
    dynamic = []
    for content in python_files:
        try:
            dynamic.extend(scan_python_file(content.path, content.content))
        except ClosureSyntaxError as e:
            raise ClosureSyntaxError(f"A file in the handler closure of {address} does not parse: {e}") from e
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


async def _check_handler_defined(
    target: Target, handler: ResolvedPythonFaaSHandler, digest: Digest, files: frozenset[str]
) -> None:
    field = target[ChromadbLambdaHandlerField]
    paths = [p for p in module_path_candidates(handler.module) if p in files]
    if not paths:
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
    contents = await Get(DigestContents, DigestSubset(digest, PathGlobs([paths[0]])))
    try:
        names = defined_names(contents[0].content, paths[0])
    except ClosureSyntaxError as e:
        raise InvalidFieldException(
            f"The handler module of {target.address} does not parse: {e}"
        ) from e
    if handler.func not in names:
        suggestions = close_names(handler.func, names)
        hint = f" Did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        raise InvalidFieldException(
            softwrap(
                f"""
                The `{field.alias}` field in target {target.address} names the function
                `{handler.func}`, but `{handler.module}` ({paths[0]}) does not define it.{hint}
                """
            )
        )


@rule(desc="Computing the context of a chromadb_lambda image")
async def compute_lambda_closure(
    request: LambdaClosureRequest, subsystem: ChromadbLambdaSubsystem
) -> LambdaClosure:
    wrapped = await Get(
        WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>")
    )
    target = wrapped.target
    handler_field = target[ChromadbLambdaHandlerField]
    base = await _resolve_base_image(target)
    handler, direct_deps = await MultiGet(
        Get(ResolvedPythonFaaSHandler, ResolvePythonFaaSHandlerRequest(handler_field)),
        Get(Targets, DependenciesRequest(target[ChromadbLambdaDependenciesField])),
    )

    # The base image is a dependency (for `--changed-since`), but its closure is what gets subtracted,
    # not what gets copied.
    roots = [t.address for t in direct_deps if t.address != base.address and not t.has_field(DockerImageSourceField)]
    closure, base_closure = await MultiGet(
        Get(TransitiveTargets, TransitiveTargetsRequest(roots)),
        Get(TransitiveTargets, TransitiveTargetsRequest([base.address])),
    )

    missing = missing_requirements(closure.closure, base_closure.closure)
    if missing:
        message = missing_requirements_message(target.address, base.address, missing)
        if subsystem.missing_third_party == MissingThirdPartyBehavior.error:
            raise MissingThirdPartyRequirementError(message)
        logger.warning(message)

    # Checked on the unstripped files: stripping would merge two files of one path into an engine error.
    unstripped = await Get(
        PythonSourceFiles, PythonSourceFilesRequest(closure.closure, include_resources=True, include_files=True)
    )
    collisions = path_collisions(
        unstripped.source_files.snapshot.files,
        unstripped.source_roots,
        frozenset(unstripped.source_files.unrooted_files),
    )
    if collisions:
        raise ContextPathCollisionError(path_collisions_message(target.address, collisions))
    sources, base_sources = await MultiGet(
        Get(StrippedPythonSourceFiles, PythonSourceFilesRequest(closure.closure, include_resources=True, include_files=True)),
        Get(StrippedPythonSourceFiles, PythonSourceFilesRequest(base_closure.closure, include_resources=True, include_files=True)),
    )
    snapshot = sources.stripped_source_files.snapshot
    await _check_handler_defined(target, handler, snapshot.digest, frozenset(snapshot.files))

    base_files = frozenset(base_sources.stripped_source_files.snapshot.files)
    keep = tuple(sorted(f for f in snapshot.files if f not in base_files))
    provided = tuple(sorted(f for f in snapshot.files if f in base_files))
    split = split_packages(keep, base_files)
    if split:
        raise SplitPackageError(split_packages_message(target.address, base.address, split))
    digest = await Get(Digest, DigestSubset(snapshot.digest, PathGlobs(keep)))
    entries, python_files = await MultiGet(
        Get(DigestEntries, Digest, digest),
        Get(DigestContents, DigestSubset(digest, PathGlobs([f for f in keep if f.endswith(".py")]))),
    )
    files = tuple(
        ContextFile(e.path, e.file_digest.serialized_bytes_length)
        for e in sorted(entries, key=lambda e: e.path)
        if isinstance(e, FileEntry)
    )
    check_context(target.address, python_files, files, subsystem)
    return LambdaClosure(
        address=target.address,
        handler_module=handler.module,
        handler_function=handler.func,
        base_address=base.address,
        roots=tuple(roots),
        digest=digest,
        files=files,
        provided_by_base=provided,
    )


def rules():
    return collect_rules()
