"""The base image: found (engine or registry) and not built, or built under the lock of its key tag
with the tags `pants package` of the base would give it."""
from __future__ import annotations

import json

from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.target_types import DockerImageTarget
from pants.backend.docker.util_rules.docker_build_args import DockerBuildArgs
from pants.backend.docker.util_rules.docker_build_context import DockerBuildContext, DockerBuildContextRequest
from pants.backend.docker.util_rules.docker_build_env import DockerBuildEnvironment
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.value_interpolation import InterpolationContext

from chromadb_lambda.testutil import (
    BASE,
    BASE_IDENTITY,
    BASE_NAMES,
    DOCKER,
    DOCKER_ENV,
    fail_if_requested,
    lambda_subsystem,
    process_result,
)
from chromadb_lambda.util_rules.base_image import BuiltBaseImage, BuiltBaseImageRequest, build_base_image
from chromadb_lambda.util_rules.content_keys import BaseImageIdentity, BaseImageIdentityRequest
from chromadb_lambda.util_rules.engine import EngineImages, EngineImagesRequest, EngineRun
from chromadb_lambda.util_rules.engine_locks import EngineLockScript, EngineLockScriptRequest
from chromadb_lambda.util_rules.existing_image import ExistingImage, ExistingImageRequest
from chromadb_lambda.util_rules.image_names import BaseImageNamesRequest, ImageNames

RUN = EngineRun(8)
TARGET = DockerImageTarget({"source": "Dockerfile", "repository": "acme/base", "image_tags": ["{build_args.X}"]}, BASE)
CONTEXT = DockerBuildContext(
    build_args=DockerBuildArgs(("X=1",)),
    digest=EMPTY_DIGEST,
    build_env=DockerBuildEnvironment.create({}),
    upstream_image_ids=("sha256:upstream",),
    dockerfile="base/Dockerfile",
    interpolation_context=InterpolationContext.from_dict({"build_args": {"X": "1"}}),
    copy_source_vs_context_source=(),
    stages=(),
)


def build(existing: ExistingImage, build_stdout: str = ""):
    processes: list[Process] = []

    def run(process: Process) -> FallibleProcessResult:
        processes.append(process)
        return process_result(build_stdout)

    docker_options = create_subsystem(
        DockerOptions, default_repository="{name}", registries={}, build_target_stage=None, default_context_root=""
    )
    result = run_rule_with_mocks(
        build_base_image,
        rule_args=[BuiltBaseImageRequest(BASE), DOCKER, docker_options, DOCKER_ENV, lambda_subsystem()],
        mock_gets=[
            MockGet(WrappedTarget, (WrappedTargetRequest,), lambda _: WrappedTarget(TARGET)),
            MockGet(BaseImageIdentity, (BaseImageIdentityRequest,), lambda _: BASE_IDENTITY),
            MockGet(ImageNames, (BaseImageNamesRequest,), lambda _: BASE_NAMES),
            MockGet(ExistingImage, (ExistingImageRequest,), lambda _: existing),
            MockGet(EngineImages, (EngineImagesRequest,), fail_if_requested("EngineImages")),
            MockGet(DockerBuildContext, (DockerBuildContextRequest,), lambda _: CONTEXT),
            MockGet(EngineLockScript, (EngineLockScriptRequest,), lambda _: EngineLockScript(EMPTY_DIGEST)),
            MockGet(FallibleProcessResult, (Process,), run),
        ],
    )
    return result, processes


def test_found_in_the_engine_or_a_registry_is_not_built() -> None:
    result, processes = build(ExistingImage("sha256:base"))
    assert result == BuiltBaseImage(identity=BASE_IDENTITY, image_id="sha256:base", ref=BASE_IDENTITY.ref, built=False)
    assert processes == []
    pulled, _ = build(ExistingImage("sha256:pulled", run=RUN, pulled_from="reg/acme/base:ck-x"))
    assert pulled.image_id == "sha256:pulled" and pulled.built is False


def test_built_with_its_own_tags_and_its_key_tag_under_the_lock() -> None:
    result, [process] = build(
        ExistingImage(None, run=RUN), json.dumps({"image_id": "sha256:new", "made": True, "output": None})
    )
    assert result == BuiltBaseImage(identity=BASE_IDENTITY, image_id="sha256:new", ref=BASE_IDENTITY.ref, built=True)
    lock = json.loads(process.argv[2])
    assert (lock["key_ref"], lock["refs"]) == (BASE_IDENTITY.ref, ["acme/base:1", BASE_IDENTITY.ref])
    build_argv = process.argv[process.argv.index("--") + 1 :]
    assert build_argv[:2] == ("/usr/bin/docker", "build")
    assert ("--build-arg", "X=1") == build_argv[build_argv.index("--build-arg") : build_argv.index("--build-arg") + 2]
    assert process.env["__UPSTREAM_IMAGE_IDS"] == "sha256:upstream"
    assert process.env["__CHROMADB_LAMBDA_RUN"] == "8"
