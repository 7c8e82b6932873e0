"""Loads one docker-archive holding several assembled Lambda images, under the locks of all their tags:
    chunk_load.py SPEC_JSON -- DOCKER_LOAD_ARGV...   -> prints {key_ref: {"image_id", "made", "error"}}
SPEC_JSON: `docker` (the CLI), `lock_dir`, `images` (each `key_ref`, `refs`, `image_id`: the id the
assembler computed), `mode`. Runs beside engine_lock.py (same folder) and takes the same locks, so
that a `docker build`, a pull or another load of any of these tags waits for it.

`mode` "load" (the default): the archive is loaded when some `key_ref` is missing. Then every
image's refs are read back: a `key_ref` that names another image than computed is that member's
error (the others are fine); its other refs are moved to it, as engine_lock.py does for one image.

`mode` "untagged": the archive carries no tags; it is loaded with no lock (it moves no tag) while the
import check runs, and each image id is read back (`{image_id: {"held": bool}}`). `mode` "tag": after
the check, under the locks, each of `images` (the members that passed) gets its refs, as in "load",
if the engine holds its id; each of `discard` (`key_ref`, `image_id`: the members that failed) is
removed when nothing tags it (an untagged image another run tagged meanwhile is kept).

`mode` "prove": the three steps of the import check in ONE process (one process start, no Pants
round trip between them): the tag-less archive is loaded (as "untagged", in a thread) WHILE each
base's bundle is checked in its prover (prover.py `run_check`, the spec's `checks`: each a prover spec
plus `members`, the key refs of the bundle's members in order); then, under the locks (as "tag"), the
members whose check ran to the verdict `ok` (the one verdict the plugin classifies `passed` whatever
its module mapping) and the members no check covered are tagged. Every other member stays untagged:
the plugin classifies its verdict, and a second "tag" process tags the warnings and removes the
failures. Prints {"checks": [{exit_code, stdout, stderr} per check], "tagged": {key_ref: ...} as
"tag"}, or {"checks": ..., "load_exit": code} when the load failed (nothing tagged).
With `verdicts` (a folder: Pants' named cache `chromadb_lambda_import_checks`), a member whose image
id passed before is not checked again: its recorded output is reported as its check's. A record is
written for each member that passes, named by the image id and the checker (the driver, check.py and
zygote.py, hashed): an image id names the image's every byte (its layers' diff ids, its Env,
WorkingDir, CMD and architecture), so the same checker's verdict on it cannot differ. Only passes are
recorded: a warning or a failure is checked again in every run. When every member of a bundle has a
record but the base's prover is not running, the first member is checked anyway, which starts the
prover (and its zygote) for the edits that follow.

The engine is asked through its API when it listens on a unix socket (engine_api.py), else the CLI.
Standard library only: run with Pants' own interpreter.
"""
from __future__ import annotations

# Only what the start of `prove` needs is imported here: its load is sent to the engine (start_load)
# before engine_api's http.client (~15-20 ms) and the check's modules (tarfile, hashlib, prover.py)
# are imported, so the engine loads meanwhile. The others are imported where they are used.
import json
import os
import socket
import subprocess
import sys
import threading
from typing import Any, Callable, Iterator, Mapping, Sequence

try:  # Run as a script beside engine_lock.py (the process's sandbox).
    from engine_lock import DEFAULT_DOCKER_HOST, EngineLockError, engine_socket, held_locks, image_ids, move_refs
except ImportError:  # Imported by the plugin's tests.
    from chromadb_lambda.scripts.engine_lock import (
        DEFAULT_DOCKER_HOST,
        EngineLockError,
        engine_socket,
        held_locks,
        image_ids,
        move_refs,
    )


def engine_api() -> Any:
    """engine_api.py (beside this script, or the plugin's in its tests), imported on first use."""
    try:
        import engine_api as module
    except ImportError:
        from chromadb_lambda.scripts import engine_api as module
    return module


def start_load(load_argv: Sequence[str], environ: Mapping[str, str], timeout: float = 600.0) -> socket.socket | None:
    """`prove`'s `docker load --input FILE`, sent to the engine's API (`POST /images/load`, the archive
    as its body) first thing: the engine loads while this process imports the rest and starts the
    checks. Its answer is read later on the returned socket (engine_api's EngineApi.load_answer, with
    http.client). None, and the load runs as any other call: no `unix://` DOCKER_HOST, another argv, or
    the engine did not take the request (an error here leaves nothing loaded)."""
    path = engine_socket(environ)
    if path is None or len(load_argv) != 4 or list(load_argv[1:3]) != ["load", "--input"]:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        with open(load_argv[3], "rb") as archive:
            size = os.fstat(archive.fileno()).st_size
            sock.sendall(
                f"POST /images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\n"
                f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode()
            )
            sock.sendfile(archive)
    except OSError:
        sock.close()
        return None
    return sock


