"""prover.py: when a prover is reused, replaced or bypassed, against a fake engine and `docker`."""
from __future__ import annotations

import fcntl
import json
import os
import sys
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chromadb_lambda.scripts import prover
from chromadb_lambda.scripts.engine_api import AttachRefused
from chromadb_lambda.scripts.engine_lock import lock_name
from chromadb_lambda.scripts.prover import DIRTY_EXIT, allowed_dirs, prove, prover_name, upper_problem

BASE = "sha256:base"


def test_the_name_is_per_base_image() -> None:
    # sha256("sha256:base")[:16], computed by hand with `printf sha256:base | sha256sum`.
    assert prover_name(BASE) == "chromadb-lambda-prover-z2-1cdca7b6d1204036"
    assert prover_name(BASE) != prover_name("sha256:other")
    assert prover_name(BASE, 0) == prover_name(BASE)
    assert prover_name(BASE, 1) == "chromadb-lambda-prover-z2-1cdca7b6d1204036-1"


def test_one_prover_per_cpu_up_to_the_maximum() -> None:
    assert [prover.max_provers(cpus) for cpus in (1, 2, 4, 64)] == [1, 2, 4, 4]


def test_a_clean_writable_layer_holds_only_the_restored_directories(tmp_path: Path) -> None:
    assert allowed_dirs("/var/task") == {"var", "var/task", "tmp"}
    for d in ("tmp", "var/task"):
        (tmp_path / d).mkdir(parents=True)
    assert upper_problem(str(tmp_path), "/var/task") is None
    (tmp_path / "tmp" / "left-by-an-import").write_text("x")
    assert upper_problem(str(tmp_path), "/var/task") == "it holds 'tmp/left-by-an-import'"
    (tmp_path / "tmp" / "left-by-an-import").unlink()
    (tmp_path / "var" / "task" / "handler.py").write_text("x")
    assert upper_problem(str(tmp_path), "/var/task") == "it holds 'var/task/handler.py'"
    (tmp_path / "var" / "task" / "handler.py").unlink()
    (tmp_path / "opt").mkdir()
    assert upper_problem(str(tmp_path), "/var/task") == "it holds 'opt'"
    assert upper_problem(str(tmp_path / "absent"), "/var/task").endswith("cannot be read here")


class FakeDocker:
    """The engine's containers (name -> upper dir) behind a fake API and a fake `docker` CLI."""

    def __init__(self, tmp_path: Path, exec_codes: list[int], attach: str = "ok") -> None:
        self.tmp_path, self.exec_codes, self.attach_mode = tmp_path, list(exec_codes), attach
        self.containers: dict[str, str] = {}
        self.commands: list[str] = []

    def attach(self, name: str, payload: bytes, answered: Any) -> Any:
        """The prover's first process (SERVE_LOOP's protocol): an answer to an earlier request whose
        client went away first, then the answer to this one."""
        if self.attach_mode == "refused" or name not in self.containers:
            raise AttachRefused("HTTP/1.1 404 Not Found")
        self.commands.append("attach")
        head = json.loads(payload.split(b"\n", 1)[0])
        if self.attach_mode == "lost":
            raise OSError("the attach ended before its answer")
        if self.attach_mode == "garbage":  # something other than SERVE_LOOP wrote to its stdout
            return answered(b"not an answer\n")
        code = self.exec_codes.pop(0)
        stale = json.dumps({"id": "earlier", "exit_code": 9, "stdout": 5, "stderr": 0}).encode() + b"\nstale"
        out = f"exec {code}".encode()
        mine = json.dumps({"id": head["id"], "exit_code": code, "stdout": len(out), "stderr": 0}).encode() + b"\n" + out
        stream = stale + mine
        for end in range(len(stream) + 1):  # the answer is only taken once complete
            done = answered(stream[:end])
            if done is not None:
                assert end == len(stream)
                return done
        raise AssertionError("no answer")

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        name = path.split("/")[2]
        if name not in self.containers:
            return 404, b"{}"
        info = {"State": {"Running": True}, "Image": BASE,
                "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": self.containers[name]}}}
        return 200, json.dumps(info).encode()

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        self.commands.append(argv[1])
        if argv[1] == "run" and "-d" in argv:
            name = argv[argv.index("--name") + 1]
            upper = self.tmp_path / f"upper{len(self.commands)}"
            (upper / "tmp").mkdir(parents=True)
            self.containers[name] = str(upper)
            return subprocess.CompletedProcess(argv, 0, b"id\n", b"")
        if argv[1] == "rm":
            self.containers.pop(argv[-1], None)
            return subprocess.CompletedProcess(argv, 0, b"", b"")
        if argv[1] == "exec":
            code = self.exec_codes.pop(0)
            return subprocess.CompletedProcess(argv, code, f"exec {code}".encode(), b"")
        if argv[1] == "run":
            return subprocess.CompletedProcess(argv, 0, b"fresh", b"")
        raise AssertionError(argv)


@pytest.fixture
def spec(tmp_path: Path) -> dict[str, Any]:
    return {"docker": "docker", "lock_dir": str(tmp_path / "locks"), "base_image_id": BASE, "bundle": "b.tar",
            "driver": "chunk_import_check.py", "task_root": "/var/task", "idle_seconds": 900}


