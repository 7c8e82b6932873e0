"""The import check of a chunk: the bundle, the per-member verdicts, and the container-side restore."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
from pathlib import Path

from pants.engine.fs import EMPTY_DIGEST
from pants.engine.process import ProcessCacheScope

from chromadb_lambda.scripts import chunk_import_check
from chromadb_lambda.testutil import DOCKER, DOCKER_ENV
from chromadb_lambda.util_rules.chunk_images_test import A, B, member
from chromadb_lambda.util_rules.import_check_chunk import (
    MemberCheckOutput,
    check_bundle,
    checkable,
    chunk_check_process,
    parse_chunk_output,
)
from chromadb_lambda.util_rules.image_config import canonical_json
from chromadb_lambda.util_rules.image_layer import LayerFile, lambda_layer

MARK = chunk_import_check.MEMBER_MARKER


def test_verdicts_per_member_and_a_member_without_a_line_gets_the_container_output() -> None:
    a, b = member(A, "x = 1\n"), member(B, "x = 2\n")
    verdict = 'CHROMADB_LAMBDA_IMPORT_CHECK {"status": "ok"}\n'
    stdout = f'{MARK} {json.dumps({"name": "0", "exit_code": 0, "stdout": verdict, "stderr": ""})}\n'.encode()
    outputs = parse_chunk_output([a, b], 137, stdout, b"killed")
    assert outputs[A] == MemberCheckOutput(a.image_id, 0, verdict.encode(), b"")
    assert outputs[B] == MemberCheckOutput(b.image_id, 137, stdout, b"killed")


def test_only_an_assembled_member_running_as_root_is_checked_in_the_chunk() -> None:
    a = member(A, "x = 1\n")
    assert checkable(a)
    assert not checkable(dataclasses.replace(a, layer=None, image_id=None, error="UnassemblableBaseError: ONBUILD"))
    user = json.loads(a.config)
    user["config"]["User"] = "sbx_user1051"
    with_user = dataclasses.replace(a, config=canonical_json(user))
    assert not checkable(with_user)


def test_bundle_holds_each_member_layer_bytes_env_and_workdir() -> None:
    a, b = member(A, "x = 1\n"), member(B, "x = 2\n")
    bundle = check_bundle([a, b], ["PATH=/usr/bin"], 60)
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        index = json.load(tar.extractfile("index.json"))
        assert tar.extractfile("layers/1.tar").read() == b.layer.tar
        assert b"MARKER" in tar.extractfile("check.py").read()
        assert b"def main():" in tar.extractfile("zygote.py").read()
    assert index == {
        "task_root": "/var/task",
        "timeout": 60,
        "base_env": ["PATH=/usr/bin"],
        "members": [
            {"name": "0", "layer": "layers/0.tar", "env": ["LAMBDA_TASK_ROOT=/var/task"], "workdir": "",
             "module": "handler", "function": "handle"},
            {"name": "1", "layer": "layers/1.tar", "env": ["LAMBDA_TASK_ROOT=/var/task"], "workdir": "",
             "module": "handler", "function": "handle"},
        ],
        "zygote": True,
    }
    assert check_bundle([a, b], ["PATH=/usr/bin"], 60) == bundle


def test_the_check_runs_prover_py_for_the_base_cached_by_its_bundle() -> None:
    process = chunk_check_process(DOCKER, "sha256:base", EMPTY_DIGEST, 2, DOCKER_ENV.env, "/var/task", EMPTY_DIGEST)
    assert process.argv[1] == "__chromadb_lambda_prover/prover.py"
    assert json.loads(process.argv[2]) == {
        "docker": "/usr/bin/docker",
        "lock_dir": json.loads(process.argv[2])["lock_dir"],
        "base_image_id": "sha256:base",
        "bundle": "import-check-bundle.tar",
        "driver": "chunk_import_check.py",
        "task_root": "/var/task",
        "idle_seconds": 900,
    }
    assert json.loads(process.argv[2])["lock_dir"].endswith("chromadb-lambda-engine-locks")
    assert "__chromadb_lambda_prover" in process.immutable_input_digests
    assert process.cache_scope == ProcessCacheScope.SUCCESSFUL
    assert process.env["DOCKER_HOST"] == "unix:///engine.sock"


def test_layer_problems_whiteouts_and_paths_outside_the_task_root() -> None:
    problem = chunk_import_check.layer_problem
    assert problem(["var/", "var/task/", "var/task/a.py"], "/var/task") is None
    assert problem(["var/task/.wh.a.py"], "/var/task") == "the layer has a whiteout entry 'var/task/.wh.a.py'"
    assert problem(["etc/passwd"], "/var/task") == "the layer writes 'etc/passwd', outside the task root /var/task"
    assert problem(["var/task/../../etc"], "/var/task") == "the layer has the path 'var/task/../../etc'"


def tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_restore_puts_the_base_task_root_back_after_a_member(tmp_path: Path) -> None:
    base_root = tmp_path / "fs"
    task_root = base_root / "var" / "task"
    task_root.mkdir(parents=True)
    (task_root / "from_base.py").write_text("BASE = 1\n")
    before = tree(base_root)
    filesystem = chunk_import_check.Filesystem(str(task_root), pristine=str(tmp_path / "pristine"))
    layer = lambda_layer([LayerFile("handler.py", b"x = 1\n"), LayerFile("pkg/m.py", b"")], str(task_root))
    tarfile.open(fileobj=io.BytesIO(layer.tar)).extractall("/")
    assert (task_root / "handler.py").read_text() == "x = 1\n"
    filesystem.restore()
    assert tree(base_root) == before == {"var": None, "var/task": None, "var/task/from_base.py": b"BASE = 1\n"}


def test_restore_removes_a_task_root_the_base_did_not_have(tmp_path: Path) -> None:
    task_root = tmp_path / "new" / "task"
    filesystem = chunk_import_check.Filesystem(str(task_root), pristine=str(tmp_path / "pristine"))
    layer = lambda_layer([LayerFile("handler.py", b"x = 1\n")], str(task_root))
    tarfile.open(fileobj=io.BytesIO(layer.tar)).extractall("/")
    assert os.path.isfile(task_root / "handler.py")
    filesystem.restore()
    assert not os.path.lexists(tmp_path / "new")
