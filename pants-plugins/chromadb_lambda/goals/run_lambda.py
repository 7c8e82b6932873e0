"""`pants run <chromadb_lambda> -- [--event FILE|JSON] [--env NAME[=VALUE] ...] [--endpoint-url URL]
[--timeout SECONDS]`: invoke the handler once in its image, on the local engine.

The image is packaged as `package` does (nothing is built when it is up to date). Then
`run_lambda_script.py` runs on the host: it starts the image with the plugin's Lambda Runtime API
server (`runtime_api.py`) as the container's process, serving the event on the container's own
loopback, so the default `--network none` gives the function no network and no credentials at all.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Optional, cast

from pants.backend.docker.package_types import BuiltDockerImage
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.core.goals.package import BuiltPackage, PackageFieldSet
from pants.core.goals.run import RunFieldSet, RunInSandboxBehavior, RunRequest
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import InvalidFieldException, IntField, WrappedTarget, WrappedTargetRequest
from pants.util.strutil import help_text

from chromadb_lambda.scripts import run_lambda_script, runtime_api
from chromadb_lambda.util_rules.engine import DockerEnvironment
from chromadb_lambda.goals.package import ChromadbLambdaPackageFieldSet
from chromadb_lambda.scripts import script_source
from chromadb_lambda.target_types import ChromadbLambdaBaseImageField, ChromadbLambdaHandlerField

SCRIPT = "run_lambda_script.py"


class ChromadbLambdaTimeoutField(IntField):
    alias = "timeout"
    help = help_text(
        f"""
        Seconds the function may run, as its AWS Lambda `Timeout` (a whole number): `pants run` stops a handler that
        has not answered by then. Without it, `pants run` allows {runtime_api.DEFAULT_TIMEOUT:g} s;
        `pants run <target> -- --timeout SECONDS` overrides both.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[int], address: Address) -> Optional[int]:
        value = super().compute_value(raw_value, address)
        if value is not None and value <= 0:
            raise InvalidFieldException(
                f"The `{cls.alias}` field in target {address} must be a positive number of seconds, but it is {value}."
            )
        return value


@dataclass(frozen=True)
class ChromadbLambdaRunFieldSet(RunFieldSet):
    required_fields = (ChromadbLambdaHandlerField, ChromadbLambdaBaseImageField)
    # It talks to the Docker engine: nothing a sandbox could cache.
    run_in_sandbox_behavior = RunInSandboxBehavior.NOT_SUPPORTED

    handler: ChromadbLambdaHandlerField
    base_image: ChromadbLambdaBaseImageField
    timeout: ChromadbLambdaTimeoutField


def run_spec(address: Address, image_id: str, docker_path: str, timeout: int | None) -> str:
    """What the script needs from Pants, as its first argument. No value from the environment."""
    return json.dumps(
        {
            "address": str(address),
            "docker": docker_path,
            "function_name": address.target_name,
            "image_id": image_id,
            "timeout": runtime_api.DEFAULT_TIMEOUT if timeout is None else timeout,
        },
        sort_keys=True,
    )


@rule(desc="Preparing to invoke a chromadb_lambda image")
async def run_chromadb_lambda(
    field_set: ChromadbLambdaRunFieldSet, docker: DockerBinary, docker_env: DockerEnvironment
) -> RunRequest:
    wrapped = await Get(
        WrappedTarget, WrappedTargetRequest(field_set.address, description_of_origin="<infallible>")
    )
    # Built (or found up to date) exactly as `package` does.
    built = await Get(BuiltPackage, PackageFieldSet, ChromadbLambdaPackageFieldSet.create(wrapped.target))
    image = cast(BuiltDockerImage, built.artifacts[0])
    digest = await Get(
        Digest,
        CreateDigest(
            [
                FileContent(SCRIPT, script_source(SCRIPT)),
                FileContent(run_lambda_script.RUNTIME_API_FILE, script_source(run_lambda_script.RUNTIME_API_FILE)),
            ]
        ),
    )
    return RunRequest(
        digest=digest,
        # Pants' own interpreter: the script needs only the standard library.
        args=(sys.executable, f"{{chroot}}/{SCRIPT}", run_spec(field_set.address, image.image_id, docker.path, field_set.timeout.value)),
        # DOCKER_HOST and the like; the caller's environment comes with the run goal.
        extra_env={**docker.extra_env, **docker_env.env},
        immutable_input_digests=docker.extra_input_digests,
    )


def rules():
    return [*collect_rules(), *ChromadbLambdaRunFieldSet.rules()]
