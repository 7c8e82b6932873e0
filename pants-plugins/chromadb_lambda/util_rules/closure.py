"""What goes into a Lambda image: the handler's first-party closure minus what the base provides.

This is the one source of truth for an image's content: packaging, the context manifest and (later)
the content key all read `LambdaClosure`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

from pants.backend.docker.target_types import DockerImageSourceField, DockerImageTarget
from pants.backend.python.dependency_inference.module_mapper import (
    PythonModuleOwners,
    PythonModuleOwnersRequest,
)
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PythonResolveField, PythonSourceField
from pants.backend.python.util_rules.faas import (
    ResolvedPythonFaaSHandler,
    ResolvePythonFaaSHandlerRequest,
)
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex_environment import PythonExecutable
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
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from chromadb_lambda.util_rules.checks import (
    MAX_INFERENCE_ROUNDS,
    ContextPathCollisionError,
    MissingThirdPartyRequirementError,
    SplitPackageError,
    UnresolvedClosureError,
    check_context,
    check_handler_defined,
    check_syntax,
    missing_requirements,
    missing_requirements_message,
    module_path_candidates,
    path_collisions,
    path_collisions_message,
    split_packages,
    split_packages_message,
    stripped_path,
    unresolved_closure_message,
)
from chromadb_lambda.util_rules.module_uses import (
    AmbiguousImportError,
    ModuleOwners,
    ModuleUse,
    ambiguous_imports_message,
    module_uses,
    resolve_module_uses,
)
from chromadb_lambda.util_rules.scan import SourceScan, scan_closure
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem, MissingThirdPartyBehavior
from chromadb_lambda.target_types import (
    ChromadbLambdaBaseImageField,
    ChromadbLambdaDependenciesField,
    ChromadbLambdaHandlerField,
    base_image_address_input,
)

logger = logging.getLogger(__name__)


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

    @cached_property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


async def resolve_base_image(target: Target) -> Target:
    """The `docker_image` target a Lambda's `base_image` field names (an error naming the field otherwise)."""
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




async def _closure_roots(target: Target, base: Target) -> list[Address]:
    """Where the closure starts: the handler's module and the declared dependencies."""
    direct_deps = await Get(Targets, DependenciesRequest(target[ChromadbLambdaDependenciesField]))
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
    return roots


@dataclass(frozen=True)
class HandlerClosureRequest:
    address: Address


@dataclass(frozen=True)
class HandlerClosure:
    """The handler's closure: the targets its roots reach, plus those star imports and literal
    dynamic imports need (Pants infers no dependency on them), checked on the way."""

    closure: TransitiveTargets
    roots: tuple[Address, ...]
    # Roots added for what Pants cannot see, with the place that needs each.
    extra: FrozenDict[Address, ModuleUse]
    scan: SourceScan
    handler_path: str | None
    # Targets only `if TYPE_CHECKING:` imports resolve to.
    type_checking_only: frozenset[Address]


@rule(desc="Following the imports of a chromadb_lambda's handler")
async def grow_handler_closure(request: HandlerClosureRequest, python_setup: PythonSetup) -> HandlerClosure:
    """A rule of its own, so that `compute_lambda_closure` walks it while the base's closure is
    resolved (see there)."""
    wrapped = await Get(WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>"))
    target = wrapped.target
    base = await resolve_base_image(target)
    handler = await Get(ResolvedPythonFaaSHandler, ResolvePythonFaaSHandlerRequest(target[ChromadbLambdaHandlerField]))
    roots = await _closure_roots(target, base)
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
        scan = await scan_closure(target.address, closure, unstripped, handler_path, python_setup)
        report = scan.parsed()
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
            return HandlerClosure(
                closure=closure,
                roots=tuple(roots),
                extra=FrozenDict(extra),
                scan=scan,
                handler_path=handler_path,
                type_checking_only=resolution.type_checking_only,
            )
        for address, use in new.items():
            logger.debug(f"{target.address}: {use.describe()}, so {address} is in its context")
        extra.update(new)
    raise UnresolvedClosureError(unresolved_closure_message(target.address, new))


async def _check_requirements(
    target: Target, base: Target, grown: HandlerClosure, base_closure: TransitiveTargets, subsystem: ChromadbLambdaSubsystem
) -> None:
    """Third-party requirements the base lacks: an error (or a warning, by option), except those
    imported only under TYPE_CHECKING that no target declares."""
    missing = missing_requirements(grown.closure.closure, base_closure.closure)
    excused = [a for a in missing if a in grown.type_checking_only]
    if excused:
        # Imported only under TYPE_CHECKING, unless a target also declares it: then it may be loaded
        # at run time in a way no import shows (a SQLAlchemy dialect, a plugin entry point).
        declared = await MultiGet(
            Get(ExplicitlyProvidedDependencies, DependenciesRequest(t[Dependencies]))
            for t in grown.closure.closure
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


async def _context_files(
    target: Target, base: Target, closure: TransitiveTargets, base_closure: TransitiveTargets
) -> tuple[Digest, tuple[ContextFile, ...], tuple[str, ...]]:
    """The closure's files minus the base's, source roots stripped: digest, files, and the left out."""
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
    return digest, tuple(ContextFile(e.path, e.file_digest.serialized_bytes_length) for e in kept_entries), provided


@rule(desc="Computing the context of a chromadb_lambda image")
async def compute_lambda_closure(
    request: LambdaClosureRequest, subsystem: ChromadbLambdaSubsystem, python_setup: PythonSetup
) -> LambdaClosure:
    wrapped = await Get(WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>"))
    target = wrapped.target
    base = await resolve_base_image(target)
    # The handler's closure is walked while the base's is resolved, and the interpreter the source
    # scans run with (the repo's default constraints, those of nearly every closure) is found
    # meanwhile: on a cold start that is a PEX process of seconds, which the base's closure (its
    # Dockerfile parser is a PEX) and every scan wait for; requested only by the first scan, it
    # would start when the walk ends.
    handler, base_closure, grown, _ = await MultiGet(
        Get(ResolvedPythonFaaSHandler, ResolvePythonFaaSHandlerRequest(target[ChromadbLambdaHandlerField])),
        Get(TransitiveTargets, TransitiveTargetsRequest([base.address])),
        Get(HandlerClosure, HandlerClosureRequest(target.address)),
        Get(PythonExecutable, InterpreterConstraints, InterpreterConstraints(python_setup.interpreter_constraints)),
    )
    await _check_requirements(target, base, grown, base_closure, subsystem)
    report = grown.scan.parsed()
    check_handler_defined(target, handler, grown.handler_path, report)
    digest, files, provided = await _context_files(target, base, grown.closure, base_closure)
    check_context(target.address, report, ((f.path, f.size) for f in files), subsystem)
    return LambdaClosure(
        address=target.address,
        handler_module=handler.module,
        handler_function=handler.func,
        base_address=base.address,
        roots=(*grown.roots, *grown.extra),
        digest=digest,
        files=files,
        provided_by_base=provided,
        inferred_roots=tuple((a, use.describe()) for a, use in grown.extra.items()),
    )


def rules():
    return collect_rules()
