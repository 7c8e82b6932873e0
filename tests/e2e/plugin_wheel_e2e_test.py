"""End to end: the plugin as a wheel. `pants package pants-plugins:dist` builds it; a different
monorepo (its own layout: source root `code/`, a relative import, a base image in `images/`) loads it
through `[GLOBAL].plugins`, with no copy of `pants-plugins/`, and packages a Lambda image with it.
"""
from __future__ import annotations

import json
import shutil
import uuid
import zipfile
from pathlib import Path
from textwrap import dedent

import pytest

from e2e.harness import copy_repo, docker, files_added_over_base, run_pants

REPOSITORY = f"chromadb-lambda-wheel-{uuid.uuid4().hex[:8]}"


def other_repo(root: Path, wheel_dir: Path) -> None:
    shutil.copy2(Path.cwd() / "pants", root / "pants")
    shutil.copytree(Path.cwd() / "build-support", root / "build-support")
    files = {
        "pants.toml": f"""\
            [GLOBAL]
            pants_version = "2.17.1"
            plugins = ["chromadb-lambda-pants==0.1.0"]
            backend_packages = ["pants.backend.python", "pants.backend.docker", "chromadb_lambda"]

            [python-repos]
            find_links = ["file://{wheel_dir}/"]

            [source]
            root_patterns = ["/code"]

            [python]
            interpreter_constraints = ["CPython==3.11.*"]

            [docker]
            env_vars = ["DOCKER_BUILDKIT=1", "DOCKER_HOST"]
            build_args = ["LAMBDA_PYTHON_IMAGE=local/lambda-python:3.11"]
            default_repository = "{REPOSITORY}/{{name}}"
            """,
        "images/BUILD": 'docker_image(name="runtime", repository="' + REPOSITORY + '/runtime")\n',
        "images/Dockerfile": "ARG LAMBDA_PYTHON_IMAGE\nFROM $LAMBDA_PYTHON_IMAGE\n",
        "code/shop/BUILD": "python_sources()\n",
        "code/shop/__init__.py": "",
        "code/shop/prices.py": "RATE = 2\n",
        "code/shop/unused.py": "X = 1\n",
        "code/shop/checkout/BUILD": """\
            python_sources(name="src")
            chromadb_lambda(name="checkout", handler="handler.py:handle", base_image="//images:runtime")
            """,
        "code/shop/checkout/__init__.py": "",
        "code/shop/checkout/handler.py": """\
            from ..prices import RATE


            def handle(event, context):
                return {"total": event["amount"] * RATE}
            """,
    }
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(dedent(content))


def test_wheel_loads_through_global_plugins_and_packages_a_lambda(tmp_path_factory: pytest.TempPathFactory) -> None:
    plugin_repo = copy_repo(Path.cwd(), tmp_path_factory.mktemp("plugin-repo"))
    run_pants(plugin_repo, ["package", "pants-plugins:dist"]).assert_success()
    (wheel,) = (plugin_repo / "dist").glob("chromadb_lambda_pants-0.1.0-py3-none-any.whl")
    # The registry process's scripts (util_rules/registry_process.py REGISTRY_SCRIPTS) are package data.
    with zipfile.ZipFile(wheel) as archive:
        scripts = {n.rpartition("/")[2] for n in archive.namelist() if n.startswith("chromadb_lambda/scripts/")}
    assert {
        "registry_client.py", "registry_api.py", "registry_auth.py", "registry_docker.py", "registry_pull.py",
        "registry_push.py", "deploy_manifest.py",
    } <= scripts, sorted(scripts)
    wheel_dir = tmp_path_factory.mktemp("wheels")
    shutil.copy2(wheel, wheel_dir)

    root = tmp_path_factory.mktemp("other-repo")
    other_repo(root, wheel_dir)
    assert not (root / "pants-plugins").exists()
    result = run_pants(root, ["package", "code/shop/checkout:checkout"]).assert_success()
    assert "Lambda image" in result.stderr

    info = json.loads((root / "dist/code.shop.checkout/checkout.docker-info.json").read_text())
    image = f"{REPOSITORY}/checkout:latest"
    assert image in info["tags"]
    added = files_added_over_base([image], info["base_image"]["ref"])[image]
    assert added == {
        "/var/task/shop/__init__.py",
        "/var/task/shop/prices.py",
        "/var/task/shop/checkout/__init__.py",
        "/var/task/shop/checkout/handler.py",
    }
    docker("image", "rm", *info["tags"], check=False)
