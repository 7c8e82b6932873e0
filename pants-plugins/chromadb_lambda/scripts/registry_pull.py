"""`registry_client.py pull`: the image of a content key from the first registry that has it.

Part of the scripts `registry_client.py` runs (see its docstring).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

if __package__:  # imported as chromadb_lambda.scripts.* (by tests)
    from .registry_api import INDEX_MANIFEST_TYPES, PublishError, manifest_head, scrub
    from .registry_auth import each_registry, registry_credentials
    from .registry_docker import last_line, docker_with_retry, run_docker, tag_image
else:  # run as a script: the sibling scripts are beside it in the process's sandbox
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from registry_api import INDEX_MANIFEST_TYPES, PublishError, manifest_head, scrub  # pants: no-infer-dep
    from registry_auth import each_registry, registry_credentials  # pants: no-infer-dep
    from registry_docker import last_line, docker_with_retry, run_docker, tag_image  # pants: no-infer-dep


def pull_from_registry(spec: dict, registry: dict, config_dir: str | None, secrets: list[str]) -> dict | None:
    """Pulls `<registry>/<repository>:<key tag>` and tags it as `spec["local_refs"]`; None if absent."""
    address = registry["address"]
    repository = registry["repository"]
    key_tag = spec["key_tag"]
    basic_auth, config_dir, _ = registry_credentials(registry, config_dir, secrets)
    head = manifest_head(address, repository, key_tag, basic_auth, spec["attempts"])
    if head is None:
        return None
    ref = f"{address}/{repository}:{key_tag}"
    if head[1] in INDEX_MANIFEST_TYPES:
        raise PublishError(f"{ref} is a manifest list ({head[1]}), not the single image it publishes: not pulled.")
    docker_with_retry(
        lambda: run_docker(spec, config_dir, "pull", ref),
        "pull",
        ref,
        address,
        spec["attempts"],
        "Check the registry credentials; for ECR the identity needs `ecr:BatchGetImage` and "
        "`ecr:GetDownloadUrlForLayer` on the repository.",
    )
    inspected = run_docker(spec, None, "image", "inspect", "--format", "{{.Id}} {{.Os}}/{{.Architecture}}", ref)
    if inspected.returncode != 0:
        raise PublishError(f"`docker image inspect {ref}` failed after the pull: {last_line(inspected.stdout)}")
    image_id, _, platform = inspected.stdout.strip().partition(" ")
    # Content keys do not name a platform: an image another runner built for another CPU is not this one.
    engine = run_docker(spec, None, "version", "--format", "{{.Server.Os}}/{{.Server.Arch}}")
    engine_platform = engine.stdout.strip() if engine.returncode == 0 else ""
    if engine_platform and platform != engine_platform:
        run_docker(spec, None, "image", "rm", ref)
        raise PublishError(f"{ref} is a {platform} image and this engine runs {engine_platform}: not used.")
    for local_ref in spec["local_refs"]:
        tag_image(spec, image_id, local_ref)
    return {"address": address, "ref": ref, "digest": head[0], "image_id": image_id}


def pull(spec: dict) -> dict:
    """The image from the first registry that holds the content key tag; warnings for the others."""
    secrets: list[str] = []
    result: dict[str, Any] = {"pulled": None, "warnings": []}
    for registry, config_dir in each_registry(spec):
        try:
            result["pulled"] = pull_from_registry(spec, registry, config_dir, secrets)
        except PublishError as e:
            result["warnings"].append({"address": registry["address"], "error": str(e)})
        if result["pulled"]:
            break
    return json.loads(scrub(json.dumps(result), secrets))