def sent_load_runner(sock: socket.socket | None, load_argv: Sequence[str], run: Callable[..., Any]) -> Callable[..., Any]:
    """`run`, except for the one call `load_argv` whose request start_load sent on `sock`: its answer is
    read there. When reading it fails, the load runs again through `run` (loading the same archive
    twice is harmless)."""
    pending = [sock] if sock is not None else []

    def runner(argv: Sequence[str], **kwargs: Any) -> "subprocess.CompletedProcess":
        if pending and list(argv) == list(load_argv):
            import http.client

            api = engine_api()
            try:
                return api.load_done(argv, *api.load_answer(pending.pop()), kwargs)
            except (OSError, http.client.HTTPException) as e:
                print(f"The engine's answer to the load was lost ({e}); loading again.", file=sys.stderr)
        return run(argv, **kwargs)

    return runner


def load_images(spec: dict[str, Any], load_argv: Sequence[str], run=subprocess.run) -> dict[str, Any]:
    docker, images = spec["docker"], spec["images"]
    key_refs = [image["key_ref"] for image in images]
    every_ref = sorted({ref for image in images for ref in [*image["refs"], image["key_ref"]]})
    docker_host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    results: dict[str, Any] = {}
    with held_locks(spec["lock_dir"], docker_host, every_ref):
        before = image_ids(docker, key_refs, run)
        if any(image_id is None for image_id in before.values()):
            code = run(list(load_argv), stdout=sys.stderr).returncode
            if code != 0:
                raise SystemExit(code)
        found = image_ids(docker, key_refs, run)
        for image in images:
            key_ref, expected = image["key_ref"], image["image_id"]
            made = before[key_ref] is None
            if found[key_ref] != expected:
                results[key_ref] = {
                    "image_id": found[key_ref],
                    "made": made,
                    "error": f"the engine reports the image {found[key_ref]} for {key_ref}",
                }
                continue
            refs = list(dict.fromkeys([*image["refs"], key_ref]))
            wrong = move_refs(docker, refs, expected, run)
            error = f"{', '.join(wrong)} no longer point at {expected}" if wrong else None
            results[key_ref] = {"image_id": expected, "made": made, "error": error}
    return results


def load_untagged(spec: dict[str, Any], load_argv: Sequence[str], run=subprocess.run) -> dict[str, Any]:
    """Loads the tag-less archive (no lock: no tag moves) and reads each image id back."""
    code = run(list(load_argv), stdout=sys.stderr).returncode
    if code != 0:
        raise SystemExit(code)
    ids = [image["image_id"] for image in spec["images"]]
    found = image_ids(spec["docker"], ids, run)
    return {image_id: {"held": found[image_id] == image_id} for image_id in ids}


def tag_images(spec: dict[str, Any], run=subprocess.run) -> dict[str, Any]:
    """Under the locks: the passing members' refs moved to their loaded ids; the failing members'
    untagged images removed."""
    docker, images, discard = spec["docker"], spec["images"], spec.get("discard", [])
    every_ref = sorted({ref for image in images for ref in [*image["refs"], image["key_ref"]]} | {d["key_ref"] for d in discard})
    docker_host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    results: dict[str, Any] = {}
    with held_locks(spec["lock_dir"], docker_host, every_ref):
        held = image_ids(docker, [image["image_id"] for image in images], run) if images else {}
        before = image_ids(docker, [image["key_ref"] for image in images], run) if images else {}
        for image in images:
            key_ref, expected = image["key_ref"], image["image_id"]
            if before[key_ref] not in (None, expected):
                # Another run tagged other bytes with this key meanwhile: as in `load_images`.
                results[key_ref] = {"image_id": before[key_ref], "made": False,
                                    "error": f"the engine reports the image {before[key_ref]} for {key_ref}"}
                continue
            if held[expected] != expected:
                results[key_ref] = {"image_id": None, "made": False,
                                    "error": f"the engine no longer holds the loaded image {expected}"}
                continue
            refs = list(dict.fromkeys([*image["refs"], key_ref]))
            wrong = move_refs(docker, refs, expected, run)
            error = f"{', '.join(wrong)} no longer point at {expected}" if wrong else None
            results[key_ref] = {"image_id": expected, "made": before[key_ref] is None, "error": error}
        for entry in discard:
            tags = run([docker, "image", "inspect", "--format", engine_api().TAGS_FORMAT, entry["image_id"]], capture_output=True, text=True)
            if tags.returncode == 0 and json.loads(tags.stdout or "null") in (None, []):
                run([docker, "rmi", entry["image_id"]], capture_output=True, text=True)
    return results


