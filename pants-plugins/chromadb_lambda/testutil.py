"""Shared fixtures of the plugin's tests: a RuleRunner for closures and a small monorepo to run it on,
and the values rule tests with mocks build on (a closure, names, a content key)."""
from __future__ import annotations

import os
from textwrap import dedent

from pants.backend.docker.target_types import DockerImageTarget
from pants.backend.python import target_types_rules
from pants.backend.python.dependency_inference import rules as dependency_inference_rules
from pants.backend.python.target_types import (
    PythonRequirementTarget,
    PythonSourcesGeneratorTarget,
    PythonSourceTarget,
)
from pants.backend.python.util_rules import faas, pex, python_sources
from pants.core.target_types import (
    FilesGeneratorTarget,
    FileTarget,
    ResourcesGeneratorTarget,
    ResourceTarget,
)
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.process import FallibleProcessResult, ProcessExecutionEnvironment, ProcessResultMetadata
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import PYTHON_BOOTSTRAP_ENV, QueryRule, RuleRunner
from pants.util.frozendict import FrozenDict

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem, EcrTagMutability, LambdaImageBuilder
from chromadb_lambda.target_types import ChromadbLambdaTarget
from chromadb_lambda.util_rules import closure, dependency_inference, scan
from chromadb_lambda.util_rules.closure import ContextFile, LambdaClosure, LambdaClosureRequest
from chromadb_lambda.util_rules.content_keys import BaseImageIdentity, LambdaImageKey
from chromadb_lambda.util_rules.engine import DockerEnvironment
from chromadb_lambda.util_rules.image_names import ImageNames
from chromadb_lambda.util_rules.registries import PushTarget


def closure_rule_runner() -> RuleRunner:
    """A RuleRunner that computes Lambda closures (`LambdaClosure`), with `set_options` applied."""
    rule_runner = RuleRunner(
        rules=[
            *closure.rules(),
            *scan.rules(),
            *pex.rules(),
            *dependency_inference.rules(),
            *faas.rules(),
            *dependency_inference_rules.rules(),
            *python_sources.rules(),
            *target_types_rules.rules(),
            QueryRule(LambdaClosure, [LambdaClosureRequest]),
        ],
        target_types=[
            ChromadbLambdaTarget,
            DockerImageTarget,
            FileTarget,
            FilesGeneratorTarget,
            PythonRequirementTarget,
            PythonSourceTarget,
            PythonSourcesGeneratorTarget,
            ResourceTarget,
            ResourcesGeneratorTarget,
        ],
    )
    set_options(rule_runner)
    return rule_runner


# What the test was given of the caller's environment (`PANTS_BOOTSTRAP_ENV` in BUILD files: the
# interpreters, and the machine-specific `PANTS_*` options the `./pants` wrapper exports).
BOOTSTRAP_ENV = {name for name in os.environ if name.startswith("PANTS_") or name in PYTHON_BOOTSTRAP_ENV}


def set_options(rule_runner: RuleRunner, *args: str) -> None:
    rule_runner.set_options(
        [
            "--source-root-patterns=['/app', '/functions']",
            # The Lambda's Python reads the closure (as `[python].interpreter_constraints` in pants.toml).
            "--python-interpreter-constraints=['CPython==3.11.*']",
            "--python-bootstrap-search-path=['<PYENV>', '<PATH>']",
            *args,
        ],
        env_inherit=BOOTSTRAP_ENV,
    )


# A small monorepo laid out unlike the example repo: other source roots, a package with code in its
# `__init__.py`, relative imports, a resource, a module baked into the base image.
BASE_REPO = {
    "3rdparty/BUILD": dedent(
        """\
        python_requirement(name="boto3", requirements=["boto3"])
        python_requirement(name="requests", requirements=["requests"])
        """
    ),
    "base/BUILD": 'docker_image(name="base", dependencies=["3rdparty:boto3", "app/shared:shared"])',
    "base/Dockerfile": "FROM scratch\n",
    "app/shared/BUILD": "python_sources()",
    "app/shared/__init__.py": "",
    "app/shared/logs.py": "def log(msg):\n    print(msg)\n",
    "app/store/BUILD": "python_sources()",
    "app/store/__init__.py": "from .tables import TABLE\n",
    "app/store/tables.py": "import boto3\nTABLE = 'receipts'\n",
    "app/store/unused.py": "X = 1\n",
    "app/text/BUILD": dedent(
        """\
        python_sources(overrides={"vocab.py": {"dependencies": [":data"]}})
        resources(name="data", sources=["words.txt"])
        """
    ),
    "app/text/__init__.py": "",
    "app/text/vocab.py": "WORDS = 'words.txt'\n",
    "app/text/words.txt": "apple\n",
}


