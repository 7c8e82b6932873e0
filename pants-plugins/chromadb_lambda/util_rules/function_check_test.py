"""The preflight: the comparison and its messages (hand-written), the answer of the read process, and
the process itself (credentials in its environment only, never reused across runs)."""
from __future__ import annotations

import json

import pytest
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import EMPTY_DIGEST, CreateDigest, Digest
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks

from chromadb_lambda.testutil import LAMBDA, process_result
from chromadb_lambda.util_rules.function_check import (
    FunctionCheck,
    FunctionConfiguration,
    FunctionConfigurations,
    FunctionConfigurationsRequest,
    Verdict,
    parse_configurations,
    preflight_verdict,
    read_function_configurations,
)
from chromadb_lambda.util_rules.push import PublishSession

ADDRESS = "lambdas/fn:fn"


def image(function: str, architecture: str) -> FunctionConfiguration:
    return FunctionConfiguration(function, architectures=(architecture,), package_type="Image")


def unread(function: str, code: str, message: str = "") -> FunctionConfiguration:
    return FunctionConfiguration(function, error_code=code, error=message)


def verdict(architecture: str, *read: FunctionConfiguration, check: FunctionCheck = FunctionCheck.warn,
            goal: str = "publish") -> Verdict:
    return preflight_verdict(ADDRESS, architecture, FunctionConfigurations(read), check, goal)


def test_matching_functions_pass() -> None:
    assert verdict("x86_64", image("a", "x86_64"), image("b", "x86_64")) == Verdict(None)
    assert verdict("arm64", image("a", "arm64"), goal="experimental-deploy") == Verdict(None)


@pytest.mark.parametrize(
    "architecture, read, goal, expected",
    [
        (
            "x86_64", (image("a", "arm64"),), "publish",
            "lambdas/fn:fn is not published: its `architecture` field is 'x86_64', and the function a runs on arm64, "
            "so it could not run this image. Set `architecture=\"arm64\"` on lambdas/fn:fn (its base image must be "
            "arm64 too), or change the architecture in the configuration of a. Nothing was pushed.",
        ),
        (
            "arm64", (image("a", "x86_64"), image("b", "x86_64"), image("c", "x86_64")), "experimental-deploy",
            "lambdas/fn:fn is neither published nor deployed: its `architecture` field is 'arm64', and the functions "
            "a, b and c run on x86_64, so they could not run this image. Set `architecture=\"x86_64\"` on lambdas/fn:fn "
            "(its base image must be x86_64 too), or change the architecture in the configuration of a, b and c. "
            "Nothing was pushed.",
        ),
        # One function matches: changing the field would refuse it instead.
        (
            "x86_64", (image("a", "x86_64"), image("b", "arm64"), image("c", "arm64")), "publish",
            "lambdas/fn:fn is not published: its `architecture` field is 'x86_64', and the functions b and c run on "
            "arm64, so they could not run this image. One image runs on one architecture: change the architecture in "
            "the configuration of b and c, or give them a `chromadb_lambda` target of their own. Nothing was pushed.",
        ),
    ],
)
def test_a_function_of_another_architecture_is_refused_naming_both_and_the_fix(
    architecture: str, read: tuple[FunctionConfiguration, ...], goal: str, expected: str
) -> None:
    assert verdict(architecture, *read, goal=goal) == Verdict(expected)


def test_a_mismatch_is_refused_even_beside_an_unreadable_function() -> None:
    result = verdict("x86_64", image("a", "arm64"), unread("b", "AccessDeniedException"))
    assert result.refusal is not None and result.refusal.startswith("lambdas/fn:fn is not published: its `architecture`")
    assert result.warnings == ()


SUFFIX = ". `[lambda-deploy].function_check = \"off\"` publishes without reading functions; \"strict\" refuses instead."


@pytest.mark.parametrize(
    "configuration, reason",
    [
        (
            unread("b", "AccessDeniedException", "User: ci is not authorized"),
            "access denied for `lambda:GetFunctionConfiguration` on b: grant it to the identity that runs `pants publish`",
        ),
        (
            unread("b", "ResourceNotFoundException", "Function not found"),
            "there is no function b (in the region of the AWS credential chain, or the ARN's): create it, or fix "
            "the `functions` field of lambdas/fn:fn",
        ),
        (
            unread("b", "NoCredentialsError", "Unable to locate credentials"),
            "no AWS credentials: configure the standard AWS chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "SSO, an instance or task role) in the environment of `pants publish`",
        ),
        (
            unread("b", "ExpiredTokenException", "expired"),
            "the AWS credentials were rejected: check AWS_PROFILE / AWS_ACCESS_KEY_ID and that they are current",
        ),
        (
            unread("b", "EndpointConnectionError", 'Could not connect to the endpoint URL: "http://127.0.0.1:1/"'),
            'cannot reach the AWS Lambda API: Could not connect to the endpoint URL: "http://127.0.0.1:1/"',
        ),
        (
            unread("b", "ThrottlingException", "Rate exceeded"),
            "AWS refused `lambda:GetFunctionConfiguration` on b (ThrottlingException): Rate exceeded",
        ),
    ],
)
def test_publish_warns_about_a_function_it_cannot_read_and_publishes(configuration: FunctionConfiguration, reason: str) -> None:
    assert verdict("x86_64", image("a", "x86_64"), configuration) == Verdict(
        None,
        (
            "lambdas/fn:fn: publishing without comparing the `architecture` field ('x86_64') with the function b, "
            f"whose configuration could not be read: {reason}{SUFFIX}",
        ),
    )


