"""Pulling a published Lambda image instead of building it (`[lambda-image].pull_from_registries`).

A content key names one image content on every machine, and `pants publish` pushes the `ck-...` tag
with the image's own tags. So before building, a runner may ask the registries the target publishes
to for that tag: if one has it, the engine pulls it (base layers included) and nothing is built.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, collect_rules, rule

from chromadb_lambda.util_rules.engine import DockerEnvironment, EngineRun
from chromadb_lambda.util_rules.engine_locks import (
    EngineLockScript,
    EngineLockScriptRequest,
    locked_process,
    parse_locked_result,
)
from chromadb_lambda.util_rules.image_names import ImageNames
from chromadb_lambda.util_rules.registry_process import client_process, client_result, registry_entries
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishedImageRequest:
    address: Address
    # Its registries (as `pants publish` resolves them), key tag, and the local tags it gets once
    # pulled (its own tags and the content key tag).
    names: ImageNames
    # The run that asks: a pull changes the engine's tags, so it runs once per run (see EngineRun).
    run: EngineRun


@dataclass(frozen=True)
class PulledImage:
    """The pulled image's id and where it came from; `image_id` None: no registry had it."""

    image_id: str | None = None
    # None with an image id: a concurrent run made the image while this one waited for its lock.
    source: str | None = None


def pull_outcome(result: FallibleProcessResult) -> dict[str, Any]:
    """The pull script's JSON result; a crash becomes a warning (the image is then built)."""
    outcome, error = client_result(result, "pull")
    return outcome or {"pulled": None, "warnings": [{"address": "its registries", "error": error}]}


@rule(desc="Looking for a published chromadb_lambda image")
async def pull_published_image(
    request: PublishedImageRequest,
    docker: DockerBinary,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
) -> PulledImage:
    names = request.names
    targets = names.registries
    if not targets:
        return PulledImage()
    spec = {
        "docker": docker.path,
        "key_tag": names.key_tag,
        "local_refs": list(names.local_refs),
        "attempts": max(1, subsystem.push_attempts),
        "registries": registry_entries(targets),
    }
    process = await client_process(
        "pull",
        spec,
        docker,
        docker_env,
        f"Looking for {names.key_ref} in {', '.join(t.address for t in targets)}",
        ProcessCacheScope.PER_SESSION,
    )
    # Under the locks of its tags, as builds: a concurrent run that built or pulled the same content
    # key meanwhile is adopted, not pulled over (see engine_lock.py).
    script = await Get(EngineLockScript, EngineLockScriptRequest())
    locked = locked_process(
        process,
        script=script,
        docker=docker,
        env=docker_env.env,
        run=request.run,
        key_ref=names.key_ref,
        refs=names.local_refs,
        kind="pull",
    )
    result = await Get(FallibleProcessResult, Process, locked)
    if result.exit_code == 0:
        made = parse_locked_result(result.stdout)
        if made.image_id and not made.made:
            return PulledImage(image_id=made.image_id)
        outcome = json.loads(made.output) if made.output else {"pulled": None, "warnings": []}
    else:
        outcome = pull_outcome(result)
    for warning in outcome["warnings"]:
        logger.warning(
            f"{request.address}: could not pull {names.key_ref} from "
            f"{warning['address']}, building it instead: {warning['error']}"
        )
    pulled = outcome["pulled"]
    if not pulled:
        return PulledImage()
    return PulledImage(image_id=pulled["image_id"], source=pulled["ref"])


def rules():
    return collect_rules()
