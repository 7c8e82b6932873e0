"""Makes an image (a `docker build` or a pull) under a lock per engine and tag, or adopts the one
another run made meanwhile. Every process of the plugin that changes the engine's tags runs it:

    engine_lock.py SPEC_JSON [-- MAKE_ARGV...]   -> prints {"image_id", "made", "output"} on stdout

SPEC_JSON: `docker` (the CLI), `lock_dir`, `key_ref` (the content-key tag), `refs` (every tag the image
must carry, `key_ref` included), `make` ("build": MAKE_ARGV is a `docker build --iidfile IIDFILE`;
"pull": MAKE_ARGV prints the registry client's pull JSON, copied to `output`; "load": MAKE_ARGV is a
`docker load` of an archive whose tags include `key_ref`), `iidfile`.

Two clones packaging the same content at once on one engine would each build it (BuildKit gives each
build its own image id: timestamps) and each tag it, leaving the first clone's image with no tag. Here
the locks of every ref (files named by DOCKER_HOST and ref, taken in sorted order, so two runs never
wait on each other in a cycle) are held while the script asks the engine for `key_ref`: if an image
holds it, that image is adopted and only the refs that point elsewhere are moved; else MAKE_ARGV runs.
Before the locks are released, every ref is read back: the image reported is the one they point at.

Standard library only: run with Pants' own interpreter.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
from typing import Any, Callable, Iterator, Mapping, Sequence

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def engine_socket(environ: Mapping[str, str]) -> str | None:
    """The socket of a `unix://` DOCKER_HOST, which may be asked directly: the docker CLI talks to the
    engine DOCKER_HOST names, whatever its context. None (ask through the CLI): a tcp or ssh host, or no
    DOCKER_HOST, where the CLI's current context (in its config) decides the engine."""
    host = environ.get("DOCKER_HOST", "")
    return host[len("unix://") :] if host.startswith("unix://") and len(host) > len("unix://") else None


class EngineLockError(Exception):
    """The engine did not answer, or a tag does not point where it must: the message says what."""


def lock_name(docker_host: str, ref: str) -> str:
    return hashlib.sha256(f"{docker_host}\n{ref}".encode()).hexdigest()[:40] + ".lock"


def _lock_file(lock_dir: str, docker_host: str, ref: str) -> tuple[str, int]:
    """The lock file of `ref` on the engine at `docker_host`, opened (the folder made as needed)."""
    if not os.path.isdir(lock_dir):
        os.makedirs(lock_dir, exist_ok=True)
        os.chmod(lock_dir, 0o1777)
    path = os.path.join(lock_dir, lock_name(docker_host, ref))
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
    if os.fstat(fd).st_uid == os.getuid():
        os.fchmod(fd, 0o666)
    return path, fd


def _lock_error(e: OSError, lock_dir: str) -> EngineLockError:
    return EngineLockError(
        f"Cannot take the lock {e.filename or lock_dir} for the engine's tags ({e.strerror}): "
        f"make {lock_dir} writable for this user (it is shared by every run on this machine)."
    )


