"""The images of a chunk of Lambdas (lambda_chunks.py) with the assembler: what the engine lacks is
assembled, proven, and loaded with ONE `docker load` of ONE docker-archive.

Prove while loading, tag what passed: with `[lambda-image].check_handler_import` on, the missing
members' handlers are imported in one container of their base (import_check_chunk.py, classified by
import_check.py) WHILE their archive, which carries no tag, is loaded; then one process under the
engine locks tags the members whose verdict does not fail the build and removes the failing
members' untagged images. A member whose check fails is never tagged: the next run finds it missing
and checks it again (the check process is cached on its inputs, so a repeated failure costs no
container). So an image the engine holds under its content-key tag was proven before it was tagged
(HELD), and a member the engine holds needs no check in this run. With the check off, the archive
carries the tags and one load does it all.

A member's failure is a value (ChunkImage.error), reported by that member's own package with its own
address: a broken member never hides or fails the others' images. A narrow `pants package
lambdas/x:x` assembles and loads every missing member of x's chunk (they are cheap to add to the
load that x needs anyway).
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from typing import Sequence

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.fs import EMPTY_DIGEST, CreateDigest, Digest, FileContent
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from chromadb_lambda.scripts import script_source
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.util_rules.assemble import (
    AssembledMember,
    AssembledMemberRequest,
    chunk_archive,
    wrong_image_message,
)
from chromadb_lambda.util_rules.engine import (
    DockerEnvironment,
    EngineRun,
    EngineRunRequest,
    docker_process,
    run_scoped_process,
)
from chromadb_lambda.util_rules.engine_locks import engine_lock_dir
from chromadb_lambda.util_rules.existing_image import ExistingImage, existing_image_held_first
from chromadb_lambda.util_rules.image_names import ImageNames, LambdaImageNamesRequest
from chromadb_lambda.util_rules.import_check_chunk import (
    IMPORT_TIMEOUT,
    ChunkCheckPlan,
    ChunkCheckPlanRequest,
    MemberCheckOutput,
    check_spec,
    parse_chunk_output,
    prover_files,
)

CHUNK_ARCHIVE = "lambda-images.tar"
CHUNK_LOAD = "chunk_load.py"
_SCRIPTS = "__chromadb_lambda_chunk_load"


# The `import_check` of docker-info for an image the engine held under its content-key tag (not
# pulled): the assembler loads an image only after its check passed or warned, so it was checked
# before it was loaded (in an earlier run; a warning was logged then).
HELD = "checked before load"


@dataclass(frozen=True)
class ChunkImage:
    image_id: str | None
    # Loaded by this run (False: the engine had it, or another run loaded it while this one waited).
    made: bool = False
    error: str | None = None
    # `passed` or `warning: ...` when checked by this run, HELD when the engine held it under its key
    # tag, None when it is still to be checked by a `docker run` of the image (pulled from a registry,
    # not checkable in a container of its base, or the check is off).
    import_check: str | None = None
    # The error is the handler import check's (import_check.HandlerImportError), not the assembler's.
    check_failed: bool = False


@dataclass(frozen=True)
class MemberProof:
    """A member's import check verdict (`passed`, `warning: ...`), or the error that fails its build."""

    verdict: str | None
    error: str | None = None


@dataclass(frozen=True)
class ChunkProofRequest:
    # The members about to be tagged and their import check outputs (rule: import_check.prove_members
    # classifies them); a member without an output was not checked.
    members: tuple[AssembledMember, ...]
    outputs: FrozenDict[Address, MemberCheckOutput]


@dataclass(frozen=True)
class ChunkProof:
    """Each checked member's proof; a member absent here is loaded and checked by a `docker run`."""

    proofs: FrozenDict[Address, MemberProof]


@dataclass(frozen=True)
class ChunkImagesRequest:
    members: tuple[Address, ...]


@dataclass(frozen=True)
class ChunkImages:
    images: FrozenDict[Address, ChunkImage]


@dataclass(frozen=True)
class MemberLookupRequest:
    address: Address


