"""The Docker engine side: its image listing, the `docker build` process (through Pants' DockerBinary), engine locks."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Mapping

from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.backend.docker.util_rules.docker_build_args import DockerBuildArgs
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.internals.session import RunId
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.memo import memoized_property

from chromadb_lambda.scripts import script_source
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem

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


@dataclass(frozen=True)
class EngineRun:
    """This Pants run: the engine's image listing and every process that changes the engine are keyed by it.

    With pantsd, a new run first re-requests what a rule requested in the previous run, to decide
    whether the rule must run again: a PER_SESSION `docker build` would run again right there, even
    when the rule then finds the image up to date. A process keyed by the run that made it and kept
    for the daemon's life (PER_RESTART_SUCCESSFUL) is found in memory by that replay and not run,
    while the rules that asked for it run again, as they depend on this run's listing (EngineImages
    carries the run). So an engine-changing process runs in the run that asks for it, and its result
    (an image id) is never one a past run reported: keyed by the engine's image listing instead, an
    engine state that comes back (A -> B -> A, e.g. an image deleted and the old tag restored) would
    replay a build whose image is gone.

    Rules get the run from EngineImages, never from RunId directly: a rule that depends on RunId
    fails its replay at once, which cancels the listing the replay had started, and the listing
    then runs a second time.
    """

    id: int


def run_scoped_process(process: Process, run: EngineRun) -> Process:
    """Runs once in `run`, and never again for a replay of it (see EngineRun)."""
    return dataclasses.replace(
        process,
        env=FrozenDict({**process.env, "__CHROMADB_LAMBDA_RUN": str(run.id)}),
        cache_scope=ProcessCacheScope.PER_RESTART_SUCCESSFUL,
    )


@dataclass(frozen=True)
class EngineImagesRequest:
    pass


@dataclass(frozen=True)
class EngineImages:
    """Every `repository:tag` the engine holds, with its image id: one query per Pants run, taken in
    that run (so an id read here is one the engine holds now), and the run it was taken in."""

    refs: FrozenDict[str, str]
    run: EngineRun

    @memoized_property
    def repositories(self) -> FrozenDict[str, FrozenDict[str, str]]:
        """The refs by repository (grouped once per listing)."""
        return by_repository(self.refs)


def by_repository(refs: Mapping[str, str]) -> FrozenDict[str, FrozenDict[str, str]]:
    grouped: dict[str, dict[str, str]] = {}
    for ref, image_id in refs.items():
        grouped.setdefault(ref.rpartition(":")[0], {})[ref] = image_id
    return FrozenDict((repository, FrozenDict(group)) for repository, group in grouped.items())


def parse_image_listing(output: str) -> dict[str, str]:
    refs = {}
    for line in output.splitlines():
        ref, _, image_id = line.strip().rpartition(" ")
        if ref and not ref.endswith(":<none>") and not ref.startswith("<none>"):
            refs[ref] = image_id
    return refs


@rule(desc="Listing the images of the Docker engine")
async def list_engine_images(
    _: EngineImagesRequest, docker: DockerBinary, env: DockerEnvironment, run_id: RunId
) -> EngineImages:
    run = EngineRun(int(run_id))
    result = await Get(
        ProcessResult,
        Process,
        run_scoped_process(
            docker_process(
                docker,
                ("image", "ls", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"),
                env.env,
                "Listing the images of the Docker engine",
            ),
            run,
        ),
    )
    return EngineImages(FrozenDict(parse_image_listing(result.stdout.decode())), run)


@dataclass(frozen=True)
class RepositoryImagesRequest:
    repository: str


@dataclass(frozen=True)
class RepositoryImages:
    """The engine's `repository:tag`s of one repository, with their image ids, from this run's listing.

    Unlike EngineImages, which carries the run, this is equal from one run to the next while the
    engine's tags of this repository stay as they are: a rule that reads only this (the package of an
    up-to-date image) is not run again on a no-op. A rule that changes the engine asks for
    EngineImages as well (for the run), so it runs again in the next run, which finds its image.
    """

    refs: FrozenDict[str, str]


@rule(desc="Reading the engine's tags of a repository")
async def repository_images(request: RepositoryImagesRequest) -> RepositoryImages:
    engine = await Get(EngineImages, EngineImagesRequest())
    return RepositoryImages(engine.repositories.get(request.repository, FrozenDict()))


@rule
async def docker_environment(docker_env_aware: DockerOptions.EnvironmentAware) -> DockerEnvironment:
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(docker_env_aware.env_vars))
    return DockerEnvironment(FrozenDict(env))


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


async def run_build(process: Process, image: str, address: Address, env: Mapping[str, str]) -> LockedImage:
    """Runs a `locked_process` around a `docker_build_process`: the image, or a DockerBuildError."""
    result = await Get(FallibleProcessResult, Process, process)
    if result.exit_code != 0:
        raise DockerBuildError(build_failure_message(image, address, result, env))
    return parse_locked_result(result.stdout)


ENGINE_LOCK = "engine_lock.py"
_ENGINE_LOCK_PREFIX = "__chromadb_lambda_engine_lock"


def engine_lock_dir() -> str:
    """Where every run on this machine (any clone) takes the locks of the engine's tags."""
    return os.path.join(tempfile.gettempdir(), "chromadb-lambda-engine-locks")


