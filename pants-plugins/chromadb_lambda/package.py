"""`pants package` of a `chromadb_lambda`: build the base, then the Lambda image on top of it."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from pants.backend.docker.goals.package_image import (
    DockerPackageFieldSet,
    parse_image_id_from_docker_build_output,
)
from pants.backend.docker.package_types import BuiltDockerImage
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, OutputPathField, PackageFieldSet
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.process import Process, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.engine.unions import UnionRule
from pants.util.strutil import pluralize

from chromadb_lambda.closure import LambdaClosure, LambdaClosureRequest
from chromadb_lambda.context import LambdaBuildContext, LambdaBuildContextRequest
from chromadb_lambda.engine import LambdaImageBuild, build_process, format_repository, image_refs
from chromadb_lambda.target_types import (
    ChromadbLambdaBaseImageField,
    ChromadbLambdaHandlerField,
    ChromadbLambdaImageTagsField,
    ChromadbLambdaRepositoryField,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChromadbLambdaPackageFieldSet(PackageFieldSet):
    required_fields = (ChromadbLambdaHandlerField, ChromadbLambdaBaseImageField)

    handler: ChromadbLambdaHandlerField
    base_image: ChromadbLambdaBaseImageField
    repository: ChromadbLambdaRepositoryField
    image_tags: ChromadbLambdaImageTagsField
    output_path: OutputPathField


@dataclass(frozen=True)
class BuiltBaseImage:
    image_id: str
    ref: str  # A tag the engine holds: BuildKit cannot build FROM an image id.


def pick_base_ref(image: BuiltDockerImage) -> str:
    # Prefer a tag other than `latest`: a content-derived tag cannot be moved by another build.
    tags = [t for t in image.tags if not t.endswith(":latest")] or list(image.tags)
    return tags[0]


def size_text(size: int) -> str:
    return f"{size} B" if size < 1024 else f"{size / 1024:.1f} KiB"


def docker_info(address: str, image_id: str, refs: tuple[str, ...], base: BuiltBaseImage, closure: LambdaClosure) -> bytes:
    info = {
        "version": 1,
        "address": address,
        "image_id": image_id,
        "tags": list(refs),
        "handler": closure.handler,
        "base_image": {"address": str(closure.base_address), "ref": base.ref, "image_id": base.image_id},
        "context": {"files": len(closure.files), "bytes": closure.total_bytes},
    }
    return (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()


async def _build_base_image(closure: LambdaClosure) -> BuiltBaseImage:
    wrapped = await Get(
        WrappedTarget, WrappedTargetRequest(closure.base_address, description_of_origin="<infallible>")
    )
    built = await Get(BuiltPackage, DockerPackageFieldSet, DockerPackageFieldSet.create(wrapped.target))
    image = next(a for a in built.artifacts if isinstance(a, BuiltDockerImage))
    return BuiltBaseImage(image_id=image.image_id, ref=pick_base_ref(image))


@rule(desc="Package a chromadb_lambda image")
async def package_chromadb_lambda(
    field_set: ChromadbLambdaPackageFieldSet,
    docker: DockerBinary,
    docker_options: DockerOptions,
    docker_env_aware: DockerOptions.EnvironmentAware,
) -> BuiltPackage:
    closure = await Get(LambdaClosure, LambdaClosureRequest(field_set.address))
    base = await _build_base_image(closure)
    context = await Get(LambdaBuildContext, LambdaBuildContextRequest(closure, base.ref))

    repository = format_repository(
        field_set.repository.value or docker_options.default_repository, field_set.address
    )
    refs = image_refs(repository, tuple(field_set.image_tags.value or ()), field_set.address)
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(docker_env_aware.env_vars))
    build = LambdaImageBuild(refs=refs, context=context.digest, dockerfile=context.dockerfile, base_image_id=base.image_id)
    result = await Get(ProcessResult, Process, build_process(docker, build, env))
    image_id = parse_image_id_from_docker_build_output(result.stdout, result.stderr)

    info_path = field_set.output_path.value_or_default(file_ending="docker-info.json")
    manifest_path = os.path.join(os.path.dirname(info_path), f"{field_set.address.target_name}.context.json")
    digest = await Get(
        Digest,
        CreateDigest(
            [
                FileContent(info_path, docker_info(str(field_set.address), image_id, refs, base, closure)),
                FileContent(manifest_path, context.manifest),
            ]
        ),
    )
    summary = (
        f"{refs[0]}: {pluralize(len(closure.files), 'file')}, {size_text(closure.total_bytes)} of context "
        f"on {base.ref}, image {image_id}"
    )
    return BuiltPackage(
        digest,
        (
            BuiltDockerImage(
                image_id=image_id,
                tags=refs,
                relpath=info_path,
                extra_log_lines=(f"Built Lambda image {summary}",),
            ),
            BuiltPackageArtifact(relpath=manifest_path),
        ),
    )


def rules():
    return [*collect_rules(), UnionRule(PackageFieldSet, ChromadbLambdaPackageFieldSet)]
