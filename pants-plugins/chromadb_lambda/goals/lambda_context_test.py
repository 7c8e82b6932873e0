from __future__ import annotations

import json

import pytest
from pants.engine.addresses import Address
from pants.testutil.rule_runner import RuleRunner

from chromadb_lambda.goals import lambda_context as explain
from chromadb_lambda.goals.lambda_context import LambdaContextGoal
from chromadb_lambda.testutil import BASE_REPO, BOOTSTRAP_ENV, closure_rule_runner, lambda_build, set_options
from chromadb_lambda.util_rules.context import ANCESTOR_INIT, dependency_chain, owner_of


@pytest.fixture
def rule_runner() -> RuleRunner:
    closure_runner = closure_rule_runner()
    runner = RuleRunner(rules=[*closure_runner.rules, *explain.rules()], target_types=closure_runner.target_types)
    set_options(runner)
    return runner


def run(rule_runner: RuleRunner, *args: str):
    # run_goal_rule sets options anew: repeat the source roots and the bootstrap environment.
    return rule_runner.run_goal_rule(
        LambdaContextGoal,
        global_args=["--source-root-patterns=['/app', '/functions']"],
        args=args,
        env_inherit=BOOTSTRAP_ENV,
    )


def test_lambda_context_json_says_why_each_file_is_there(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            **BASE_REPO,
            "functions/fn/BUILD": lambda_build("fn"),
            "functions/fn/__init__.py": "",
            "functions/fn/main.py": "from . import helpers\nfrom shared.logs import log\n\ndef handle(event, context):\n    return 1\n",
            "functions/fn/helpers.py": "from text import vocab\n",
        }
    )
    result = run(rule_runner, "--lambda-context-format=json", "functions/fn:fn")
    assert result.exit_code == 0
    [report] = json.loads(result.stdout)
    why = {f["path"]: f["why"] for f in report["files"]}
    assert why["fn/main.py"] == ["functions/fn/main.py:src"]
    assert why["text/words.txt"] == [
        "functions/fn/main.py:src",
        "functions/fn/helpers.py:src",
        "app/text/vocab.py",
        "app/text/words.txt:data",
    ]
    assert why["fn/__init__.py"] == ANCESTOR_INIT
    assert report["provided_by_base"] == ["shared/__init__.py", "shared/logs.py"]
    assert report["total_bytes"] == sum(f["size"] for f in report["files"])

    text = run(rule_runner, "functions/fn:fn").stdout
    assert text.startswith("functions/fn:fn: handler fn.main.handle, FROM base:base\n")
    assert "why: functions/fn/main.py:src -> functions/fn/helpers.py:src -> app/text/vocab.py" in text
    assert "left out, the base image provides them:" in text


def test_dependency_chain_and_owner() -> None:
    a, b, c = Address("x", relative_file_path="a.py"), Address("x", relative_file_path="b.py"), Address("y", relative_file_path="c.txt")
    parents = {a: None, b: a, c: b}
    assert dependency_chain(parents, c) == (a, b, c)
    assert owner_of("x/b.py", parents) == b and owner_of("c.txt", parents) == c and owner_of("z.py", parents) is None