def run_prove(spec: dict[str, Any], fake: FakeDocker, monkeypatch: pytest.MonkeyPatch, environ=None):
    monkeypatch.setattr(prover, "EngineApi", lambda path: fake)
    return prove(spec, "driver", b"bundle", environ or {"DOCKER_HOST": "unix:///e.sock"}, fake)


def test_started_on_first_need_then_reused(spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDocker(tmp_path, [0, 0])
    assert run_prove(spec, fake, monkeypatch).stdout == b"exec 0"
    assert run_prove(spec, fake, monkeypatch).stdout == b"exec 0"
    assert fake.commands == ["run", "attach", "attach"]


def test_a_prover_holding_a_file_is_replaced_before_the_check(spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDocker(tmp_path, [0, 0])
    run_prove(spec, fake, monkeypatch)
    [upper] = fake.containers.values()
    (Path(upper) / "tmp" / "cache.db").write_text("left by an import")
    run_prove(spec, fake, monkeypatch)
    assert fake.commands == ["run", "attach", "rm", "run", "attach"]


def test_a_prover_killed_meanwhile_is_started_again(spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDocker(tmp_path, [0, 0])
    run_prove(spec, fake, monkeypatch)
    fake.containers.clear()
    assert run_prove(spec, fake, monkeypatch).returncode == 0
    assert fake.commands == ["run", "attach", "run", "attach"]


def test_a_process_left_running_in_the_prover_replaces_it(spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDocker(tmp_path, [DIRTY_EXIT, 0])
    assert run_prove(spec, fake, monkeypatch).stdout == b"exec 0"
    assert fake.commands == ["run", "attach", "rm", "run", "attach"]


def test_a_failing_check_is_the_driver_result_not_a_retry(spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDocker(tmp_path, [1])
    assert run_prove(spec, fake, monkeypatch).returncode == 1
    assert fake.commands == ["run", "attach"]


def test_an_engine_not_on_a_local_socket_gets_a_fresh_container(spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDocker(tmp_path, [])
    assert run_prove(spec, fake, monkeypatch, {"DOCKER_HOST": "tcp://10.0.0.1:2375"}).stdout == b"fresh"
    assert fake.commands == ["run"]


def test_a_check_while_another_holds_the_first_prover_runs_in_the_second(
    spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prover, "max_provers", lambda: 2)
    fake = FakeDocker(tmp_path, [0, 0])
    run_prove(spec, fake, monkeypatch)
    assert list(fake.containers) == [prover_name(BASE)]
    (tmp_path / "locks").mkdir(exist_ok=True)
    fd = os.open(tmp_path / "locks" / lock_name("unix:///e.sock", prover_name(BASE)), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another check, in another process, runs in it
    try:
        assert run_prove(spec, fake, monkeypatch).stdout == b"exec 0"
    finally:
        os.close(fd)
    assert list(fake.containers) == [prover_name(BASE), prover_name(BASE, 1)]
    assert fake.commands == ["run", "attach", "run", "attach"]


def test_an_engine_refusing_the_attach_gets_a_docker_exec(spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDocker(tmp_path, [0], attach="refused")
    assert run_prove(spec, fake, monkeypatch).stdout == b"exec 0"
    assert fake.commands == ["run", "exec"]


# "lost": the attach broke after the request was written; "garbage": an answer that is not SERVE_LOOP's
# (unparsable, or without its fields, e.g. written to the first process's stdout by something else).
@pytest.mark.parametrize("attach", ["lost", "garbage"])
def test_a_lost_check_replaces_the_prover_then_falls_back(
    attach: str, spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The prover may still run the lost request: it is removed, never given a second one meanwhile.
    fake = FakeDocker(tmp_path, [], attach=attach)
    assert run_prove(spec, fake, monkeypatch).stdout == b"fresh"
    assert fake.commands == ["run", "attach", "rm", "run", "attach", "rm", "run"]


def test_the_first_process_serves_requests_in_order_in_its_working_directory(tmp_path: Path) -> None:
    # SERVE_LOOP run here as the prover runs it (python3 -B -c), its stdin and stdout pipes.
    workdir = tmp_path / "task"
    workdir.mkdir()
    server = subprocess.Popen([sys.executable, "-B", "-c", prover.SERVE_LOOP, "60"], cwd=workdir,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        requests = [
            ("a", ["sh", "-c", "cat; echo to-stderr >&2; pwd; exit 3"], b"the bundle "),
            ("b", ["sh", "-c", "rmdir \"$PWD\"; kill -9 $$"], b""),
            ("c", ["sh", "-c", "pwd"], b""),
        ]
        for request_id, argv, data in requests:
            server.stdin.write(json.dumps({"id": request_id, "argv": argv, "size": len(data)}).encode() + b"\n" + data)
        server.stdin.flush()
        out, answers = b"", {}
        for request_id, argv, _ in requests:
            while (done := prover.answer(out, request_id, argv)) is None:
                out += os.read(server.stdout.fileno(), 65536)
            answers[request_id] = done
    finally:
        server.kill()
        server.wait()
    assert (answers["a"].returncode, answers["a"].stdout, answers["a"].stderr) == (3, f"the bundle {workdir}\n".encode(), b"to-stderr\n")
    assert answers["b"].returncode == 128 + 9  # killed by a signal: as `docker exec` reports it
    assert (answers["c"].returncode, answers["c"].stdout) == (0, b"/\n")  # its working directory removed

