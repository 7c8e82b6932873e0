from __future__ import annotations

import json
from pathlib import Path

import pytest

from chromadb_lambda.scripts import runtime_api
from chromadb_lambda.scripts.run_lambda_script import (
    EXIT_DOCKER,
    EXIT_ERROR,
    EXIT_TIMEOUT,
    RESULT_MARKER,
    RunOptions,
    UsageError,
    container_env_args,
    docker_run_argv,
    image_command,
    parse_args,
    parse_event,
    parse_env,
    parse_result,
    report,
)


def test_the_script_reads_the_marker_the_server_prints() -> None:
    assert RESULT_MARKER == runtime_api.RESULT_MARKER == "CHROMADB_LAMBDA_RESULT"


def test_defaults_no_event_no_network_the_targets_timeout() -> None:
    assert parse_args([], 12.5) == RunOptions(event={}, env=(), endpoint_url=None, network="none", timeout=12.5)


def test_every_flag() -> None:
    options = parse_args(
        ["--event", '{"limit": 10}', "--env", "AWS_ACCESS_KEY_ID", "--env", "RECEIPT_TABLE=receipts",
         "--endpoint-url", "http://127.0.0.1:5001", "--timeout", "3"],
        30,
    )
    assert options == RunOptions(
        event={"limit": 10},
        env=(("AWS_ACCESS_KEY_ID", None), ("RECEIPT_TABLE", "receipts")),
        endpoint_url="http://127.0.0.1:5001",
        network="host",
        timeout=3.0,
    )


def test_event_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text('{"batch_id": "b-1"}')
    assert parse_event(str(path)) == {"batch_id": "b-1"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", r"`--event` must be JSON or the path of a JSON file, but '\{not json' is not JSON"),
        ("no-such-file.json", r"but 'no-such-file.json' is not JSON"),
    ],
)
def test_bad_events(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_event(value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "1BAD=x"], r"`--env 1BAD=x`: '1BAD' is not an environment variable name"),
        (["--timeout", "0"], r"`--timeout` must be a positive number of seconds, but it is 0"),
        (["--network", "none", "--endpoint-url", "http://127.0.0.1:1"], r"`--endpoint-url` needs the host's network"),
    ],
)
def test_bad_arguments(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_args(argv, 30)


def test_help_exits_0_and_an_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--help"], 30)
    assert exited.value.code == 0
    assert "--endpoint-url ENDPOINT_URL" in capsys.readouterr().out
    with pytest.raises(UsageError):
        parse_args(["--evnt", "{}"], 30)
    assert "unrecognized arguments: --evnt {}" in capsys.readouterr().err


def test_env_by_name_passes_only_the_name_and_never_the_value() -> None:
    options = parse_args(["--env", "AWS_SECRET_ACCESS_KEY", "--env", "RECEIPT_TABLE=receipts"], 30)
    args = container_env_args(options, {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}, "word_polling")
    assert args == (
        "-e", "AWS_LAMBDA_FUNCTION_NAME=word_polling",
        "-e", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
        "-e", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
        "-e", "AWS_SECRET_ACCESS_KEY",
        "-e", "RECEIPT_TABLE=receipts",
    )
    argv = docker_run_argv("/usr/bin/docker", "sha256:abc", "c1", options, args, ("python3",), "word_polling", "SRC")
    assert not any("s3cr3t" in arg for arg in argv)


def test_env_by_name_that_the_caller_lacks_is_an_error() -> None:
    options = parse_args(["--env", "AWS_SESSION_TOKEN"], 30)
    with pytest.raises(UsageError, match=r"`--env AWS_SESSION_TOKEN` copies the value of AWS_SESSION_TOKEN from your environment, where it is not set"):
        container_env_args(options, {}, "fn")


def test_endpoint_url_goes_to_the_function() -> None:
    options = parse_args(["--endpoint-url", "http://127.0.0.1:5001"], 30)
    assert container_env_args(options, {}, "fn")[-2:] == ("-e", "AWS_ENDPOINT_URL=http://127.0.0.1:5001")


def test_docker_run_argv_runs_the_server_as_the_container_process() -> None:
    options = RunOptions(event={}, env=(), endpoint_url=None, network="none", timeout=30.0)
    argv = docker_run_argv(
        "/usr/bin/docker", "sha256:abc", "chromadb-lambda-run-1", options, ("-e", "A=1"),
        ("/opt/venv/bin/python3", "-m", "awslambdaric", "word_polling.handler.handle"), "word_polling", "SOURCE",
    )
    assert argv == (
        "/usr/bin/docker", "run", "--rm", "-i", "--name", "chromadb-lambda-run-1", "--pull", "never",
        "--network", "none", "-e", "A=1", "--entrypoint", "python3", "sha256:abc",
        "-B", "-c", "SOURCE", "30", "word_polling", "--",
        "/opt/venv/bin/python3", "-m", "awslambdaric", "word_polling.handler.handle",
    )


def test_image_command_is_entrypoint_then_cmd() -> None:
    assert image_command({"Entrypoint": ["/lambda-entrypoint.sh"], "Cmd": ["h.handle"]}) == ("/lambda-entrypoint.sh", "h.handle")
    assert image_command({"Entrypoint": None, "Cmd": ["python3", "-m", "awslambdaric", "h.handle"]}) == (
        "python3", "-m", "awslambdaric", "h.handle",
    )


def test_parse_result_reads_the_last_marker_line() -> None:
    out = f'noise\n{RESULT_MARKER} {json.dumps({"response": 1})}\n'
    assert parse_result(out) == {"response": 1}
    assert parse_result("nothing\n") is None


def test_report_of_a_response() -> None:
    assert report({"response": {"b": 2, "a": 1}, "duration_ms": 12.34, "timed_out": False}, 30, "lambdas/x:x") == (
        0, '{"a": 1, "b": 2}\n', ["Duration: 12.3 ms"],
    )


def test_report_of_an_error() -> None:
    error = {"errorType": "KeyError", "errorMessage": "'batch_id'", "stackTrace": ['  File "/var/task/x.py", line 3\n']}
    assert report({"error": error, "duration_ms": 2.0, "timed_out": False}, 30, "lambdas/x:x") == (
        EXIT_ERROR, "", ["Duration: 2.0 ms", "Error: KeyError: 'batch_id'", '  File "/var/task/x.py", line 3'],
    )


def test_report_of_a_timeout() -> None:
    assert report({"duration_ms": None, "timed_out": True}, 2, "lambdas/x:x") == (
        EXIT_TIMEOUT,
        "",
        ["Timed out: lambdas/x:x did not answer within 2 s and was stopped (`--timeout SECONDS`, or the target's `timeout` field)."],
    )


def test_report_of_a_runtime_that_never_answered_and_of_no_outcome() -> None:
    code, out, lines = report({"duration_ms": None, "timed_out": False, "exited": 1}, 30, "lambdas/x:x")
    assert (code, out) == (EXIT_ERROR, "")
    assert lines == [
        "The runtime of lambdas/x:x exited (code 1) without answering the invocation: does the image's "
        "entrypoint run the Lambda runtime client?"
    ]
    assert report(None, 30, "lambdas/x:x")[0] == EXIT_DOCKER
