"""End to end: two CI runners share Pants work through a REAPI cache and images through a registry.

One BuildGrid server (REAPI action cache + CAS) and one registry; two runners, each a fresh checkout
in its own path with its own empty Docker engine and its own Pants local store, both configured by
pants.ci.toml. Runner A packages and publishes every Lambda (and their base, by content key). Runner B,
whose Pants named caches are empty too (no pip or pex cache), then packages the same commit and must:
  (a) get every cacheable process of its run from the REAPI cache but the handler import checks (no
      runner-specific path, socket or host in any other key), so it never resolves a wheel itself;
      an import check runs `docker run` on the runner's own engine, whose DOCKER_HOST is in its key;
  (b) pull the Lambda images (base layers included) from the registry: no base or Lambda build, and
      image ids equal to runner A's, which a rebuild on another engine could not give;
  (c) compute the same content keys.
Then one handler changes on B: B pulls the base A published and builds that one Lambda only.
Both runners' times and cache counters are recorded as JUnit properties (printed by .ci/run) and,
with CHROMADB_LAMBDA_RESULTS_DIR set, written to `two-runners.json` there (benchmarks/results/ keeps one,
plotted by `benchmarks/run --plot-two-runners`).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.harness import (
    BuildGrid,
    DockerEngine,
    Registry,
    copy_repo,
    docker,
    pants_counters,
    read_docker_infos,
    run_pants,
    stop_pantsd,
    transfer_image,
)

ALL = ("compaction", "find_unembedded", "line_polling", "list_pending", "submit_batch", "word_polling")
UPSTREAM = "local/lambda-python:3.11"
EDITED = "list_pending"
COUNTERS = (
    "remote_cache_requests",
    "remote_cache_requests_cached",
    "remote_cache_requests_uncached",
    "remote_cache_write_successes",
    "remote_cache_total_time_saved_ms",
    "local_execution_requests",
    "local_process_total_time_run_ms",
)


class Runner:
    """One CI runner: its checkout, Docker engine and Pants state, configured by pants.ci.toml."""

    def __init__(self, name: str, root: Path, state: Path, engine: DockerEngine, cache: BuildGrid,
                 registry: Registry, empty_named_caches: bool) -> None:
        self.name = name
        self.root = root
        self.engine = engine
        self.env = {
            "DOCKER_HOST": engine.host,
            "PANTS_CONFIG_FILES": "['pants.toml', 'pants.ci.toml']",
            "PANTS_REMOTE_STORE_ADDRESS": cache.address,
            "PANTS_DOCKER_REGISTRIES": f"{{'ci': {{'address': '{registry.address}', 'default': True}}}}",
            "PANTS_LOCAL_STORE_DIR": str(state / "lmdb_store"),
            "PANTS_STATS_LOG": "true",
        }
        if empty_named_caches:
            self.env["PANTS_NAMED_CACHES_DIR"] = str(state / "named_caches")
        self.report: dict[str, Any] = {}

    def run(self, goal: str, label: str = "") -> str:
        start = time.monotonic()
        result = run_pants(self.root, [goal, "lambdas::"], env=self.env, pantsd=True).assert_success()
        counters = pants_counters(result.stderr)
        self.report[label or goal] = {
            "seconds": round(time.monotonic() - start, 1),
            **{name: counters.get(name, 0) for name in COUNTERS},
        }
        return result.stdout + result.stderr


def test_second_runner_reuses_the_remote_cache_and_published_images(
    tmp_path_factory: pytest.TempPathFactory, record_property: Any
) -> None:
    work = tmp_path_factory.mktemp("two-runners")
    script = Path.cwd() / "build-support/bootstrap/buildgrid.sh"
    with BuildGrid(work / "buildgrid", script) as cache, Registry(work / "registry") as registry, DockerEngine(
        work / "engine-a", bridge="cl-e2e2", subnet="172.31.252.1/24"
    ) as engine_a, DockerEngine(work / "engine-b", bridge="cl-e2e3", subnet="172.31.253.1/24") as engine_b:
        # Each runner's machine image has the upstream Python image (as it would have pulled it).
        for engine in (engine_a, engine_b):
            transfer_image(UPSTREAM, engine.host)
        a = Runner("a", copy_repo(Path.cwd(), work / "a" / "repo"), work / "a" / "pants", engine_a, cache, registry, False)
        b = Runner("b", copy_repo(Path.cwd(), work / "b" / "checkout" / "src"), work / "b" / "pants", engine_b, cache, registry, True)
        try:
            a.run("package")
            infos_a = read_docker_infos(a.root)
            a.run("publish")
            blobs_before = len(registry.blob_gets())
            puts_before = len(registry.manifest_puts())
            b_package = b.run("package")
            infos_b = read_docker_infos(b.root)
            blobs = registry.blob_gets()[blobs_before:]
            b_publish = b.run("publish")
            puts_by_b = registry.manifest_puts()[puts_before:]
            base_ref = infos_a[ALL[0]]["base_image"]["ref"]
            base_on_b = docker("-H", engine_b.host, "image", "inspect", base_ref, check=False).returncode == 0
            layers = docker("-H", engine_b.host, "image", "inspect", "--format", "{{json .RootFS.Layers}}", infos_b[ALL[0]]["tags"][0])
            # B's next commit changes one handler: B builds that Lambda alone, on the base A published.
            with open(b.root / "lambdas" / EDITED / "handler.py", "a") as f:
                f.write("\n# changed on runner B\n")
            b.run("package", label="package_one_handler_changed")
            infos_b2 = read_docker_infos(b.root)
            base_ids = [
                docker("-H", engine.host, "image", "inspect", "--format", "{{.Id}}", base_ref, check=False).stdout.strip()
                for engine in (engine_a, engine_b)
            ]
            all_puts = registry.manifest_puts()
        finally:
            stop_pantsd(a.root)
            stop_pantsd(b.root)

        report = {
            "runner_a": a.report,
            "runner_b": b.report,
            "registry_blobs_served_to_b": len(blobs),
            "distinct_blobs_served_to_b": len(set(blobs)),
        }
        record_property("two_runners", json.dumps(report, sort_keys=True))
        results_dir = os.environ.get("CHROMADB_LAMBDA_RESULTS_DIR")
        if results_dir:
            report["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            report["cpus"] = os.cpu_count()
            Path(results_dir).mkdir(parents=True, exist_ok=True)
            (Path(results_dir) / "two-runners.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

    assert sorted(infos_a) == sorted(infos_b) == sorted(ALL)
    # (c) One commit, one set of keys, in two paths with two engines.
    for name in ALL:
        assert infos_b[name]["content_key"] == infos_a[name]["content_key"], name
        assert infos_b[name]["base_image"]["key"] == infos_a[name]["base_image"]["key"], name
    # (a) Runner A stored its processes; runner B found every one of its cacheable processes there.
    assert a.report["package"]["remote_cache_write_successes"] >= 1, report
    b_counts = b.report["package"]
    assert b_counts["remote_cache_requests_cached"] >= 1, report
    # The only misses: one import check per Lambda, run on B's own engine (DOCKER_HOST is in its key).
    assert b_counts["remote_cache_requests_uncached"] == len(ALL), report
    assert all(infos_b[name]["import_check"] == "passed" for name in ALL), infos_b
    assert b_counts["remote_cache_total_time_saved_ms"] > 0, report
    # (b) Nothing built on B: every image pulled, identical to A's (same image id = same config and
    # layers), the base never built (its layers came inside the Lambda images).
    for name in ALL:
        assert infos_a[name]["built"] is True and infos_a[name]["pulled_from"] is None, name
        assert infos_b[name]["built"] is False, name
        assert infos_b[name]["pulled_from"].startswith(f"{registry.address}/"), name
        assert infos_b[name]["pulled_from"].endswith(f":ck-{infos_a[name]['content_key'][:32]}"), name
        assert infos_b[name]["image_id"] == infos_a[name]["image_id"], name
    assert "pulled from" in b_package
    assert not base_on_b, f"runner B built the base {base_ref}"
    # The layers came from the registry: at least one blob served per layer of an image.
    assert len(set(blobs)) >= len(json.loads(layers.stdout)), report
    # B's publish finds everything already there.
    assert puts_by_b == [], puts_by_b
    assert b_publish.count("already published, nothing pushed") == len(ALL), b_publish
    # A's publish pushed the base by its content key (publish_base_images); after the handler edit, B
    # pulled that base (same image id as A's: not rebuilt) and built exactly the edited Lambda.
    assert tuple(base_ref.split(":")) in all_puts, all_puts
    assert base_ids[0] and base_ids[0] == base_ids[1], base_ids
    assert infos_b2[EDITED]["built"] is True and infos_b2[EDITED]["content_key"] != infos_a[EDITED]["content_key"]
    assert all(infos_b2[name]["built"] is False for name in ALL if name != EDITED), infos_b2
