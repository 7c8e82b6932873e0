"""End to end: a second, empty engine (a new CI runner) reuses image layers through a registry.

Engine A builds the Lambdas (inline cache metadata on) and pushes them to a real registry. Engine B,
with nothing but the upstream image, packages the same commit with `[lambda-image].cache_from`
pointing at the registry. A rebuilt RUN step would give new layer digests (new file times), so
identical base layers prove that B pulled them instead of building them.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from e2e.harness import DockerEngine, Registry, copy_repo, docker, image_layers, package, stop_pantsd, transfer_image

NAMES = ("compaction", "list_pending")
REPOSITORY = f"chromadb-lambda-cache-{uuid.uuid4().hex[:8]}"
UPSTREAM = "local/lambda-python:3.11"


def test_second_engine_pulls_layers_from_the_registry(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("cache"))
    work = tmp_path_factory.mktemp("services")
    targets = [f"lambdas/{name}:{name}" for name in NAMES]
    try:
        run_cross_engine(root, work, targets)
    finally:
        stop_pantsd(root)


def run_cross_engine(root: Path, work: Path, targets: list[str]) -> None:
    with Registry(work / "registry") as registry:
        cache_option = f"--lambda-image-cache-from=['{registry.address}/{{repository}}:cache']"
        options = [f"--docker-default-repository={REPOSITORY}/{{name}}", cache_option]

        infos_a, _ = package(root, *options, "package", *targets)
        base_ref = infos_a[NAMES[0]]["base_image"]["ref"]
        for ref in [base_ref, *(infos_a[name]["tags"][0] for name in NAMES)]:
            remote = f"{registry.address}/{ref.rsplit(':', 1)[0]}:cache"
            docker("tag", ref, remote)
            docker("push", remote)

        with DockerEngine(work / "engine-b") as engine_b:
            transfer_image(UPSTREAM, engine_b.host)
            infos_b, _ = package(root, *options, "package", *targets, env={"DOCKER_HOST": engine_b.host})

            base_b = infos_b[NAMES[0]]["base_image"]
            assert base_b["ref"] == base_ref and base_b["key"] == infos_a[NAMES[0]]["base_image"]["key"]
            assert docker("-H", engine_b.host, "image", "inspect", base_ref, check=False).returncode == 0
            assert image_layers(base_ref, engine_b.host) == image_layers(base_ref)
            base_layers = image_layers(base_ref)
            for name in NAMES:
                assert infos_b[name]["built"] is True
                assert infos_b[name]["content_key"] == infos_a[name]["content_key"]
                # The Lambda image sits on the very same base layers. Its own COPY layer (kilobytes) is
                # rebuilt: the base's image id differs per engine, and BuildKit keys later steps by it.
                layers = image_layers(infos_b[name]["tags"][0], engine_b.host)
                assert layers[: len(base_layers)] == base_layers and len(layers) > len(base_layers)
    docker("image", "rm", *(t for info in infos_a.values() for t in info["tags"]), check=False)

