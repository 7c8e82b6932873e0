"""The benchmark's small configuration (`benchmarks/run --config ci`), so that it cannot rot: it must
run every builder through every scenario and write well-formed results whose facts hold."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest


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
    assert data["machine"]["cpus"] >= 1 and data["settings"]["scenarios"]
    for kind in ("seed", "large"):
        repo = data["repos"][kind]
        assert set(repo["builders"]) == set(data["settings"][f"{kind}_builders"])
        for scenarios in repo["builders"].values():
            for scenario in data["settings"]["scenarios"]:
                r = scenarios[scenario]
                assert r["seconds"] > 0 and isinstance(r["rebuilt"], int) and r["context_bytes"] > 0


def test_the_plugin_rebuilds_exactly_what_changed_and_its_images_work(results: tuple[dict, Path]) -> None:
    data, _ = results
    for kind in ("seed", "large"):
        repo = data["repos"][kind]
        plugin = repo["builders"]["plugin-warm"]
        assert plugin["fresh"]["rebuilt"] == repo["lambdas"]
        assert plugin["noop"]["rebuilt"] == 0 and plugin["handler"]["rebuilt"] == 1
        assert plugin["shared"]["rebuilt"] == len(repo["shared_affected"]) > 0
        assert all(plugin[s]["exact"] is not False and plugin[s]["works"] for s in data["settings"]["scenarios"])
    # Kilobytes, not the repo (BuildKit's own transfer is of the same order: it sends COPY paths only).
    seed = data["repos"]["seed"]
    assert 0 < seed["builders"]["plugin-warm"]["fresh"]["context_bytes"] * 100 < seed["repo_bytes"]


def test_the_scoped_builder_is_scored_broken(results: tuple[dict, Path]) -> None:
    data, _ = results
    scoped = data["repos"]["seed"]["builders"]["scoped"]
    assert scoped["fresh"]["works"] is False  # its images cannot import the shared modules


def test_plots_and_tables_are_written(results: tuple[dict, Path]) -> None:
    data, out = results
    assert data["plots"] == ["ci-seed-time.png", "ci-large-time.png"]
    for name in data["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "ci.md").read_text()
    assert "| plugin-warm |" in table and "### large repo" in table
