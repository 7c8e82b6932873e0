"""`pants publish` of `chromadb_lambda` images: concurrent pushes, ECR auth, a deploy manifest.

Pants' publish goal runs each target's `InteractiveProcess` one after another. Here the pushes are
ordinary processes run by this rule, which the goal requests for every target at once, so they run
concurrently; the interactive process only reports the outcome, merges the deploy manifest in
`dist/` (see docs/publishing.md), and exits non-zero if a push failed, which is how the goal lists
what was not published. The goal runs these processes one after another; the report still locks
the manifest, for two `pants publish` runs at once.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from pants.backend.docker.package_types import BuiltDockerImage
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.target_types import DockerImageRegistriesField
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.core.goals.package import BuiltPackage, EnvironmentAwarePackageRequest
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.core.util_rules.distdir import DistDir
from pants.engine.addresses import Address
from pants.engine.internals.session import RunId
from pants.engine.process import FallibleProcessResult, InteractiveProcess, Process, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import AllUnexpandedTargets, WrappedTarget, WrappedTargetRequest
from pants.util.logging import LogLevel

from chromadb_lambda.util_rules.content_keys import (
    BaseImageIdentity,
    BaseImageIdentityRequest,
    LambdaImageKey,
    LambdaImageKeyRequest,
    key_tag,
)
from chromadb_lambda.util_rules.engine import DockerEnvironment
from chromadb_lambda.goals.package import ChromadbLambdaPackageFieldSet
from chromadb_lambda.util_rules.registries import PushTarget, push_targets
from chromadb_lambda.util_rules.registry_process import client_process, client_result, client_script, registry_entries
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.target_types import (
    ChromadbLambdaBaseImageField,
    ChromadbLambdaHandlerField,
    ChromadbLambdaImageTagsField,
    ChromadbLambdaRegistriesField,
    ChromadbLambdaRepositoryField,
    ChromadbLambdaSkipPushField,
)

logger = logging.getLogger(__name__)


class PublishChromadbLambdaRequest(PublishRequest):
    pass


@dataclass(frozen=True)
class ChromadbLambdaPublishFieldSet(PublishFieldSet):
    publish_request_type = PublishChromadbLambdaRequest
    required_fields = (ChromadbLambdaHandlerField, ChromadbLambdaBaseImageField)

    registries: ChromadbLambdaRegistriesField
    skip_push: ChromadbLambdaSkipPushField
    repository: ChromadbLambdaRepositoryField
    image_tags: ChromadbLambdaImageTagsField

    def get_output_data(self) -> PublishOutputData:
        return PublishOutputData(
            {"publisher": "chromadb_lambda", "registries": self.registries.value or (), **super().get_output_data()}
        )


@dataclass(frozen=True)
class PublishSessionRequest:
    pass


@dataclass(frozen=True)
class PublishSession:
    """One `pants publish` run: it stamps the deploy manifest and every push process of the run.

    With pantsd, a new run first re-requests what a rule requested in the previous run, to decide
    whether the rule must run again: a PER_SESSION push would be pushed again right there. Push
    processes carry the session id (in their spec.json) and are kept for the daemon's life
    (PER_RESTART_SUCCESSFUL), so the replay finds last run's result in memory and runs nothing,
    while this run's pushes (a new id) do run.
    """

    id: str


@rule
async def publish_session(_: PublishSessionRequest, run_id: RunId) -> PublishSession:
    return PublishSession(f"{run_id}-{uuid.uuid4().hex}")


def push_spec(
    image: str, content_key: str, tag: str, targets: tuple[PushTarget, ...], docker: DockerBinary,
    subsystem: ChromadbLambdaSubsystem, session: PublishSession,
) -> dict[str, Any]:
    """`image`: an image id, or a local tag (pushed only if the engine holds it)."""
    is_id = image.startswith("sha256:")
    return {
        "session": session.id,
        "docker": docker.path,
        "image_id": image if is_id else "",
        "image_ref": "" if is_id else image,
        "content_key": content_key,
        "key_tag": tag,
        "attempts": max(1, subsystem.push_attempts),
        "create_repository": subsystem.ecr_create_repositories,
        "scan_on_push": subsystem.ecr_scan_on_push,
        "tag_mutability": subsystem.ecr_tag_mutability.value,
        "registries": registry_entries(targets),
    }


def push_outcome(result: FallibleProcessResult, targets: tuple[PushTarget, ...]) -> dict[str, Any]:
    """The push script's JSON result; a crash becomes an error for every registry."""
    outcome, error = client_result(result, "push")
    return outcome or {"registries": [], "errors": [{"address": t.address, "error": error} for t in targets]}


async def run_push(
    spec: dict[str, Any], targets: tuple[PushTarget, ...], docker: DockerBinary, docker_env: DockerEnvironment,
    description: str,
) -> dict[str, Any]:
    """Runs `registry_client.py push`; its outcome."""
    # Never reused across runs: spec.json holds the session id (see PublishSession).
    process = await client_process(
        "push", spec, docker, docker_env, description, ProcessCacheScope.PER_RESTART_SUCCESSFUL
    )
    result = await Get(FallibleProcessResult, Process, process)
    return push_outcome(result, targets)


@dataclass(frozen=True)
class BaseImagePushRequest:
    address: Address
    session: PublishSession


@dataclass(frozen=True)
class BaseImagePush:
    """Registries that hold the base under its content key tag after this publish."""

    registries: tuple[str, ...]


