"""The assembled image's manifest (golden bytes and digest, written by hand and hashed with hashlib) and
what `push_assembled` asks of a registry (a fake one here; the real one in tests/e2e)."""
from __future__ import annotations

import hashlib
import json

import pytest

from chromadb_lambda.scripts.registry_push import (
    ApiError,
    BaseNotUsable,
    base_manifest,
    lambda_manifest,
    push_assembled,
)

L1 = "sha256:" + "1" * 64
L2 = "sha256:" + "2" * 64
BASE_ID = "sha256:" + "b" * 64
BASE = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1000, "digest": BASE_ID},
    "layers": [
        {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 11, "digest": L1},
        {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 22, "digest": L2},
    ],
}
CONFIG = b'{"os":"linux"}'
LAYER = b"gzipped-layer"
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
LAYER_DIGEST = "sha256:" + hashlib.sha256(LAYER).hexdigest()


def test_manifest_golden() -> None:
    expected = (
        '{"config":{"digest":"' + CONFIG_DIGEST + '","mediaType":"application/vnd.docker.container.image.v1+json",'
        '"size":14},"layers":['
        '{"digest":"' + L1 + '","mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":11},'
        '{"digest":"' + L2 + '","mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":22},'
        '{"digest":"' + LAYER_DIGEST + '","mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":13}'
        '],"mediaType":"application/vnd.docker.distribution.manifest.v2+json","schemaVersion":2}'
    ).encode()
    assert lambda_manifest(BASE, CONFIG, LAYER) == expected
    assert hashlib.sha256(expected).hexdigest() == hashlib.sha256(lambda_manifest(BASE, CONFIG, LAYER)).hexdigest()


def test_an_oci_base_gives_an_oci_manifest() -> None:
    oci = {**BASE, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    manifest = json.loads(lambda_manifest(oci, CONFIG, LAYER))
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert manifest["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    # The base's layers keep their own media types.
    assert manifest["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"


def test_a_manifest_list_base_is_refused() -> None:
    with pytest.raises(ValueError, match="not a single image manifest"):
        lambda_manifest({**BASE, "mediaType": "application/vnd.oci.image.index.v1+json"}, CONFIG, LAYER)


class FakeRegistry:
    """Blobs by repository; mounts refused for repositories in `no_mount`."""

    def __init__(self, blobs: dict[str, set[str]], no_mount: bool = False, stored_as: str | None = None) -> None:
        self.blobs = blobs
        self.no_mount = no_mount
        self.stored_as = stored_as
        self.calls: list[tuple] = []
        self.manifests: dict[tuple[str, str], bytes] = {("acme/base", "ck-b"): json.dumps(BASE).encode()}

    def get_manifest(self, repository: str, reference: str):
        body = self.manifests.get((repository, reference))
        return None if body is None else ("sha256:x", body)

    def has_blob(self, repository: str, digest: str) -> bool:
        self.calls.append(("head", repository, digest))
        return digest in self.blobs.get(repository, set())

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        self.calls.append(("mount", repository, digest, source))
        self.blobs.setdefault(repository, set()).add(digest)
        return not self.no_mount

    def upload_blob(self, repository: str, data: bytes) -> None:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.calls.append(("upload", repository, digest))
        self.blobs.setdefault(repository, set()).add(digest)

    def put_manifest(self, repository: str, tag: str, media_type: str, manifest: bytes) -> str:
        self.calls.append(("put", repository, tag, media_type))
        return self.stored_as or "sha256:" + hashlib.sha256(manifest).hexdigest()


def test_base_layers_are_mounted_and_only_the_lambdas_blobs_uploaded() -> None:
    registry = FakeRegistry({"acme/base": {L1, L2}})
    result = push_assembled(registry, "acme/fn", ["ck-f", "latest"], BASE, "acme/base", CONFIG, LAYER)  # type: ignore[arg-type]
    expected_digest = "sha256:" + hashlib.sha256(lambda_manifest(BASE, CONFIG, LAYER)).hexdigest()
    assert result == {
        "digest": expected_digest,
        "media_type": "application/vnd.docker.distribution.manifest.v2+json",
        "blobs": {"present": 0, "mounted": 2, "uploaded": 2},
    }
    assert [c for c in registry.calls if c[0] != "head"] == [
        ("mount", "acme/fn", L1, "acme/base"),
        ("mount", "acme/fn", L2, "acme/base"),
        ("upload", "acme/fn", LAYER_DIGEST),
        ("upload", "acme/fn", CONFIG_DIGEST),
        ("put", "acme/fn", "ck-f", "application/vnd.docker.distribution.manifest.v2+json"),
        ("put", "acme/fn", "latest", "application/vnd.docker.distribution.manifest.v2+json"),
    ]
    # A second push of the same image finds every blob there: nothing mounted or uploaded.
    registry.calls.clear()
    again = push_assembled(registry, "acme/fn", ["ck-f"], BASE, "acme/base", CONFIG, LAYER)  # type: ignore[arg-type]
    assert again["blobs"] == {"present": 4, "mounted": 0, "uploaded": 0}
    assert [c[0] for c in registry.calls] == ["head"] * 4 + ["put"]


def test_a_refused_mount_is_counted_as_an_upload() -> None:
    registry = FakeRegistry({"acme/base": {L1, L2}, "acme/fn": {L1}}, no_mount=True)
    result = push_assembled(registry, "acme/fn", ["ck-f"], BASE, "acme/base", CONFIG, LAYER)  # type: ignore[arg-type]
    assert result["blobs"] == {"present": 1, "mounted": 0, "uploaded": 3}


def test_a_registry_digest_other_than_the_computed_one_fails() -> None:
    registry = FakeRegistry({"acme/fn": {L1, L2}}, stored_as="sha256:" + "9" * 64)
    with pytest.raises(ApiError, match="not as the computed sha256:"):
        push_assembled(registry, "acme/fn", ["ck-f"], BASE, "acme/base", CONFIG, LAYER)  # type: ignore[arg-type]


def test_the_base_in_the_registry_must_be_the_local_one() -> None:
    registry = FakeRegistry({})
    assert base_manifest(registry, "acme/base", "ck-b", BASE_ID) == BASE  # type: ignore[arg-type]
    with pytest.raises(BaseNotUsable, match="is the image sha256:b+, not the local sha256:c+"):
        base_manifest(registry, "acme/base", "ck-b", "sha256:" + "c" * 64)  # type: ignore[arg-type]
    with pytest.raises(BaseNotUsable, match="acme/base:ck-other is not in the registry"):
        base_manifest(registry, "acme/base", "ck-other", BASE_ID)  # type: ignore[arg-type]


def test_credentials_never_follow_a_blob_redirect() -> None:
    """A blob GET redirected elsewhere (ECR: to presigned S3) is followed without the credential."""
    import http.server
    import threading

    from chromadb_lambda.scripts.registry_push import RegistryApi

    blob = b"layer bytes"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append((self.path, self.headers.get("Authorization")))
            if self.path.startswith("/v2/"):
                self.send_response(307)
                self.send_header("Location", "/s3/presigned?sig=x")
                self.end_headers()
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = RegistryApi([f"http://127.0.0.1:{server.server_port}"], "QVdTOnNlY3JldA==")
        assert api.get_blob("acme/base", digest) == blob
    finally:
        server.shutdown()
    assert seen == [(f"/v2/acme/base/blobs/{digest}", "Basic QVdTOnNlY3JldA=="), ("/s3/presigned?sig=x", None)]
