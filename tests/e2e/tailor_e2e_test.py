"""`pants tailor` on a new Lambda folder: one run writes targets that `pants package` builds.

The root `files(name="repo")` target leaves the Python files of lambdas/ and src/ to their Python
targets, so Pants' own tailoring adds `python_sources()` to a new folder beside the plugin's
`chromadb_lambda`. The scratch copy must still hold the whole repo: the tests get those Python files
through the Python targets they depend on (tests/e2e/BUILD), not through `//:repo`.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from e2e.harness import PantsResult, copy_repo, docker, run_pants, stop_pantsd

# Unique: the tailored target is named after its folder's image (`repository="{directory}"`), so the
# folder name is the image name on the shared engine.
NEW = f"new_fn_{uuid.uuid4().hex[:8]}"
REPOSITORY = f"chromadb-lambda-e2e-tailor-{uuid.uuid4().hex[:8]}"
HANDLER = '''"""A new Lambda: normalises a receipt label with the shared label schema."""
from __future__ import annotations

from receipt_common import Settings
from receipt_label.schema import normalize_label


def handle(event: dict, context: object) -> dict:
    return {"label": normalize_label(event.get("label")), "table": Settings.from_env().table_name}
'''
# What `pants tailor` writes, in this order: the plugin's target, then Pants' own `python_sources()`
# (which takes the folder's name, so the Lambda is `lambda` and keeps the folder's name for its image).
EXPECTED_BUILD = """chromadb_lambda(
    name="lambda",
    handler="handler.py:handle",
    base_image="//base:lambda-base",
    repository="{directory}",
)

