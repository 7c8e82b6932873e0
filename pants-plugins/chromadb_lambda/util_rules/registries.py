"""Where `pants publish` pushes a Lambda image: registries as `docker_image` resolves them, and which are ECR."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from pants.backend.docker.registries import DockerRegistries, DockerRegistryOptions, DockerRegistryOptionsNotFoundError
from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException

from chromadb_lambda.util_rules.engine import format_repository, image_refs

# `<account>.dkr.ecr.<region>.amazonaws.com` (also FIPS endpoints and the China partition).
_ECR_ADDRESS_RE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)


@dataclass(frozen=True)
class EcrRegistry:
    """An Amazon ECR registry: authenticated with `ecr:GetAuthorizationToken` through boto3."""

    # None: the default registry of the caller's account, in the region of the AWS configuration.
    registry_id: str | None
    region: str | None


@dataclass(frozen=True)
class PushTarget:
    """One registry that receives an image, and the names it receives it under."""

    address: str
    alias: str
    repository: str
    tags: tuple[str, ...]
    ecr: EcrRegistry | None
    skip_push: bool

    @property
    def name(self) -> str:
        return f"{self.address}/{self.repository}"

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(f"{self.name}:{tag}" for tag in self.tags)


def ecr_registry(address: str, marked: bool) -> EcrRegistry | None:
    """The ECR identity of a registry address: from an ECR hostname, or any address marked as ECR."""
    match = _ECR_ADDRESS_RE.match(address)
    if match:
        return EcrRegistry(registry_id=match.group("account"), region=match.group("region"))
    return EcrRegistry(registry_id=None, region=None) if marked else None


def is_marked_ecr(registry: DockerRegistryOptions, ecr_registries: Iterable[str]) -> bool:
    marks = set(ecr_registries)
    return registry.address in marks or (bool(registry.alias) and f"@{registry.alias}" in marks)


def push_targets(
    registries: DockerRegistries,
    field_values: tuple[str, ...],
    *,
    address: Address,
    repository: str,
    default_repository: str,
    tags: tuple[str, ...],
    key_tag: str,
    ecr_registries: tuple[str, ...],
) -> tuple[PushTarget, ...]:
    """Every registry of a target's `registries` field, as `docker_image` resolves it.

    The content key tag is pushed with the image's own tags: it is how the next publish finds out
    that a registry already holds this exact content.
    """
    try:
        options = tuple(registries.get(*field_values))
    except DockerRegistryOptionsNotFoundError as e:
        raise InvalidFieldException(
            f"The `registries` field in target {address} names a registry that is not configured: {e}"
        ) from e
    seen: set[str] = set()
    targets = []
    for registry in options:
        if registry.address in seen:
            continue
        seen.add(registry.address)
        registry_repository = repository
        if registry.repository:
            registry_repository = format_repository(
                registry.repository.replace("{target_repository}", repository).replace(
                    "{default_repository}", default_repository
                ),
                address,
                field_alias=f"repository` of registry `{registry.alias or registry.address}",
            )
        registry_tags = (*tags, *registry.extra_image_tags, key_tag)
        image_refs(registry_repository, registry_tags, address)  # validates the extra tags
        targets.append(
            PushTarget(
                address=registry.address,
                alias=registry.alias,
                repository=registry_repository,
                tags=tuple(dict.fromkeys(registry_tags)),
                ecr=ecr_registry(registry.address, is_marked_ecr(registry, ecr_registries)),
                skip_push=registry.skip_push,
            )
        )
    return tuple(targets)
