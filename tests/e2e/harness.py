"""Helpers for end-to-end tests: a scratch copy of the repo, real Pants runs, Docker engine queries."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

# What the `//:repo` files target brings into the test sandbox.
REPO_ENTRIES = ("pants", "pants.toml", "BUILD", "build-support", "3rdparty", "base", "lambdas", "src", "pants-plugins")


def copy_repo(source: Path, dest: Path) -> Path:
    """Copies the repo files from the test sandbox into a scratch build root."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in REPO_ENTRIES:
        path = source / entry
        if path.is_dir():
            shutil.copytree(path, dest / entry, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, dest / entry)
    return dest


def docker_cli() -> str:
    """The Docker CLI the `./pants` wrapper chose (it exports its directory for Pants)."""
    paths = json.loads(os.environ.get("PANTS_DOCKER_EXECUTABLE_SEARCH_PATHS") or "[]")
    for directory in paths:
        candidate = os.path.join(directory, "docker")
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("docker")
    assert found, "no docker CLI: run the tests through ./pants, which sets up the engine"
    return found


def docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_cli(), *args], check=check, text=True, capture_output=capture, timeout=600
    )


@dataclass(frozen=True)
class PantsResult:
    exit_code: int
    stdout: str
    stderr: str

    def assert_success(self) -> "PantsResult":
        assert self.exit_code == 0, f"pants failed ({self.exit_code}):\n{self.stdout}\n{self.stderr}"
        return self


def run_pants(build_root: Path, args: Sequence[str], env: dict[str, str] | None = None) -> PantsResult:
    # No pantsd: each test's build root is scratch, so a daemon would only linger after the test.
    proc = subprocess.run(
        [str(build_root / "pants"), "--no-pantsd", "--no-dynamic-ui", *args],
        cwd=build_root,
        env={**os.environ, **(env or {})},
        text=True,
        capture_output=True,
        timeout=1500,
    )
    return PantsResult(proc.returncode, proc.stdout, proc.stderr)


def image_layers(image: str) -> list[str]:
    out = docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", image).stdout
    return json.loads(out)


def files_added_over_base(images: Sequence[str], base: str) -> dict[str, set[str]]:
    """For each image, every file its own layers (those above `base`'s) add, as absolute paths."""
    base_layers = image_layers(base)
    with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, "images.tar")
        docker("save", "-o", archive, *images)
        with tarfile.open(archive) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            by_tag = {tag: entry for entry in manifest for tag in entry.get("RepoTags") or ()}
            added: dict[str, set[str]] = {}
            for image in images:
                layers = by_tag[image]["Layers"]
                own = image_layers(image)
                assert own[: len(base_layers)] == base_layers, f"{image} is not built on {base}"
                files: set[str] = set()
                for layer in layers[len(base_layers) :]:
                    with tarfile.open(fileobj=tar.extractfile(layer)) as layer_tar:
                        files.update("/" + m.name for m in layer_tar.getmembers() if m.isfile())
                added[image] = files
    return added


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
