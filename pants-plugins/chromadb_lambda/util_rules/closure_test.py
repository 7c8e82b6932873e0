from __future__ import annotations

import logging
import os
from textwrap import dedent

import pytest
from pants.backend.docker.target_types import DockerImageTarget
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.faas import ResolvedPythonFaaSHandler
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex_environment import PythonExecutable
from pants.engine.addresses import Address, Addresses
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.target import TransitiveTargets, TransitiveTargetsRequest, WrappedTarget
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import RuleRunner

from chromadb_lambda.util_rules.checks import path_collisions, split_packages
from chromadb_lambda.util_rules.closure import (
    HandlerClosure,
    HandlerClosureRequest,
    LambdaClosure,
    LambdaClosureRequest,
    compute_lambda_closure,
)
from chromadb_lambda.testutil import (
    BASE,
    BASE_REPO,
    LAMBDA,
    closure_rule_runner,
    lambda_build,
    lambda_subsystem,
    lambda_target,
    rule_requests,
    set_options,
)


@pytest.fixture
def rule_runner() -> RuleRunner:
    return closure_rule_runner()


def get_closure(rule_runner: RuleRunner, address: Address) -> LambdaClosure:
    return rule_runner.request(LambdaClosure, [LambdaClosureRequest(address)])


def context_files(rule_runner: RuleRunner, address: Address) -> set[str]:
    return {f.path for f in get_closure(rule_runner, address).files}


def test_relative_imports_packages_with_code_and_resources(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            **BASE_REPO,
            "functions/poller/BUILD": lambda_build("poller"),
            "functions/poller/__init__.py": "",
            "functions/poller/main.py": dedent(
                """\
                from . import helpers
                from store import TABLE
                from shared.logs import log

                def handle(event, context):
                    return helpers.go(TABLE)
                """
            ),
            "functions/poller/helpers.py": "from text import vocab\n\ndef go(x):\n    return x\n",
        }
    )
    closure_ = get_closure(rule_runner, Address("functions/poller", target_name="poller"))
    assert {f.path for f in closure_.files} == {
        "poller/__init__.py",
        "poller/main.py",
        "poller/helpers.py",
        # `from store import TABLE` pulls the package's __init__.py, whose code imports tables.py.
        "store/__init__.py",
        "store/tables.py",
        "text/__init__.py",
        "text/vocab.py",
        "text/words.txt",
    }
    # The base image's own first-party dependency is left out, with its ancestor __init__.py.
    assert closure_.provided_by_base == ("shared/__init__.py", "shared/logs.py")
    assert closure_.handler == "poller.main.handle"
    assert closure_.base_address == Address("base", target_name="base")
    assert closure_.total_bytes == sum(f.size for f in closure_.files) > 0


def test_from_package_import_module_and_module_beside_another_lambda(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            **BASE_REPO,
            "functions/words/BUILD": lambda_build("words"),
            "functions/words/__init__.py": "",
            "functions/words/main.py": "def handle(event, context):\n    return 1\n",
            "functions/words/polling.py": "from text import vocab\n",
            "functions/lines/BUILD": lambda_build("lines"),
            "functions/lines/__init__.py": "",
            "functions/lines/main.py": "from words import polling\n\ndef handle(event, context):\n    return 2\n",
        }
    )
    assert context_files(rule_runner, Address("functions/lines", target_name="lines")) == {
        "lines/__init__.py",
        "lines/main.py",
        "words/__init__.py",
        "words/polling.py",
        "text/__init__.py",
        "text/vocab.py",
        "text/words.txt",
    }


def test_dotted_module_handler(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            **BASE_REPO,
            "functions/dotted/BUILD": lambda_build("dotted", handler="dotted.main:handle"),
            "functions/dotted/main.py": "def handle(event, context):\n    return 1\n",
        }
    )
    closure_ = get_closure(rule_runner, Address("functions/dotted", target_name="dotted"))
    assert {f.path for f in closure_.files} == {"dotted/main.py"}
    assert closure_.handler == "dotted.main.handle"


def test_missing_third_party_requirement_is_an_error(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            **BASE_REPO,
            "functions/web/BUILD": lambda_build("web"),
            "functions/web/main.py": "import requests\n\ndef handle(event, context):\n    return 1\n",
        }
    )
    with pytest.raises(ExecutionError) as e:
        get_closure(rule_runner, Address("functions/web", target_name="web"))
    message = str(e.value)
    assert "MissingThirdPartyRequirementError" in message
    assert "functions/web:web" in message and "3rdparty:requests" in message and "base:base" in message

    set_options(rule_runner, "--lambda-image-missing-third-party=warning")
    assert context_files(rule_runner, Address("functions/web", target_name="web")) == {"web/main.py"}