# chunk_import_check.MEMBER_MARKER and import_check_script.MARKER (this script runs without them).
MEMBER_MARKER = "CHROMADB_LAMBDA_CHUNK_MEMBER"
VERDICT_MARKER = "CHROMADB_LAMBDA_IMPORT_CHECK"


def member_entries(driver_stdout: str) -> Iterator[dict]:
    """chunk_import_check.py's member lines, parsed, in order."""
    for line in driver_stdout.splitlines():
        if line.startswith(MEMBER_MARKER + " "):
            yield json.loads(line[len(MEMBER_MARKER) + 1 :])


def text(output: str | bytes | None) -> str:
    """A process output as text (prover.py's runs give bytes; a recorded output is text)."""
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def passed_members(driver_stdout: str) -> set[str]:
    """The members (`name`) of a chunk_import_check.py run whose import exited 0 with the verdict `ok`
    as its last verdict line (import_check_verdict.parse_verdict reads the same line)."""
    passed = set()
    for entry in member_entries(driver_stdout):
        if entry.get("exit_code") != 0:
            continue
        verdicts = [v for v in str(entry.get("stdout", "")).splitlines() if v.startswith(VERDICT_MARKER + " ")]
        if verdicts and json.loads(verdicts[-1][len(VERDICT_MARKER) + 1 :]).get("status") == "ok":
            passed.add(str(entry["name"]))
    return passed


Check = Callable[[dict], "subprocess.CompletedProcess"]


def checker_digest(bundle: bytes, driver: bytes) -> str:
    """What a recorded verdict depends on besides the image: the driver and the check scripts."""
    import hashlib
    import io
    import tarfile

    digest = hashlib.sha256(driver)
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        for name in ("check.py", "zygote.py"):
            member = tar.extractfile(name) if name in tar.getnames() else None
            digest.update(b"\0" + name.encode() + b"\0" + (member.read() if member is not None else b""))
    return digest.hexdigest()


def verdict_path(folder: str, checker: str, image_id: str) -> str:
    import hashlib

    return os.path.join(folder, hashlib.sha256(f"{checker} {image_id}".encode()).hexdigest() + ".json")


def recorded_verdict(folder: str, checker: str, image_id: str) -> dict | None:
    """A member's recorded passing output (exit_code, stdout, stderr), or None."""
    try:
        with open(verdict_path(folder, checker, image_id)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("image_id") != image_id or record.get("checker") != checker:
        return None
    return {k: record[k] for k in ("exit_code", "stdout", "stderr")}


def record_verdict(folder: str, checker: str, image_id: str, output: dict) -> None:
    """Written atomically (a reader sees the whole record or none); a failure to write only costs a
    check in a later run."""
    import tempfile

    path = verdict_path(folder, checker, image_id)
    record = {"image_id": image_id, "checker": checker, **{k: output[k] for k in ("exit_code", "stdout", "stderr")}}
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def member_lines(driver_stdout: str) -> dict[str, dict]:
    """chunk_import_check.py's output per member `name`."""
    return {str(entry.get("name")): entry for entry in member_entries(driver_stdout)}


def without_members(bundle: bytes, names: set[str]) -> bytes:
    """The bundle with `names` left out of its index (their layers stay: the driver reads the index)."""
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(bundle)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isfile() else None
            if info.name == "index.json" and data is not None:
                index = json.loads(data)
                index["members"] = [m for m in index["members"] if str(m["name"]) not in names]
                data = json.dumps(index, sort_keys=True).encode()
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def cached_check(
    entry: dict, image_ids: dict[str, str], folder: str, check: Check, warm: Callable[[dict], bool] | None = None
) -> "subprocess.CompletedProcess":
    """`check(entry)` for the members with no recorded pass; the others' recorded outputs, as one
    driver output (their lines first). Records the members that pass. When every member has a record
    and `warm(entry)` says the base's prover is not running, the first member is checked anyway: that
    starts the prover and its zygote, so that the edit that follows (a fresh clone's first) costs a
    `docker exec`, not a container start."""
    with open(entry["bundle"], "rb") as f:
        bundle = f.read()
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, entry["driver"]), "rb") as f:
        checker = checker_digest(bundle, f.read())
    names = [str(i) for i in range(len(entry["members"]))]
    ids = {name: image_ids[key_ref] for name, key_ref in zip(names, entry["members"])}
    recorded = {name: r for name in names for r in [recorded_verdict(folder, checker, ids[name])] if r is not None}
    if names and len(recorded) == len(names) and warm is not None and not warm(entry):
        del recorded[names[0]]
    lines = "".join(
        f"{MEMBER_MARKER} {json.dumps({**recorded[name], 'name': name}, sort_keys=True)}\n" for name in names if name in recorded
    )
    if len(recorded) == len(names):
        return subprocess.CompletedProcess([], 0, lines, "")
    if recorded:
        trimmed = entry["bundle"] + ".unrecorded.tar"
        with open(trimmed, "wb") as f:
            f.write(without_members(bundle, set(recorded)))
        entry = {**entry, "bundle": trimmed}
    done = check(entry)
    stdout, stderr = text(done.stdout), text(done.stderr)
    outputs = member_lines(stdout)
    for name in passed_members(stdout):
        if name in ids and name not in recorded:
            record_verdict(folder, checker, ids[name], outputs[name])
    return subprocess.CompletedProcess(done.args, done.returncode, lines + stdout, stderr)


