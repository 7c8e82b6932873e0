"""End to end: the `./pants` wrapper. It runs Pants' native client, which serves a run through a pantsd
that is up for the build root and otherwise execs the Python client (which starts pantsd); it remembers
the Docker engine and the upstream image it found, so that a warm call asks the engine nothing.

One scratch repo and one pantsd serve every test (they run in file order); the last test stops it.
`CHROMADB_LAMBDA_WRAPPER_DEBUG=1` makes the wrapper say which client ran and whether it checked the
engine: "client: native" is printed before the native client starts, "client: python" only when the
Python client runs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from e2e.harness import PantsResult, copy_repo, docker, run_pants, stop_pantsd, wait_for_text

DEBUG = {"CHROMADB_LAMBDA_WRAPPER_DEBUG": "1"}
NATIVE = "[pants wrapper] client: native"
PYTHON = "[pants wrapper] client: python"
ENGINE_REMEMBERED = "[pants wrapper] engine: remembered"
ENGINE_CHECKED = "[pants wrapper] engine: checking"
UPSTREAM = "local/lambda-python:3.11"
# An upstream image name of this test only (a second tag of the shared upstream image).
OWN_UPSTREAM = f"local/wrapper-e2e-{uuid.uuid4().hex[:8]}:3.11"

PROBE_BUILD = """\
python_source(name="sleeper", source="sleeper.py")
python_source(name="stubborn", source="stubborn.py")
python_source(name="exits3", source="exits3.py")
target(name="described", description=env("WRAPPER_PROBE", "unset"))
"""
# Prints, then sleeps until interrupted; a KeyboardInterrupt exits 3 after saying so.
SLEEPER = """\
import sys, time
print("sleeper started", flush=True)
try:
    time.sleep(120)
except KeyboardInterrupt:
    print("sleeper interrupted", flush=True)
    sys.exit(3)
"""
# Ignores Ctrl-C for 15 s, so that the client sees a second one while the run is still going.
STUBBORN = """\
import signal, time
signal.signal(signal.SIGINT, lambda *_: print("stubborn ignores SIGINT", flush=True))
print("stubborn started", flush=True)
for _ in range(30):
    time.sleep(0.5)
print("stubborn done", flush=True)
"""
EXITS3 = "raise SystemExit(3)\n"
# A backend of this test only: it counts the BUILD files pantsd parses, one line each, in
# .pants.d/parse-probe.log (hidden from the file watcher, as all of .pants.d).
PARSE_PROBE = """\
from pathlib import Path

from pants.base.build_environment import get_buildroot
from pants.engine.internals import parser


def rules():
    parse = getattr(parser.Parser.parse, "probed", parser.Parser.parse)

    def counted(self, filepath, *args, **kwargs):
        with open(Path(get_buildroot(), ".pants.d", "parse-probe.log"), "a") as log:
            log.write(filepath + "\\n")
        return parse(self, filepath, *args, **kwargs)

    counted.probed = parse
    parser.Parser.parse = counted
    return []
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory):
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("wrapper"))
    probe = root / "src/wrapper_probe"
    probe.mkdir()
    (probe / "BUILD").write_text(PROBE_BUILD)
    (probe / "sleeper.py").write_text(SLEEPER)
    (probe / "stubborn.py").write_text(STUBBORN)
    (probe / "exits3.py").write_text(EXITS3)
    (root / "pants-plugins/parse_probe").mkdir()
    (root / "pants-plugins/parse_probe/__init__.py").touch()
    (root / "pants-plugins/parse_probe/register.py").write_text(PARSE_PROBE)
    toml = root / "pants.toml"
    assert toml.read_text().count('  "chromadb_lambda",\n') == 1
    toml.write_text(toml.read_text().replace('  "chromadb_lambda",\n', '  "chromadb_lambda",\n  "parse_probe",\n'))
    try:
        yield root
    finally:
        stop_pantsd(root)
        docker("image", "rm", OWN_UPSTREAM, check=False)


def pants(root: Path, *args: str, env: dict[str, str] | None = None) -> PantsResult:
    return run_pants(root, list(args), env={**DEBUG, **(env or {})}, pantsd=True)