@pytest.mark.parametrize(
    "handler, expected",
    [
        ("main.py:handel", r"names `handel`, but `fn.main` \(functions/fn/main.py\) does not define it\. Did you mean 'handle'\?"),
        ("nope.py:handle", r"nope\.py"),
        ("fn.nope:handle", r"names the module `fn.nope`, but no `python_source` target"),
        ("main.py", r"must end in the format `:my_handler_func`"),
    ],
)
def test_bad_handler_names_target_and_field(rule_runner: RuleRunner, handler: str, expected: str) -> None:
    rule_runner.write_files(
        {
            **BASE_REPO,
            "functions/fn/BUILD": lambda_build("fn", handler=handler),
            "functions/fn/main.py": "def handle(event, context):\n    return 1\n",
        }
    )
    with pytest.raises(ExecutionError, match=expected) as e:
        get_closure(rule_runner, Address("functions/fn", target_name="fn"))
    assert "functions/fn:fn" in str(e.value)
    assert "handler" in str(e.value)


def test_base_image_must_be_a_docker_image(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            **BASE_REPO,
            "functions/fn/BUILD": dedent(
                """\
                python_sources(name="src")
                chromadb_lambda(name="fn", handler="main.py:handle", base_image="app/shared:shared")
                """
            ),
            "functions/fn/main.py": "def handle(event, context):\n    return 1\n",
        }
    )
    with pytest.raises(ExecutionError, match=r"The `base_image` field in target functions/fn:fn must be the address of a `docker_image`"):
        get_closure(rule_runner, Address("functions/fn", target_name="fn"))


def test_package_split_between_base_and_lambda_is_an_error(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            **BASE_REPO,
            # The base bakes in only the package's __init__.py.
            "base/BUILD": 'docker_image(name="base", dependencies=["3rdparty:boto3", "app/text/__init__.py"])',
            "functions/fn/BUILD": lambda_build("fn"),
            "functions/fn/main.py": "from text import vocab\n\ndef handle(event, context):\n    return 1\n",
        }
    )
    with pytest.raises(ExecutionError) as e:
        get_closure(rule_runner, Address("functions/fn", target_name="fn"))
    message = str(e.value)
    assert "SplitPackageError" in message and "functions/fn:fn" in message and "`text`" in message
    assert "text/vocab.py" in message and "text/words.txt" in message


def test_split_packages_finds_the_outermost_base_package() -> None:
    provided = frozenset({"a/__init__.py", "a/b/__init__.py", "c/__init__.py"})
    assert split_packages(["a/b/m.py", "a/x.txt", "c/__init__.py", "d/m.py"], provided) == {"a": ("a/b/m.py", "a/x.txt")}


def test_syntax_error_in_a_closure_file_names_file_and_line(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            **BASE_REPO,
            "functions/fn/BUILD": lambda_build("fn"),
            "functions/fn/main.py": "from fn import util\n\ndef handle(event, context):\n    return 1\n",
            "functions/fn/util.py": "x = 1\ndef broken(:\n",
        }
    )
    with pytest.raises(ExecutionError, match=r"handler closure of functions/fn:fn does not parse with the Lambda's Python \(3\.11\.\d+\): functions/fn/util.py:2: "):
        get_closure(rule_runner, Address("functions/fn", target_name="fn"))


def test_dynamic_imports_and_large_contexts_warn(rule_runner: RuleRunner, caplog) -> None:
    rule_runner.write_files(
        {
            **BASE_REPO,
            "functions/fn/BUILD": lambda_build("fn"),
            "functions/fn/main.py": "import importlib\n\ndef handle(event, context):\n    return importlib.import_module(event['kind'])\n",
        }
    )
    set_options(rule_runner, "--lambda-image-context-size-warning=10")
    caplog.set_level(logging.WARNING)
    get_closure(rule_runner, Address("functions/fn", target_name="fn"))
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "fn/main.py:4: importlib.import_module(...)" in warnings
    assert "`dependencies` field of functions/fn:fn" in warnings
    assert "over `[lambda-image].context_size_warning` (10)" in warnings and "fn/main.py:" in warnings


