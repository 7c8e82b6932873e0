"""Each branch of `pants publish` of a chromadb_lambda, with the push process mocked: pushed, already
published, a partial failure, no registry, `skip_push`, the base pushed first when asked, and the
preflight of a target with `functions` (refused before any push, or warned and pushed)."""
from __future__ import annotations

import dataclasses
import json
import logging

from pants.backend.docker.package_types import BuiltDockerImage
from pants.core.goals.package import BuiltPackage, EnvironmentAwarePackageRequest
from pants.core.goals.publish import PublishPackages
from pants.core.util_rules.distdir import DistDir
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import EMPTY_DIGEST, CreateDigest, Digest, DigestContents, FileContent
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.target import AllUnexpandedTargets, WrappedTarget, WrappedTargetRequest
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks

from chromadb_lambda.goals.deploy import LambdaDeploySubsystem
from chromadb_lambda.goals.publish import ChromadbLambdaPublishFieldSet, PublishChromadbLambdaRequest, publish_chromadb_lambda
from chromadb_lambda.testutil import (
    BASE,
    BASE_IDENTITY,
    BASE_NAMES,
    DOCKER,
    DOCKER_ENV,
    KEY,
    KEY_TAG,
    LAMBDA,
    NAMES,
    REGISTRY,
    fail_if_requested,
    lambda_subsystem,
    lambda_target,
    process_result,
)
from chromadb_lambda.util_rules.assembled_push import AssembledPush, AssembledPushRequest
from chromadb_lambda.util_rules.content_keys import LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.function_check import (
    FunctionCheck,
    FunctionConfiguration,
    FunctionConfigurations,
    FunctionConfigurationsRequest,
)
from chromadb_lambda.util_rules.image_names import BaseImageNamesRequest, ImageNames, LambdaImageNamesRequest
from chromadb_lambda.util_rules.push import BaseImagePush, BaseImagePushRequest, PublishSession, PublishSessionRequest

TAGS = ("acme/fn:latest", f"acme/fn:{KEY_TAG}")
IMAGE = BuiltDockerImage(image_id="sha256:img", tags=TAGS, relpath="lambdas.fn/fn.docker-info.json")
SESSION = PublishSession("9-abc")
MIRROR = dataclasses.replace(REGISTRY, address="mirror.example.com", alias="mirror")
BASE_ID = "sha256:" + "b" * 64
ASSEMBLED_FILES = (FileContent("assembled/config.json", b"{}"), FileContent("assembled/layer.tar.gz", b"gz"))


# The push process's scripts, beside its spec (sorted as the digest lists them).
SCRIPTS = [
    "deploy_manifest.py", "registry_api.py", "registry_auth.py", "registry_client.py", "registry_docker.py",
    "registry_pull.py", "registry_push.py",
]


def pushed(address: str, status: str = "pushed") -> dict:
    return {"address": address, "name": f"{address}/acme/fn", "image": f"{address}/acme/fn@sha256:d1", "digest": "sha256:d1" + "0" * 62,
            "tags": [], "status": status, "media_type": "application/vnd.docker.distribution.manifest.v2+json"}


def publish(
    names: ImageNames = NAMES, outcome: dict | None = None, *, skip_push: bool = False, base: bool = False,
    assembled: bool = False, built: bool = True, functions: tuple[FunctionConfiguration, ...] | None = None,
    check: FunctionCheck = FunctionCheck.warn, architecture: str = "x86_64",
):
    seen: dict = {"specs": [], "bases": [], "inputs": [], "preflights": []}
    fields = {"functions": [c.function for c in functions], "architecture": architecture} if functions else {}
    target = lambda_target(skip_push=skip_push, **fields)

    def preflight(request: FunctionConfigurationsRequest) -> FunctionConfigurations:
        seen["preflights"].append(request)
        return FunctionConfigurations(functions or ())

    def run(process: Process) -> FallibleProcessResult:
        seen["specs"].append(process)
        return process_result(json.dumps(outcome))

    def create(request: CreateDigest) -> Digest:
        seen["inputs"].append(sorted(f.path for f in request))  # type: ignore[union-attr]
        for f in request:
            if f.path == "spec.json":  # type: ignore[union-attr]
                seen["spec"] = json.loads(f.content)  # type: ignore[union-attr]
        return EMPTY_DIGEST

    info = json.dumps({"image_id": IMAGE.image_id, "built": built}).encode()

    def assembled_push(request: AssembledPushRequest) -> AssembledPush:
        seen["assembled"] = request
        if not assembled:
            return AssembledPush(None, "", "")
        return AssembledPush(ASSEMBLED_FILES, BASE_ID, "sha256:config", "sha256:layer")

    def push_base(request: BaseImagePushRequest) -> BaseImagePush:
        seen["bases"].append(request)
        return BaseImagePush(("reg.example.com",))

    result = run_rule_with_mocks(
        publish_chromadb_lambda,
        rule_args=[
            PublishChromadbLambdaRequest(ChromadbLambdaPublishFieldSet.create(target), ()),
            DOCKER,
            DOCKER_ENV,
            lambda_subsystem(publish_base_images=base),
            create_subsystem(LambdaDeploySubsystem, dry_run=False, max_concurrency=8, function_check=check),
            DistDir(relpath="dist"),  # type: ignore[arg-type]
        ],
        mock_gets=[
            MockGet(PublishSession, (PublishSessionRequest,), lambda _: SESSION),
            MockGet(WrappedTarget, (WrappedTargetRequest,), lambda _: WrappedTarget(target)),
            MockGet(BuiltPackage, (EnvironmentAwarePackageRequest,), lambda _: BuiltPackage(EMPTY_DIGEST, (IMAGE,))),
            MockGet(LambdaImageKey, (LambdaImageKeyRequest,), lambda _: KEY),
            MockGet(ImageNames, (LambdaImageNamesRequest,), lambda _: names),
            MockGet(BaseImagePush, (BaseImagePushRequest,), push_base),
            MockGet(DigestContents, (Digest,), lambda _: DigestContents([FileContent(IMAGE.relpath, info)])),
            MockGet(ImageNames, (BaseImageNamesRequest,), lambda _: BASE_NAMES),
            MockGet(AssembledPush, (AssembledPushRequest,), assembled_push),
            MockGet(EnvironmentVars, (EnvironmentVarsRequest,), lambda _: EnvironmentVars({})),
            MockGet(Digest, (CreateDigest,), create),
            MockGet(FallibleProcessResult, (Process,), run if outcome is not None else fail_if_requested("a push")),
            MockGet(AllUnexpandedTargets, (), lambda: AllUnexpandedTargets([target])),
            MockGet(FunctionConfigurations, (FunctionConfigurationsRequest,), preflight),
        ],
    )
    return list(result), seen


