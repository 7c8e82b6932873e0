"""The assembler rule with the engine mocked: what it loads, through which process, and its errors."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

import pytest
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.fs import EMPTY_DIGEST, CreateDigest, Digest, DigestContents, FileContent
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from chromadb_lambda.util_rules.assemble import (
    ARCHIVE,
    AssembledImageError,
    AssembledLambdaImage,
    AssembledLambdaImageRequest,
    BaseImageConfig,
    BaseImageConfigRequest,
    assemble_lambda_image,
    base_inspect_process,
)
from chromadb_lambda.util_rules.closure import ContextFile, LambdaClosure
from chromadb_lambda.util_rules.engine import DockerEnvironment, EngineRun
from chromadb_lambda.util_rules.engine_locks import EngineLockScript, EngineLockScriptRequest
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.testutil import process_result

ADDRESS = Address("lambdas/fn", target_name="fn")
DOCKER = DockerBinary("/bin/docker", "sha")
ENV = DockerEnvironment(FrozenDict({"DOCKER_HOST": "unix:///d.sock"}))
CLOSURE = LambdaClosure(
    address=ADDRESS,
    handler_module="fn.handler",
    handler_function="handle",
    base_address=Address("base", target_name="lambda-base"),
    roots=(),
    digest=EMPTY_DIGEST,
    files=(ContextFile("fn/handler.py", 24),),
    provided_by_base=(),
)
FILES = DigestContents([FileContent("fn/handler.py", b"def handle(e, c): pass\n")])
BASE = {
    "Architecture": "amd64",
    "Os": "linux",
    "Config": {"Env": ["PATH=/bin"], "Entrypoint": ["python3", "-m", "awslambdaric"]},
    "RootFS": {"Type": "layers", "Layers": ["sha256:" + "a" * 64]},
}
REFS = ("fn:latest", "fn:ck-1")


def archive_config_id(archive: bytes) -> str:
    """What `docker load` names the image: the sha256 of the config file the manifest points at."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        [entry] = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = tar.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
    return "sha256:" + hashlib.sha256(config).hexdigest()


def assemble(base: dict[str, Any] = BASE, reported_id: str | None = None, exit_code: int = 0) -> tuple[Any, list, list]:
    subsystem = create_subsystem(ChromadbLambdaSubsystem, task_root="/var/task")
    archives: list[bytes] = []
    processes: list[Process] = []

    def create_digest(request: CreateDigest) -> Digest:
        [file] = request
        assert isinstance(file, FileContent) and file.path == ARCHIVE
        archives.append(file.content)
        return Digest("f" * 64, len(file.content))

    def run(process: Process) -> FallibleProcessResult:
        processes.append(process)
        image_id = reported_id or archive_config_id(archives[0])
        return process_result(json.dumps({"image_id": image_id, "made": True, "output": None}), exit_code, "no such layer")

    result = run_rule_with_mocks(
        assemble_lambda_image,
        rule_args=[AssembledLambdaImageRequest(ADDRESS, CLOSURE, "sha256:base", "fn:ck-1", REFS, EngineRun(7)), DOCKER, ENV, subsystem],
        mock_gets=[
            MockGet(output_type=DigestContents, input_types=(Digest,), mock=lambda _: FILES),
            MockGet(output_type=BaseImageConfig, input_types=(BaseImageConfigRequest,),
                    mock=lambda r: BaseImageConfig(json.dumps(base)) if r.image_id == "sha256:base" else None),
            MockGet(output_type=EngineLockScript, input_types=(EngineLockScriptRequest,),
                    mock=lambda _: EngineLockScript(EMPTY_DIGEST)),
            MockGet(output_type=Digest, input_types=(CreateDigest,), mock=create_digest),
            MockGet(output_type=FallibleProcessResult, input_types=(Process,), mock=run),
        ],
    )
    return result, archives, processes


def test_loads_the_archive_under_the_engine_lock_and_returns_its_config_id() -> None:
    result, [archive], [process] = assemble()
    assert result == AssembledLambdaImage(image_id=archive_config_id(archive), made=True)
    spec = json.loads(process.argv[2])
    assert (spec["make"], spec["key_ref"], spec["refs"]) == ("load", "fn:ck-1", ["fn:latest", "fn:ck-1"])
    assert process.argv[3:] == ("--", "/bin/docker", "load", "--input", ARCHIVE)
    assert process.input_digest == Digest("f" * 64, len(archive))
    assert process.env["__CHROMADB_LAMBDA_RUN"] == "7" and process.env["DOCKER_HOST"] == "unix:///d.sock"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        [entry] = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = json.loads(tar.extractfile(entry["Config"]).read())  # type: ignore[union-attr]
    assert entry["RepoTags"] == ["fn:ck-1", "fn:latest"]
    assert config["config"]["Cmd"] == ["fn.handler.handle"]
    assert config["rootfs"]["diff_ids"][0] == "sha256:" + "a" * 64 and len(config["rootfs"]["diff_ids"]) == 2


def test_an_engine_that_reports_another_id_is_an_error_naming_the_target() -> None:
    with pytest.raises(AssembledImageError) as e:
        assemble(reported_id="sha256:" + "0" * 64)
    message = str(e.value)
    assert "The engine reports the image sha256:" + "0" * 64 + " for fn:ck-1 (lambdas/fn:fn)" in message
    assert '`[lambda-image].builder = "docker-build"`' in message


def test_a_failed_load_names_the_target_and_shows_the_output() -> None:
    with pytest.raises(AssembledImageError, match=r"(?s)`docker load` of the image assembled for lambdas/fn:fn.*no such layer"):
        assemble(exit_code=1)


def test_a_base_with_onbuild_triggers_asks_for_the_docker_build_builder() -> None:
    base = {**BASE, "Config": {"OnBuild": ["RUN make"]}}
    with pytest.raises(AssembledImageError, match=r"Cannot assemble the image of lambdas/fn:fn: the base image has ONBUILD"):
        assemble(base=base)


def test_base_inspect_is_cached_and_prints_only_config_fields() -> None:
    process = base_inspect_process(DOCKER, "sha256:base", ENV.env)
    assert process.cache_scope == ProcessCacheScope.SUCCESSFUL
    assert process.argv[:4] == ("/bin/docker", "image", "inspect", "--format") and process.argv[-1] == "sha256:base"
    assert "RepoTags" not in process.argv[4] and "Metadata" not in process.argv[4]
