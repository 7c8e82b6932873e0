"""The plugin's fields as BUILD files spell them, parsed by Pants' own target machinery."""
from __future__ import annotations

import pytest
from pants.backend.docker.target_types import DockerImageTarget
from pants.build_graph.address import Address
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.unions import UnionRule
from pants.testutil.rule_runner import RuleRunner

from chromadb_lambda.register import rules as plugin_rules
from chromadb_lambda.target_types import (
    BaseImageCacheFromField,
    ChromadbLambdaArchitectureField,
    ChromadbLambdaCacheFromField,
    ChromadbLambdaFunctionAliasField,
    ChromadbLambdaFunctionsField,
    ChromadbLambdaTarget,
)


@pytest.fixture
def rule_runner() -> RuleRunner:
    # The plugin's `rules()` registers its field on `docker_image`, as it does in a real build.
    return RuleRunner(
        rules=[
            rule
            for rule in plugin_rules()
            if isinstance(rule, UnionRule) and rule.union_base is DockerImageTarget.PluginField
        ],
        target_types=[ChromadbLambdaTarget, DockerImageTarget],
    )


def test_base_docker_image_takes_the_plugin_scoped_cache_from_alias(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {"base/BUILD": 'docker_image(name="base", lambda_image_cache_from=["reg:5000/{repository}:main"])'}
    )
    target = rule_runner.get_target(Address("base", target_name="base"))
    assert target.get(BaseImageCacheFromField).value == ("reg:5000/{repository}:main",)


def test_base_docker_image_leaves_cache_from_to_pants(rule_runner: RuleRunner) -> None:
    # `cache_from` on `docker_image` is Pants' own field in later versions: the plugin does not claim it.
    rule_runner.write_files({"base/BUILD": 'docker_image(name="base", cache_from=["reg:5000/x:main"])'})
    with pytest.raises(ExecutionError, match="Unrecognized field `cache_from=\\['reg:5000/x:main'\\]`"):
        rule_runner.get_target(Address("base", target_name="base"))


def test_chromadb_lambda_keeps_cache_from(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "fn/BUILD": 'chromadb_lambda(name="fn", handler="h.py:handle", base_image="//base:base", '
            'cache_from=["reg:5000/{repository}:main"])'
        }
    )
    target = rule_runner.get_target(Address("fn", target_name="fn"))
    assert target.get(ChromadbLambdaCacheFromField).value == ("reg:5000/{repository}:main",)


def lambda_target(rule_runner: RuleRunner, fields: str):
    rule_runner.write_files({"fn/BUILD": f'chromadb_lambda(name="fn", handler="h.py:handle", base_image="//base:base", {fields})'})
    return rule_runner.get_target(Address("fn", target_name="fn"))


def test_deploy_fields_take_names_arns_an_alias_and_default_to_x86_64(rule_runner: RuleRunner) -> None:
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:word-polling"
    target = lambda_target(rule_runner, f'functions=["receipt-word_polling", "{arn}"], function_alias="live"')
    assert target[ChromadbLambdaFunctionsField].value == ("receipt-word_polling", arn)
    assert target[ChromadbLambdaFunctionAliasField].value == "live"
    assert target[ChromadbLambdaArchitectureField].value == "x86_64"
    assert lambda_target(rule_runner, 'architecture="arm64"')[ChromadbLambdaArchitectureField].value == "arm64"


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            'functions=["arn:aws:lambda:eu-west-1:123456789012:function:fn:live"]',
            "The `functions` field in target fn:fn has 'arn:aws:lambda:eu-west-1:123456789012:function:fn:live': "
            "name the function without a version or alias, and give the alias in `function_alias`.",
        ),
        (
            'functions=["my function"]',
            "The `functions` field in target fn:fn has 'my function': give a function name (letters, digits, `-` "
            "and `_`, at most 64 characters) or a function ARN (`arn:aws:lambda:<region>:<account>:function:<name>`).",
        ),
        (
            'function_alias="42"',
            "The `function_alias` field in target fn:fn is '42': an alias name has 1 to 128 letters, digits, `-` "
            "and `_`, not only digits (that names a version).",
        ),
        (
            'architecture="amd64"',
            "Values for the 'architecture' field in target fn:fn must be one of ['arm64', 'x86_64'], but 'amd64' "
            "was provided.",
        ),
    ],
)
def test_deploy_fields_refuse_values_aws_would(rule_runner: RuleRunner, fields: str, message: str) -> None:
    with pytest.raises(ExecutionError) as e:
        lambda_target(rule_runner, fields)
    assert message in str(e.value)
