from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chromadb_lambda.scripts import script_source
from chromadb_lambda.scripts.deploy_manifest import merge_deploy_manifest
from chromadb_lambda.scripts.registry_api import PublishError, classify_push_failure, registry_base_urls, scrub
from chromadb_lambda.scripts.registry_docker import docker_with_retry, push_with_retry

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


# --- the deploy manifest: hand-written before/after manifests -------------------------------------

MT = "application/vnd.docker.distribution.manifest.v2+json"
OLD = "sha256:" + "01" * 32
NEW = "sha256:" + "02" * 32
ECR = "1.dkr.ecr.eu-west-1.amazonaws.com"
MIRROR = "mirror:5000"
A, B, GONE = "lambdas/a:a", "lambdas/b:b", "lambdas/gone:gone"


def pushed(registry: str, repository: str, digest: str, status: str = "pushed") -> dict:
    """One registry of the `push` command's result, as publish_to_registry returns it."""
    name = f"{registry}/{repository}"
    return {
        "address": registry, "name": name, "tags": [f"{name}:latest", f"{name}:ck-new"], "pushed": 2,
        "status": status, "digest": digest, "media_type": MT, "image": f"{name}@{digest}",
    }


def result(*registries: dict, errors: tuple[tuple[str, str], ...] = ()) -> dict:
    return {
        "registries": list(registries),
        "errors": [{"address": a, "error": e} for a, e in errors],
        "content_key": "new",
        "key_tag": "ck-new",
    }


# What a good publish of `a` and `b` (session s1) left, and of a target since deleted.
BEFORE = {
    "version": 2,
    "session": "s1",
    "images": {
        A: {
            "image": f"{ECR}/a@{OLD}", "content_key": "old", "content_key_tag": "ck-old", "session": "s1",
            "recorded_at": "2026-01-01T00:00:00Z",
            "registries": {
                ECR: {
                    "image": f"{ECR}/a@{OLD}", "digest": OLD, "tags": [f"{ECR}/a:latest", f"{ECR}/a:ck-old"],
                    "status": "pushed", "media_type": MT, "content_key": "old", "session": "s1",
                    "recorded_at": "2026-01-01T00:00:00Z",
                },
            },
        },
        B: {"image": f"{ECR}/b@{OLD}", "content_key": "b", "content_key_tag": "ck-b", "registries": {ECR: {"digest": OLD}}},
        GONE: {"image": f"{ECR}/gone@{OLD}", "content_key": "g", "content_key_tag": "ck-g", "registries": {ECR: {"digest": OLD}}},
    },
}
EXISTING = frozenset({A, B, GONE})
NOW = "2026-02-02T00:00:00Z"
A_NEW_ECR = {
    "image": f"{ECR}/a@{NEW}", "digest": NEW, "tags": [f"{ECR}/a:latest", f"{ECR}/a:ck-new"], "status": "pushed",
    "media_type": MT, "content_key": "new", "session": "s2", "recorded_at": NOW,
}


def test_a_failed_publish_keeps_the_last_good_record_and_records_the_failure_beside_it() -> None:
    after = merge_deploy_manifest(
        BEFORE, "s2", A, result(errors=((ECR, "Cannot reach the registry 1.dkr... after 3 attempts"),)), EXISTING, NOW
    )
    assert after == {
        "version": 2,
        "session": "s2",
        "images": {
            A: {
                **BEFORE["images"][A],
                "errors": {ECR: {"error": "Cannot reach the registry 1.dkr... after 3 attempts", "session": "s2", "at": NOW}},
            },
            B: BEFORE["images"][B],
            GONE: BEFORE["images"][GONE],
        },
    }
    # The next good publish replaces the record and clears the failure.
    again = merge_deploy_manifest(after, "s3", A, result(pushed(ECR, "a", NEW)), EXISTING, NOW)
    assert again["images"][A] == {
        "image": f"{ECR}/a@{NEW}", "content_key": "new", "content_key_tag": "ck-new", "session": "s3",
        "recorded_at": NOW, "registries": {ECR: {**A_NEW_ECR, "session": "s3"}},
    }


