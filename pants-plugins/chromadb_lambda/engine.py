"""The Docker engine side: image names and the `docker build` process (through Pants' DockerBinary)."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Mapping

from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.backend.docker.util_rules.docker_build_args import DockerBuildArgs
from pants.engine.addresses import Address
from pants.engine.fs import Digest, DigestContents
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import InvalidFieldException
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem

# Docker's grammar for a repository path component and a tag.
_REPOSITORY_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def format_repository(template: str, address: Address, field_alias: str = "repository") -> str:
    """Interpolates `{name}`, `{directory}` and `{parent_directory}` as `docker_image` does."""
    directory = os.path.basename(address.spec_path)
    parent_directory = os.path.basename(os.path.dirname(address.spec_path))
    try:
        repository = template.format(
            name=address.target_name, directory=directory, parent_directory=parent_directory
        )
    except (KeyError, IndexError, ValueError) as e:
        raise InvalidFieldException(
            softwrap(
                f"""
                The `{field_alias}` of {address} is {template!r}, which uses an unknown placeholder
                ({e}); use only {{name}}, {{directory}} and {{parent_directory}}.
                """
            )
        ) from e
    if not _REPOSITORY_RE.match(repository):
        raise InvalidFieldException(
            softwrap(
                f"""
                The `{field_alias}` of {address} gives the repository {repository!r}, which Docker
                rejects: use lowercase letters, digits and `._-/` separators.
                """
            )
        )
    return repository


def image_refs(repository: str, tags: tuple[str, ...], address: Address) -> tuple[str, ...]:
    if not tags:
        raise InvalidFieldException(
            f"The `image_tags` field in target {address} must not be empty: give at least one tag, e.g. `[\"latest\"]`."
        )
    for tag in tags:
        if not _TAG_RE.match(tag):
            raise InvalidFieldException(
                f"The `image_tags` field in target {address} has the tag {tag!r}, which Docker "
                "rejects: use at most 128 letters, digits and `_.-`, not starting with `.` or `-`."
            )
    return tuple(f"{repository}:{tag}" for tag in tags)


@dataclass(frozen=True)
class LambdaImageBuild:
    """What one `docker build` of a Lambda image needs."""

    refs: tuple[str, ...]
    context: Digest
    dockerfile: str
    base_image_id: str
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class DockerEnvironment:
    """The environment of docker processes: `[docker].env_vars` (DOCKER_HOST, DOCKER_BUILDKIT...)."""

    env: FrozenDict[str, str]


def docker_process(docker: DockerBinary, argv: tuple[str, ...], env: Mapping[str, str], description: str) -> Process:
    # PER_SESSION like Pants' own docker processes: the engine's state can change between runs.
    return Process(
        argv=(docker.path, *argv),
        description=description,
        env={**docker.extra_env, **env},
        immutable_input_digests=docker.extra_input_digests,
        cache_scope=ProcessCacheScope.PER_SESSION,
    )


def engine_state_process(process: Process, engine: EngineImages) -> Process:
    """Makes a process that changes the engine run once per engine state, not once per session.

    With pantsd, a new run first re-requests what the same rule requested in the previous run, to
    decide whether the rule must run again: a PER_SESSION `docker build` would run again right there,
    even when the rule then finds the image up to date. Keyed by the engine's state (its image list,
    queried every run) and kept for the daemon's life, the old process is not run again, while any
    change of the engine (say, an image removed) makes a new process that does run.
    """
    return dataclasses.replace(
        process,
        env=FrozenDict({**process.env, "__CHROMADB_LAMBDA_ENGINE_STATE": engine.fingerprint}),
        cache_scope=ProcessCacheScope.PER_RESTART_SUCCESSFUL,
    )


@dataclass(frozen=True)
class EngineImagesRequest:
    pass


@dataclass(frozen=True)
class EngineImages:
    """Every `repository:tag` the engine holds, with its image id: one query per Pants run."""

    refs: FrozenDict[str, str]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256("\n".join(sorted(f"{r} {i}" for r, i in self.refs.items())).encode()).hexdigest()


def parse_image_listing(output: str) -> dict[str, str]:
    refs = {}
    for line in output.splitlines():
        ref, _, image_id = line.strip().rpartition(" ")
        if ref and not ref.endswith(":<none>") and not ref.startswith("<none>"):
            refs[ref] = image_id
    return refs


@rule(desc="Listing the images of the Docker engine")
async def list_engine_images(
    _: EngineImagesRequest, docker: DockerBinary, env: DockerEnvironment
) -> EngineImages:
    result = await Get(
        ProcessResult,
        Process,
        docker_process(
            docker,
            ("image", "ls", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"),
            env.env,
            "Listing the images of the Docker engine",
        ),
    )
    return EngineImages(FrozenDict(parse_image_listing(result.stdout.decode())))


@rule
async def docker_environment(docker_env_aware: DockerOptions.EnvironmentAware) -> DockerEnvironment:
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(docker_env_aware.env_vars))
    return DockerEnvironment(FrozenDict(env))


def tag_process(docker: DockerBinary, image_id: str, ref: str, env: Mapping[str, str]) -> Process:
    return docker_process(docker, ("tag", image_id, ref), env, f"Tagging {image_id[:19]} as {ref}")


# `docker build --iidfile` writes the image id here: more robust than parsing BuildKit's progress output.
IMAGE_ID_FILE = ".chromadb-lambda-image-id"


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


async def run_build(process: Process, image: str, address: Address, env: Mapping[str, str]) -> str:
    """Runs a `docker_build_process`; the image id, or a DockerBuildError that says what to do."""
    result = await Get(FallibleProcessResult, Process, process)
    if result.exit_code != 0:
        raise DockerBuildError(build_failure_message(image, address, result, env))
    contents = await Get(DigestContents, Digest, result.output_digest)
    return contents[0].content.decode().strip()


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


def rules():
    return collect_rules()
