"""End to end: `pants publish` of every Lambda image to an ECR registry, through the whole auth path.

A moto server serves the ECR API over HTTP (`AWS_ENDPOINT_URL_ECR`); a real `docker-registry`, protected
by htpasswd with user `AWS` and the password moto's authorization token decodes to, receives the
pushes. Only boto3's token, written into the private Docker config of the push, lets them in. The
registry's access log counts the manifests pushed; the deploy manifest in `dist/` must match the
digests the registry serves.

The tests run in order on one scratch repo and one registry, and the deploy manifest is never
deleted between them: each one checks what its publish changed in it, and that no failed publish
(a dead registry, refused or missing credentials) lost what an earlier good publish recorded.
"""
from __future__ import annotations

import base64
import json
import os
import random
import re
import tempfile
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from e2e.harness import PantsResult, Registry, copy_repo, docker, free_port, git, init_git_repo, run_pants, stop_pantsd

ALL = ("compaction", "find_unembedded", "line_polling", "list_pending", "submit_batch", "word_polling")
REPOSITORY = f"chromadb-lambda-publish-{uuid.uuid4().hex[:8]}"
# moto's GetAuthorizationToken gives base64("AWS:<account>-auth-token"). A random account per run makes
# the secret new, so finding it in a file means this run leaked it.
ACCOUNT = str(random.SystemRandom().randrange(10**11, 10**12))
MOTO_PASSWORD = f"{ACCOUNT}-auth-token"
TOKEN = base64.b64encode(f"AWS:{MOTO_PASSWORD}".encode()).decode()
MANIFEST = "dist/lambda-images.deploy.json"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("publish"))
    init_git_repo(root)
    work = tmp_path_factory.mktemp("publish-services")
    port = free_port()
    previous_account = os.environ.get("MOTO_ACCOUNT_ID")
    os.environ["MOTO_ACCOUNT_ID"] = ACCOUNT  # read by the in-process moto server on every request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    aws_env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_ECR": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-credentials"),
        "AWS_CONFIG_FILE": str(work / "no-config"),
    }
    try:
        with Registry(work / "ecr", credentials=("AWS", MOTO_PASSWORD)) as registry:
            yield {"root": root, "work": work, "registry": registry, "aws_env": aws_env, "ecr_endpoint": aws_env["AWS_ENDPOINT_URL_ECR"]}
    finally:
        stop_pantsd(root)
        moto.stop()
        if previous_account is None:
            os.environ.pop("MOTO_ACCOUNT_ID", None)
        else:
            os.environ["MOTO_ACCOUNT_ID"] = previous_account


def publish(
    world: dict, *targets: str, registries: dict | None = None, env: dict | None = None,
    extra: tuple[str, ...] = (), goal: str = "publish", changed_since: str | None = None,
) -> tuple[PantsResult, dict]:
    """Runs `goal` (publish, or package) against the ECR registry; the deploy manifest after it.

    The manifest is left in place from one run to the next, as in a real repo.
    """
    root = world["root"]
    if registries is None:
        registries = {"ecr": {"address": world["registry"].address, "default": True}}
    # `--changed-since` selects the changed Lambdas (and their dependents, `[changed].dependents`).
    selection = ((f"--changed-since={changed_since}",), ()) if changed_since else ((), targets or ("lambdas::",))
    result = run_pants(
        root,
        [
            f"--docker-registries={registries!r}",
            "--lambda-image-ecr-registries=['@ecr']",
            f"--docker-default-repository={REPOSITORY}/{{name}}",
            *extra,
            *selection[0],
            goal,
            *selection[1],
        ],
        env={**world["aws_env"], **(env or {})},
        pantsd=True,
    )
    manifest = json.loads((root / MANIFEST).read_text()) if (root / MANIFEST).exists() else {}
    return result, manifest


