"""A registry an image is pushed to or pulled from, and which registries are ECR (names: image_names.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from pants.backend.docker.registries import DockerRegistryOptions

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
