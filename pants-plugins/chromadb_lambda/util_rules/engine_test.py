from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.process import ProcessCacheScope
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from chromadb_lambda.util_rules.engine import (
    EngineImages,
    EngineImagesRequest,
    EngineRun,
    RepositoryImages,
    RepositoryImagesRequest,
    docker_process,
    parse_image_listing,
    repository_images,
    run_scoped_process,
)


def test_parse_image_listing_skips_untagged_images() -> None:
    output = "word_polling:latest sha256:aaa\n<none>:<none> sha256:bbb\nrepo:<none> sha256:ccc\nreg:5000/r:ck-1 sha256:ddd\n"
    assert parse_image_listing(output) == {"word_polling:latest": "sha256:aaa", "reg:5000/r:ck-1": "sha256:ddd"}


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