def test_strict_refuses_every_function_it_cannot_read() -> None:
    result = verdict(
        "x86_64", unread("a", "AccessDeniedException"), unread("b", "ResourceNotFoundException"),
        check=FunctionCheck.strict,
    )
    assert result == Verdict(
        "lambdas/fn:fn is not published: `[lambda-deploy].function_check` is \"strict\", and the configuration of the "
        "function a could not be read: access denied for `lambda:GetFunctionConfiguration` on a: grant it to the "
        "identity that runs `pants publish`. Nothing was pushed.\n"
        "lambdas/fn:fn is not published: `[lambda-deploy].function_check` is \"strict\", and the configuration of the "
        "function b could not be read: there is no function b (in the region of the AWS credential chain, or the "
        "ARN's): create it, or fix the `functions` field of lambdas/fn:fn. Nothing was pushed."
    )


@pytest.mark.parametrize("check", [FunctionCheck.warn, FunctionCheck.strict])
def test_deploy_leaves_an_unreadable_function_to_its_deploy_step(check: FunctionCheck) -> None:
    # Its deploy step reports it by name while the other functions deploy.
    assert verdict("x86_64", unread("b", "ResourceNotFoundException"), check=check, goal="experimental-deploy") == Verdict(None)


def test_the_answer_of_the_process_and_a_crash() -> None:
    answer = [
        {"function": "a", "architectures": ["arm64"], "package_type": "Image"},
        {"function": "b", "code": "AccessDeniedException", "message": "no"},
    ]
    assert parse_configurations(("a", "b"), process_result(json.dumps(answer))) == FunctionConfigurations(
        (image("a", "arm64"), unread("b", "AccessDeniedException", "no"))
    )
    crashed = parse_configurations(("a",), process_result("", exit_code=1, stderr="Traceback\nImportError: boto3\n"))
    assert crashed == FunctionConfigurations(
        (unread("a", "ProcessFailed", "the function configuration process failed (exit code 1): ImportError: boto3"),)
    )


def test_the_read_process_gets_credentials_by_its_environment_and_is_never_reused_across_runs() -> None:
    seen: dict = {}

    def create(request: CreateDigest) -> Digest:
        seen["files"] = {f.path: f.content for f in request}  # type: ignore[union-attr]
        return EMPTY_DIGEST

    def run(process: Process) -> FallibleProcessResult:
        seen["process"] = process
        return process_result(json.dumps([{"function": "fn-a", "architectures": ["x86_64"], "package_type": "Image"}]))

    result = run_rule_with_mocks(
        read_function_configurations,
        rule_args=[FunctionConfigurationsRequest(LAMBDA, ("fn-a",), PublishSession("9-abc"))],
        mock_gets=[
            MockGet(
                EnvironmentVars,
                (EnvironmentVarsRequest,),
                lambda _: EnvironmentVars({"AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_ENDPOINT_URL_LAMBDA": "http://x"}),
            ),
            MockGet(Digest, (CreateDigest,), create),
            MockGet(FallibleProcessResult, (Process,), run),
        ],
    )
    assert result == FunctionConfigurations((image("fn-a", "x86_64"),))
    process = seen["process"]
    assert process.argv[1:] == ("deploy_functions.py", "configurations", "spec.json")
    assert process.env["AWS_SECRET_ACCESS_KEY"] == "s3cr3t" and process.env["AWS_ENDPOINT_URL_LAMBDA"] == "http://x"
    assert process.cache_scope == ProcessCacheScope.PER_RESTART_SUCCESSFUL
    # The session id makes each run's read a new process; no credential in any input file.
    assert json.loads(seen["files"]["spec.json"]) == {"session": "9-abc", "functions": ["fn-a"]}
    assert sorted(seen["files"]) == ["deploy_functions.py", "spec.json"]
    assert not any(b"s3cr3t" in content for content in seen["files"].values())
    assert "s3cr3t" not in " ".join(process.argv)
