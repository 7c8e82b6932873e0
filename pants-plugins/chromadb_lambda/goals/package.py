"""`pants package` of a `chromadb_lambda`: skip it when the engine has its content key, else build
the base (when needed), then the Lambda image on top of it."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from pants.backend.docker.package_types import BuiltDockerImage
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, OutputPathField, PackageFieldSet
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.process import Process, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.strutil import pluralize

from chromadb_lambda.util_rules.assemble import AssembledLambdaImage, AssembledLambdaImageRequest
from chromadb_lambda.util_rules.base_image import BuiltBaseImage, BuiltBaseImageRequest
from chromadb_lambda.util_rules.closure import LambdaClosure, LambdaClosureRequest
from chromadb_lambda.util_rules.content_keys import LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.content_keys import key_ref as content_key_ref
from chromadb_lambda.util_rules.context import (
    LambdaBuildContext,
    LambdaBuildContextRequest,
    context_manifest,
)
from chromadb_lambda.util_rules.engine import (
    DockerEnvironment,
    EngineImages,
    EngineImagesRequest,
    EngineLockScript,
    EngineLockScriptRequest,
    LambdaImageBuild,
    RepositoryImages,
    RepositoryImagesRequest,
    build_process,
    cache_args,
    lambda_image_names,
    locked_process,
    parse_locked_result,
    run_build,
)
from chromadb_lambda.util_rules.image_names import LambdaImageNames, LambdaImageNamesRequest
from chromadb_lambda.util_rules.import_check import LambdaImportCheck, LambdaImportCheckRequest
from chromadb_lambda.util_rules.pull import PublishedImageRequest, PulledImage
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem, LambdaImageBuilder
from chromadb_lambda.target_types import (
    ChromadbLambdaBaseImageField,
    ChromadbLambdaCacheFromField,
    ChromadbLambdaHandlerField,
    ChromadbLambdaImageTagsField,
    ChromadbLambdaRegistriesField,
    ChromadbLambdaRepositoryField,
)


@dataclass(frozen=True)
class ChromadbLambdaPackageFieldSet(PackageFieldSet):
    required_fields = (ChromadbLambdaHandlerField, ChromadbLambdaBaseImageField)

    handler: ChromadbLambdaHandlerField
    base_image: ChromadbLambdaBaseImageField
    repository: ChromadbLambdaRepositoryField
    image_tags: ChromadbLambdaImageTagsField
    cache_from: ChromadbLambdaCacheFromField
    registries: ChromadbLambdaRegistriesField
    output_path: OutputPathField


def size_text(size: int) -> str:
    return f"{size} B" if size < 1024 else f"{size / 1024:.1f} KiB"


def docker_info(
    address: Address,
    image_id: str,
    refs: tuple[str, ...],
    key: LambdaImageKey,
    built: bool,
    pulled_from: str | None,
    import_check: str,
) -> bytes:
    closure = key.closure
    info = {
        "version": 1,
        "address": str(address),
        "image_id": image_id,
        "tags": list(refs),
        "content_key": key.key,
        "built": built,
        # The registry ref the image was pulled from (`[lambda-image].pull_from_registries`), or null.
        "pulled_from": pulled_from,
        "handler": closure.handler,
        "base_image": {"address": str(closure.base_address), "key": key.base.key, "ref": key.base.ref},
        "context": {"files": len(closure.files), "bytes": closure.total_bytes},
        # `passed`, `warning: ...` or `skipped` (`[lambda-image].check_handler_import`).
        "import_check": import_check,
    }
    return (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()


@rule(desc="Package a chromadb_lambda image")
async def package_chromadb_lambda(
    field_set: ChromadbLambdaPackageFieldSet,
    docker: DockerBinary,
    docker_options: DockerOptions,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
) -> BuiltPackage:
    repository, refs = lambda_image_names(
        field_set.address,
        field_set.repository.value or docker_options.default_repository,
        tuple(field_set.image_tags.value or ()),
    )
    # Every chromadb_lambda's tags, checked once per run before anything is built: two targets that
    # would share a `repository:tag` are an error (see image_names.py).
    key, held, _ = await MultiGet(
        Get(LambdaImageKey, LambdaImageKeyRequest(field_set.address)),
        Get(RepositoryImages, RepositoryImagesRequest(repository)),
        Get(LambdaImageNames, LambdaImageNamesRequest()),
    )
    key_ref = content_key_ref(repository, key.key)
    closure = key.closure

    # The engine's listing, taken in this run: an image id read here is one the engine holds now.
    image_id = held.refs.get(key_ref)
    status = "is up to date"
    tagged = bool(image_id) and all(held.refs.get(ref) == image_id for ref in refs)
    if not tagged:
        # This run changes the engine: its processes are keyed by the run (see EngineRun). Up to
        # date, the rule reads only RepositoryImages, so a no-op does not run it again.
        engine = await Get(EngineImages, EngineImagesRequest())
    if image_id and not tagged:
        # The engine holds this exact content: no build, not even of the base. Only move the tags
        # that point elsewhere (e.g. `latest` after a checkout of another commit).
        script = await Get(EngineLockScript, EngineLockScriptRequest())
        adopt = locked_process(
            None, script=script, docker=docker, env=docker_env.env, run=engine.run, key_ref=key_ref, refs=refs
        )
        image_id = parse_locked_result((await Get(ProcessResult, Process, adopt)).stdout).image_id
    pulled = PulledImage()
    if not image_id and subsystem.pull_from_registries:
        pulled = await Get(
            PulledImage,
            PublishedImageRequest(
                address=field_set.address,
                registries=tuple(field_set.registries.value or ()),
                repository=repository,
                key_tag=key.tag,
                local_refs=(*refs, key_ref),
                run=engine.run,
            ),
        )
        image_id = pulled.image_id
        if image_id:
            status = f"pulled from {pulled.source}" if pulled.source else status
    if not image_id and subsystem.builder == LambdaImageBuilder.assembler:
        base = await Get(BuiltBaseImage, BuiltBaseImageRequest(closure.base_address))
        assembled = await Get(
            AssembledLambdaImage,
            AssembledLambdaImageRequest(
                address=field_set.address,
                closure=closure,
                base_image_id=base.image_id,
                key_ref=key_ref,
                refs=(*refs, key_ref),
                run=engine.run,
            ),
        )
        image_id = assembled.image_id
        status = "built" if assembled.made else status
    if not image_id:
        base = await Get(BuiltBaseImage, BuiltBaseImageRequest(closure.base_address))
        context, script = await MultiGet(
            Get(LambdaBuildContext, LambdaBuildContextRequest(closure, base.ref)),
            Get(EngineLockScript, EngineLockScriptRequest()),
        )
        build = LambdaImageBuild(
            refs=(*refs, key_ref),
            context=context.digest,
            dockerfile=context.dockerfile,
            base_image_id=base.image_id,
            extra_args=cache_args(subsystem, repository, field_set.cache_from.value),
        )
        process = locked_process(
            build_process(docker, build, docker_env.env),
            script=script, docker=docker, env=docker_env.env, run=engine.run, key_ref=key_ref, refs=build.refs,
        )
        made = await run_build(process, refs[0], field_set.address, docker_env.env)
        image_id = made.image_id
        # Not made: a concurrent run (another clone on this engine) built it while this one waited.
        status = "built" if made.made else status

    # Raises when the image cannot import its handler: nothing is written to dist/, nothing published.
    import_check = await Get(LambdaImportCheck, LambdaImportCheckRequest(closure, image_id))
    info_path = field_set.output_path.value_or_default(file_ending="docker-info.json")
    manifest_path = os.path.join(os.path.dirname(info_path), f"{field_set.address.target_name}.context.json")
    digest = await Get(
        Digest,
        CreateDigest(
            [
                FileContent(
                    info_path,
                    docker_info(
                        field_set.address,
                        image_id,
                        (*refs, key_ref),
                        key,
                        status == "built",
                        pulled.source,
                        import_check.verdict,
                    ),
                ),
                FileContent(manifest_path, context_manifest(closure, subsystem.task_root)),
            ]
        ),
    )
    summary = (
        f"Lambda image {refs[0]} {status}: {pluralize(len(closure.files), 'file')}, "
        f"{size_text(closure.total_bytes)} of context, {key.tag}, image {image_id}"
    )
    return BuiltPackage(
        digest,
        (
            BuiltDockerImage(image_id=image_id, tags=(*refs, key_ref), relpath=info_path, extra_log_lines=(summary,)),
            BuiltPackageArtifact(relpath=manifest_path),
        ),
    )


def rules():
    return [*collect_rules(), UnionRule(PackageFieldSet, ChromadbLambdaPackageFieldSet)]
