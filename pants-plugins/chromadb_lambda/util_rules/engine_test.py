from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.addresses import Address
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.process import ProcessCacheScope
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from chromadb_lambda.util_rules.engine import (
    IMAGE_ID_FILE,
    EngineImages,
    EngineImagesRequest,
    EngineLockScript,
    EngineRun,
    LambdaImageBuild,
    LockedImage,
    RepositoryImages,
    RepositoryImagesRequest,
    build_process,
    cache_args,
    docker_process,
    engine_lock_dir,
    locked_process,
    parse_image_listing,
    parse_locked_result,
    repository_images,
    run_scoped_process,
)
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem

ADDRESS = Address("lambdas/word_polling", target_name="word_polling")


def test_parse_image_listing_skips_untagged_images() -> None:
    output = "word_polling:latest sha256:aaa\n<none>:<none> sha256:bbb\nrepo:<none> sha256:ccc\nreg:5000/r:ck-1 sha256:ddd\n"
    assert parse_image_listing(output) == {"word_polling:latest": "sha256:aaa", "reg:5000/r:ck-1": "sha256:ddd"}


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


def test_run_scoped_process_is_keyed_by_the_run_not_the_engine_state() -> None:
    process = docker_process(DockerBinary("/bin/docker", "sha"), ("tag", "sha256:abc", "r:latest"), {}, "tag")
    keyed = run_scoped_process(process, EngineRun(7))
    assert keyed.cache_scope == ProcessCacheScope.PER_RESTART_SUCCESSFUL
    assert keyed.argv == process.argv
    assert keyed.env["__CHROMADB_LAMBDA_RUN"] == "7"
    # Another run, even with the engine in the very same state, gets another process: never a
    # result remembered from an earlier run.
    assert keyed != run_scoped_process(process, EngineRun(8))
    assert keyed == run_scoped_process(process, EngineRun(7))


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


def test_target_cache_from_replaces_the_option() -> None:
    subsystem = create_subsystem(ChromadbLambdaSubsystem, inline_cache=False, cache_from=["reg/{repository}:latest"])
    assert cache_args(subsystem, "r", ("other/{repository}:main",)) == ("--cache-from", "other/r:main")
    assert cache_args(subsystem, "r", ()) == ()
    assert cache_args(subsystem, "r", None) == ("--cache-from", "reg/r:latest")



LISTING = {
    "r:ck-1": "sha256:a",
    "r:latest": "sha256:a",
    "reg:5000/r:latest": "sha256:b",
    "reg:5000/r:ck-1": "sha256:b",
    "r2:latest": "sha256:c",
}


def test_engine_images_by_repository() -> None:
    engine = EngineImages(FrozenDict(LISTING), EngineRun(1))
    assert {repository: dict(refs) for repository, refs in engine.repositories.items()} == {
        "r": {"r:ck-1": "sha256:a", "r:latest": "sha256:a"},
        "reg:5000/r": {"reg:5000/r:latest": "sha256:b", "reg:5000/r:ck-1": "sha256:b"},
        "r2": {"r2:latest": "sha256:c"},
    }


def test_repository_images_are_equal_across_runs_whose_listings_agree() -> None:
    """What an up-to-date package reads does not carry the run, so a no-op does not run it again."""

    def held(run: int, repository: str) -> RepositoryImages:
        return run_rule_with_mocks(
            repository_images,
            rule_args=[RepositoryImagesRequest(repository)],
            mock_gets=[
                MockGet(
                    output_type=EngineImages,
                    input_types=(EngineImagesRequest,),
                    mock=lambda _: EngineImages(FrozenDict(LISTING), EngineRun(run)),
                )
            ],
        )

    assert held(1, "r") == held(2, "r") == RepositoryImages(FrozenDict({"r:ck-1": "sha256:a", "r:latest": "sha256:a"}))
    assert held(3, "absent") == RepositoryImages(FrozenDict())
