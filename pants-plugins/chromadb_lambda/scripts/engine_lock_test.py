"""engine_lock.py against a fake `docker`: which commands it runs, under which locks, and what it reports."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chromadb_lambda.scripts import engine_lock
from chromadb_lambda.scripts.engine_lock import EngineLockError, ensure_image, first_free_lock, image_ids, lock_name


class FakeEngine:
    """A `subprocess.run` stand-in holding an engine's tags; `docker build` writes the iid file."""

    def __init__(self, tags: dict[str, str], iidfile: Path, built_id: str = "sha256:new") -> None:
        self.tags = dict(tags)
        self.iidfile = iidfile
        self.built_id = built_id
        self.commands: list[list[str]] = []
        self.locked_during_build: bool | None = None

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        self.commands.append(argv)
        if argv[0] == "pull":
            self.tags["r:ck-1"] = "sha256:pulled"
            out = json.dumps({"pulled": {"image_id": "sha256:pulled", "ref": "reg/r:ck-1"}, "warnings": []})
            return subprocess.CompletedProcess(argv, 0, out, None)
        if argv[1:3] == ["image", "inspect"]:
            refs = argv[5:]
            found = [self.tags[r] for r in refs if r in self.tags]
            missing = [r for r in refs if r not in self.tags]
            stderr = "".join(f"Error: No such image: {r}\n" for r in missing)
            return subprocess.CompletedProcess(argv, 1 if missing else 0, "".join(f"{i}\n" for i in found), stderr)
        if argv[1] == "tag":
            self.tags[argv[3]] = argv[2]
            return subprocess.CompletedProcess(argv, 0, "", "")
        if argv[1] == "load":
            # The archive tags the image with the refs it lists (here: the spec's refs).
            for tag in ("r:latest", "r:ck-1"):
                self.tags[tag] = "sha256:loaded"
            return subprocess.CompletedProcess(argv, 0, None, None)
        if argv[1] == "build":
            tags = [argv[i + 1] for i, a in enumerate(argv) if a == "--tag"]
            for tag in tags:
                self.tags[tag] = self.built_id
            self.iidfile.write_text(self.built_id)
            return subprocess.CompletedProcess(argv, 0, None, None)
        raise AssertionError(argv)


def spec(tmp_path: Path, make: str = "build") -> dict[str, Any]:
    return {
        "docker": "docker",
        "lock_dir": str(tmp_path / "locks"),
        "key_ref": "r:ck-1",
        "refs": ["r:latest", "r:ck-1"],
        "make": make,
        "iidfile": str(tmp_path / "iid"),
    }


BUILD = ["docker", "build", "--iidfile", "iid", "--tag", "r:latest", "--tag", "r:ck-1", "."]


def test_builds_when_the_engine_lacks_the_key_and_verifies_the_tags(tmp_path: Path) -> None:
    engine = FakeEngine({"r:latest": "sha256:old"}, tmp_path / "iid")
    assert ensure_image(spec(tmp_path), BUILD, engine) == {"image_id": "sha256:new", "made": True, "output": None}
    assert engine.tags == {"r:latest": "sha256:new", "r:ck-1": "sha256:new"}
    assert BUILD in engine.commands
    assert not any(c[1] == "tag" for c in engine.commands)


def test_adopts_the_image_a_concurrent_run_built_instead_of_building_again(tmp_path: Path) -> None:
    # The other clone built the same content while this one waited: its image keeps every tag.
    engine = FakeEngine({"r:ck-1": "sha256:theirs", "r:latest": "sha256:theirs"}, tmp_path / "iid")
    assert ensure_image(spec(tmp_path), BUILD, engine) == {"image_id": "sha256:theirs", "made": False, "output": None}
    assert engine.tags == {"r:ck-1": "sha256:theirs", "r:latest": "sha256:theirs"}
    assert all(c[1] != "build" for c in engine.commands)


def test_adopt_only_moves_the_stale_tags(tmp_path: Path) -> None:
    engine = FakeEngine({"r:ck-1": "sha256:a", "r:latest": "sha256:old"}, tmp_path / "iid")
    assert ensure_image(spec(tmp_path), [], engine)["image_id"] == "sha256:a"
    assert ["docker", "tag", "sha256:a", "r:latest"] in engine.commands
    assert engine.tags["r:latest"] == "sha256:a"


def test_without_make_and_without_the_key_nothing_happens(tmp_path: Path) -> None:
    engine = FakeEngine({"r:latest": "sha256:old"}, tmp_path / "iid")
    assert ensure_image(spec(tmp_path), [], engine) == {"image_id": None, "made": False, "output": None}
    assert engine.tags == {"r:latest": "sha256:old"}


def test_pull_output_is_passed_on(tmp_path: Path) -> None:
    engine = FakeEngine({}, tmp_path / "iid")
    result = ensure_image(spec(tmp_path, "pull"), ["pull"], engine)
    assert result["image_id"] == "sha256:pulled" and result["made"] is True
    assert result["output"]["pulled"]["ref"] == "reg/r:ck-1"
    assert engine.tags == {"r:ck-1": "sha256:pulled", "r:latest": "sha256:pulled"}


