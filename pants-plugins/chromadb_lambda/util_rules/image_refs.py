"""Formatting image names with Pants' own docker machinery (pure functions, no engine): a
`chromadb_lambda`'s naming fields in the shape of a `DockerPackageFieldSet`, the interpolation
context of its placeholders, and the checked repository, tags, refs and per-registry names.
The rules that name images: image_names.py."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from pants.backend.docker.goals.package_image import (
    DockerImageTagValueError,
    DockerPackageFieldSet,
    DockerRepositoryNameError,
)
from pants.backend.docker.registries import DockerRegistries, DockerRegistryOptionsNotFoundError
from pants.backend.docker.target_types import (
    DockerImageContextRootField,
    DockerImageRegistriesField,
    DockerImageRepositoryField,
    DockerImageSourceField,
    DockerImageTagsField,
    DockerImageTargetStageField,
)
from pants.backend.docker.value_interpolation import DockerBuildArgsInterpolationValue
from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException
from pants.util.strutil import softwrap
from pants.util.value_interpolation import InterpolationContext, InterpolationValue

from chromadb_lambda.target_types import ChromadbLambdaTarget
from chromadb_lambda.util_rules.registries import PushTarget, ecr_registry, is_marked_ecr


# Docker's grammar for a repository path component and a tag.
_REPOSITORY_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class _LambdaDockerFieldSet(DockerPackageFieldSet):
    """A chromadb_lambda's naming fields in the shape Pants' docker backend formats names from."""

    def format_tag(self, tag: str, interpolation_context: InterpolationContext) -> str:
        source = InterpolationContext.TextSource(
            address=self.address, target_alias=ChromadbLambdaTarget.alias, field_alias=self.tags.alias
        )
        return interpolation_context.format(tag, source=source, error_cls=DockerImageTagValueError)


def lambda_docker_field_set(
    address: Address, repository: str | None, tags: Iterable[str] | None, registries: Iterable[str] | None = None
) -> DockerPackageFieldSet:
    return _LambdaDockerFieldSet(
        address=address,
        context_root=DockerImageContextRootField(None, address),
        registries=DockerImageRegistriesField(None if registries is None else tuple(registries), address),
        repository=DockerImageRepositoryField(repository, address),
        source=DockerImageSourceField(None, address),
        tags=DockerImageTagsField(None if tags is None else tuple(tags), address),
        target_stage=DockerImageTargetStageField(None, address),
        output_path=OutputPathField(None, address),
    )


def build_arg_values(build_args: Iterable[str], env: Mapping[str, str]) -> dict[str, str]:
    """`[docker].build_args` as `{build_args.X}` sees them: `X=value`, or `X` read from the environment
    (left out when unset: using it is then an unknown placeholder, as for `docker_image`)."""
    values = {}
    for arg in build_args:
        name, has_value, value = arg.partition("=")
        if has_value:
            values[name] = value
        elif name in env:
            values[name] = env[name]
    return values


def lambda_interpolation_context(build_args: Mapping[str, str], key: str | None = None) -> InterpolationContext:
    """`{build_args.X}`, and `{pants.hash}` (the content key) once the key is known: tags may use it,
    repositories may not (the engine's tags of a repository are read before the key is computed)."""
    values: dict = {"build_args": DockerBuildArgsInterpolationValue(build_args)}
    if key is not None:
        values["pants"] = InterpolationValue({"hash": key})
    return InterpolationContext.from_dict(values)


def _field_error(address: Address, e: Exception) -> InvalidFieldException:
    # Pants' messages name the field; the repository's calls the target a `docker_image`.
    return InvalidFieldException(str(e).replace("`docker_image` target", f"`{ChromadbLambdaTarget.alias}` target"))


def image_repository(
    field_set: DockerPackageFieldSet,
    default_repository: str,
    interpolation_context: InterpolationContext,
    registry=None,
    field_alias: str = "repository",
) -> str:
    """The formatted repository (lowercased, as Pants does), checked against Docker's grammar."""
    try:
        repository = field_set.format_repository(default_repository, interpolation_context, registry)
    except DockerRepositoryNameError as e:
        raise _field_error(field_set.address, e) from e
    if not _REPOSITORY_RE.match(repository):
        raise InvalidFieldException(
            softwrap(
                f"""
                The `{field_alias}` of {field_set.address} gives the repository {repository!r}, which
                Docker rejects: use lowercase letters, digits and `._-/` separators.
                """
            )
        )
    return repository


def image_tags(
    field_set: DockerPackageFieldSet, tags: tuple[str, ...], interpolation_context: InterpolationContext
) -> tuple[str, ...]:
    """The formatted tags, each checked against Docker's grammar."""
    formatted = []
    for template in tags:
        try:
            tag = field_set.format_tag(template, interpolation_context)
        except DockerImageTagValueError as e:
            raise _field_error(field_set.address, e) from e
        if not _TAG_RE.match(tag):
            raise InvalidFieldException(
                f"The `image_tags` field in target {field_set.address} has the tag {tag!r}, which Docker "
                "rejects: use at most 128 letters, digits and `_.-`, not starting with `.` or `-`."
            )
        formatted.append(tag)
    return tuple(formatted)


def lambda_image_refs(
    field_set: DockerPackageFieldSet, default_repository: str, build_args: Mapping[str, str], key: str
) -> tuple[str, tuple[str, ...]]:
    """A chromadb_lambda's repository and its `repository:tag` refs (its content-key tag aside)."""
    tags = tuple(field_set.tags.value or ())
    if not tags:
        raise InvalidFieldException(
            f"The `image_tags` field in target {field_set.address} must not be empty: give at least one tag, "
            'e.g. `["latest"]`.'
        )
    repository = image_repository(field_set, default_repository, lambda_interpolation_context(build_args))
    formatted = image_tags(field_set, tags, lambda_interpolation_context(build_args, key))
    return repository, tuple(f"{repository}:{tag}" for tag in formatted)


def push_targets(
    field_set: DockerPackageFieldSet,
    registries: DockerRegistries,
    *,
    default_repository: str,
    interpolation_context: InterpolationContext,
    tags: tuple[str, ...],
    key_tag: str,
    ecr_registries: tuple[str, ...],
    tag_context: InterpolationContext | None = None,
) -> tuple[PushTarget, ...]:
    """Every registry of a target's `registries` field, as `docker_image` resolves it, with the
    formatted `tags`, the registry's `extra_image_tags` and the content key tag (how the next publish
    finds out that a registry already holds this exact content). `tag_context` formats the extra tags
    (default: `interpolation_context`)."""
    try:
        options = tuple(registries.get(*(field_set.registries.value or ())))
    except DockerRegistryOptionsNotFoundError as e:
        raise InvalidFieldException(
            f"The `registries` field in target {field_set.address} names a registry that is not configured: {e}"
        ) from e
    seen: set[str] = set()
    targets = []
    for registry in options:
        if registry.address in seen:
            continue
        seen.add(registry.address)
        repository = image_repository(
            field_set,
            default_repository,
            interpolation_context,
            registry,
            field_alias=f"repository` of registry `{registry.alias or registry.address}",
        )
        extra = image_tags(field_set, tuple(registry.extra_image_tags), tag_context or interpolation_context)
        targets.append(
            PushTarget(
                address=registry.address,
                alias=registry.alias,
                repository=repository,
                tags=tuple(dict.fromkeys((*tags, *extra, key_tag))),
                ecr=ecr_registry(registry.address, is_marked_ecr(registry, ecr_registries)),
                skip_push=registry.skip_push,
            )
        )
    return tuple(targets)
