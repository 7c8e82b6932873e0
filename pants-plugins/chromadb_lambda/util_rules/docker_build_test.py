from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.process import ProcessCacheScope
from pants.testutil.option_util import create_subsystem

from chromadb_lambda.util_rules.docker_build import LambdaImageBuild, build_process, cache_args
from chromadb_lambda.util_rules.engine_locks import IMAGE_ID_FILE
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem


def test_build_process_tags_writes_image_id_and_runs_every_session() -> None:
    docker = DockerBinary("/bin/docker", "sha")
    build = LambdaImageBuild(refs=("r:latest", "r:ck-1"), context=EMPTY_DIGEST, dockerfile="Dockerfile", base_image_id="sha256:base")
    process = build_process(docker, build, {"DOCKER_HOST": "unix:///x.sock"})
    assert process.argv == (
        "/bin/docker", "build", "--iidfile", IMAGE_ID_FILE, "--tag", "r:latest", "--tag", "r:ck-1", "--file", "Dockerfile", ".",
    )
    assert process.output_files == (IMAGE_ID_FILE,)
    assert process.cache_scope == ProcessCacheScope.PER_SESSION
    assert process.env["DOCKER_HOST"] == "unix:///x.sock"
    assert process.env["__CHROMADB_LAMBDA_BASE_IMAGE_ID"] == "sha256:base"


def test_cache_args_inline_cache_and_cache_from_per_repository() -> None:
    subsystem = create_subsystem(
        ChromadbLambdaSubsystem,
        inline_cache=True,
        cache_from=["reg:5000/{repository}:latest", "reg:5000/{repository}:main"],
    )
    assert cache_args(subsystem, "receipts/word_polling") == (
        "--build-arg", "BUILDKIT_INLINE_CACHE=1",
        "--cache-from", "reg:5000/receipts/word_polling:latest",
        "--cache-from", "reg:5000/receipts/word_polling:main",
    )
    assert cache_args(create_subsystem(ChromadbLambdaSubsystem, inline_cache=False, cache_from=[]), "r") == ()


def test_target_cache_from_replaces_the_option() -> None:
    subsystem = create_subsystem(ChromadbLambdaSubsystem, inline_cache=False, cache_from=["reg/{repository}:latest"])
    assert cache_args(subsystem, "r", ("other/{repository}:main",)) == ("--cache-from", "other/r:main")
    assert cache_args(subsystem, "r", ()) == ()
    assert cache_args(subsystem, "r", None) == ("--cache-from", "reg/r:latest")
