"""The import check of assembled Lambda images in a container of their base, before they are tagged.

`docker run` of each image costs ~0.3 s of container start before its import. Here one container of
the base image, its prover (scripts/prover.py: kept running between checks, reached by `docker
exec`; a fresh `docker run --rm --network none` where it cannot be verified clean), checks the
members the assembler is loading (only those the engine lacks), each in its own image's filesystem
(chunk_import_check.py rebuilds it from the base and the member's layer tar, then puts the base back
for the next member). It needs the base image and the layer bytes, not the loaded image: the chunk
rule (chunk_images.py) loads them untagged meanwhile and tags only the members whose verdict does not
fail the build. Why this is the same proof as running the image is in docs/architecture.md ("The
import check of a chunk", "The prover").

The process is keyed by every checked member's image id, layer and config, and cached like any
successful process: a member that fails again costs no container; a handler edit checks that one member.
"""
from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.process import Process, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict

from chromadb_lambda.scripts import chunk_import_check, import_check_script, script_source
from chromadb_lambda.util_rules.assemble import BaseImageConfig, BaseImageConfigRequest
from chromadb_lambda.util_rules.engine_locks import ENGINE_LOCK, engine_lock_dir
from chromadb_lambda.util_rules.image_layer import LayerFile, tar_archive

if TYPE_CHECKING:
    from chromadb_lambda.util_rules.assemble import AssembledMember

BUNDLE = "import-check-bundle.tar"
PROVER = "prover.py"
CHUNK_IMPORT_CHECK = "chunk_import_check.py"
ENGINE_API = "engine_api.py"
# The prover's warm interpreter (scripts/zygote.py), run by chunk_import_check.py.
ZYGOTE = "zygote.py"
_SCRIPTS = "__chromadb_lambda_prover"
# The import's own time limit, seconds (import_check_script.py's alarm).
IMPORT_TIMEOUT = 60
# A prover exits by itself once no check ran in it for this long (prover.py).
PROVER_IDLE_SECONDS = 900
# Container users the per-member check may run as: the container runs as root to extract the layers.
_ROOT_USERS = ("", "root", "0", "0:0", "root:root")


@dataclass(frozen=True)
class MemberCheckOutput:
    """One member's import check output, as a `docker run` of its image would have given it."""

    image_id: str
    exit_code: int
    stdout: bytes
    stderr: bytes


def checkable(member: AssembledMember) -> bool:
    """The member was assembled (layer and config), and its image runs as root (the container
    extracts its layer as root: a member that runs as another user is loaded, then checked by a
    `docker run` of its image, import_check.py)."""
    if member.error or member.layer is None or member.image_id is None:
        return False
    return json.loads(member.config).get("config", {}).get("User", "") in _ROOT_USERS


def check_bundle(members: Sequence[AssembledMember], base_env: Sequence[str], timeout: int) -> bytes:
    """The tar chunk_import_check.py reads on stdin (deterministic: the process is cached by it)."""
    files = [
        LayerFile("check.py", script_source(os.path.basename(import_check_script.__file__))),
        LayerFile("zygote.py", script_source(ZYGOTE)),
    ]
    entries = []
    for i, member in enumerate(members):
        assert member.layer is not None
        config = json.loads(member.config)["config"]
        layer_name = f"layers/{i}.tar"
        files.append(LayerFile(layer_name, member.layer.tar))
        entries.append(
            {
                "name": str(i),
                "layer": layer_name,
                "env": config.get("Env", []),
                "workdir": config.get("WorkingDir", ""),
                "module": member.module,
                "function": member.function,
            }
        )
    index = {
        "task_root": members[0].task_root,
        "timeout": timeout,
        "base_env": list(base_env),
        "members": entries,
        "zygote": True,
    }
    files.append(LayerFile("index.json", json.dumps(index, sort_keys=True).encode()))
    return tar_archive(files)


