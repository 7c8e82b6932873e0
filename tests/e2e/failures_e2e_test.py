"""End to end: builds that cannot finish. Ctrl-C in the middle of a build, an engine that dies in the
middle of a build, an engine that is not there. Each must say clearly what happened, leave no
docker-info or context manifest in `dist/`, and the next run must recover with no manual cleanup.

A `RUN sleep` appended to the base image's Dockerfile holds the build open long enough to interrupt.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from e2e.harness import DockerEngine, copy_repo, docker, docker_cli, run_pants, wait_for_text

TARGET = "lambdas/list_pending:list_pending"
REPOSITORY = f"chromadb-lambda-failures-{uuid.uuid4().hex[:8]}"
OPTIONS = (f"--docker-default-repository={REPOSITORY}/{{name}}",)
UPSTREAM = "local/lambda-python:3.11"


def slow_repo(tmp_path_factory: pytest.TempPathFactory, name: str, seconds: int) -> Path:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp(name))
    with open(root / "base/Dockerfile", "a") as f:
        # A new command each time, so that BuildKit has no cached result for the step.
        f.write(f"\n# Holds the build open for the test.\nRUN echo {uuid.uuid4().hex} && sleep {seconds}\n")
    return root


def start_package(root: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
    log = root / "pants-run.log"
    proc = subprocess.Popen(
        [str(root / "pants"), "--no-pantsd", "--no-dynamic-ui", *OPTIONS, "package", TARGET],
        cwd=root,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
        text=True,
    )
    return proc, log


def dist_outputs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "dist").glob("**/*") if p.name.endswith((".docker-info.json", ".context.json")))


def test_ctrl_c_in_the_middle_of_a_build(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = slow_repo(tmp_path_factory, "ctrl-c", 20)
    proc, log = start_package(root)
    wait_for_text(log, "Starting: Building docker image", proc)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert proc.wait(timeout=120) != 0
    assert dist_outputs(root) == []

    # The next run builds and writes its outputs, with nothing cleaned up by hand.
    result = run_pants(root, [*OPTIONS, "package", TARGET]).assert_success()
    assert "Lambda image" in result.stderr and " built: " in result.stderr
    assert [p.name for p in dist_outputs(root)] == ["list_pending.context.json", "list_pending.docker-info.json"]


def test_engine_dying_in_the_middle_of_a_build(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = slow_repo(tmp_path_factory, "engine-dies", 15)
    engine_root = tmp_path_factory.mktemp("dying-engine")
    with DockerEngine(engine_root, bridge="cl-e2e1", subnet="172.31.251.1/24") as engine:
        save = subprocess.Popen([docker_cli(), "save", UPSTREAM], stdout=subprocess.PIPE)
        subprocess.run([docker_cli(), "-H", engine.host, "load", "-q"], stdin=save.stdout, check=True, capture_output=True)
        assert save.wait() == 0
        proc, log = start_package(root, env={"DOCKER_HOST": engine.host})
        wait_for_text(log, "Starting: Building docker image", proc)
        time.sleep(3)
        engine.kill()
        assert proc.wait(timeout=300) != 0
    output = log.read_text()
    assert "`docker build` of chromadb-lambda/base:ck-" in output, output
    assert "for base:lambda-base failed" in output
    assert f"The Docker engine at {engine.host} stopped answering during the build" in output
    assert dist_outputs(root) == []

    # The engine comes back (same data root, new socket); the next run recovers by itself.
    with DockerEngine(engine_root, bridge="cl-e2e1", subnet="172.31.251.1/24") as engine:
        result = run_pants(root, [*OPTIONS, "package", TARGET], env={"DOCKER_HOST": engine.host}).assert_success()
        assert " built: " in result.stderr
        assert len(dist_outputs(root)) == 2
        images = docker("-H", engine.host, "image", "ls", "--format", "{{.Repository}}", check=True).stdout
        assert f"{REPOSITORY}/list_pending" in images


def test_unreachable_engine_is_named_before_pants_starts(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("no-engine"))
    socket = f"unix://{root}/nothing-listens-here.sock"
    result = run_pants(root, [*OPTIONS, "package", TARGET], env={"DOCKER_HOST": socket})
    assert result.exit_code != 0
    assert f"DOCKER_HOST={socket} does not answer" in result.stderr
    assert "unset DOCKER_HOST" in result.stderr
    assert not (root / "dist").exists()
