"""The plugin's fields as BUILD files spell them, parsed by Pants' own target machinery."""
from __future__ import annotations

import pytest
from pants.backend.docker.target_types import DockerImageTarget
from pants.build_graph.address import Address
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.unions import UnionRule
from pants.testutil.rule_runner import RuleRunner

from chromadb_lambda.register import rules as plugin_rules
from chromadb_lambda.target_types import BaseImageCacheFromField, ChromadbLambdaCacheFromField, ChromadbLambdaTarget


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
