"""The `registry_client.py` script as a Pants process: what `pants publish` and pulls run."""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, MultiGet
from pants.util.logging import LogLevel

from chromadb_lambda.util_rules.engine import DockerEnvironment
from chromadb_lambda.util_rules.registries import PushTarget
from chromadb_lambda.scripts import script_source

# The standard AWS credential chain reads these; they reach only registry processes, never a cache.
AWS_ENV_VARS = (
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ECR",
    "AWS_CA_BUNDLE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_EC2_METADATA_DISABLED",
    "HOME",
    "HTTPS_PROXY",
    "NO_PROXY",
)
REGISTRY_CLIENT = "registry_client.py"
# What `registry_client.py` imports, each beside it in the process's sandbox (see its docstring).
REGISTRY_SCRIPTS = (
    REGISTRY_CLIENT,
    "registry_api.py",
    "registry_auth.py",
    "registry_docker.py",
    "registry_pull.py",
    "registry_push.py",
    "deploy_manifest.py",
)
# The deploy manifest's report: run alone with `python -c` (it imports no sibling script).
DEPLOY_MANIFEST = "deploy_manifest.py"


def report_script() -> bytes:
    return script_source(DEPLOY_MANIFEST)


def registry_entries(targets: tuple[PushTarget, ...]) -> list[dict[str, Any]]:
    return [
        {
            "address": t.address,
            "repository": t.repository,
            "tags": list(t.tags),
            "ecr": None if t.ecr is None else {"registry_id": t.ecr.registry_id, "region": t.ecr.region},
        }
        for t in targets
    ]


async def client_process(
    command: str,
    spec: Mapping[str, Any],
    docker: DockerBinary,
    docker_env: DockerEnvironment,
    description: str,
    cache_scope: ProcessCacheScope,
    files: tuple[FileContent, ...] = (),
) -> Process:
    """`registry_client.py <command> spec.json` (its sibling scripts and `files` beside it), with the AWS credential
    chain and `[docker].env_vars`."""
    aws_env, inputs = await MultiGet(
        Get(EnvironmentVars, EnvironmentVarsRequest(AWS_ENV_VARS)),
        Get(
            Digest,
            CreateDigest(
                [
                    *(FileContent(name, script_source(name)) for name in REGISTRY_SCRIPTS),
                    FileContent("spec.json", json.dumps(spec).encode()),
                    *files,
                ]
            ),
        ),
    )
    return Process(
        # Pants' own interpreter, which imports boto3 (from the Pants environment or `[GLOBAL].plugins`).
        argv=(sys.executable, REGISTRY_CLIENT, command, "spec.json"),
        input_digest=inputs,
        env={
            **docker.extra_env,
            **aws_env,
            **docker_env.env,
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        },
        immutable_input_digests=docker.extra_input_digests,
        description=description,
        cache_scope=cache_scope,
        level=LogLevel.INFO,
    )


def client_result(result: FallibleProcessResult, command: str) -> tuple[dict[str, Any] | None, str]:
    """The script's JSON result, or None and what went wrong (a crash, unreadable output)."""
    if result.exit_code == 0:
        try:
            return json.loads(result.stdout.decode()), ""
        except ValueError:
            pass
    lines = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
    return None, f"the {command} process failed (exit code {result.exit_code}): {lines[-1] if lines else 'no output'}"
