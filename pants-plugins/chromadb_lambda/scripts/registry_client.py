"""Pushes Lambda images to their registries, pulls published ones, and records what was published.

Run with Pants' own interpreter, as a script, by `pants publish` (see publish.py) and by `pants
package` with `[lambda-image].pull_from_registries` (see pull.py):

    registry_client.py push SPEC_JSON       -> prints a JSON result on stdout
    registry_client.py pull SPEC_JSON       -> pulls the content key tag from the first registry that
                                               has it, tags it locally; prints a JSON result
    registry_client.py report MANIFEST SESSION ADDRESS RESULT_JSON [--existing ADDRESS...]
                                            -> prints the outcome, merges the deploy manifest
                                               (entries of addresses not `--existing` are dropped)

Split by job into sibling scripts, all given to the process beside this one: registry_api.py (the
registry HTTP API, errors), registry_auth.py (credentials), registry_docker.py (`docker` commands),
registry_pull.py (`pull`), deploy_manifest.py (`report`), registry_push.py (assembled images).

Standard library only, plus boto3 for ECR registries. ECR tokens (`ecr:GetAuthorizationToken`) are
written to a private Docker config (a 0700 directory in the process sandbox, removed before the
process ends, and with the sandbox if the process is killed) and passed to `docker --config`: they
never reach an argument list, an environment, stdout, a log, Pants' caches or `dist/`. Everything
printed is scrubbed of them anyway.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

if __package__:  # imported as chromadb_lambda.scripts.* (by tests)
    from .registry_api import (
        INDEX_MANIFEST_TYPES, PublishError, after_attempts, backoff, manifest_head, registry_base_urls,
        scrub,
    )
    from .registry_auth import each_registry, ensure_ecr_repository, registry_credentials
    from .registry_docker import push_with_retry, run_docker, tag_image
    from .registry_pull import pull
    from .deploy_manifest import report
else:  # run as a script: the sibling scripts are beside it in the process's sandbox
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from registry_api import (  # pants: no-infer-dep
        INDEX_MANIFEST_TYPES, PublishError, after_attempts, backoff, manifest_head, registry_base_urls,
        scrub,
    )
    from registry_auth import (  # pants: no-infer-dep
        each_registry, ensure_ecr_repository, registry_credentials,
    )
    from registry_docker import push_with_retry, run_docker, tag_image  # pants: no-infer-dep
    from registry_pull import pull  # pants: no-infer-dep
    from deploy_manifest import report  # pants: no-infer-dep


def publish_to_registry(spec: dict, registry: dict, config_dir: str | None, secrets: list[str]) -> dict:
    address = registry["address"]
    repository = registry["repository"]
    name = f"{address}/{repository}"
    refs = [f"{name}:{tag}" for tag in registry["tags"]]
    key_tag = spec["key_tag"]
    outcome: dict[str, Any] = {"address": address, "name": name, "tags": refs, "pushed": 0}

    basic_auth, config_dir, client = registry_credentials(registry, config_dir, secrets)
    if client is not None:
        outcome["created_repository"] = ensure_ecr_repository(client, registry["ecr"], address, repository, spec)

    # Unchanged images are not pushed: the registry already has the content key tag, and every other
    # tag points at the same manifest.
    attempts = spec["attempts"]
    existing = {tag: manifest_head(address, repository, tag, basic_auth, attempts) for tag in registry["tags"]}
    key_entry = existing[key_tag]
    if key_entry and all(entry and entry[0] == key_entry[0] for entry in existing.values()):
        outcome.update(status="already published", digest=key_entry[0], media_type=key_entry[1])
    elif spec.get("assembled") and push_assembled_image(spec, registry, basic_auth, outcome):
        pass
    else:
        digests = {}
        for ref in (f"{name}:{key_tag}", *[r for r in refs if not r.endswith(f":{key_tag}")]):
            tag_image(spec, spec["image_id"], ref)
            digest, _ = push_with_retry(
                lambda ref=ref: run_docker(spec, config_dir, "push", ref), ref, address, attempts
            )
            digests[ref] = digest
            outcome["pushed"] += 1
        if len(set(digests.values())) != 1:
            raise PublishError(f"The tags of {name} got different digests: {digests}")
        digest = digests[f"{name}:{key_tag}"]
        head = manifest_head(address, repository, key_tag, basic_auth, attempts)
        outcome.update(status="pushed", digest=digest, media_type=head[1] if head else "")
    if outcome["media_type"] in INDEX_MANIFEST_TYPES:
        raise PublishError(
            f"{name}:{key_tag} is a manifest list ({outcome['media_type']}); AWS Lambda takes a "
            "single-platform image manifest: build without multi-platform output or attestations."
        )
    outcome["image"] = f"{name}@{outcome['digest']}"
    return outcome


def push_assembled_image(spec: dict, registry: dict, basic_auth: str | None, outcome: dict) -> bool:
    """Pushes an assembled image over the registry API (registry_push.py); False if the base is not
    in the registry as the local one (then the engine pushes the image, as for `docker build` ones)."""
    if __package__:
        from . import registry_push
    else:
        import registry_push  # pants: no-infer-dep (beside this script in the sandbox)

    assembled = spec["assembled"]
    address, repository = registry["address"], registry["repository"]
    with open(assembled["config"], "rb") as f:
        config = f.read()
    with open(assembled["layer"], "rb") as f:
        layer_gz = f.read()
    key_tag = spec["key_tag"]
    tags = [key_tag, *[t for t in registry["tags"] if t != key_tag]]
    for attempt in range(1, spec["attempts"] + 1):
        api = registry_push.RegistryApi(registry_base_urls(address), basic_auth)
        try:
            base = registry_push.base_manifest(
                api, assembled["base_repository"], assembled["base_tag"], assembled["base_image_id"]
            )
            pushed = registry_push.push_assembled(
                api, repository, tags, base, assembled["base_repository"], config, layer_gz
            )
            break
        except registry_push.BaseNotUsable as e:
            outcome["transport"] = f"engine ({e})"
            return False
        except registry_push.ApiError as e:
            if e.status in (401, 403):
                raise PublishError(
                    f"The registry {address} refused the push of {address}/{repository} (not retried): {e}\n"
                    "Check the registry credentials; for ECR the identity needs `ecr:InitiateLayerUpload`, "
                    "`ecr:UploadLayerPart`, `ecr:CompleteLayerUpload`, `ecr:BatchCheckLayerAvailability` "
                    "and `ecr:PutImage` on the repository."
                ) from None
            if not e.transient or attempt == spec["attempts"]:
                raise PublishError(f"Pushing {address}/{repository} to {address} failed{after_attempts(attempt)}: {e}") from None
            time.sleep(backoff(attempt))
    head = manifest_head(address, repository, key_tag, basic_auth, spec["attempts"])
    if head is None or head[0] != pushed["digest"]:
        raise PublishError(
            f"After the push, {address}/{repository}:{key_tag} is {head[0] if head else 'missing'}, not the "
            f"digest computed before it ({pushed['digest']})."
        )
    outcome.update(
        status="pushed", digest=pushed["digest"], media_type=pushed["media_type"], pushed=len(tags),
        transport="registry API", blobs=pushed["blobs"],
    )
    return True


def push(spec: dict) -> dict:
    secrets: list[str] = []
    result: dict[str, Any] = {"registries": [], "errors": []}
    if not spec.get("image_id"):
        # Named by a local tag (a base image): pushed only if this engine holds it.
        inspected = run_docker(spec, None, "image", "inspect", "--format", "{{.Id}}", spec["image_ref"])
        if inspected.returncode != 0:
            result["skipped"] = f"{spec['image_ref']} is not in this engine"
            return result
        spec = {**spec, "image_id": inspected.stdout.strip()}
    for registry, config_dir in each_registry(spec):
        try:
            result["registries"].append(publish_to_registry(spec, registry, config_dir, secrets))
        except PublishError as e:
            result["errors"].append({"address": registry["address"], "error": scrub(str(e), secrets)})
    return json.loads(scrub(json.dumps(result), secrets))


def main(argv: list[str]) -> int:
    if argv[1:2] == ["push"]:
        with open(argv[2]) as f:
            spec = json.load(f)
        result = push(spec)
        result.update(content_key=spec["content_key"], key_tag=spec["key_tag"])
        json.dump(result, sys.stdout)
        return 0
    if argv[1:2] == ["pull"]:
        with open(argv[2]) as f:
            json.dump(pull(json.load(f)), sys.stdout)
        return 0
    if argv[1:2] == ["report"]:
        manifest_path, session, address, result = argv[2:6]
        existing = frozenset(argv[7:]) if argv[6:7] == ["--existing"] else None
        return report(manifest_path, session, address, json.loads(result), existing)
    print(
        f"usage: {argv[0]} push SPEC | pull SPEC | report MANIFEST SESSION ADDRESS RESULT [--existing ADDRESS...]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
