"""chunk_load.py's `untagged` and `tag` modes against a fake `docker` holding images and their tags."""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from chromadb_lambda.scripts import chunk_import_check, import_check_script
from chromadb_lambda.scripts.chunk_load import (
    MEMBER_MARKER,
    VERDICT_MARKER,
    load_untagged,
    passed_members,
    prove_and_tag,
    record_verdict,
    recorded_verdict,
    tag_images,
    verdict_path,
)


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


def line(name: str, exit_code: int, stdout: str) -> str:
    return "CHROMADB_LAMBDA_CHUNK_MEMBER " + json.dumps({"name": name, "exit_code": exit_code, "stdout": stdout, "stderr": ""})


def test_the_markers_are_the_drivers_and_the_scripts() -> None:
    assert (MEMBER_MARKER, VERDICT_MARKER) == (chunk_import_check.MEMBER_MARKER, import_check_script.MARKER)


def test_only_a_last_verdict_ok_with_exit_0_passes() -> None:
    ok = 'CHROMADB_LAMBDA_IMPORT_CHECK {"status": "ok", "file": "/var/task/h.py"}\n'
    raised = 'CHROMADB_LAMBDA_IMPORT_CHECK {"status": "raised", "type": "KeyError"}\n'
    stdout = "\n".join(
        [
            "noise",
            line("0", 0, ok),
            line("1", 0, raised),
            line("2", 3, ok),  # timed out: not a verdict to tag on
            line("3", 0, "no verdict\n"),
            line("4", 0, raised + ok),  # the last verdict line counts, as parse_verdict reads it
            line("5", 0, ok + raised),
            'CHROMADB_LAMBDA_IMPORT_CHECK {"status": "ok"}',  # a verdict outside a member line
        ]
    )
    assert passed_members(stdout) == {"0", "4"}


class Check:
    """prover.run_check stand-in: each bundle's driver output, and the engine state when it ran."""

    def __init__(self, engine: FakeEngine, outputs: dict[str, str]) -> None:
        self.engine, self.outputs, self.seen = engine, outputs, []

    def __call__(self, spec: dict) -> subprocess.CompletedProcess:
        self.seen.append((spec["bundle"], dict(self.engine.tags)))
        return subprocess.CompletedProcess([], 0, self.outputs[spec["bundle"]].encode(), b"")


def test_prove_tags_the_ok_and_unchecked_members_only_after_the_checks(tmp_path: Path) -> None:
    ok = 'CHROMADB_LAMBDA_IMPORT_CHECK {"status": "ok"}\n'
    raised = 'CHROMADB_LAMBDA_IMPORT_CHECK {"status": "raised", "type": "ImportError", "module": "x"}\n'
    engine = FakeEngine(set(), {}, loads={"sha256:a", "sha256:b", "sha256:c", "sha256:d"})
    check = Check(engine, {"b0.tar": line("0", 0, ok) + "\n" + line("1", 0, raised), "b1.tar": line("0", 0, ok)})
    spec = {
        "docker": "docker", "lock_dir": str(tmp_path), "mode": "prove",
        "images": [image("a"), image("b"), image("c"), image("d")],
        # d is in no bundle (not checkable in its base's container): tagged, left to its `docker run`.
        "checks": [{"bundle": "b0.tar", "members": ["acme/a:ck-a", "acme/b:ck-b"]},
                   {"bundle": "b1.tar", "members": ["acme/c:ck-c"]}],
    }
    report = prove_and_tag(spec, ["docker", "load", "--input", "lambda-images.tar"], check, engine)
    # No check saw a tag: tags come after every verdict.
    assert check.seen == [("b0.tar", {}), ("b1.tar", {})]
    assert sorted(report["tagged"]) == ["acme/a:ck-a", "acme/c:ck-c", "acme/d:ck-d"]
    assert [c["exit_code"] for c in report["checks"]] == [0, 0]
    assert report["checks"][0]["stdout"].count("CHROMADB_LAMBDA_CHUNK_MEMBER") == 2
    # b (raised) is loaded but untagged: the plugin classifies it, then tags or removes it.
    assert engine.tags == {
        "acme/a:ck-a": "sha256:a", "acme/a:latest": "sha256:a", "acme/c:ck-c": "sha256:c",
        "acme/c:latest": "sha256:c", "acme/d:ck-d": "sha256:d", "acme/d:latest": "sha256:d",
    }
    assert "sha256:b" in engine.images


