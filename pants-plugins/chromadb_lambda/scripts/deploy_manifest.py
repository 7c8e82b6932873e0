"""The deploy manifest: what `pants publish` published where, merged run after run, and the report
of one push (`deploy_manifest.py report ...`, also `registry_client.py report ...`).

Run by `pants publish` with `python -c` in the workspace (see goals/publish.py): it imports no
sibling script, standard library only.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any, Iterator

MANIFEST_VERSION = 2


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def merge_deploy_manifest(
    previous: dict | None,
    session: str,
    address: str,
    result: dict,
    existing: frozenset[str] | None,
    now: str,
) -> dict:
    """The deploy manifest after the push of `address` gave `result` (the `push` command's output).

    A registry the push reached gets a new record; a registry it failed keeps its previous record
    (the last image published there) and gets the failure in the entry's `errors`, cleared by the
    next success. Entries of other targets are kept, except those not in `existing` (all the
    `chromadb_lambda` targets of the repo; None: keep every entry). A target that never published
    anywhere has its failures under the top-level `failures`, so every `images` entry has an `image`.
    """
    images = dict((previous or {}).get("images") or {})
    failures = dict((previous or {}).get("failures") or {})
    if existing is not None:
        images = {a: e for a, e in images.items() if a in existing}
        failures = {a: f for a, f in failures.items() if a in existing}
    entry = dict(images.get(address) or {})
    records = dict(entry.get("registries") or {})
    errors = {**(entry.get("errors") or {}), **failures.pop(address, {})}
    for pushed in result["registries"]:
        records[pushed["address"]] = {
            **{k: pushed[k] for k in ("image", "digest", "tags", "status", "media_type")},
            "content_key": result["content_key"],
            "session": session,
            "recorded_at": now,
        }
        errors.pop(pushed["address"], None)
    for error in result["errors"]:
        errors[error["address"]] = {"error": error["error"], "session": session, "at": now}
    if result["registries"]:
        entry.update(
            image=result["registries"][0]["image"],
            content_key=result["content_key"],
            content_key_tag=result["key_tag"],
            session=session,
            recorded_at=now,
        )
    entry.pop("errors", None)
    if records:
        images[address] = {**entry, "registries": records, **({"errors": errors} if errors else {})}
    elif errors:
        failures[address] = errors
    manifest: dict[str, Any] = {"version": MANIFEST_VERSION, "session": session, "images": images}
    if failures:
        manifest["failures"] = failures
    return manifest


@contextlib.contextmanager
def manifest_lock(manifest_path: str) -> Iterator[None]:
    """Serializes read-merge-write of one manifest across processes (two `pants publish` at once)."""
    import fcntl

    fd = os.open(f"{manifest_path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_manifest(manifest_path: str) -> dict | None:
    """The manifest, or None if there is none; an unreadable one is moved aside, never lost."""
    try:
        with open(manifest_path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        manifest = json.loads(text)
        if isinstance(manifest, dict) and isinstance(manifest.get("images", {}), dict):
            return manifest
    except ValueError:
        pass
    aside = f"{manifest_path}.unreadable"
    os.replace(manifest_path, aside)
    print(f"The deploy manifest {manifest_path} was not a manifest (JSON with an `images` object): moved to {aside}.", file=sys.stderr)
    return None


def write_manifest(manifest_path: str, manifest: dict) -> None:
    tmp = f"{manifest_path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, manifest_path)  # readers see the old or the new manifest, never half of one


def report(manifest_path: str, session: str, address: str, result: dict, existing: frozenset[str] | None) -> int:
    ok = result["registries"]
    for r in ok:
        what = "already published, nothing pushed" if r["status"] == "already published" else (
            f"pushed {r['pushed']} tag{'s' if r['pushed'] != 1 else ''}"
        )
        if r.get("blobs"):
            what += ", by the registry API: {mounted} base layers mounted, {uploaded} blobs uploaded, {present} present".format(**r["blobs"])
        elif r.get("transport"):
            what += f", by the engine: {r['transport']}"
        print(f"{address}: {r['image']} ({what})")
    os.makedirs(os.path.dirname(manifest_path) or ".", exist_ok=True)
    with manifest_lock(manifest_path):
        previous = read_manifest(manifest_path)
        kept = ((previous or {}).get("images") or {}).get(address, {}).get("registries") or {}
        for error in result["errors"]:
            still = kept.get(error["address"], {}).get("image")
            keeps = f" (the deploy manifest keeps {still})" if still else ""
            print(f"{address}: NOT published to {error['address']}{keeps}: {error['error']}", file=sys.stderr)
        write_manifest(manifest_path, merge_deploy_manifest(previous, session, address, result, existing, utc_now()))
    return 1 if result["errors"] else 0


def main(argv: list[str]) -> int:
    if argv[1:2] == ["report"]:
        manifest_path, session, address, result = argv[2:6]
        existing = frozenset(argv[7:]) if argv[6:7] == ["--existing"] else None
        return report(manifest_path, session, address, json.loads(result), existing)
    print(f"usage: {argv[0]} report MANIFEST SESSION ADDRESS RESULT [--existing ADDRESS...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
