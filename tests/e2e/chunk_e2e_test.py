"""End to end: the assembler checks the handlers of a chunk's missing Lambdas in one container of the
base, each in its own image's filesystem, BEFORE loading them with one `docker load`; a member whose
handler does not import fails alone, with its own address, is never loaded, and never hides the
other images.

A scratch copy of the repo gets three Lambdas beside its own six (one chunk): `alpha_fn` and `beta_fn`
are fine (a fresh uuid makes their images new in this run), `broken` imports a first-party module by
a name built at runtime (no import statement or literal for inference to see), so its image lacks it.
Real Pants, the real engine; the engine's event log counts the containers each run started.
"""
from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from e2e.harness import PLUGIN_PACKAGE, docker, read_docker_infos, remove_repository_images, run_pants, scratch_repo, stop_pantsd

REPOSITORY = f"chromadb-lambda-chunk-{uuid.uuid4().hex[:8]}"
OPTIONS = (f"--docker-default-repository={REPOSITORY}/{{name}}",)
BASE = 'base_image="//base:lambda-base"'
RUN = uuid.uuid4().hex
# The images the first test's check containers were created from.
CHECK_CONTAINERS: list[str] = []


def lambda_files(name: str, body: str) -> dict[str, str]:
    return {
        f"lambdas/{name}/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="{name}", handler="handler.py:handle", {BASE})\n',
        f"lambdas/{name}/__init__.py": "",
        f"lambdas/{name}/handler.py": body,
    }


