"""Making a Lambda image the engine does not have: its base first, then the image on top of it, by
`[lambda-image].builder` (the assembler, or a `docker build` of the generated context)."""
from __future__ import annotations

from dataclasses import dataclass

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.rules import Get, MultiGet, collect_rules, rule

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem, LambdaImageBuilder
from chromadb_lambda.util_rules import chunk_images, lambda_chunks
from chromadb_lambda.util_rules.architecture import LambdaArchitecture, LambdaArchitectureRequest
from chromadb_lambda.util_rules.assemble import AssembledImageError
from chromadb_lambda.util_rules.base_image import BuiltBaseImage, BuiltBaseImageRequest
from chromadb_lambda.util_rules.chunk_images import ChunkImages, ChunkImagesRequest
from chromadb_lambda.util_rules.closure import LambdaClosure
from chromadb_lambda.util_rules.context import LambdaBuildContext, LambdaBuildContextRequest
from chromadb_lambda.util_rules.docker_build import LambdaImageBuild, build_process, cache_args, run_build
from chromadb_lambda.util_rules.engine import DockerEnvironment, EngineRun
from chromadb_lambda.util_rules.engine_locks import EngineLockScript, EngineLockScriptRequest, locked_process
from chromadb_lambda.util_rules.image_names import ImageNames
from chromadb_lambda.util_rules.import_check import HandlerImportError
from chromadb_lambda.util_rules.lambda_chunks import LambdaChunk, LambdaChunkRequest


@dataclass(frozen=True)
class MadeLambdaImageRequest:
    address: Address
    closure: LambdaClosure
    names: ImageNames
    # The target's `cache_from` field (docker-build only).
    cache_from: tuple[str, ...] | None
    # The run that asks: building changes the engine (see EngineRun).
    run: EngineRun


@dataclass(frozen=True)
class MadeLambdaImage:
    image_id: str
    # False: a concurrent run (another clone on this engine) made it while this one waited.
    made: bool


@rule(desc="Making a chromadb_lambda image")
async def make_lambda_image(
    request: MadeLambdaImageRequest,
    docker: DockerBinary,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
) -> MadeLambdaImage:
    names = request.names
    base = await Get(BuiltBaseImage, BuiltBaseImageRequest(request.closure.base_address))
    # The `architecture` field against the base's: an error names the target and the field.
    architecture = await Get(LambdaArchitecture, LambdaArchitectureRequest(request.address, base.image_id))
    if subsystem.builder == LambdaImageBuilder.assembler:
        # The whole chunk at once (memoized: one load for every member that asks in this run).
        chunk = await Get(LambdaChunk, LambdaChunkRequest(request.address))
        images = await Get(ChunkImages, ChunkImagesRequest(chunk.members))
        image = images.images[request.address]
        if image.error and image.check_failed:
            # Its handler import check failed before the load: never loaded, never tagged.
            raise HandlerImportError(image.error)
        if image.error or not image.image_id:
            raise AssembledImageError(image.error or f"No image was assembled for {request.address}.")
        return MadeLambdaImage(image.image_id, image.made)
    context, script = await MultiGet(
        Get(LambdaBuildContext, LambdaBuildContextRequest(request.closure, base.ref)),
        Get(EngineLockScript, EngineLockScriptRequest()),
    )
    build = LambdaImageBuild(
        refs=names.local_refs,
        context=context.digest,
        dockerfile=context.dockerfile,
        base_image_id=base.image_id,
        extra_args=(*architecture.platform_args, *cache_args(subsystem, names.repository, request.cache_from)),
    )
    process = locked_process(
        build_process(docker, build, docker_env.env),
        script=script,
        docker=docker,
        env=docker_env.env,
        run=request.run,
        key_ref=names.key_ref,
        refs=build.refs,
    )
    made = await run_build(process, names.refs[0], request.address, docker_env.env)
    assert made.image_id
    return MadeLambdaImage(made.image_id, made.made)


def rules():
    return [*collect_rules(), *chunk_images.rules(), *lambda_chunks.rules()]
