"""The deploy rule of a chromadb_lambda, with its Gets mocked: the process it hands Pants' deploy
goal, what it publishes first, the targets it refuses (no ECR registry, `skip_push`), and the
preflight that refuses a function of another architecture before anything is published."""
from __future__ import annotations

import dataclasses
import json

import pytest
from pants.core.goals.deploy import DeployProcess
from pants.core.util_rules.distdir import DistDir
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks

from chromadb_lambda.goals.deploy import (
    ChromadbLambdaDeployFieldSet,
    DeployConfigurationError,
    LambdaDeploySubsystem,
    deploy_chromadb_lambda,
)
from chromadb_lambda.testutil import (
    KEY,
    KEY_TAG,
    LAMBDA,
    NAMES,
    REGISTRY,
    fail_if_requested,
    lambda_subsystem,
    lambda_target,
)
from chromadb_lambda.util_rules.content_keys import LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.function_check import (
    FunctionCheck,
    FunctionConfiguration,
    FunctionConfigurations,
    FunctionConfigurationsRequest,
)
from chromadb_lambda.util_rules.image_names import ImageNames, LambdaImageNamesRequest
from chromadb_lambda.util_rules.push import PublishSession, PublishSessionRequest
from chromadb_lambda.util_rules.registries import EcrRegistry

ECR = dataclasses.replace(
    REGISTRY, address="123456789012.dkr.ecr.us-east-1.amazonaws.com", alias="ecr",
    ecr=EcrRegistry("123456789012", "us-east-1"),
)


SESSION = PublishSession("9-abc")
# What the preflight reads by default: both functions on the target's (default) architecture.
X86 = (
    FunctionConfiguration("fn-a", architectures=("x86_64",), package_type="Image"),
    FunctionConfiguration("fn-b", architectures=("x86_64",), package_type="Image"),
)


def deploy(
    names: ImageNames, *, dry_run: bool = False, check: FunctionCheck = FunctionCheck.warn,
    read: tuple[FunctionConfiguration, ...] | None = X86, **fields,
) -> DeployProcess:
    target = lambda_target(functions=["fn-a", "fn-b"], **fields)

    def preflight(request: FunctionConfigurationsRequest) -> FunctionConfigurations:
        assert request == FunctionConfigurationsRequest(LAMBDA, ("fn-a", "fn-b"), SESSION)
        return FunctionConfigurations(read or ())
    return run_rule_with_mocks(
        deploy_chromadb_lambda,
        rule_args=[
            ChromadbLambdaDeployFieldSet.create(target),
            lambda_subsystem(),
            create_subsystem(LambdaDeploySubsystem, dry_run=dry_run, max_concurrency=8, function_check=check),
            DistDir(relpath="dist"),  # type: ignore[arg-type]
        ],
        mock_gets=[
            MockGet(WrappedTarget, (WrappedTargetRequest,), lambda _: WrappedTarget(target)),
            MockGet(LambdaImageKey, (LambdaImageKeyRequest,), lambda _: KEY),
            MockGet(ImageNames, (LambdaImageNamesRequest,), lambda _: names),
            MockGet(
                EnvironmentVars, (EnvironmentVarsRequest,), lambda _: EnvironmentVars({"AWS_PROFILE": "deployer"})
            ),
            MockGet(PublishSession, (PublishSessionRequest,), lambda _: SESSION),
            MockGet(
                FunctionConfigurations,
                (FunctionConfigurationsRequest,),
                preflight if read is not None else fail_if_requested("the preflight"),
            ),
        ],
    )


def spec_of(result: DeployProcess) -> dict:
    argv = result.process.process.argv  # type: ignore[union-attr]
    return json.loads(argv[3])


