from __future__ import annotations

import json
import os
import socket
import tempfile
import threading

import pytest
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.internals.session import RunId
from pants.engine.process import ProcessCacheScope
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from chromadb_lambda.util_rules import engine as engine_module
from chromadb_lambda.util_rules.engine import (
    DockerEnvironment,
    EngineImages,
    EngineImagesRequest,
    EngineQueryError,
    EngineRun,
    EngineRunRequest,
    EngineTags,
    EngineTagsRequest,
    HeldRefs,
    HeldRefsRequest,
    RunConnections,
    SocketRefs,
    SocketRefsRequest,
    docker_process,
    engine_process_root,
    engine_tags_file,
    familiar_ref,
    held_image_id,
    held_in_listing,
    held_in_tags,
    held_refs,
    image_inspect_path,
    parse_image_listing,
    parse_tag_store,
    read_engine_tag_store,
    read_engine_tags,
    run_scoped_process,
    this_run,
)


def test_parse_image_listing_skips_untagged_images() -> None:
    output = "word_polling:latest sha256:aaa\n<none>:<none> sha256:bbb\nrepo:<none> sha256:ccc\nreg:5000/r:ck-1 sha256:ddd\n"
    assert parse_image_listing(output) == {"word_polling:latest": "sha256:aaa", "reg:5000/r:ck-1": "sha256:ddd"}


def test_run_scoped_process_is_keyed_by_the_run_not_the_engine_state() -> None:
    process = docker_process(DockerBinary("/bin/docker", "sha"), ("tag", "sha256:abc", "r:latest"), {}, "tag")
    keyed = run_scoped_process(process, EngineRun(7))
    assert keyed.cache_scope == ProcessCacheScope.PER_RESTART_SUCCESSFUL
    assert keyed.argv == process.argv
    assert keyed.env["__CHROMADB_LAMBDA_RUN"] == "7"
    # Another run, even with the engine in the very same state, gets another process: never a
    # result remembered from an earlier run.
    assert keyed != run_scoped_process(process, EngineRun(8))
    assert keyed == run_scoped_process(process, EngineRun(7))


LISTING = {
    "r:ck-1": "sha256:a",
    "r:latest": "sha256:a",
    "reg:5000/r:latest": "sha256:b",
    "reg:5000/r:ck-1": "sha256:b",
    "r2:latest": "sha256:c",
}


def test_image_inspect_path_keeps_registry_ports_and_slashes() -> None:
    assert image_inspect_path("reg:5000/acme/fn:ck-1") == "/images/reg:5000/acme/fn:ck-1/json"
    assert image_inspect_path("fn:latest") == "/images/fn:latest/json"
    assert image_inspect_path("fn:a b?") == "/images/fn:a%20b%3F/json"


def test_held_image_id_of_an_inspect_answer() -> None:
    assert held_image_id(200, b'{"Id": "sha256:abc", "RepoTags": ["fn:latest"]}', "fn:latest") == "sha256:abc"
    assert held_image_id(404, b'{"message": "No such image: fn:latest"}', "fn:latest") is None
    assert held_image_id(400, b'{"message": "invalid reference format"}', "Fn:latest") is None
    with pytest.raises(EngineQueryError, match="answered 500 to an inspect of fn:latest"):
        held_image_id(500, b'{"message": "boom"}', "fn:latest")


class FakeEngine:
    """An HTTP/1.1 server on a unix socket that answers image inspects from `images` (ref -> id) and
    records the paths it was asked, all on one keep-alive connection or not."""

    def __init__(self, images: dict[str, str], info: dict | None = None, requests_per_connection: int = 0) -> None:
        self.images = images
        # > 0: the connection is closed after that many answers, as an engine closes an idle one.
        self.requests_per_connection = requests_per_connection
        # What `GET /info` answers (404 when None).
        self.info = info
        self.paths: list[str] = []
        self.connections = 0
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "docker.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(4)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as reader:
                answered = 0
                while not self.requests_per_connection or answered < self.requests_per_connection:
                    answered += 1
                    line = reader.readline()
                    if not line:
                        break
                    path = line.split()[1].decode()
                    while reader.readline() not in (b"\r\n", b""):
                        pass
                    self.paths.append(path)
                    ref = path[len("/images/") : -len("/json")]
                    if path == "/info" and self.info is not None:
                        status, body = "200 OK", json.dumps(self.info).encode()
                    elif ref in self.images:
                        status, body = "200 OK", json.dumps({"Id": self.images[ref]}).encode()
                    else:
                        status, body = "404 Not Found", json.dumps({"message": f"No such image: {ref}"}).encode()
                    conn.sendall(
                        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
                    )

    def close(self) -> None:
        self.server.close()


