"""End to end: the import check's prover (scripts/prover.py), a container of the base kept between
checks, proves exactly what a fresh container of the base proves.

A scratch copy of the repo gets three Lambdas on the repo's base: `good` passes; `litter` passes too,
but its import leaves a file in /tmp; `dyn` loads a first-party module by a computed name, so its
import fails in its image. Real Pants with pantsd, the real engine: the prover is found by its label.
"""
from __future__ import annotations

import hashlib

import shutil
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from e2e.harness import PLUGIN_PACKAGE, docker, read_docker_infos, remove_repository_images, run_pants, scratch_repo, stop_pantsd

REPOSITORY = f"chromadb-lambda-prover-{uuid.uuid4().hex[:8]}"
OPTIONS = (f"--docker-default-repository={REPOSITORY}/{{name}}",)
BASE = 'base_image="//base:lambda-base"'
DYN_ERROR = "The image of lambdas/dyn:dyn does not import its handler `dyn.handler.handle`: the first-party module"

FILES = {
    **PLUGIN_PACKAGE,
    "lambdas/dyn/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="dyn", handler="handler.py:handle", {BASE})\n',
    "lambdas/dyn/__init__.py": "",
    "lambdas/dyn/handler.py": (
        "import importlib\nimport os\n"
        'PLUGIN = importlib.import_module(os.environ.get("PLUGIN", "pkg.plugins.alpha"))\n\n\n'
        "def handle(event, context):\n    return PLUGIN.NAME\n"
    ),
    "lambdas/good/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="good", handler="handler.py:handle", {BASE})\n',
    "lambdas/good/__init__.py": "",
    "lambdas/good/handler.py": "def handle(event, context):\n    return 'good'\n",
    "lambdas/litter/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="litter", handler="handler.py:handle", {BASE})\n',
    "lambdas/litter/__init__.py": "",
    "lambdas/litter/handler.py": (
        'with open("/tmp/left-by-litter", "w") as f:\n    f.write("x")\n\n\n'
        "def handle(event, context):\n    return 'litter'\n"
    ),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = scratch_repo(Path.cwd(), tmp_path_factory.mktemp("prover"), FILES)
    yield root
    stop_pantsd(root)
    remove_repository_images(REPOSITORY)


def edit(repo: Path, name: str) -> None:
    """A new image for `name` (a fresh uuid in its handler): this run must check it."""
    handler = repo / f"lambdas/{name}/handler.py"
    handler.write_text(handler.read_text() + f"# {uuid.uuid4().hex}\n")


def package(repo: Path, target: str):
    shutil.rmtree(repo / "dist", ignore_errors=True)
    return run_pants(repo, [*OPTIONS, "package", target], pantsd=True)


def base_id(repo: Path) -> str:
    ref = read_docker_infos(repo)["good"]["base_image"]["ref"]
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def provers(base: str) -> list[str]:
    """The ids of the running provers of `base` on this engine: labelled with it and named by it
    (`chromadb-lambda-prover-` + the first 16 hex digits of sha256 of the base id), so that a prover an
    older checkout named otherwise is not counted."""
    name = "chromadb-lambda-prover-" + hashlib.sha256(base.encode()).hexdigest()[:16]
    out = docker(
        "ps", "--no-trunc", "--filter", f"label=chromadb-lambda.prover={base}", "--filter", f"name=^/?{name}$",
        "--format", "{{.ID}}",
    ).stdout
    return out.split()


def test_a_failing_member_after_a_passing_one_in_the_same_prover_still_fails(repo: Path) -> None:
    edit(repo, "good")
    result = package(repo, "lambdas/good:good")
    assert result.exit_code == 0, result.stderr
    assert read_docker_infos(repo)["good"]["import_check"] == "passed"
    base = base_id(repo)
    [prover] = provers(base)

    # The chunk's other members (dyn fails, litter passes) were checked with good; dyn was never tagged.
    assert docker("image", "ls", "--quiet", f"{REPOSITORY}/dyn", check=False).stdout.strip() == ""
    # litter left a file in the prover: it is replaced before the next check.
    edit(repo, "dyn")
    result = package(repo, "lambdas/dyn:dyn")
    assert result.exit_code != 0 and DYN_ERROR in result.stderr, result.stderr[-3000:]
    [replaced] = provers(base)
    assert replaced != prover
    # The same prover passes good, then fails dyn.
    edit(repo, "good")
    result = package(repo, "lambdas/good:good")
    assert result.exit_code == 0, result.stderr
    assert read_docker_infos(repo)["good"]["import_check"] == "passed"
    edit(repo, "dyn")
    result = package(repo, "lambdas/dyn:dyn")
    assert result.exit_code != 0 and DYN_ERROR in result.stderr, result.stderr[-3000:]
    assert provers(base) == [replaced]
    assert docker("image", "ls", "--quiet", f"{REPOSITORY}/dyn", check=False).stdout.strip() == ""


def test_a_check_after_the_prover_was_killed_behind_pantsd_still_works(repo: Path) -> None:
    edit(repo, "good")
    assert package(repo, "lambdas/good:good").exit_code == 0
    base = base_id(repo)
    [prover] = provers(base)
    docker("rm", "-f", prover)
    edit(repo, "good")
    result = package(repo, "lambdas/good:good")
    assert result.exit_code == 0, result.stderr
    assert read_docker_infos(repo)["good"]["import_check"] == "passed"
    [started] = provers(base)
    assert started != prover
    # The same verdict as the prover gives for a failure, in the restarted one.
    docker("rm", "-f", started)
    edit(repo, "dyn")
    result = package(repo, "lambdas/dyn:dyn")
    assert result.exit_code != 0 and DYN_ERROR in result.stderr, result.stderr[-3000:]
