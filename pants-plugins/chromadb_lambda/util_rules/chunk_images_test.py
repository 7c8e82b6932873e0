"""A chunk's images: one archive holding every missing member, one locked load, members' errors as values."""
from __future__ import annotations

import io
import json
import sys
import tarfile

import pytest
from pants.engine.addresses import Address
from pants.engine.fs import EMPTY_DIGEST, CreateDigest, Digest
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from chromadb_lambda.testutil import DOCKER, DOCKER_ENV, lambda_subsystem, process_result
from chromadb_lambda.util_rules.assemble import AssembledMember, chunk_archive
from chromadb_lambda.util_rules.chunk_images import (
    AssembledMemberResult,
    ChunkImage,
    ChunkImages,
    ChunkImagesRequest,
    ChunkProof,
    ChunkProofRequest,
    MemberLookup,
    check_outputs,
    MemberProof,
    MemberLookupRequest,
    chunk_images,
    look_up_member,
)
from chromadb_lambda.util_rules.engine import EngineRun, EngineRunRequest, HeldRefs, HeldRefsRequest
from chromadb_lambda.util_rules.existing_image import ExistingImage, ExistingImageRequest
from chromadb_lambda.util_rules.image_names import ImageNames, LambdaImageNamesRequest
from chromadb_lambda.util_rules.image_config import canonical_json
from chromadb_lambda.util_rules.image_layer import LayerFile, lambda_layer, sha256_digest
from chromadb_lambda.util_rules.import_check_chunk import (
    ChunkCheckBundle,
    ChunkCheckPlan,
    ChunkCheckPlanRequest,
    MemberCheckOutput,
)

A = Address("lambdas/a", target_name="a")
B = Address("lambdas/b", target_name="b")
C = Address("lambdas/c", target_name="c")
RUN = EngineRun(7)
THIS_RUN = EngineRun(9)  # the chunk's own ask, when no lookup asked the ExistingImage step for the run


def member(address: Address, text: str) -> AssembledMember:
    layer = lambda_layer([LayerFile("handler.py", text.encode())], "/var/task")
    config = canonical_json(
        {"architecture": "amd64", "os": "linux", "config": {"Env": ["LAMBDA_TASK_ROOT=/var/task"]},
         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "b" * 64, layer.diff_id]}}
    )
    name = address.target_name
    return AssembledMember(
        address=address, key_ref=f"acme/{name}:ck-{name}", refs=(f"acme/{name}:latest", f"acme/{name}:ck-{name}"),
        base_image_id="sha256:base", task_root="/var/task", module="handler", function="handle",
        config=config, layer=layer, image_id=sha256_digest(config),
    )


def test_archive_holds_every_image_with_its_tags_and_only_its_own_layer() -> None:
    a, b = member(A, "x = 1\n"), member(B, "x = 2\n")
    with tarfile.open(fileobj=io.BytesIO(chunk_archive([b, a]))) as tar:
        names = sorted(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))
        assert tar.extractfile(f"{a.layer.diff_id[7:]}/layer.tar").read() == a.layer.tar
    assert [m["RepoTags"] for m in manifest] == [["acme/a:ck-a", "acme/a:latest"], ["acme/b:ck-b", "acme/b:latest"]]
    assert [m["Config"] for m in manifest] == [f"{a.image_id[7:]}.json", f"{b.image_id[7:]}.json"]
    # The base's layer is listed in each manifest but not in the archive: the engine holds it.
    assert manifest[0]["Layers"] == [f"{'b' * 64}/layer.tar", f"{a.layer.diff_id[7:]}/layer.tar"]
    assert names == sorted(
        [f"{a.image_id[7:]}.json", f"{b.image_id[7:]}.json", "manifest.json",
         a.layer.diff_id[7:], f"{a.layer.diff_id[7:]}/layer.tar", b.layer.diff_id[7:], f"{b.layer.diff_id[7:]}/layer.tar"]
    )
    assert chunk_archive([a, b]) == chunk_archive([b, a])


