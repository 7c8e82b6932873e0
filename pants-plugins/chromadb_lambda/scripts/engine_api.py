"""The Docker engine's HTTP API over its unix socket: the connection the plugin reads the engine's
tags on in-process (util_rules/engine.py), and the few `docker` CLI calls of chunk_load.py and prover.py served with the
CLI's exit codes and output: `image inspect --format {{.Id}} REF...`, `image inspect --format {{json
.RepoTags}} REF`, `tag ID REF`, `load --input FILE` and `rmi ID`.

Each CLI call starts a Go program that reads its config and negotiates the API version before its one
request (~0.03-0.08 s on a busy 2-core machine); a request on the socket takes a few ms. Only an engine
named by a `unix://` DOCKER_HOST is asked this way; any other call, and any other engine, runs the CLI
itself (`api_runner` returns `subprocess.run`). Standard library only: run with Pants' own interpreter.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from typing import Any, Callable, Sequence
from urllib.parse import quote, urlencode

try:  # Run as a script beside engine_lock.py (the process's sandbox).
    from engine_lock import engine_socket
except ImportError:  # Imported by the plugin.
    from chromadb_lambda.scripts.engine_lock import engine_socket

ID_FORMAT = "{{.Id}}"
TAGS_FORMAT = "{{json .RepoTags}}"
# What a request on a kept connection raises when the engine closed that connection while it was idle:
# the request may be sent again on a new one.
CLOSED_BY_ENGINE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class UnixConnection(http.client.HTTPConnection):
    """HTTP over the engine's unix socket (keep-alive: one connection serves several requests)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def image_inspect_path(ref: str) -> str:
    """The Engine API path of `GET /images/{name}/json` (what `docker image inspect` asks)."""
    return f"/images/{quote(ref, safe='/:@')}/json"


