"""Is an image already there? The engine first (its content key tag), then, with
`[lambda-image].pull_from_registries`, the registries it is published to. One step for Lambda images
and their bases; the callers build only what this does not find."""
from __future__ import annotations

from dataclasses import dataclass

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.process import Process, ProcessResult
from pants.engine.rules import Get, collect_rules, rule

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.util_rules.engine import (
    DockerEnvironment,
    EngineRun,
    EngineRunRequest,
    HeldRefs,
    HeldRefsRequest,
)
from chromadb_lambda.util_rules.engine_locks import (
    EngineLockScript,
    EngineLockScriptRequest,
    locked_process,
    parse_locked_result,
)
from chromadb_lambda.util_rules.image_names import ImageNames
from chromadb_lambda.util_rules.pull import PublishedImageRequest, PulledImage


@dataclass(frozen=True)
class ExistingImageRequest:
    address: Address
    names: ImageNames


@dataclass(frozen=True)
class ExistingImage:
    """The image of a content key the engine holds (or now holds: tags moved, pulled); `image_id`
    None: none, build it in `run`."""

    image_id: str | None
    # The run whose engine listing was read: set whenever this step (or a build after it) changes the
    # engine; None when the image was up to date, which reads no run (see HeldRefs).
    run: EngineRun | None = None
    # The registry ref it was pulled from.
    pulled_from: str | None = None
    # True: the key tag was there, only its other tags were moved to it.
    retagged: bool = False


def held_refs_request(names: ImageNames) -> HeldRefsRequest:
    """The refs whose ids decide whether the image is up to date: its key tag and its own tags."""
    return HeldRefsRequest(tuple(dict.fromkeys((names.key_ref, *names.refs))))


def up_to_date_image(held: HeldRefs, names: ImageNames) -> str | None:
    """The image id the key tag names when every own tag points at it too."""
    image_id = held.refs.get(names.key_ref)
    return image_id if image_id and all(held.refs.get(ref) == image_id for ref in names.refs) else None


def answer_from_held(held: HeldRefs, names: ImageNames, pull_from_registries: bool) -> ExistingImage | None:
    """What the ExistingImage step would answer, when HeldRefs alone tells it: the image up to date (the
    key tag and every own tag on one image), or nothing to find (no key tag, no registry to pull from:
    build it). None: ask the step (tags to move, or a registry to look in).

    A caller that answers from HeldRefs keeps the step out of its dependencies: after a build, the
    step's answer changes for every target (it asked for the run), so the next run would replay it for
    each one only to say what HeldRefs says."""
    image_id = up_to_date_image(held, names)
    if image_id:
        return ExistingImage(image_id)
    if held.refs.get(names.key_ref) or pull_from_registries:
        return None
    return ExistingImage(None)


async def existing_image_held_first(address: Address, names: ImageNames, pull_from_registries: bool) -> ExistingImage:
    """The ExistingImage step's answer, from HeldRefs when it alone tells (answer_from_held), else from
    the step."""
    held = await Get(HeldRefs, HeldRefsRequest, held_refs_request(names))
    return answer_from_held(held, names, pull_from_registries) or await Get(
        ExistingImage, ExistingImageRequest(address, names)
    )


@rule(desc="Looking for an image by its content key")
async def find_existing_image(
    request: ExistingImageRequest,
    docker: DockerBinary,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
) -> ExistingImage:
    names = request.names
    # The engine asked in this run: an image id read here is one the engine holds now.
    held = await Get(HeldRefs, HeldRefsRequest, held_refs_request(names))
    image_id = up_to_date_image(held, names)
    if image_id:
        return ExistingImage(image_id)
    # From here on this run changes the engine: its processes are keyed by the run (see EngineRun).
    # Up to date, the rule read only HeldRefs, so a no-op does not run it again.
    run = await Get(EngineRun, EngineRunRequest())
    if held.refs.get(names.key_ref):
        # The engine holds this exact content: no build, not even of the base. Only move the tags
        # that point elsewhere (e.g. `latest` after a checkout of another commit).
        script = await Get(EngineLockScript, EngineLockScriptRequest())
        adopt = locked_process(
            None,
            script=script,
            docker=docker,
            env=docker_env.env,
            run=run,
            key_ref=names.key_ref,
            refs=names.refs,
        )
        adopted = parse_locked_result((await Get(ProcessResult, Process, adopt)).stdout)
        if adopted.image_id:
            return ExistingImage(adopted.image_id, run=run, retagged=True)
    if subsystem.pull_from_registries:
        pulled = await Get(PulledImage, PublishedImageRequest(request.address, names, run))
        if pulled.image_id:
            return ExistingImage(pulled.image_id, run=run, pulled_from=pulled.source)
    return ExistingImage(None, run=run)


def rules():
    return collect_rules()