LOAD = ["docker", "load", "-i", "image.tar"]


def test_load_reports_the_id_the_key_ref_points_at_after_the_load(tmp_path: Path) -> None:
    engine = FakeEngine({"r:latest": "sha256:old"}, tmp_path / "iid")
    assert ensure_image(spec(tmp_path, "load"), LOAD, engine) == {"image_id": "sha256:loaded", "made": True, "output": None}
    assert engine.tags == {"r:latest": "sha256:loaded", "r:ck-1": "sha256:loaded"}
    assert LOAD in engine.commands


def test_load_is_skipped_when_another_run_loaded_the_key(tmp_path: Path) -> None:
    engine = FakeEngine({"r:ck-1": "sha256:theirs", "r:latest": "sha256:old"}, tmp_path / "iid")
    assert ensure_image(spec(tmp_path, "load"), LOAD, engine) == {"image_id": "sha256:theirs", "made": False, "output": None}
    assert LOAD not in engine.commands
    assert engine.tags == {"r:ck-1": "sha256:theirs", "r:latest": "sha256:theirs"}


def test_a_tag_moved_by_someone_else_is_an_error(tmp_path: Path) -> None:
    class Stubborn(FakeEngine):
        def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
            if argv[1] == "tag":
                return subprocess.CompletedProcess(argv, 0, "", "")  # another program moves it back
            return super().__call__(argv, **kwargs)

    engine = Stubborn({"r:ck-1": "sha256:a", "r:latest": "sha256:old"}, tmp_path / "iid")
    with pytest.raises(EngineLockError, match=r"r:latest no longer point at sha256:a"):
        ensure_image(spec(tmp_path), [], engine)


def test_an_engine_that_does_not_answer_is_reported(tmp_path: Path) -> None:
    def down(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(argv, 1, "", "Cannot connect to the Docker daemon at unix:///x.sock.\n")

    with pytest.raises(EngineLockError, match="Cannot connect to the Docker daemon"):
        image_ids("docker", ["r:ck-1"], down)


def test_the_locks_are_per_engine_and_ref_and_held_during_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///e1.sock")
    assert lock_name("unix:///e1.sock", "r:ck-1") != lock_name("unix:///e2.sock", "r:ck-1")
    assert lock_name("unix:///e1.sock", "r:ck-1") != lock_name("unix:///e1.sock", "r:latest")
    locks = [tmp_path / "locks" / lock_name("unix:///e1.sock", ref) for ref in ("r:ck-1", "r:latest")]
    engine = FakeEngine({}, tmp_path / "iid")
    original = engine.__call__

    def build_and_probe(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        if argv[1] == "load":
            # The archive tags the image with the refs it lists (here: the spec's refs).
            for tag in ("r:latest", "r:ck-1"):
                self.tags[tag] = "sha256:loaded"
            return subprocess.CompletedProcess(argv, 0, None, None)
        if argv[1] == "build":
            # Another process (here: another open file description) cannot take the locks now.
            for lock in locks:
                fd = os.open(lock, os.O_RDWR)
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.close(fd)
        return original(argv, **kwargs)

    ensure_image(spec(tmp_path), BUILD, build_and_probe)
    for lock in locks:
        fd = os.open(lock, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released once done
        os.close(fd)


def held_elsewhere(path: Path) -> int:
    """The lock at `path` taken by another open file description (as another process would)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_first_free_lock_skips_held_locks_and_holds_the_one_it_yields(tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    folder.mkdir()
    path = {ref: folder / lock_name("unix:///e.sock", ref) for ref in ("p", "p-1", "p-2")}
    with first_free_lock(str(folder), "unix:///e.sock", ["p", "p-1", "p-2"]) as ref:
        assert ref == "p"
        with first_free_lock(str(folder), "unix:///e.sock", ["p", "p-1", "p-2"]) as second:
            assert second == "p-1"
            fd = os.open(path["p-1"], os.O_RDWR)
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.close(fd)
    os.close(held_elsewhere(path["p"]))  # both released once done
    os.close(held_elsewhere(path["p-1"]))


def test_first_free_lock_waits_for_the_chosen_one_when_all_are_held(tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    folder.mkdir()
    fds = [held_elsewhere(folder / lock_name("unix:///e.sock", ref)) for ref in ("p", "p-1")]
    released: list[str] = []

    def release_later() -> None:
        time.sleep(0.3)
        released.append("p-1")
        os.close(fds[1])

    threading.Thread(target=release_later).start()
    with first_free_lock(str(folder), "unix:///e.sock", ["p", "p-1"], wait_for=3) as ref:
        assert (ref, released) == ("p-1", ["p-1"])
    os.close(fds[0])


def test_main_prints_the_result_and_an_error_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: Any, **kwargs: Any) -> dict:
        raise EngineLockError("r:latest no longer point at sha256:a")

    monkeypatch.setattr(engine_lock, "ensure_image", failing)
    assert engine_lock.main([json.dumps(spec(tmp_path))]) == 1
    assert capsys.readouterr().err == "r:latest no longer point at sha256:a\n"
