"""The benchmark's small configuration (`benchmarks/run --config ci`), so that it cannot rot: every
builder runs every scenario, and the facts it reports hold: the plugin rebuilds exactly the images an
edit affects and nothing on a no-op, every rebuilt image imports its handler, publishing the large
repo twice to a local registry uploads base layers at most once per repository and nothing the second
time, and the results name the commit and config they come from."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

# benchmarks/bench.py imports the harness (its `Registry`) from tests/e2e: this brings it into the sandbox.
from e2e import harness  # noqa: F401

SEED_LAMBDAS = ["compaction", "find_unembedded", "line_polling", "list_pending", "submit_batch", "word_polling"]
# Read from the code: the Lambdas whose imports reach src/receipt_chroma/delta.py (line_polling through
# word_polling/polling.py).
DELTA_IMPORTERS = ["compaction", "line_polling", "word_polling"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench-out")
    work = tmp_path_factory.mktemp("bench-work")
    proc = subprocess.run(
        ["benchmarks/run", "--config", "ci", "--out", str(out), "--work", str(work / "w")],
        capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads((out / "ci.json").read_text()), out


def test_every_builder_ran_every_scenario(results: tuple[dict, Path]) -> None:
    data, _ = results
    assert data["settings"]["scenarios"] == ["fresh", "noop", "handler", "shared"]
    assert set(data["repos"]["seed"]["builders"]) == {"hand-written-buildkit", "scoped", "plugin-warm"}
    assert set(data["repos"]["large"]["builders"]) == {"hand-written-buildkit", "plugin-warm"}
    for repo in data["repos"].values():
        for scenarios in repo["builders"].values():
            for scenario in data["settings"]["scenarios"]:
                assert scenarios[scenario]["seconds"] > 0
                assert scenarios[scenario]["missing"] == []


def test_the_expected_sets_are_read_from_the_code(results: tuple[dict, Path]) -> None:
    data, _ = results
    seed = data["repos"]["seed"]
    assert seed["shared_affected"] == DELTA_IMPORTERS
    # A person's COPY lists: the Lambda's folder and the first-party packages it imports, whole;
    # receipt_common is in the base image.
    assert seed["copy_lists"]["list_pending"] == ["lambdas/list_pending", "src/receipt_dynamo"]
    assert seed["copy_lists"]["line_polling"] == [
        "lambdas/line_polling", "lambdas/word_polling", "src/receipt_chroma", "src/receipt_dynamo", "src/receipt_label",
    ]
    plugin = seed["builders"]["plugin-warm"]
    assert plugin["handler"]["expected"] == ["list_pending"]
    assert plugin["shared"]["expected"] == DELTA_IMPORTERS
    large = data["repos"]["large"]
    assert large["builders"]["plugin-warm"]["handler"]["expected"] == ["fn_000"]
    assert 0 < len(large["shared_affected"]) < large["lambdas"] == 12


def test_the_plugin_rebuilds_exactly_the_affected_images(results: tuple[dict, Path]) -> None:
    data, _ = results
    seed = data["repos"]["seed"]["builders"]["plugin-warm"]
    assert seed["fresh"]["rebuilt"] == SEED_LAMBDAS
    assert seed["noop"]["rebuilt"] == []
    assert seed["handler"]["rebuilt"] == ["list_pending"]
    assert seed["shared"]["rebuilt"] == DELTA_IMPORTERS
    large = data["repos"]["large"]
    plugin = large["builders"]["plugin-warm"]
    assert plugin["fresh"]["rebuilt"] == [f"fn_{i:03d}" for i in range(12)]
    assert plugin["handler"]["rebuilt"] == ["fn_000"]
    assert plugin["shared"]["rebuilt"] == large["shared_affected"]
    for repo in data["repos"].values():
        for scenario, r in repo["builders"]["plugin-warm"].items():
            assert r["exact"], (scenario, r["rebuilt"], r["expected"])
            # What the plugin says it built (docker-info `built`) is what changed in the engine.
            assert r["reported_built"] == r["rebuilt"], scenario


def test_the_plugins_noop_builds_nothing(results: tuple[dict, Path]) -> None:
    data, _ = results
    for repo in data["repos"].values():
        noop = repo["builders"]["plugin-warm"]["noop"]
        assert noop["rebuilt"] == [] and noop["reported_built"] == []
        # The engine received no build or load request at all.
        assert noop["docker_received_bytes"] == 0
        assert repo["builders"]["plugin-warm"]["fresh"]["docker_received_bytes"] > 0


def test_every_rebuilt_image_imports_its_handler(results: tuple[dict, Path]) -> None:
    data, _ = results
    for kind, repo in data["repos"].items():
        for name in ("plugin-warm", "hand-written-buildkit"):
            for scenario, r in repo["builders"][name].items():
                assert r["import_check"] == {"checked": len(r["rebuilt"]), "failed": []}, (kind, name, scenario)
    # The scoped build (a Lambda's folder as context) cannot hold the shared packages: every image of
    # it fails to import its handler.
    scoped = data["repos"]["seed"]["builders"]["scoped"]
    assert scoped["fresh"]["import_check"] == {"checked": 6, "failed": SEED_LAMBDAS}


def test_the_hand_written_build_rebuilds_per_package(results: tuple[dict, Path]) -> None:
    data, _ = results
    hand = data["repos"]["seed"]["builders"]["hand-written-buildkit"]
    assert hand["handler"]["rebuilt"] == ["list_pending"]
    # Its COPY lines name whole packages: every image that copies src/receipt_chroma is rebuilt.
    assert hand["shared"]["rebuilt"] == DELTA_IMPORTERS


def test_results_name_their_commit_and_config(results: tuple[dict, Path]) -> None:
    data, out = results
    assert data["plots"] == ["ci-seed-time.png", "ci-large-time.png"]
    for name in data["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "ci.md").read_text()
    assert table.startswith(f"Generated by `benchmarks/run --config ci` at commit {data['commit']}")
    assert "| plugin-warm |" in table and "### large repo: 12 Lambdas" in table
    assert [t["scenario"] for t in data["targets"]] == ["noop", "handler", "noop", "handler", "fresh", "publish", "publish"]
    assert table.count("| **met** |") + table.count("| **missed** |") == 7
    assert "| first | " in table and "| second | " in table


def test_publishing_twice_uploads_base_layers_once_and_nothing_the_second_time(results: tuple[dict, Path]) -> None:
    data, _ = results
    assert "publish" not in data["repos"]["seed"]
    publish = data["repos"]["large"]["publish"]
    assert publish["builder"] == "plugin-warm"
    first, second = publish["runs"]
    assert publish["lambdas"] == 12 and first["seconds"] > 0 and second["seconds"] > 0
    assert publish["blobs_uploaded_twice_into_a_repository"] == []
    # The first publish fills 12 Lambda repositories and the base's: each gets a manifest per tag
    # (`latest` and the content key tag), and the Lambdas' repositories get the base layers by mount.
    lambda_repos = {r: c for r, c in first["repositories"].items() if r.rpartition("/")[2].startswith("fn_")}
    assert len(lambda_repos) == 12, sorted(first["repositories"])
    # Of its own, each gets two uploads (its layer and its config) and mounts the base's layers.
    assert all(c["manifest_puts"] == 2 and c["uploads"] == 2 and c["mounts"] > 0 for c in lambda_repos.values()), lambda_repos
    assert first["by_registry_api"] == 12 and first["already_published"] == 0
    # Nothing is uploaded, mounted or put the second time: all 12 are already published.
    assert (second["uploads"], second["mounts"], second["manifest_puts"]) == (0, 0, 0)
    assert second["already_published"] == 12
    assert [t["met"] for t in data["targets"] if t["scenario"] == "publish"] == [True, True]
