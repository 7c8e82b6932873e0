"""End to end: the first no-op after a build reruns, for each image the build made, the package rule
and its engine half, and nothing below them: no closure, content key, context manifest, module
mapping or import check is computed again (docs/content-keys.md, "What a build run made is not
cleaned in the next run"); the next no-op reruns neither.

What each run ran is read from Pants' own workunit logger
(`pants.backend.experimental.tools.workunit_logger`, one JSON file of workunits per run).
"""
from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import pytest

from e2e.harness import copy_repo, package, remove_repository_images, stop_pantsd

REPOSITORY = f"chromadb-lambda-noop-{uuid.uuid4().hex[:8]}"
PACKAGE_RULE = "chromadb_lambda.goals.package.package_chromadb_lambda"
ENGINE_HALF = "chromadb_lambda.goals.package.lambda_image_state"
# Read again in every run (the engine's tags), and each target's refs in them when they changed.
ENGINE_READS = {"chromadb_lambda.util_rules.engine.read_engine_tag_store", "chromadb_lambda.util_rules.engine.held_refs"}


def logger_options(logdir: Path) -> tuple[str, ...]:
    return (
        "--backend-packages=+['pants.backend.experimental.tools.workunit_logger']",
        "--workunit-logger-enabled",
        f"--workunit-logger-logdir={logdir}",
        "--streaming-workunits-level=trace",
    )


def rules_run(logdir: Path, seen: set[Path]) -> Counter:
    """How many times each rule ran in the run whose log is the one file not `seen` before."""
    (log,) = set(logdir.glob("*.json")) - seen
    seen.add(log)
    return Counter(workunit["name"] for workunit in json.loads(log.read_text()))


def test_the_first_noop_after_a_build_reruns_only_the_package_rules(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("noop-after-build"))
    logdir = root / "workunits"
    logdir.mkdir()
    options = (f"--docker-default-repository={REPOSITORY}/{{name}}", *logger_options(logdir))
    seen: set[Path] = set()
    try:
        built, _ = package(root, *options, "package", "lambdas::")
        build = rules_run(logdir, seen)
        runs = []
        for _ in range(2):
            infos, result = package(root, *options, "package", "lambdas::")
            assert {name: info["built"] for name, info in infos.items()} == {name: False for name in built}
            assert {n: i["image_id"] for n, i in infos.items()} == {n: i["image_id"] for n, i in built.items()}
            assert result.stderr.count("is up to date") == len(built), result.stderr
            runs.append(rules_run(logdir, seen))
    finally:
        stop_pantsd(root)
        remove_repository_images(REPOSITORY)
    # Nothing was held under this run's repository: the build made every image, and computed every
    # closure and key.
    assert {name: info["built"] for name, info in built.items()} == {name: True for name in built}
    assert len(built) == 6
    assert build["chromadb_lambda.util_rules.closure.compute_lambda_closure"] == len(built)
    assert build["chromadb_lambda.util_rules.content_keys.compute_lambda_image_key"] == len(built)

    first, second = runs
    # The first no-op: each image's package rule and engine half once (their build-run results said
    # `built`), the engine read, and nothing else of this plugin.
    assert first[PACKAGE_RULE] == first[ENGINE_HALF] == len(built)
    assert {name for name in first if name.startswith("chromadb_lambda.")} - ENGINE_READS == {PACKAGE_RULE, ENGINE_HALF}
    # Nor of Pants' dependency inference, which closures and keys are made of.
    assert [name for name in first if "dependency_inference" in name or "transitive_targets" in name] == []
    # The next no-op: neither.
    assert {name for name in second if name.startswith("chromadb_lambda.")} - ENGINE_READS == set()
