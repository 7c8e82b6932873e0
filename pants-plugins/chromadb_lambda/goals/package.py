"""`pants package` of a `chromadb_lambda`: nothing to do when the engine has its content key (or a
registry does, to pull), else the base (when needed) and the Lambda image on top of it; then the
import check and the outputs in `dist/`."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from pants.backend.docker.package_types import BuiltDockerImage
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, OutputPathField, PackageFieldSet
from pants.engine.addresses import Address
from pants.engine.engine_aware import EngineAwareReturnType
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.strutil import pluralize

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem, LambdaImageBuilder
from chromadb_lambda.target_types import (
    ChromadbLambdaBaseImageField,
    ChromadbLambdaCacheFromField,
    ChromadbLambdaHandlerField,
    ChromadbLambdaImageTagsField,
    ChromadbLambdaRegistriesField,
    ChromadbLambdaRepositoryField,
)
from chromadb_lambda.util_rules.content_keys import LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.context import context_manifest
from chromadb_lambda.util_rules.chunk_images import HELD
from chromadb_lambda.util_rules.engine import EngineRun, EngineRunRequest
from chromadb_lambda.util_rules.existing_image import ExistingImage, existing_image_held_first
from chromadb_lambda.util_rules.image_names import ImageNames, LambdaImageNamesRequest
from chromadb_lambda.util_rules.image_tag_collisions import AllLambdaImageRefs, AllLambdaImageRefsRequest
from chromadb_lambda.util_rules.import_check import LambdaImportCheck, LambdaImportCheckRequest
from chromadb_lambda.util_rules.lambda_image import MadeLambdaImage, MadeLambdaImageRequest


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
        # `passed` or `warning: ...` (checked by this run), `checked before load` (the assembler's
        # image the engine held under its content-key tag: proven before an earlier run loaded it), or
        # `skipped` (`[lambda-image].check_handler_import`).
        "import_check": import_check,
    }
    return (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()


def held_import_verdict(subsystem: ChromadbLambdaSubsystem, existing: ExistingImage) -> str | None:
    """The import check verdict of an image the engine held under its content key tag, known without
    asking: the assembler proved it before it loaded it (chunk_images.HELD, what the import check
    step says of such an image). None: ask the import check step (a pulled image, the docker-build
    builder, or the check turned off)."""
    if (
        existing.image_id
        and not existing.pulled_from
        and subsystem.builder == LambdaImageBuilder.assembler
        and subsystem.check_handler_import
    ):
        return HELD
    return None


def package_outputs(
    field_set: ChromadbLambdaPackageFieldSet, info: bytes, manifest: bytes
) -> tuple[list[FileContent], str, str]:
    """The docker-info JSON at the target's `output_path`, the context manifest beside it."""
    info_path = field_set.output_path.value_or_default(file_ending="docker-info.json")
    manifest_path = os.path.join(os.path.dirname(info_path), f"{field_set.address.target_name}.context.json")
    return [FileContent(info_path, info), FileContent(manifest_path, manifest)], info_path, manifest_path


@dataclass(frozen=True)
class LambdaContextManifestRequest:
    address: Address


@dataclass(frozen=True)
class LambdaContextManifest:
    """The context manifest `dist/` holds beside the docker-info (context.context_manifest)."""

    content: bytes


@rule
async def lambda_context_manifest(
    request: LambdaContextManifestRequest, subsystem: ChromadbLambdaSubsystem
) -> LambdaContextManifest:
    # Its own rule: it changes with the closure only, and the first run after a build reruns every
    # package rule that made an image (see LambdaImageState), which then finds it here.
    key = await Get(LambdaImageKey, LambdaImageKeyRequest(request.address))
    return LambdaContextManifest(context_manifest(key.closure, subsystem.task_root))


@dataclass(frozen=True)
class LambdaImageStateRequest:
    address: Address
    cache_from: tuple[str, ...] | None


@dataclass(frozen=True)
class LambdaImageState(EngineAwareReturnType):
    """The engine's image of a chromadb_lambda in this run: found, pulled or made, and its import check
    verdict. `status`: `is up to date`, `built`, or `pulled from <ref>`.

    A state that changed the engine (built, pulled, tags moved) is this run's alone (`run`): Pants
    keeps it for this run only, and the next run computes the state anew instead of cleaning it. Were
    it cleaned, Pants would ask again, all at once, everything this run's make depended on (the chunk's
    assembly, its members' closures and keys), find the run changed, and cancel those cleanings in
    flight; a node whose cleaning is cancelled runs again from the top, so the first no-op after a
    build recomputed closures and module mappings (docs/content-keys.md). An up-to-date state read
    nothing of the run: it is cleaned, and equal from run to run."""

    image_id: str
    status: str
    pulled_from: str | None
    verdict: str
    # The run that built, pulled or retagged the image; None: up to date, the engine unchanged.
    run: EngineRun | None = None

    def cacheable(self) -> bool:
        return self.run is None


