"""A minimal AWS Lambda Runtime API server: serves one invocation, records the handler's answer.

`awslambdaric` in the image polls `GET /2018-06-01/runtime/invocation/next`, runs the handler and
POSTs its result to `.../invocation/<request id>/response` (or `/error`).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


class RuntimeApi:
    def __init__(self, event: dict[str, Any], function_name: str = "test-function") -> None:
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.function_name = function_name
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.answered = threading.Event()
        self._served = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "RuntimeApi":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.answered.set()
        self._server.shutdown()
        self._server.server_close()

    def next_invocation(self) -> tuple[int, dict[str, str], bytes]:
        if self._served:
            # One invocation per test: hold the poller until the test ends, then fail it (it exits).
            self.answered.wait(timeout=300)
            return 500, {}, b'{"errorMessage": "no more invocations"}'
        self._served = True
        deadline_ms = int((time.time() + 300) * 1000)
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
                if self.path == f"{PREFIX}/invocation/{api.request_id}/response":
                    api.result = json.loads(body or b"null")
                elif self.path.endswith("/error"):
                    api.error = json.loads(body or b"{}")
                else:
                    self._send(404, {}, b"{}")
                    return
                self._send(202, {}, b'{"status": "OK"}')
                api.answered.set()

        return Handler
