"""chunk_load.py's `untagged` and `tag` modes against a fake `docker` holding images and their tags."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from chromadb_lambda.scripts.chunk_load import load_untagged, tag_images


class FakeEngine:
    """A `subprocess.run` stand-in: image ids (`images`) and the tags pointing at them (`tags`)."""

    def __init__(self, images: set[str], tags: dict[str, str], loads: set[str] = frozenset()) -> None:
        self.images, self.tags, self.loads = set(images), dict(tags), set(loads)
        self.commands: list[list[str]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        self.commands.append(argv[1:])
        if argv[1:5] == ["image", "inspect", "--format", "{{.Id}}"]:
            refs = argv[5:]
            found = [self.tags.get(r) or (r if r in self.images else None) for r in refs]
            missing = [r for r, f in zip(refs, found) if f is None]
            stdout = "".join(f"{f}\n" for f in found if f)
            return subprocess.CompletedProcess(argv, 1 if missing else 0, stdout, "".join(f"Error: No such image: {r}\n" for r in missing))
        if argv[1:5] == ["image", "inspect", "--format", "{{json .RepoTags}}"]:
            tags = sorted(t for t, i in self.tags.items() if i == argv[5])
            return subprocess.CompletedProcess(argv, 0, json.dumps(tags) + "\n", "")
        if argv[1] == "tag":
            self.tags[argv[3]] = argv[2]
            return subprocess.CompletedProcess(argv, 0, "", "")
        if argv[1] == "load":
            self.images |= self.loads
            return subprocess.CompletedProcess(argv, 0, None, None)
        if argv[1] == "rmi":
            self.images.discard(argv[2])
            return subprocess.CompletedProcess(argv, 0, "", "")
        raise AssertionError(argv)


def image(name: str) -> dict[str, Any]:
    return {"key_ref": f"acme/{name}:ck-{name}", "refs": [f"acme/{name}:latest"], "image_id": f"sha256:{name}"}


def test_the_untagged_load_reports_which_images_the_engine_holds(tmp_path: Path) -> None:
    engine = FakeEngine(set(), {}, loads={"sha256:a"})
    spec = {"docker": "docker", "lock_dir": str(tmp_path), "images": [image("a"), image("b")]}
    result = load_untagged(spec, ["docker", "load", "--input", "lambda-images.tar"], engine)
    assert result == {"sha256:a": {"held": True}, "sha256:b": {"held": False}}
    assert engine.tags == {} and engine.commands[0] == ["load", "--input", "lambda-images.tar"]


def test_passing_members_are_tagged_and_a_failing_untagged_image_is_removed(tmp_path: Path) -> None:
    # c failed its check; d failed too, but another run tagged the same image meanwhile: kept.
    engine = FakeEngine({"sha256:a", "sha256:c", "sha256:d"}, {"other/d:x": "sha256:d"})
    spec = {
        "docker": "docker", "lock_dir": str(tmp_path), "images": [image("a"), image("b")],
        "discard": [{"key_ref": "acme/c:ck-c", "image_id": "sha256:c"}, {"key_ref": "acme/d:ck-d", "image_id": "sha256:d"}],
    }
    result = tag_images(spec, engine)
    assert result == {
        "acme/a:ck-a": {"image_id": "sha256:a", "made": True, "error": None},
        "acme/b:ck-b": {"image_id": None, "made": False, "error": "the engine no longer holds the loaded image sha256:b"},
    }
    assert engine.tags == {"acme/a:latest": "sha256:a", "acme/a:ck-a": "sha256:a", "other/d:x": "sha256:d"}
    assert engine.images == {"sha256:a", "sha256:d"}
    assert ["rmi", "sha256:c"] in engine.commands and ["rmi", "sha256:d"] not in engine.commands


def test_a_key_another_run_gave_to_other_bytes_is_that_member_error(tmp_path: Path) -> None:
    engine = FakeEngine({"sha256:a", "sha256:z"}, {"acme/a:ck-a": "sha256:z"})
    result = tag_images({"docker": "docker", "lock_dir": str(tmp_path), "images": [image("a")]}, engine)
    assert result == {"acme/a:ck-a": {"image_id": "sha256:z", "made": False,
                                      "error": "the engine reports the image sha256:z for acme/a:ck-a"}}
    assert engine.tags == {"acme/a:ck-a": "sha256:z"}


def test_a_member_another_run_tagged_already_is_not_made_here(tmp_path: Path) -> None:
    engine = FakeEngine({"sha256:a"}, {"acme/a:ck-a": "sha256:a", "acme/a:latest": "sha256:a"})
    result = tag_images({"docker": "docker", "lock_dir": str(tmp_path), "images": [image("a")]}, engine)
    assert result == {"acme/a:ck-a": {"image_id": "sha256:a", "made": False, "error": None}}
    assert not any(c[0] == "tag" for c in engine.commands)