def member_line(name: str, status: str) -> str:
    verdict = json.dumps({"status": status})
    return "CHROMADB_LAMBDA_CHUNK_MEMBER " + json.dumps(
        {"name": name, "exit_code": 0, "stdout": f"CHROMADB_LAMBDA_IMPORT_CHECK {verdict}\n", "stderr": ""}
    )


def run_chunk(
    lookups: dict,
    assembled: dict,
    load_stdout: str = "",
    load_exit: int = 0,
    proofs: dict | None = None,
    check: bool = False,
    tag_exit: int = 0,
):
    """The chunk rule; returns its result, its chunk_load.py processes, the ChunkProofRequests it made,
    and the archives it wrote (each: the members' key tags in its manifest, and its images' ids).
    In `prove` mode the members of `proofs` are checked (a verdict `ok` for a `passed` proof, else
    `raised`) and chunk_load.py tags the `ok` ones and those not checked, as the script does; its
    `load` and `tag` print `load_stdout`."""
    processes: list[Process] = []
    proof_requests: list[ChunkProofRequest] = []
    archives: list[tuple[list[str], list[str]]] = []
    proofs = proofs or {}

    def plan(request: ChunkCheckPlanRequest) -> ChunkCheckPlan:
        checked = tuple(m for m in request.members if m.address in proofs)
        return ChunkCheckPlan((ChunkCheckBundle("sha256:base", "/var/task", checked, b""),) if checked else ())

    def load(process: Process) -> FallibleProcessResult:
        processes.append(process)
        spec = json.loads(process.argv[3])
        if spec["mode"] == "prove":
            checks, ok = [], set()
            for entry in spec["checks"]:
                lines = []
                for i, key_ref in enumerate(entry["members"]):
                    passed = next(p for m, p in proofs.items() if f":ck-{m.target_name}" in key_ref).verdict == "passed"
                    lines.append(member_line(str(i), "ok" if passed else "raised"))
                    ok |= {key_ref} if passed else set()
                checks.append({"exit_code": 0, "stdout": "\n".join(lines) + "\n", "stderr": ""})
            checked = {k for entry in spec["checks"] for k in entry["members"]}
            tagged = {
                i["key_ref"]: {"image_id": i["image_id"], "made": True, "error": None}
                for i in spec["images"] if i["key_ref"] in ok or i["key_ref"] not in checked
            }
            report = {"checks": checks, "load_exit": load_exit} if load_exit else {"checks": checks, "tagged": tagged}
            return process_result(json.dumps(report), load_exit, stderr="Error processing tar file")
        exit_code = tag_exit if spec["mode"] == "tag" else load_exit
        return process_result(load_stdout, exit_code, stderr="Error processing tar file")

    def prove(request: ChunkProofRequest) -> ChunkProof:
        proof_requests.append(request)
        return ChunkProof(FrozenDict({m.address: proofs[m.address] for m in request.members if m.address in request.outputs}))

    def create(request: CreateDigest) -> Digest:
        for file in request:
            if file.path == "lambda-images.tar":
                with tarfile.open(fileobj=io.BytesIO(file.content)) as tar:
                    manifest = json.load(tar.extractfile("manifest.json"))
                archives.append(
                    (
                        sorted(tag for m in manifest for tag in m["RepoTags"] if ":ck-" in tag),
                        sorted("sha256:" + m["Config"][: -len(".json")] for m in manifest),
                    )
                )
        return EMPTY_DIGEST

    result = run_rule_with_mocks(
        chunk_images,
        rule_args=[ChunkImagesRequest((A, B, C)), DOCKER, DOCKER_ENV, lambda_subsystem(check_handler_import=check)],
        mock_gets=[
            MockGet(MemberLookup, (MemberLookupRequest,), lambda r: lookups[r.address]),
            MockGet(EngineRun, (EngineRunRequest,), lambda _: THIS_RUN),
            MockGet(AssembledMemberResult, (MemberLookupRequest,), lambda r: assembled[r.address]),
            MockGet(ChunkCheckPlan, (ChunkCheckPlanRequest,), plan),
            MockGet(ChunkProof, (ChunkProofRequest,), prove),
            MockGet(Digest, (CreateDigest,), create),
            MockGet(FallibleProcessResult, (Process,), load),
        ],
    )
    if not check:
        assert proof_requests == []
    return result, processes, proof_requests, archives