def split_ref(ref: str) -> tuple[str, str]:
    """`repo[:tag]` -> (repo, tag): the tag is after the last `:` that follows the last `/`."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


class EngineApi:
    def __init__(self, socket_path: str, timeout: float = 600.0) -> None:
        self.socket_path, self.timeout = socket_path, timeout
        # One keep-alive connection per thread (the load runs in its own thread beside the checks): a
        # connection costs little on the engine's own socket, more behind a proxy that relays each one.
        self._local = threading.local()

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request on this thread's connection. A connection the engine closed while it was idle is
        replaced, and the request sent again when resending is harmless (no body, not a removal)."""
        connection = getattr(self._local, "connection", None)
        reused = connection is not None
        if connection is None:
            connection = self._local.connection = UnixConnection(self.socket_path, self.timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        except CLOSED_BY_ENGINE:
            self.close()
            if not reused or body is not None or method == "DELETE":
                raise
            return self.request(method, path, body, headers)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Closes this thread's connection (the next request opens one)."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def image(self, ref: str) -> dict[str, Any] | None:
        status, body = self.request("GET", image_inspect_path(ref))
        if status == 404:
            return None
        if status != 200:
            raise OSError(_message(body) or f"HTTP {status}")
        return json.loads(body)

    def tag(self, image_id: str, ref: str) -> tuple[int, str]:
        repo, tag = split_ref(ref)
        status, body = self.request("POST", f"/images/{quote(image_id, safe=':')}/tag?{urlencode({'repo': repo, 'tag': tag})}")
        return status, _message(body)

    def remove(self, image_id: str) -> tuple[int, str]:
        status, body = self.request("DELETE", f"/images/{quote(image_id, safe=':')}?noprune=0")
        return status, _message(body)

    def load(self, path: str) -> tuple[int, str]:
        """POST /images/load: (HTTP status, the engine's output or its error)."""
        with open(path, "rb") as f:
            headers = {"Content-Type": "application/x-tar", "Content-Length": str(os.fstat(f.fileno()).st_size)}
            status, body = self.request("POST", "/images/load?quiet=1", body=f, headers=headers)
        return load_output(status, body)

    def attach(self, container: str, payload: bytes, answered: Callable[[bytes], Any]) -> Any:
        """POST /containers/{id}/attach (the connection hijacked, as `docker attach` does): `payload`
        written to the container's first process's stdin, then its stdout read (the engine's
        multiplexed frames; stderr dropped) until `answered(stdout so far)` returns something other
        than None, which is returned. Raises AttachRefused when the engine refused the attach (nothing
        was written), OSError when the stream broke after the payload was written."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.socket_path)
                sock.sendall(
                    f"POST /containers/{quote(container)}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
                    "Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode()
                )
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise AttachRefused("the engine closed the connection")
                    head += chunk
            except OSError as e:
                raise AttachRefused(str(e)) from e
            head, pending = head.split(b"\r\n\r\n", 1)
            status = head.split(b"\r\n", 1)[0]
            if status.split(b" ")[1:2] not in ([b"101"], [b"200"]):
                raise AttachRefused(status.decode(errors="replace"))
            sock.sendall(payload)
            out = b""
            while True:
                while len(pending) >= 8:
                    size = int.from_bytes(pending[4:8], "big")
                    if len(pending) < 8 + size:
                        break
                    if pending[0] == 1:
                        out += pending[8 : 8 + size]
                    pending = pending[8 + size :]
                answer = answered(out)
                if answer is not None:
                    return answer
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError(f"the attach to {container} ended before its answer")
                pending += chunk
        finally:
            sock.close()


def load_answer(sock: socket.socket) -> tuple[int, str]:
    """The answer to a `POST /images/load` whose request was already written on `sock`
    (chunk_load.start_load), as EngineApi.load returns it; `sock` is closed. Raises OSError or
    http.client.HTTPException when the answer is lost."""
    response = http.client.HTTPResponse(sock, method="POST")
    try:
        response.begin()
        return load_output(response.status, response.read())
    finally:
        response.close()
        sock.close()


def load_output(status: int, body: bytes) -> tuple[int, str]:
    """An image load's HTTP status and streamed JSON lines -> (status, the CLI's output or the error;
    an error line in a 200 answer makes it a 500)."""
    lines = []
    for line in body.decode(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if entry.get("error"):
            return 500, entry["error"]
        lines.append((entry.get("stream") or "").rstrip("\n"))
    return status, "\n".join(line for line in lines if line)


class AttachRefused(OSError):
    """The engine did not attach (nothing was written to the container)."""


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        return body.decode(errors="replace").strip()


def _done(argv: Sequence[str], code: int, stdout: str, stderr: str, kwargs: dict[str, Any]) -> subprocess.CompletedProcess:
    """What subprocess.run would return for the CLI call (text or bytes as asked; a stream given as
    `stdout=`, e.g. sys.stderr, receives the output as the CLI's would)."""
    target = kwargs.get("stdout")
    if target not in (None, subprocess.PIPE) and hasattr(target, "write"):
        target.write(stdout + ("\n" if stdout else ""))
        stdout = ""
    if not (kwargs.get("text") or kwargs.get("universal_newlines")):
        return subprocess.CompletedProcess(list(argv), code, stdout.encode(), stderr.encode())
    return subprocess.CompletedProcess(list(argv), code, stdout, stderr)


def load_done(argv: Sequence[str], status: int, output: str, kwargs: dict[str, Any]) -> subprocess.CompletedProcess:
    """What `docker load` would return for the engine's answer."""
    ok = status == 200
    return _done(argv, 0 if ok else 1, output if ok else "", "" if ok else f"Error: {output}\n", kwargs)


def api_call(api: EngineApi, argv: Sequence[str], kwargs: dict[str, Any]) -> subprocess.CompletedProcess | None:
    """The CLI call `argv` served by the API, or None when it is not one this module serves."""
    args = list(argv[1:])
    if args[:4] == ["image", "inspect", "--format", ID_FORMAT] and len(args) > 4:
        ids, missing = [], []
        for ref in args[4:]:
            image = api.image(ref)
            if image is None:
                missing.append(ref)
            else:
                ids.append(image["Id"])
        stderr = "".join(f"Error: No such image: {ref}\n" for ref in missing)
        return _done(argv, 1 if missing else 0, "\n".join(ids) + ("\n" if ids else ""), stderr, kwargs)
    if args[:4] == ["image", "inspect", "--format", TAGS_FORMAT] and len(args) == 5:
        image = api.image(args[4])
        if image is None:
            return _done(argv, 1, "", f"Error: No such image: {args[4]}\n", kwargs)
        return _done(argv, 0, json.dumps(image.get("RepoTags")) + "\n", "", kwargs)
    if len(args) == 3 and args[0] == "tag":
        status, message = api.tag(args[1], args[2])
        return _done(argv, 0 if status in (200, 201) else 1, "", "" if status in (200, 201) else f"Error: {message}\n", kwargs)
    if len(args) == 3 and args[:2] == ["load", "--input"]:
        return load_done(argv, *api.load(args[2]), kwargs)
    if len(args) == 2 and args[0] == "rmi":
        status, message = api.remove(args[1])
        return _done(argv, 0 if status == 200 else 1, "", "" if status == 200 else f"Error: {message}\n", kwargs)
    return None


Runner = Callable[..., "subprocess.CompletedProcess"]


def api_runner(environ: dict[str, str] | None = None, fallback: Runner = subprocess.run) -> Runner:
    """A drop-in for subprocess.run that serves the calls above through the API when it may."""
    path = engine_socket(dict(os.environ if environ is None else environ))
    if path is None:
        return fallback
    api = EngineApi(path)

    def run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        try:
            served = api_call(api, argv, kwargs)
        except OSError as e:
            # The socket is not there or refused: the CLI gives the usual message.
            print(f"The engine's API at {path} did not answer ({e}); asking the docker CLI.", file=sys.stderr)
            served = None
        return served if served is not None else fallback(list(argv), **kwargs)

    return run
