"""End to end: every packaged image proves it imports its handler (`[lambda-image].check_handler_import`).

A scratch copy of the repo gets four Lambdas: `dyn` loads a first-party plugin by a computed name
(`importlib.import_module(os.environ.get(...))`, which no inference can see), `logger_fn` names a logger as its handler,
`env_fn` reads an environment variable at import, and `good` is fine (a fresh uuid in it makes its
image, and so its check, new in this run). Real Pants, the real engine; the engine's event log counts
the containers each run started, so "a no-op runs no container" is measured, not assumed.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from e2e.harness import PLUGIN_PACKAGE, Registry, docker, read_docker_infos, remove_repository_images, run_pants, scratch_repo, stop_pantsd

REPOSITORY = f"chromadb-lambda-import-check-{uuid.uuid4().hex[:8]}"
OPTIONS = (f"--docker-default-repository={REPOSITORY}/{{name}}",)
BASE = 'base_image="//base:lambda-base"'

FILES = {
    **PLUGIN_PACKAGE,
    "lambdas/dyn/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="dyn", handler="handler.py:handle", {BASE})\n',
    "lambdas/dyn/__init__.py": "",
    "lambdas/dyn/handler.py": (
        '"""Loads its plugin by a configurable name: no import statement or literal for inference to see."""\n'
        "import importlib\n"
        "import os\n"
        'PLUGIN = importlib.import_module(os.environ.get("PLUGIN", "pkg.plugins.alpha"))\n'
        "\n\n"
        "def handle(event, context):\n"
        '    return {"plugin": PLUGIN.NAME}\n'
    ),
    "lambdas/logger_fn/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="logger_fn", handler="handler.py:logger", {BASE})\n',
    "lambdas/logger_fn/__init__.py": "",
    "lambdas/logger_fn/handler.py": "import logging\n\nlogger = logging.getLogger()\n",
    "lambdas/env_fn/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="env_fn", handler="handler.py:handle", {BASE})\n',
    "lambdas/env_fn/__init__.py": "",
    "lambdas/env_fn/handler.py": 'import os\n\nTABLE = os.environ["TABLE"]\n\n\ndef handle(event, context):\n    return TABLE\n',
    "lambdas/good/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="good", handler="handler.py:handle", {BASE})\n',
    "lambdas/good/__init__.py": "",
    "lambdas/good/handler.py": f'RUN = "{uuid.uuid4().hex}"\n\n\ndef handle(event, context):\n    return RUN\n',
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = scratch_repo(Path.cwd(), tmp_path_factory.mktemp("import-check"), FILES)
    yield root
    stop_pantsd(root)
    remove_repository_images(REPOSITORY)


def package(root: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    """`package` with pantsd in a clean dist/; the result and the docker-info of each Lambda written."""
    shutil.rmtree(root / "dist", ignore_errors=True)
    result = run_pants(root, [*OPTIONS, *args], pantsd=True)
    return result, read_docker_infos(root)


def dist_files(root: Path, name: str) -> list[str]:
    return sorted(p.name for p in (root / "dist").glob(f"lambdas.{name}/*"))


def containers_started(image_id: str, since: float, until: float) -> int:
    """Containers the engine created from `image_id` between two times (its event log)."""
    out = docker(
        "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
        "--filter", "type=container", "--filter", "event=create", "--format", "{{.From}}",
    ).stdout
    return out.split().count(image_id)


def image_id(ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def test_first_party_module_missing_from_the_image_fails_the_build(repo: Path) -> None:
    result, infos = package(repo, "package", "lambdas/dyn:dyn")
    assert result.exit_code != 0
    assert (
        "The image of lambdas/dyn:dyn does not import its handler `dyn.handler.handle`: the first-party module "
        "`pkg.plugins.alpha` is not in the image (ModuleNotFoundError: No module named 'pkg'), imported at "
        "lambdas/dyn/handler.py:4. Declare it in the `dependencies` field of lambdas/dyn:dyn, e.g. "
        "`dependencies=['src/pkg/plugins/alpha.py']`"
    ) in result.stderr
    assert "Traceback (most recent call last)" not in result.stderr
    assert infos == {} and dist_files(repo, "dyn") == []


def test_handler_that_is_not_a_function_fails_the_build(repo: Path) -> None:
    result, infos = package(repo, "package", "lambdas/logger_fn:logger_fn")
    assert result.exit_code != 0
    assert (
        "The `handler` field in target lambdas/logger_fn:logger_fn names `logger_fn.handler.logger`, which is "
        "a `RootLogger` object: the Lambda runtime calls the handler as a function `(event, context)`."
    ) in result.stderr
    assert infos == {} and dist_files(repo, "logger_fn") == []


def new_image(repo: Path, name: str) -> None:
    """A fresh uuid at the end of the handler: the image is new, so this run checks it (an earlier
    package of a chunk neighbour checked and loaded the previous one before loading it)."""
    handler = repo / f"lambdas/{name}/handler.py"
    handler.write_text(handler.read_text() + f"# {uuid.uuid4().hex}\n")


def test_handler_raising_at_import_builds_with_a_warning(repo: Path) -> None:
    new_image(repo, "env_fn")
    result, infos = package(repo, "package", "lambdas/env_fn:env_fn")
    assert result.exit_code == 0, result.stderr
    assert (
        "The context of lambdas/env_fn:env_fn is complete, but its handler module raised at import in the image "
        "(no network, no AWS credentials, only the image's environment): KeyError: 'TABLE', at "
        "lambdas/env_fn/handler.py:3."
    ) in result.stderr
    assert infos["env_fn"]["import_check"] == "warning: KeyError: 'TABLE'"


def test_good_handler_passes_once_then_no_op_runs_no_container(repo: Path) -> None:
    new_image(repo, "good")
    start = time.time()
    result, infos = package(repo, "package", "lambdas/good:good")
    first_done = time.time()
    assert result.exit_code == 0, result.stderr
    assert infos["good"]["import_check"] == "passed"
    good = infos["good"]["image_id"]
    # The assembler checks the missing members of a chunk in one container of their base before it
    # loads them (import_check_chunk.py): never a container of the Lambda image itself.
    assert containers_started(good, start - 1, first_done + 1) == 0
    # ONE process for the members the engine lacks (good, and neighbours whose checks failed earlier, so
    # they were never tagged): their check while their untagged load runs, then good (`ok`) is tagged;
    # a second one tags nothing and removes the failing neighbours' untagged images.
    assert result.stderr.count("chromadb_lambda handlers in their images (a prover of") == 2, result.stderr
    assert result.stderr.count("assembled images, then tagging those that pass") == 2, result.stderr
    assert result.stderr.count("Completed: Loading") == 0, result.stderr
    assert result.stderr.count("Completed: Tagging") == 1, result.stderr[-3000:]
    assert "Completed: Tagging 0 checked chromadb_lambda images" in result.stderr, result.stderr[-3000:]

    # Warm pantsd, and then no pantsd: the engine holds the image under its content-key tag, so it was
    # checked before it was loaded, and no check runs.
    time.sleep(1.5)
    second_start = time.time()
    result, infos = package(repo, "package", "lambdas/good:good")
    assert result.exit_code == 0, result.stderr
    assert infos["good"]["import_check"] == "checked before load" and infos["good"]["image_id"] == good
    # Nothing tagged. (A neighbour whose check failed is still missing, so it is checked again, alone,
    # and loaded with no tag: never good.)
    assert "Tagging 1" not in result.stderr and "Importing 2" not in result.stderr, result.stderr
    shutil.rmtree(repo / "dist", ignore_errors=True)
    cold = run_pants(repo, [*OPTIONS, "package", "lambdas/good:good"], pantsd=False)
    assert cold.exit_code == 0, cold.stderr
    assert read_docker_infos(repo)["good"]["import_check"] == "checked before load"
    time.sleep(1.5)
    assert containers_started(good, second_start, time.time()) == 0


def test_publish_never_pushes_an_image_that_fails_the_check(repo: Path, tmp_path: Path) -> None:
    with Registry(tmp_path / "registry") as registry:
        registries = {"local": {"address": registry.address, "default": True}}
        result = run_pants(repo, [*OPTIONS, f"--docker-registries={registries!r}", "publish", "lambdas/dyn:dyn"], pantsd=True)
        assert result.exit_code != 0
        assert "The image of lambdas/dyn:dyn does not import its handler" in result.stderr
        assert registry.manifest_puts() == []
        # The same registry takes a good image: the check, not the registry, stopped the push.
        result = run_pants(repo, [*OPTIONS, f"--docker-registries={registries!r}", "publish", "lambdas/good:good"], pantsd=True)
        assert result.exit_code == 0, result.stderr
        puts = registry.manifest_puts()
        # The assembled image goes over the registry API: its base first, under the base's content
        # key tag only (its layers are mounted from there), then good's two tags.
        base_puts = [(repository, tag) for repository, tag in puts if repository != f"{REPOSITORY}/good"]
        assert len(base_puts) == 1 and base_puts[0][1].startswith("ck-"), puts
        good_puts = [tag for repository, tag in puts if repository == f"{REPOSITORY}/good"]
        assert len(good_puts) == 2 and "latest" in good_puts, puts


def test_check_off_builds_the_broken_image_which_then_fails_to_import(repo: Path) -> None:
    # What the check is for: with it off, the build succeeds, and the image fails at its first
    # invocation, as the Lambda runtime's import would.
    result, infos = package(repo, "--lambda-image-check-handler-import=false", "package", "lambdas/dyn:dyn")
    assert result.exit_code == 0, result.stderr
    assert infos["dyn"]["import_check"] == "skipped"
    run = docker(
        "run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "python3", infos["dyn"]["image_id"],
        "-c", "import dyn.handler", check=False,
    )
    assert run.returncode == 1
    assert "ModuleNotFoundError: No module named 'pkg'" in run.stderr


def test_declaring_the_suggested_dependency_fixes_the_build(repo: Path) -> None:
    build = repo / "lambdas/dyn/BUILD"
    build.write_text(build.read_text().replace(BASE, f'{BASE}, dependencies=["src/pkg/plugins/alpha.py"]'))
    result, infos = package(repo, "package", "lambdas/dyn:dyn")
    assert result.exit_code == 0, result.stderr
    assert infos["dyn"]["import_check"] == "passed"
    manifest = json.loads((repo / "dist/lambdas.dyn/dyn.context.json").read_text())
    assert "pkg/plugins/alpha.py" in [f["path"] for f in manifest["files"]]
    assert image_id(f"{REPOSITORY}/dyn:latest") == infos["dyn"]["image_id"]