def modes(processes: list[Process]) -> list[tuple[str, list[str], list[str]]]:
    """Each chunk_load.py process: its mode, the key tags it loads or tags, the key tags it discards."""
    specs = [json.loads(p.argv[3]) for p in processes]
    return [(s["mode"], [i["key_ref"] for i in s["images"]], [d["key_ref"] for d in s["discard"]]) for s in specs]


def test_all_present_loads_nothing() -> None:
    lookups = {a: MemberLookup(ExistingImage(f"sha256:{a.target_name}")) for a in (A, B, C)}
    result, processes, _, _ = run_chunk(lookups, {})
    assert result == ChunkImages(
        FrozenDict({A: ChunkImage("sha256:a", import_check="checked before load"),
                    B: ChunkImage("sha256:b", import_check="checked before load"),
                    C: ChunkImage("sha256:c", import_check="checked before load")})
    )
    assert processes == []


def test_present_members_trigger_no_check_and_a_pulled_one_is_left_to_its_docker_run() -> None:
    lookups = {A: MemberLookup(ExistingImage("sha256:a")), B: MemberLookup(ExistingImage("sha256:b")),
               C: MemberLookup(ExistingImage("sha256:c", pulled_from="registry.example/acme/c:ck-c"))}
    result, processes, proof_requests, _ = run_chunk(lookups, {}, check=True)
    assert (processes, proof_requests) == ([], [])
    assert [result.images[a].import_check for a in (A, B, C)] == ["checked before load", "checked before load", None]


def test_one_edited_member_is_checked_while_its_untagged_image_loads_then_tagged_by_one_process() -> None:
    b = member(B, "x = 2\n")
    lookups = {A: MemberLookup(ExistingImage("sha256:a")), B: MemberLookup(ExistingImage(None, run=RUN)),
               C: MemberLookup(ExistingImage("sha256:c"))}
    report = {b.key_ref: {"image_id": b.image_id, "made": True, "error": None}}
    result, processes, proof_requests, archives = run_chunk(
        lookups, {B: AssembledMemberResult(b, None)}, json.dumps(report), proofs={B: MemberProof("passed")}, check=True
    )
    assert [[m.address for m in r.members] for r in proof_requests] == [[B]]
    # The classification got B's output from the one process's report.
    assert [sorted(r.outputs) for r in proof_requests] == [[B]]
    assert proof_requests[0].outputs[B].exit_code == 0
    # The archive carries no tag: nothing is tagged before the proof.
    assert archives == [([], [b.image_id])]
    # One process: the load, the check of B in the prover of its base, the tagging of B.
    assert modes(processes) == [("prove", ["acme/b:ck-b"], [])]
    spec = json.loads(processes[0].argv[3])
    assert [(c["base_image_id"], c["bundle"], c["members"]) for c in spec["checks"]] == [
        ("sha256:base", "import-check-bundle-0.tar", ["acme/b:ck-b"])
    ]
    assert processes[0].argv[-3:] == ("load", "--input", "lambda-images.tar")
    assert processes[0].description == (
        "Importing 1 chromadb_lambda handlers in their images (a prover of sha256:base) while loading 1 "
        "assembled images, then tagging those that pass"
    )
    assert [p.env["__CHROMADB_LAMBDA_RUN"] for p in processes] == ["7"]
    assert result.images[B] == ChunkImage(b.image_id, made=True, import_check="passed")


