"""End to end: `pants run <chromadb_lambda> -- ...` with real Pants on the real engine.

Each example Lambda answers an event through the plugin's Runtime API inside its container (AWS
calls to a moto server named by `--endpoint-url`, credentials copied from the caller's environment by
name); a handler that raises exits non-zero with its error type; one that sleeps past `--timeout` is
stopped; with no flags the function has no network and none of the caller's credentials; and an
image whose entrypoint is a stand-in for AWS's `/lambda-entrypoint.sh` (which uses an external Runtime
API when `AWS_LAMBDA_RUNTIME_API` is set) answers the same way.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from e2e.harness import PantsResult, copy_repo, docker, free_port, receipt_aws, run_pants, stop_pantsd
from receipt_dynamo import DynamoClient, ReceiptWord

REPOSITORY = f"chromadb-lambda-run-e2e-{uuid.uuid4().hex[:8]}"
TABLE = "receipts-run-e2e"
BUCKET = "receipt-embeddings-run-e2e"
# The caller's credentials: the functions get them only through `--env NAME`.
CALLER_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PROBE_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_RUNTIME_API")

ECHO_HANDLER = '''\
"""Echoes its event; raises, sleeps or probes the network when the event asks."""
import os
import socket
import time


def handle(event, context):
    print("echo log line", event.get("tag"))
    if "raise" in event:
        raise ValueError(event["raise"])
    time.sleep(event.get("sleep", 0))
    result = {"echo": event, "env": {name: os.environ.get(name) for name in event.get("env", [])}}
    if "connect" in event:
        try:
            socket.create_connection(("127.0.0.1", event["connect"]), timeout=3).close()
            result["connect"] = "connected"
        except OSError as e:
            result["connect"] = type(e).__name__
    result["remaining_ms_positive"] = context.get_remaining_time_in_millis() > 0
    return result
'''

# A stand-in for AWS's /lambda-entrypoint.sh: without AWS_LAMBDA_RUNTIME_API it would start the
# runtime interface emulator (not in this image); with it, the runtime client against that API.
FAKE_AWS_ENTRYPOINT = r"""
RUN printf '%s\n' '#!/bin/sh' \
    'if [ -z "$AWS_LAMBDA_RUNTIME_API" ]; then echo "fake-aws-entrypoint: would start aws-lambda-rie" >&2; exit 42; fi' \
    'echo "fake-aws-entrypoint: external Runtime API $AWS_LAMBDA_RUNTIME_API" >&2' \
    'exec /opt/venv/bin/python3 -m awslambdaric "$@"' > /lambda-entrypoint.sh && chmod +x /lambda-entrypoint.sh
