"""End to end: `pants publish` of assembled Lambda images over the registry API, no engine push.

A real `docker-registry` (its access log counts blob uploads, cross-repository mounts and manifest
puts) and two engines: runner A (the shared engine) packages and publishes every Lambda; runner B (a
second, empty engine, another checkout path) pulls only the base A published, packages (assembles)
and publishes. Asserted:
- each digest the deploy manifest records is the registry's, and the image behind it is the local
  one: its config blob is the local image id, its layers are the base's as the registry holds them
  plus one gzip layer whose tar is the local image's last layer (diff id);
- the base's layers are uploaded once in the whole registry (by the engine's push of the base's
  content key tag), every Lambda repository mounts them, and gets exactly two uploads of its own
  (layer, config); a second publish uploads, mounts and puts nothing;
- runner B's images have A's ids, and its publish pushes nothing (all "already published").
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest

from e2e.harness import (
    DockerEngine, Registry, blob_mounts, blob_uploads, copy_repo, docker, read_docker_infos, run_pants, stop_pantsd,
)

ALL = ("compaction", "find_unembedded", "line_polling", "list_pending", "submit_batch", "word_polling")
REPOSITORY = f"chromadb-lambda-push-{uuid.uuid4().hex[:8]}"
BASE_REPOSITORY = "chromadb-lambda/base"
MANIFEST = "dist/lambda-images.deploy.json"
ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


def registry_get(registry: Registry, path: str, accept: str = ACCEPT) -> tuple[dict, bytes]:
    request = urllib.request.Request(f"http://{registry.address}/v2/{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=60) as response:
        return dict(response.headers), response.read()


def log_lines(registry: Registry) -> str:
    return registry.log_text()


def publish(root: Path, registry: Registry, env: dict | None = None, goal: str = "publish") -> str:
    result = run_pants(
        root,
        [
            f"--docker-registries={{'local': {{'address': '{registry.address}', 'default': True}}}}",
            f"--docker-default-repository={REPOSITORY}/{{name}}",
            goal,
            "lambdas::",
        ],
        env=env,
        pantsd=True,
    ).assert_success()
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("push")
    root = copy_repo(Path.cwd(), work / "a" / "repo")
    with Registry(work / "registry") as registry:
        try:
            yield {"root": root, "work": work, "registry": registry}
        finally:
            stop_pantsd(root)


def test_assembled_images_are_pushed_with_the_local_digest_and_base_layers_once(world: dict) -> None:
    root, registry = world["root"], world["registry"]
    # Publish first: the images are made (assembled) in the publish run itself.
    output = publish(root, registry)
    log = log_lines(registry)
    manifest = json.loads((root / MANIFEST).read_text())
    publish(root, registry, goal="package")  # up to date: writes the docker-info files to dist/
    infos = read_docker_infos(root)

    base_tag = infos[ALL[0]]["base_image"]["ref"].rpartition(":")[2]
    _, base_bytes = registry_get(registry, f"{BASE_REPOSITORY}/manifests/{base_tag}")
    base = json.loads(base_bytes)
    base_layers = [layer["digest"] for layer in base["layers"]]
    assert len(base_layers) >= 2

    uploads, mounts = blob_uploads(log), blob_mounts(log)
    # Every blob went up once in the whole registry: the base's by the engine (its content key tag).
    assert [d for d, n in Counter(d for _, d in uploads).items() if n > 1] == [], uploads
    assert sorted(d for r, d in uploads if r == BASE_REPOSITORY) == sorted([*base_layers, base["config"]["digest"]])
    for name in ALL:
        repo = f"{REPOSITORY}/{name}"
        info = infos[name]
        entry = manifest["images"][f"lambdas/{name}:{name}"]
        record = entry["registries"][registry.address]
        headers, served = registry_get(registry, f"{repo}/manifests/latest")
        digest = "sha256:" + hashlib.sha256(served).hexdigest()
        # The deploy manifest pins the digest the registry serves for both tags.
        assert record["status"] == "pushed" and record["digest"] == digest == headers["Docker-Content-Digest"], name
        assert entry["image"] == f"{registry.address}/{repo}@{digest}", name
        assert registry_get(registry, f"{repo}/manifests/{entry['content_key_tag']}")[0]["Docker-Content-Digest"] == digest
        # The image behind it is the local one: config = local image id, layers = base's + ours.
        body = json.loads(served)
        assert body["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json", name
        assert body["config"]["digest"] == info["image_id"], name
        assert [layer["digest"] for layer in body["layers"][:-1]] == base_layers, name
        own = body["layers"][-1]
        assert own["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip", name
        _, layer_gz = registry_get(registry, f"{repo}/blobs/{own['digest']}", accept="*/*")
        local_layers = json.loads(
            docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", info["image_id"]).stdout
        )
        assert "sha256:" + hashlib.sha256(gzip.decompress(layer_gz)).hexdigest() == local_layers[-1], name
        assert layer_gz[4:8] == b"\0\0\0\0", name  # gzip mtime 0
        # The base's layers were mounted from the base's repository; two blobs of its own uploaded.
        assert sorted(d for r, d, src in mounts if r == repo and src == BASE_REPOSITORY) == sorted(base_layers), name
        assert sorted(d for r, d in uploads if r == repo) == sorted([own["digest"], info["image_id"]]), name
    assert output.count("by the registry API:") == len(ALL), output
    world.update(manifest=manifest, infos=infos, base_tag=base_tag)


def test_a_second_publish_uploads_nothing(world: dict) -> None:
    registry = world["registry"]
    before = log_lines(registry)
    output = publish(world["root"], registry)
    new = log_lines(registry)[len(before):]
    assert blob_uploads(new) == [] and blob_mounts(new) == [], new
    assert re.findall(r'"PUT /v2/\S+/manifests/', new) == []
    assert output.count("already published, nothing pushed") == len(ALL), output
    manifest = json.loads((world["root"] / MANIFEST).read_text())
    assert {a: e["image"] for a, e in manifest["images"].items()} == {a: e["image"] for a, e in world["manifest"]["images"].items()}


def test_a_second_runner_with_the_published_base_gets_the_same_images_and_pushes_nothing(world: dict) -> None:
    registry, work = world["registry"], world["work"]
    root_b = copy_repo(Path.cwd(), work / "b" / "checkout" / "elsewhere")
    with DockerEngine(work / "engine-b", bridge="cl-push-b", subnet="172.31.238.1/24") as engine_b:
        env = {"DOCKER_HOST": engine_b.host}
        # Runner B's engine gets the base A published (by its content key tag), nothing else.
        published_base = f"{registry.address}/{BASE_REPOSITORY}:{world['base_tag']}"
        docker("-H", engine_b.host, "pull", "-q", published_base)
        docker("-H", engine_b.host, "tag", published_base, f"{BASE_REPOSITORY}:{world['base_tag']}")
        before = log_lines(registry)
        try:
            publish(root_b, registry, env=env, goal="package")
            infos_b = read_docker_infos(root_b)
            output = publish(root_b, registry, env=env)
        finally:
            stop_pantsd(root_b)
        new = log_lines(registry)[len(before):]
    for name in ALL:
        assert infos_b[name]["built"] is True and infos_b[name]["pulled_from"] is None, name
        assert infos_b[name]["image_id"] == world["infos"][name]["image_id"], name
    assert blob_uploads(new) == [] and blob_mounts(new) == [], new
    assert re.findall(r'"PUT /v2/\S+/manifests/', new) == []
    assert output.count("already published, nothing pushed") == len(ALL), output
    manifest_b = json.loads((root_b / MANIFEST).read_text())
    assert {a: e["image"] for a, e in manifest_b["images"].items()} == {
        a: e["image"] for a, e in world["manifest"]["images"].items()
    }