@dataclass(frozen=True)
class MemberLookup:
    existing: ExistingImage | None
    error: str | None = None


@rule
async def look_up_member(request: MemberLookupRequest, subsystem: ChromadbLambdaSubsystem) -> MemberLookup:
    # A member whose closure or names fail is reported by its own package; here it is only a value.
    try:
        names = await Get(ImageNames, LambdaImageNamesRequest(request.address))
        existing = await existing_image_held_first(request.address, names, subsystem.pull_from_registries)
    except Exception as e:
        return MemberLookup(None, f"{type(e).__name__}: {e}")
    return MemberLookup(existing)


@dataclass(frozen=True)
class AssembledMemberResult:
    member: AssembledMember | None
    error: str | None


@rule
async def assemble_member_or_error(request: MemberLookupRequest) -> AssembledMemberResult:
    try:
        return AssembledMemberResult(await Get(AssembledMember, AssembledMemberRequest(request.address)), None)
    except Exception as e:
        return AssembledMemberResult(None, f"{type(e).__name__}: {e}")


# Pants' named cache of passing import checks (chunk_load.py `prove` reads and writes it): a member
# whose image id passed before, with the same checker, is not checked again. Kept with Pants' other
# named caches (`[GLOBAL].named_caches_dir`), so a CI runner that keeps Pants' caches keeps it too.
VERDICT_CACHE = "chromadb_lambda_import_checks"
VERDICT_CACHE_PATH = ".chromadb-lambda-import-checks"


def chunk_load_process(
    docker: DockerBinary,
    members: Sequence[AssembledMember],
    archive: Digest,
    scripts: Digest,
    env: FrozenDict[str, str],
    run: EngineRun,
    mode: str = "load",
    discard: Sequence[AssembledMember] = (),
    checks: Sequence[dict] = (),
) -> Process:
    """chunk_load.py: `load` (tagged archive, under the locks), `prove` (tag-less archive loaded while
    `checks` run in the provers, then what passed is tagged under the locks) or `tag` (no archive: tag
    `members`, remove `discard`'s untagged images)."""
    spec = {
        "docker": docker.path,
        "lock_dir": engine_lock_dir(),
        "mode": mode,
        "images": [{"key_ref": m.key_ref, "refs": list(m.refs), "image_id": m.image_id} for m in members],
        "discard": [{"key_ref": m.key_ref, "image_id": m.image_id} for m in discard],
        "checks": list(checks),
    }
    if mode == "prove":
        spec["verdicts"] = VERDICT_CACHE_PATH
    description = {
        "load": f"Loading {len(members)} assembled chromadb_lambda images",
        "prove": prove_description(len(members), checks),
        "tag": f"Tagging {len(members)} checked chromadb_lambda images",
    }[mode]
    load = docker_process(docker, ("load", "--input", CHUNK_ARCHIVE), env, description)
    process = dataclasses.replace(
        load,
        argv=(
            sys.executable,
            # No `site`: the scripts need the standard library only (a few ms of every start).
            "-S",
            f"{_SCRIPTS}/{CHUNK_LOAD}",
            json.dumps(spec, sort_keys=True),
            *(("--", *load.argv) if mode != "tag" else ()),
        ),
        input_digest=archive,
        immutable_input_digests=FrozenDict({**load.immutable_input_digests, _SCRIPTS: scripts}),
        append_only_caches=FrozenDict(
            {**load.append_only_caches, **({VERDICT_CACHE: VERDICT_CACHE_PATH} if mode == "prove" else {})}
        ),
    )
    return run_scoped_process(process, run)


def prove_description(count: int, checks: Sequence[dict]) -> str:
    checked = sum(len(c["members"]) for c in checks)
    if not checked:
        return f"Loading {count} assembled chromadb_lambda images (none checkable in a container of its base)"
    bases = ", ".join(c["base_image_id"][:19] for c in checks)
    return (
        f"Importing {checked} chromadb_lambda handlers in their images (a prover of {bases}) "
        f"while loading {count} assembled images, then tagging those that pass"
    )


