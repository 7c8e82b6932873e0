"""How the images the plugin makes are named: repository, tags, content-key ref, and the names every
registry receives them under.

Names are formatted by Pants' own docker machinery (`DockerPackageFieldSet.format_repository` and
`format_tag` with an `InterpolationContext`), so a `chromadb_lambda` takes the placeholders a
`docker_image` takes: `{name}`, `{directory}`, `{parent_directory}` and `{default_repository}` in its
repository, `{build_args.X}` (from `[docker].build_args`, values from the environment when given
without one) in its repository and tags, `{target_repository}` in a registry's `repository`, and
`{pants.hash}`, which for a Lambda is its content key (the same on every machine, unlike a
`docker_image`'s). The formatting itself: image_refs.py. No two targets may share a tag:
image_tag_collisions.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.backend.docker.goals.package_image import DockerPackageFieldSet
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.util_rules.docker_build_context import DockerBuildContext, DockerBuildContextRequest
from pants.engine.addresses import Address
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.util.frozendict import FrozenDict

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.target_types import (
    ChromadbLambdaImageTagsField,
    ChromadbLambdaRegistriesField,
    ChromadbLambdaRepositoryField,
)
from chromadb_lambda.util_rules.content_keys import (
    BaseImageIdentity,
    BaseImageIdentityRequest,
    LambdaImageKey,
    LambdaImageKeyRequest,
    key_tag,
)
from chromadb_lambda.util_rules.image_refs import (
    build_arg_values,
    image_repository,
    lambda_docker_field_set,
    lambda_image_refs,
    lambda_interpolation_context,
    push_targets,
)
from chromadb_lambda.util_rules.registries import PushTarget


@dataclass(frozen=True)
class ImageNames:
    """How an image is named in the engine and in the registries it is published to."""

    repository: str
    # The image's own `repository:tag`s (none for a base: Lambdas name it by its key ref).
    refs: tuple[str, ...]
    # `repository:ck-<key>`: names the image's content.
    key_ref: str
    # Where `pants publish` pushes it and `[lambda-image].pull_from_registries` looks for it.
    registries: tuple[PushTarget, ...]

    @property
    def key_tag(self) -> str:
        return self.key_ref.rpartition(":")[2]

    @property
    def local_refs(self) -> tuple[str, ...]:
        """Every tag the image gets in the engine: its own tags and its content key tag."""
        return (*self.refs, self.key_ref)


@dataclass(frozen=True)
class LambdaBuildArgsRequest:
    pass


@dataclass(frozen=True)
class LambdaBuildArgs:
    """`[docker].build_args` with their values, as `{build_args.X}` placeholders of Lambdas see them."""

    values: FrozenDict[str, str]


@rule
async def lambda_build_args(_: LambdaBuildArgsRequest, docker_options: DockerOptions) -> LambdaBuildArgs:
    names = tuple(arg for arg in docker_options.build_args if "=" not in arg)
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(names))
    return LambdaBuildArgs(FrozenDict(build_arg_values(docker_options.build_args, env)))


@dataclass(frozen=True)
class LambdaRepositoryRequest:
    address: Address


@dataclass(frozen=True)
class LambdaRepository:
    """A chromadb_lambda's repository: known before its content key, so the engine's tags of it can
    be read while the key is computed."""

    name: str


def _lambda_field_set(wrapped: WrappedTarget) -> DockerPackageFieldSet:
    target = wrapped.target
    return lambda_docker_field_set(
        target.address,
        target[ChromadbLambdaRepositoryField].value,
        target[ChromadbLambdaImageTagsField].value,
        target[ChromadbLambdaRegistriesField].value,
    )


@rule
async def lambda_repository(request: LambdaRepositoryRequest, docker_options: DockerOptions) -> LambdaRepository:
    wrapped, build_args = await MultiGet(
        Get(WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>")),
        Get(LambdaBuildArgs, LambdaBuildArgsRequest()),
    )
    context = lambda_interpolation_context(build_args.values)
    return LambdaRepository(image_repository(_lambda_field_set(wrapped), docker_options.default_repository, context))


@dataclass(frozen=True)
class LambdaImageNamesRequest:
    address: Address


@rule(desc="Naming a chromadb_lambda image")
async def lambda_image_names(
    request: LambdaImageNamesRequest, docker_options: DockerOptions, subsystem: ChromadbLambdaSubsystem
) -> ImageNames:
    wrapped, key, build_args = await MultiGet(
        Get(WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>")),
        Get(LambdaImageKey, LambdaImageKeyRequest(request.address)),
        Get(LambdaBuildArgs, LambdaBuildArgsRequest()),
    )
    field_set = _lambda_field_set(wrapped)
    repository, refs = lambda_image_refs(field_set, docker_options.default_repository, build_args.values, key.key)
    registries = push_targets(
        field_set,
        docker_options.registries(),
        default_repository=docker_options.default_repository,
        interpolation_context=lambda_interpolation_context(build_args.values),
        tag_context=lambda_interpolation_context(build_args.values, key.key),
        tags=tuple(ref.rpartition(":")[2] for ref in refs),
        key_tag=key.tag,
        ecr_registries=tuple(subsystem.ecr_registries),
    )
    return ImageNames(repository=repository, refs=refs, key_ref=f"{repository}:{key.tag}", registries=registries)


@dataclass(frozen=True)
class BaseImageNamesRequest:
    address: Address


@rule(desc="Naming a base image by its content")
async def base_image_names(
    request: BaseImageNamesRequest, docker_options: DockerOptions, subsystem: ChromadbLambdaSubsystem
) -> ImageNames:
    wrapped, identity, context = await MultiGet(
        Get(WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>")),
        Get(BaseImageIdentity, BaseImageIdentityRequest(request.address)),
        Get(DockerBuildContext, DockerBuildContextRequest(request.address, build_upstream_images=False)),
    )
    registries = push_targets(
        DockerPackageFieldSet.create(wrapped.target),
        docker_options.registries(),
        default_repository=docker_options.default_repository,
        interpolation_context=context.interpolation_context,
        tags=(),
        key_tag=key_tag(identity.key),
        ecr_registries=tuple(subsystem.ecr_registries),
    )
    return ImageNames(repository=identity.repository, refs=(), key_ref=identity.ref, registries=registries)


def rules():
    return collect_rules()
