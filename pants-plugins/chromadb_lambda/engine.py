"""The Docker engine side: image names and the `docker build` process (through Pants' DockerBinary)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.backend.docker.util_rules.docker_build_args import DockerBuildArgs
from pants.engine.addresses import Address
from pants.engine.fs import Digest
from pants.engine.process import Process
from pants.engine.target import InvalidFieldException
from pants.util.strutil import softwrap

# Docker's grammar for a repository path component and a tag.
_REPOSITORY_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def format_repository(template: str, address: Address, field_alias: str = "repository") -> str:
    """Interpolates `{name}`, `{directory}` and `{parent_directory}` as `docker_image` does."""
    directory = os.path.basename(address.spec_path)
    parent_directory = os.path.basename(os.path.dirname(address.spec_path))
    try:
        repository = template.format(
            name=address.target_name, directory=directory, parent_directory=parent_directory
        )
    except (KeyError, IndexError, ValueError) as e:
        raise InvalidFieldException(
            softwrap(
                f"""
                The `{field_alias}` of {address} is {template!r}, which uses an unknown placeholder
                ({e}); use only {{name}}, {{directory}} and {{parent_directory}}.
                """
            )
        ) from e
    if not _REPOSITORY_RE.match(repository):
        raise InvalidFieldException(
            softwrap(
                f"""
                The `{field_alias}` of {address} gives the repository {repository!r}, which Docker
                rejects: use lowercase letters, digits and `._-/` separators.
                """
            )
        )
    return repository


def image_refs(repository: str, tags: tuple[str, ...], address: Address) -> tuple[str, ...]:
    for tag in tags:
        if not _TAG_RE.match(tag):
            raise InvalidFieldException(
                f"The `image_tags` field in target {address} has the tag {tag!r}, which Docker "
                "rejects: use at most 128 letters, digits and `_.-`, not starting with `.` or `-`."
            )
    return tuple(f"{repository}:{tag}" for tag in tags)


@dataclass(frozen=True)
class LambdaImageBuild:
    """What one `docker build` of a Lambda image needs."""

    refs: tuple[str, ...]
    context: Digest
    dockerfile: str
    base_image_id: str


def build_process(docker: DockerBinary, build: LambdaImageBuild, env: Mapping[str, str]) -> Process:
    # The base image id is mixed into the environment so that Pants reruns the build when the base
    # changes even if the context does not, as Pants' own docker_image rule does.
    return docker.build_image(
        tags=build.refs,
        digest=build.context,
        dockerfile=build.dockerfile,
        build_args=DockerBuildArgs(()),
        context_root=".",
        env={**env, "__CHROMADB_LAMBDA_BASE_IMAGE_ID": build.base_image_id},
    )