@rule(desc="Publishing a base image by its content key", level=LogLevel.DEBUG)
async def push_base_image(
    request: BaseImagePushRequest,
    docker: DockerBinary,
    docker_options: DockerOptions,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
) -> BaseImagePush:
    """`[lambda-image].publish_base_images`: the base's `ck-` tag, for runners that must build on it."""
    wrapped, identity = await MultiGet(
        Get(WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>")),
        Get(BaseImageIdentity, BaseImageIdentityRequest(request.address)),
    )
    tag = key_tag(identity.key)
    targets = push_targets(
        docker_options.registries(),
        tuple(wrapped.target[DockerImageRegistriesField].value or ()),
        address=request.address,
        repository=identity.repository,
        default_repository=docker_options.default_repository,
        tags=(),
        key_tag=tag,
        ecr_registries=tuple(subsystem.ecr_registries),
    )
    targets = tuple(t for t in targets if not t.skip_push)
    if not targets:
        return BaseImagePush(())
    spec = push_spec(identity.ref, identity.key, tag, targets, docker, subsystem, request.session)
    outcome = await run_push(
        spec, targets, docker, docker_env, f"Pushing the base {identity.ref} to {', '.join(t.address for t in targets)}"
    )
    if outcome.get("skipped"):
        logger.info(f"Base image of {request.address} not pushed: {outcome['skipped']}.")
    for r in outcome["registries"]:
        logger.info(f"Base image of {request.address}: {r['image']} ({r['status']}, {r['name']}:{tag}).")
    for error in outcome["errors"]:
        logger.warning(
            f"Base image {identity.ref} of {request.address} NOT published to {error['address']} "
            f"(runners will build it instead of pulling it): {error['error']}"
        )
    return BaseImagePush(tuple(r["address"] for r in outcome["registries"]))


@rule(desc="Publishing a chromadb_lambda image", level=LogLevel.DEBUG)
async def publish_chromadb_lambda(
    request: PublishChromadbLambdaRequest,
    docker: DockerBinary,
    docker_options: DockerOptions,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
    distdir: DistDir,
) -> PublishProcesses:
    session = await Get(PublishSession, PublishSessionRequest())
    field_set = request.field_set
    # Not `request.packages`: with pantsd, a new run may first replay this rule with last run's
    # request, whose package is last run's image, while every Get here sees the current sources.
    # Asking for the package again (memoized: the one this run built) keeps the image and its
    # content key from the same state, so a replay can only push what this run pushes.
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(field_set.address, description_of_origin="the chromadb_lambda publish rule"),
    )
    package, key = await MultiGet(
        Get(BuiltPackage, EnvironmentAwarePackageRequest(ChromadbLambdaPackageFieldSet.create(wrapped.target))),
        Get(LambdaImageKey, LambdaImageKeyRequest(field_set.address)),
    )
    image = next(a for a in package.artifacts if isinstance(a, BuiltDockerImage))
    # The package's content key ref names the repository the package rule formatted.
    key_ref = next((ref for ref in image.tags if ref.endswith(f":{key.tag}")), None)
    if key_ref is None:
        raise AssertionError(f"{field_set.address}: image {image.image_id} does not carry {key.tag}")
    repository = key_ref[: -len(key.tag) - 1]
    targets = push_targets(
        docker_options.registries(),
        tuple(field_set.registries.value or ()),
        address=field_set.address,
        repository=repository,
        default_repository=docker_options.default_repository,
        tags=tuple(field_set.image_tags.value or ()),
        key_tag=key.tag,
        ecr_registries=tuple(subsystem.ecr_registries),
    )
    if not targets:
        return PublishProcesses(
            [
                PublishPackages(
                    names=image.tags,
                    description=(
                        "(no registry: give the target `registries`, or mark one `default` in "
                        "`[docker].registries`)"
                    ),
                )
            ]
        )
    if field_set.skip_push.value:
        names = tuple(ref for t in targets for ref in t.refs)
        return PublishProcesses([PublishPackages(names=names, description=f"(by `skip_push` on {field_set.address})")])
    skipped = [PublishPackages(names=t.refs, description=f"(by `skip_push` on registry {t.alias or t.address})") for t in targets if t.skip_push]
    targets = tuple(t for t in targets if not t.skip_push)
    if not targets:
        return PublishProcesses(skipped)

    if subsystem.publish_base_images:
        # First, so that its layers are uploaded once and the Lambda push finds them there.
        await Get(BaseImagePush, BaseImagePushRequest(key.closure.base_address, session))
    spec = push_spec(image.image_id, key.key, key.tag, targets, docker, subsystem, session)
    outcome = await run_push(
        spec, targets, docker, docker_env, f"Pushing {repository} ({key.tag}) to {', '.join(t.address for t in targets)}"
    )
    manifest = os.path.join(distdir.relpath, subsystem.deploy_manifest)
    # Every chromadb_lambda target of the repo, selected by this run or not: the report drops the
    # manifest entries of any other address (a Lambda deleted or renamed since it was published).
    all_targets = await Get(AllUnexpandedTargets)
    existing = sorted(str(t.address) for t in all_targets if ChromadbLambdaPublishFieldSet.is_applicable(t))
    report = InteractiveProcess(
        argv=(
            sys.executable, "-c", client_script().decode(), "report", manifest, session.id, str(field_set.address),
            json.dumps(outcome), "--existing", *existing,
        ),
        run_in_workspace=True,
    )
    description = ", ".join(
        f"{r['address']} ({'already published' if r['status'] == 'already published' else r['digest'][:19]})"
        for r in outcome["registries"]
    ) or ", ".join(t.address for t in targets)
    return PublishProcesses(
        [PublishPackages(names=tuple(ref for t in targets for ref in t.refs), process=report, description=description), *skipped]
    )


def rules():
    return [*collect_rules(), *ChromadbLambdaPublishFieldSet.rules()]