@rule
async def lambda_image_state(request: LambdaImageStateRequest, subsystem: ChromadbLambdaSubsystem) -> LambdaImageState:
    # The package rule's own dependencies first (the same nodes), then the engine. After a build, the
    # engine part changes in the next run (the tags are held now; a build asked for the run), and
    # Pants cleans a rule by asking all of its previous dependencies at once, stopping at the first
    # that changed and cancelling the others' cleaning; a cancelled node runs again from the top
    # instead of being cleaned. Here, this rule's rerun first waits for every other node the package
    # rule awaits (names, key, refs, the context manifest), so their cleaning has finished when this
    # rule's new state fails the package rule's; were the engine part in the package rule itself, the
    # first no-op after a build would cancel the cleaning of every key and rerun closures
    # (docs/content-keys.md). The refs: every chromadb_lambda's tags checked once per run, before
    # anything is built (two targets that would share a `repository:tag` are an error,
    # image_tag_collisions.py).
    address = request.address
    names, key, _, _ = await MultiGet(
        Get(ImageNames, LambdaImageNamesRequest(address)),
        Get(LambdaImageKey, LambdaImageKeyRequest(address)),
        Get(AllLambdaImageRefs, AllLambdaImageRefsRequest()),
        Get(LambdaContextManifest, LambdaContextManifestRequest(address)),
    )
    # Up to date, or nothing to find, is told from HeldRefs here, not by the ExistingImage step (see
    # answer_from_held).
    existing = await existing_image_held_first(address, names, subsystem.pull_from_registries)
    image_id, status, run = existing.image_id, "is up to date", existing.run
    if existing.pulled_from:
        status = f"pulled from {existing.pulled_from}"
    if not image_id:
        run = run or await Get(EngineRun, EngineRunRequest())
        made = await Get(
            MadeLambdaImage,
            MadeLambdaImageRequest(address, key.closure, names, request.cache_from, run),
        )
        image_id = made.image_id
        # Not made: a concurrent run (another clone on this engine) made it while this one waited.
        status = "built" if made.made else status

    # An up-to-date image asks no more than it must: a no-op after a build re-runs this rule for every
    # target, and the import check step would re-run the whole chunk's lookups to say the same.
    verdict = held_import_verdict(subsystem, existing)
    if verdict is None:
        # Raises when the image cannot import its handler: nothing is written to dist/, nothing published.
        verdict = (await Get(LambdaImportCheck, LambdaImportCheckRequest(key.closure, image_id))).verdict
    return LambdaImageState(image_id, status, existing.pulled_from, verdict, run)


@rule(desc="Package a chromadb_lambda image")
async def package_chromadb_lambda(field_set: ChromadbLambdaPackageFieldSet) -> BuiltPackage:
    address = field_set.address
    # Everything that asks the engine is in its own rule (see lambda_image_state), which awaits the
    # other four before the engine: asked at once, the package rule is resumed once.
    names, key, _, state, manifest = await MultiGet(
        Get(ImageNames, LambdaImageNamesRequest(address)),
        Get(LambdaImageKey, LambdaImageKeyRequest(address)),
        Get(AllLambdaImageRefs, AllLambdaImageRefsRequest()),
        Get(LambdaImageState, LambdaImageStateRequest(address, field_set.cache_from.value)),
        Get(LambdaContextManifest, LambdaContextManifestRequest(address)),
    )
    info = docker_info(
        address, state.image_id, names.local_refs, key, state.status == "built", state.pulled_from, state.verdict
    )
    files, info_path, manifest_path = package_outputs(field_set, info, manifest.content)
    digest = await Get(Digest, CreateDigest(files))
    summary = (
        f"Lambda image {names.refs[0]} {state.status}: {pluralize(len(key.closure.files), 'file')}, "
        f"{size_text(key.closure.total_bytes)} of context, {key.tag}, image {state.image_id}"
    )
    return BuiltPackage(
        digest,
        (
            BuiltDockerImage(
                image_id=state.image_id, tags=names.local_refs, relpath=info_path, extra_log_lines=(summary,)
            ),
            BuiltPackageArtifact(relpath=manifest_path),
        ),
    )


def rules():
    return [*collect_rules(), UnionRule(PackageFieldSet, ChromadbLambdaPackageFieldSet)]
