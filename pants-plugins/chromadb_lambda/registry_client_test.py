from __future__ import annotations

import subprocess

import pytest

from chromadb_lambda.registry_client import (
    PublishError,
    classify_push_failure,
    docker_with_retry,
    merge_deploy_manifest,
    push_with_retry,
    registry_base_urls,
    scrub,
)

DIGEST = "sha256:" + "ab" * 32


def outcomes(*results: tuple[int, str]):
    queue = list(results)
    calls = []

    def push() -> subprocess.CompletedProcess:
        calls.append(1)
        code, out = queue.pop(0)
        return subprocess.CompletedProcess([], code, stdout=out)

    return push, calls


@pytest.mark.parametrize(
    "output, kind",
    [
        ("unauthorized: authentication required", "auth"),
        ("denied: requested access to the resource is denied", "auth"),
        ("no basic auth credentials", "auth"),
        ("received unexpected HTTP status: 503 Service Unavailable", "transient"),
        ("dial tcp 127.0.0.1:5000: connect: connection refused", "transient"),
        ("read tcp: connection reset by peer", "transient"),
        ("manifest invalid: manifest invalid", "other"),
    ],
)
def test_classify_push_failure(output: str, kind: str) -> None:
    assert classify_push_failure(output) == kind


def test_transient_failures_are_retried_with_backoff() -> None:
    push, calls = outcomes((1, "received unexpected HTTP status: 502 Bad Gateway"), (0, f"latest: digest: {DIGEST} size: 1"))
    sleeps: list[float] = []
    assert push_with_retry(push, "r/x:latest", "r", attempts=3, sleep=sleeps.append) == (DIGEST, 2)
    assert sleeps == [1.0]


def test_auth_failures_are_never_retried() -> None:
    push, calls = outcomes((1, "unauthorized: authentication required"), (0, ""))
    with pytest.raises(PublishError, match=r"The registry r refused the push of r/x:latest \(not retried\)"):
        push_with_retry(push, "r/x:latest", "r", attempts=3, sleep=lambda _: None)
    assert len(calls) == 1


def test_retries_are_bounded() -> None:
    push, calls = outcomes(*[(1, "connect: connection refused")] * 3)
    with pytest.raises(PublishError, match="failed after 3 attempts: connect: connection refused"):
        push_with_retry(push, "r/x:latest", "r", attempts=3, sleep=lambda _: None)
    assert len(calls) == 3


def test_deploy_manifest_belongs_to_one_publish_session() -> None:
    old = merge_deploy_manifest(None, "s1", "a:a", {"image": "r/a@sha256:1"})
    assert merge_deploy_manifest(old, "s1", "b:b", {"image": "r/b@sha256:2"})["images"] == {
        "a:a": {"image": "r/a@sha256:1"},
        "b:b": {"image": "r/b@sha256:2"},
    }
    # A new publish starts over: an image it did not publish is not listed.
    assert merge_deploy_manifest(old, "s2", "b:b", None) == {"version": 1, "session": "s2", "images": {}}


def test_loopback_registries_may_speak_plain_http() -> None:
    assert registry_base_urls("127.0.0.1:5000") == ("https://127.0.0.1:5000", "http://127.0.0.1:5000")
    assert registry_base_urls("localhost:5000")[-1] == "http://localhost:5000"
    assert registry_base_urls("123456789012.dkr.ecr.us-east-1.amazonaws.com") == (
        "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
    )


def test_scrub_hides_secrets() -> None:
    assert scrub("login with QVdTOnNlY3JldA== failed", ["QVdTOnNlY3JldA==", ""]) == "login with *** failed"


def test_pull_failures_name_the_pull_and_its_permissions() -> None:
    pull, calls = outcomes((1, "denied: requested access to the resource is denied"))
    with pytest.raises(PublishError, match=r"(?s)refused the pull of r/x:ck-1 \(not retried\).*ecr:BatchGetImage"):
        docker_with_retry(pull, "pull", "r/x:ck-1", "r", 3, "for ECR the identity needs `ecr:BatchGetImage`", lambda _: None)
    pull, calls = outcomes(*[(1, "connect: connection refused")] * 2)
    with pytest.raises(PublishError, match="Pulling r/x:ck-1 from r failed after 2 attempts"):
        docker_with_retry(pull, "pull", "r/x:ck-1", "r", 2, "", lambda _: None)
    assert len(calls) == 2


def test_pull_takes_the_first_registry_that_has_the_key_and_tags_it_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    from chromadb_lambda import registry_client

    heads = {"down:5000": PublishError("Cannot reach the registry down:5000"), "empty:5000": None, "ok:5000": (DIGEST, "application/vnd.docker.distribution.manifest.v2+json")}

    def fake_head(address: str, repository: str, reference: str, basic_auth: str | None, attempts: int = 1) -> object:
        assert reference == "ck-1"
        head = heads[address]
        if isinstance(head, Exception):
            raise head
        return head

    calls: list[tuple[str, ...]] = []
    image_platform = "linux/amd64"

    def fake_docker(spec: dict, config_dir: str | None, *args: str) -> subprocess.CompletedProcess:
        calls.append(args)
        out = {"image": f"sha256:image {image_platform}\n", "version": "linux/amd64\n"}.get(args[0], "")
        return subprocess.CompletedProcess([], 0, stdout=out)

    monkeypatch.setattr(registry_client, "manifest_head", fake_head)
    monkeypatch.setattr(registry_client, "run_docker", fake_docker)
    monkeypatch.setattr(registry_client, "docker_config_auth", lambda address: None)
    spec = {
        "docker": "docker",
        "key_tag": "ck-1",
        "local_refs": ["x:latest", "x:ck-1"],
        "attempts": 1,
        "registries": [{"address": a, "repository": "x", "tags": ["ck-1"], "ecr": None} for a in heads],
    }
    result = registry_client.pull(spec)
    assert result["pulled"] == {"address": "ok:5000", "ref": "ok:5000/x:ck-1", "digest": DIGEST, "image_id": "sha256:image"}
    assert result["warnings"] == [{"address": "down:5000", "error": "Cannot reach the registry down:5000"}]
    assert calls == [
        ("pull", "ok:5000/x:ck-1"),
        ("image", "inspect", "--format", "{{.Id}} {{.Os}}/{{.Architecture}}", "ok:5000/x:ck-1"),
        ("version", "--format", "{{.Server.Os}}/{{.Server.Arch}}"),
        ("tag", "sha256:image", "x:latest"),
        ("tag", "sha256:image", "x:ck-1"),
    ]

    # An image built for another CPU (content keys do not name one) is removed again, not used.
    image_platform = "linux/arm64"
    calls.clear()
    result = registry_client.pull(spec)
    assert result["pulled"] is None
    assert result["warnings"][-1] == {
        "address": "ok:5000",
        "error": "ok:5000/x:ck-1 is a linux/arm64 image and this engine runs linux/amd64: not used.",
    }
    assert ("image", "rm", "ok:5000/x:ck-1") in calls and not any(c[0] == "tag" for c in calls)
