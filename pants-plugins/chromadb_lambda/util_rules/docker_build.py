"""`docker build` of an image (a Lambda's with `[lambda-image].builder = "docker-build"`, or a base):
the process through Pants' DockerBinary, BuildKit cache arguments, and what a failed build says."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.backend.docker.util_rules.docker_build_args import DockerBuildArgs
from pants.engine.addresses import Address
from pants.engine.fs import Digest
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.util_rules.engine_locks import IMAGE_ID_FILE, LockedImage, parse_locked_result


@dataclass(frozen=True)
class LambdaImageBuild:
    """What one `docker build` of a Lambda image needs."""

    refs: tuple[str, ...]
    context: Digest
    dockerfile: str
    base_image_id: str
    extra_args: tuple[str, ...] = ()


def cache_args(
    subsystem: ChromadbLambdaSubsystem, repository: str, target_cache_from: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    """BuildKit registry cache: inline cache metadata on build, `--cache-from` the configured images.

    A target's own `cache_from` field, when set, replaces `[lambda-image].cache_from`.
    """
    args: list[str] = []
    if subsystem.inline_cache:
        args += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    templates = subsystem.cache_from if target_cache_from is None else target_cache_from
    for template in templates:
        args += ["--cache-from", template.format(repository=repository)]
    return tuple(args)


def docker_build_process(
    docker: DockerBinary,
    *,
    refs: tuple[str, ...],
    digest: Digest,
    dockerfile: str,
    build_args: DockerBuildArgs,
    context_root: str,
    env: Mapping[str, str],
    extra_args: tuple[str, ...] = (),
    invalidation: Mapping[str, str] | None = None,
) -> Process:
    """`docker build` through Pants' DockerBinary, writing the image id to `IMAGE_ID_FILE`.

    `invalidation` values are mixed into the environment so that Pants reruns the build when they
    change even if the context does not (e.g. the base image id), as Pants' docker_image rule does.
    """
    process = docker.build_image(
        tags=refs,
        digest=digest,
        dockerfile=dockerfile,
        build_args=build_args,
        context_root=context_root,
        env={**env, **(invalidation or {})},
        extra_args=("--iidfile", IMAGE_ID_FILE, *extra_args),
    )
    return dataclasses.replace(process, output_files=(IMAGE_ID_FILE,))


class DockerBuildError(Exception):
    """`docker build` failed: a Dockerfile step failed, or the engine stopped answering."""


# What the Docker CLI says when the engine went away during a build (stopped, crashed, socket gone).
_ENGINE_GONE = (
    "Cannot connect to the Docker daemon",
    "connection refused",
    "connection reset",
    "broken pipe",
    "unexpected EOF",
    "error reading from server: EOF",
    "error during connect",
    # A BuildKit session cut off when the engine dies; the CLI then has no image id to write.
    "server did not provide an image ID",
)


def build_failure_message(image: str, address: Address, result: FallibleProcessResult, env: Mapping[str, str]) -> str:
    output = (result.stderr.decode(errors="replace") + result.stdout.decode(errors="replace")).strip()
    tail = "\n".join(f"  {line}" for line in output.splitlines()[-20:])
    host = env.get("DOCKER_HOST") or "the default socket"
    if any(marker in output for marker in _ENGINE_GONE):
        hint = (
            f"The Docker engine at {host} stopped answering during the build. Start it again (`./pants` "
            "restarts its private engine by itself) and rerun: nothing of this image was written to "
            "dist/, and the next run builds it again."
        )
    else:
        hint = "A step of the Dockerfile failed: see its output above. Nothing of this image was written to dist/."
    return f"`docker build` of {image} for {address} failed (exit code {result.exit_code}):\n{tail}\n\n{hint}"


async def run_build(process: Process, image: str, address: Address, env: Mapping[str, str]) -> LockedImage:
    """Runs a `locked_process` around a `docker_build_process`: the image, or a DockerBuildError."""
    result = await Get(FallibleProcessResult, Process, process)
    if result.exit_code != 0:
        raise DockerBuildError(build_failure_message(image, address, result, env))
    return parse_locked_result(result.stdout)


def build_process(docker: DockerBinary, build: LambdaImageBuild, env: Mapping[str, str]) -> Process:
    return docker_build_process(
        docker,
        refs=build.refs,
        digest=build.context,
        dockerfile=build.dockerfile,
        build_args=DockerBuildArgs(()),
        context_root=".",
        env=env,
        extra_args=build.extra_args,
        invalidation={"__CHROMADB_LAMBDA_BASE_IMAGE_ID": build.base_image_id},
    )