def test_push_reports_every_registry_ref_and_runs_the_report() -> None:
    outcome = {"registries": [pushed("reg.example.com")], "errors": [], "content_key": KEY.key, "key_tag": KEY_TAG}
    [packages], seen = publish(outcome=outcome)
    assert packages.names == ("reg.example.com/acme/fn:latest", f"reg.example.com/acme/fn:{KEY_TAG}")
    assert packages.description == "reg.example.com (sha256:d10000000000)"
    spec = seen["spec"]
    assert (spec["session"], spec["image_id"], spec["content_key"], spec["key_tag"]) == ("9-abc", "sha256:img", KEY.key, KEY_TAG)
    assert spec["registries"] == [{"address": "reg.example.com", "repository": "acme/fn", "tags": ["latest", KEY_TAG], "ecr": None}]
    argv = packages.process.process.argv  # type: ignore[union-attr]
    assert argv[3:7] == ("report", "dist/deploy-manifest.json", "9-abc", "lambdas/fn:fn")
    assert json.loads(argv[7]) == outcome and argv[8:] == ("--existing", "lambdas/fn:fn")
    assert seen["bases"] == []


def test_already_published_says_so() -> None:
    outcome = {"registries": [pushed("reg.example.com", "already published")], "errors": []}
    [packages], _ = publish(outcome=outcome)
    assert packages.description == "reg.example.com (already published)"


def test_partial_failure_reports_what_was_pushed_and_hands_the_error_to_the_report() -> None:
    names = dataclasses.replace(NAMES, registries=(REGISTRY, MIRROR))
    outcome = {"registries": [pushed("reg.example.com")], "errors": [{"address": "mirror.example.com", "error": "denied"}]}
    [packages], seen = publish(names, outcome)
    assert [r["address"] for r in seen["spec"]["registries"]] == ["reg.example.com", "mirror.example.com"]
    assert packages.description == "reg.example.com (sha256:d10000000000)"
    # The report exits non-zero for the errors it is given: that is how the goal lists the failure.
    assert json.loads(packages.process.process.argv[7])["errors"] == [{"address": "mirror.example.com", "error": "denied"}]  # type: ignore[union-attr]


def test_no_registry_publishes_nothing() -> None:
    [packages], _ = publish(dataclasses.replace(NAMES, registries=()))
    assert packages == PublishPackages(
        names=TAGS,
        description="(no registry: give the target `registries`, or mark one `default` in `[docker].registries`)",
    )


def test_skip_push_on_the_target_or_a_registry() -> None:
    [packages], _ = publish(skip_push=True)
    assert packages == PublishPackages(names=REGISTRY.refs, description="(by `skip_push` on lambdas/fn:fn)")
    skipped_mirror = dataclasses.replace(MIRROR, skip_push=True)
    outcome = {"registries": [pushed("reg.example.com")], "errors": []}
    pushed_packages, skipped = publish(dataclasses.replace(NAMES, registries=(REGISTRY, skipped_mirror)), outcome)[0]
    assert pushed_packages.names == REGISTRY.refs
    assert skipped == PublishPackages(names=skipped_mirror.refs, description="(by `skip_push` on registry mirror)")


def test_the_base_is_pushed_first_with_publish_base_images() -> None:
    outcome = {"registries": [pushed("reg.example.com")], "errors": []}
    _, seen = publish(outcome=outcome, base=True)
    assert seen["bases"] == [BaseImagePushRequest(BASE, SESSION)]