def chunk_scripts() -> CreateDigest:
    """chunk_load.py and its siblings (prover.py and its driver for the `prove` mode)."""
    return CreateDigest([FileContent(CHUNK_LOAD, script_source(CHUNK_LOAD)), *prover_files()])


def load_failure(members: Sequence[AssembledMember], result: FallibleProcessResult) -> str:
    output = (result.stderr.decode(errors="replace") + result.stdout.decode(errors="replace")).strip()
    tail = "\n".join(f"  {line}" for line in output.splitlines()[-20:])
    return softwrap(
        f"""
        `docker load` of the {len(members)} images assembled for a chunk of Lambdas failed (exit code
        {result.exit_code}). The engine must hold the base image's layers (only the new layers are in
        the archive): if the base was removed meanwhile, run Pants again.
        """
    ) + f"\n{tail}"


def loaded_images(members: Sequence[AssembledMember], stdout: bytes) -> dict[Address, ChunkImage]:
    """chunk_load.py's report -> each member's image, or its own error."""
    report = json.loads(stdout.decode())
    images = {}
    for member in members:
        entry = report.get(member.key_ref) or {"image_id": None, "made": False, "error": "not reported"}
        if entry.get("error"):
            message = wrong_image_message(member.address, member.key_ref, str(entry.get("image_id")), str(member.image_id))
            images[member.address] = ChunkImage(None, bool(entry.get("made")), f"{message} ({entry['error']})")
        else:
            images[member.address] = ChunkImage(entry["image_id"], bool(entry.get("made")))
    return images


def bundle_file(index: int) -> str:
    return f"import-check-bundle-{index}.tar"


def prove_report(stdout: bytes) -> dict:
    """chunk_load.py `prove`'s report (printed also when the load failed), or {}."""
    try:
        report = json.loads(stdout.decode(errors="replace"))
    except ValueError:
        return {}
    return report if isinstance(report, dict) else {}


def check_outputs(plan: ChunkCheckPlan, report: dict) -> dict[Address, MemberCheckOutput]:
    """chunk_load.py `prove`'s report -> each checked member's output (import_check_chunk.py reads them)."""
    outputs: dict[Address, MemberCheckOutput] = {}
    for bundle, check in zip(plan.bundles, report.get("checks", [])):
        outputs.update(
            parse_chunk_output(
                bundle.members, int(check["exit_code"]), check["stdout"].encode(), check["stderr"].encode()
            )
        )
    return outputs


