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
    EngineRun,
    EngineRunRequest,
    EngineTags,
    EngineTagsRequest,
    HeldRefs,
    HeldRefsRequest,
    docker_process,
    engine_process_root,
    engine_tags_file,
    familiar_ref,
    held_in_listing,
    held_in_tags,
    held_refs,
    list_engine_tags,
    parse_api_listing,
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


class FakeEngine:
    """An HTTP/1.1 server on a unix socket that answers the image listing from `images` (ref -> id) and
    records the paths it was asked, all on one keep-alive connection or not."""

    def __init__(self, images: dict[str, str] | None, info: dict | None = None, requests_per_connection: int = 0) -> None:
        self.images = images
        # > 0: the connection is closed after that many answers, as an engine closes an idle one.
        self.requests_per_connection = requests_per_connection
        # What `GET /info` answers, and the images `GET /images/json` lists (an error when None).
        self.info = info
        # What `GET /images/json` answers with 200 instead of the listing of `images`.
        self.listing_body: bytes | None = None
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
                    if path == "/info" and self.info is not None:
                        status, body = "200 OK", json.dumps(self.info).encode()
                    elif path == "/images/json" and self.listing_body is not None:
                        status, body = "200 OK", self.listing_body
                    elif path == "/images/json" and self.images is not None:
                        by_id: dict[str, list[str]] = {}
                        for ref, image_id in self.images.items():
                            by_id.setdefault(image_id, []).append(ref)
                        listing = [{"Id": i, "RepoTags": refs, "Size": 1} for i, refs in by_id.items()]
                        listing.append({"Id": "sha256:untagged", "RepoTags": ["<none>:<none>"], "Size": 1})
                        status, body = "200 OK", json.dumps(listing).encode()
                    else:
                        status, body = "500 Internal Server Error", json.dumps({"message": "boom"}).encode()
                    conn.sendall(
                        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
                    )

    def close(self) -> None:
        self.server.close()


def test_parse_api_listing_skips_untagged_images() -> None:
    images = [
        {"Id": "sha256:a", "RepoTags": ["acme/fn:ck-1", "acme/fn:latest"]},
        {"Id": "sha256:b", "RepoTags": ["<none>:<none>"]},
        {"Id": "sha256:c", "RepoTags": None},
        {"Id": "sha256:d", "RepoTags": ["reg:5000/acme/fn:v1", "acme/fn2:<none>"]},
    ]
    assert parse_api_listing(images) == {
        "acme/fn:ck-1": "sha256:a", "acme/fn:latest": "sha256:a", "reg:5000/acme/fn:v1": "sha256:d"
    }
    assert parse_api_listing([]) == {}
    assert parse_api_listing({"message": "x"}) is None
    assert parse_api_listing([{"Id": 7, "RepoTags": ["a:1"]}]) is None


def test_list_engine_tags_is_one_request_for_every_tag() -> None:
    engine = FakeEngine({"acme/fn:ck-1": "sha256:a", "acme/fn:latest": "sha256:a", "other:latest": "sha256:o"})
    try:
        tags = list_engine_tags(engine.path, timeout=5)
    finally:
        engine.close()
    assert tags == {"acme/fn:ck-1": "sha256:a", "acme/fn:latest": "sha256:a", "other:latest": "sha256:o"}
    assert engine.paths == ["/images/json"]
    # An engine that answers with an error: None.
    failing = FakeEngine(None)
    try:
        assert list_engine_tags(failing.path, timeout=5) is None
    finally:
        failing.close()
    # A socket nobody listens on: the OSError is the caller's.
    with pytest.raises(OSError):
        list_engine_tags(os.path.join(tempfile.mkdtemp(), "absent.sock"), timeout=5)


LISTING = {"r:ck-1": "sha256:a", "r:latest": "sha256:a", "r2:latest": "sha256:c"}


def test_held_in_listing_keeps_only_the_asked_refs_it_holds() -> None:
    assert dict(held_in_listing(LISTING, ["r:latest", "r:ck-1", "r:ck-9"])) == {"r:ck-1": "sha256:a", "r:latest": "sha256:a"}
    assert dict(held_in_listing(LISTING, [])) == {}


def ask(env: dict[str, str], run: int = 1, tags: FrozenDict[str, str] | None = None) -> tuple[HeldRefs, list]:
    asked: list = []

    def from_socket(request: EngineTagsRequest) -> EngineTags:
        asked.append(("tags", request.socket))
        return EngineTags(tags)

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
            MockGet(EngineTags, (EngineTagsRequest,), from_socket),
            MockGet(EngineImages, (EngineImagesRequest,), listing),
        ],
    )
    return held, asked


