"""A minimal AWS Lambda Runtime API server: serves one invocation, records the handler's answer.

The Lambda runtime client in an image (`awslambdaric`, or AWS's `/lambda-entrypoint.sh` when
`AWS_LAMBDA_RUNTIME_API` is set) polls `GET /2018-06-01/runtime/invocation/next`, runs the handler
and POSTs its result to `.../invocation/<request id>/response` (or `.../error`; a handler that cannot
even be loaded POSTs to `.../init/error`).

Two uses, standard library only (it runs on Pants' Python and on the image's):
- imported, `RuntimeApi` serves one event on loopback (the end-to-end tests);
- run as a script inside a Lambda image by `pants run` (`run_lambda.py`), `main()` reads the event
  from stdin, serves it on the container's own loopback, starts the image's entrypoint + command with
  `AWS_LAMBDA_RUNTIME_API` pointing at itself, stops it after the answer or the timeout, and prints
  one `RESULT_MARKER` line with the outcome on stdout. The function's own output goes to stderr.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

PREFIX = "/2018-06-01/runtime"
RESULT_MARKER = "CHROMADB_LAMBDA_RESULT"
# Seconds a function gets when neither the caller nor the target says otherwise.
DEFAULT_TIMEOUT = 30.0


class RuntimeApi:
    def __init__(
        self, event: Any, function_name: str = "test-function", timeout: float = 300.0, host: str = "127.0.0.1"
    ) -> None:
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.function_name = function_name
        self.timeout = timeout
        self.result: Any = None
        self.error: dict[str, Any] | None = None
        # Set when the handler answered (a response or an error).
        self.answered = threading.Event()
        # Monotonic times of the invocation handed out and of the answer.
        self.started: float | None = None
        self.finished: float | None = None
        self._served = False
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def duration_ms(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started) * 1000

    def __enter__(self) -> "RuntimeApi":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.answered.set()
        self._server.shutdown()
        self._server.server_close()

    def next_invocation(self) -> tuple[int, dict[str, str], bytes]:
        if self._served:
            # One invocation: hold the poller until the answer, then fail it (it exits).
            self.answered.wait(timeout=self.timeout)
            return 500, {}, b'{"errorMessage": "no more invocations"}'
        self._served = True
        self.started = time.monotonic()
        deadline_ms = int((time.time() + self.timeout) * 1000)
        # awslambdaric's native client crashes unless every one of these headers is present.
        headers = {
            "Lambda-Runtime-Aws-Request-Id": self.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}",
            "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
            "Lambda-Runtime-Client-Context": "",
            "Lambda-Runtime-Cognito-Identity": "",
            "Content-Type": "application/json",
        }
        return 200, headers, json.dumps(self.event).encode()

    def record(self, path: str, body: bytes) -> bool:
        """Records a POSTed answer; False for a path that is not one."""
        if path == f"{PREFIX}/invocation/{self.request_id}/response":
            self.result = json.loads(body or b"null")
        elif path in (f"{PREFIX}/invocation/{self.request_id}/error", f"{PREFIX}/init/error"):
            try:
                self.error = json.loads(body or b"{}")
            except ValueError:
                self.error = {"errorType": "Runtime.Unknown", "errorMessage": body.decode(errors="replace")}
        else:
            return False
        self.finished = time.monotonic()
        self.answered.set()
        return True

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == f"{PREFIX}/invocation/next":
                    self._send(*api.next_invocation())
                else:
                    self._send(404, {}, b"{}")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if api.record(self.path, body):
                    self._send(202, {}, b'{"status": "OK"}')
                else:
                    self._send(404, {}, b"{}")

        return Handler


def outcome(api: RuntimeApi, timed_out: bool, exit_code: int | None) -> dict[str, Any]:
    """What the host side reads: the response, or the error, or why there is neither."""
    result: dict[str, Any] = {"duration_ms": api.duration_ms, "timed_out": timed_out}
    if api.error is not None:
        result["error"] = api.error
    elif api.answered.is_set() and api.finished is not None:
        result["response"] = api.result
    elif not timed_out:
        result["exited"] = exit_code
    return result


def _stop(child: subprocess.Popen) -> int | None:
    if child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        return child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return None


def serve_one(event: Any, command: Sequence[str], function_name: str, timeout: float) -> dict[str, Any]:
    """Runs `command` (the image's entrypoint + command) against a Runtime API serving `event` once."""
    with RuntimeApi(event, function_name=function_name, timeout=timeout) as api:
        # Unbuffered: the function is killed after its answer, and its last lines must not be lost.
        env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": api.address, "PYTHONUNBUFFERED": "1"}
        # The function's stdout and stderr are its logs: both to stderr, stdout carries the result.
        child = subprocess.Popen(list(command), env=env, stdout=sys.stderr.fileno(), start_new_session=True)
        deadline = time.monotonic() + timeout
        timed_out = False
        while not api.answered.wait(timeout=0.05):
            if child.poll() is not None:
                # Exited without an answer: a crash, or an entrypoint that does not speak the API.
                api.answered.wait(timeout=0.5)
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
        exit_code = _stop(child)
        return outcome(api, timed_out, exit_code)


def main(argv: Sequence[str]) -> int:
    """`<timeout seconds> <function name> -- <command...>`; the event on stdin."""
    timeout, function_name, separator, *command = argv
    assert separator == "--" and command, "usage: TIMEOUT FUNCTION_NAME -- COMMAND..."
    event = json.loads(sys.stdin.read() or "{}")
    result = serve_one(event, command, function_name, float(timeout))
    sys.stderr.flush()
    print(f"{RESULT_MARKER} {json.dumps(result)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
