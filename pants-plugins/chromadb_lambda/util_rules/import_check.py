"""Proof that an image is sufficient: import its handler inside it, as the Lambda runtime would.

Inference decides what goes into the context; this checks the result. `docker run --network none`
of the image (no credentials, no environment beyond the image's own) runs `import_check_script`,
which imports the handler module with the task root first on `sys.path` and reports what happened.
The verdict is classified here, where Pants' module mapping tells first-party modules (the context
can fix those: a build error naming the import's file and line and the `dependencies` to declare)
from third-party ones (the base image lacks them) and from anything else the module raised at import
(a warning: the context is complete, the handler needs its configuration).

With the assembler, the check runs BEFORE the tagging (while the untagged images load), in the
base's prover (a container of the base, scripts/prover.py) for the members the engine lacks
(prove_members; chunk_images.py tags only those that do not fail the build): an image the engine
holds under its content-key tag was proven then (chunk_images.HELD), and only an image pulled from a
registry (or not checkable in its base's container) gets a `docker run` here.

The `docker run` process is keyed by the image id and the handler and cached like any successful
process (it always exits 0 and prints its verdict), so an image that was checked once is never run again.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Mapping

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.backend.python.dependency_inference.module_mapper import FirstPartyPythonModuleMapping
from pants.backend.python.util_rules.python_sources import PythonSourceFiles, PythonSourceFilesRequest
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import TransitiveTargets, TransitiveTargetsRequest
from pants.util.frozendict import FrozenDict

from chromadb_lambda.scripts import import_check_script
from chromadb_lambda.util_rules.checks import stripped_path
from chromadb_lambda.util_rules.closure import LambdaClosure
from chromadb_lambda.util_rules.context import normalized_task_root
from chromadb_lambda.util_rules import import_check_chunk
from chromadb_lambda.util_rules.engine import DockerEnvironment
from chromadb_lambda.util_rules.chunk_images import (
    ChunkImages,
    ChunkImagesRequest,
    ChunkProof,
    ChunkProofRequest,
    MemberProof,
)
from chromadb_lambda.util_rules.content_keys import LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.import_check_chunk import MemberCheckOutput
from chromadb_lambda.util_rules.lambda_chunks import LambdaChunk, LambdaChunkRequest
from chromadb_lambda.util_rules.import_check_verdict import (
    PASSED,
    FirstPartyModules,
    classify,
    first_party_message,
    first_party_modules,
    infrastructure_message,
    not_callable_message,
    parse_verdict,
    requested_modules,
    syntax_message,
    third_party_message,
    top_level_names,
    warning_message,
)
from chromadb_lambda.scripts import script_source
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem, LambdaImageBuilder, MissingThirdPartyBehavior

logger = logging.getLogger(__name__)

# Seconds the handler module may take to import before the check gives up on it (a warning).
IMPORT_TIMEOUT = import_check_chunk.IMPORT_TIMEOUT
SKIPPED = "skipped"


class HandlerImportError(Exception):
    """The handler does not import in its image, or is not a function, for a reason a build can fix."""


@dataclass(frozen=True)
class LambdaImportCheckRequest:
    closure: LambdaClosure
    image_id: str


@dataclass(frozen=True)
class LambdaImportCheck:
    """`passed`, `skipped`, or `warning: <type>: <message>`: the `import_check` of docker-info."""

    verdict: str


def import_check_script_text() -> str:
    return script_source(os.path.basename(import_check_script.__file__)).decode()


def import_check_argv(docker_path: str, image_id: str, module: str, function: str, task_root: str) -> tuple[str, ...]:
    # No `--init`, no port, no volume, no `-e`: the container gets only the image's own environment.
    # The image's ENTRYPOINT (`/lambda-entrypoint.sh`, `python3 -m awslambdaric`) would start the
    # runtime loop; `python3` on the image's PATH is the interpreter that runtime uses.
    return (
        docker_path,
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        "--workdir",
        task_root,
        "--entrypoint",
        "python3",
        image_id,
        "-B",
        "-c",
        import_check_script_text(),
        module,
        function,
        task_root,
        str(IMPORT_TIMEOUT),
    )


def import_check_process(
    docker: DockerBinary, image_id: str, module: str, function: str, task_root: str, env: Mapping[str, str]
) -> Process:
    return Process(
        argv=import_check_argv(docker.path, image_id, module, function, task_root),
        description=f"Importing {module}.{function} in image {image_id[:19]}",
        env={**docker.extra_env, **env},
        immutable_input_digests=docker.extra_input_digests,
        # An image id names one content: its verdict holds for as long as the cache does. A failing
        # process (engine down, image gone) is not cached and runs again next time.
        cache_scope=ProcessCacheScope.SUCCESSFUL,
    )


@dataclass(frozen=True)
class ClosureRepoPaths:
    """Task-root paths of a closure's files -> their paths in the repo, for messages a person acts on."""

    paths: FrozenDict[str, str]


