"""Making a Lambda image by each builder: the assembler, or a `docker build` under the engine locks."""
from __future__ import annotations

import json

import pytest
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.process import FallibleProcessResult, Process
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks

from chromadb_lambda.testutil import (
    BASE,
    BASE_IDENTITY,
    CLOSURE,
    DOCKER,
    DOCKER_ENV,
    LAMBDA,
    NAMES,
    fail_if_requested,
    lambda_subsystem,
    process_result,
)
from chromadb_lambda.util_rules.architecture import LambdaArchitecture, LambdaArchitectureRequest
from chromadb_lambda.util_rules.assemble import AssembledImageError
from chromadb_lambda.util_rules.chunk_images import ChunkImage, ChunkImages, ChunkImagesRequest
from chromadb_lambda.util_rules.lambda_chunks import LambdaChunk, LambdaChunkRequest
from pants.engine.addresses import Address
from pants.util.frozendict import FrozenDict
from chromadb_lambda.util_rules.base_image import BuiltBaseImage, BuiltBaseImageRequest
from chromadb_lambda.util_rules.context import LambdaBuildContext, LambdaBuildContextRequest
from chromadb_lambda.util_rules.docker_build import DockerBuildError
from chromadb_lambda.util_rules.engine import EngineRun
from chromadb_lambda.util_rules.engine_locks import EngineLockScript, EngineLockScriptRequest
from chromadb_lambda.util_rules.import_check import HandlerImportError
from chromadb_lambda.util_rules.lambda_image import MadeLambdaImage, MadeLambdaImageRequest, make_lambda_image

RUN = EngineRun(3)
BUILT_BASE = BuiltBaseImage(identity=BASE_IDENTITY, image_id="sha256:base", ref=BASE_IDENTITY.ref, built=False)


OTHER = Address("lambdas/other", target_name="other")


def make(
    builder: str, *, build_stdout: str = "", exit_code: int = 0, cache_from=None, own: ChunkImage | None = None,
    architecture: str = "x86_64",
):
    seen: dict = {"processes": [], "assembled": [], "contexts": [], "bases": [], "architectures": []}

    def check_architecture(request: LambdaArchitectureRequest) -> LambdaArchitecture:
        seen["architectures"].append(request)
        return LambdaArchitecture(architecture)

    def base(request: BuiltBaseImageRequest) -> BuiltBaseImage:
        seen["bases"].append(request.address)
        return BUILT_BASE

    def chunk_images(request: ChunkImagesRequest) -> ChunkImages:
        seen["assembled"].append(request)
        images = {
            LAMBDA: own or ChunkImage("sha256:assembled", made=True),
            OTHER: ChunkImage(None, error="Cannot assemble the image of lambdas/other:other"),
        }
        return ChunkImages(FrozenDict((a, images[a]) for a in request.members))

    def context(request: LambdaBuildContextRequest) -> LambdaBuildContext:
        seen["contexts"].append(request)
        return LambdaBuildContext(EMPTY_DIGEST, "Dockerfile")

    def run(process: Process) -> FallibleProcessResult:
        seen["processes"].append(process)
        return process_result(build_stdout, exit_code, stderr="step 2/3 failed")

    result = run_rule_with_mocks(
        make_lambda_image,
        rule_args=[
            MadeLambdaImageRequest(LAMBDA, CLOSURE, NAMES, cache_from, RUN),
            DOCKER,
            DOCKER_ENV,
            lambda_subsystem(builder=builder, cache_from=["reg/{repository}:main"]),
        ],
        mock_gets=[
            MockGet(BuiltBaseImage, (BuiltBaseImageRequest,), base),
            MockGet(LambdaArchitecture, (LambdaArchitectureRequest,), check_architecture),
            MockGet(LambdaChunk, (LambdaChunkRequest,), lambda r: LambdaChunk(tuple(sorted((r.address, OTHER))))),
            MockGet(ChunkImages, (ChunkImagesRequest,), chunk_images),
            MockGet(LambdaBuildContext, (LambdaBuildContextRequest,), context),
            MockGet(EngineLockScript, (EngineLockScriptRequest,), lambda _: EngineLockScript(EMPTY_DIGEST)),
            MockGet(FallibleProcessResult, (Process,), run if builder == "docker-build" else fail_if_requested("a process")),
        ],
    )
    return result, seen


