from __future__ import annotations

import logging
from pathlib import Path
from textwrap import dedent

import pytest
from pants.backend.docker.target_types import DockerImageTarget
from pants.backend.python import target_types_rules
from pants.backend.python.goals import tailor as python_tailor
from pants.backend.python.target_types import (
    PythonSourcesGeneratorTarget,
    PythonSourceTarget,
    PythonTestsGeneratorTarget,
    PythonTestUtilsGeneratorTarget,
)
from pants.backend.python.util_rules import faas
from pants.core.goals import tailor as core_tailor
from pants.core.goals.tailor import AllOwnedSources, PutativeTarget, PutativeTargets, TailorGoal
from pants.core.target_types import FilesGeneratorTarget, FileTarget, ResourceTarget
from pants.testutil.rule_runner import QueryRule, RuleRunner

from chromadb_lambda.goals import tailor
from chromadb_lambda.testutil import BOOTSTRAP_ENV
from chromadb_lambda.goals.tailor import PutativeChromadbLambdaTargetsRequest
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
        target_types=[
            ChromadbLambdaTarget,
            DockerImageTarget,
            PythonSourcesGeneratorTarget,
            PythonSourceTarget,
            FilesGeneratorTarget,
            FileTarget,
        ],
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


def test_no_lambda_for_a_handler_that_only_a_files_target_owns(
    rule_runner: RuleRunner, caplog: pytest.LogCaptureFixture
) -> None:
    # Pants' own tailoring adds no `python_sources` for a file a target owns: a Lambda would not package.
    rule_runner.write_files(
        {
            **REPO,
            "fns/BUILD": 'files(name="everything", sources=["f/*"])',
            "fns/f/handler.py": "def handle(event, context):\n    return 6\n",
        }
    )
    rule_runner.set_options(["--source-root-patterns=['/fns', '/']"], env_inherit=BOOTSTRAP_ENV)
    owned = AllOwnedSources([*OWNED, "fns/f/handler.py"])
    with caplog.at_level(logging.WARNING):
        result = rule_runner.request(PutativeTargets, [PutativeChromadbLambdaTargetsRequest(("fns/b", "fns/f")), owned])
    assert list(result) == [lambda_target("fns/b", "b", handler="handler.py:lambda_handler", base_image="//base:base")]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(
        "fns/f/handler.py looks like a Lambda handler (it defines `handle`), but no `python_source` target "
        "owns it, only fns:everything:"
    )
    assert "Leave fns/f/handler.py out of the `sources` of fns:everything" in warning


@pytest.fixture
def goal_rule_runner() -> RuleRunner:
    """The `tailor` goal with Pants' own Python tailoring beside the plugin's, as in a real repo."""
    return RuleRunner(
        rules=[*core_tailor.rules(), *python_tailor.rules(), *tailor.rules(), *faas.rules(), *target_types_rules.rules()],
        target_types=[
            ChromadbLambdaTarget,
            DockerImageTarget,
            FilesGeneratorTarget,
            FileTarget,
            PythonSourcesGeneratorTarget,
            PythonSourceTarget,
            PythonTestsGeneratorTarget,
            PythonTestUtilsGeneratorTarget,
            ResourceTarget,
        ],
    )


def run_tailor(rule_runner: RuleRunner, root_files_sources: list[str]) -> str:
    """`pants tailor ::` in a repo whose root `files` target has `root_files_sources`."""
    rule_runner.write_files(
        {
            "BUILD": f"files(name='repo', sources={root_files_sources!r})",
            "base/BUILD": 'docker_image(name="base")',
            "base/Dockerfile": "FROM scratch\n",
            "fns/a/BUILD": 'python_sources(name="sources")\nchromadb_lambda(name="a", handler="handler.py:handle", base_image="//base:base")',
            "fns/a/handler.py": "def handle(event, context):\n    return 1\n",
            "fns/new/__init__.py": "",
            "fns/new/handler.py": "from a.handler import handle as other\n\ndef handle(event, context):\n    return other(event, context)\n",
        }
    )
    result = rule_runner.run_goal_rule(
        TailorGoal, args=["--source-root-patterns=['/fns', '/']", "::"], env_inherit=BOOTSTRAP_ENV
    )
    assert result.exit_code == 0
    return result.stdout


def test_one_tailor_run_adds_the_python_sources_and_the_lambda(goal_rule_runner: RuleRunner) -> None:
    # The root `files` target leaves the Python files to Python targets.
    stdout = run_tailor(goal_rule_runner, ["fns/**/*", "!fns/**/*.py"])
    assert stdout == dedent(
        """\
        Created fns/new/BUILD:
          - Add chromadb_lambda target lambda
          - Add python_sources target new
        """
    )
    assert goal_rule_runner.read_file("fns/new/BUILD") == dedent(
        """\
        chromadb_lambda(
            name="lambda",
            handler="handler.py:handle",
            base_image="//base:base",
            repository="{directory}",
        )

        python_sources()
        """
    )


def test_tailor_adds_no_lambda_that_could_not_package(
    goal_rule_runner: RuleRunner, caplog: pytest.LogCaptureFixture
) -> None:
    # The root `files` target owns the Python files too: Pants adds no `python_sources` there, and the
    # plugin no `chromadb_lambda` (it warns instead).
    with caplog.at_level(logging.WARNING):
        assert run_tailor(goal_rule_runner, ["fns/**/*"]) == ""
    assert not Path(goal_rule_runner.build_root, "fns/new/BUILD").exists()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(
        "fns/new/handler.py looks like a Lambda handler (it defines `handle`), but no `python_source` target "
        "owns it, only //:repo:"
    )
