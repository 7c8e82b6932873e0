"""A Lambda's `architecture` against its base image's: a Lambda image inherits the base's
architecture, so the two must agree before the image is made (the message: image_config.py)."""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass

from pants.engine.addresses import Address
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest

from chromadb_lambda.target_types import ChromadbLambdaArchitectureField
from chromadb_lambda.util_rules.assemble import BaseImageConfig, BaseImageConfigRequest
from chromadb_lambda.util_rules.image_config import DOCKER_ARCHITECTURES, architecture_mismatch

# `platform.machine()` names of the machines Docker calls amd64 and arm64.
_MACHINE_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class ArchitectureMismatchError(Exception):
    """The `architecture` field and the base image disagree."""


@dataclass(frozen=True)
class LambdaArchitectureRequest:
    address: Address
    base_image_id: str


@dataclass(frozen=True)
class LambdaArchitecture:
    # AWS Lambda's name (`x86_64`, `arm64`), the field's value.
    architecture: str

    @property
    def platform_args(self) -> tuple[str, ...]:
        """`docker build --platform` for anything but the default: the default builds as before (for
        the engine's platform, which the base check makes the base's)."""
        if self.architecture == ChromadbLambdaArchitectureField.default:
            return ()
        return ("--platform", f"linux/{DOCKER_ARCHITECTURES[self.architecture]}")


@rule(desc="Checking a chromadb_lambda's architecture against its base image")
async def check_lambda_architecture(request: LambdaArchitectureRequest) -> LambdaArchitecture:
    wrapped, base = await MultiGet(
        Get(WrappedTarget, WrappedTargetRequest(request.address, description_of_origin="<infallible>")),
        # The base's cached `docker image inspect` (the assembler reads the same one).
        Get(BaseImageConfig, BaseImageConfigRequest(request.base_image_id)),
    )
    architecture = wrapped.target[ChromadbLambdaArchitectureField].value
    problem = architecture_mismatch(
        str(request.address),
        architecture,
        json.loads(base.inspect_json).get("Architecture") or "",
        _MACHINE_ARCHITECTURES.get(platform.machine().lower(), ""),
    )
    if problem:
        raise ArchitectureMismatchError(problem)
    return LambdaArchitecture(architecture)


def rules():
    return collect_rules()
