"""`[lambda-image].builder = "assembler"`: a Lambda image written from the Pants digest and loaded
into the engine, instead of a `docker build`.

The layer and config are pure functions of the closure's files and the base's config (image_layer.py,
image_config.py), so the image id is known before the engine sees the image. This module reads the
base's config and holds the builder's error messages; the images are made a chunk at a time
(chunk_images.py: one archive, one `docker load` under the engine locks, which must report that id).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.process import Process, ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.util.strutil import softwrap

from chromadb_lambda.util_rules.engine import DockerEnvironment, docker_process
from chromadb_lambda.util_rules.image_config import INSPECT_FORMAT, UnassemblableBaseError

BUILDER_OPTION = "[lambda-image].builder"


class AssembledImageError(Exception):
    """An assembled image could not be loaded, or the engine gave it another id than computed."""


@dataclass(frozen=True)
class BaseImageConfigRequest:
    image_id: str


@dataclass(frozen=True)
class BaseImageConfig:
    """`docker image inspect --format INSPECT_FORMAT` of a base image id, as JSON text."""

    inspect_json: str


def base_inspect_process(docker: DockerBinary, image_id: str, env: Mapping[str, str]) -> Process:
    process = docker_process(
        docker, ("image", "inspect", "--format", INSPECT_FORMAT, image_id), env, f"Reading the config of base image {image_id}"
    )
    # An image id is the sha256 of the image's config, and the format prints only config fields: the
    # output is a function of the id alone, on any engine and in any session, so it is cached like
    # any successful process (locally and in a remote cache). A missing image fails: never cached.
    return dataclasses.replace(process, cache_scope=ProcessCacheScope.SUCCESSFUL)


@rule(desc="Reading the config of a base image")
async def read_base_image_config(
    request: BaseImageConfigRequest, docker: DockerBinary, docker_env: DockerEnvironment
) -> BaseImageConfig:
    result = await Get(ProcessResult, Process, base_inspect_process(docker, request.image_id, docker_env.env))
    return BaseImageConfig(result.stdout.decode())


def unassemblable_message(address: Address, error: UnassemblableBaseError) -> str:
    return softwrap(
        f"""
        Cannot assemble the image of {address}: {error}. Set `{BUILDER_OPTION} = "docker-build"` (or
        `--lambda-image-builder=docker-build`) to build it with `docker build`.
        """
    )


def wrong_image_message(address: Address, key_ref: str, reported: str | None, computed: str) -> str:
    return softwrap(
        f"""
        The engine reports the image {reported} for {key_ref} ({address}), but the image assembled
        for it is {computed}: the engine changed the config while loading it, or another program
        tagged {key_ref}. Remove that tag and run Pants again, or set `{BUILDER_OPTION} =
        "docker-build"`.
        """
    )


def rules():
    return collect_rules()