def test_the_asks_of_one_run_share_one_connection_a_new_run_opens_its_own() -> None:
    engine = FakeEngine({"acme/fn:ck-1": "sha256:a", "acme/fn:latest": "sha256:a", "other:latest": "sha256:o"})
    connections = RunConnections(timeout=5)
    try:
        held = connections.ask(engine.path, 1, ["acme/fn:ck-1", "acme/fn:latest", "acme/fn:gone"])
        assert connections.ask(engine.path, 1, ["other:latest"]) == {"other:latest": "sha256:o"}
        assert engine.connections == 1
        # The next run does not reuse the last run's connection (the engine may have restarted).
        assert connections.ask(engine.path, 2, ["acme/fn:ck-1"]) == {"acme/fn:ck-1": "sha256:a"}
        assert engine.connections == 2
    finally:
        engine.close()
    assert held == {"acme/fn:ck-1": "sha256:a", "acme/fn:latest": "sha256:a"}
    assert engine.paths == [
        "/images/acme/fn:ck-1/json", "/images/acme/fn:latest/json", "/images/acme/fn:gone/json",
        "/images/other:latest/json", "/images/acme/fn:ck-1/json",
    ]


def test_a_connection_the_engine_closed_while_idle_is_replaced() -> None:
    engine = FakeEngine({"fn:latest": "sha256:a", "fn:ck-1": "sha256:a"}, requests_per_connection=1)
    connections = RunConnections(timeout=5)
    try:
        assert connections.ask(engine.path, 1, ["fn:latest"]) == {"fn:latest": "sha256:a"}
        assert connections.ask(engine.path, 1, ["fn:ck-1"]) == {"fn:ck-1": "sha256:a"}
    finally:
        engine.close()
    assert engine.connections == 2
    assert engine.paths == ["/images/fn:latest/json", "/images/fn:ck-1/json"]


def test_asking_a_socket_nobody_listens_on_is_an_os_error() -> None:
    with pytest.raises(OSError):
        RunConnections(timeout=5).ask(os.path.join(tempfile.mkdtemp(), "absent.sock"), 1, ["fn:latest"])


LISTING = {"r:ck-1": "sha256:a", "r:latest": "sha256:a", "r2:latest": "sha256:c"}


def test_held_in_listing_keeps_only_the_asked_refs_it_holds() -> None:
    assert dict(held_in_listing(LISTING, ["r:latest", "r:ck-1", "r:ck-9"])) == {"r:ck-1": "sha256:a", "r:latest": "sha256:a"}
    assert dict(held_in_listing(LISTING, [])) == {}


def ask(
    env: dict[str, str],
    socket_answer: SocketRefs | None,
    run: int = 1,
    tags: FrozenDict[str, str] | None = None,
) -> tuple[HeldRefs, list]:
    asked: list = []

    def from_store(request: EngineTagsRequest) -> EngineTags:
        asked.append(("store", request.socket))
        return EngineTags(tags)

    def from_socket(request: SocketRefsRequest) -> SocketRefs:
        asked.append(("socket", request))
        assert socket_answer is not None, "the socket was asked"
        return socket_answer

    def listing(_: EngineImagesRequest) -> EngineImages:
        asked.append(("listing", None))
        return EngineImages(FrozenDict(LISTING), EngineRun(run))

    held = run_rule_with_mocks(
        held_refs,
        rule_args=[
            HeldRefsRequest(("r:ck-1", "r:latest", "r:v9")),
            DockerEnvironment(FrozenDict(env)),
            DockerBinary("/bin/docker", "sha"),
        ],
        mock_gets=[
            MockGet(EngineTags, (EngineTagsRequest,), from_store),
            MockGet(SocketRefs, (SocketRefsRequest,), from_socket),
            MockGet(EngineImages, (EngineImagesRequest,), listing),
        ],
    )
    return held, asked