def pantsd_pid(root: Path) -> int | None:
    for pid_file in (root / ".pids").glob("*/pantsd/pid"):
        pid = int(pid_file.read_text().strip())
        if Path(f"/proc/{pid}").exists():
            return pid
    return None


def current_value(help_output: str, option: str) -> str:
    """The `current value: ...` line `help` prints under `option`."""
    after = help_output.split(f"\n  {option}=", 1)[1]
    return after.split("current value: ", 1)[1].split("\n", 1)[0]


def start_wrapper(root: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    log = root / f"wrapper-{uuid.uuid4().hex[:6]}.log"
    proc = subprocess.Popen(
        [str(root / "pants"), "--no-dynamic-ui", *args],
        cwd=root,
        env={**os.environ, **DEBUG},
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    return proc, log


def test_python_client_starts_pantsd_then_the_native_client_serves(root: Path) -> None:
    first = pants(root, "--version").assert_success()
    assert first.stdout == "2.17.1\n"
    assert NATIVE in first.stderr and PYTHON in first.stderr  # tried native, no pantsd: Python started it
    pid = pantsd_pid(root)
    assert pid is not None

    second = pants(root, "--version").assert_success()
    assert second.stdout == "2.17.1\n"
    assert NATIVE in second.stderr and PYTHON not in second.stderr
    assert ENGINE_REMEMBERED in second.stderr and ENGINE_CHECKED not in second.stderr

    # Alternating the clients keeps one pantsd: both fingerprint the same options from the same env.
    for env in ({"PANTS_NO_NATIVE_CLIENT": "1"}, {}):
        result = pants(root, "--version", env=env).assert_success()
        assert (PYTHON in result.stderr) == bool(env)
        assert pantsd_pid(root) == pid


@pytest.mark.parametrize(
    "args, env",
    [
        (["--no-pantsd", "--version"], {}),
        (["--version"], {"PANTS_PANTSD": "false"}),
        (["--concurrent", "--version"], {}),
    ],
    ids=["--no-pantsd", "PANTS_PANTSD=false", "--concurrent"],
)
def test_python_client_when_pantsd_is_off(root: Path, args: list[str], env: dict[str, str]) -> None:
    # Only the choice is checked: a run without pantsd builds its own scheduler (~30 s here).
    proc = subprocess.Popen(
        [str(root / "pants"), *args], cwd=root, env={**os.environ, **DEBUG, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        while len(lines) < 20 and not any(line.startswith(PYTHON) for line in lines):
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
    finally:
        proc.kill()
        proc.wait()
    assert any(line.startswith(NATIVE) for line in lines), lines
    assert any(line.startswith(PYTHON) for line in lines), lines


def test_exit_codes_are_the_same_through_both_clients(root: Path) -> None:
    for env in ({}, {"PANTS_NO_NATIVE_CLIENT": "1"}):
        missing = pants(root, "package", "lambdas/nope:nope", env=env)
        assert missing.exit_code == 1
        assert "'lambdas/nope' does not exist on disk" in missing.stderr
        # `run` returns the process' own exit code.
        exits3 = pants(root, "run", "src/wrapper_probe/exits3.py", env=env)
        assert exits3.exit_code == 3, exits3.stderr
        assert (PYTHON in missing.stderr, PYTHON in exits3.stderr) == (bool(env), bool(env))


def test_options_from_flag_env_and_pants_toml_through_the_native_client(root: Path) -> None:
    pid = pantsd_pid(root)
    by_flag = pants(root, "help", "docker", "--docker-default-repository=from-flag/{name}").assert_success()
    by_env = pants(root, "help", "docker", env={"PANTS_DOCKER_DEFAULT_REPOSITORY": "from-env/{name}"}).assert_success()
    for result in (by_flag, by_env):
        assert NATIVE in result.stderr and PYTHON not in result.stderr
    assert current_value(by_flag.stdout, "--docker-default-repository") == "from-flag/{name} (from command-line flag)"
    assert current_value(by_env.stdout, "--docker-default-repository") == (
        "from-env/{name} (from env var PANTS_DOCKER_DEFAULT_REPOSITORY)"
    )
    assert pantsd_pid(root) == pid


def test_a_run_of_equal_inputs_reuses_the_parsed_build_files_and_others_read_theirs(root: Path) -> None:
    # pantsd reuses what an earlier run computed when a run's inputs equal it (pants_compat.py); a
    # BUILD file's env() and a goal's flag are read again whenever they differ.
    pants(root, "--version").assert_success()  # pantsd up (when this test runs alone)
    pid = pantsd_pid(root)
    parsed_log = root / ".pants.d/parse-probe.log"

    def peek(*flags: str, probe: str | None = None) -> tuple[dict, list[str]]:
        parsed_log.unlink(missing_ok=True)
        result = pants(root, "peek", *flags, "src/wrapper_probe:described", env={"WRAPPER_PROBE": probe} if probe else {})
        assert NATIVE in result.assert_success().stderr and PYTHON not in result.stderr
        parsed = parsed_log.read_text().splitlines() if parsed_log.exists() else []
        return json.loads(result.stdout)[0], parsed

    first, _ = peek(probe="one")
    assert first["description"] == "one"
    again, parsed = peek(probe="one")
    assert again["description"] == "one" and parsed == []  # the same inputs: nothing parsed again
    other, parsed = peek(probe="two")
    assert other["description"] == "two" and "src/wrapper_probe/BUILD" in parsed
    unset, _ = peek()
    assert unset["description"] == "unset"
    with_defaults, _ = peek()
    without_defaults, parsed = peek("--exclude-defaults")
    assert "tags" in with_defaults and "tags" not in without_defaults
    assert "src/wrapper_probe/BUILD" in parsed  # another flag: the options and BUILD files again
    assert pantsd_pid(root) == pid


def test_editing_pants_toml_restarts_pantsd_and_the_native_client_sees_it(root: Path) -> None:
    old_pid = pantsd_pid(root)
    assert old_pid is not None
    docker("tag", UPSTREAM, OWN_UPSTREAM)
    toml = root / "pants.toml"
    text = toml.read_text()
    assert text.count("[docker]\n") == 1 and f"LAMBDA_PYTHON_IMAGE={UPSTREAM}" in text
    text = text.replace("[docker]\n", '[docker]\ndefault_repository = "from-toml/{name}"\n')
    toml.write_text(text.replace(f"LAMBDA_PYTHON_IMAGE={UPSTREAM}", f"LAMBDA_PYTHON_IMAGE={OWN_UPSTREAM}"))

    # pantsd watches pants.toml and exits when it changes.
    deadline = time.time() + 60
    while Path(f"/proc/{old_pid}").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{old_pid}").exists(), "pantsd did not exit after pants.toml changed"

    restart = pants(root, "help", "docker").assert_success()
    assert PYTHON in restart.stderr
    assert ENGINE_CHECKED in restart.stderr  # pants.toml may name another upstream image
    new_pid = pantsd_pid(root)
    assert new_pid not in (None, old_pid)

    native = pants(root, "help", "docker").assert_success()
    assert NATIVE in native.stderr and PYTHON not in native.stderr
    assert current_value(native.stdout, "--docker-default-repository") == "from-toml/{name} (from pants.toml)"
    assert pantsd_pid(root) == new_pid


def test_ctrl_c_interrupts_the_run_in_pantsd_and_pantsd_stays(root: Path) -> None:
    pid = pantsd_pid(root)
    proc, log = start_wrapper(root, "run", "src/wrapper_probe/sleeper.py")
    wait_for_text(log, "sleeper started", proc)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends; the wrapper is the native client by now
    assert proc.wait(timeout=60) == 1
    output = log.read_text()
    assert "sleeper interrupted" in output and "Interrupted by user." in output
    assert NATIVE in output and PYTHON not in output

    after = pants(root, "--version").assert_success()
    assert PYTHON not in after.stderr and pantsd_pid(root) == pid


def test_a_second_ctrl_c_does_not_run_the_goal_again_with_the_python_client(root: Path) -> None:
    # Pants 2.17's native client execs its fallback on a second Ctrl-C; the wrapper's fallback refuses.
    pid = pantsd_pid(root)
    proc, log = start_wrapper(root, "run", "src/wrapper_probe/stubborn.py")
    wait_for_text(log, "stubborn started", proc)
    time.sleep(1.5)  # the fallback lets a lost run through within 1 s of the start (see python-client.sh)
    proc.send_signal(signal.SIGINT)
    wait_for_text(log, "stubborn ignores SIGINT", proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 75
    output = log.read_text()
    assert "the run through pantsd ended early" in output
    assert output.count("stubborn started") == 1 and PYTHON not in output
    assert pantsd_pid(root) == pid


# Forwards a unix socket to the real engine's: an engine the test can kill -9, which leaves its socket
# file behind with nobody listening.
PROXY = """\
import socket, sys, threading

def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass

server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(16)
print("listening", flush=True)
while True:
    client, _ = server.accept()
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    upstream.connect(sys.argv[2])
    for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
"""


def test_a_stopped_or_other_engine_is_named_before_pants_starts(root: Path) -> None:
    state = root / ".pants.d/chromadb-lambda-wrapper/engine-state.sh"
    assert state.is_file()
    warm = pants(root, "--version").assert_success()
    assert ENGINE_REMEMBERED in warm.stderr

    # Another DOCKER_HOST than the remembered one is asked, and named when it does not answer.
    nothing = f"unix://{root}/nothing-listens-here.sock"
    result = pants(root, "--version", env={"DOCKER_HOST": nothing})
    assert result.exit_code == 1
    assert f"DOCKER_HOST={nothing} does not answer" in result.stderr
    assert NATIVE not in result.stderr and result.stdout == ""

    engine = os.environ.get("DOCKER_HOST", "")
    if not engine.startswith("unix://"):
        pytest.skip(f"the engine is not behind a unix socket here (DOCKER_HOST={engine!r})")
    proxy_path = root / "proxy.sock"
    proxy = subprocess.Popen(
        [sys.executable, "-c", PROXY, str(proxy_path), engine[len("unix://"):]], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proxy.stdout is not None and proxy.stdout.readline() == "listening\n"
        env = {"DOCKER_HOST": f"unix://{proxy_path}"}
        assert ENGINE_CHECKED in pants(root, "--version", env=env).assert_success().stderr
        assert ENGINE_REMEMBERED in pants(root, "--version", env=env).assert_success().stderr
    finally:
        proxy.kill()  # SIGKILL, as a crashed engine: the socket file stays
        proxy.wait()
    assert proxy_path.is_socket()
    stopped = pants(root, "--version", env=env)
    assert stopped.exit_code == 1
    assert f"DOCKER_HOST=unix://{proxy_path} does not answer" in stopped.stderr
    assert NATIVE not in stopped.stderr


def test_a_removed_upstream_image_is_noticed(root: Path, tmp_path: Path) -> None:
    # pants.toml names this test's own tag of the upstream image (see the pants.toml test above).
    assert f"LAMBDA_PYTHON_IMAGE={OWN_UPSTREAM}" in (root / "pants.toml").read_text()
    pants(root, "--version").assert_success()  # the engine of the test run again, not the proxy's
    assert ENGINE_REMEMBERED in pants(root, "--version").assert_success().stderr
    docker("image", "rm", OWN_UPSTREAM)  # only the tag: the shared upstream image keeps the layers
    # A stand-in for mmdebstrap tells that the wrapper went on to rebuild the image, without the minute.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mmdebstrap").write_text("#!/bin/sh\necho stand-in mmdebstrap ran >&2\nexit 1\n")
    (bin_dir / "mmdebstrap").chmod(0o755)
    result = pants(root, "--version", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.exit_code == 1
    assert f"building the upstream image {OWN_UPSTREAM}" in result.stderr
    assert "stand-in mmdebstrap ran" in result.stderr
    assert NATIVE not in result.stderr

    # The same image under the same name again: nothing to rebuild, nothing to ask the engine.
    docker("tag", UPSTREAM, OWN_UPSTREAM)
    back = pants(root, "--version").assert_success()
    assert ENGINE_REMEMBERED in back.stderr and NATIVE in back.stderr and PYTHON not in back.stderr