def test_a_failed_load_tags_nothing_and_still_reports_the_checks(tmp_path: Path) -> None:
    ok = 'CHROMADB_LAMBDA_IMPORT_CHECK {"status": "ok"}\n'

    class FailingLoad(FakeEngine):
        def __call__(self, argv, **kwargs):
            if argv[1] == "load":
                self.commands.append(argv[1:])
                return subprocess.CompletedProcess(argv, 1, None, None)
            return super().__call__(argv, **kwargs)

    engine = FailingLoad(set(), {})
    check = Check(engine, {"b0.tar": line("0", 0, ok)})
    spec = {"docker": "docker", "lock_dir": str(tmp_path), "mode": "prove", "images": [image("a")],
            "checks": [{"bundle": "b0.tar", "members": ["acme/a:ck-a"]}]}
    report = prove_and_tag(spec, ["docker", "load", "--input", "lambda-images.tar"], check, engine)
    assert report["load_exit"] == 1 and "tagged" not in report
    assert report["checks"][0]["stdout"].startswith("CHROMADB_LAMBDA_CHUNK_MEMBER")
    assert engine.tags == {}


def bundle_tar(path: Path, members: int, check_source: bytes = b"print('check')\n") -> None:
    """A bundle as import_check_chunk.check_bundle lays it out (index.json, check.py, zygote.py, layers)."""
    index = {"task_root": "/var/task", "timeout": 60, "base_env": [], "zygote": True,
             "members": [{"name": str(i), "layer": f"layers/{i}.tar", "env": [], "workdir": "",
                          "module": f"m{i}", "function": "handle"} for i in range(members)]}
    files = {"check.py": check_source, "zygote.py": b"# zygote\n", "index.json": json.dumps(index).encode(),
             **{f"layers/{i}.tar": b"layer %d" % i for i in range(members)}}
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


class IndexCheck:
    """prover.run_check stand-in that answers for the members of the bundle's index only."""

    def __init__(self, verdicts: dict[str, str]) -> None:
        self.verdicts, self.asked = verdicts, []

    def __call__(self, spec: dict) -> subprocess.CompletedProcess:
        with tarfile.open(spec["bundle"]) as tar:
            names = [m["name"] for m in json.load(tar.extractfile("index.json"))["members"]]
        self.asked.append(names)
        verdict = {"ok": 'CHROMADB_LAMBDA_IMPORT_CHECK {"status": "ok"}\n',
                   "raised": 'CHROMADB_LAMBDA_IMPORT_CHECK {"status": "raised", "type": "ImportError"}\n'}
        return subprocess.CompletedProcess([], 0, "\n".join(line(n, 0, verdict[self.verdicts[n]]) for n in names).encode(), b"")


