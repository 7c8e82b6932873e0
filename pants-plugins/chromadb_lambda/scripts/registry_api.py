"""The registry HTTP API v2 as the registry scripts use it: does a tag exist (and its digest), which
failures are retried, and the error every script reports (`PublishError`).

Part of the scripts `registry_client.py` runs (see its docstring); standard library only.
"""
from __future__ import annotations

import ipaddress
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Iterator

IMAGE_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
INDEX_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)

# Never retried: the registry understood the request and said no.
_AUTH_FAILURE_RE = re.compile(
    r"unauthorized|authentication required|access denied|denied:|no basic auth credentials|forbidden",
    re.IGNORECASE,
)
# Retried a bounded number of times: the registry or the network hiccuped.
_TRANSIENT_FAILURE_RE = re.compile(
    r"received unexpected HTTP status: 5\d\d|\b50[0234]\b|connection reset by peer|connection refused"
    r"|i/o timeout|TLS handshake timeout|unexpected EOF|: EOF\b|server misbehaving|toomanyrequests"
    r"|too many requests",
    re.IGNORECASE,
)
_DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")


class PublishError(Exception):
    """A push that cannot succeed as configured; the message says what to fix."""


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (1, 2, 4, at most 8)."""
    return min(2.0 ** (attempt - 1), 8.0)


def after_attempts(attempt: int) -> str:
    return f" after {attempt} attempts" if attempt > 1 else ""


def classify_push_failure(output: str) -> str:
    """`auth`, `transient` or `other`: only transient failures are retried."""
    if _AUTH_FAILURE_RE.search(output):
        return "auth"
    if _TRANSIENT_FAILURE_RE.search(output):
        return "transient"
    return "other"


def scrub(text: str, secrets: Iterator[str] | list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def is_loopback(address: str) -> bool:
    host = urllib.parse.urlsplit(f"//{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def registry_base_urls(address: str) -> tuple[str, ...]:
    # Docker itself speaks plain HTTP to loopback registries (insecure by default); so do we.
    return (f"https://{address}", f"http://{address}") if is_loopback(address) else (f"https://{address}",)


# --- the registry HTTP API v2 ---------------------------------------------------------------------


def _parse_challenge(header: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def _open(request: urllib.request.Request, timeout: float = 30):  # noqa: ANN202 - http.client response
    return urllib.request.urlopen(request, timeout=timeout)


def manifest_head(
    address: str,
    repository: str,
    reference: str,
    basic_auth: str | None,
    attempts: int = 1,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, str] | None:
    """(digest, media type) of a tag in a registry, or None if the tag does not exist.

    Basic credentials are sent as-is (ECR, htpasswd registries) or exchanged for a bearer token when
    the registry asks for one (Docker Hub, Harbor, GitLab...). An unreachable registry or a 5xx is
    retried up to `attempts` times; a refusal is not.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _manifest_head_once(address, repository, reference, basic_auth)
        except _Unreachable as e:
            if attempt == attempts:
                raise PublishError(f"Cannot reach the registry {address}{after_attempts(attempt)}: {e.args[0]}") from None
            sleep(backoff(attempt))
    raise AssertionError("unreachable")


class _Unreachable(Exception):
    pass


def _manifest_head_once(address: str, repository: str, reference: str, basic_auth: str | None) -> tuple[str, str] | None:
    last_error: Exception | None = None
    for base_url in registry_base_urls(address):
        url = f"{base_url}/v2/{repository}/manifests/{reference}"
        headers = {"Accept": ", ".join((*IMAGE_MANIFEST_TYPES, *INDEX_MANIFEST_TYPES))}
        if basic_auth:
            headers["Authorization"] = f"Basic {basic_auth}"
        try:
            try:
                response = _open(urllib.request.Request(url, method="HEAD", headers=headers))
            except urllib.error.HTTPError as e:
                challenge = e.headers.get("WWW-Authenticate", "") if e.code == 401 else ""
                if not challenge.lower().startswith("bearer"):
                    raise
                headers["Authorization"] = f"Bearer {_bearer_token(challenge, basic_auth)}"
                response = _open(urllib.request.Request(url, method="HEAD", headers=headers))
            with response:
                return response.headers["Docker-Content-Digest"], response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            if e.code in (401, 403):
                raise PublishError(
                    f"The registry {address} refused to show {repository}:{reference} (HTTP {e.code}): "
                    "check the registry credentials (for ECR, the `ecr:BatchGetImage` permission)."
                ) from None
            last_error = e
        except OSError as e:  # URLError, TLS errors, connection refused/reset
            last_error = e
    raise _Unreachable(str(last_error))


def _bearer_token(challenge: str, basic_auth: str | None) -> str:
    params = _parse_challenge(challenge)
    query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
    headers = {"Authorization": f"Basic {basic_auth}"} if basic_auth else {}
    with _open(urllib.request.Request(f"{params['realm']}?{query}", headers=headers)) as response:
        body = json.load(response)
    return body.get("token") or body["access_token"]
