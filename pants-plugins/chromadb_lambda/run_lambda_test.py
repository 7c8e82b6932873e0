from __future__ import annotations

import json

import pytest
from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException

from chromadb_lambda.run_lambda import ChromadbLambdaTimeoutField, run_spec

ADDRESS = Address("lambdas/word_polling", target_name="word_polling")


def test_run_spec_names_the_image_and_the_timeout_and_nothing_from_the_environment() -> None:
    assert json.loads(run_spec(ADDRESS, "sha256:abc", "/usr/bin/docker", 45)) == {
        "address": "lambdas/word_polling:word_polling",
        "docker": "/usr/bin/docker",
        "function_name": "word_polling",
        "image_id": "sha256:abc",
        "timeout": 45,
    }


def test_without_a_timeout_field_the_run_allows_30_seconds() -> None:
    assert json.loads(run_spec(ADDRESS, "sha256:abc", "/usr/bin/docker", None))["timeout"] == 30


def test_timeout_field_must_be_positive() -> None:
    assert ChromadbLambdaTimeoutField(900, ADDRESS).value == 900
    assert ChromadbLambdaTimeoutField(None, ADDRESS).value is None
    with pytest.raises(InvalidFieldException, match=r"The `timeout` field in target lambdas/word_polling:word_polling must be a positive number of seconds, but it is 0"):
        ChromadbLambdaTimeoutField(0, ADDRESS)
