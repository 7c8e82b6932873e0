"""End to end: `pants publish` of every Lambda image to an ECR registry, through the whole auth path.

A moto server serves the ECR API over HTTP (`AWS_ENDPOINT_URL_ECR`); a real `docker-registry`, protected
by htpasswd with user `AWS` and the password moto's authorization token decodes to, receives the
pushes. Only boto3's token, written into the private Docker config of the push, lets them in. The
registry's access log counts the manifests pushed; the deploy manifest in `dist/` must match the
digests the registry serves.
"""
from __future__ import annotations

import base64
import json
import os
import random
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
    extra: tuple[str, ...] = (), goal: str = "publish",
) -> tuple[PantsResult, dict]:
    """Runs `goal` (publish, or package) against the ECR registry; the deploy manifest written."""
    root = world["root"]
    if registries is None:
        registries = {"ecr": {"address": world["registry"].address, "default": True}}
    (root / MANIFEST).unlink(missing_ok=True)
    result = run_pants(
        root,
        [
            f"--docker-registries={registries!r}",
            "--lambda-image-ecr-registries=['@ecr']",
            f"--docker-default-repository={REPOSITORY}/{{name}}",
            *extra,
            goal,
            *(targets or ("lambdas::",)),
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

    # Each image went in under its tag and its content key tag, once.
    puts = registry.manifest_puts()
    assert sorted(repo for repo, _ in puts) == sorted(f"{REPOSITORY}/{name}" for name in ALL for _ in range(2))

    # The deploy manifest pins exactly the digests the registry serves: single-platform image manifests.
    assert set(manifest["images"]) == {f"lambdas/{name}:{name}" for name in ALL}
    for name in ALL:
        entry = manifest["images"][f"lambdas/{name}:{name}"]
        repository = f"{REPOSITORY}/{name}"
        digest, body = registry_manifest(registry, repository, "latest")
        assert entry["image"] == f"{registry.address}/{repository}@{digest}"
        assert body["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert "manifests" not in body  # not a list/index: Lambda takes one image manifest
        assert registry_manifest(registry, repository, entry["content_key_tag"])[0] == digest
        assert entry["registries"][registry.address]["status"] == "pushed"
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


def package_info(world: dict, name: str) -> dict:
    return json.loads((world["root"] / f"dist/lambdas.{name}/{name}.docker-info.json").read_text())


def test_package_pulls_a_published_image_through_ecr_auth(world: dict) -> None:
    """`pull_from_registries`: an image the engine lacks comes from the ECR registry, not a build."""
    name, registry = "compaction", world["registry"]
    entry = world["first"]["images"][f"lambdas/{name}:{name}"]
    image_id = json.loads(docker("image", "inspect", f"{REPOSITORY}/{name}:{entry['content_key_tag']}").stdout)[0]["Id"]
    docker("image", "rm", "-f", image_id)  # every tag: the engine no longer has this image
    blobs_before = len(registry.blob_gets())
    result, _ = publish(world, f"lambdas/{name}:{name}", goal="package", extra=("--lambda-image-pull-from-registries",))
    result.assert_success()
    info = package_info(world, name)
    assert info["pulled_from"] == f"{registry.address}/{REPOSITORY}/{name}:{entry['content_key_tag']}"
    assert info["built"] is False and info["image_id"] == image_id
    assert f"Lambda image {REPOSITORY}/{name}:latest pulled from {info['pulled_from']}" in result.stderr
    assert len(registry.blob_gets()) > blobs_before
    assert TOKEN not in result.stdout + result.stderr and MOTO_PASSWORD not in result.stdout + result.stderr


def test_package_builds_when_the_registry_cannot_be_asked(world: dict) -> None:
    name = "list_pending"
    key_tag = world["first"]["images"][f"lambdas/{name}:{name}"]["content_key_tag"]
    docker("image", "rm", f"{REPOSITORY}/{name}:{key_tag}")  # untagged: the engine lacks this content key
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    result, _ = publish(
        world, f"lambdas/{name}:{name}", goal="package", registries={"down": {"address": down, "default": True}},
        extra=("--lambda-image-pull-from-registries", "--lambda-image-push-attempts=1"),
    )
    result.assert_success()
    assert f"could not pull {REPOSITORY}/{name}:{key_tag} from {down}, building it instead: Cannot reach the registry {down}" in result.stderr
    info = package_info(world, name)
    assert info["built"] is True and info["pulled_from"] is None


def test_one_changed_handler_pushes_one_image(world: dict) -> None:
    root = world["root"]
    before = len(world["registry"].manifest_puts())
    with open(root / "lambdas/list_pending/handler.py", "a") as f:
        f.write("\n# edited\n")
    try:
        result, manifest = publish(world)
    finally:
        git(root, "checkout", "--", ".")
    result.assert_success()
    new_puts = world["registry"].manifest_puts()[before:]
    assert sorted(repo for repo, _ in new_puts) == [f"{REPOSITORY}/list_pending"] * 2
    changed = {a for a, e in manifest["images"].items() if e["image"] != world["first"]["images"][a]["image"]}
    assert changed == {"lambdas/list_pending:list_pending"}


def test_unreachable_registry_fails_and_manifest_lists_only_successful_pushes(world: dict) -> None:
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    registries = {
        "ecr": {"address": world["registry"].address, "default": True},
        "down": {"address": down, "default": True},
    }
    result, manifest = publish(world, registries=registries, extra=("--lambda-image-push-attempts=2",))
    assert result.exit_code != 0
    output = result.stdout + result.stderr
    for name in ALL:
        assert f"lambdas/{name}:{name}: NOT published to {down}: Cannot reach the registry {down} after 2 attempts" in output
        assert f"✕ {down}/{REPOSITORY}/{name}:latest failed" in output
        # What did reach the ECR registry is in the manifest, and nothing else.
        entry = manifest["images"][f"lambdas/{name}:{name}"]
        assert set(entry["registries"]) == {world["registry"].address}


def test_refused_credentials_are_a_clear_error_and_leave_no_token_behind(world: dict) -> None:
    root, work = world["root"], world["work"]
    with Registry(work / "wrong-password", credentials=("AWS", "not-the-ecr-token")) as wrong:
        result, manifest = publish(world, registries={"ecr": {"address": wrong.address, "default": True}})
        assert wrong.manifest_puts() == []
    assert result.exit_code != 0
    output = result.stdout + result.stderr
    assert f"The registry {wrong.address} refused to show {REPOSITORY}/compaction:" in output
    assert "check the registry credentials" in output
    assert manifest["images"] == {}
    # The token is nowhere: not in the output, dist/, Pants' work dir, the temp dir, or Pants' store.
    assert TOKEN not in output and MOTO_PASSWORD not in output
    store = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pants" / "lmdb_store"
    places = [root / "dist", root / ".pants.d", store, *Path(tempfile.gettempdir()).glob("pants-sandbox-*")]
    assert files_containing(places, (TOKEN.encode(), MOTO_PASSWORD.encode())) == []


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
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    result, manifest = publish(world, "lambdas/compaction:compaction", env=env)
    assert result.exit_code != 0
    assert f"No AWS credentials for the ECR registry {world['registry'].address}" in result.stdout + result.stderr
    assert manifest["images"] == {}


def test_no_registry_is_reported_per_image(world: dict) -> None:
    result, manifest = publish(world, "lambdas/compaction:compaction", registries={})
    result.assert_success()
    assert manifest == {}
    assert f"{REPOSITORY}/compaction:latest skipped (no registry: give the target `registries`" in result.stderr