def lambda_build(name: str, handler: str = "main.py:handle", extra: str = "") -> str:
    return dedent(
        f"""\
        python_sources(name="src")
        chromadb_lambda(name="{name}", handler="{handler}", base_image="//base:base"{extra})
        """
    )


# Values for rule tests with mocks (`run_rule_with_mocks`): one Lambda, its base, names and key.
LAMBDA = Address("lambdas/fn", target_name="fn")
BASE = Address("base", target_name="base")
CLOSURE = LambdaClosure(
    address=LAMBDA,
    handler_module="fn.handler",
    handler_function="handle",
    base_address=BASE,
    roots=(Address("lambdas/fn", relative_file_path="handler.py"),),
    digest=EMPTY_DIGEST,
    files=(ContextFile("fn/__init__.py", 0), ContextFile("fn/handler.py", 90)),
    provided_by_base=("shared/__init__.py",),
)
BASE_IDENTITY = BaseImageIdentity("b" * 64, "base/Dockerfile", ("X=1",), repository="acme/base")
KEY = LambdaImageKey(closure=CLOSURE, base=BASE_IDENTITY, key="0123456789abcdef" * 4)
KEY_TAG = "ck-0123456789abcdef0123456789abcdef"
REGISTRY = PushTarget(
    address="reg.example.com", alias="reg", repository="acme/fn", tags=("latest", KEY_TAG), ecr=None, skip_push=False
)
NAMES = ImageNames(repository="acme/fn", refs=("acme/fn:latest",), key_ref=f"acme/fn:{KEY_TAG}", registries=(REGISTRY,))
BASE_NAMES = ImageNames(
    repository="acme/base", refs=(), key_ref=BASE_IDENTITY.ref, registries=()
)
DOCKER = DockerBinary("/usr/bin/docker", "sha")
DOCKER_ENV = DockerEnvironment(FrozenDict({"DOCKER_HOST": "unix:///engine.sock"}))


def lambda_subsystem(**options) -> ChromadbLambdaSubsystem:
    """`[lambda-image]` with its defaults, `options` overriding them."""
    defaults = dict(
        builder="assembler",
        pull_from_registries=False,
        publish_base_images=False,
        task_root="/var/task",
        inline_cache=False,
        cache_from=[],
        push_attempts=3,
        ecr_registries=[],
        ecr_create_repositories=True,
        ecr_scan_on_push=True,
        ecr_tag_mutability="MUTABLE",
        deploy_manifest="deploy-manifest.json",
    )
    values = {**defaults, **options}
    values["builder"] = LambdaImageBuilder(values["builder"])
    values["ecr_tag_mutability"] = EcrTagMutability(values["ecr_tag_mutability"])
    return create_subsystem(ChromadbLambdaSubsystem, **values)


def process_result(stdout: str, exit_code: int = 0, stderr: str = "") -> FallibleProcessResult:
    return FallibleProcessResult(
        stdout=stdout.encode(),
        stdout_digest=EMPTY_DIGEST,
        stderr=stderr.encode(),
        stderr_digest=EMPTY_DIGEST,
        exit_code=exit_code,
        output_digest=EMPTY_DIGEST,
        metadata=ProcessResultMetadata(
            0,
            ProcessExecutionEnvironment(
                environment_name=None,
                platform="linux_x86_64",
                docker_image=None,
                remote_execution=False,
                remote_execution_extra_platform_properties=[],
            ),
            "ran",
            0,
        ),
    )


def fail_if_requested(what: str):
    """A mock for a Get the rule must not make on this path."""

    def mock(*_):
        raise AssertionError(f"{what} must not be requested here")

    return mock


def lambda_target(**fields) -> ChromadbLambdaTarget:
    """The `chromadb_lambda` at LAMBDA, `fields` added to its handler and base image."""
    return ChromadbLambdaTarget({"handler": "handler.py:handle", "base_image": "//base:base", **fields}, LAMBDA)


def rule_requests(coroutine, answer, batches: list[tuple]) -> object:
    """Runs a rule's coroutine, answering each `Get` with `answer(get)`, and returns its result.

    Appends to `batches` the `Get`s it makes, one tuple per await: a `MultiGet` is one batch, what
    the engine computes concurrently. An answer may raise to stop the rule once it asked enough.
    """
    value = None
    while True:
        try:
            yielded = coroutine.send(value)
        except StopIteration as stop:
            return stop.value
        gets = tuple(yielded) if isinstance(yielded, tuple) else (yielded,)
        batches.append(gets)
        answers = tuple(answer(get) for get in gets)
        value = answers if isinstance(yielded, tuple) else answers[0]