def test_a_partial_publish_updates_its_target_and_keeps_the_others() -> None:
    after = merge_deploy_manifest(BEFORE, "s2", A, result(pushed(ECR, "a", NEW)), EXISTING, NOW)
    assert after == {
        "version": 2,
        "session": "s2",
        "images": {
            A: {
                "image": f"{ECR}/a@{NEW}", "content_key": "new", "content_key_tag": "ck-new", "session": "s2",
                "recorded_at": NOW, "registries": {ECR: A_NEW_ECR},
            },
            B: BEFORE["images"][B],
            GONE: BEFORE["images"][GONE],
        },
    }


def test_entries_of_targets_that_no_longer_exist_are_dropped_and_unselected_ones_kept() -> None:
    # `b` exists but this run did not select it; `gone` is no chromadb_lambda target any more.
    after = merge_deploy_manifest(BEFORE, "s2", A, result(pushed(ECR, "a", OLD, "already published")), frozenset({A, B}), NOW)
    assert sorted(after["images"]) == [A, B]
    assert after["images"][B] == BEFORE["images"][B]
    assert after["images"][A]["registries"][ECR]["status"] == "already published"
    # Even a failed publish drops them: an entry of a deleted Lambda is not a good record.
    failed = merge_deploy_manifest(BEFORE, "s2", A, result(errors=((ECR, "down"),)), frozenset({A}), NOW)
    assert sorted(failed["images"]) == [A]
    assert failed["images"][A]["registries"] == BEFORE["images"][A]["registries"]


def test_two_registries_one_failing_updates_one_and_keeps_the_other() -> None:
    before = {
        "version": 2, "session": "s1",
        "images": {A: {**BEFORE["images"][A], "registries": {
            **BEFORE["images"][A]["registries"], MIRROR: {"image": f"{MIRROR}/a@{OLD}", "digest": OLD},
        }}},
    }
    after = merge_deploy_manifest(
        before, "s2", A, result(pushed(ECR, "a", NEW), errors=((MIRROR, "refused (not retried)"),)), frozenset({A}), NOW
    )
    assert after == {
        "version": 2,
        "session": "s2",
        "images": {
            A: {
                "image": f"{ECR}/a@{NEW}", "content_key": "new", "content_key_tag": "ck-new", "session": "s2",
                "recorded_at": NOW,
                "registries": {ECR: A_NEW_ECR, MIRROR: {"image": f"{MIRROR}/a@{OLD}", "digest": OLD}},
                "errors": {MIRROR: {"error": "refused (not retried)", "session": "s2", "at": NOW}},
            },
        },
    }


def test_a_target_that_never_published_has_its_failures_apart_until_it_publishes() -> None:
    after = merge_deploy_manifest(None, "s1", A, result(errors=((ECR, "down"),)), frozenset({A}), NOW)
    # Every entry of `images` has an image; the failure is recorded all the same.
    assert after == {"version": 2, "session": "s1", "images": {}, "failures": {A: {ECR: {"error": "down", "session": "s1", "at": NOW}}}}
    again = merge_deploy_manifest(after, "s2", A, result(pushed(ECR, "a", NEW), errors=((MIRROR, "refused"),)), frozenset({A}), NOW)
    assert "failures" not in again
    assert again["images"][A]["registries"] == {ECR: A_NEW_ECR}
    assert again["images"][A]["errors"] == {MIRROR: {"error": "refused", "session": "s2", "at": NOW}}


def test_a_version_1_manifest_of_another_session_is_merged_not_replaced() -> None:
    v1 = {"version": 1, "session": "old", "images": {B: BEFORE["images"][B]}}
    after = merge_deploy_manifest(v1, "s2", A, result(pushed(ECR, "a", NEW)), None, NOW)
    assert after["version"] == 2 and after["session"] == "s2"
    assert after["images"] == {
        A: {"image": f"{ECR}/a@{NEW}", "content_key": "new", "content_key_tag": "ck-new", "session": "s2",
            "recorded_at": NOW, "registries": {ECR: A_NEW_ECR}},
        B: BEFORE["images"][B],
    }