def prove_and_tag(
    spec: dict[str, Any], load_argv: Sequence[str], check: Check, run=subprocess.run, load_run=None,
    warm: Callable[[dict], bool] | None = None,
) -> dict[str, Any]:
    """The untagged load in a thread while the checks run, then the tagging of what passed."""
    outcome: dict[str, Any] = {}

    def load() -> None:
        try:
            outcome["loaded"] = load_untagged(spec, load_argv, load_run or run)
        except SystemExit as e:
            outcome["load_exit"] = e.code if isinstance(e.code, int) else 1
        except Exception as e:
            print(f"The load failed: {type(e).__name__}: {e}", file=sys.stderr)
            outcome["load_exit"] = 1

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    checks, passed = [], set()
    folder = spec.get("verdicts")
    image_ids_by_ref = {image["key_ref"]: image["image_id"] for image in spec["images"]}
    try:
        for entry in spec["checks"]:
            done = cached_check(entry, image_ids_by_ref, folder, check, warm) if folder else check(entry)
            stdout, stderr = text(done.stdout), text(done.stderr)
            checks.append({"exit_code": done.returncode, "stdout": stdout, "stderr": stderr})
            names = entry["members"]
            passed |= {names[int(n)] for n in passed_members(stdout) if n.isdigit() and int(n) < len(names)}
    finally:
        thread.join()
    if "load_exit" in outcome:
        return {"checks": checks, "load_exit": outcome["load_exit"]}
    checked = {key_ref for entry in spec["checks"] for key_ref in entry["members"]}
    to_tag = [i for i in spec["images"] if i["key_ref"] in passed or i["key_ref"] not in checked]
    return {"checks": checks, "tagged": tag_images({**spec, "images": to_tag, "discard": []}, run)}


def main(argv: Sequence[str]) -> int:
    spec = json.loads(argv[0])
    load_argv = list(argv[2:]) if len(argv) > 1 and argv[1] == "--" else []
    mode = spec.get("mode", "load")
    sent = start_load(load_argv, os.environ) if mode == "prove" else None
    run = engine_api().api_runner()
    try:
        if mode == "untagged":
            results = load_untagged(spec, load_argv, run)
        elif mode == "prove":
            from prover import prover_running, run_check

            environ = dict(os.environ)
            common = {k: spec[k] for k in ("docker", "lock_dir")}
            results = prove_and_tag(
                spec, load_argv, lambda c: run_check({**common, **c}, environ), run,
                sent_load_runner(sent, load_argv, run),
                warm=lambda c: prover_running({**common, **c}, environ),
            )
        elif mode == "tag":
            results = tag_images(spec, run)
        else:
            results = load_images(spec, load_argv, run)
    except EngineLockError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(json.dumps(results, sort_keys=True))
    # `prove` reports the checks also when its load failed: its exit code is the load's.
    return int(results.get("load_exit", 0)) if mode == "prove" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