FILES = {
    **PLUGIN_PACKAGE,
    **lambda_files("alpha_fn", f'RUN = "{RUN}"\n\n\ndef handle(event, context):\n    return "alpha " + RUN\n'),
    **lambda_files("beta_fn", f'RUN = "{RUN}"\n\n\ndef handle(event, context):\n    return "beta " + RUN\n'),
    **lambda_files(
        "broken",
        "import importlib\n"
        f'RUN = "{RUN}"\n'
        'PLUGIN = importlib.import_module(".".join(["pkg", "plugins", "alpha"]))\n'
        "\n\n"
        "def handle(event, context):\n"
        "    return PLUGIN.NAME\n",
    ),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = scratch_repo(Path.cwd(), tmp_path_factory.mktemp("chunk"), FILES)
    yield root
    stop_pantsd(root)
    remove_repository_images(REPOSITORY)


def containers_created(since: float, until: float) -> list[str]:
    """The image each container the engine created between two times was created from."""
    return docker(
        "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
        "--filter", "type=container", "--filter", "event=create", "--format", "{{.From}}",
    ).stdout.split()


def image_id(ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def invoke(ref: str, module: str) -> str:
    """The handler called once in its own image (a container of the image itself, not the check's)."""
    return docker(
        "run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "python3", ref,
        "-c", f"import {module} as h; print(h.handle(None, None))",
    ).stdout.strip()


def test_a_broken_member_fails_alone_and_the_chunk_is_loaded_and_checked_once(repo: Path) -> None:
    shutil.rmtree(repo / "dist", ignore_errors=True)
    start = time.time()
    result = run_pants(repo, [*OPTIONS, "package", "lambdas::"], pantsd=True)
    done = time.time()
    assert result.exit_code != 0
    assert (
        "The image of lambdas/broken:broken does not import its handler `broken.handler.handle`: the "
        "first-party module `pkg"
    ) in result.stderr
    assert "Traceback (most recent call last)" not in result.stderr
    # No other target is named in an error.
    for name in ("alpha_fn", "beta_fn", "compaction", "word_polling"):
        assert f"lambdas/{name}:{name} does not import" not in result.stderr
    # The good members are in the engine; the broken one is not (proven before load: it failed).
    ids = {name: image_id(f"{REPOSITORY}/{name}:latest") for name in ("alpha_fn", "beta_fn", "compaction")}
    assert not docker("image", "inspect", f"{REPOSITORY}/broken:latest", check=False).stdout.strip().startswith("[{")
    assert docker("image", "ls", "--quiet", f"{REPOSITORY}/broken", check=False).stdout.strip() == ""
    time.sleep(1.5)
    created = containers_created(start - 1, done + 1)
    # No container of a Lambda image: the check ran in a container of the base (whose id the next test
    # reads from a docker-info). The engine is shared, so other runs' containers of the same base may
    # be in its log: the count of this run's loads and check containers is Pants' own log of processes.
    assert not set(created) & set(ids.values()), created
    CHECK_CONTAINERS.extend(created)
    # The nine Lambdas are one chunk (lambda_chunks.py): ONE process checks the nine in their base's
    # prover while it loads the nine with no tag, then tags the eight whose verdict is `ok`.
    assert result.stderr.count(
        "Completed: Importing 9 chromadb_lambda handlers in their images (a prover of"
    ) == 1, result.stderr
    assert result.stderr.count("while loading 9 assembled images, then tagging those that pass") == 2  # start, end
    assert result.stderr.count("Completed: Importing") == 1
    assert result.stderr.count("Completed: Loading") == 0
    # The broken member's untagged image is removed by a second process, which tags nothing.
    assert result.stderr.count("Completed: Tagging 0 checked chromadb_lambda images") == 1, result.stderr
    assert result.stderr.count("Completed: Tagging") == 1
    assert invoke(f"{REPOSITORY}/alpha_fn:latest", "alpha_fn.handler") == f"alpha {RUN}"
    assert invoke(f"{REPOSITORY}/beta_fn:latest", "beta_fn.handler") == f"beta {RUN}"


def test_the_broken_member_is_checked_again_and_fails_again_and_is_still_not_loaded(repo: Path) -> None:
    message = (
        "The image of lambdas/broken:broken does not import its handler `broken.handler.handle`: the "
        "first-party module `pkg` is not in the image (ModuleNotFoundError: No module named 'pkg'), imported at "
        "lambdas/broken/handler.py:3."
    )
    for _ in range(2):
        result = run_pants(repo, [*OPTIONS, "package", "lambdas/broken:broken"], pantsd=True)
        assert result.exit_code != 0
        assert message in result.stderr, result.stderr
        # Only the broken member was missing: nothing else is checked; its image, loaded with no tag
        # while it was checked, gets none (and is removed by the second process).
        assert (
            "Completed: Importing 1 chromadb_lambda handlers in their images (a prover of"
        ) in result.stderr, result.stderr
        assert "while loading 1 assembled images, then tagging those that pass" in result.stderr
        assert "Completed: Tagging 0 checked chromadb_lambda images" in result.stderr, result.stderr
        assert "Completed: Importing 9" not in result.stderr
        assert docker("image", "ls", "--quiet", f"{REPOSITORY}/broken", check=False).stdout.strip() == ""


def test_the_good_members_package_and_a_no_op_runs_no_container_and_loads_nothing(repo: Path) -> None:
    shutil.rmtree(repo / "dist", ignore_errors=True)
    result = run_pants(repo, [*OPTIONS, "package", "lambdas/alpha_fn:alpha_fn", "lambdas/beta_fn:beta_fn"], pantsd=True)
    assert result.exit_code == 0, result.stderr
    infos = read_docker_infos(repo)
    # Loaded by the first run after their check passed: the engine holds them under their key tags.
    assert {name: info["import_check"] for name, info in infos.items()} == {
        "alpha_fn": "checked before load",
        "beta_fn": "checked before load",
    }
    assert [info["built"] for info in infos.values()] == [False, False]
    base = image_id(infos["alpha_fn"]["base_image"]["ref"])
    # The check ran in a container of the base: one the first run created, or the base's prover
    # (scripts/prover.py), which an earlier run on this engine may have started.
    prover = docker("ps", "--filter", f"label=chromadb-lambda.prover={base}", "--format", "{{.ID}}").stdout.split()
    assert base in CHECK_CONTAINERS or prover, CHECK_CONTAINERS
    time.sleep(1.5)
    start = time.time()
    result = run_pants(repo, [*OPTIONS, "package", "lambdas::", "-lambdas/broken:broken"], pantsd=True)
    assert result.exit_code == 0, result.stderr
    # Every requested image is held under its key tag: none asks for its chunk, so broken (missing, in
    # the same chunk, not requested) is neither checked, nor loaded, nor tagged, and nothing else is.
    assert "Completed: Loading" not in result.stderr, result.stderr
    assert "Completed: Tagging" not in result.stderr, result.stderr
    assert "chromadb_lambda handlers in their images" not in result.stderr
    time.sleep(1.5)
    lambda_images = {info["image_id"] for info in read_docker_infos(repo).values()}
    assert len(lambda_images) == 8
    assert not set(containers_created(start, time.time())) & lambda_images
