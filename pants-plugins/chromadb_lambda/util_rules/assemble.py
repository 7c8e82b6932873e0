"""`[lambda-image].builder = "assembler"`: a Lambda image written from the Pants digest and loaded
into the engine, instead of a `docker build`.

The layer and config are pure functions of the closure's files and the base's config (image_layer.py,
image_config.py), so the image id is known before the engine sees the image; the engine only loads
the archive (`docker load`, under the same locks as builds: engine_lock.py) and must report that id.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Mapping

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, DigestContents, FileContent
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.strutil import softwrap

from chromadb_lambda.util_rules.closure import LambdaClosure
from chromadb_lambda.util_rules.context import normalized_task_root
from chromadb_lambda.util_rules.engine import DockerEnvironment, EngineRun, docker_process
from chromadb_lambda.util_rules.engine_locks import (
    EngineLockScript,
    EngineLockScriptRequest,
    locked_process,
    parse_locked_result,
)
from chromadb_lambda.util_rules.image_config import (
    INSPECT_FORMAT,
    UnassemblableBaseError,
    docker_archive,
    lambda_image_config,
)
from chromadb_lambda.util_rules.image_layer import LayerFile, lambda_layer
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem

ARCHIVE = "lambda-image.tar"
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


@dataclass(frozen=True)
class AssembledLambdaImageRequest:
    address: Address
    closure: LambdaClosure
    base_image_id: str
    key_ref: str
    # Every tag the image gets, `key_ref` included.
    refs: tuple[str, ...]
    run: EngineRun


@dataclass(frozen=True)
class AssembledLambdaImage:
    image_id: str
    # False: another run loaded the same content while this one waited for the lock.
    made: bool


def load_failure_message(image: str, address: Address, result: FallibleProcessResult) -> str:
    output = (result.stderr.decode(errors="replace") + result.stdout.decode(errors="replace")).strip()
    tail = "\n".join(f"  {line}" for line in output.splitlines()[-20:])
    return softwrap(
        f"""
        `docker load` of the image assembled for {address} ({image}) failed (exit code
        {result.exit_code}). The engine must hold the base image's layers (only the new layer is in
        the archive): if the base was removed meanwhile, run Pants again.
        """
    ) + f"\n{tail}"


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


@rule(desc="Assembling a chromadb_lambda image")
async def assemble_lambda_image(
    request: AssembledLambdaImageRequest,
    docker: DockerBinary,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
) -> AssembledLambdaImage:
    contents, base, script = await MultiGet(
        Get(DigestContents, Digest, request.closure.digest),
        Get(BaseImageConfig, BaseImageConfigRequest(request.base_image_id)),
        Get(EngineLockScript, EngineLockScriptRequest()),
    )
    task_root = normalized_task_root(subsystem.task_root)
    layer = lambda_layer([LayerFile(f.path, f.content, f.is_executable) for f in contents], task_root)
    try:
        config = lambda_image_config(json.loads(base.inspect_json), layer.diff_id, task_root, request.closure.handler)
    except UnassemblableBaseError as e:
        raise AssembledImageError(unassemblable_message(request.address, e)) from e
    archive = docker_archive(config, layer, request.refs)
    digest = await Get(Digest, CreateDigest([FileContent(ARCHIVE, archive.tar)]))
    load = dataclasses.replace(
        docker_process(docker, ("load", "--input", ARCHIVE), docker_env.env, f"Loading the assembled image {request.key_ref}"),
        input_digest=digest,
    )
    process = locked_process(
        load,
        script=script,
        docker=docker,
        env=docker_env.env,
        run=request.run,
        key_ref=request.key_ref,
        refs=request.refs,
        kind="load",
    )
    result = await Get(FallibleProcessResult, Process, process)
    if result.exit_code != 0:
        raise AssembledImageError(load_failure_message(request.refs[0], request.address, result))
    loaded = parse_locked_result(result.stdout)
    if loaded.image_id != archive.image_id:
        raise AssembledImageError(
            wrong_image_message(request.address, request.key_ref, loaded.image_id, archive.image_id)
        )
    return AssembledLambdaImage(image_id=archive.image_id, made=loaded.made)


def rules():
    return collect_rules()