def test_held_refs_from_the_engine_tags_run_no_process() -> None:
    tags = FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:b", "other:latest": "sha256:o"})
    held, asked = ask({"DOCKER_HOST": "unix:///e/docker.sock"}, tags=tags)
    # `r:v9` is not among the engine's tags: the engine does not hold it.
    assert held == HeldRefs(FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:b"}))
    assert asked == [("tags", "/e/docker.sock")]
    # Equal from one run to the next while the asked refs stay: other tags of the engine changed.
    tags = FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:b", "other:latest": "sha256:p", "new:1": "sha256:q"})
    assert ask({"DOCKER_HOST": "unix:///e/docker.sock"}, tags=tags)[0] == held


def test_held_refs_fall_back_to_the_listing() -> None:
    expected = HeldRefs(FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:a"}))
    # A socket that does not answer: the listing's docker process reports what is wrong.
    held, asked = ask({"DOCKER_HOST": "unix:///e/docker.sock"})
    assert held == expected and [what for what, _ in asked] == ["tags", "listing"]
    # Not a unix socket: the CLI decides the engine.
    held, asked = ask({"DOCKER_HOST": "tcp://h:2376"}, run=1)
    assert held == expected and asked == [("listing", None)]
    # Equal in another run whose listing agrees: what an up-to-date package reads does not carry the run.
    assert ask({"DOCKER_HOST": "tcp://h:2376"}, run=2)[0] == held


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
    # One request per read, whatever the number of refs later looked up; none when the socket's peer
    # is not a dockerd.
    assert engine.paths == ["/info"]


def test_read_engine_tags_where_the_system_cannot_name_the_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    # macOS has no SO_PEERCRED (colima's or Docker Desktop's socket serves a VM's engine): no store.
    engine = FakeEngine({}, info={"DockerRootDir": data_root(STORE), "Driver": "overlay2"})
    monkeypatch.delattr(socket, "SO_PEERCRED")
    try:
        assert read_engine_tags(engine.path, process_root=lambda _: "") is None
    finally:
        engine.close()
    assert engine.paths == []


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
    # A socket nobody listens on: None (held_refs then runs `docker image ls`, which reports it).
    absent = os.path.join(tempfile.mkdtemp(), "absent.sock")
    assert run_rule_with_mocks(read_engine_tag_store, rule_args=[EngineTagsRequest(absent), RunId(5)]) == EngineTags(None)


def test_read_engine_tag_store_rule_lists_through_the_api_when_the_store_is_not_readable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A proxy in front of the engine (Docker Desktop's, the benchmark's relay), or a store this user
    # cannot read: the API's listing, one request for every target of the run.
    images = {"acme/fn:latest": "sha256:a", "acme/fn:ck-1": "sha256:a", "other:latest": "sha256:o"}
    engine = FakeEngine(images, info={"DockerRootDir": data_root(STORE), "Driver": "overlay2"})
    monkeypatch.setattr(engine_module, "engine_process_root", lambda _: None)
    try:
        tags = run_rule_with_mocks(read_engine_tag_store, rule_args=[EngineTagsRequest(engine.path), RunId(3)])
        # Listed again in the next run, in another order: equal.
        engine.images = dict(reversed(list(images.items())))
        again = run_rule_with_mocks(read_engine_tag_store, rule_args=[EngineTagsRequest(engine.path), RunId(4)])
    finally:
        engine.close()
    assert tags == again == EngineTags(FrozenDict(sorted(images.items())))
    assert list(tags.refs or {}) == ["acme/fn:ck-1", "acme/fn:latest", "other:latest"]
    # Not a dockerd's socket: the listing alone, no `GET /info`.
    assert engine.paths == ["/images/json"] * 2
    # Neither the store nor the listing: None (held_refs then runs `docker image ls`).
    failing = FakeEngine(None, info={"DockerRootDir": data_root(STORE), "Driver": "overlay2"})
    try:
        assert run_rule_with_mocks(read_engine_tag_store, rule_args=[EngineTagsRequest(failing.path), RunId(5)]) == EngineTags(None)
    finally:
        failing.close()


@pytest.mark.parametrize(
    "body",
    [b"null", b'{"message": "ok"}', b'[{"RepoTags": ["a:1"]}]', b'[{"Id": "sha256:a", "RepoTags": "a:1"}]', b"not json"],
)
def test_a_listing_of_another_shape_is_no_listing(body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy answering 200 with something else than a list of images: the run falls back to
    # `docker image ls` (EngineTags None), it does not fail on it.
    engine = FakeEngine({}, info={"DockerRootDir": data_root(STORE), "Driver": "overlay2"})
    engine.listing_body = body
    monkeypatch.setattr(engine_module, "engine_process_root", lambda _: None)
    try:
        assert run_rule_with_mocks(read_engine_tag_store, rule_args=[EngineTagsRequest(engine.path), RunId(6)]) == EngineTags(None)
    finally:
        engine.close()
    assert engine.paths == ["/images/json"]


def test_this_run_is_the_run_id() -> None:
    assert run_rule_with_mocks(this_run, rule_args=[EngineRunRequest(), RunId(12)]) == EngineRun(12)
