"""End to end: the image a docker-info names is one the engine holds, and every tag it lists points at
that image, whatever the engine went through; two targets never share a tag.

- pantsd warm: build an edit, delete its image, put the old `latest` back, package again (the engine's
  image listing is back to an earlier state, which a memoized build must not be replayed from);
- two scratch clones, each with its own pantsd, package the same edit at the same time on one engine;
- two Lambdas in different folders whose targets share a name.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from e2e.harness import copy_repo, docker, package, pants_counters, read_docker_infos, run_pants, stop_pantsd

REPOSITORY = f"chromadb-lambda-truth-{uuid.uuid4().hex[:8]}"
OPTIONS = (f"--docker-default-repository={REPOSITORY}/{{name}}", "--stats-log")
TARGET = "lambdas/list_pending:list_pending"
HANDLER = "lambdas/list_pending/handler.py"


def edit(root: Path, text: str) -> None:
    with open(root / HANDLER, "a") as f:
        f.write(f"\n# {text}\n")


def engine_view(info: dict) -> dict[str, str | None]:
    """What the engine says now: the id of the docker-info's image and of each of its tags."""
    refs = [info["image_id"], *info["tags"]]
    found = {}
    for ref in refs:
        result = docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        found[ref] = result.stdout.strip() if result.returncode == 0 else None
    return found


def assert_engine_holds(info: dict) -> None:
    image_id = info["image_id"]
    assert engine_view(info) == {ref: image_id for ref in [image_id, *info["tags"]]}


def test_pantsd_never_replays_a_build_whose_image_is_gone(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("replay"))
    try:
        old = package(root, *OPTIONS, "package", TARGET)[0]["list_pending"]
        edit(root, f"edit {uuid.uuid4().hex}")
        edited = package(root, *OPTIONS, "package", TARGET)[0]["list_pending"]
        assert edited["built"] is True and edited["image_id"] != old["image_id"]

        # The engine's tags go back to what they were before the edit was built.
        docker("rmi", "-f", edited["image_id"])
        docker("tag", old["image_id"], f"{REPOSITORY}/list_pending:latest")

        infos, result = package(root, *OPTIONS, "package", TARGET)
        again = infos["list_pending"]
        assert again["content_key"] == edited["content_key"]
        assert again["built"] is True, result.stderr
        assert_engine_holds(again)
        assert f"Lambda image {REPOSITORY}/list_pending:latest built:" in result.stderr

        # Nothing changed since: the next runs run no process (the target's tags are read from the
        # engine's tag store, which /info on its socket names), not even a replay of the build or a
        # listing of the engine.
        for _ in range(2):
            infos, result = package(root, *OPTIONS, "package", TARGET)
            assert infos["list_pending"]["image_id"] == again["image_id"]
            assert infos["list_pending"]["built"] is False
            assert pants_counters(result.stderr)["local_execution_requests"] == 0, result.stderr
    finally:
        stop_pantsd(root)


def start(root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(root / "pants"), "--pantsd", "--no-dynamic-ui", *OPTIONS, "package", TARGET],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_clones_packaging_the_same_edit_at_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    roots = [copy_repo(Path.cwd(), tmp_path_factory.mktemp(f"clone-{c}")) for c in "ab"]
    try:
        # Warm pantsd in each clone (and the base image), so that both reach their build together.
        for root in roots:
            package(root, *OPTIONS, "package", TARGET)
        for round_ in range(3):
            text = f"round {round_} {uuid.uuid4().hex}"
            for root in roots:
                edit(root, text)
                shutil.rmtree(root / "dist", ignore_errors=True)
            procs = [start(root) for root in roots]
            stderrs = [proc.communicate(timeout=900)[1] for proc in procs]
            for proc, stderr in zip(procs, stderrs):
                assert proc.returncode == 0, stderr
            a, b = (read_docker_infos(root)["list_pending"] for root in roots)
            assert a["content_key"] == b["content_key"]
            # Same content, same tags: both name the one image those tags point at, built once.
            assert a["image_id"] == b["image_id"], stderrs
            assert_engine_holds(a)
            assert [a["built"], b["built"]].count(True) == 1, stderrs
    finally:
        for root in roots:
            stop_pantsd(root)


LAMBDA_BUILD = """\
python_sources(name="sources")

chromadb_lambda(
    name="fn",
    handler="handler.py:handle",
    base_image="//base:lambda-base",
)
"""


def test_two_targets_sharing_a_tag_are_an_error_before_any_build(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("collision"))
    for folder in ("a", "b"):
        (root / "lambdas" / folder).mkdir()
        (root / "lambdas" / folder / "BUILD").write_text(LAMBDA_BUILD)
        (root / "lambdas" / folder / "__init__.py").write_text("")
        (root / "lambdas" / folder / "handler.py").write_text(
            f"def handle(event: dict, context: object) -> dict:\n    return {{'lambda': {folder!r}}}\n"
        )
    repository = f"{REPOSITORY}/{{name}}"
    try:
        # Only one of the two on the command line: still an error, since it would take the other's tag.
        for specs in (["lambdas/a:fn"], ["lambdas::"]):
            result = run_pants(root, [f"--docker-default-repository={repository}", "package", *specs], pantsd=True)
            assert result.exit_code != 0
            assert (
                f"lambdas/a:fn and lambdas/b:fn would each be tagged `{REPOSITORY}/fn:latest`" in result.stderr
            ), result.stderr
            assert 'repository="lambdas-b-{name}"` in the target lambdas/b:fn' in result.stderr
            assert '`[docker].default_repository = "{directory}"`' in result.stderr
            assert "Traceback" not in result.stderr
            assert "Building docker image" not in result.stderr
            assert not list((root / "dist").glob("**/*.docker-info.json"))

        # The fix the message gives: each Lambda gets its folder's repository.
        fixed = f"--docker-default-repository={REPOSITORY}/{{directory}}"
        package(root, fixed, "package", "lambdas/a:fn", "lambdas/b:fn")
        infos = [json.loads(p.read_text()) for p in sorted((root / "dist").glob("lambdas.*/fn.docker-info.json"))]
        assert [(i["address"], i["tags"][0]) for i in infos] == [
            ("lambdas/a:fn", f"{REPOSITORY}/a:latest"),
            ("lambdas/b:fn", f"{REPOSITORY}/b:latest"),
        ]
        for info in infos:
            assert_engine_holds(info)
    finally:
        stop_pantsd(root)
        docker("image", "rm", f"{REPOSITORY}/a:latest", f"{REPOSITORY}/b:latest", check=False)


@pytest.fixture(scope="module", autouse=True)
def remove_images() -> object:
    yield
    listing = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    mine = [ref for ref in listing if ref.startswith(f"{REPOSITORY}/")]
    if mine:
        docker("image", "rm", "-f", *mine, check=False)