def test_a_passing_image_is_not_checked_again_a_failing_one_is(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    bundle_tar(tmp_path / "b0.tar", 2)
    verdicts = tmp_path / "verdicts"
    spec = {"docker": "docker", "lock_dir": str(tmp_path), "mode": "prove", "verdicts": str(verdicts),
            "images": [image("a"), image("b")],
            "checks": [{"bundle": "b0.tar", "driver": "chunk_import_check.py", "members": ["acme/a:ck-a", "acme/b:ck-b"]}]}
    loads = {"sha256:a", "sha256:b"}

    first = IndexCheck({"0": "ok", "1": "raised"})
    report = prove_and_tag(spec, ["docker", "load"], first, FakeEngine(set(), {}, loads))
    assert first.asked == [["0", "1"]] and sorted(report["tagged"]) == ["acme/a:ck-a"]
    assert len(list(verdicts.glob("*.json"))) == 1  # a's pass; b's failure is not recorded

    # Same images again (e.g. a fresh clone, the engine emptied): only b is checked; a's recorded
    # output is reported as its check's, so a is tagged without a check.
    second = IndexCheck({"1": "raised"})
    report = prove_and_tag(spec, ["docker", "load"], second, FakeEngine(set(), {}, loads))
    assert second.asked == [["1"]] and sorted(report["tagged"]) == ["acme/a:ck-a"]
    assert passed_members(report["checks"][0]["stdout"]) == {"0"}
    assert report["checks"][0]["stdout"].count(MEMBER_MARKER) == 2

    # Only a: no check at all.
    only_a = {**spec, "images": [image("a")], "checks": [{**spec["checks"][0], "members": ["acme/a:ck-a"]}]}
    bundle_tar(tmp_path / "b0.tar", 1)
    third = IndexCheck({})
    report = prove_and_tag(only_a, ["docker", "load"], third, FakeEngine(set(), {}, loads))
    assert third.asked == [] and sorted(report["tagged"]) == ["acme/a:ck-a"]

    # Another check script (a new plugin version): the record does not apply.
    bundle_tar(tmp_path / "b0.tar", 1, check_source=b"print('check v2')\n")
    fourth = IndexCheck({"0": "ok"})
    prove_and_tag(only_a, ["docker", "load"], fourth, FakeEngine(set(), {}, loads))
    assert fourth.asked == [["0"]]


def test_a_record_of_another_image_is_not_taken(tmp_path: Path) -> None:
    record_verdict(str(tmp_path), "checker", "sha256:a", {"exit_code": 0, "stdout": "x", "stderr": ""})
    assert recorded_verdict(str(tmp_path), "checker", "sha256:a") == {"exit_code": 0, "stdout": "x", "stderr": ""}
    assert recorded_verdict(str(tmp_path), "checker", "sha256:b") is None
    assert recorded_verdict(str(tmp_path), "other", "sha256:a") is None
    # A record copied under another image's name is refused (the record names its image).
    (tmp_path / "x").mkdir()
    src = next(tmp_path.glob("*.json"))
    (tmp_path / "x" / Path(verdict_path(str(tmp_path / "x"), "checker", "sha256:b")).name).write_text(src.read_text())
    assert recorded_verdict(str(tmp_path / "x"), "checker", "sha256:b") is None


def test_every_member_recorded_and_no_prover_running_checks_the_first_member_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    bundle_tar(tmp_path / "b0.tar", 3)
    verdicts = tmp_path / "verdicts"
    spec = {"docker": "docker", "lock_dir": str(tmp_path), "mode": "prove", "verdicts": str(verdicts),
            "images": [image("a"), image("b"), image("c")],
            "checks": [{"bundle": "b0.tar", "driver": "chunk_import_check.py", "base_image_id": "sha256:base",
                        "members": ["acme/a:ck-a", "acme/b:ck-b", "acme/c:ck-c"]}]}
    loads = {"sha256:a", "sha256:b", "sha256:c"}
    prove_and_tag(spec, ["docker", "load"], IndexCheck({"0": "ok", "1": "ok", "2": "ok"}), FakeEngine(set(), {}, loads))
    asked_about = []

    def warm(entry: dict) -> bool:
        asked_about.append(entry["base_image_id"])
        return running

    # The prover of the base runs: nothing is checked.
    running = True
    check = IndexCheck({})
    report = prove_and_tag(spec, ["docker", "load"], check, FakeEngine(set(), {}, loads), warm=warm)
    assert check.asked == [] and sorted(report["tagged"]) == ["acme/a:ck-a", "acme/b:ck-b", "acme/c:ck-c"]
    # It does not: the first member is checked (starting the prover), the others come from records.
    running = False
    check = IndexCheck({"0": "ok"})
    report = prove_and_tag(spec, ["docker", "load"], check, FakeEngine(set(), {}, loads), warm=warm)
    assert check.asked == [["0"]] and sorted(report["tagged"]) == ["acme/a:ck-a", "acme/b:ck-b", "acme/c:ck-c"]
    assert asked_about == ["sha256:base", "sha256:base"]
    # With a member to check anyway, the prover is not asked about.
    (next(iter(verdicts.glob("*.json")))).unlink()
    asked_about.clear()
    prove_and_tag(spec, ["docker", "load"], IndexCheck({"0": "ok", "1": "ok", "2": "ok"}), FakeEngine(set(), {}, loads), warm=warm)
    assert asked_about == []