def test_same_path_from_two_source_roots_is_an_error_listing_both(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            **BASE_REPO,
            "app/util/BUILD": "python_sources()",
            "app/util/text.py": "A = 1\n",
            "functions/util/BUILD": "python_sources()",
            "functions/util/text.py": "A = 2\n",
            "functions/fn/BUILD": lambda_build(
                "fn", extra=', dependencies=["app/util/text.py", "functions/util/text.py"]'
            ),
            "functions/fn/main.py": "def handle(event, context):\n    return 1\n",
        }
    )
    with pytest.raises(ExecutionError) as e:
        get_closure(rule_runner, Address("functions/fn", target_name="fn"))
    message = str(e.value)
    assert "The handler closure of functions/fn:fn has files from different source roots" in message
    assert "util/text.py <- app/util/text.py, functions/util/text.py" in message


def test_path_collisions_respect_source_roots_and_unstripped_files() -> None:
    roots = ("app", "functions", "app/nested")
    assert path_collisions(["app/a/x.py", "functions/a/x.py", "app/b/y.py"], roots, frozenset()) == {
        "a/x.py": ("app/a/x.py", "functions/a/x.py")
    }
    # The longest root wins; `files` keep their build-root path, so they do not collide here.
    assert path_collisions(["app/nested/m.py", "app/m.py"], roots, frozenset()) == {"m.py": ("app/m.py", "app/nested/m.py")}
    assert path_collisions(["app/x.json", "functions/x.json"], roots, frozenset({"app/x.json"})) == {}
    assert path_collisions(["app/data/x.json", "data/x.json"], roots, frozenset({"data/x.json"})) == {
        "data/x.json": ("app/data/x.json", "data/x.json")
    }


def test_symlink_out_of_the_repo_is_refused_naming_the_link(rule_runner: RuleRunner, tmp_path) -> None:
    outside = tmp_path / "secret.py"
    outside.write_text("SECRET = 1\n")
    rule_runner.write_files(
        {
            **BASE_REPO,
            "functions/fn/BUILD": lambda_build("fn"),
            "functions/fn/main.py": "from . import evil\n\ndef handle(event, context):\n    return evil.SECRET\n",
        }
    )
    link = os.path.join(rule_runner.build_root, "functions/fn/evil.py")
    os.symlink(os.path.relpath(outside, os.path.dirname(link)), link)
    with pytest.raises(ExecutionError, match=r'functions/fn/evil\.py.*(outside of the buildroot|Absolute symlink)'):
        get_closure(rule_runner, Address("functions/fn", target_name="fn"))


def test_file_names_with_spaces_and_non_ascii_characters_are_copied(rule_runner: RuleRunner) -> None:
    long_dir = "/".join(["deep"] * 30)
    rule_runner.write_files(
        {
            **BASE_REPO,
            "functions/fn/BUILD": lambda_build("fn", extra=', dependencies=[":data"]')
            + 'resources(name="data", sources=["**/*.json"])\n',
            "functions/fn/main.py": "def handle(event, context):\n    return 1\n",
            "functions/fn/label schema é.json": "{}",
            f"functions/fn/{long_dir}/données.json": "{}",
        }
    )
    files = context_files(rule_runner, Address("functions/fn", target_name="fn"))
    assert {"fn/label schema é.json", f"fn/{long_dir}/données.json"} <= files



class _Stop(Exception):
    """Raised by a test's answer to stop a rule once it made the requests the test looks at."""


def test_handler_closure_is_walked_while_the_base_closure_and_the_interpreter_are_found() -> None:
    # On a cold start the base's closure waits for the Dockerfile parser, a PEX, so for the
    # interpreter discovery (seconds): the handler's closure must not wait behind it, and the
    # discovery (the scans need it too) must start at once, not when the first walk ends.
    python_setup = create_subsystem(PythonSetup, interpreter_constraints=["CPython==3.11.*"])
    targets = {LAMBDA: lambda_target(), BASE: DockerImageTarget({}, BASE)}

    def answer(get):
        if get.output_type is WrappedTarget:
            return WrappedTarget(targets[get.inputs[0].address])
        if get.output_type is Addresses:
            return Addresses([BASE])
        raise _Stop()

    batches: list[tuple] = []
    with pytest.raises(_Stop):
        rule_requests(compute_lambda_closure(LambdaClosureRequest(LAMBDA), lambda_subsystem(), python_setup), answer, batches)
    requested = {get.output_type: get.inputs[0] for get in batches[-1]}
    assert set(requested) == {ResolvedPythonFaaSHandler, TransitiveTargets, HandlerClosure, PythonExecutable}
    assert requested[TransitiveTargets] == TransitiveTargetsRequest([BASE])
    assert requested[HandlerClosure] == HandlerClosureRequest(LAMBDA)
    assert requested[PythonExecutable] == InterpreterConstraints(["CPython==3.11.*"])