def test_an_assembled_image_goes_over_the_registry_api_after_its_base() -> None:
    outcome = {"registries": [pushed("reg.example.com")], "errors": []}
    _, seen = publish(outcome=outcome, assembled=True)
    # The files of the package's image (checked by its id) and the base it was assembled on.
    assert seen["assembled"] == AssembledPushRequest(KEY.closure, "sha256:img", BASE_NAMES.key_ref, True)
    # The base's content key tag goes first into the Lambda's registry, under the base's repository.
    [base_push] = seen["bases"]
    assert base_push.address == BASE and base_push.session == SESSION
    assert [(t.address, t.repository, t.tags, t.skip_push) for t in base_push.targets] == [
        ("reg.example.com", "acme/base", (BASE_IDENTITY.ref.rpartition(":")[2],), False)
    ]
    assert seen["spec"]["assembled"] == {
        "config": "assembled/config.json",
        "layer": "assembled/layer.tar.gz",
        "base_image_id": BASE_ID,
        "base_repository": "acme/base",
        "base_tag": BASE_IDENTITY.ref.rpartition(":")[2],
    }
    # The blobs go into the push process beside its scripts and spec.
    assert seen["inputs"] == [
        ["assembled/config.json", "assembled/layer.tar.gz", *SCRIPTS, "spec.json"]
    ]


def test_an_image_the_assembler_did_not_make_is_pushed_by_the_engine() -> None:
    outcome = {"registries": [pushed("reg.example.com")], "errors": []}
    _, seen = publish(outcome=outcome, built=False)
    # The package did not make the image in this run: whether the engine holds its base is asked.
    assert seen["assembled"] == AssembledPushRequest(KEY.closure, "sha256:img", BASE_NAMES.key_ref, False)
    assert "assembled" not in seen["spec"] and seen["bases"] == []
    assert seen["inputs"] == [[*SCRIPTS, "spec.json"]]


ARM = FunctionConfiguration("fn-arm", architectures=("arm64",), package_type="Image")
X86 = FunctionConfiguration("fn-x86", architectures=("x86_64",), package_type="Image")
DENIED = FunctionConfiguration("fn-x86", error_code="AccessDeniedException", error="not authorized")
PUSHED = {"registries": [pushed("reg.example.com")], "errors": []}


def test_a_function_of_another_architecture_refuses_the_target_before_any_push() -> None:
    # No push mock (`outcome=None`: a push process fails the test), and the base would be pushed first.
    [packages], seen = publish(functions=(ARM,), base=True)
    assert packages.names == REGISTRY.refs
    assert packages.description == "(refused before the push: see above)"
    assert packages.process.process.argv[3] == (  # type: ignore[union-attr]
        "lambdas/fn:fn is not published: its `architecture` field is 'x86_64', and the function fn-arm runs on "
        "arm64, so it could not run this image. Set `architecture=\"arm64\"` on lambdas/fn:fn (its base image "
        "must be arm64 too), or change the architecture in the configuration of fn-arm. Nothing was pushed."
    )
    assert seen["bases"] == [] and seen["specs"] == [] and "assembled" not in seen
    assert seen["preflights"] == [FunctionConfigurationsRequest(LAMBDA, ("fn-arm",), SESSION)]


def test_matching_functions_publish_as_without_them() -> None:
    [packages], seen = publish(outcome=PUSHED, functions=(ARM,), architecture="arm64")
    assert packages.description == "reg.example.com (sha256:d10000000000)"
    assert len(seen["specs"]) == 1


def test_an_unreadable_function_warns_and_publishes_by_default(caplog) -> None:
    [packages], seen = publish(outcome=PUSHED, functions=(DENIED,))
    assert packages.description == "reg.example.com (sha256:d10000000000)"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "lambdas/fn:fn: publishing without comparing the `architecture` field ('x86_64') with the function fn-x86, "
        "whose configuration could not be read: access denied for `lambda:GetFunctionConfiguration` on fn-x86: "
        "grant it to the identity that runs `pants publish`. `[lambda-deploy].function_check = \"off\"` "
        "publishes without reading functions; \"strict\" refuses instead."
    ]


def test_strict_refuses_an_unreadable_function() -> None:
    [packages], seen = publish(functions=(DENIED,), check=FunctionCheck.strict)
    assert packages.process.process.argv[3] == (  # type: ignore[union-attr]
        "lambdas/fn:fn is not published: `[lambda-deploy].function_check` is \"strict\", and the configuration of "
        "the function fn-x86 could not be read: access denied for `lambda:GetFunctionConfiguration` on fn-x86: "
        "grant it to the identity that runs `pants publish`. Nothing was pushed."
    )
    assert seen["specs"] == []


def test_off_reads_no_function() -> None:
    [packages], seen = publish(outcome=PUSHED, functions=(ARM,), check=FunctionCheck.off)
    assert seen["preflights"] == [] and len(seen["specs"]) == 1