async def prove_while_loading(
    members: tuple[AssembledMember, ...], docker: DockerBinary, env: FrozenDict[str, str], run: EngineRun
) -> dict[Address, ChunkImage]:
    """ONE process: the tag-less load while the provers check, then the members whose verdict is `ok`
    (and those no check covers) tagged; the plugin classifies the rest, and a second process (only
    when some member did not pass) tags the warnings and removes the failures' untagged images."""
    plan = await Get(ChunkCheckPlan, ChunkCheckPlanRequest(members, IMPORT_TIMEOUT))
    checks = [
        {**check_spec(bundle, bundle_file(i)), "members": [m.key_ref for m in bundle.members]}
        for i, bundle in enumerate(plan.bundles)
    ]
    archive, scripts = await MultiGet(
        Get(
            Digest,
            CreateDigest(
                [
                    FileContent(CHUNK_ARCHIVE, chunk_archive(members, tagged=False)),
                    *(FileContent(bundle_file(i), b.bundle) for i, b in enumerate(plan.bundles)),
                ]
            ),
        ),
        Get(Digest, CreateDigest, chunk_scripts()),
    )
    loaded = await Get(
        FallibleProcessResult,
        Process,
        chunk_load_process(docker, members, archive, scripts, env, run, "prove", checks=checks),
    )
    report = prove_report(loaded.stdout)
    proof = await Get(ChunkProof, ChunkProofRequest(members, FrozenDict(check_outputs(plan, report))))
    images: dict[Address, ChunkImage] = {}
    failing = [m for m in members if proof.proofs.get(m.address, MemberProof(None)).error is not None]
    for m in failing:
        images[m.address] = ChunkImage(None, error=proof.proofs[m.address].error, check_failed=True)
    passing = [m for m in members if m.address not in images]
    if loaded.exit_code != 0 or "tagged" not in report:
        failure = load_failure(members, loaded)
        images.update((m.address, ChunkImage(None, error=failure)) for m in passing)
        return images
    tagged_report = report["tagged"]
    # Tagged in the process: `ok` verdicts (classified `passed`) and unchecked members. A member whose
    # verdict was not `ok` is untagged still: tagged here if it only warns, removed if it fails.
    untagged = [m for m in passing if m.key_ref not in tagged_report]
    leftovers = [m for m in failing if m.key_ref not in tagged_report]
    if untagged or leftovers:
        tagged = await Get(
            FallibleProcessResult,
            Process,
            chunk_load_process(docker, untagged, EMPTY_DIGEST, scripts, env, run, "tag", discard=leftovers),
        )
        if tagged.exit_code != 0:
            failure = load_failure(untagged, tagged)
            images.update((m.address, ChunkImage(None, error=failure)) for m in untagged)
            untagged = []
        else:
            tagged_report = {**tagged_report, **json.loads(tagged.stdout.decode())}
    reported = [m for m in passing if m.address not in images]
    for address, image in loaded_images(reported, json.dumps(tagged_report).encode()).items():
        member_proof = proof.proofs.get(address)
        verdict = member_proof.verdict if member_proof is not None and image.image_id else None
        images[address] = dataclasses.replace(image, import_check=verdict)
    return images


@rule(desc="Loading a chunk of chromadb_lambda images")
async def chunk_images(
    request: ChunkImagesRequest,
    docker: DockerBinary,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
) -> ChunkImages:
    lookups = await MultiGet(Get(MemberLookup, MemberLookupRequest(a)) for a in request.members)
    images: dict[Address, ChunkImage] = {}
    missing = []
    for address, lookup in zip(request.members, lookups):
        if lookup.existing is None:
            images[address] = ChunkImage(None, error=lookup.error)
        elif lookup.existing.image_id:
            # Held under its key tag: proven when it was loaded. Pulled: checked by its own `docker run`.
            held = None if lookup.existing.pulled_from else HELD
            images[address] = ChunkImage(lookup.existing.image_id, import_check=held)
        else:
            missing.append((address, lookup.existing))
    if missing:
        # The run the ExistingImage step asked for, else (nothing to find, told from HeldRefs) this run.
        run = next((e.run for _, e in missing if e.run), None) or await Get(EngineRun, EngineRunRequest())
        assembled = await MultiGet(Get(AssembledMemberResult, MemberLookupRequest(a)) for a, _ in missing)
        loadable = []
        for (address, _), result in zip(missing, assembled):
            error = result.error or (result.member.error if result.member else None)
            if error or result.member is None:
                images[address] = ChunkImage(None, error=error)
            else:
                loadable.append(result.member)
        if loadable and subsystem.check_handler_import:
            images.update(await prove_while_loading(tuple(loadable), docker, docker_env.env, run))
        elif loadable:
            archive, scripts = await MultiGet(
                Get(Digest, CreateDigest([FileContent(CHUNK_ARCHIVE, chunk_archive(loadable))])),
                Get(Digest, CreateDigest, chunk_scripts()),
            )
            result = await Get(
                FallibleProcessResult,
                Process,
                chunk_load_process(docker, loadable, archive, scripts, docker_env.env, run),
            )
            if result.exit_code != 0:
                failure = load_failure(loadable, result)
                images.update((m.address, ChunkImage(None, error=failure)) for m in loadable)
            else:
                images.update(loaded_images(loadable, result.stdout))
    return ChunkImages(FrozenDict((a, images[a]) for a in request.members))


def rules():
    return collect_rules()
