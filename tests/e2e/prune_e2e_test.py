"""End to end: `pants lambda-prune` after two commits removes exactly the images of the keys the
second commit no longer uses, and `package` of that commit is still a no-op.

The scratch repo names its base `<unique>/base` (not the shared `chromadb-lambda/base`): prune
removes unused base images of a repository, and other checkouts on this engine use other base keys.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from e2e.harness import copy_repo, docker, git, init_git_repo, package, run_pants, stop_pantsd

ALL = {"compaction", "find_unembedded", "line_polling", "list_pending", "submit_batch", "word_polling"}
# The Lambdas that import receipt_label, whose label_schema.json the second commit edits.
EDITED = {"line_polling", "submit_batch", "word_polling"}
REPOSITORY = f"chromadb-lambda-prune-{uuid.uuid4().hex[:8]}"
REPO_OPTION = f"--docker-default-repository={REPOSITORY}/{{name}}"


def present(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False).returncode == 0


@pytest.fixture(scope="module")
def two_commits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("prune"))
    base_build = root / "base" / "BUILD"
    base_build.write_text(base_build.read_text().replace('repository="chromadb-lambda/base"', f'repository="{REPOSITORY}/base"'))
    init_git_repo(root)
    try:
        first, _ = package(root, REPO_OPTION, "package", "lambdas::")
        schema = root / "src" / "receipt_label" / "label_schema.json"
        schema.write_text(schema.read_text().rstrip("\n") + "\n\n")
        git(root, "commit", "-qam", "label schema: a trailing blank line")
        second, _ = package(root, REPO_OPTION, "package", "lambdas::")
        yield {"root": root, "first": first, "second": second}
    finally:
        stop_pantsd(root)
        listing = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
        mine = [ref for ref in listing if ref.startswith(f"{REPOSITORY}/")]
        if mine:
            docker("image", "rm", *mine, check=False)


def key_ref(info: dict) -> str:
    return info["tags"][-1]


def test_prune_removes_exactly_the_stale_keys_and_package_stays_a_no_op(two_commits: dict) -> None:
    root, first, second = two_commits["root"], two_commits["first"], two_commits["second"]
    assert set(first) == set(second) == ALL
    # The edit changed exactly the keys of the Lambdas that import receipt_label, not the base's.
    changed = {name for name in ALL if first[name]["content_key"] != second[name]["content_key"]}
    assert changed == EDITED
    assert {n for n in ALL if second[n]["built"]} == EDITED
    assert first["compaction"]["base_image"]["ref"] == second["compaction"]["base_image"]["ref"]
    assert first["compaction"]["base_image"]["ref"].startswith(f"{REPOSITORY}/base:ck-")
    # Written by hand from the first package's docker-info: the three images no current key uses.
    stale = sorted(
        f"{REPOSITORY}/{name}:ck-{first[name]['content_key'][:32]}" for name in ("line_polling", "submit_batch", "word_polling")
    )
    assert stale == sorted(key_ref(first[name]) for name in EDITED)
    assert all(present(ref) for ref in stale)

    # The default keeps the newest unused image of each repository: the three are kept.
    kept = run_pants(root, [REPO_OPTION, "lambda-prune", "--dry-run", "::"], pantsd=True).assert_success()
    assert [line.split(" (image")[0] for line in kept.stdout.splitlines()] == [f"Keeping {ref}" for ref in stale]
    assert "0 unused images to remove, 3 kept" in kept.stderr

    dry = run_pants(root, [REPO_OPTION, "lambda-prune", "--dry-run", "--keep=0", "::"], pantsd=True).assert_success()
    assert [line.split(" (image")[0] for line in dry.stdout.splitlines()] == [f"Would remove {ref}" for ref in stale]
    assert "(dry run: nothing removed)" in dry.stderr
    assert all(present(ref) for ref in stale)

    real = run_pants(root, [REPO_OPTION, "lambda-prune", "--keep=0", "::"], pantsd=True).assert_success()
    assert [line.split(" (image")[0] for line in real.stdout.splitlines()] == [f"Removing {ref}" for ref in stale]
    assert "Removed 3 unused images, kept 0, in 7 repositories." in real.stderr
    assert not any(present(ref) for ref in stale)
    # Every current image, the base's too, is still there.
    for info in second.values():
        assert all(present(ref) for ref in info["tags"])
    assert present(second["compaction"]["base_image"]["ref"])

    again = run_pants(root, [REPO_OPTION, "lambda-prune", "--keep=0", "::"], pantsd=True).assert_success()
    assert again.stdout == ""

    infos, result = package(root, REPO_OPTION, "package", "lambdas::")
    assert {name: info["built"] for name, info in infos.items()} == {name: False for name in ALL}
    assert {n: i["image_id"] for n, i in infos.items()} == {n: i["image_id"] for n, i in second.items()}
    assert result.stderr.count("is up to date") == len(ALL)


def test_a_base_change_makes_the_old_base_and_every_lambda_image_stale(two_commits: dict) -> None:
    root, second = two_commits["root"], two_commits["second"]
    old_base_ref = second["compaction"]["base_image"]["ref"]
    old_base_id = docker("image", "inspect", "--format", "{{.Id}}", old_base_ref).stdout.strip()
    # The base's other tag (`{pants.hash}` in base/BUILD) names the same image: it goes with it.
    listing = docker("image", "ls", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.splitlines()
    old_base_refs = sorted(ref for ref, _, image_id in (line.partition(" ") for line in listing) if image_id == old_base_id and ref.startswith(f"{REPOSITORY}/base:"))
    assert len(old_base_refs) == 2 and old_base_ref in old_base_refs

    dockerfile = root / "base" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + 'LABEL org.example.prune-e2e="third commit"\n')
    git(root, "commit", "-qam", "base: a label")
    third, _ = package(root, REPO_OPTION, "package", "lambdas::")
    assert {name: info["built"] for name, info in third.items()} == {name: True for name in ALL}
    assert third["compaction"]["base_image"]["ref"] != old_base_ref

    # Written by hand from the second package's docker-info: every Lambda's key, and the old base.
    stale = sorted([*(f"{REPOSITORY}/{name}:ck-{second[name]['content_key'][:32]}" for name in ALL), *old_base_refs])
    dry = run_pants(root, [REPO_OPTION, "lambda-prune", "--dry-run", "--keep=0", "::"], pantsd=True).assert_success()
    assert sorted(line.split(" (image")[0] for line in dry.stdout.splitlines()) == [f"Would remove {ref}" for ref in stale]

    run_pants(root, [REPO_OPTION, "lambda-prune", "--keep=0", "::"], pantsd=True).assert_success()
    # The old base image itself is gone from the engine, not only its tags.
    assert docker("image", "inspect", old_base_id, check=False).returncode != 0
    assert not any(present(ref) for ref in stale)
    infos, _ = package(root, REPO_OPTION, "package", "lambdas::")
    assert {name: info["built"] for name, info in infos.items()} == {name: False for name in ALL}
    assert {n: i["image_id"] for n, i in infos.items()} == {n: i["image_id"] for n, i in third.items()}
