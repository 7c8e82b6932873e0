"""End to end: a green build is a working image. One row per input that once gave exit 0 and a broken
image, or failed where it must not (issue 12): each either builds an image that imports its handler,
checked from outside the plugin with `docker run ... python3 -c "import <module>"`, or fails with a
message that names the target and the fix, no Python traceback, and nothing in `dist/` for it.

Rows share one scratch repo and one pantsd; each row writes its files, packages its target, and
removes its files again (some rows are invalid BUILD files that would break every other row).
"""
from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pytest

from e2e.harness import copy_repo, docker, run_pants, stop_pantsd

REPOSITORY = f"chromadb-lambda-trust-{uuid.uuid4().hex[:8]}"
OPTIONS = (f"--docker-default-repository={REPOSITORY}/{{name}}",)
BASE = 'base_image="//base:lambda-base"'


@dataclass(frozen=True)
class Row:
    id: str
    files: Mapping[str, str]
    target: str
    # Built: Python run in the image (task root first on sys.path) that must print `expect_stdout`.
    check: str = ""
    expect_stdout: str = ""
    # Failed: every one of these is in Pants' output.
    errors: tuple[str, ...] = ()
    # Paths (under the task root) the image must not have.
    absent: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    # Lines `pants lambda-context` prints for the target (why a file is there).
    context_says: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())


def lambda_build(name: str, extra: str = "", handler: str = "handler.py:handle") -> str:
    return (
        'python_sources(name="sources")\n'
        f'chromadb_lambda(name="{name}", handler="{handler}", {BASE}{extra})\n'
    )


