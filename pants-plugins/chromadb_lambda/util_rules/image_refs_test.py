from __future__ import annotations

import pytest
from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException

from chromadb_lambda.util_rules.image_refs import (
    build_arg_values,
    lambda_docker_field_set,
    lambda_image_refs,
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