def run_report(manifest: Path, address: str, outcome: dict, *existing: str) -> subprocess.Popen:
    # As `pants publish` runs it: the module's text with `python -c`, no sibling file anywhere.
    argv = [sys.executable, "-c", script_source("deploy_manifest.py").decode(), "report", str(manifest), "s9", address, json.dumps(outcome)]
    return subprocess.Popen([*argv, "--existing", *existing] if existing else argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_report_processes_at_once_lose_no_entry(tmp_path: Path) -> None:
    manifest = tmp_path / "dist" / "deploy.json"
    addresses = [f"lambdas/f{i}:f{i}" for i in range(24)]
    procs = [run_report(manifest, a, result(pushed(ECR, a, NEW))) for a in addresses]
    assert [p.wait() for p in procs] == [0] * len(addresses)
    assert sorted(json.loads(manifest.read_text())["images"]) == sorted(addresses)
    # Atomic writes leave no temporary file; the lock file stays.
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["deploy.json", "deploy.json.lock"]


def test_report_of_a_failure_keeps_the_file_and_says_what_it_keeps(tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.json"
    manifest.write_text(json.dumps(BEFORE))
    proc = run_report(manifest, A, result(errors=((ECR, "Cannot reach the registry"),)), A, B)
    _, stderr = proc.communicate()
    assert proc.returncode == 1
    assert stderr == f"{A}: NOT published to {ECR} (the deploy manifest keeps {ECR}/a@{OLD}): Cannot reach the registry\n"
    after = json.loads(manifest.read_text())
    assert sorted(after["images"]) == [A, B]
    assert after["images"][A]["registries"] == BEFORE["images"][A]["registries"]
    assert after["images"][A]["errors"][ECR]["error"] == "Cannot reach the registry"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", after["images"][A]["errors"][ECR]["at"])


def test_an_unreadable_manifest_is_moved_aside_not_lost(tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.json"
    manifest.write_text('{"images": {"lambdas/a:a": ')
    proc = run_report(manifest, A, result(pushed(ECR, "a", NEW)), A)
    _, stderr = proc.communicate()
    assert proc.returncode == 0
    assert (tmp_path / "deploy.json.unreadable").read_text() == '{"images": {"lambdas/a:a": '
    assert f"The deploy manifest {manifest} was not a manifest" in stderr
    assert list(json.loads(manifest.read_text())["images"]) == [A]


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
    from chromadb_lambda.scripts import registry_auth, registry_docker, registry_pull

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

    monkeypatch.setattr(registry_pull, "manifest_head", fake_head)
    monkeypatch.setattr(registry_pull, "run_docker", fake_docker)
    monkeypatch.setattr(registry_docker, "run_docker", fake_docker)  # `docker tag`
    monkeypatch.setattr(registry_auth, "docker_config_auth", lambda address: None)
    spec = {
        "docker": "docker",
        "key_tag": "ck-1",
        "local_refs": ["x:latest", "x:ck-1"],
        "attempts": 1,
        "registries": [{"address": a, "repository": "x", "tags": ["ck-1"], "ecr": None} for a in heads],
    }
    result = registry_pull.pull(spec)
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
    result = registry_pull.pull(spec)
    assert result["pulled"] is None
    assert result["warnings"][-1] == {
        "address": "ok:5000",
        "error": "ok:5000/x:ck-1 is a linux/arm64 image and this engine runs linux/amd64: not used.",
    }
    assert ("image", "rm", "ok:5000/x:ck-1") in calls and not any(c[0] == "tag" for c in calls)


def test_the_scripts_a_registry_process_gets_are_all_the_client_needs(tmp_path: Path) -> None:
    from chromadb_lambda.util_rules.registry_process import REGISTRY_SCRIPTS

    # A sandbox of only those files, run from another directory, with no package on the path.
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    for name in REGISTRY_SCRIPTS:
        (sandbox / name).write_bytes(script_source(name))
    assert sorted(p.name for p in sandbox.iterdir()) == [
        "deploy_manifest.py", "registry_api.py", "registry_auth.py", "registry_client.py",
        "registry_docker.py", "registry_pull.py", "registry_push.py",
    ]
    manifest = tmp_path / "deploy.json"
    argv = [sys.executable, "-I", str(sandbox / "registry_client.py"), "report", str(manifest), "s9", "lambdas/a:a"]
    done = subprocess.run([*argv, json.dumps(result(pushed(ECR, "a", NEW)))], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"lambdas/a:a: {ECR}/a@{NEW} (pushed 2 tags)\n"
    assert json.loads(manifest.read_text())["images"]["lambdas/a:a"]["image"] == f"{ECR}/a@{NEW}"
    # Every module imports: the usage line comes from `main`, after all sibling imports.
    usage = subprocess.run([sys.executable, "-I", str(sandbox / "registry_client.py")], cwd=tmp_path, capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.startswith(f"usage: {sandbox / 'registry_client.py'} push SPEC")
