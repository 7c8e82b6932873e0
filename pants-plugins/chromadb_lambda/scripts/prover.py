"""Runs chunk_import_check.py (the import check of a chunk) in a prover: a container of the base image
kept running between checks, whose first process runs the checks sent to it over an attach of its
stdin (~0.01 s more than the check), so that a check costs neither a `docker run` (~0.25-0.4 s) nor a
`docker exec` (~0.08-0.1 s: the fallback when the engine refuses the attach). `prover.py SPEC_JSON`,
the bundle file in the working directory; prints the driver's output and exits with its code.

SPEC_JSON: `docker` (the CLI), `lock_dir`, `base_image_id`, `bundle` (file name), `driver` (the
driver's file, beside this one), `task_root`, `idle_seconds`.

Provers per engine and base image: named by the base and a slot (`chromadb-lambda-prover-<protocol>-
<hash>`, then `-1`, `-2`...), labelled `chromadb-lambda.prover=<base image id>`, started on first need
with `docker run -d -i --rm --network none --pull never --user 0 --log-driver none`; its first
process (SERVE_LOOP) exits, and the container with it, once no other process has run in it for
`idle_seconds`. A prover runs one check at a time, under its file lock (engine_lock.py's lock
folder): a check takes the first slot whose lock is free (so concurrent checks of a base, such as two
chunks' of a fresh clone, run side by side, in at most as many provers as checks ever ran at once,
and at most `max_provers()`), else waits for one.
Before each check, under the lock, the prover must be exactly its base again:
  - its writable layer (the overlay2 upper directory, read on this machine) may hold only the
    directories the driver restores (the task root, its parents, /tmp), empty, and no file;
  - the driver refuses to start (DIRTY_EXIT) when a process other than the prover's first one runs.
A prover that fails either is removed and a new one started; when the engine is not a local unix
socket, or its storage is not overlay2 readable here, each check runs in a fresh `docker run`, as
before. A prover that vanished (idle exit, `docker rm -f`, an engine restart) is started again.
Standard library only: run with Pants' own interpreter.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from typing import Any, Sequence

try:  # Run as a script beside engine_lock.py and engine_api.py (the process's sandbox).
    from engine_api import AttachRefused, EngineApi, engine_socket
    from engine_lock import DEFAULT_DOCKER_HOST, first_free_lock
except ImportError:  # Imported by the plugin's tests.
    from chromadb_lambda.scripts.engine_api import AttachRefused, EngineApi, engine_socket
    from chromadb_lambda.scripts.engine_lock import DEFAULT_DOCKER_HOST, first_free_lock

LABEL = "chromadb-lambda.prover"
# chunk_import_check.py's exit code when another process runs in the prover: not a verdict.
DIRTY_EXIT = 4
# The prover's first process: runs the checks sent to its stdin, one at a time, and exits when no other
# process ran in the container for argv[1] seconds. A request is a JSON line {"id", "argv", "size"}
# and `size` bytes of the command's stdin; the command runs as `docker exec` would run it (a child
# with the container's environment, user and working directory); the answer, on stdout, is a JSON
# line {"id", "exit_code", "stdout", "stderr"} (the sizes) and those bytes. A request is read only
# from a client attached to the container (prover.py), so a check costs no `docker exec`.
SERVE_LOOP = """
import json, os, select, subprocess, sys, time
idle, last, buf, eof = float(sys.argv[1]), time.monotonic(), b"", False
workdir = os.getcwd()
out = os.fdopen(1, "wb")
def reap():  # what ended here (a zygote's idle exit): an exited process is not a process left running
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
while True:
    if select.select([] if eof else [0], [], [], 1.0)[0]:
        reap()  # before the driver looks for processes left behind
        chunk = os.read(0, 1 << 20)
        eof, buf = not chunk, buf + chunk
        while b"\\n" in buf:
            line, rest = buf.split(b"\\n", 1)
            try:
                head = json.loads(line)
                size = int(head["size"])
            except Exception:
                buf = rest
                continue
            if len(rest) < size:
                break
            data, buf = rest[:size], rest[size:]
            try:  # in the working directory `docker exec` gives (the image's, which a check may remove)
                done = subprocess.run(head["argv"], input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      cwd=workdir if os.path.isdir(workdir) else "/")
                code, stdout, stderr = done.returncode, done.stdout, done.stderr
            except Exception as e:
                code, stdout, stderr = 127, b"", ("the prover could not run %r: %s" % (head["argv"][:1], e)).encode()
            code = code if code >= 0 else 128 - code
            reply = {"id": head.get("id"), "exit_code": code, "stdout": len(stdout), "stderr": len(stderr)}
            out.write(json.dumps(reply).encode() + b"\\n" + stdout + stderr)
            out.flush()
            last = time.monotonic()
    reap()
    if any(p.isdigit() and p != "1" for p in os.listdir("/proc")):
        last = time.monotonic()
    elif time.monotonic() - last > idle:
        break
