"""The Docker engine as the plugin sees it: the environment of docker processes, the run that keys
every engine-changing process (see EngineRun), the engine's image listing (once per run), and the image
ids of given refs (asked for in every run: the engine's tags read once per run for all of them)."""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import struct
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.internals.session import RunId
from pants.engine.process import Process, ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict

from chromadb_lambda.scripts.engine_api import UnixConnection, engine_socket


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

    Rules get the run from `Get(EngineRun, EngineRunRequest())` (or EngineImages), never from RunId
    directly: a rule that depends on RunId fails its replay at once, which cancels the listing the
    replay had started, and the listing then runs a second time. (this_run and read_engine_tag_store
    depend on RunId, and request nothing.) The run is not read from the listing, so that a step that
    changes the engine does not list it: the first run after a build replays those steps, and would
    list the engine again for nothing.
    """

    id: int


@dataclass(frozen=True)
class EngineRunRequest:
    pass


@rule
async def this_run(_: EngineRunRequest, run_id: RunId) -> EngineRun:
    return EngineRun(int(run_id))


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
class HeldRefsRequest:
    refs: tuple[str, ...]


@dataclass(frozen=True)
class HeldRefs:
    """The image id of each of the requested `repository:tag`s the engine holds (a ref it does not
    hold is absent), asked in this run: an id read here is one the engine holds now.

    Unlike EngineImages, which carries the run, this is equal from one run to the next while those refs
    stay as they are: a rule that reads only this (the package of an up-to-date image) is not run again
    on a no-op. A rule that changes the engine asks for EngineImages as well (for the run), so it runs
    again in the next run, which finds its image. Behind a unix socket the engine's tags are read once
    per run for all targets (EngineTags: its tag store, one `GET /info` and one file read, a few ms for
    thousands of tags; else its API's image listing, one request), not one request per ref.
    """

    refs: FrozenDict[str, str]


def engine_tags_file(info: Mapping) -> str | None:
    """Where the engine that `GET /info` describes keeps its tags: `<DockerRootDir>/image/<Driver>/
    repositories.json`, which it rewrites (atomically) before it answers any request that tags, untags
    or removes an image, so the file says what the engine holds now. None: the containerd image store
    (a `driver-type` in DriverStatus), whose tags are not in that file."""
    root, driver = info.get("DockerRootDir"), info.get("Driver")
    if not root or not driver or any(entry and entry[0] == "driver-type" for entry in info.get("DriverStatus") or ()):
        return None
    return os.path.join(str(root), "image", str(driver), "repositories.json")


def parse_tag_store(data: bytes) -> dict[str, str]:
    """`repository:tag` -> image id of an engine's `repositories.json` (digest references left out)."""
    repositories = json.loads(data).get("Repositories") or {}
    return {ref: image_id for refs in repositories.values() for ref, image_id in refs.items() if "@" not in ref}


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process serving the other end of a unix socket (SO_PEERCRED); None where the
    system has no such option (macOS: colima's or Docker Desktop's socket is a VM's engine anyway)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return pid


def engine_process_root(pid: int) -> str | None:
    """Where the files of the dockerd with this pid are, as it sees them (`/proc/<pid>/root`); None when
    the process is not a dockerd of this machine (a proxy forwarding the socket to a VM's or another
    host's engine, whose data root is not here) or not this user's to look into."""
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None
    return f"/proc/{pid}/root" if exe.startswith("dockerd") else None


def read_engine_tags(
    socket_path: str, timeout: float = 60.0, process_root: Callable[[int], str | None] | None = None
) -> dict[str, str] | None:
    """Every `repository:tag` the engine at `socket_path` holds, read from its tag store: one `GET
    /info` (which names the store) and one file read, whatever the number of refs asked. The store is
    read through the root of the dockerd serving the socket, so it is that engine's. None: the socket
    is not served by a local dockerd, the engine did not say where its store is, or this user cannot
    read it."""
    connection = UnixConnection(socket_path, timeout)
    try:
        # Who serves the socket first: behind a proxy, no `GET /info` (one of the engine's slower
        # answers) is asked for nothing.
        connection.connect()
        pid = peer_pid(connection.sock)
        root = None if pid is None else (process_root or engine_process_root)(pid)
        if root is None:
            return None
        connection.request("GET", "/info")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    info = json.loads(body) if response.status == 200 else None
    path = engine_tags_file(info) if isinstance(info, dict) else None
    if path is None:
        return None
    try:
        with open(root + path, "rb") as store:
            return parse_tag_store(store.read())
    except (OSError, ValueError):
        return None


def parse_api_listing(images: object) -> dict[str, str] | None:
    """`repository:tag` -> image id of the engine API's image listing (`GET /images/json`), untagged
    images (`<none>:<none>`) left out. None: not a listing of images (a proxy's answer of another
    shape), which the caller treats as an engine that did not answer."""
    if not isinstance(images, list):
        return None
    refs = {}
    for image in images:
        if not isinstance(image, dict) or not isinstance(image.get("Id"), str):
            return None
        tags = image.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(ref, str) for ref in tags):
            return None
        refs.update((ref, image["Id"]) for ref in tags if not ref.startswith("<none>") and not ref.endswith(":<none>"))
    return refs


def list_engine_tags(socket_path: str, timeout: float = 60.0) -> dict[str, str] | None:
    """Every `repository:tag` the engine at `socket_path` holds, as its API lists them: one request
    (`GET /images/json`, what `docker image ls` asks), answered in a few ms for hundreds of images,
    behind a proxy too. None: the engine answered with an error, or with something else than a listing."""
    connection = UnixConnection(socket_path, timeout)
    try:
        connection.request("GET", "/images/json")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    return parse_api_listing(json.loads(body)) if response.status == 200 else None


@dataclass(frozen=True)
class EngineTagsRequest:
    socket: str


@dataclass(frozen=True)
class EngineTags:
    """Every `repository:tag` the engine holds (in Docker's familiar form, see familiar_ref), read in
    this run from its tag store, else from its API's image listing; `refs` None: the socket did not
    answer (the `docker image ls` process then reports what is wrong)."""

    refs: FrozenDict[str, str] | None


@rule
async def read_engine_tag_store(request: EngineTagsRequest, run_id: RunId) -> EngineTags:
    # `run_id`: read again in every run, requesting nothing (see EngineRun); equal from one run to the
    # next while no tag of the engine changed (sorted: the API lists in no fixed order), so nothing that
    # reads it runs again. The store first: no request per image. The listing when the store is not
    # this user's to read or the socket is a proxy's (Docker Desktop's, the benchmark's relay): one
    # request for all targets, where asking per ref cost a round trip per target on every run.
    try:
        refs = read_engine_tags(request.socket)
        if refs is None:
            refs = list_engine_tags(request.socket)
    except (OSError, ValueError, http.client.HTTPException):
        refs = None
    return EngineTags(None if refs is None else FrozenDict(sorted(refs.items())))


def familiar_ref(ref: str) -> str:
    """A ref as the engine's tag store spells it (Docker's familiar form): without the `docker.io/`
    registry, and without `library/` for an official image (`docker.io/library/python:3` -> `python:3`)."""
    for registry in ("docker.io/", "index.docker.io/"):
        if ref.startswith(registry):
            ref = ref[len(registry) :]
            if ref.startswith("library/") and "/" not in ref[len("library/") :]:
                ref = ref[len("library/") :]
            break
    return ref


def held_in_tags(tags: Mapping[str, str], refs: Iterable[str]) -> FrozenDict[str, str]:
    """The asked refs the tag store holds, with their image ids: a ref it lacks, the engine lacks."""
    held = {ref: tags[familiar_ref(ref)] for ref in refs if familiar_ref(ref) in tags}
    return FrozenDict(sorted(held.items()))


@rule(desc="Asking the engine for image refs")
async def held_refs(request: HeldRefsRequest, env: DockerEnvironment, docker: DockerBinary) -> HeldRefs:
    # With a `unix://` DOCKER_HOST the engine's tags are read in-process once per run for every target
    # (EngineTags): no docker process, no sandbox, nothing stored. Otherwise, or when the socket does
    # not answer, this run's image listing (whose docker process then reports what is wrong with the
    # engine).
    path = engine_socket({**docker.extra_env, **env.env})
    if path is not None:
        tags = await Get(EngineTags, EngineTagsRequest(path))
        if tags.refs is not None:
            return HeldRefs(held_in_tags(tags.refs, request.refs))
    engine = await Get(EngineImages, EngineImagesRequest())
    return HeldRefs(held_in_listing(engine.refs, request.refs))


def held_in_listing(listing: Mapping[str, str], refs: Iterable[str]) -> FrozenDict[str, str]:
    return FrozenDict(sorted((ref, listing[ref]) for ref in set(refs) if ref in listing))


@rule
async def docker_environment(docker_env_aware: DockerOptions.EnvironmentAware) -> DockerEnvironment:
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(docker_env_aware.env_vars))
    return DockerEnvironment(FrozenDict(env))


def rules():
    return collect_rules()