python_sources()
"""
# The image adds the handler's package and what it imports beyond the base (which bakes in
# receipt_common), with the JSON resource `schema.py` reads.
EXPECTED_CONTEXT = {
    f"{NEW}/__init__.py",
    f"{NEW}/handler.py",
    "receipt_label/__init__.py",
    "receipt_label/schema.py",
    "receipt_label/label_schema.json",
}
# `git ls-files lambdas src` when the root `files` target stopped owning their Python files: those
# come through the Python targets now, empty `__init__.py` files included.
REPO_FILES = {
    "lambdas/compaction/BUILD",
    "lambdas/compaction/__init__.py",
    "lambdas/compaction/handler.py",
    "lambdas/find_unembedded/BUILD",
    "lambdas/find_unembedded/__init__.py",
    "lambdas/find_unembedded/handler.py",
    "lambdas/line_polling/BUILD",
    "lambdas/line_polling/__init__.py",
    "lambdas/line_polling/handler.py",
    "lambdas/list_pending/BUILD",
    "lambdas/list_pending/__init__.py",
    "lambdas/list_pending/handler.py",
    "lambdas/submit_batch/BUILD",
    "lambdas/submit_batch/__init__.py",
    "lambdas/submit_batch/handler.py",
    "lambdas/submit_batch/naming.py",
    "lambdas/word_polling/BUILD",
    "lambdas/word_polling/__init__.py",
    "lambdas/word_polling/handler.py",
    "lambdas/word_polling/polling.py",
    "src/receipt_chroma/BUILD",
    "src/receipt_chroma/__init__.py",
    "src/receipt_chroma/chroma_test.py",
    "src/receipt_chroma/client.py",
    "src/receipt_chroma/compaction.py",
    "src/receipt_chroma/delta.py",
    "src/receipt_common/BUILD",
    "src/receipt_common/__init__.py",
    "src/receipt_common/settings_test.py",
    "src/receipt_dynamo/BUILD",
    "src/receipt_dynamo/__init__.py",
    "src/receipt_dynamo/client.py",
    "src/receipt_dynamo/client_test.py",
    "src/receipt_dynamo/entities.py",
    "src/receipt_dynamo/queries.py",
    "src/receipt_label/BUILD",
    "src/receipt_label/__init__.py",
    "src/receipt_label/batch.py",
    "src/receipt_label/label_schema.json",
    "src/receipt_label/label_test.py",
    "src/receipt_label/records.py",
    "src/receipt_label/schema.py",
    # The plugin stays whole in `//:repo` (its 3.9 targets are not the tests' to depend on).
    "pants-plugins/BUILD",
    "pants-plugins/pyproject.toml",
    "pants-plugins/chromadb_lambda/BUILD",
    "pants-plugins/chromadb_lambda/__init__.py",
    "pants-plugins/chromadb_lambda/register.py",
    "pants-plugins/chromadb_lambda/goals/BUILD",
    "pants-plugins/chromadb_lambda/goals/__init__.py",
    "pants-plugins/chromadb_lambda/goals/tailor.py",
}


def pants(root: Path, *args: str) -> PantsResult:
    return run_pants(root, [f"--docker-default-repository={REPOSITORY}/{{name}}", *args], pantsd=True)


def files_under(root: Path, *folders: str) -> set[str]:
    return {
        str(p.relative_to(root))
        for folder in folders
        for p in (root / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("tailor"))
    yield root
    stop_pantsd(root)
    tags = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", NEW, check=False).stdout.split()
    if tags:
        docker("image", "rm", *tags, check=False)


def test_the_scratch_copy_holds_every_repo_file(repo: Path) -> None:
    # A folder of lambdas/ or src/ whose Python targets tests/e2e/BUILD does not depend on arrives
    # with its BUILD file and without a single Python file.
    folders = {p.parent for p in repo.glob("lambdas/*/BUILD")} | {p.parent for p in repo.glob("src/*/BUILD")}
    empty = sorted(str(f.relative_to(repo)) for f in folders if not any(f.glob("*.py")))
    assert empty == [], f"add the Python targets of {empty} to the dependencies in tests/e2e/BUILD"
    assert REPO_FILES - files_under(repo, "lambdas", "src", "pants-plugins") == set()


def test_the_repo_is_fully_tailored(repo: Path) -> None:
    result = pants(repo, "tailor", "--check", "::").assert_success()
    assert "Would create" not in result.stdout and "Would update" not in result.stdout


@pytest.fixture(scope="module")
def tailored(repo: Path) -> tuple[PantsResult, str]:
    folder = repo / "lambdas" / NEW
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "handler.py").write_text(HANDLER)
    result = pants(repo, "tailor", "::").assert_success()
    build = folder / "BUILD"
    return result, build.read_text() if build.exists() else ""


def test_one_tailor_run_writes_the_python_sources_and_the_lambda(repo: Path, tailored: tuple[PantsResult, str]) -> None:
    result, build = tailored
    assert build == EXPECTED_BUILD, result.stderr
    assert result.stdout.strip().splitlines() == [
        f"Created lambdas/{NEW}/BUILD:",
        "  - Add chromadb_lambda target lambda",
        "  - Add python_sources target " + NEW,
    ]
    # Nothing is left for a second run.
    check = pants(repo, "tailor", "--check", "::").assert_success()
    assert "Would" not in check.stdout


@pytest.fixture(scope="module")
def packaged(repo: Path, tailored: tuple[PantsResult, str]) -> dict:
    pants(repo, "package", f"lambdas/{NEW}:lambda").assert_success()
    out = repo / "dist" / f"lambdas.{NEW}"
    info = json.loads((out / "lambda.docker-info.json").read_text())
    manifest = json.loads((out / "lambda.context.json").read_text())
    return {"info": info, "manifest": manifest}


def test_package_builds_the_tailored_lambda(packaged: dict) -> None:
    info, manifest = packaged["info"], packaged["manifest"]
    assert info["address"] == f"lambdas/{NEW}:lambda"
    assert info["handler"] == f"{NEW}.handler.handle"
    assert info["built"] is True
    assert info["tags"] == [f"{NEW}:latest", f"{NEW}:ck-{info['content_key'][:32]}"]
    assert {f["path"] for f in manifest["files"]} == EXPECTED_CONTEXT
    assert manifest["provided_by_base"] == ["receipt_common/__init__.py"]
    assert docker("image", "inspect", "--format", "{{.Id}}", f"{NEW}:latest").stdout.strip() == info["image_id"]


def test_the_image_imports_and_runs_its_handler(packaged: dict) -> None:
    code = (
        "import sys; sys.path.insert(0, '/var/task'); "
        f"import {NEW}.handler as h; assert callable(h.handle); "
        "print(h.handle({'label': 'grand total'}, None)['label'])"
    )
    run = docker(
        "run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "python3", f"{NEW}:latest", "-c", code,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    # The label schema (a JSON resource of receipt_label) is in the image.
    assert run.stdout.strip() == "GRAND_TOTAL"
