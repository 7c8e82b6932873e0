from __future__ import annotations

import pytest
from pants.backend.docker.target_types import DockerImageTarget
from pants.backend.python import target_types_rules
from pants.backend.python.target_types import PythonSourcesGeneratorTarget, PythonSourceTarget
from pants.backend.python.util_rules import faas
from pants.core.goals.tailor import AllOwnedSources, PutativeTarget, PutativeTargets
from pants.testutil.rule_runner import QueryRule, RuleRunner

from chromadb_lambda import tailor
from chromadb_lambda.closure_test import BOOTSTRAP_ENV
from chromadb_lambda.tailor import PutativeChromadbLambdaTargetsRequest
from chromadb_lambda.target_types import ChromadbLambdaTarget


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(
        rules=[
            *tailor.rules(),
            *faas.rules(),
            *target_types_rules.rules(),
            QueryRule(PutativeTargets, [PutativeChromadbLambdaTargetsRequest, AllOwnedSources]),
        ],
        target_types=[ChromadbLambdaTarget, DockerImageTarget, PythonSourcesGeneratorTarget, PythonSourceTarget],
    )


REPO = {
    "base/BUILD": 'docker_image(name="base")',
    "base/Dockerfile": "FROM scratch\n",
    # Already a Lambda.
    "fns/a/BUILD": 'python_sources(name="sources")\nchromadb_lambda(name="a", handler="handler.py:handle", base_image="//base:base")',
    "fns/a/handler.py": "def handle(event, context):\n    return 1\n",
    # Sources owned, no Lambda yet: named after its folder.
    "fns/b/BUILD": 'python_sources(name="sources")',
    "fns/b/handler.py": "def lambda_handler(event, context):\n    return 2\n",
    # Nothing yet: `python_sources()` (named after the folder) will be tailored too.
    "fns/c/handler.py": "import json\n\ndef handler(event, context):\n    return 3\n",
    # No handler function: not a Lambda.
    "fns/d/BUILD": 'python_sources(name="sources")',
    "fns/d/handler.py": "def helper():\n    return 4\n",
}
OWNED = AllOwnedSources(["fns/a/handler.py", "fns/b/handler.py", "fns/d/handler.py"])


def lambda_target(path: str, name: str, **kwargs: str) -> PutativeTarget:
    return PutativeTarget.for_target_type(ChromadbLambdaTarget, path=path, name=name, triggering_sources=(), kwargs=kwargs)


def putative(rule_runner: RuleRunner, *args: str) -> set[PutativeTarget]:
    rule_runner.set_options(["--source-root-patterns=['/fns', '/']", *args], env_inherit=BOOTSTRAP_ENV)
    result = rule_runner.request(
        PutativeTargets, [PutativeChromadbLambdaTargetsRequest(("fns/a", "fns/b", "fns/c", "fns/d")), OWNED]
    )
    return set(result)


def test_tailor_proposes_a_lambda_per_handler_folder_without_one(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(REPO)
    assert putative(rule_runner) == {
        lambda_target("fns/b", "b", handler="handler.py:lambda_handler", base_image="//base:base"),
        lambda_target("fns/c", "lambda", handler="handler.py:handler", base_image="//base:base", repository="{directory}"),
    }


def test_tailor_options(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({**REPO, "fns/e/main.py": "def run(event, context):\n    return 5\n"})
    rule_runner.set_options(
        [
            "--source-root-patterns=['/fns', '/']",
            "--lambda-image-tailor-handler-file=main.py",
            "--lambda-image-tailor-handler-functions=['run']",
            "--lambda-image-tailor-base-image=//base:other",
        ],
        env_inherit=BOOTSTRAP_ENV,
    )
    result = rule_runner.request(PutativeTargets, [PutativeChromadbLambdaTargetsRequest(("fns/c", "fns/e")), OWNED])
    assert list(result) == [
        lambda_target("fns/e", "lambda", handler="main.py:run", base_image="//base:other", repository="{directory}")
    ]


def test_no_tailoring_without_a_base_image_to_use(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            **REPO,
            "base/BUILD": 'docker_image(name="base")\ndocker_image(name="other")',
            "fns/x/BUILD": 'python_sources(name="sources")\nchromadb_lambda(name="x", handler="handler.py:handle", base_image="//base:other")',
            "fns/x/handler.py": "def handle(event, context):\n    return 1\n",
        }
    )
    assert putative(rule_runner) == set()
    assert putative(rule_runner, "--no-lambda-image-tailor") == set()
