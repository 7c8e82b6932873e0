"""Engine locks: every step that changes the engine's tags (build, load, pull, tag move) runs under
`engine_lock.py`, which takes a file lock per engine (`DOCKER_HOST`) and tag, adopts an image another
run made meanwhile, and reads every tag back before releasing. See docs/content-keys.md."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Mapping

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.process import Process
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict

from chromadb_lambda.scripts import script_source
from chromadb_lambda.util_rules.engine import EngineRun, docker_process, run_scoped_process


# `docker build --iidfile` writes the image id here: more robust than parsing BuildKit's progress output.
IMAGE_ID_FILE = ".chromadb-lambda-image-id"


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


def rules():
    return collect_rules()
