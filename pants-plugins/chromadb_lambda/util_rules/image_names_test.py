from __future__ import annotations

from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from chromadb_lambda.testutil import KEY as LAMBDA_KEY
from chromadb_lambda.testutil import KEY_TAG, lambda_subsystem, lambda_target
from chromadb_lambda.util_rules.content_keys import LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.image_names import (
    ImageNames,
    LambdaBuildArgs,
    LambdaBuildArgsRequest,
    LambdaImageNamesRequest,
    lambda_build_args,
    lambda_image_names,
)


def docker_options(**options) -> DockerOptions:
    values = dict(default_repository="{name}", registries={}, build_args=[])
    return create_subsystem(DockerOptions, **{**values, **options})


def test_git_commit_tags_from_the_environment_through_the_rules() -> None:
    """`image_tags=["{build_args.GIT_COMMIT}"]`, as the `ecr_tag_mutability` help suggests, with
    `[docker].build_args = ["GIT_COMMIT"]` and GIT_COMMIT in the environment."""
    options = docker_options(
        build_args=["GIT_COMMIT", "LAMBDA_PYTHON_IMAGE=local/py"],
        registries={"ecr": {"address": "123456789012.dkr.ecr.us-east-1.amazonaws.com", "default": True}},
    )
    build_args = run_rule_with_mocks(
        lambda_build_args,
        rule_args=[LambdaBuildArgsRequest(), options],
        mock_gets=[
            MockGet(EnvironmentVars, (EnvironmentVarsRequest,), lambda r: EnvironmentVars({"GIT_COMMIT": "9f8e7d"}))
        ],
    )
    assert build_args == LambdaBuildArgs(FrozenDict({"GIT_COMMIT": "9f8e7d", "LAMBDA_PYTHON_IMAGE": "local/py"}))
    target = lambda_target(repository="receipts/{name}", image_tags=["{build_args.GIT_COMMIT}"])
    names = run_rule_with_mocks(
        lambda_image_names,
        rule_args=[LambdaImageNamesRequest(target.address), options, lambda_subsystem()],
        mock_gets=[
            MockGet(WrappedTarget, (WrappedTargetRequest,), lambda _: WrappedTarget(target)),
            MockGet(LambdaImageKey, (LambdaImageKeyRequest,), lambda _: LAMBDA_KEY),
            MockGet(LambdaBuildArgs, (LambdaBuildArgsRequest,), lambda _: build_args),
        ],
    )
    assert isinstance(names, ImageNames)
    assert (names.repository, names.refs) == ("receipts/fn", ("receipts/fn:9f8e7d",))
    assert names.key_ref == f"receipts/fn:{KEY_TAG}"
    [ecr] = names.registries
    assert ecr.refs == (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/receipts/fn:9f8e7d",
        f"123456789012.dkr.ecr.us-east-1.amazonaws.com/receipts/fn:{KEY_TAG}",
    )
