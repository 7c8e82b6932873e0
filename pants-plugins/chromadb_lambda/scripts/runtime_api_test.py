from __future__ import annotations

import json
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from chromadb_lambda.scripts.runtime_api import PREFIX, RuntimeApi, serve_one


def get(url: str) -> tuple[dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(response.headers), response.read()


def post(url: str, body: bytes) -> int:
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=10) as response:
        return response.status


def test_serves_the_event_with_every_header_awslambdaric_needs_and_records_the_response() -> None:
    with RuntimeApi({"limit": 3}, function_name="find-unembedded", timeout=30) as api:
        headers, body = get(f"http://{api.address}{PREFIX}/invocation/next")
        assert json.loads(body) == {"limit": 3}
        assert headers["Lambda-Runtime-Aws-Request-Id"] == api.request_id
        assert headers["Lambda-Runtime-Invoked-Function-Arn"] == (
            "arn:aws:lambda:us-east-1:123456789012:function:find-unembedded"
        )
        for name in ("Lambda-Runtime-Deadline-Ms", "Lambda-Runtime-Trace-Id", "Lambda-Runtime-Client-Context", "Lambda-Runtime-Cognito-Identity"):
            assert name in headers
        assert not api.answered.is_set()
        assert post(f"http://{api.address}{PREFIX}/invocation/{api.request_id}/response", b'{"count": 2}') == 202
        assert api.answered.is_set()
        assert api.result == {"count": 2}
        assert api.error is None
        assert api.duration_ms is not None and api.duration_ms >= 0


def test_a_second_poll_fails_once_answered_so_the_client_exits() -> None:
    with RuntimeApi({}, timeout=30) as api:
        get(f"http://{api.address}{PREFIX}/invocation/next")
        post(f"http://{api.address}{PREFIX}/invocation/{api.request_id}/response", b"null")
        with pytest.raises(urllib.error.HTTPError, match="500"):
            get(f"http://{api.address}{PREFIX}/invocation/next")


@pytest.mark.parametrize("path", ["invocation/{id}/error", "init/error"])
def test_records_an_invocation_or_init_error(path: str) -> None:
    with RuntimeApi({}, timeout=30) as api:
        get(f"http://{api.address}{PREFIX}/invocation/next")
        body = b'{"errorType": "KeyError", "errorMessage": "\'batch_id\'"}'
        assert post(f"http://{api.address}{PREFIX}/{path.format(id=api.request_id)}", body) == 202
        assert api.error == {"errorType": "KeyError", "errorMessage": "'batch_id'"}
        assert api.result is None


def test_a_response_for_another_request_id_is_refused() -> None:
    with RuntimeApi({}, timeout=30) as api:
        get(f"http://{api.address}{PREFIX}/invocation/next")
        with pytest.raises(urllib.error.HTTPError, match="404"):
            post(f"http://{api.address}{PREFIX}/invocation/not-the-id/response", b"1")
        assert not api.answered.is_set()


# A stand-in for the image's runtime client: polls once, then answers as the first argument says.
FAKE_RUNTIME = textwrap.dedent(
    """
    import json, os, sys, time, urllib.request
    api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
    with urllib.request.urlopen(api + "next") as r:
        request_id, event = r.headers["Lambda-Runtime-Aws-Request-Id"], json.loads(r.read())
    print("handler log line")
    mode = sys.argv[1]
    if mode == "sleep":
        time.sleep(60)
    if mode == "exit":
        sys.exit(3)
    kind, body = ("error", {"errorType": "ZeroDivisionError", "errorMessage": "division by zero"}) if mode == "raise" else ("response", {"echo": event})
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/" + kind, data=json.dumps(body).encode(), method="POST"))
    time.sleep(60)  # like awslambdaric, it would poll again: serve_one stops it
    """
)


@pytest.fixture
def fake_runtime(tmp_path: Path) -> list[str]:
    script = tmp_path / "runtime.py"
    script.write_text(FAKE_RUNTIME)
    return [sys.executable, str(script)]


def test_serve_one_returns_the_response_and_stops_the_runtime(fake_runtime: list[str]) -> None:
    result = serve_one({"n": 1}, [*fake_runtime, "ok"], "fn", timeout=30)
    assert result["response"] == {"echo": {"n": 1}}
    assert result["timed_out"] is False
    assert "error" not in result


def test_serve_one_returns_the_error(fake_runtime: list[str]) -> None:
    result = serve_one({}, [*fake_runtime, "raise"], "fn", timeout=30)
    assert result["error"] == {"errorType": "ZeroDivisionError", "errorMessage": "division by zero"}
    assert "response" not in result


def test_serve_one_stops_a_handler_that_runs_past_the_timeout(fake_runtime: list[str]) -> None:
    result = serve_one({}, [*fake_runtime, "sleep"], "fn", timeout=1.5)
    assert result == {"duration_ms": None, "timed_out": True}


def test_serve_one_reports_a_runtime_that_exits_without_answering(fake_runtime: list[str]) -> None:
    result = serve_one({}, [*fake_runtime, "exit"], "fn", timeout=30)
    assert result == {"duration_ms": None, "timed_out": False, "exited": 3}