"""


# The protocol of a prover: `z2`, a first process that runs the checks sent to its stdin (SERVE_LOOP)
# and a driver that keeps a zygote (zygote.py) beside it (`z1`: the same driver, each check a `docker
# exec`). A driver of another protocol counts the zygote as a process left behind, so each protocol
# has its provers of its own (checkouts of different versions on one engine do not replace each
# other's provers).
PROTOCOL = "z2"
# Provers of one base at most (each an idle container with a warm interpreter of the base).
MAX_PROVERS = 4


def prover_name(base_image_id: str, slot: int = 0) -> str:
    """One name per base image, driver protocol and slot: a container name is unique within its engine,
    so runs that address the same engine in different ways (socket paths, links) still share provers."""
    name = f"chromadb-lambda-prover-{PROTOCOL}-" + hashlib.sha256(base_image_id.encode()).hexdigest()[:16]
    return f"{name}-{slot}" if slot else name


def max_provers(cpus: int | None = None) -> int:
    """Provers of one base at most: one per CPU (a check is CPU-bound), up to MAX_PROVERS."""
    return max(1, min(MAX_PROVERS, cpus if cpus is not None else os.cpu_count() or 1))


def allowed_dirs(task_root: str) -> set[str]:
    """The writable layer's directories a clean prover may hold (relative): those the driver restores."""
    parts = task_root.strip("/").split("/")
    return {"/".join(parts[:i]) for i in range(1, len(parts) + 1)} | {"tmp"}


def upper_problem(upper: str, task_root: str) -> str | None:
    """Why the prover's writable layer is not its base again, or None."""
    allowed = allowed_dirs(task_root)
    if not os.path.isdir(upper):
        return f"its writable layer {upper} cannot be read here"
    for root, dirs, files in os.walk(upper):
        for name in dirs + files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, upper)
            if relative not in allowed or os.path.islink(path) or not os.path.isdir(path):
                return f"it holds {relative!r}"
    return None


class Prover:
    def __init__(self, spec: dict[str, Any], api: EngineApi, run=subprocess.run, name: str | None = None) -> None:
        self.spec, self.api, self.run = spec, api, run
        self.docker = spec["docker"]
        self.name = name or prover_name(spec["base_image_id"])

    def upper(self) -> str | None:
        """The running prover's writable layer, or None when there is no running prover of the base."""
        status, body = self.api.request("GET", f"/containers/{self.name}/json")
        if status == 404:
            return None
        if status != 200:
            raise OSError(f"GET /containers/{self.name}/json: HTTP {status}")
        info = json.loads(body)
        if not (info.get("State") or {}).get("Running") or info.get("Image") != self.spec["base_image_id"]:
            self.remove()
            return None
        graph = info.get("GraphDriver") or {}
        return (graph.get("Data") or {}).get("UpperDir") if graph.get("Name") == "overlay2" else ""

    def remove(self) -> None:
        self.run([self.docker, "rm", "-f", self.name], capture_output=True)

    def start(self) -> None:
        argv = [
            self.docker, "run", "-d", "-i", "--rm", "--name", self.name, "--label", f"{LABEL}={self.spec['base_image_id']}",
            "--network", "none", "--pull", "never", "--user", "0", "--log-driver", "none", "--entrypoint", "python3",
            self.spec["base_image_id"], "-B", "-c", SERVE_LOOP, str(self.spec["idle_seconds"]),
        ]
        started = self.run(argv, capture_output=True)
        if started.returncode != 0:
            self.remove()  # a prover of that name that was exiting: once more
            started = self.run(argv, capture_output=True)
        if started.returncode != 0:
            raise OSError(started.stderr.decode(errors="replace").strip())

    def ready(self) -> bool:
        """A running prover whose writable layer is clean (started or restarted as needed); False when
        this engine's provers cannot be verified here (use a fresh container)."""
        for _ in range(3):  # at most: replace a dirty prover, then start one
            upper = self.upper()
            if upper is None:
                self.start()
                continue
            if not upper:
                self.remove()
                return False
            problem = upper_problem(upper, self.spec["task_root"])
            if problem is None:
                return True
            print(f"Replacing the prover {self.name}: {problem}.", file=sys.stderr)
            self.remove()
        return False

    def check(self, driver: str, bundle: bytes) -> subprocess.CompletedProcess:
        """The driver run in the prover: sent to its first process (SERVE_LOOP) over an attach, or by
        `docker exec` when the engine refuses the attach. Raises CheckLost when the attach broke after
        the request was sent (the prover may still be running it)."""
        argv = ["python3", "-B", "-c", driver]
        request_id = os.urandom(8).hex()
        request = json.dumps({"id": request_id, "argv": argv, "size": len(bundle)}).encode() + b"\n" + bundle
        try:
            return self.api.attach(self.name, request, lambda out: answer(out, request_id, argv))
        except AttachRefused:
            pass
        except (OSError, ValueError, KeyError) as e:  # broken, or not SERVE_LOOP's answers
            raise CheckLost(str(e)) from e
        return self.run([self.docker, "exec", "-i", "--user", "0", self.name, *argv], input=bundle, capture_output=True)