ROWS = (
    Row(
        id="file-named-like-a-glob",
        files={
            "lambdas/glob_fn/BUILD": lambda_build("glob_fn", ', dependencies=[":assets"]')
            + 'resources(name="assets", sources=["assets/*.json"])\n',
            "lambdas/glob_fn/__init__.py": "",
            "lambdas/glob_fn/handler.py": (
                "import json\nimport pathlib\n\n"
                "DATA = json.loads((pathlib.Path(__file__).parent / 'assets' / '[id].json').read_text())\n\n"
                "def handle(event, context):\n    return DATA\n"
            ),
            "lambdas/glob_fn/assets/[id].json": '{"id": 7}\n',
        },
        target="lambdas/glob_fn:glob_fn",
        check="import glob_fn.handler as h; print(h.handle({}, None))",
        expect_stdout="{'id': 7}",
    ),
    Row(
        id="star-import-of-all-submodule",
        files={
            "src/starpkg/BUILD": "python_sources()\n",
            "src/starpkg/__init__.py": '__all__ = ["extra"]\n',
            "src/starpkg/extra.py": "VALUE = 42\n",
            "lambdas/star_fn/BUILD": lambda_build("star_fn"),
            "lambdas/star_fn/__init__.py": "",
            "lambdas/star_fn/handler.py": (
                "from starpkg import *\n\ndef handle(event, context):\n    return extra.VALUE\n"
            ),
        },
        target="lambdas/star_fn:star_fn",
        check="import star_fn.handler as h; print(h.handle({}, None))",
        expect_stdout="42",
        context_says=(
            "starpkg/extra.py",
            "needed by: lambdas/star_fn/handler.py:1 star-imports (through `__all__`) `starpkg.extra`",
        ),
    ),
    Row(
        id="literal-import-module",
        files={
            "src/plugpkg/BUILD": "python_sources()\n",
            "src/plugpkg/__init__.py": "",
            "src/plugpkg/plugins/BUILD": "python_sources()\n",
            "src/plugpkg/plugins/__init__.py": "",
            "src/plugpkg/plugins/alpha.py": "from plugpkg.plugins import beta\n\nNAME = 'alpha+' + beta.NAME\n",
            "src/plugpkg/plugins/beta.py": "NAME = 'beta'\n",
            "lambdas/plug_fn/BUILD": lambda_build("plug_fn"),
            "lambdas/plug_fn/__init__.py": "",
            "lambdas/plug_fn/handler.py": (
                "import importlib\n\nPLUGIN = importlib.import_module('plugpkg.plugins.alpha')\n\n"
                "def handle(event, context):\n    return PLUGIN.NAME\n"
            ),
        },
        target="lambdas/plug_fn:plug_fn",
        check="import plug_fn.handler as h; print(h.handle({}, None))",
        expect_stdout="alpha+beta",
        context_says=(
            "needed by: lambdas/plug_fn/handler.py:3 loads by name `plugpkg.plugins.alpha`",
            "why: src/plugpkg/plugins/alpha.py -> src/plugpkg/plugins/beta.py",
        ),
    ),
    Row(
        id="one-module-under-two-source-roots",
        files={
            "src/coll/BUILD": "python_sources()\n",
            "src/coll/helper.py": "X = 'src'\n",
            "lambdas/coll/BUILD": "python_sources()\n",
            "lambdas/coll/helper.py": "X = 'lambdas'\n",
            "lambdas/amb_fn/BUILD": lambda_build("amb_fn"),
            "lambdas/amb_fn/__init__.py": "",
            "lambdas/amb_fn/handler.py": "from coll.helper import X\n\ndef handle(event, context):\n    return X\n",
        },
        target="lambdas/amb_fn:amb_fn",
        errors=(
            "The handler closure of lambdas/amb_fn:amb_fn imports modules that more than one target provides",
            "lambdas/amb_fn/handler.py:1 imports `coll.helper.X`, provided by lambdas/coll/helper.py and src/coll/helper.py",
            '`dependencies=["!',
        ),
    ),
    Row(
        id="python-3.10-syntax",
        files={
            "lambdas/match_fn/BUILD": lambda_build("match_fn"),
            "lambdas/match_fn/__init__.py": "",
            "lambdas/match_fn/handler.py": (
                "def handle(event, context):\n"
                "    match event:\n"
                "        case {'kind': kind}:\n"
                "            return kind\n"
                "        case _:\n"
                "            return None\n"
            ),
        },
        target="lambdas/match_fn:match_fn",
        check="import match_fn.handler as h; print(h.handle({'kind': 'k'}, None))",
        expect_stdout="k",
    ),
    Row(
        id="type-checking-only-third-party-import",
        files={
            "lambdas/tc_fn/BUILD": lambda_build("tc_fn"),
            "lambdas/tc_fn/__init__.py": "",
            "lambdas/tc_fn/handler.py": (
                "from __future__ import annotations\n\nfrom typing import TYPE_CHECKING\n\n"
                "if TYPE_CHECKING:\n    import pytest\n\n"
                "def handle(event: dict, context: pytest.Config | None) -> str:\n    return 'ok'\n"
            ),
        },
        target="lambdas/tc_fn:tc_fn",
        check="import tc_fn.handler as h; print(h.handle({}, None))",
        expect_stdout="ok",
    ),
    Row(
        id="syntax-error-at-the-path-a-person-opens",
        files={
            "src/badpkg/BUILD": "python_sources()\n",
            "src/badpkg/__init__.py": "",
            "src/badpkg/broken.py": "X = 1\n\ndef f(:\n    pass\n",
            "lambdas/bad_fn/BUILD": lambda_build("bad_fn"),
            "lambdas/bad_fn/__init__.py": "",
            "lambdas/bad_fn/handler.py": "from badpkg import broken\n\ndef handle(event, context):\n    return broken.X\n",
        },
        target="lambdas/bad_fn:bad_fn",
        errors=(
            "A file in the handler closure of lambdas/bad_fn:bad_fn does not parse with the Lambda's Python (3.11",
            "src/badpkg/broken.py:3: ",
        ),
    ),
    Row(
        id="handler-outside-the-target-folder",
        files={
            "lambdas/up_fn/BUILD": lambda_build("up_fn", handler="../list_pending/handler.py:handle"),
        },
        target="lambdas/up_fn:up_fn",
        errors=(
            "The `handler` field in target lambdas/up_fn:up_fn is '../list_pending/handler.py:handle'",
            "a handler file must be in the target's folder or below it",
            'handler="package.module:handle"',
        ),
    ),
    Row(
        id="handler-is-a-class",
        files={
            "lambdas/cls_fn/BUILD": lambda_build("cls_fn", handler="handler.py:Handler"),
            "lambdas/cls_fn/__init__.py": "",
            "lambdas/cls_fn/handler.py": "class Handler:\n    pass\n",
        },
        target="lambdas/cls_fn:cls_fn",
        errors=("The `handler` field in target lambdas/cls_fn:cls_fn names `Handler`", "defines it as a class"),
    ),
    Row(
        id="handler-is-not-a-function",
        files={
            "lambdas/log_fn/BUILD": lambda_build("log_fn", handler="handler.py:logger"),
            "lambdas/log_fn/__init__.py": "",
            "lambdas/log_fn/handler.py": "import logging\n\nlogger = logging.getLogger(__name__)\n",
        },
        target="lambdas/log_fn:log_fn",
        errors=("lambdas/log_fn:log_fn", "`log_fn.handler.logger`", "which is a `Logger` object"),
    ),
    Row(
        id="two-lambdas-share-a-target-name",
        files={
            "lambdas/dup_a/BUILD": lambda_build("fn"),
            "lambdas/dup_a/__init__.py": "",
            "lambdas/dup_a/handler.py": "def handle(event, context):\n    return 'a'\n",
            "lambdas/dup_b/BUILD": lambda_build("fn"),
            "lambdas/dup_b/__init__.py": "",
            "lambdas/dup_b/handler.py": "def handle(event, context):\n    return 'b'\n",
        },
        target="lambdas/dup_a:fn",
        errors=(
            "lambdas/dup_a:fn and lambdas/dup_b:fn would each be tagged",
            '[docker].default_repository = "{directory}"',
            "Nothing was built.",
        ),
    ),
    Row(
        id="self-dependency-on-own-file",
        files={
            # Named after its folder: `./plugin.py` then names this very target.
            "lambdas/self_fn/BUILD": lambda_build("self_fn", ', dependencies=["./plugin.py"]'),
            "lambdas/self_fn/__init__.py": "",
            "lambdas/self_fn/plugin.py": "NAME = 'plugin'\n",
            "lambdas/self_fn/handler.py": (
                "import importlib\n\ndef handle(event, context):\n"
                "    return importlib.import_module(event['module']).NAME\n"
            ),
        },
        target="lambdas/self_fn:self_fn",
        check="import self_fn.handler as h; print(h.handle({'module': 'self_fn.plugin'}, None))",
        expect_stdout="plugin",
    ),
    Row(
        id="init-of-a-folder-that-is-a-source-root",
        files={
            "functions/rootfn/BUILD": lambda_build("rootfn"),
            "functions/rootfn/__init__.py": "print('never imported')\n",
            "functions/rootfn/handler.py": "def handle(event, context):\n    return 'root'\n",
        },
        args=("--source-root-patterns=['/src', '/lambdas', '/pants-plugins', '/tests', '/base', '/functions/rootfn']",),
        target="functions/rootfn:rootfn",
        check="import handler as h; print(h.handle({}, None))",
        expect_stdout="root",
        absent=("__init__.py",),
    ),
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory):
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("trust"))
    yield root
    stop_pantsd(root)