def test_assembler_writes_the_image_on_the_base_it_built() -> None:
    result, seen = make("assembler")
    assert result == MadeLambdaImage("sha256:assembled", made=True)
    assert seen["bases"] == [BASE]
    # The whole chunk is asked for; a broken neighbour (lambdas/other) does not fail this member.
    assert seen["assembled"] == [ChunkImagesRequest(tuple(sorted((LAMBDA, OTHER))))]
    assert seen["contexts"] == []
    # The `architecture` field is checked against the base the image is made on.
    assert seen["architectures"] == [LambdaArchitectureRequest(LAMBDA, "sha256:base")]


def test_assembler_member_error_is_raised_by_that_member_only() -> None:
    with pytest.raises(AssembledImageError, match="^The engine reports the image sha256:x for acme/fn"):
        make("assembler", own=ChunkImage(None, error="The engine reports the image sha256:x for acme/fn:ck-1"))


def test_assembler_member_that_failed_its_check_before_load_raises_the_check_error() -> None:
    failure = "The image of lambdas/fn:fn does not import its handler `fn.handler.handle`: ..."
    with pytest.raises(HandlerImportError) as e:
        make("assembler", own=ChunkImage(None, error=failure, check_failed=True))
    assert str(e.value) == failure


def test_docker_build_builds_from_the_base_key_tag_under_the_locks() -> None:
    result, seen = make("docker-build", build_stdout=json.dumps({"image_id": "sha256:built", "made": True, "output": None}))
    assert result == MadeLambdaImage("sha256:built", made=True)
    assert seen["contexts"] == [LambdaBuildContextRequest(CLOSURE, BASE_IDENTITY.ref)]
    [process] = seen["processes"]
    spec = json.loads(process.argv[2])
    assert (spec["key_ref"], spec["refs"]) == (NAMES.key_ref, ["acme/fn:latest", NAMES.key_ref])
    build = process.argv[process.argv.index("--") + 1 :]
    assert build[:2] == ("/usr/bin/docker", "build")
    # `[lambda-image].cache_from` with the image's repository.
    assert build[build.index("--cache-from") + 1] == "reg/acme/fn:main"
    assert process.env["__CHROMADB_LAMBDA_BASE_IMAGE_ID"] == "sha256:base"
    assert process.env["__CHROMADB_LAMBDA_RUN"] == "3"


def test_docker_build_made_by_a_concurrent_run_is_not_made_here() -> None:
    result, _ = make("docker-build", build_stdout=json.dumps({"image_id": "sha256:other", "made": False, "output": None}))
    assert result == MadeLambdaImage("sha256:other", made=False)


def test_a_target_cache_from_replaces_the_option() -> None:
    _, seen = make(
        "docker-build",
        build_stdout=json.dumps({"image_id": "sha256:b", "made": True, "output": None}),
        cache_from=("mine/{repository}:x",),
    )
    build = seen["processes"][0].argv
    assert build[build.index("--cache-from") + 1] == "mine/acme/fn:x"


def test_a_failed_docker_build_names_the_image_and_target() -> None:
    with pytest.raises(DockerBuildError, match=r"`docker build` of acme/fn:latest for lambdas/fn:fn failed \(exit code 1\)"):
        make("docker-build", exit_code=1)


def test_docker_build_of_arm64_asks_for_the_platform_and_x86_64_keeps_its_arguments() -> None:
    stdout = json.dumps({"image_id": "sha256:b", "made": True, "output": None})
    arm = make("docker-build", build_stdout=stdout, architecture="arm64")[1]["processes"][0].argv
    assert arm[arm.index("--platform") + 1] == "linux/arm64"
    assert "--platform" not in make("docker-build", build_stdout=stdout)[1]["processes"][0].argv
