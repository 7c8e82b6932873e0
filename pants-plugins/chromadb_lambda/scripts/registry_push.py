"""Publishing an assembled Lambda image over the registry HTTP API v2, without the engine.

Imported by `registry_client.py push` (both run as files in the push process's sandbox). The image is
the base image as the registry stores it (its manifest, read here: the compressed layer digests the
engine's push gave it) plus the Lambda's one layer (`layer.tar.gz`, gzip with mtime 0 and a fixed
level) and its config (the exact bytes the assembler loaded into the engine, so a pull gives the same
image id). The manifest, and so the digest, is computed before anything is pushed:

1. the base's layers are never uploaded again: present in the Lambda's repository already, or mounted
   from the base's repository (`POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<base repo>`); a
   registry that refuses the mount gets the blob copied over the API once (then it is present);
2. the layer and the config are uploaded when the registry lacks them (`HEAD` first), in one request;
3. the manifest is put under every tag, content key tag first; the registry's digest must be ours.

Written by hand rather than with a transfer tool: see docs/publishing.md ("Assembled images").
Standard library only.
"""
from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterable

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# (config, gzip layer) media types of each manifest type.
BLOB_TYPES = {
    DOCKER_MANIFEST: ("application/vnd.docker.container.image.v1+json", "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    OCI_MANIFEST: ("application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+gzip"),
}


class ApiError(Exception):
    """A registry request that failed; `transient` ones (5xx, network) may be retried."""

    def __init__(self, message: str, status: int = 0, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def manifest_json(data: Any) -> bytes:
    """The manifest's bytes: sorted keys, no spaces. A registry stores and serves them as put."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def lambda_manifest(base_manifest: dict, config: bytes, layer_gz: bytes) -> bytes:
    """The Lambda image's manifest: the base's layers as the registry holds them, then the Lambda's."""
    media_type = base_manifest.get("mediaType") or DOCKER_MANIFEST
    if media_type not in BLOB_TYPES:
        raise ValueError(f"the base's manifest is a {media_type}, not a single image manifest")
    config_type, layer_type = BLOB_TYPES[media_type]
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "size": len(config), "digest": sha256_digest(config)},
        "layers": [
            *({"mediaType": l["mediaType"], "size": l["size"], "digest": l["digest"]} for l in base_manifest["layers"]),
            {"mediaType": layer_type, "size": len(layer_gz), "digest": sha256_digest(layer_gz)},
        ],
    }
    return manifest_json(manifest)