def test_held_refs_from_a_unix_socket_run_no_listing() -> None:
    answer = SocketRefs(FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:a"}))
    held, asked = ask({"DOCKER_HOST": "unix:///e/docker.sock"}, answer)
    assert held == HeldRefs(FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:a"}))
    # The store could not be read: the API is asked.
    assert asked == [
        ("store", "/e/docker.sock"),
        ("socket", SocketRefsRequest("/e/docker.sock", ("r:ck-1", "r:latest", "r:v9"))),
    ]


def test_held_refs_from_the_tag_store_ask_no_api() -> None:
    store = FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:b", "other:latest": "sha256:o"})
    held, asked = ask({"DOCKER_HOST": "unix:///e/docker.sock"}, None, tags=store)
    # `r:v9` is not in the store: the engine does not hold it.
    assert held == HeldRefs(FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:b"}))
    assert asked == [("store", "/e/docker.sock")]
    # Equal from one run to the next while the asked refs stay: other tags of the engine changed.
    store = FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:b", "other:latest": "sha256:p", "new:1": "sha256:q"})
    assert ask({"DOCKER_HOST": "unix:///e/docker.sock"}, None, tags=store)[0] == held


def test_held_refs_fall_back_to_the_listing() -> None:
    expected = HeldRefs(FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:a"}))
    # A socket that does not answer: the listing's docker process reports what is wrong.
    held, asked = ask({"DOCKER_HOST": "unix:///e/docker.sock"}, SocketRefs(None))
    assert held == expected and [what for what, _ in asked] == ["store", "socket", "listing"]
    # Not a unix socket: the CLI decides the engine.
    held, asked = ask({"DOCKER_HOST": "tcp://h:2376"}, None, run=1)
    assert held == expected and asked == [("listing", None)]
    # Equal in another run whose listing agrees: what an up-to-date package reads does not carry the run.
    assert ask({"DOCKER_HOST": "tcp://h:2376"}, None, run=2)[0] == held


def test_held_in_tags_keeps_the_asked_refs_the_store_holds() -> None:
    tags = {"r:ck-1": "sha256:a", "r:latest": "sha256:b", "acme/fn:v1": "sha256:c", "python:3": "sha256:d"}
    assert held_in_tags(tags, ("r:latest", "r:ck-1", "r:v9")) == FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:b"})
    # Refs spelled with Docker Hub's registry are found under the store's familiar spelling.
    assert held_in_tags(tags, ("docker.io/acme/fn:v1", "docker.io/library/python:3")) == FrozenDict(
        {"docker.io/acme/fn:v1": "sha256:c", "docker.io/library/python:3": "sha256:d"}
    )
    assert held_in_tags(tags, ()) == FrozenDict()


@pytest.mark.parametrize(
    ("ref", "familiar"),
    [
        ("acme/fn:latest", "acme/fn:latest"),
        ("docker.io/acme/fn:latest", "acme/fn:latest"),
        ("index.docker.io/acme/fn:ck-1", "acme/fn:ck-1"),
        ("docker.io/library/python:3.11", "python:3.11"),
        ("docker.io/library/team/fn:1", "library/team/fn:1"),
        ("reg:5000/library/python:3", "reg:5000/library/python:3"),
        ("127.0.0.1:5000/acme/fn:v1", "127.0.0.1:5000/acme/fn:v1"),
    ],
)
def test_familiar_ref(ref: str, familiar: str) -> None:
    assert familiar_ref(ref) == familiar


def test_engine_tags_file_is_under_the_data_root_of_the_driver() -> None:
    info = {"DockerRootDir": "/var/lib/docker", "Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}
    assert engine_tags_file(info) == "/var/lib/docker/image/overlay2/repositories.json"
    # The containerd image store keeps its tags elsewhere.
    containerd = {"DockerRootDir": "/var/lib/docker", "Driver": "overlayfs",
                  "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}
    assert engine_tags_file(containerd) is None
    assert engine_tags_file({"Driver": "overlay2"}) is None
    assert engine_tags_file({"DockerRootDir": "/var/lib/docker", "Driver": ""}) is None


STORE = {
    "Repositories": {
        "acme/fn": {"acme/fn:ck-1": "sha256:a", "acme/fn:latest": "sha256:a"},
        "reg:5000/acme/fn": {"reg:5000/acme/fn:v1": "sha256:b", "reg:5000/acme/fn@sha256:dd": "sha256:b"},
    }
}


def test_parse_tag_store_leaves_out_digest_references() -> None:
    assert parse_tag_store(json.dumps(STORE).encode()) == {
        "acme/fn:ck-1": "sha256:a",
        "acme/fn:latest": "sha256:a",
        "reg:5000/acme/fn:v1": "sha256:b",
    }
    assert parse_tag_store(b"{}") == {}


def data_root(store: dict | None) -> str:
    root = tempfile.mkdtemp()
    os.makedirs(os.path.join(root, "image", "overlay2"))
    if store is not None:
        with open(os.path.join(root, "image", "overlay2", "repositories.json"), "w") as f:
            json.dump(store, f)
    return root


def test_read_engine_tags_reads_the_store_the_engine_names() -> None:
    root = data_root(STORE)
    engine = FakeEngine({}, info={"DockerRootDir": root, "Driver": "overlay2", "DriverStatus": []})
    peers: list[int] = []

    def as_dockerd(pid: int) -> str:
        peers.append(pid)
        return ""  # the fake engine sees the files as this test does

    try:
        tags = read_engine_tags(engine.path, process_root=as_dockerd)
        # The real check: this test's process serves the socket, and it is not a dockerd.
        assert read_engine_tags(engine.path) is None
    finally:
        engine.close()
    assert tags == {"acme/fn:ck-1": "sha256:a", "acme/fn:latest": "sha256:a", "reg:5000/acme/fn:v1": "sha256:b"}
    # The socket's peer, asked once: the fake engine runs in this process.
    assert peers == [os.getpid()]
    # One request per read, whatever the number of refs later looked up.
    assert engine.paths == ["/info", "/info"]


def test_engine_process_root_only_of_a_dockerd() -> None:
    assert engine_process_root(os.getpid()) is None  # pytest's python
    assert engine_process_root(2**22 + 12345) is None  # no such process


def test_read_engine_tags_without_a_readable_store_is_none() -> None:
    # No store file (e.g. another driver's directory), and an engine whose /info fails.
    engine = FakeEngine({}, info={"DockerRootDir": data_root(None), "Driver": "overlay2"})
    try:
        assert read_engine_tags(engine.path, process_root=lambda _: "") is None
    finally:
        engine.close()
    engine = FakeEngine({})
    try:
        assert read_engine_tags(engine.path, process_root=lambda _: "") is None
    finally:
        engine.close()


def test_read_engine_tag_store_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    root = data_root(STORE)
    engine = FakeEngine({}, info={"DockerRootDir": root, "Driver": "overlay2"})
    # The fake engine (this process) stands for a dockerd that sees the files as this test does.
    monkeypatch.setattr(engine_module, "engine_process_root", lambda _: "")
    try:
        tags = run_rule_with_mocks(read_engine_tag_store, rule_args=[EngineTagsRequest(engine.path), RunId(3)])
        # The same store read in another run is equal: nothing that reads it runs again.
        again = run_rule_with_mocks(read_engine_tag_store, rule_args=[EngineTagsRequest(engine.path), RunId(4)])
    finally:
        engine.close()
    assert tags == again == EngineTags(
        FrozenDict({"acme/fn:ck-1": "sha256:a", "acme/fn:latest": "sha256:a", "reg:5000/acme/fn:v1": "sha256:b"})
    )
    # A socket nobody listens on: None (held_refs then asks the API, whose failure it handles).
    absent = os.path.join(tempfile.mkdtemp(), "absent.sock")
    assert run_rule_with_mocks(read_engine_tag_store, rule_args=[EngineTagsRequest(absent), RunId(5)]) == EngineTags(None)


def test_this_run_is_the_run_id() -> None:
    assert run_rule_with_mocks(this_run, rule_args=[EngineRunRequest(), RunId(12)]) == EngineRun(12)