ENTRYPOINT ["/lambda-entrypoint.sh"]
"""


@pytest.fixture(scope="module")
def build_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("repo"))
    echo = root / "lambdas" / "echo"
    echo.mkdir()
    (echo / "__init__.py").write_text("")
    (echo / "handler.py").write_text(ECHO_HANDLER)
    (echo / "BUILD").write_text(
        'python_sources(name="sources")\n\n'
        'chromadb_lambda(name="echo", handler="handler.py:handle", base_image="//base:lambda-base", timeout=20)\n'
    )
    yield root
    stop_pantsd(root)
    listing = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    mine = [ref for ref in listing if ref.startswith(f"{REPOSITORY}/")]
    if mine:
        docker("image", "rm", *mine, check=False)


def pants_run(root: Path, target: str, *args: str, env: dict[str, str] | None = None) -> PantsResult:
    return run_pants(
        root,
        [f"--docker-default-repository={REPOSITORY}/{{name}}", "run", target, "--", *args],
        env={**CALLER_ENV, **(env or {})},
        pantsd=True,
    )


def answer(result: PantsResult) -> Any:
    result.assert_success()
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    """A moto server with the receipt table and bucket; its endpoint URL."""
    with receipt_aws(TABLE, BUCKET, CALLER_ENV) as env:
        yield env["AWS_ENDPOINT_URL"]


def aws_args(url: str, event: dict[str, Any]) -> tuple[str, ...]:
    return (
        "--event", json.dumps(event),
        "--endpoint-url", url,
        "--env", "AWS_ACCESS_KEY_ID",
        "--env", "AWS_SECRET_ACCESS_KEY",
        "--env", "AWS_DEFAULT_REGION",
        "--env", f"RECEIPT_TABLE={TABLE}",
        "--env", f"RECEIPT_BUCKET={BUCKET}",
    )


WORD_KEYS = [
    "IMAGE#img-1#RECEIPT#00001#LINE#00001#WORD#00001",
    "IMAGE#img-1#RECEIPT#00001#LINE#00002#WORD#00001",
]


def batch_result(keys: list[str]) -> bytes:
    lines = [
        json.dumps({"custom_id": key, "response": {"body": {"data": [{"embedding": [float(i), 1.0, 0.5]}]}}})
        for i, key in enumerate(keys)
    ]
    return "\n".join(lines).encode()


def test_every_example_lambda_answers_through_pants_run(build_root: Path, aws: str) -> None:
    s3 = boto3.client("s3")
    DynamoClient(TABLE).put_words(
        ReceiptWord("img-1", r, line, w, text, status)
        for r, line, w, text, status in [(1, 1, 1, "MILK", "NONE"), (1, 2, 1, "4.99", "NONE"), (1, 3, 1, "TOTAL", "SUCCESS")]
    )

    found = pants_run(build_root, "lambdas/find_unembedded:find_unembedded", *aws_args(aws, {"limit": 10}))
    assert answer(found) == {"count": 2, "keys": WORD_KEYS}
    assert "Duration: " in found.stderr
    assert "network host" in found.stderr

    submitted = answer(pants_run(build_root, "lambdas/submit_batch:submit_batch", *aws_args(aws, {"label": "product name"})))
    assert submitted["submitted"] == 2 and submitted["batch_id"].startswith("batch-")
    assert submitted["s3_key"] == f"batches/{submitted['batch_id']}.jsonl"
    request_lines = s3.get_object(Bucket=BUCKET, Key=submitted["s3_key"])["Body"].read().decode().splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in request_lines) == WORD_KEYS

    pending = answer(pants_run(build_root, "lambdas/list_pending:list_pending", *aws_args(aws, {"kind": "word"})))
    assert pending == {"pending": [submitted["batch_id"]]}

    s3.put_object(Bucket=BUCKET, Key="results/words.jsonl", Body=batch_result(WORD_KEYS))
    polled = pants_run(
        build_root, "lambdas/word_polling:word_polling", *aws_args(aws, {"batch_id": "b-words", "result_key": "results/words.jsonl"})
    )
    words = answer(polled)
    assert words["upserted"] == 2 and words["delta_key"] == "deltas/words/b-words.tar.gz"
    assert s3.head_object(Bucket=BUCKET, Key=words["delta_key"])["ContentLength"] == words["delta_bytes"] > 0
    # The function's own log line (json_log) is on stderr, not in the response on stdout.
    assert "word_batch_polled" in polled.stderr and "word_batch_polled" not in polled.stdout

    s3.put_object(Bucket=BUCKET, Key="results/lines.jsonl", Body=batch_result(["IMAGE#img-1#RECEIPT#00001#LINE#00001"]))
    lines = answer(
        pants_run(build_root, "lambdas/line_polling:line_polling", *aws_args(aws, {"batch_id": "b-lines", "result_key": "results/lines.jsonl"}))
    )
    assert lines["upserted"] == 1 and lines["delta_key"] == "deltas/lines/b-lines.tar.gz"

    compacted = answer(pants_run(build_root, "lambdas/compaction:compaction", *aws_args(aws, {"collection": "words"})))
    assert compacted == {
        "collection": "words",
        "deltas": 1,
        "snapshot_size": 2,
        "snapshot_key": "snapshots/words/latest.tar.gz",
    }


def test_by_default_no_network_and_no_caller_credentials(build_root: Path) -> None:
    # Something listens on the host's loopback: the function must not reach it.
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        event = {"tag": "isolated", "env": list(PROBE_ENV), "connect": port}
        isolated = pants_run(build_root, "lambdas/echo:echo", "--event", json.dumps(event))
        result = answer(isolated)
        # The Runtime API is served inside the container, on its own loopback.
        runtime_api = result["env"].pop("AWS_LAMBDA_RUNTIME_API")
        assert runtime_api.startswith("127.0.0.1:")
        assert result == {
            "echo": event,
            "env": {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_LAMBDA_FUNCTION_NAME": "echo"},
            "connect": "ConnectionRefusedError",
            "remaining_ms_positive": True,
        }
        assert "echo log line isolated" in isolated.stderr
        assert "network none, timeout 20 s" in isolated.stderr

        # Asked for by name, the caller's value; with the host's network, the host's loopback.
        event = {"env": ["AWS_SECRET_ACCESS_KEY"], "connect": port}
        shared = answer(
            pants_run(build_root, "lambdas/echo:echo", "--event", json.dumps(event), "--env", "AWS_SECRET_ACCESS_KEY", "--network", "host")
        )
        assert shared["env"] == {"AWS_SECRET_ACCESS_KEY": "testing-secret"}
        assert shared["connect"] == "connected"
    finally:
        server.stop()


def test_event_from_a_file(build_root: Path) -> None:
    (build_root / "event.json").write_text('{"tag": "from-file", "n": [1, 2]}')
    result = answer(pants_run(build_root, "lambdas/echo:echo", "--event", "event.json"))
    assert result["echo"] == {"tag": "from-file", "n": [1, 2]}


def test_a_handler_that_raises_exits_non_zero_with_its_error(build_root: Path) -> None:
    result = pants_run(build_root, "lambdas/echo:echo", "--event", '{"raise": "no such batch"}')
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Error: ValueError: no such batch" in result.stderr
    assert 'handler.py", line' in result.stderr


def test_a_handler_that_sleeps_past_the_timeout_is_stopped(build_root: Path) -> None:
    result = pants_run(build_root, "lambdas/echo:echo", "--event", '{"sleep": 120}', "--timeout", "3")
    assert result.exit_code == 124
    assert result.stdout == ""
    assert "Timed out: lambdas/echo:echo did not answer within 3 s and was stopped" in result.stderr
    # The container is gone (`--rm`: the engine removes it as it stops).
    for _ in range(50):
        left = docker("ps", "-aq", "--filter", f"ancestor={REPOSITORY}/echo:latest").stdout.strip()
        if not left:
            break
        time.sleep(0.2)
    assert not left


def test_an_image_with_an_aws_style_entrypoint_uses_the_plugins_runtime_api(build_root: Path) -> None:
    dockerfile = build_root / "base" / "Dockerfile"
    original = dockerfile.read_text()
    dockerfile.write_text(original.replace('ENTRYPOINT ["/opt/venv/bin/python3", "-m", "awslambdaric"]\n', FAKE_AWS_ENTRYPOINT))
    assert dockerfile.read_text() != original
    try:
        result = pants_run(build_root, "lambdas/echo:echo", "--event", '{"tag": "aws"}')
        assert answer(result)["echo"] == {"tag": "aws"}
        assert "(/lambda-entrypoint.sh echo.handler.handle)" in result.stderr
        assert "fake-aws-entrypoint: external Runtime API 127.0.0.1:" in result.stderr
        assert "echo log line aws" in result.stderr
    finally:
        dockerfile.write_text(original)
