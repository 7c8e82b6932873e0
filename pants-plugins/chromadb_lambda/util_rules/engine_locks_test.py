from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.process import ProcessCacheScope

from chromadb_lambda.util_rules.docker_build import LambdaImageBuild, build_process
from chromadb_lambda.util_rules.engine import EngineRun
from chromadb_lambda.util_rules.engine_locks import (
    EngineLockScript,
    LockedImage,
    engine_lock_dir,
    locked_process,
    parse_locked_result,
)


def test_locked_process_wraps_the_build_under_the_locks_of_its_refs() -> None:
    docker = DockerBinary("/bin/docker", "sha")
    build = LambdaImageBuild(refs=("r:latest", "r:ck-1"), context=EMPTY_DIGEST, dockerfile="Dockerfile", base_image_id="sha256:base")
    plain = build_process(docker, build, {"DOCKER_HOST": "unix:///x.sock"})
    script = EngineLockScript(EMPTY_DIGEST)
    process = locked_process(
        plain, script=script, docker=docker, env={}, run=EngineRun(3), key_ref="r:ck-1", refs=build.refs
    )
    spec = (
        '{"docker": "/bin/docker", "iidfile": ".chromadb-lambda-image-id", "key_ref": "r:ck-1", '
        f'"lock_dir": "{engine_lock_dir()}", "make": "build", "refs": ["r:latest", "r:ck-1"]}}'
    )
    assert process.argv[1:4] == ("__chromadb_lambda_engine_lock/engine_lock.py", spec, "--")
    assert process.argv[4:] == plain.argv
    assert process.immutable_input_digests["__chromadb_lambda_engine_lock"] == EMPTY_DIGEST
    assert process.description == "Building docker image r:latest +1 additional tag."
    assert process.env["DOCKER_HOST"] == "unix:///x.sock"
    assert process.env["__CHROMADB_LAMBDA_RUN"] == "3"
    assert process.cache_scope == ProcessCacheScope.PER_RESTART_SUCCESSFUL
    assert process.output_files == ()


def test_locked_process_without_make_only_adopts() -> None:
    docker = DockerBinary("/bin/docker", "sha")
    process = locked_process(
        None, script=EngineLockScript(EMPTY_DIGEST), docker=docker, env={"DOCKER_HOST": "unix:///y.sock"},
        run=EngineRun(1), key_ref="r:ck-1", refs=("r:latest",),
    )
    assert "--" not in process.argv and len(process.argv) == 3
    assert process.description == "Tagging r:ck-1 as r:latest"
    assert process.env["DOCKER_HOST"] == "unix:///y.sock"


def test_parse_locked_result() -> None:
    assert parse_locked_result(b'{"image_id": "sha256:a", "made": true, "output": null}\n') == LockedImage("sha256:a", True, "")
    assert parse_locked_result(b'{"image_id": null, "made": false, "output": {"pulled": null, "warnings": []}}') == LockedImage(
        None, False, '{"pulled": null, "warnings": []}'
    )
