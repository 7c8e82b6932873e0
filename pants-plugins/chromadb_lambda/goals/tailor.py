"""`pants tailor`: a `chromadb_lambda` target for every folder that holds a Lambda handler module but none."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import PurePath
from typing import Iterable

from pants.backend.python.dependency_inference.module_mapper import module_from_stripped_path
from pants.backend.python.target_types import PythonGeneratingSourcesBase, PythonSourceField
from pants.backend.python.util_rules.faas import ResolvedPythonFaaSHandler, ResolvePythonFaaSHandlerRequest
from pants.base.specs import AncestorGlobSpec, RawSpecs
from pants.core.goals.tailor import AllOwnedSources, PutativeTarget, PutativeTargets, PutativeTargetsRequest
from pants.engine.fs import DigestContents, PathGlobs
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.addresses import Addresses, UnparsedAddressInputs
from pants.engine.target import (
    AllUnexpandedTargets,
    SourcesField,
    SourcesPaths,
    SourcesPathsRequest,
    Target,
    UnexpandedTargets,
)
from pants.engine.unions import UnionRule
from pants.source.source_root import SourceRootsRequest, SourceRootsResult
from pants.util.logging import LogLevel
from pants.util.strutil import softwrap

from chromadb_lambda.util_rules.checks import ClosureSyntaxError
from chromadb_lambda.util_rules.checks import defined_names
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.target_types import (
    ChromadbLambdaBaseImageField,
    ChromadbLambdaHandlerField,
    ChromadbLambdaTarget,
    base_image_address_input,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PutativeChromadbLambdaTargetsRequest(PutativeTargetsRequest):
    pass


def handler_function(source: bytes, path: str, candidates: Iterable[str]) -> str | None:
    """The first of `candidates` that the module defines at top level, if any."""
    try:
        names = defined_names(source, path)
    except ClosureSyntaxError:
        return None
    return next((name for name in candidates if name in names), None)


def putative_lambda(
    path: str, function: str, base_image: str, owned: bool, taken_names: set[str]
) -> PutativeTarget:
    """A `chromadb_lambda` named after its folder (so is its image), when that name is free.

    When Pants' Python tailoring is about to add `python_sources()` for the handler (named after
    the folder too), or that name is taken, the target is `lambda` and the image keeps the folder's
    name through `repository="{directory}"`.
    """
    directory, file_name = os.path.split(path)
    folder = os.path.basename(directory)
    kwargs = {"handler": f"{file_name}:{function}", "base_image": base_image}
    if owned and folder not in taken_names:
        name = folder
    else:
        name = "lambda"
        kwargs["repository"] = "{directory}"
    return PutativeTarget.for_target_type(
        ChromadbLambdaTarget, path=directory, name=name, triggering_sources=(), kwargs=kwargs
    )


def default_base_image(existing_bases: set[str]) -> str | None:
    return next(iter(existing_bases)) if len(existing_bases) == 1 else None


def is_python_source_owner(target: Target) -> bool:
    """A `python_source` or a generator of them (`python_sources`, `python_tests`...)."""
    return target.has_field(PythonSourceField) or target.has_field(PythonGeneratingSourcesBase)


def not_python_owned_warning(path: str, function: str, owners: Iterable[str]) -> str:
    owners_text = ", ".join(sorted(owners))
    return softwrap(
        f"""
        {path} looks like a Lambda handler (it defines `{function}`), but no `python_source` target
        owns it, only {owners_text}: `pants tailor` adds no `python_sources` for a file that another
        target owns, so a `chromadb_lambda` there could not be packaged. Leave {path} out of the
        `sources` of {owners_text} (e.g. with a `!` glob for the folder's `*.py`), then run
        `pants tailor` again.
        """
    )


async def _the_one_base_image() -> str | None:
    """The one base every existing chromadb_lambda of the repo builds on, if there is just one."""
    everything = await Get(AllUnexpandedTargets)
    all_lambdas = [t for t in everything if t.has_field(ChromadbLambdaBaseImageField)]
    bases = await MultiGet(
        Get(Addresses, UnparsedAddressInputs, base_image_address_input(t[ChromadbLambdaBaseImageField], t.address))
        for t in all_lambdas
    )
    return default_base_image({f"//{a[0].spec}" for a in bases if a})


@rule(level=LogLevel.DEBUG, desc="Determine candidate chromadb_lambda targets to create")
async def find_putative_chromadb_lambdas(
    request: PutativeChromadbLambdaTargetsRequest,
    all_owned_sources: AllOwnedSources,
    subsystem: ChromadbLambdaSubsystem,
) -> PutativeTargets:
    if not subsystem.tailor:
        return PutativeTargets()
    contents = await Get(DigestContents, PathGlobs, request.path_globs(subsystem.tailor_handler_file))
    candidates = {
        fc.path: function
        for fc in contents
        if (function := handler_function(fc.content, fc.path, subsystem.tailor_handler_functions))
    }
    if not candidates:
        return PutativeTargets()

    # Handlers that a chromadb_lambda target already points at, by module.
    existing = await Get(
        UnexpandedTargets,
        RawSpecs(
            ancestor_globs=tuple(AncestorGlobSpec(os.path.dirname(p)) for p in candidates),
            description_of_origin="the `chromadb_lambda` tailor rule",
        ),
    )
    lambdas = [t for t in existing if t.has_field(ChromadbLambdaHandlerField)]
    resolved = await MultiGet(
        Get(ResolvedPythonFaaSHandler, ResolvePythonFaaSHandlerRequest(t[ChromadbLambdaHandlerField])) for t in lambdas
    )
    # The targets that can own the handlers: those of their folders and of the folders above (target
    # generators, not each file's generated target).
    owners = [t for t in existing if t.has_field(SourcesField) and not t.address.is_generated_target]
    owned_paths = await MultiGet(Get(SourcesPaths, SourcesPathsRequest(t[SourcesField])) for t in owners)
    handled_modules = {r.module for r in resolved}
    roots = await Get(SourceRootsResult, SourceRootsRequest.for_files(candidates))

    base_image = subsystem.tailor_base_image or await _the_one_base_image()
    putative = []
    for path, function in sorted(candidates.items()):
        module = module_from_stripped_path(PurePath(path).relative_to(roots.path_to_root[PurePath(path)].path))
        if module in handled_modules:
            continue
        # Pants' Python tailoring skips a file that any target owns (a `files` target over the whole
        # repo, say): a Lambda without a `python_sources` would be a dead end at `pants package`.
        path_owners = [t for t, paths in zip(owners, owned_paths) if path in paths.files]
        if path_owners and not any(is_python_source_owner(t) for t in path_owners):
            logger.warning(not_python_owned_warning(path, function, (t.address.spec for t in path_owners)))
            continue
        if base_image is None:
            logger.warning(
                f"{path} looks like a Lambda handler (it defines `{function}`), but `pants tailor` cannot "
                "tell which base image it builds on: set `[lambda-image].tailor_base_image`."
            )
            continue
        directory = os.path.dirname(path)
        taken = {t.address.target_name for t in existing if t.address.spec_path == directory}
        putative.append(putative_lambda(path, function, base_image, path in all_owned_sources, taken))
    return PutativeTargets(putative)


def rules():
    return [*collect_rules(), UnionRule(PutativeTargetsRequest, PutativeChromadbLambdaTargetsRequest)]