@contextlib.contextmanager
def held_locks(lock_dir: str, docker_host: str, refs: Sequence[str]) -> Iterator[None]:
    """Exclusive `flock`s, released when the process ends, even killed.

    The folder is shared by every user of the machine (one engine may serve several), so it is made
    like /tmp (sticky, writable by all) and the lock files writable by all.
    """
    fds = []
    try:
        try:
            for ref in sorted(set(refs)):
                path, fd = _lock_file(lock_dir, docker_host, ref)
                fds.append(fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    print(f"Waiting for another run that holds {ref} on this engine ({path}).", file=sys.stderr)
                    fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            raise _lock_error(e, lock_dir) from e
        yield
    finally:
        for fd in reversed(fds):
            os.close(fd)


@contextlib.contextmanager
def first_free_lock(lock_dir: str, docker_host: str, refs: Sequence[str], wait_for: int = 0) -> Iterator[str]:
    """Holds the lock of the first of `refs` that no other process holds, and yields that ref; when
    every one is held, waits for `refs[wait_for % len(refs)]`. One lock at a time: never a deadlock."""
    fd = -1
    try:
        try:
            for ref in refs:
                _, fd = _lock_file(lock_dir, docker_host, ref)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    os.close(fd)
                    fd = -1
            else:
                ref = refs[wait_for % len(refs)]
                _, fd = _lock_file(lock_dir, docker_host, ref)
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            raise _lock_error(e, lock_dir) from e
        yield ref
    finally:
        if fd >= 0:
            os.close(fd)


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def image_ids(docker: str, refs: Sequence[str], run: Runner = subprocess.run) -> dict[str, str | None]:
    """The image id each ref points at now (None: no such image), from `docker image inspect`."""
    result = run([docker, "image", "inspect", "--format", "{{.Id}}", *refs], capture_output=True, text=True)
    lines = result.stdout.split()
    if result.returncode == 0 and len(lines) == len(refs):
        return dict(zip(refs, lines))
    if len(refs) > 1:
        # Some ref is missing: the output no longer lines up with the refs, ask one by one.
        found: dict[str, str | None] = {}
        for ref in refs:
            found.update(image_ids(docker, [ref], run))
        return found
    if "No such image" in result.stderr or "No such object" in result.stderr:
        return {refs[0]: None}
    raise EngineLockError(f"`docker image inspect {refs[0]}` failed: {result.stderr.strip()}")


def mismatched_refs(found: dict[str, str | None], image_id: str) -> list[str]:
    return [ref for ref, found_id in found.items() if found_id != image_id]


def move_refs(docker: str, refs: Sequence[str], image_id: str, run: Runner = subprocess.run) -> list[str]:
    """Tags `image_id` with each of `refs` that points elsewhere; returns the refs that still do not
    point at it when read back (another program moved or removed them meanwhile)."""
    for ref in mismatched_refs(image_ids(docker, refs, run), image_id):
        tagged = run([docker, "tag", image_id, ref], capture_output=True, text=True)
        if tagged.returncode != 0:
            raise EngineLockError(f"`docker tag {image_id} {ref}` failed: {tagged.stderr.strip()}")
    return mismatched_refs(image_ids(docker, refs, run), image_id)


def ensure_image(spec: dict[str, Any], make_argv: Sequence[str], run: Runner = subprocess.run) -> dict[str, Any]:
    """Under the locks of `spec`'s refs: adopt the image holding `key_ref`, or make it; tag; verify."""
    docker, key_ref = spec["docker"], spec["key_ref"]
    refs = list(dict.fromkeys([*spec["refs"], key_ref]))
    docker_host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    with held_locks(spec["lock_dir"], docker_host, refs):
        image_id = image_ids(docker, [key_ref], run)[key_ref]
        made, output = False, None
        if image_id is None:
            if not make_argv:
                return {"image_id": None, "made": False, "output": None}
            if spec["make"] == "build":
                # The build's own output goes to stderr: stdout carries only this script's result.
                code = run(list(make_argv), stdout=sys.stderr).returncode
                if code != 0:
                    raise SystemExit(code)
                with open(spec["iidfile"]) as f:
                    image_id = f.read().strip()
            elif spec["make"] == "load":
                code = run(list(make_argv), stdout=sys.stderr).returncode
                if code != 0:
                    raise SystemExit(code)
                image_id = image_ids(docker, [key_ref], run)[key_ref]
                if image_id is None:
                    raise EngineLockError(f"`docker load` succeeded, but the engine has no {key_ref}: the archive does not tag it.")
            else:
                pulled = run(list(make_argv), stdout=subprocess.PIPE, text=True)
                if pulled.returncode != 0:
                    sys.stderr.write(pulled.stdout or "")
                    raise SystemExit(pulled.returncode)
                output = json.loads(pulled.stdout)
                image_id = (output.get("pulled") or {}).get("image_id")
                if not image_id:
                    return {"image_id": None, "made": False, "output": output}
            made = True
        wrong = move_refs(docker, refs, image_id, run)
        if wrong:
            raise EngineLockError(
                f"{', '.join(wrong)} no longer point at {image_id}: a program other than Pants moved or "
                "removed them while this run held their lock. Run Pants again."
            )
    return {"image_id": image_id, "made": made, "output": output}


def main(argv: Sequence[str]) -> int:
    spec = json.loads(argv[0])
    make_argv = list(argv[2:]) if len(argv) > 1 and argv[1] == "--" else []
    try:
        result = ensure_image(spec, make_argv)
    except EngineLockError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