class RegistryApi:
    """A registry's v2 API with HTTP basic credentials (ECR, htpasswd), or bearer tokens obtained with
    them when the registry asks for one (its `WWW-Authenticate` challenge names the scope)."""

    def __init__(self, base_urls: Iterable[str], basic_auth: str | None, timeout: float = 60) -> None:
        self._base_urls = tuple(base_urls)
        self._basic_auth = basic_auth
        self._timeout = timeout
        self._bearer: str | None = None
        self.requests: list[str] = []

    def _send(self, url: str, method: str, headers: dict, data: bytes | None):  # noqa: ANN202
        auth = f"Bearer {self._bearer}" if self._bearer else f"Basic {self._basic_auth}" if self._basic_auth else None
        request = urllib.request.Request(url, method=method, data=data, headers=headers)
        if auth:
            # Not sent on a redirect: ECR serves blobs by redirecting to a presigned S3 URL, which
            # refuses a second credential (and must never see the registry's).
            request.add_unredirected_header("Authorization", auth)
        return urllib.request.urlopen(request, timeout=self._timeout)

    def call(self, method: str, path: str, headers: dict | None = None, data: bytes | None = None) -> tuple[int, Any, bytes]:
        """(status, headers, body) of one request; 404 is a status, other failures raise ApiError."""
        headers = dict(headers or {})
        last: Exception | None = None
        for base_url in self._base_urls:
            url = path if path.startswith(("http://", "https://")) else f"{base_url}{path}"
            try:
                try:
                    response = self._send(url, method, headers, data)
                except urllib.error.HTTPError as e:
                    challenge = e.headers.get("WWW-Authenticate", "") if e.code == 401 else ""
                    if not challenge.lower().startswith("bearer"):
                        raise
                    self._bearer = self._token(challenge)
                    response = self._send(url, method, headers, data)
                with response:
                    self._base_urls = (base_url,)  # the scheme that answered
                    self.requests.append(f"{method} {path.split('?')[0]} {response.status}")
                    return response.status, response.headers, response.read()
            except urllib.error.HTTPError as e:
                self._base_urls = (base_url,)
                if e.code == 404:
                    return 404, e.headers, b""
                body = e.read().decode(errors="replace")[:300]
                raise ApiError(f"{method} {path.split('?')[0]}: HTTP {e.code} {body}".strip(), e.code, e.code >= 500) from None
            except OSError as e:  # URLError, TLS errors, connection refused/reset
                last = e
        raise ApiError(f"{method} {path.split('?')[0]}: {last}", 0, True)

    def _token(self, challenge: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
        headers = {"Authorization": f"Basic {self._basic_auth}"} if self._basic_auth else {}
        request = urllib.request.Request(f"{params['realm']}?{query}", headers=headers)
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            body = json.load(response)
        return body.get("token") or body["access_token"]

    # --- the operations -------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> tuple[str, bytes] | None:
        """(digest, bytes) of a manifest, or None if absent."""
        status, headers, body = self.call(
            "GET", f"/v2/{repository}/manifests/{reference}", {"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"}
        )
        if status == 404:
            return None
        return headers.get("Docker-Content-Digest") or sha256_digest(body), body

    def has_blob(self, repository: str, digest: str) -> bool:
        return self.call("HEAD", f"/v2/{repository}/blobs/{digest}")[0] == 200

    def get_blob(self, repository: str, digest: str) -> bytes:
        status, _, body = self.call("GET", f"/v2/{repository}/blobs/{digest}")
        if status == 404 or sha256_digest(body) != digest:
            raise ApiError(f"the blob {digest} of {repository} is missing or corrupt")
        return body

    def _location(self, headers: Any) -> str:
        location = headers.get("Location") or ""
        if not location:
            raise ApiError("the registry started an upload without a Location")
        return location

    def _finish_upload(self, location: str, digest: str, data: bytes) -> None:
        separator = "&" if "?" in location else "?"
        self.call(
            "PUT", f"{location}{separator}digest={urllib.parse.quote(digest)}",
            {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}, data,
        )

    def upload_blob(self, repository: str, data: bytes) -> None:
        """A monolithic upload: POST, then PUT of the bytes with their digest."""
        _, headers, _ = self.call("POST", f"/v2/{repository}/blobs/uploads/", {"Content-Length": "0"}, b"")
        self._finish_upload(self._location(headers), sha256_digest(data), data)

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """True if the registry mounted the blob from `source`; else it is copied over (False)."""
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        status, headers, _ = self.call("POST", f"/v2/{repository}/blobs/uploads/?{query}", {"Content-Length": "0"}, b"")
        if status == 201:
            return True
        self._finish_upload(self._location(headers), digest, self.get_blob(source, digest))
        return False

    def put_manifest(self, repository: str, tag: str, media_type: str, manifest: bytes) -> str:
        _, headers, _ = self.call("PUT", f"/v2/{repository}/manifests/{tag}", {"Content-Type": media_type}, manifest)
        return headers.get("Docker-Content-Digest") or ""


class BaseNotUsable(Exception):
    """The base is not in the registry as the local one: the Lambda cannot be pushed by the API."""


def base_manifest(api: RegistryApi, base_repository: str, base_tag: str, base_image_id: str) -> dict:
    """The base's manifest in the registry, checked to be the local base (its config is the base id)."""
    found = api.get_manifest(base_repository, base_tag)
    if found is None:
        raise BaseNotUsable(f"the base {base_repository}:{base_tag} is not in the registry")
    manifest = json.loads(found[1])
    config = (manifest.get("config") or {}).get("digest")
    if config != base_image_id:
        raise BaseNotUsable(
            f"the base {base_repository}:{base_tag} in the registry is the image {config}, not the local {base_image_id}"
        )
    return manifest


def push_assembled(
    api: RegistryApi,
    repository: str,
    tags: list[str],
    base: dict,
    base_repository: str,
    config: bytes,
    layer_gz: bytes,
) -> dict:
    """Pushes the image (manifest computed first); the digest and what each blob took."""
    manifest = lambda_manifest(base, config, layer_gz)
    digest = sha256_digest(manifest)
    blobs = {"present": 0, "mounted": 0, "uploaded": 0}
    for layer in base["layers"]:
        if api.has_blob(repository, layer["digest"]):
            blobs["present"] += 1
        elif repository == base_repository:
            raise ApiError(f"the layer {layer['digest']} of the base's manifest is not in {repository}")
        elif api.mount_blob(repository, layer["digest"], base_repository):
            blobs["mounted"] += 1
        else:
            blobs["uploaded"] += 1
    for data in (layer_gz, config):
        if api.has_blob(repository, sha256_digest(data)):
            blobs["present"] += 1
        else:
            api.upload_blob(repository, data)
            blobs["uploaded"] += 1
    media_type = json.loads(manifest)["mediaType"]
    for tag in tags:
        pushed = api.put_manifest(repository, tag, media_type, manifest)
        if pushed and pushed != digest:
            raise ApiError(f"the registry stored {repository}:{tag} as {pushed}, not as the computed {digest}")
    return {"digest": digest, "media_type": media_type, "blobs": blobs}

