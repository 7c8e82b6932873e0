"""Loads one docker-archive holding several assembled Lambda images, under the locks of all their tags:
    chunk_load.py SPEC_JSON -- DOCKER_LOAD_ARGV...   -> prints {key_ref: {"image_id", "made", "error"}}
SPEC_JSON: `docker` (the CLI), `lock_dir`, `images` (each `key_ref`, `refs`, `image_id`: the id the
assembler computed). Runs beside engine_lock.py (same folder) and takes the same locks, so that a
`docker build`, a pull or another load of any of these tags waits for it.

The archive is loaded when some `key_ref` is missing. Then every image's refs are read back: a
`key_ref` that names another image than computed is that member's error (the others are fine); its
other refs are moved to it, as engine_lock.py does for one image.
Standard library only: run with Pants' own interpreter.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Sequence

try:  # Run as a script beside engine_lock.py (the process's sandbox).
    from engine_lock import DEFAULT_DOCKER_HOST, EngineLockError, held_locks, image_ids, move_refs
except ImportError:  # Imported by the plugin's tests.
    from chromadb_lambda.scripts.engine_lock import (
        DEFAULT_DOCKER_HOST,
        EngineLockError,
        held_locks,
        image_ids,
        move_refs,
    )


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


def main(argv: Sequence[str]) -> int:
    spec = json.loads(argv[0])
    load_argv = list(argv[2:]) if len(argv) > 1 and argv[1] == "--" else []
    try:
        results = load_images(spec, load_argv)
    except EngineLockError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