def write_row(root: Path, row: Row) -> list[Path]:
    """Writes the row's files; returns what to remove afterwards (new folders, else the files)."""
    created: list[Path] = []
    for path, content in row.files.items():
        target = root / path
        new_dir = next((p for p in reversed(target.parents) if root in p.parents and not p.exists()), None)
        if new_dir is not None:
            if new_dir not in created:
                created.append(new_dir)
        elif not any(c in target.parents for c in created):
            created.append(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return created


def remove_row(created: list[Path]) -> None:
    for path in created:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def task_root_files(image: str) -> set[str]:
    out = docker(
        "run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "find", image,
        "/var/task", "-type", "f",
    ).stdout
    return {line[len("/var/task/"):] for line in out.split()}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_row(repo: Path, row: Row) -> None:
    created = write_row(repo, row)
    try:
        shutil.rmtree(repo / "dist", ignore_errors=True)
        result = run_pants(repo, [*OPTIONS, *row.args, "package", row.target], pantsd=True)
        output = result.stdout + result.stderr
        spec_path, name = row.target.split(":")
        info_path = repo / "dist" / spec_path.replace("/", ".") / f"{name}.docker-info.json"
        if row.errors:
            assert result.exit_code != 0, output
            for text in row.errors:
                assert text in output, f"{text!r} not in:\n{output}"
            assert "Traceback (most recent call last)" not in output
            assert not info_path.exists()
            return
        assert result.exit_code == 0, output
        for text in row.warnings:
            assert text in output
        image = json.loads(info_path.read_text())["image_id"]
        # Outside the plugin: the image imports its handler the way the Lambda runtime would.
        run = docker(
            "run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "python3", image,
            "-c", f"import sys; sys.path.insert(0, '/var/task'); {row.check}", check=False,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == row.expect_stdout
        if row.context_says:
            context = run_pants(repo, [*OPTIONS, *row.args, "lambda-context", row.target], pantsd=True)
            for text in row.context_says:
                assert text in context.stdout, context.stdout
        if row.absent:
            files = task_root_files(image)
            for path in row.absent:
                assert path not in files, files
    finally:
        remove_row(created)