@rule(desc="Mapping the image paths of a chromadb_lambda closure to repo paths")
async def closure_repo_paths(closure: LambdaClosure) -> ClosureRepoPaths:
    # The same requests as the closure rule: the engine has their results already.
    transitive = await Get(TransitiveTargets, TransitiveTargetsRequest(closure.roots))
    sources = await Get(
        PythonSourceFiles, PythonSourceFilesRequest(transitive.closure, include_resources=True, include_files=True)
    )
    unrooted = frozenset(sources.source_files.unrooted_files)
    return ClosureRepoPaths(
        FrozenDict(
            (stripped_path(p, sources.source_roots, unrooted), p) for p in sorted(sources.source_files.snapshot.files)
        )
    )


@dataclass(frozen=True)
class ImportVerdictRequest:
    """The output of a handler import check (a `docker run` of the image, or its line of a chunk
    container) to classify for the target of `closure`."""

    closure: LambdaClosure
    image_id: str
    output: FallibleProcessResult | MemberCheckOutput


@rule(desc="Importing a chromadb_lambda handler in its image")
async def check_lambda_import(
    request: LambdaImportCheckRequest,
    docker: DockerBinary,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
) -> LambdaImportCheck:
    if not subsystem.check_handler_import:
        return LambdaImportCheck(SKIPPED)
    closure = request.closure
    if subsystem.builder == LambdaImageBuilder.assembler:
        # Proven before load (this run: its verdict; an earlier run: HELD), or None: a `docker run`.
        chunk = await Get(LambdaChunk, LambdaChunkRequest(closure.address))
        images = await Get(ChunkImages, ChunkImagesRequest(chunk.members))
        own = images.images.get(closure.address)
        if own is not None and own.image_id == request.image_id and own.import_check:
            return LambdaImportCheck(own.import_check)
    task_root = normalized_task_root(subsystem.task_root)
    result = await Get(
        FallibleProcessResult,
        Process,
        import_check_process(
            docker, request.image_id, closure.handler_module, closure.handler_function, task_root, docker_env.env
        ),
    )
    proof = await Get(MemberProof, ImportVerdictRequest(closure, request.image_id, result))
    if proof.error is not None or proof.verdict is None:
        raise HandlerImportError(proof.error)
    return LambdaImportCheck(proof.verdict)


@rule(desc="Classifying the import checks of chromadb_lambda images before they are tagged")
async def prove_members(request: ChunkProofRequest) -> ChunkProof:
    outputs = request.outputs
    members = [m for m in request.members if m.address in outputs]
    keys = await MultiGet(Get(LambdaImageKey, LambdaImageKeyRequest(m.address)) for m in members)
    proofs = await MultiGet(
        Get(MemberProof, ImportVerdictRequest(key.closure, str(m.image_id), outputs[m.address]))
        for m, key in zip(members, keys)
    )
    return ChunkProof(FrozenDict((m.address, p) for m, p in zip(members, proofs)))


@rule(desc="Classifying a chromadb_lambda handler import check")
async def classify_import(request: ImportVerdictRequest, subsystem: ChromadbLambdaSubsystem) -> MemberProof:
    """The verdict, or the error (a HandlerImportError's message) that fails the target's build; a
    warning is logged here, once per check."""
    closure = request.closure
    task_root = normalized_task_root(subsystem.task_root)
    result = request.output
    verdict = (
        parse_verdict(result.stdout.decode(errors="replace"))
        if result.exit_code in (0, import_check_script.TIMEOUT_EXIT)
        else None
    )
    if verdict is None:
        return MemberProof(None, infrastructure_message(closure.address, request.image_id, result))

    known = FirstPartyModules(FrozenDict(), top_level_names(f.path for f in closure.files))
    if verdict.get("status") == "raised" and "module" in verdict:
        mapping = await Get(FirstPartyPythonModuleMapping)
        known = first_party_modules(mapping, [*(f.path for f in closure.files), *closure.provided_by_base])
    classified = classify(verdict, known.is_first_party, task_root)
    if classified.kind == PASSED:
        return MemberProof(PASSED)
    if classified.kind in ("not_callable", "missing"):
        return MemberProof(None, not_callable_message(closure.address, closure.handler, classified))

    repo_paths = (await Get(ClosureRepoPaths, LambdaClosure, closure)).paths
    if classified.kind == "first_party":
        module = classified.module or ""
        # The module the line asked for, when Pants knows it: `pkg.plugins.alpha`, not just `pkg`.
        requested = [m for m in requested_modules(module, classified.code) if m in known.providers]
        if requested:
            classified = dataclasses.replace(classified, module=requested[0])
        owners = known.owners(classified.module or module)
        return MemberProof(None, first_party_message(closure.address, closure.handler, classified, owners, repo_paths))
    if classified.kind == "syntax":
        return MemberProof(None, syntax_message(closure.address, closure.handler, classified, repo_paths))
    if classified.kind == "third_party":
        message = third_party_message(closure.address, closure.handler, closure.base_address, classified, repo_paths)
        if subsystem.missing_third_party == MissingThirdPartyBehavior.error:
            return MemberProof(None, message)
        logger.warning(message)
        return MemberProof(f"warning: {classified.detail}")
    logger.warning(warning_message(closure.address, closure.handler, classified, repo_paths))
    return MemberProof(f"warning: {classified.detail}")


def rules():
    return [*collect_rules(), *import_check_chunk.rules()]
