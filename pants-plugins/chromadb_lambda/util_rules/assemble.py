"""`[lambda-image].builder = "assembler"`: a Lambda image written from the Pants digest and loaded
into the engine, instead of a `docker build`.

The layer and config are pure functions of the closure's files and the base's config (image_layer.py,
image_config.py), so the image id is known before the engine sees the image. This module reads the
base's config and holds the builder's error messages; the images are made a chunk at a time
(chunk_images.py: one archive, one `docker load` under the engine locks, which must report that id).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Mapping, Sequence

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.process import Process, ProcessCacheScope, ProcessResult
from pants.engine.fs import Digest, DigestContents
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.strutil import softwrap

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.util_rules.base_image import BuiltBaseImage, BuiltBaseImageRequest
from chromadb_lambda.util_rules.content_keys import LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.context import normalized_task_root
from chromadb_lambda.util_rules.engine import DockerEnvironment, docker_process
from chromadb_lambda.util_rules.image_config import INSPECT_FORMAT, UnassemblableBaseError, canonical_json, lambda_image_config
from chromadb_lambda.util_rules.image_layer import BLOCK, Layer, LayerFile, lambda_layer, sha256_digest, tar_archive
from chromadb_lambda.util_rules.image_names import ImageNames, LambdaImageNamesRequest

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


@dataclass(frozen=True)
class AssembledMemberRequest:
    address: Address


@dataclass(frozen=True)
class AssembledMember:
    """A member's image as the assembler makes it (pure: no engine), or why it cannot be made."""

    address: Address
    key_ref: str
    refs: tuple[str, ...]
    base_image_id: str
    task_root: str
    module: str
    function: str
    config: bytes
    layer: Layer | None
    # sha256 of `config`: the id the engine gives the loaded image. None with an error.
    image_id: str | None
    error: str | None = None


@rule(desc="Assembling a chromadb_lambda image (layer and config)")
async def assemble_member(request: AssembledMemberRequest, subsystem: ChromadbLambdaSubsystem) -> AssembledMember:
    key, names = await MultiGet(
        Get(LambdaImageKey, LambdaImageKeyRequest(request.address)),
        Get(ImageNames, LambdaImageNamesRequest(request.address)),
    )
    closure = key.closure
    base = await Get(BuiltBaseImage, BuiltBaseImageRequest(closure.base_address))
    contents, base_config = await MultiGet(
        Get(DigestContents, Digest, closure.digest),
        Get(BaseImageConfig, BaseImageConfigRequest(base.image_id)),
    )
    task_root = normalized_task_root(subsystem.task_root)
    member = AssembledMember(
        address=request.address,
        key_ref=names.key_ref,
        refs=names.local_refs,
        base_image_id=base.image_id,
        task_root=task_root,
        module=closure.handler_module,
        function=closure.handler_function,
        config=b"",
        layer=None,
        image_id=None,
    )
    layer = lambda_layer([LayerFile(f.path, f.content, f.is_executable) for f in contents], task_root)
    try:
        config = lambda_image_config(json.loads(base_config.inspect_json), layer.diff_id, task_root, closure.handler)
    except UnassemblableBaseError as e:
        return dataclasses.replace(member, error=unassemblable_message(request.address, e))
    return dataclasses.replace(member, config=config, layer=layer, image_id=sha256_digest(config))


def _layer_path(diff_id: str) -> str:
    return f"{diff_id.split(':', 1)[1]}/layer.tar"


def chunk_archive(members: Sequence[AssembledMember], tagged: bool = True) -> bytes:
    """ONE `docker save`-format archive of several images, each holding only its last layer, tagged
    with every local ref (untagged: no tag, the images are tagged after their check). `manifest.json` lists every layer of each config's root filesystem, but the
    base's layer files are left out: `docker load` reads a layer file only when the engine does not
    hold that layer's chain yet (moby image/tarexport/load.go), so the engine must hold the base."""
    files: dict[str, LayerFile] = {}
    manifest = []
    for member in sorted(members, key=lambda m: m.key_ref):
        assert member.layer is not None and member.image_id is not None, member.address
        diff_ids = json.loads(member.config)["rootfs"]["diff_ids"]
        if diff_ids[-1] != member.layer.diff_id:
            raise ValueError(f"the config of {member.address} does not end with its layer")
        config_name = f"{member.image_id.split(':', 1)[1]}.json"
        files[config_name] = LayerFile(config_name, member.config)
        files[_layer_path(member.layer.diff_id)] = LayerFile(_layer_path(member.layer.diff_id), member.layer.tar)
        manifest.append(
            {"Config": config_name, "RepoTags": sorted(set(member.refs)) if tagged else [], "Layers": [_layer_path(d) for d in diff_ids]}
        )
    files["manifest.json"] = LayerFile("manifest.json", canonical_json(manifest))
    tar = tar_archive(files.values())
    assert len(tar) % BLOCK == 0
    return tar


def rules():
    return collect_rules()
