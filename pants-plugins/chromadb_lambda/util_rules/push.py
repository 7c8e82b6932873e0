"""Pushing an image to its registries (`registry_client.py push` as a process), and pushing a base
image by its content key (`[lambda-image].publish_base_images`).

A publish carries a session id (`PublishSession`): with pantsd, a new run first re-requests what a
rule requested in the previous run, to decide whether the rule must run again, and a PER_SESSION push
would be pushed again right there. Push processes carry the session id (in their spec.json) and are
kept for the daemon's life (PER_RESTART_SUCCESSFUL), so the replay finds last run's result in memory
and runs nothing, while this run's pushes (a new id) do run. See docs/content-keys.md.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.internals.session import RunId
from pants.engine.fs import FileContent
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.logging import LogLevel

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.util_rules import assembled_push
from chromadb_lambda.util_rules.content_keys import BaseImageIdentity, BaseImageIdentityRequest
from chromadb_lambda.util_rules.engine import DockerEnvironment
from chromadb_lambda.util_rules.image_names import BaseImageNamesRequest, ImageNames
from chromadb_lambda.util_rules.registries import PushTarget
from chromadb_lambda.util_rules.registry_process import client_process, client_result, registry_entries

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishSessionRequest:
    pass


@dataclass(frozen=True)
class PublishSession:
    """One `pants publish` run: it stamps the deploy manifest and every push process of the run."""

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
    files: tuple[FileContent, ...] = (),
) -> dict[str, Any]:
    """Runs `registry_client.py push` (with `files`: an assembled image's blobs); its outcome."""
    # Never reused across runs: spec.json holds the session id (see PublishSession).
    process = await client_process(
        "push", spec, docker, docker_env, description, ProcessCacheScope.PER_RESTART_SUCCESSFUL, files
    )
    result = await Get(FallibleProcessResult, Process, process)
    return push_outcome(result, targets)


@dataclass(frozen=True)
class BaseImagePushRequest:
    address: Address
    session: PublishSession
    # None: the base target's own registries (`publish_base_images`). Else these (the registries an
    # assembled Lambda image mounts the base's layers from: assembled_push.base_push_targets).
    targets: tuple[PushTarget, ...] | None = None


@dataclass(frozen=True)
class BaseImagePush:
    """Registries that hold the base under its content key tag after this publish."""

    registries: tuple[str, ...]


def log_base_push(address: Address, names: ImageNames, outcome: dict[str, Any]) -> None:
    if outcome.get("skipped"):
        logger.info(f"Base image of {address} not pushed: {outcome['skipped']}.")
    for r in outcome["registries"]:
        logger.info(f"Base image of {address}: {r['image']} ({r['status']}, {r['name']}:{names.key_tag}).")
    for error in outcome["errors"]:
        logger.warning(
            f"Base image {names.key_ref} of {address} NOT published to {error['address']} "
            f"(runners will build it instead of pulling it): {error['error']}"
        )


@rule(desc="Publishing a base image by its content key", level=LogLevel.DEBUG)
async def push_base_image(
    request: BaseImagePushRequest,
    docker: DockerBinary,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
) -> BaseImagePush:
    """`[lambda-image].publish_base_images`: the base's `ck-` tag, for runners that must build on it."""
    identity, names = await MultiGet(
        Get(BaseImageIdentity, BaseImageIdentityRequest(request.address)),
        Get(ImageNames, BaseImageNamesRequest(request.address)),
    )
    targets = request.targets
    if targets is None:
        targets = tuple(t for t in names.registries if not t.skip_push)
    if not targets:
        return BaseImagePush(())
    spec = push_spec(names.key_ref, identity.key, names.key_tag, targets, docker, subsystem, request.session)
    outcome = await run_push(
        spec, targets, docker, docker_env, f"Pushing the base {names.key_ref} to {', '.join(t.address for t in targets)}"
    )
    log_base_push(request.address, names, outcome)
    return BaseImagePush(tuple(r["address"] for r in outcome["registries"]))


def rules():
    return [*collect_rules(), *assembled_push.rules()]
