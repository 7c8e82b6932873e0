"""The Docker engine as the plugin sees it: the environment of docker processes, the run that keys
every engine-changing process (see EngineRun), and the engine's image listing, once per run."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.internals.session import RunId
from pants.engine.process import Process, ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.memo import memoized_property


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


def rules():
    return collect_rules()