def registry_manifest(registry: Registry, repository: str, tag: str) -> tuple[str, dict]:
    """(digest, manifest) of a tag, read from the registry's HTTP API with the ECR credentials."""
    request = urllib.request.Request(
        f"http://{registry.address}/v2/{repository}/manifests/{tag}",
        headers={
            "Authorization": f"Basic {TOKEN}",
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["Docker-Content-Digest"], json.load(response)


def address_of(name: str) -> str:
    return f"lambdas/{name}:{name}"


def assert_pins_what_the_registry_serves(registry: Registry, manifest: dict, names: tuple[str, ...]) -> None:
    """Each entry's image, and its record for `registry`, name the digest the registry's tags have now."""
    for name in names:
        entry = manifest["images"][address_of(name)]
        repository = f"{REPOSITORY}/{name}"
        digest, _ = registry_manifest(registry, repository, "latest")
        assert entry["image"] == f"{registry.address}/{repository}@{digest}", name
        assert entry["registries"][registry.address]["digest"] == digest, name
        assert registry_manifest(registry, repository, entry["content_key_tag"])[0] == digest, name


def published_repositories(result: PantsResult) -> set[str]:
    """The repositories the publish goal lists as published (`✓ <ref> published to ...`)."""
    return {ref.rpartition(":")[0] for ref in re.findall(r"✓ (\S+) published to", result.stderr)}


def test_first_publish_creates_repositories_and_pushes_every_image(world: dict) -> None:
    registry = world["registry"]
    result, manifest = publish(world)
    result.assert_success()

    # The repositories were created in ECR, scan-on-push on.
    ecr = boto3.client("ecr", endpoint_url=world["ecr_endpoint"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    repos = {r["repositoryName"]: r for r in ecr.describe_repositories()["repositories"]}
    for name in ALL:
        assert repos[f"{REPOSITORY}/{name}"]["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repos[f"{REPOSITORY}/{name}"]["imageTagMutability"] == "MUTABLE"

    # Each image went in under its tag and its content key tag, once (the base's content key tag,
    # pushed first for assembled images to mount its layers from, aside).
    puts = [put for put in registry.manifest_puts() if put[0] != "chromadb-lambda/base"]
    assert sorted(repo for repo, _ in puts) == sorted(f"{REPOSITORY}/{name}" for name in ALL for _ in range(2))

    # The deploy manifest pins exactly the digests the registry serves: single-platform image manifests.
    assert set(manifest["images"]) == {address_of(name) for name in ALL}
    assert "failures" not in manifest
    assert_pins_what_the_registry_serves(registry, manifest, ALL)
    for name in ALL:
        entry = manifest["images"][address_of(name)]
        _, body = registry_manifest(registry, f"{REPOSITORY}/{name}", "latest")
        assert body["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert "manifests" not in body  # not a list/index: Lambda takes one image manifest
        assert entry["registries"][registry.address]["status"] == "pushed"
        assert entry["session"] == manifest["session"] and "errors" not in entry
    world["first"] = manifest


def test_second_publish_pushes_nothing(world: dict) -> None:
    before = len(world["registry"].manifest_puts())
    result, manifest = publish(world)
    result.assert_success()
    assert len(world["registry"].manifest_puts()) == before
    assert result.stdout.count("already published, nothing pushed") + result.stderr.count(
        "already published, nothing pushed"
    ) == len(ALL)
    assert {a: e["image"] for a, e in manifest["images"].items()} == {
        a: e["image"] for a, e in world["first"]["images"].items()
    }
    assert manifest["session"] != world["first"]["session"]
    # Every entry was confirmed by this run.
    assert {e["registries"][world["registry"].address]["status"] for e in manifest["images"].values()} == {"already published"}
    assert {e["session"] for e in manifest["images"].values()} == {manifest["session"]}
    world["good"] = manifest


def package_info(world: dict, name: str) -> dict:
    return json.loads((world["root"] / f"dist/lambdas.{name}/{name}.docker-info.json").read_text())


def test_package_pulls_a_published_image_through_ecr_auth(world: dict) -> None:
    """`pull_from_registries`: an image the engine lacks comes from the ECR registry, not a build."""
    name, registry = "compaction", world["registry"]
    entry = world["first"]["images"][address_of(name)]
    image_id = json.loads(docker("image", "inspect", f"{REPOSITORY}/{name}:{entry['content_key_tag']}").stdout)[0]["Id"]
    docker("image", "rm", "-f", image_id)  # every tag: the engine no longer has this image
    blobs_before = len(registry.blob_gets())
    result, manifest = publish(world, address_of(name), goal="package", extra=("--lambda-image-pull-from-registries",))
    result.assert_success()
    info = package_info(world, name)
    assert info["pulled_from"] == f"{registry.address}/{REPOSITORY}/{name}:{entry['content_key_tag']}"
    assert info["built"] is False and info["image_id"] == image_id
    assert f"Lambda image {REPOSITORY}/{name}:latest pulled from {info['pulled_from']}" in result.stderr
    assert len(registry.blob_gets()) > blobs_before
    assert TOKEN not in result.stdout + result.stderr and MOTO_PASSWORD not in result.stdout + result.stderr
    assert manifest == world["good"]  # `package` leaves the deploy manifest alone


def test_package_builds_when_the_registry_cannot_be_asked(world: dict) -> None:
    name = "list_pending"
    key_tag = world["first"]["images"][address_of(name)]["content_key_tag"]
    docker("image", "rm", f"{REPOSITORY}/{name}:{key_tag}")  # untagged: the engine lacks this content key
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    result, _ = publish(
        world, address_of(name), goal="package", registries={"down": {"address": down, "default": True}},
        extra=("--lambda-image-pull-from-registries", "--lambda-image-push-attempts=1"),
    )
    result.assert_success()
    assert f"could not pull {REPOSITORY}/{name}:{key_tag} from {down}, building it instead: Cannot reach the registry {down}" in result.stderr
    info = package_info(world, name)
    assert info["built"] is True and info["pulled_from"] is None


def test_changed_since_publish_updates_the_changed_entry_and_keeps_the_others(world: dict) -> None:
    root, registry, good = world["root"], world["registry"], world["good"]
    before = len(registry.manifest_puts())
    with open(root / "lambdas/list_pending/handler.py", "a") as f:
        f.write("\n# edited\n")
    git(root, "commit", "-q", "-am", "edit list_pending")  # stays: the next tests publish this state
    result, manifest = publish(world, changed_since="HEAD~1")
    result.assert_success()

    # Only list_pending was selected and pushed (its tag and its new content key tag) ...
    assert published_repositories(result) == {f"{registry.address}/{REPOSITORY}/list_pending"}
    assert sorted(repo for repo, _ in registry.manifest_puts()[before:]) == [f"{REPOSITORY}/list_pending"] * 2
    # ... its entry names the new digest, which the registry serves ...
    changed = manifest["images"][address_of("list_pending")]
    assert changed["image"] != good["images"][address_of("list_pending")]["image"]
    assert changed["content_key_tag"] != good["images"][address_of("list_pending")]["content_key_tag"]
    assert changed["session"] == manifest["session"] != good["session"]
    assert changed["registries"][registry.address]["status"] == "pushed"
    assert_pins_what_the_registry_serves(registry, manifest, ALL)
    # ... and the five Lambdas this run did not select keep their entries as the last publish wrote them.
    assert {a: e for a, e in manifest["images"].items() if a != address_of("list_pending")} == {
        address_of(name): good["images"][address_of(name)] for name in ALL if name != "list_pending"
    }
    world["good"] = manifest


def test_unreachable_second_registry_fails_and_the_manifest_records_it_beside_what_was_pushed(world: dict) -> None:
    registry, good = world["registry"], world["good"]
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    registries = {
        "ecr": {"address": registry.address, "default": True},
        "down": {"address": down, "default": True},
    }
    result, manifest = publish(world, registries=registries, extra=("--lambda-image-push-attempts=2",))
    assert result.exit_code != 0
    output = result.stdout + result.stderr
    assert set(manifest["images"]) == {address_of(name) for name in ALL}
    assert "failures" not in manifest
    for name in ALL:
        assert f"{address_of(name)}: NOT published to {down}: Cannot reach the registry {down} after 2 attempts" in output
        assert f"✕ {down}/{REPOSITORY}/{name}:latest failed" in output
        # What did reach the ECR registry is recorded (confirmed by this run), the failure beside it.
        entry = manifest["images"][address_of(name)]
        assert set(entry["registries"]) == {registry.address}
        assert entry["registries"][registry.address]["digest"] == good["images"][address_of(name)]["registries"][registry.address]["digest"]
        assert entry["registries"][registry.address]["session"] == manifest["session"]
        assert set(entry["errors"]) == {down}
        assert entry["errors"][down]["error"].startswith(f"Cannot reach the registry {down} after 2 attempts")
        assert entry["errors"][down]["session"] == manifest["session"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["errors"][down]["at"])
    assert_pins_what_the_registry_serves(registry, manifest, ALL)
    world["down"] = down
    world["good"] = manifest


def test_a_publish_to_the_dead_registry_loses_no_record(world: dict) -> None:
    """The ECR registry itself is down: every target keeps the record of its last good publish."""
    registry, good = world["registry"], world["good"]
    registry.__exit__()  # stopped; started again below on the same port and storage
    try:
        result, manifest = publish(world, extra=("--lambda-image-push-attempts=1",))
    finally:
        registry.__enter__()
    assert result.exit_code != 0
    output = result.stdout + result.stderr
    assert set(manifest["images"]) == {address_of(name) for name in ALL}
    for name in ALL:
        address = address_of(name)
        kept = good["images"][address]
        assert f"{address}: NOT published to {registry.address} (the deploy manifest keeps {kept['image']}): Cannot reach the registry {registry.address}" in output
        entry = manifest["images"][address]
        # Everything the last good publish wrote is there unchanged, plus this run's failure.
        assert {k: v for k, v in entry.items() if k != "errors"} == {k: v for k, v in kept.items() if k != "errors"}
        assert set(entry["errors"]) == {registry.address, world["down"]}
        assert entry["errors"][registry.address]["error"].startswith(f"Cannot reach the registry {registry.address}")
        assert entry["errors"][registry.address]["session"] == manifest["session"]
        assert entry["errors"][world["down"]] == kept["errors"][world["down"]]
    # The registry is back: the digests the manifest kept are the ones it serves.
    assert_pins_what_the_registry_serves(registry, manifest, ALL)
    world["good"] = manifest


def test_entries_of_deleted_lambdas_go_away_and_a_success_clears_the_failure(world: dict) -> None:
    root, registry, good = world["root"], world["registry"], world["good"]
    (root / "lambdas/submit_batch/BUILD").write_text('python_sources(name="sources")\n')  # the Lambda is gone
    try:
        result, manifest = publish(world, address_of("compaction"))
    finally:
        git(root, "checkout", "--", ".")
    result.assert_success()
    # submit_batch is no chromadb_lambda target any more; the four not selected are kept as they were.
    assert set(manifest["images"]) == {address_of(name) for name in ALL if name != "submit_batch"}
    for name in ("find_unembedded", "line_polling", "list_pending", "word_polling"):
        assert manifest["images"][address_of(name)] == good["images"][address_of(name)]
    compaction = manifest["images"][address_of("compaction")]
    assert compaction["registries"][registry.address]["status"] == "already published"
    assert compaction["registries"][registry.address]["session"] == manifest["session"]
    assert compaction["errors"] == {world["down"]: good["images"][address_of("compaction")]["errors"][world["down"]]}
    world["good"] = manifest


def test_refused_credentials_are_a_clear_error_and_leave_no_token_behind(world: dict) -> None:
    root, work, good = world["root"], world["work"], world["good"]
    with Registry(work / "wrong-password", credentials=("AWS", "not-the-ecr-token")) as wrong:
        result, manifest = publish(world, registries={"ecr": {"address": wrong.address, "default": True}})
        assert wrong.manifest_puts() == []
    assert result.exit_code != 0
    output = result.stdout + result.stderr
    assert f"The registry {wrong.address} refused to show {REPOSITORY}/compaction:" in output
    assert "check the registry credentials" in output
    # The records of the good publishes stay; each target gets the refusal beside them.
    assert set(manifest["images"]) == {address_of(name) for name in ALL if name != "submit_batch"}
    for address, entry in manifest["images"].items():
        assert entry["registries"] == good["images"][address]["registries"]
        assert entry["errors"][wrong.address]["error"].startswith(f"The registry {wrong.address} refused to show")
    # submit_batch exists again but has no record (its entry went with its target): only its failure.
    assert set(manifest["failures"]) == {address_of("submit_batch")}
    assert set(manifest["failures"][address_of("submit_batch")]) == {wrong.address}
    # The token is nowhere: not in the output, dist/, Pants' work dir, the temp dir, or Pants' store.
    assert TOKEN not in output and MOTO_PASSWORD not in output
    store = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pants" / "lmdb_store"
    places = [root / "dist", root / ".pants.d", store, *Path(tempfile.gettempdir()).glob("pants-sandbox-*")]
    assert files_containing(places, (TOKEN.encode(), MOTO_PASSWORD.encode())) == []
    world["good"] = manifest


def files_containing(places: list[Path], needles: tuple[bytes, ...]) -> list[Path]:
    found = []
    for place in places:
        for path in place.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink():
                    data = path.read_bytes()
                    if any(needle in data for needle in needles):
                        found.append(path)
            except OSError:  # a sandbox of another process, removed meanwhile
                continue
    return found


def test_missing_aws_credentials_name_the_registry_and_the_fix(world: dict) -> None:
    registry, good = world["registry"], world["good"]
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    result, manifest = publish(world, address_of("compaction"), env=env)
    assert result.exit_code != 0
    assert f"No AWS credentials for the ECR registry {registry.address}" in result.stdout + result.stderr
    compaction = manifest["images"][address_of("compaction")]
    assert compaction["registries"] == good["images"][address_of("compaction")]["registries"]
    assert compaction["errors"][registry.address]["error"].startswith(f"No AWS credentials for the ECR registry {registry.address}")
    assert {a: e for a, e in manifest["images"].items() if a != address_of("compaction")} == {
        a: e for a, e in good["images"].items() if a != address_of("compaction")
    }
    world["good"] = manifest


def test_no_registry_is_reported_per_image(world: dict) -> None:
    result, manifest = publish(world, address_of("compaction"), registries={})
    result.assert_success()
    assert manifest == world["good"]  # nothing published, nothing rewritten
    assert f"{REPOSITORY}/compaction:latest skipped (no registry: give the target `registries`" in result.stderr
