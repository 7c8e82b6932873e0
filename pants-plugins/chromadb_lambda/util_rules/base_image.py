"""The base `docker_image` of Lambda images: its content identity, and building it only when needed.

Pants 2.17 builds a `docker_image` in every session and tags it with `{pants.hash}`, which mixes in
`[docker].env_vars` values such as DOCKER_HOST, so the same commit gives other tags on other machines.
Here the base is built from the same Pants build context (same Dockerfile, build args and options),
but tagged with a content key and skipped when the engine already holds that key.
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.backend.docker.goals.package_image import DockerPackageFieldSet, get_build_options
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.backend.docker.util_rules.docker_build_context import (
    DockerBuildContext,
    DockerBuildContextRequest,
)
from pants.engine.addresses import Address
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.target_types import BaseImageCacheFromField
from chromadb_lambda.util_rules.content_keys import BaseImageIdentity, BaseImageIdentityRequest
from chromadb_lambda.util_rules.docker_build import cache_args, docker_build_process, run_build
from chromadb_lambda.util_rules.engine import DockerEnvironment, EngineImages, EngineImagesRequest
from chromadb_lambda.util_rules.engine_locks import EngineLockScript, EngineLockScriptRequest, locked_process
from chromadb_lambda.util_rules.existing_image import ExistingImage, ExistingImageRequest
from chromadb_lambda.util_rules.image_names import BaseImageNamesRequest, ImageNames


@dataclass(frozen=True)
class BuiltBaseImageRequest:
    address: Address


@dataclass(frozen=True)
class BuiltBaseImage:
    identity: BaseImageIdentity
    image_id: str
    # A tag the engine holds (BuildKit cannot build FROM an image id) that names the base's content.
    ref: str
    built: bool


@rule(desc="Building a base image for chromadb_lambda images")
async def build_base_image(
    request: BuiltBaseImageRequest,
    docker: DockerBinary,
    docker_options: DockerOptions,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
) -> BuiltBaseImage:
    wrapped, identity, names = await MultiGet(
        Get(WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>")),
        Get(BaseImageIdentity, BaseImageIdentityRequest(request.address)),
        Get(ImageNames, BaseImageNamesRequest(request.address)),
    )
    # In the engine, else (`[lambda-image].pull_from_registries`) published by
    # `[lambda-image].publish_base_images` on another runner.
    existing = await Get(ExistingImage, ExistingImageRequest(request.address, names))
    if existing.image_id:
        return BuiltBaseImage(identity=identity, image_id=existing.image_id, ref=names.key_ref, built=False)
    run = existing.run or (await Get(EngineImages, EngineImagesRequest())).run

    # Only now build the images the base's Dockerfile names by target address (`FROM` an upstream
    # docker_image), as Pants' own docker_image rule does.
    context = await Get(DockerBuildContext, DockerBuildContextRequest(request.address, build_upstream_images=True))
    field_set = DockerPackageFieldSet.create(wrapped.target)
    # The base's own tags too, as `pants package` of the base would give it.
    refs = (*base_image_refs(field_set, docker_options, context), names.key_ref)
    extra_args = (
        *cache_args(subsystem, identity.repository, wrapped.target.get(BaseImageCacheFromField).value),
        *get_build_options(
            context=context,
            field_set=field_set,
            global_target_stage_option=docker_options.build_target_stage,
            target=wrapped.target,
        ),
    )
    script = await Get(EngineLockScript, EngineLockScriptRequest())
    process = locked_process(
        docker_build_process(
            docker,
            refs=refs,
            digest=context.digest,
            dockerfile=context.dockerfile,
            build_args=context.build_args,
            context_root=field_set.get_context_root(docker_options.default_context_root),
            env={**docker_env.env, **context.build_env.environment},
            extra_args=extra_args,
            invalidation={"__UPSTREAM_IMAGE_IDS": ",".join(context.upstream_image_ids)},
        ),
        script=script,
        docker=docker,
        env=docker_env.env,
        run=run,
        key_ref=names.key_ref,
        refs=refs,
    )
    # Under the lock of its content-key tag: two runs that need the same base build it once.
    made = await run_build(process, names.key_ref, request.address, docker_env.env)
    assert made.image_id
    return BuiltBaseImage(identity=identity, image_id=made.image_id, ref=names.key_ref, built=made.made)


def base_image_refs(
    field_set: DockerPackageFieldSet, docker_options: DockerOptions, context: DockerBuildContext
) -> tuple[str, ...]:
    """The refs `pants package` of the base gives it (Pants' own `image_refs`)."""
    return tuple(
        tag.full_name
        for registry in field_set.image_refs(
            default_repository=docker_options.default_repository,
            registries=docker_options.registries(),
            interpolation_context=context.interpolation_context,
        )
        for tag in registry.tags
    )


def rules():
    return collect_rules()