def test_deploy_publishes_the_target_first_then_runs_the_script_with_its_spec() -> None:
    result = deploy(dataclasses.replace(NAMES, registries=(REGISTRY, ECR)), function_alias="live")
    assert result.name == "lambdas/fn:fn"
    assert [str(t.address) for t in result.publish_dependencies] == ["lambdas/fn:fn"]
    assert result.description == "fn-a, fn-b"
    assert spec_of(result) == {
        "address": "lambdas/fn:fn",
        "functions": ["fn-a", "fn-b"],
        "alias": "live",
        "architecture": "x86_64",
        "content_key": "0123456789abcdef" * 4,
        "key_tag": KEY_TAG,
        # Only the ECR registry: Lambda runs images from ECR only.
        "registries": ["123456789012.dkr.ecr.us-east-1.amazonaws.com"],
        "manifest": "dist/deploy-manifest.json",
        "dry_run": False,
        "max_workers": 8,
    }
    process = result.process.process  # type: ignore[union-attr]
    # Credentials through the environment only: none on the argv.
    assert process.env["AWS_PROFILE"] == "deployer"
    assert "deployer" not in " ".join(process.argv)


def test_dry_run_publishes_nothing() -> None:
    # Nor reads the functions before: its deploy step reads them all.
    result = deploy(dataclasses.replace(NAMES, registries=(ECR,)), dry_run=True, read=None)
    assert result.publish_dependencies == ()
    assert result.description == "fn-a, fn-b (dry run: nothing changed)"
    assert spec_of(result)["dry_run"] is True


def test_a_target_without_an_ecr_registry_is_refused_naming_the_fields() -> None:
    with pytest.raises(DeployConfigurationError) as e:
        deploy(NAMES)
    assert str(e.value) == (
        "lambdas/fn:fn publishes to reg.example.com, and AWS Lambda runs images from Amazon ECR only: add an ECR "
        "registry to its `registries` field (or mark one `default` in `[docker].registries`); a registry that "
        "fronts ECR goes in `[lambda-image].ecr_registries`."
    )


def test_skip_push_is_refused() -> None:
    with pytest.raises(DeployConfigurationError) as e:
        deploy(dataclasses.replace(NAMES, registries=(ECR,)), skip_push=True)
    assert str(e.value) == (
        "lambdas/fn:fn has `skip_push=True`, so `pants publish` never pushes its image and no function can run "
        "it: remove `skip_push`, or the `functions` field, from lambdas/fn:fn."
    )


def test_targets_without_functions_are_not_deployed() -> None:
    assert ChromadbLambdaDeployFieldSet.is_applicable(lambda_target(functions=["fn-a"]))
    assert not ChromadbLambdaDeployFieldSet.is_applicable(lambda_target())


def test_a_function_of_another_architecture_refuses_the_target_before_the_publish() -> None:
    read = (X86[0], FunctionConfiguration("fn-b", architectures=("arm64",), package_type="Image"))
    result = deploy(dataclasses.replace(NAMES, registries=(ECR,)), read=read)
    # No publish dependency: the goal pushes nothing for this target, and its manifest entry stays.
    assert result.publish_dependencies == ()
    assert result.name == "lambdas/fn:fn"
    assert result.description == "fn-a, fn-b (refused before the push: see above)"
    assert result.process.process.argv[3] == (  # type: ignore[union-attr]
        "lambdas/fn:fn is neither published nor deployed: its `architecture` field is 'x86_64', and the function "
        "fn-b runs on arm64, so it could not run this image. One image runs on one architecture: change the "
        "architecture in the configuration of fn-b, or give it a `chromadb_lambda` target of its own. Nothing "
        "was pushed."
    )


def test_an_unreadable_function_is_left_to_the_deploy_step() -> None:
    read = (X86[0], FunctionConfiguration("fn-b", error_code="ResourceNotFoundException", error="Function not found"))
    result = deploy(dataclasses.replace(NAMES, registries=(ECR,)), read=read, check=FunctionCheck.strict)
    assert [str(t.address) for t in result.publish_dependencies] == ["lambdas/fn:fn"]
    assert spec_of(result)["functions"] == ["fn-a", "fn-b"]


def test_off_reads_no_function_before_the_publish() -> None:
    result = deploy(dataclasses.replace(NAMES, registries=(ECR,)), read=None, check=FunctionCheck.off)
    assert [str(t.address) for t in result.publish_dependencies] == ["lambdas/fn:fn"]
