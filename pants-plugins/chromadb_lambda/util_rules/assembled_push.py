"""What `pants publish` of an assembled Lambda image sends over the registry API, with no engine: the
config the assembler loaded (its sha256 is the image id) and the layer, gzip-compressed with mtime 0
and a fixed level (image_layer.deterministic_gzip), as files of the push process. The manifest is
made by the push script from the base's manifest in each registry (scripts/registry_push.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from pants.engine.fs import Digest, DigestContents, FileContent
from pants.engine.rules import Get, MultiGet, collect_rules, rule

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.util_rules.assemble import BaseImageConfig, BaseImageConfigRequest
from chromadb_lambda.util_rules.base_image import BuiltBaseImage, BuiltBaseImageRequest
from chromadb_lambda.util_rules.closure import LambdaClosure
from chromadb_lambda.util_rules.context import normalized_task_root
from chromadb_lambda.util_rules.engine import EngineImages, EngineImagesRequest
from chromadb_lambda.util_rules.image_config import UnassemblableBaseError, lambda_image_config
from chromadb_lambda.util_rules.image_layer import LayerFile, deterministic_gzip, lambda_layer, sha256_digest
from chromadb_lambda.util_rules.image_names import ImageNames
from chromadb_lambda.util_rules.registries import PushTarget

CONFIG_FILE = "assembled/config.json"
LAYER_FILE = "assembled/layer.tar.gz"


@dataclass(frozen=True)
class AssembledPushRequest:
    closure: LambdaClosure
    # The packaged image's id: the files are sent only if the assembler made exactly this image.
    image_id: str
    # The base's content key ref in the engine.
    base_key_ref: str
    # True: this run's package made the image (so it has the base too).
    built_here: bool


@dataclass(frozen=True)
class AssembledPush:
    """The push process's files, or None: the image is not the assembler's (a `docker build` one), or
    the engine lacks its base (the image was pulled: its base's config is not at hand)."""

    files: tuple[FileContent, ...] | None
    base_image_id: str = ""
    config_digest: str = ""
    layer_digest: str = ""


NOT_ASSEMBLED = AssembledPush(None)


def assembled_blobs(config: bytes, layer_tar: bytes) -> tuple[bytes, bytes]:
    """(config, compressed layer): the two blobs a registry gets besides the base's."""
    return config, deterministic_gzip(layer_tar)


@rule(desc="Preparing an assembled image for the registry API")
async def assembled_push(request: AssembledPushRequest, subsystem: ChromadbLambdaSubsystem) -> AssembledPush:
    # Never a base build or pull here: the base of an image made in this run (memoized), or one the
    # engine holds already.
    if request.built_here:
        base_image_id = (await Get(BuiltBaseImage, BuiltBaseImageRequest(request.closure.base_address))).image_id
    else:
        listing = await Get(EngineImages, EngineImagesRequest())
        base_image_id = listing.refs.get(request.base_key_ref, "")
    if not base_image_id:
        return NOT_ASSEMBLED
    contents, base = await MultiGet(
        Get(DigestContents, Digest, request.closure.digest),
        Get(BaseImageConfig, BaseImageConfigRequest(base_image_id)),
    )
    task_root = normalized_task_root(subsystem.task_root)
    layer = lambda_layer([LayerFile(f.path, f.content, f.is_executable) for f in contents], task_root)
    try:
        config = lambda_image_config(json.loads(base.inspect_json), layer.diff_id, task_root, request.closure.handler)
    except UnassemblableBaseError:
        return NOT_ASSEMBLED
    if sha256_digest(config) != request.image_id:
        return NOT_ASSEMBLED
    config, layer_gz = assembled_blobs(config, layer.tar)
    files = (FileContent(CONFIG_FILE, config), FileContent(LAYER_FILE, layer_gz))
    return AssembledPush(files, base_image_id, sha256_digest(config), sha256_digest(layer_gz))


def base_push_targets(targets: tuple[PushTarget, ...], base: ImageNames) -> tuple[PushTarget, ...]:
    """The base's content key tag in each registry a Lambda goes to: the repository its layers are
    mounted from. Pushed by the engine, whatever the base's `skip_push` (it is not deployed)."""
    return tuple(
        PushTarget(address=t.address, alias=t.alias, repository=base.repository, tags=(base.key_tag,), ecr=t.ecr, skip_push=False)
        for t in targets
    )


def assembled_spec(push: AssembledPush, base: ImageNames) -> dict:
    return {
        "config": CONFIG_FILE,
        "layer": LAYER_FILE,
        "base_image_id": push.base_image_id,
        "base_repository": base.repository,
        "base_tag": base.key_tag,
    }


def rules():
    return collect_rules()