def test_a_member_failing_its_check_is_never_tagged_and_its_image_is_discarded() -> None:
    a, b, c = member(A, "x = 1\n"), member(B, "x = 2\n"), member(C, "x = 3\n")
    lookups = {address: MemberLookup(ExistingImage(None, run=RUN)) for address in (A, B, C)}
    report = {m.key_ref: {"image_id": m.image_id, "made": True, "error": None} for m in (a, c)}
    failure = "The image of lambdas/b:b does not import its handler `b.handle`: ..."
    result, processes, proof_requests, archives = run_chunk(
        lookups,
        {m.address: AssembledMemberResult(m, None) for m in (a, b, c)},
        json.dumps(report),
        # C was not checkable in its base's container: tagged, left to a `docker run` of its image.
        proofs={A: MemberProof("warning: KeyError: 'TABLE'"), B: MemberProof(None, failure)},
        check=True,
    )
    assert [[m.address for m in r.members] for r in proof_requests] == [[A, B, C]]
    assert archives == [([], sorted([a.image_id, b.image_id, c.image_id]))]
    # A (a warning: its verdict is not `ok`) and B (failing) stay untagged in the first process, C
    # (not checked) is tagged there; the second tags A and removes B's untagged image.
    assert modes(processes) == [
        ("prove", ["acme/a:ck-a", "acme/b:ck-b", "acme/c:ck-c"], []),
        ("tag", ["acme/a:ck-a"], ["acme/b:ck-b"]),
    ]
    assert json.loads(processes[0].argv[3])["checks"][0]["members"] == ["acme/a:ck-a", "acme/b:ck-b"]
    assert processes[1].input_digest == EMPTY_DIGEST and "load" not in processes[1].argv[4:]
    assert result.images[A] == ChunkImage(a.image_id, made=True, import_check="warning: KeyError: 'TABLE'")
    assert result.images[B] == ChunkImage(None, error=failure, check_failed=True)
    assert result.images[C] == ChunkImage(c.image_id, made=True, import_check=None)


def test_every_member_failing_its_check_tags_nothing() -> None:
    b = member(B, "x = 2\n")
    lookups = {A: MemberLookup(ExistingImage("sha256:a")), B: MemberLookup(ExistingImage(None, run=RUN)),
               C: MemberLookup(ExistingImage("sha256:c"))}
    result, processes, _, _ = run_chunk(
        lookups, {B: AssembledMemberResult(b, None)}, "{}", proofs={B: MemberProof(None, "lambdas/b:b fails")}, check=True
    )
    assert modes(processes) == [("prove", ["acme/b:ck-b"], []), ("tag", [], ["acme/b:ck-b"])]
    assert result.images[B] == ChunkImage(None, error="lambdas/b:b fails", check_failed=True)


def test_a_failed_untagged_load_fails_the_passing_members_and_keeps_the_check_failures() -> None:
    a, b = member(A, "x = 1\n"), member(B, "x = 2\n")
    lookups = {A: MemberLookup(ExistingImage(None, run=RUN)), B: MemberLookup(ExistingImage(None, run=RUN)),
               C: MemberLookup(ExistingImage("sha256:c"))}
    result, processes, _, _ = run_chunk(
        lookups, {A: AssembledMemberResult(a, None), B: AssembledMemberResult(b, None)}, load_exit=1,
        proofs={A: MemberProof("passed"), B: MemberProof(None, "lambdas/b:b fails")}, check=True,
    )
    assert [m[0] for m in modes(processes)] == ["prove"]
    assert result.images[A].image_id is None
    assert "`docker load` of the 2 images assembled for a chunk of Lambdas failed (exit code 1)" in str(result.images[A].error)
    assert result.images[B] == ChunkImage(None, error="lambdas/b:b fails", check_failed=True)


