"""The `architecture` field against the base image's, with the base's inspect mocked."""
from __future__ import annotations

import json

import pytest
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks

from chromadb_lambda.testutil import LAMBDA, lambda_target
from chromadb_lambda.util_rules import architecture as architecture_module
from chromadb_lambda.util_rules.architecture import (
    ArchitectureMismatchError,
    LambdaArchitecture,
    LambdaArchitectureRequest,
    check_lambda_architecture,
)
from chromadb_lambda.util_rules.assemble import BaseImageConfig, BaseImageConfigRequest


def check(base_architecture: str, **fields) -> LambdaArchitecture:
    target = lambda_target(**fields)
    return run_rule_with_mocks(
        check_lambda_architecture,
        rule_args=[LambdaArchitectureRequest(LAMBDA, "sha256:base")],
        mock_gets=[
            MockGet(WrappedTarget, (WrappedTargetRequest,), lambda _: WrappedTarget(target)),
            MockGet(
                BaseImageConfig, (BaseImageConfigRequest,),
                lambda _: BaseImageConfig(json.dumps({"Architecture": base_architecture, "Os": "linux"})),
            ),
        ],
    )


def test_the_default_on_an_amd64_base_builds_as_before() -> None:
    assert check("amd64") == LambdaArchitecture("x86_64")
    assert LambdaArchitecture("x86_64").platform_args == ()
    assert LambdaArchitecture("arm64").platform_args == ("--platform", "linux/arm64")


def test_arm64_on_this_amd64_machines_base_is_an_error_naming_the_target_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(architecture_module.platform, "machine", lambda: "x86_64")
    with pytest.raises(ArchitectureMismatchError) as e:
        check("amd64", architecture="arm64")
    assert str(e.value) == (
        "The `architecture` field of lambdas/fn:fn is 'arm64', but its base image is amd64: build the base for "
        "arm64 (`docker build --platform linux/arm64`), or set `architecture` to the base's ('x86_64'). This "
        "machine's Docker engine runs amd64 images and cannot build arm64 ones (no emulation): build "
        "lambdas/fn:fn on an arm64 machine."
    )
