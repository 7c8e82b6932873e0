"""Content keys: one hash of everything that determines a Lambda image, and nothing else.

This module owns them: the hash, the base image's identity (`BaseImageIdentity`, its rule), the
Lambda image's key (`LambdaImageKey`, its rule) and the `ck-` tags that name both in engines and
registries. See docs/content-keys.md.

A key is reproducible: the same commit gives the same key on any machine and in any checkout path.
Its inputs are Pants digests (content-addressed: no mtimes, no absolute paths), text the plugin
generates, and option values; never the engine's socket, image ids (a RUN step makes them differ per
engine), hostnames or times.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Mapping

from pants.backend.docker.goals.package_image import DockerPackageFieldSet
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.target_types import DockerImageSourceField
from pants.backend.docker.util_rules.docker_build_context import DockerBuildContext, DockerBuildContextRequest
from pants.engine.addresses import Address
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import Dependencies, DependenciesRequest, Targets, WrappedTarget, WrappedTargetRequest

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.target_types import ChromadbLambdaArchitectureField
from chromadb_lambda.util_rules.closure import LambdaClosure, LambdaClosureRequest, resolve_base_image
from chromadb_lambda.util_rules.context import lambda_dockerfile

# Bump when the meaning of a key changes (what the plugin puts into images), so old images rebuild.
KEY_VERSION = 1
KEY_TAG_PREFIX = "ck-"
# 128 bits of the sha256: collisions are not a concern, and tags stay readable.
KEY_TAG_HEX_CHARS = 32
# Stands for the base's tag in the Dockerfile that content keys hash: the key names the base by its
# content (`BaseImageIdentity`), not by a tag.
BASE_PLACEHOLDER = "<base image>"


def stable_hash(data: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class BaseImageIdentity:
    """What makes a base `docker_image`: its build context, Dockerfile path and build args."""

    context_fingerprint: str
    dockerfile: str
    build_args: tuple[str, ...]
    # The keys of docker_image targets the base builds FROM by address (upstream images Pants builds).
    upstream_keys: tuple[str, ...] = ()
    # The base's repository: names the image, not part of its identity.
    repository: str = ""

    @property
    def ref(self) -> str:
        """The tag Lambda images build FROM: the base's repository and content key."""
        return key_ref(self.repository, self.key)

    @cached_property
    def key(self) -> str:
        # Computed once per value (a sha256 of its JSON): every package of a run reads it, and the
        # value lives in Pants' graph from run to run.
        return stable_hash(
            {
                "context": self.context_fingerprint,
                "dockerfile": self.dockerfile,
                "build_args": sorted(self.build_args),
                "upstream": sorted(self.upstream_keys),
            }
        )


def lambda_content_key(
    *, dockerfile_template: str, context_fingerprint: str, base_key: str, builder: str, architecture: str = "x86_64"
) -> str:
    """The key of a Lambda image.

    `dockerfile_template` is the generated Dockerfile with the base's tag left out: the tag names the
    base for the engine, and `base_key` is what identifies it. The Dockerfile holds the handler and
    `[lambda-image].task_root`, so neither enters the key a second time.
    """
    data: dict[str, object] = {
        "version": KEY_VERSION,
        "dockerfile": dockerfile_template,
        "context": context_fingerprint,
        "base": base_key,
        # The two builders make different images (ids, layer metadata) of the same content.
        "builder": builder,
    }
    if architecture != "x86_64":
        # Only another architecture than the default enters the key, so that the keys of every
        # x86_64 Lambda (all of them, before the field existed) stay what they were.
        data["architecture"] = architecture
    return stable_hash(data)


def dockerfile_template(closure: LambdaClosure, task_root: str) -> str:
    """The Lambda's generated Dockerfile as its key hashes it: the base's tag left out."""
    return lambda_dockerfile(closure, BASE_PLACEHOLDER, task_root)


def key_tag(key: str) -> str:
    return f"{KEY_TAG_PREFIX}{key[:KEY_TAG_HEX_CHARS]}"


def key_ref(repository: str, key: str) -> str:
    """The `repository:ck-...` ref that names the image of `key` in an engine or a registry."""
    return f"{repository}:{key_tag(key)}"


@dataclass(frozen=True)
class BaseImageIdentityRequest:
    address: Address


@rule(desc="Identifying a base image by its content")
async def identify_base_image(request: BaseImageIdentityRequest, docker_options: DockerOptions) -> BaseImageIdentity:
    # The base's build context: Pants builds what it COPYs (e.g. its PEX), but not the image.
    wrapped, context = await MultiGet(
        Get(WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>")),
        Get(DockerBuildContext, DockerBuildContextRequest(request.address, build_upstream_images=False)),
    )
    # An upstream docker_image the Dockerfile names by address is a dependency, and its content is
    # part of the base's: fold in its identity (recursively).
    dependencies = await Get(Targets, DependenciesRequest(wrapped.target[Dependencies]))
    upstream = await MultiGet(
        Get(BaseImageIdentity, BaseImageIdentityRequest(t.address))
        for t in dependencies
        if t.has_field(DockerImageSourceField)
    )
    field_set = DockerPackageFieldSet.create(wrapped.target)
    return BaseImageIdentity(
        context_fingerprint=context.digest.fingerprint,
        dockerfile=context.dockerfile,
        build_args=tuple(context.build_args),
        upstream_keys=tuple(u.key for u in upstream),
        repository=field_set.format_repository(docker_options.default_repository, context.interpolation_context),
    )


@dataclass(frozen=True)
class LambdaImageKeyRequest:
    address: Address


@dataclass(frozen=True)
class LambdaImageKey:
    closure: LambdaClosure
    base: BaseImageIdentity
    key: str

    @property
    def tag(self) -> str:
        return key_tag(self.key)


@rule(desc="Computing the content key of a chromadb_lambda image")
async def compute_lambda_image_key(
    request: LambdaImageKeyRequest, subsystem: ChromadbLambdaSubsystem
) -> LambdaImageKey:
    wrapped = await Get(WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>"))
    # The base's identity (it builds what the base COPYs, e.g. its PEX) while the closure is
    # computed, not after it: every Lambda's key waits for it.
    base_target = await resolve_base_image(wrapped.target)
    closure, base = await MultiGet(
        Get(LambdaClosure, LambdaClosureRequest(request.address)),
        Get(BaseImageIdentity, BaseImageIdentityRequest(base_target.address)),
    )
    key = lambda_content_key(
        dockerfile_template=dockerfile_template(closure, subsystem.task_root),
        context_fingerprint=closure.digest.fingerprint,
        base_key=base.key,
        builder=subsystem.builder.value,
        architecture=wrapped.target[ChromadbLambdaArchitectureField].value,
    )
    return LambdaImageKey(closure=closure, base=base, key=key)


def rules():
    return collect_rules()