def test_a_failed_tagging_is_every_passing_member_error() -> None:
    # A only warns: it is tagged by the second process, which fails.
    a = member(A, "x = 1\n")
    lookups = {A: MemberLookup(ExistingImage(None, run=RUN)), B: MemberLookup(ExistingImage("sha256:b")),
               C: MemberLookup(ExistingImage("sha256:c"))}
    result, processes, _, _ = run_chunk(
        lookups, {A: AssembledMemberResult(a, None)}, proofs={A: MemberProof("warning: KeyError: 'T'")}, check=True,
        tag_exit=1,
    )
    assert [m[0] for m in modes(processes)] == ["prove", "tag"]
    assert result.images[A].image_id is None and "failed (exit code 1)" in str(result.images[A].error)


def test_a_failed_prove_process_is_every_passing_member_error() -> None:
    # The process of the check, load and tagging exits 1 with no report (e.g. a lock error).
    a = member(A, "x = 1\n")
    lookups = {A: MemberLookup(ExistingImage(None, run=RUN)), B: MemberLookup(ExistingImage("sha256:b")),
               C: MemberLookup(ExistingImage("sha256:c"))}
    result, processes, proof_requests, _ = run_chunk(
        lookups, {A: AssembledMemberResult(a, None)}, proofs={A: MemberProof("passed")}, check=True, load_exit=1,
    )
    assert [m[0] for m in modes(processes)] == ["prove"]
    assert result.images[A].image_id is None and "failed (exit code 1)" in str(result.images[A].error)


def test_missing_members_are_loaded_by_one_process_and_a_broken_one_is_its_own_error() -> None:
    b, c = member(B, "x = 2\n"), member(C, "x = 3\n")
    lookups = {
        A: MemberLookup(ExistingImage("sha256:a")),
        B: MemberLookup(ExistingImage(None, run=RUN)),
        C: MemberLookup(ExistingImage(None, run=RUN)),
    }
    report = {
        b.key_ref: {"image_id": b.image_id, "made": True, "error": None},
        c.key_ref: {"image_id": "sha256:wrong", "made": True, "error": "the engine reports the image sha256:wrong"},
    }
    result, processes, _, _ = run_chunk(
        lookups, {B: AssembledMemberResult(b, None), C: AssembledMemberResult(c, None)}, json.dumps(report)
    )
    [process] = processes
    assert modes(processes) == [("load", ["acme/b:ck-b", "acme/c:ck-c"], [])]
    assert process.argv[-3:] == ("/usr/bin/docker", "load", "--input", "lambda-images.tar")[-3:]
    # Pants' interpreter without `site` (the scripts need the standard library only), then the script.
    assert process.argv[:3] == (sys.executable, "-S", "__chromadb_lambda_chunk_load/chunk_load.py")
    spec = json.loads(process.argv[3])
    assert [i["key_ref"] for i in spec["images"]] == ["acme/b:ck-b", "acme/c:ck-c"]
    assert process.env["__CHROMADB_LAMBDA_RUN"] == "7"
    assert process.cache_scope == ProcessCacheScope.PER_RESTART_SUCCESSFUL
    assert result.images[A] == ChunkImage("sha256:a", import_check="checked before load")
    assert result.images[B] == ChunkImage(b.image_id, made=True)
    assert result.images[C].image_id is None
    assert "The engine reports the image sha256:wrong for acme/c:ck-c (lambdas/c:c)" in str(result.images[C].error)


def test_members_with_nothing_to_find_are_loaded_in_this_run() -> None:
    # Their lookups answered from HeldRefs (no ExistingImage step, so no run of it): the chunk asks
    # for the run itself.
    b = member(B, "x = 2\n")
    lookups = {A: MemberLookup(ExistingImage("sha256:a")), B: MemberLookup(ExistingImage(None)),
               C: MemberLookup(ExistingImage("sha256:c"))}
    report = {b.key_ref: {"image_id": b.image_id, "made": True, "error": None}}
    result, processes, _, _ = run_chunk(lookups, {B: AssembledMemberResult(b, None)}, json.dumps(report))
    [process] = processes
    assert process.env["__CHROMADB_LAMBDA_RUN"] == "9"
    assert result.images[B] == ChunkImage(b.image_id, made=True)