def chunk_check_process(
    docker: DockerBinary,
    base_image_id: str,
    bundle: Digest,
    count: int,
    env: FrozenDict[str, str],
    task_root: str,
    scripts: Digest,
) -> Process:
    """prover.py: the check in the base's prover (a `docker exec`), or a fresh `docker run`."""
    spec = {
        "docker": docker.path,
        "lock_dir": engine_lock_dir(),
        "base_image_id": base_image_id,
        "bundle": BUNDLE,
        "driver": CHUNK_IMPORT_CHECK,
        "task_root": task_root,
        "idle_seconds": PROVER_IDLE_SECONDS,
    }
    return Process(
        argv=(sys.executable, f"{_SCRIPTS}/{PROVER}", json.dumps(spec, sort_keys=True)),
        description=f"Importing {count} chromadb_lambda handlers in their images (a prover of {base_image_id[:19]})",
        input_digest=bundle,
        env={**docker.extra_env, **env},
        immutable_input_digests=FrozenDict({**(docker.extra_input_digests or {}), _SCRIPTS: scripts}),
        cache_scope=ProcessCacheScope.SUCCESSFUL,
    )


def prover_files() -> list[FileContent]:
    """prover.py and what it runs beside it (chunk_load.py's `prove` mode needs them too)."""
    return [FileContent(name, script_source(name)) for name in (PROVER, CHUNK_IMPORT_CHECK, ENGINE_LOCK, ENGINE_API)]


def prover_scripts() -> CreateDigest:
    return CreateDigest(
        [FileContent(name, script_source(name)) for name in (PROVER, CHUNK_IMPORT_CHECK, ENGINE_LOCK, ENGINE_API)]
    )


def parse_chunk_output(
    members: Sequence[AssembledMember], result_exit_code: int, stdout: bytes, stderr: bytes
) -> dict[Address, MemberCheckOutput]:
    """chunk_import_check.py's lines -> each member's output; a member without a line gets the
    container's own exit code and output (the import check's infrastructure error names it)."""
    lines = {}
    marker = chunk_import_check.MEMBER_MARKER + " "
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith(marker):
            entry = json.loads(line[len(marker) :])
            lines[entry["name"]] = entry
    outputs = {}
    for i, member in enumerate(members):
        assert member.image_id is not None
        entry = lines.get(str(i))
        if entry is None:
            outputs[member.address] = MemberCheckOutput(member.image_id, result_exit_code or 1, stdout, stderr)
        else:
            outputs[member.address] = MemberCheckOutput(
                member.image_id, int(entry["exit_code"]), entry["stdout"].encode(), entry["stderr"].encode()
            )
    return outputs


@dataclass(frozen=True)
class ChunkCheckBundle:
    """One base's bundle of members, to be checked in that base's prover (chunk_load.py `prove`)."""

    base_image_id: str
    task_root: str
    members: tuple[AssembledMember, ...]
    bundle: bytes


@dataclass(frozen=True)
class ChunkCheckPlanRequest:
    members: tuple[AssembledMember, ...]
    timeout: int


@dataclass(frozen=True)
class ChunkCheckPlan:
    """The checkable members' bundles, one per base (sorted by base id); a member in none of them is
    not checkable in its base's container (checkable())."""

    bundles: tuple[ChunkCheckBundle, ...]


def check_spec(bundle: ChunkCheckBundle, file_name: str) -> dict:
    """prover.py's spec of one bundle (without `docker` and `lock_dir`)."""
    return {
        "base_image_id": bundle.base_image_id,
        "bundle": file_name,
        "driver": CHUNK_IMPORT_CHECK,
        "task_root": bundle.task_root,
        "idle_seconds": PROVER_IDLE_SECONDS,
    }


@rule
async def plan_chunk_check(request: ChunkCheckPlanRequest) -> ChunkCheckPlan:
    by_base: dict[str, list[AssembledMember]] = defaultdict(list)
    for member in request.members:
        if checkable(member):
            by_base[member.base_image_id].append(member)
    bases = sorted(by_base)
    base_configs = await MultiGet(Get(BaseImageConfig, BaseImageConfigRequest(b)) for b in bases)
    return ChunkCheckPlan(
        tuple(
            ChunkCheckBundle(
                b,
                by_base[b][0].task_root,
                tuple(by_base[b]),
                check_bundle(by_base[b], (json.loads(c.inspect_json).get("Config") or {}).get("Env") or [], request.timeout),
            )
            for b, c in zip(bases, base_configs)
        )
    )


def rules():
    return collect_rules()