class CheckLost(OSError):
    """The attach to a prover broke after the check was sent to it."""


def answer(out: bytes, request_id: str, argv: Sequence[str]) -> subprocess.CompletedProcess | None:
    """SERVE_LOOP's answer to `request_id` in its stdout so far (answers to other requests, such as one
    whose client was killed, are skipped), or None until it is complete."""
    while b"\n" in out:
        line, rest = out.split(b"\n", 1)
        head = json.loads(line)
        sizes = int(head["stdout"]), int(head["stderr"])
        if len(rest) < sum(sizes):
            return None
        if head.get("id") == request_id:
            stdout, stderr = rest[: sizes[0]], rest[sizes[0] : sum(sizes)]
            return subprocess.CompletedProcess(list(argv), int(head["exit_code"]), stdout, stderr)
        out = rest[sum(sizes) :]
    return None


def prover_running(spec: dict[str, Any], environ: dict[str, str]) -> bool:
    """Whether the base's first prover runs now (a check would find it, and its zygote, warm). True also when
    this engine's checks use no prover (not a unix socket) or the engine cannot be asked: nothing to warm."""
    socket_path = engine_socket(environ)
    if socket_path is None:
        return True
    try:
        status, body = EngineApi(socket_path).request("GET", f"/containers/{prover_name(spec['base_image_id'])}/json")
    except OSError:
        return True
    if status != 200:
        return False
    info = json.loads(body)
    return bool((info.get("State") or {}).get("Running")) and info.get("Image") == spec["base_image_id"]


def fresh_check(spec: dict[str, Any], driver: str, bundle: bytes, run=subprocess.run) -> subprocess.CompletedProcess:
    argv = [
        spec["docker"], "run", "-i", "--rm", "--pull", "never", "--network", "none", "--user", "0",
        "--entrypoint", "python3", spec["base_image_id"], "-B", "-c", driver,
    ]
    return run(argv, input=bundle, capture_output=True)


def prove(spec: dict[str, Any], driver: str, bundle: bytes, environ: dict[str, str], run=subprocess.run) -> subprocess.CompletedProcess:
    socket_path = engine_socket(environ)
    if socket_path is None:
        return fresh_check(spec, driver, bundle, run)
    docker_host = environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    names = [prover_name(spec["base_image_id"], slot) for slot in range(max_provers())]
    with first_free_lock(spec["lock_dir"], docker_host, names, os.getpid()) as name:
        prover = Prover(spec, EngineApi(socket_path), run, name)
        for _ in range(2):
            if not prover.ready():
                return fresh_check(spec, driver, bundle, run)
            try:
                done = prover.check(driver, bundle)
            except CheckLost as e:
                print(f"The import check's prover {prover.name} stopped answering ({e}); replacing it.", file=sys.stderr)
                prover.remove()
                continue
            if done.returncode == DIRTY_EXIT:
                sys.stderr.write(done.stderr.decode(errors="replace"))
                prover.remove()
                continue
            if done.returncode not in (0, 3) and prover.upper() is None:
                continue  # the prover went away during the check (its idle exit, a removal): again
            return done
        return fresh_check(spec, driver, bundle, run)


def run_check(spec: dict[str, Any], environ: dict[str, str]) -> subprocess.CompletedProcess:
    """The check of `spec["bundle"]` (a file) in the base's prover, or in a fresh container when the
    prover fails; the driver's file is beside this one (chunk_load.py's `prove` mode calls this too)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), spec["driver"])) as f:
        driver = f.read()
    with open(spec["bundle"], "rb") as f:
        bundle = f.read()
    try:
        return prove(spec, driver, bundle, environ)
    except OSError as e:
        print(f"The import check's prover failed ({e}); checking in a fresh container.", file=sys.stderr)
        return fresh_check(spec, driver, bundle)


def main(argv: Sequence[str]) -> int:
    done = run_check(json.loads(argv[0]), dict(os.environ))
    sys.stdout.buffer.write(done.stdout)
    sys.stderr.buffer.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