LOOKUP_NAMES = ImageNames(repository="acme/a", refs=("acme/a:latest",), key_ref="acme/a:ck-a", registries=())


@pytest.mark.parametrize(
    "held, pull, step_asked, existing",
    [
        # Up to date, or nothing under the key tag and nowhere to pull from: told from HeldRefs.
        ({"acme/a:ck-a": "sha256:a", "acme/a:latest": "sha256:a"}, False, False, ExistingImage("sha256:a")),
        ({}, False, False, ExistingImage(None)),
        # Tags to move, or registries to look in: the ExistingImage step's answer.
        ({"acme/a:ck-a": "sha256:a", "acme/a:latest": "sha256:old"}, False, True, ExistingImage("sha256:step", run=RUN)),
        ({}, True, True, ExistingImage("sha256:step", run=RUN)),
    ],
)
def test_a_member_lookup_asks_the_existing_image_step_only_when_held_refs_cannot_tell(
    held: dict[str, str], pull: bool, step_asked: bool, existing: ExistingImage
) -> None:
    asked: list[ExistingImageRequest] = []

    def step(request: ExistingImageRequest) -> ExistingImage:
        asked.append(request)
        return ExistingImage("sha256:step", run=RUN)

    result = run_rule_with_mocks(
        look_up_member,
        rule_args=[MemberLookupRequest(A), lambda_subsystem(pull_from_registries=pull)],
        mock_gets=[
            MockGet(ImageNames, (LambdaImageNamesRequest,), lambda _: LOOKUP_NAMES),
            MockGet(HeldRefs, (HeldRefsRequest,), lambda r: HeldRefs(FrozenDict((k, held[k]) for k in r.refs if k in held))),
            MockGet(ExistingImage, (ExistingImageRequest,), step),
        ],
    )
    assert result == MemberLookup(existing)
    assert asked == ([ExistingImageRequest(A, LOOKUP_NAMES)] if step_asked else [])


def test_a_member_that_cannot_be_looked_up_or_assembled_fails_alone() -> None:
    b = member(B, "x = 2\n")
    lookups = {
        A: MemberLookup(None, "ResolveError: lambdas/a:a has no handler"),
        B: MemberLookup(ExistingImage(None, run=RUN)),
        C: MemberLookup(ExistingImage(None, run=RUN)),
    }
    assembled = {B: AssembledMemberResult(b, None), C: AssembledMemberResult(None, "UnassemblableBaseError: ONBUILD")}
    report = {b.key_ref: {"image_id": b.image_id, "made": True, "error": None}}
    result, processes, _, _ = run_chunk(lookups, assembled, json.dumps(report))
    assert len(processes) == 1 and json.loads(processes[0].argv[3])["images"][0]["key_ref"] == "acme/b:ck-b"
    assert result.images == FrozenDict(
        {
            A: ChunkImage(None, error="ResolveError: lambdas/a:a has no handler"),
            B: ChunkImage(b.image_id, made=True),
            C: ChunkImage(None, error="UnassemblableBaseError: ONBUILD"),
        }
    )


def test_a_failed_load_is_every_loaded_member_error() -> None:
    b, c = member(B, "x = 2\n"), member(C, "x = 3\n")
    lookups = {A: MemberLookup(ExistingImage("sha256:a")), B: MemberLookup(ExistingImage(None, run=RUN)),
               C: MemberLookup(ExistingImage(None, run=RUN))}
    result, _, _, _ = run_chunk(lookups, {B: AssembledMemberResult(b, None), C: AssembledMemberResult(c, None)}, load_exit=1)
    assert result.images[A] == ChunkImage("sha256:a", import_check="checked before load")
    for address in (B, C):
        assert result.images[address].image_id is None
        assert "`docker load` of the 2 images assembled for a chunk of Lambdas failed (exit code 1)" in str(
            result.images[address].error
        )
        assert "Error processing tar file" in str(result.images[address].error)
