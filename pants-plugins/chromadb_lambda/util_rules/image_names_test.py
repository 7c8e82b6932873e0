from __future__ import annotations

import pytest
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.engine.addresses import Address
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.target import InvalidFieldException, WrappedTarget, WrappedTargetRequest
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
    build_arg_values,
    lambda_docker_field_set,
    lambda_image_refs,
    lambda_build_args,
    lambda_image_names,
    lambda_interpolation_context,
)

ADDRESS = Address("lambdas/word_polling", target_name="word_polling")
# The `image_tags` field's default.
L = ("latest",)
KEY = "0123456789abcdef" * 4


def refs(repository: str | None, tags: tuple[str, ...] | None, default: str = "{name}", build_args: dict | None = None):
    return lambda_image_refs(lambda_docker_field_set(ADDRESS, repository, tags), default, build_args or {}, KEY)


def test_repository_placeholders_as_docker_image_takes_them() -> None:
    assert refs(None, L) == ("word_polling", ("word_polling:latest",))
    assert refs("receipts/{parent_directory}-{directory}", L)[0] == "receipts/lambdas-word_polling"
    assert refs(None, L, default="team/{name}")[0] == "team/word_polling"
    # Pants lowercases repositories (`DockerPackageFieldSet.format_repository`).
    assert refs("Receipts/{name}", L)[0] == "receipts/word_polling"


def test_build_args_and_pants_hash_in_tags() -> None:
    # The `[lambda-image].ecr_tag_mutability` help suggests `image_tags=["{build_args.GIT_COMMIT}"]`.
    assert refs("r", ("{build_args.GIT_COMMIT}", "latest"), build_args={"GIT_COMMIT": "1a2b3c"}) == (
        "r", ("r:1a2b3c", "r:latest")
    )
    # `{pants.hash}` of a Lambda is its content key.
    assert refs("r", ("{pants.hash}",))[1] == (f"r:{KEY}",)
    assert refs("r-{build_args.TEAM}", L, build_args={"TEAM": "ocr"})[0] == "r-ocr"


@pytest.mark.parametrize(
    "repository, tags, match",
    [
        ("{nmae}", L, r"`repository` field of the `chromadb_lambda` target at lambdas/word_polling:word_polling.*nmae"),
        ("r", ("{build_args.GIT_COMMIT}",), r"`image_tags` field of the `chromadb_lambda` target at .*GIT_COMMIT"),
        ("r", ("{pants.hsah}",), r"`image_tags` field of the `chromadb_lambda` target at .*hsah"),
        ("fn..x", L, r"The `repository` of lambdas/word_polling:word_polling gives the repository 'fn..x', which Docker rejects"),
        ("r", ("-bad",), r"The `image_tags` field in target lambdas/word_polling:word_polling has the tag '-bad'"),
        ("r", (), r"`image_tags` field in target lambdas/word_polling:word_polling must not be empty"),
    ],
)
def test_invalid_names_name_the_target_and_field(repository: str, tags: tuple[str, ...], match: str) -> None:
    with pytest.raises(InvalidFieldException, match=match):
        refs(repository, tags)


def test_pants_hash_is_not_a_repository_placeholder() -> None:
    with pytest.raises(InvalidFieldException, match=r"`repository` field of the `chromadb_lambda` target.*pants"):
        refs("r/{pants.hash}", L)


def test_build_arg_values_come_from_the_option_or_the_environment() -> None:
    assert build_arg_values(("A=1", "GIT_COMMIT", "UNSET", "B=x=y"), {"GIT_COMMIT": "abc", "OTHER": "no"}) == {
        "A": "1",
        "GIT_COMMIT": "abc",
        "B": "x=y",
    }


def test_interpolation_context_has_pants_hash_only_with_a_key() -> None:
    assert "pants" not in lambda_interpolation_context({})
    assert lambda_interpolation_context({}, KEY)["pants"]["hash"] == KEY


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
