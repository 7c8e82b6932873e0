"""`docker` commands of the registry scripts (tag, push, pull), with bounded retries of transient
failures.

Part of the scripts `registry_client.py` runs (see its docstring).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Callable

if __package__:  # imported as chromadb_lambda.scripts.* (by tests)
    from .registry_api import PublishError, after_attempts, backoff, classify_push_failure
else:  # run as a script: the sibling scripts are beside it in the process's sandbox
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from registry_api import (  # pants: no-infer-dep
        PublishError, after_attempts, backoff, classify_push_failure,
    )

_DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")


def run_docker(spec: dict, config_dir: str | None, *args: str) -> subprocess.CompletedProcess:
    argv = [spec["docker"], *(("--config", config_dir) if config_dir else ()), *args]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def tag_image(spec: dict, image_id: str, ref: str) -> None:
    tagged = run_docker(spec, None, "tag", image_id, ref)
    if tagged.returncode != 0:
        raise PublishError(f"`docker tag {image_id} {ref}` failed: {last_line(tagged.stdout)}")


def docker_with_retry(
    run: Callable[[], subprocess.CompletedProcess],
    verb: str,
    ref: str,
    address: str,
    attempts: int,
    refused_hint: str,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, int]:
    """Runs `docker push` / `docker pull` of one ref; (its output, attempts used).

    Transient failures are retried with backoff; a refusal (credentials) is not.
    """
    for attempt in range(1, attempts + 1):
        result = run()
        output = result.stdout or ""
        if result.returncode == 0:
            return output, attempt
        kind = classify_push_failure(output)
        if kind == "auth":
            raise PublishError(
                f"The registry {address} refused the {verb} of {ref} (not retried): {last_line(output)}\n"
                f"{refused_hint}"
            )
        if kind != "transient" or attempt == attempts:
            what = f"Pushing {ref} to" if verb == "push" else f"Pulling {ref} from"
            raise PublishError(f"{what} {address} failed{after_attempts(attempt)}: {last_line(output)}")
        sleep(backoff(attempt))
    raise AssertionError("unreachable")


def push_with_retry(
    push: Callable[[], subprocess.CompletedProcess],
    ref: str,
    address: str,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, int]:
    """Pushes one ref; returns (digest, attempts used). Retries transient failures only."""
    output, attempt = docker_with_retry(
        push,
        "push",
        ref,
        address,
        attempts,
        "Check the registry credentials; for ECR the identity needs `ecr:InitiateLayerUpload`, "
        "`ecr:UploadLayerPart`, `ecr:CompleteLayerUpload`, `ecr:BatchCheckLayerAvailability` "
        "and `ecr:PutImage` on the repository.",
        sleep,
    )
    match = _DIGEST_RE.search(output)
    if not match:
        raise PublishError(f"`docker push {ref}` printed no digest:\n{output.strip()}")
    return match.group(1), attempt


def last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
