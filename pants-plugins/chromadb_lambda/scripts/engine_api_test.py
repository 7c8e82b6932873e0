"""engine_api.py against a small fake engine on a unix socket: the CLI's output and exit codes."""
from __future__ import annotations

import io
import json
import socket
import socketserver
import subprocess
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from chromadb_lambda.scripts.chunk_load import sent_load_runner, start_load
from chromadb_lambda.scripts.engine_api import (
    AttachRefused,
    EngineApi,
    api_runner,
    engine_socket,
    image_inspect_path,
    split_ref,
)


def test_image_inspect_path_keeps_registry_ports_and_slashes() -> None:
    assert image_inspect_path("reg:5000/acme/fn:ck-1") == "/images/reg:5000/acme/fn:ck-1/json"
    assert image_inspect_path("fn:latest") == "/images/fn:latest/json"
    assert image_inspect_path("fn:a b?") == "/images/fn:a%20b%3F/json"


def test_split_ref() -> None:
    assert split_ref("acme/a:ck-1") == ("acme/a", "ck-1")
    assert split_ref("127.0.0.1:5000/acme/a:latest") == ("127.0.0.1:5000/acme/a", "latest")
    assert split_ref("127.0.0.1:5000/acme/a") == ("127.0.0.1:5000/acme/a", "latest")


def test_only_a_plain_unix_socket_engine_is_asked_directly() -> None:
    assert engine_socket({"DOCKER_HOST": "unix:///tmp/e/docker.sock"}) == "/tmp/e/docker.sock"
    # DOCKER_HOST wins over a context for the CLI too: the same engine.
    assert engine_socket({"DOCKER_HOST": "unix:///tmp/e/docker.sock", "DOCKER_CONTEXT": "other"}) == "/tmp/e/docker.sock"
    assert engine_socket({"DOCKER_HOST": "tcp://127.0.0.1:2375"}) is None
    assert engine_socket({"DOCKER_HOST": "ssh://me@host"}) is None
    assert engine_socket({"DOCKER_HOST": "unix://"}) is None
    # No DOCKER_HOST: the CLI's current context (its config) decides the engine.
    assert engine_socket({}) is None
    assert engine_socket({"DOCKER_CONTEXT": "colima"}) is None


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.tags: dict[str, str] = {"acme/a:ck-1": "sha256:aaa"}
        self.requests: list[str] = []
        self.loaded: list[bytes] = []
        super().__init__(path, Handler)