@dataclass(frozen=True)
class EngineLockScriptRequest:
    pass


@dataclass(frozen=True)
class EngineLockScript:
    digest: Digest


@rule
async def engine_lock_script(_: EngineLockScriptRequest) -> EngineLockScript:
    return EngineLockScript(await Get(Digest, CreateDigest([FileContent(ENGINE_LOCK, script_source(ENGINE_LOCK))])))


@dataclass(frozen=True)
class LockedImage:
    """What `engine_lock.py` reports: the image every ref points at (None: not made), whether this
    run made it (built or pulled) rather than adopting another run's, and the pull's JSON output."""

    image_id: str | None
    made: bool
    output: str = ""


def parse_locked_result(stdout: bytes) -> LockedImage:
    result = json.loads(stdout.decode())
    output = result.get("output")
    return LockedImage(
        image_id=result["image_id"] or None,
        made=bool(result["made"]),
        output="" if output is None else json.dumps(output, sort_keys=True),
    )


def locked_process(
    make: Process | None,
    *,
    script: EngineLockScript,
    docker: DockerBinary,
    env: Mapping[str, str],
    run: EngineRun,
    key_ref: str,
    refs: tuple[str, ...],
    kind: str = "build",
) -> Process:
    """`make` (a `docker build` or a pull, `kind`) run by `engine_lock.py` under the locks of `refs`.

    Without `make`, the process only adopts the image `key_ref` names, moving the other refs to it
    (or reports that the engine has no `key_ref`). Keyed by this run: see EngineRun.
    """
    spec = {
        "docker": docker.path,
        "lock_dir": engine_lock_dir(),
        "key_ref": key_ref,
        "refs": list(refs),
        "make": kind,
        "iidfile": IMAGE_ID_FILE,
    }
    argv = (sys.executable, f"{_ENGINE_LOCK_PREFIX}/{ENGINE_LOCK}", json.dumps(spec, sort_keys=True))
    if make is None:
        make = docker_process(docker, (), env, f"Tagging {key_ref} as {', '.join(r for r in refs if r != key_ref)}")
        argv_tail: tuple[str, ...] = ()
    else:
        argv_tail = ("--", *make.argv)
    process = dataclasses.replace(
        make,
        argv=(*argv, *argv_tail),
        immutable_input_digests=FrozenDict({**make.immutable_input_digests, _ENGINE_LOCK_PREFIX: script.digest}),
        output_files=(),
    )
    return run_scoped_process(process, run)


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
