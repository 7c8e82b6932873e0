"""End to end: only the images a change affects are rebuilt; a no-op runs no build; keys reproduce.

A scratch copy of the repo becomes a git repository. Each row of the change matrix edits files,
runs `./pants --changed-since=HEAD package`, and asserts which Lambdas Pants selected, which of them
ran `docker build` (the docker-info `built` flag) and which image ids changed. The edit is then
reverted, which must bring back the original images as "up to date".
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from e2e.harness import copy_repo, docker, git, init_git_repo, package, stop_pantsd

ALL = {"compaction", "find_unembedded", "line_polling", "list_pending", "submit_batch", "word_polling"}
REPOSITORY = f"chromadb-lambda-affected-{uuid.uuid4().hex[:8]}"
REPO_OPTION = f"--docker-default-repository={REPOSITORY}/{{name}}"


def append(path: str, text: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        with open(root / path, "a") as f:
            f.write(text)

    return edit


def replace(path: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        content = (root / path).read_text()
        assert old in content, f"{old!r} not in {path}"
        (root / path).write_text(content.replace(old, new))

    return edit


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("affected"))
    init_git_repo(root)
    try:
        infos, _ = package(root, REPO_OPTION, "package", "lambdas::")
        assert set(infos) == ALL
        yield {"root": root, "infos": infos}
    finally:
        stop_pantsd(root)
    docker("image", "rm", *(t for info in infos.values() for t in info["tags"]), check=False)


def test_noop_package_runs_no_build_and_keeps_image_ids(repo: dict) -> None:
    infos, result = package(repo["root"], REPO_OPTION, "package", "lambdas::")
    assert {name: info["built"] for name, info in infos.items()} == {name: False for name in ALL}
    assert {n: i["image_id"] for n, i in infos.items()} == {n: i["image_id"] for n, i in repo["infos"].items()}
    assert "Building docker image" not in result.stderr
    assert result.stderr.count("is up to date") == len(ALL)
    # Between the two runs only dist/ was written: pantsd's file watcher saw no change in the build
    # root, so this no-op recomputed no target. (Pants' hard-link canary, a `.tmp*.hardlink_canary`
    # created and removed in the build root by the first write to dist/, is in pants.toml's
    # `pants_ignore`; else it invalidates the whole build root here.)
    log = (repo["root"] / ".pants.d" / "pants.log").read_text()
    assert [line for line in log.splitlines() if "notify invalidation" in line and "dirtied 0 nodes" not in line] == []


@pytest.mark.parametrize(
    "edit, affected",
    [
        pytest.param(append("lambdas/list_pending/handler.py", "\n# edited\n"), {"list_pending"}, id="handler"),
        pytest.param(
            append("src/receipt_chroma/delta.py", "\n# edited\n"),
            {"word_polling", "line_polling", "compaction"},
            id="shared-module",
        ),
        pytest.param(append("lambdas/word_polling/polling.py", "\n# edited\n"), {"word_polling", "line_polling"}, id="module-beside-a-lambda"),
        pytest.param(append("base/Dockerfile", "\nLABEL edited=yes\n"), ALL, id="base-dockerfile"),
        pytest.param(append("src/receipt_common/__init__.py", "\n# edited\n"), ALL, id="first-party-code-in-base"),
        pytest.param(append("src/receipt_dynamo/client_test.py", "\n# edited\n"), set(), id="unrelated-test"),
        pytest.param(append("src/receipt_label/label_schema.json", " "), {"submit_batch", "word_polling", "line_polling"}, id="resource"),
        pytest.param(
            replace("lambdas/find_unembedded/BUILD", 'base_image="//base:lambda-base",', 'base_image="//base:lambda-base",\n    dependencies=["src/receipt_label:schema"],'),
            {"find_unembedded"},
            id="build-file-field",
        ),
    ],
)
def test_changed_since_rebuilds_exactly_the_affected_images(
    repo: dict, edit: Callable[[Path], None], affected: set[str]
) -> None:
    root, before = repo["root"], repo["infos"]
    edit(root)
    try:
        infos, result = package(root, REPO_OPTION, "--changed-since=HEAD", "package")
        # Pants selected exactly the affected Lambdas ...
        assert set(infos) == affected
        # ... each of them really rebuilt, into a new image with a new content key.
        for name, info in infos.items():
            assert info["built"] is True, name
            assert info["image_id"] != before[name]["image_id"], name
            assert info["content_key"] != before[name]["content_key"], name
    finally:
        git(root, "checkout", "--", ".")
    # Reverted: every image is the original one again, with no build.
    infos, _ = package(root, REPO_OPTION, "package", "lambdas::")
    assert {n: (i["image_id"], i["built"]) for n, i in infos.items()} == {
        n: (i["image_id"], False) for n, i in before.items()
    }


def test_same_commit_gives_same_keys_in_another_clone_with_other_mtimes(
    repo: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    clone = tmp_path_factory.mktemp("clone") / "elsewhere" / "repo"
    git(repo["root"], "clone", "-q", str(repo["root"]), str(clone))
    for path in clone.rglob("*.py"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    try:
        infos, _ = package(clone, REPO_OPTION, "package", "lambdas::")
    finally:
        stop_pantsd(clone)
    assert {n: i["content_key"] for n, i in infos.items()} == {n: i["content_key"] for n, i in repo["infos"].items()}
    # Same keys, same engine: nothing to build.
    assert not any(info["built"] for info in infos.values())