class Handler(BaseHTTPRequestHandler):
    server: FakeEngine

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.server.requests.append(f"GET {self.path}")
        ref = self.path[len("/images/") : -len("/json")]
        image_id = self.server.tags.get(ref) or (ref if ref in self.server.tags.values() else None)
        if image_id is None:
            self.reply(404, {"message": f"No such image: {ref}"})
        else:
            self.reply(200, {"Id": image_id, "RepoTags": sorted(t for t, i in self.server.tags.items() if i == image_id)})

    def do_POST(self) -> None:
        self.server.requests.append(f"POST {self.path}")
        if self.path.startswith("/images/load"):
            self.server.loaded.append(self.rfile.read(int(self.headers["Content-Length"])))
            data = b'{"stream":"Loaded image ID: sha256:bbb\\n"}\r\n'
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        image_id = self.path.split("/")[2]
        query = parse_qs(urlsplit(self.path).query)
        self.server.tags[f"{query['repo'][0]}:{query['tag'][0]}"] = image_id
        self.reply(201, {})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeEngine]:
    server = FakeEngine(str(tmp_path / "docker.sock"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def no_cli(argv, **kwargs):
    raise AssertionError(f"the CLI ran: {argv}")


def test_inspect_tag_and_load_are_served_with_the_cli_output(engine: FakeEngine, tmp_path: Path) -> None:
    run = api_runner({"DOCKER_HOST": f"unix://{engine.server_address}"}, fallback=no_cli)
    found = run(["docker", "image", "inspect", "--format", "{{.Id}}", "acme/a:ck-1"], capture_output=True, text=True)
    assert (found.returncode, found.stdout, found.stderr) == (0, "sha256:aaa\n", "")
    missing = run(["docker", "image", "inspect", "--format", "{{.Id}}", "acme/a:ck-1", "acme/b:x"], capture_output=True, text=True)
    assert (missing.returncode, missing.stdout, missing.stderr) == (1, "sha256:aaa\n", "Error: No such image: acme/b:x\n")
    tagged = run(["docker", "tag", "sha256:aaa", "127.0.0.1:5000/acme/a:latest"], capture_output=True, text=True)
    assert tagged.returncode == 0 and engine.tags["127.0.0.1:5000/acme/a:latest"] == "sha256:aaa"
    tags = run(["docker", "image", "inspect", "--format", "{{json .RepoTags}}", "sha256:aaa"], capture_output=True, text=True)
    assert json.loads(tags.stdout) == ["127.0.0.1:5000/acme/a:latest", "acme/a:ck-1"]
    archive = tmp_path / "images.tar"
    archive.write_bytes(b"tar bytes")
    out = io.StringIO()
    loaded = run(["docker", "load", "--input", str(archive)], stdout=out)
    assert (loaded.returncode, out.getvalue(), engine.loaded) == (0, "Loaded image ID: sha256:bbb\n", [b"tar bytes"])
    assert engine.requests[-1] == "POST /images/load?quiet=1"


class KeepAliveHandler(Handler):
    """HTTP/1.1: the connection stays open between requests, as the engine's does, unless the server's
    `drop_after_each` says to close it after an answer (with no `Connection: close`: an idle timeout)."""

    protocol_version = "HTTP/1.1"

    def reply(self, status: int, body: object) -> None:
        super().reply(status, body)
        self.close_connection = getattr(self.server, "drop_after_each", False)


class CountingEngine(FakeEngine):
    def __init__(self, path: str, drop_after_each: bool = False) -> None:
        super().__init__(path)
        self.RequestHandlerClass = KeepAliveHandler
        self.drop_after_each = drop_after_each
        self.connections = 0

    def process_request(self, request, client_address) -> None:
        self.connections += 1
        super().process_request(request, client_address)


def serve(server: FakeEngine) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


def test_a_thread_asks_on_one_connection_and_replaces_one_the_engine_closed(tmp_path: Path) -> None:
    kept = CountingEngine(str(tmp_path / "kept.sock"))
    serve(kept)
    api = EngineApi(kept.server_address, timeout=5)
    assert api.image("acme/a:ck-1")["Id"] == "sha256:aaa"
    assert api.tag("sha256:aaa", "acme/a:latest") == (201, "")
    assert api.image("acme/a:latest")["Id"] == "sha256:aaa"
    assert kept.connections == 1
    # Another thread (the load's, beside the checks) has a connection of its own.
    other = threading.Thread(target=lambda: api.image("acme/a:ck-1"))
    other.start()
    other.join()
    assert kept.connections == 2
    kept.shutdown()

    dropped = CountingEngine(str(tmp_path / "dropped.sock"), drop_after_each=True)
    serve(dropped)
    api = EngineApi(dropped.server_address, timeout=5)
    assert api.image("acme/a:ck-1")["Id"] == "sha256:aaa"
    # The engine closed the connection after answering: the inspect is asked again on a new one.
    assert api.image("acme/a:ck-1")["Id"] == "sha256:aaa"
    assert dropped.connections == 2
    assert dropped.requests == ["GET /images/acme/a:ck-1/json"] * 2
    dropped.shutdown()


def test_a_load_sent_first_thing_is_answered_as_the_api_load_answers(engine: FakeEngine, tmp_path: Path) -> None:
    archive = tmp_path / "images.tar"
    archive.write_bytes(b"tar bytes")
    argv = ["docker", "load", "--input", str(archive)]
    environ = {"DOCKER_HOST": f"unix://{engine.server_address}"}
    sent = start_load(argv, environ)
    assert sent is not None
    run = sent_load_runner(sent, argv, no_cli)
    out = io.StringIO()
    loaded = run(argv, stdout=out)
    assert (loaded.returncode, out.getvalue(), engine.loaded) == (0, "Loaded image ID: sha256:bbb\n", [b"tar bytes"])
    assert engine.requests == ["POST /images/load?quiet=1"]
    # Not sent first: another engine address, another call.
    assert start_load(argv, {"DOCKER_HOST": "tcp://127.0.0.1:2375"}) is None
    assert start_load(["docker", "build", "."], environ) is None
    assert start_load(argv, {"DOCKER_HOST": f"unix://{tmp_path}/absent.sock"}) is None


def test_a_sent_load_whose_answer_is_lost_is_loaded_again(tmp_path: Path) -> None:
    ours, engines = socket.socketpair()
    engines.close()  # the engine went away before answering
    calls = []

    def cli(argv, **kwargs):
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "", "")

    argv = ["docker", "load", "--input", str(tmp_path / "images.tar")]
    run = sent_load_runner(ours, argv, cli)
    assert run(argv).returncode == 0
    assert calls == [argv]
    # Only that one call reads the sent request; the next ones are `run`'s.
    run(argv)
    assert calls == [argv, argv]


def test_other_calls_and_an_absent_socket_go_to_the_cli(tmp_path: Path) -> None:
    calls = []

    def cli(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "sha256:ccc\n", "")

    run = api_runner({"DOCKER_HOST": f"unix://{tmp_path}/absent.sock"}, fallback=cli)
    assert run(["docker", "image", "inspect", "--format", "{{.Id}}", "acme/c:1"], capture_output=True, text=True).stdout == "sha256:ccc\n"
    run(["docker", "build", "."])
    assert calls == [["docker", "image", "inspect", "--format", "{{.Id}}", "acme/c:1"], ["docker", "build", "."]]
    assert api_runner({"DOCKER_HOST": "tcp://127.0.0.1:2375"}, fallback=cli) is cli


def fake_attach_engine(path: str, status: bytes, frames: list[bytes]) -> list[bytes]:
    """One connection on `path`: the request read, `status` answered, then (after the payload) the
    container's output as the engine sends it (8-byte frame headers: stream, 0, 0, 0, size)."""
    seen: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        head, payload = data.split(b"\r\n\r\n", 1)
        seen.append(head)
        conn.sendall(status + b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        if status.startswith(b"HTTP/1.1 101"):
            while not payload.endswith(b"\n"):
                payload += conn.recv(4096)
            seen.append(payload)
            for frame in frames:
                conn.sendall(frame)
        conn.close()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return seen


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def test_attach_writes_the_payload_and_reads_stdout_frames_until_answered(tmp_path: Path) -> None:
    path = str(tmp_path / "e.sock")
    whole = frame(1, b"hello ") + frame(2, b"noise on stderr") + frame(1, b"world\nrest")
    # The frames arrive cut anywhere: a header split in two, a frame split over two reads.
    seen = fake_attach_engine(path, b"HTTP/1.1 101 UPGRADED", [whole[:3], whole[3:12], whole[12:30], whole[30:]])
    answer = EngineApi(path, timeout=5).attach(
        "chromadb-lambda-prover-z2-1", b"request\n", lambda out: out.split(b"\n")[0] if b"\n" in out else None
    )
    assert answer == b"hello world"
    assert seen[0].split(b"\r\n")[0] == b"POST /containers/chromadb-lambda-prover-z2-1/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1"
    assert seen[1] == b"request\n"


def test_attach_refused_writes_nothing_and_a_lost_stream_is_an_oserror(tmp_path: Path) -> None:
    fake_attach_engine(str(tmp_path / "a.sock"), b"HTTP/1.1 404 Not Found", [])
    with pytest.raises(AttachRefused, match="404"):
        EngineApi(str(tmp_path / "a.sock"), timeout=5).attach("gone", b"request\n", lambda out: None)
    fake_attach_engine(str(tmp_path / "b.sock"), b"HTTP/1.1 101 UPGRADED", [frame(1, b"half an ans")])
    with pytest.raises(OSError, match="ended before its answer") as lost:
        EngineApi(str(tmp_path / "b.sock"), timeout=5).attach("p", b"request\n", lambda out: None)
    assert not isinstance(lost.value, AttachRefused)
