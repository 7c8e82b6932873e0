"""End to end: assembled Lambda images are reproducible. The same commit on the same base image gives
the same image id for every Lambda on two machines.

Two "machines": two private Docker engines with their own data roots, two copies of the repo in
different paths, one with group/other permission bits removed from every file and other file times
(a checkout made under umask 077, at another time), Pants run under umask 022 / 077 and in two time
zones, one after the other. Both engines get the same base image: ONE base built once on the default
engine, then `docker save | docker load` into each. Every Lambda is then assembled and loaded on each
engine (neither pulls anything), and each engine's own `docker image inspect` must give the same id
for each Lambda, the id its docker-info names.

Both runs share this machine's Pants local store, which cannot hide a difference: the layer, config
and archive are computed in each run's own pantsd (rule code, not cached processes), and the one
cached process they use, `docker image inspect` of the base, is keyed by each engine's DOCKER_HOST.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from e2e.harness import DockerEngine, copy_repo, docker, package, read_docker_infos, run_pants, stop_pantsd, transfer_image

ALL = ("compaction", "find_unembedded", "line_polling", "list_pending", "submit_batch", "word_polling")
REPOSITORY = f"chromadb-lambda-repro-{uuid.uuid4().hex[:8]}"
OPTIONS = (f"--docker-default-repository={REPOSITORY}/{{name}}",)
UPSTREAM = "local/lambda-python:3.11"


def checkout_as_under_umask_077(root: Path, mtime: float) -> None:
    """File modes and times as a checkout under umask 077 made at `mtime` would leave them."""
    for directory, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            os.chmod(path, os.stat(path).st_mode & 0o700)
            os.utime(path, (mtime, mtime))
        os.chmod(directory, 0o700)


def package_all(root: Path, engine: DockerEngine, umask: int, tz: str) -> dict[str, dict]:
    previous = os.umask(umask)
    try:
        result = run_pants(root, [*OPTIONS, "package", "lambdas::"], env={"DOCKER_HOST": engine.host, "TZ": tz}, pantsd=True)
    finally:
        os.umask(previous)
    result.assert_success()
    return read_docker_infos(root)


def engine_image_id(engine: DockerEngine, ref: str) -> str:
    return docker("-H", engine.host, "image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def test_two_engines_give_every_lambda_the_same_image_id(tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("reproducible")
    # The base, built (or found) once on the default engine.
    seed = copy_repo(Path.cwd(), work / "seed")
    try:
        seed_info = package(seed, *OPTIONS, "package", "lambdas/list_pending:list_pending")[0]["list_pending"]
    finally:
        stop_pantsd(seed)
    docker("image", "rm", *seed_info["tags"], check=False)
    base_ref = seed_info["base_image"]["ref"]
    base_id = docker("image", "inspect", "--format", "{{.Id}}", base_ref).stdout.strip()

    root_a = copy_repo(Path.cwd(), work / "a" / "repo")
    root_b = copy_repo(Path.cwd(), work / "b" / "home" / "ci" / "checkouts" / "monorepo")
    checkout_as_under_umask_077(root_b, mtime=time.time() - 3 * 86400)
    with DockerEngine(work / "engine-a", bridge="cl-repro-a", subnet="172.31.246.1/24") as engine_a, DockerEngine(
        work / "engine-b", bridge="cl-repro-b", subnet="172.31.247.1/24"
    ) as engine_b:
        engines = (engine_a, engine_b)
        for engine in engines:
            # The upstream image too, as a runner's machine image has it (else `./pants` makes it).
            transfer_image(UPSTREAM, engine.host)
            transfer_image(base_ref, engine.host)
        try:
            infos_a = package_all(root_a, engine_a, umask=0o022, tz="UTC")
            time.sleep(2)
            infos_b = package_all(root_b, engine_b, umask=0o077, tz="<+14>-14")
        finally:
            stop_pantsd(root_a)
            stop_pantsd(root_b)
        base_ids = [engine_image_id(engine, base_ref) for engine in engines]
        ids = {
            name: [engine_image_id(engine, f"{REPOSITORY}/{name}:latest") for engine in engines] for name in ALL
        }
        layers = {
            name: [
                json.loads(
                    docker("-H", engine.host, "image", "inspect", "--format", "{{json .RootFS.Layers}}",
                           f"{REPOSITORY}/{name}:latest").stdout
                )
                for engine in engines
            ]
            for name in ALL
        }

    assert base_ids == [base_id, base_id]
    assert sorted(infos_a) == sorted(infos_b) == sorted(ALL)
    for name in ALL:
        # Assembled and loaded on each engine, on the base it got: nothing pulled, nothing adopted.
        for infos in (infos_a, infos_b):
            assert infos[name]["built"] is True and infos[name]["pulled_from"] is None, infos[name]
            assert infos[name]["import_check"] == "passed", infos[name]
            assert infos[name]["base_image"]["ref"] == base_ref
        assert infos_a[name]["content_key"] == infos_b[name]["content_key"], name
        id_a, id_b = ids[name]
        assert id_a.startswith("sha256:") and id_a == id_b, (name, ids[name])
        assert infos_a[name]["image_id"] == id_a and infos_b[name]["image_id"] == id_b, name
        # The base's layers and one more, the same on both engines.
        layers_a, layers_b = layers[name]
        assert layers_a == layers_b and len(layers_a) == len(layers[ALL[0]][0]), name
    # Different Lambdas are different images.
    assert len({ids[name][0] for name in ALL}) == len(ALL), ids
