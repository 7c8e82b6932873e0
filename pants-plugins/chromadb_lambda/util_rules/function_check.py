"""The preflight of `pants publish` and `pants experimental-deploy`: the `architecture` field of a
`chromadb_lambda` against the configuration of the functions its `functions` field names, read
before anything is pushed (docs/deploy.md, "The preflight").

The read is `deploy_functions.py configurations` as a process (`GetFunctionConfiguration` through
boto3, the AWS chain from the environment of `pants`, as the pushes get it). Like a push it carries
the publish session id and is kept for the daemon's life only (PER_RESTART_SUCCESSFUL, never a disk
or remote cache): each run reads the functions again, and the deploy rule and the publish rule of one
run share one read. What to do with the answer is plain functions below (`preflight_verdict`).
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterable

from pants.engine.addresses import Address
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.process import FallibleProcessResult, InteractiveProcess, Process, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.logging import LogLevel

from chromadb_lambda.scripts import script_source
from chromadb_lambda.util_rules.push import PublishSession
from chromadb_lambda.util_rules.registry_process import AWS_ENV_VARS, client_result

logger = logging.getLogger(__name__)

DEPLOY_SCRIPT = "deploy_functions.py"
# The AWS chain of `pants publish`, plus the Lambda endpoint (an emulator, a VPC endpoint).
LAMBDA_ENV_VARS = (*AWS_ENV_VARS, "AWS_ENDPOINT_URL_LAMBDA")
READ_ACTION = "lambda:GetFunctionConfiguration"
CHECK_OPTION = "[lambda-deploy].function_check"


class FunctionCheck(Enum):
    """`[lambda-deploy].function_check`."""

    warn = "warn"
    strict = "strict"
    off = "off"


@dataclass(frozen=True)
class FunctionConfigurationsRequest:
    address: Address
    functions: tuple[str, ...]
    session: PublishSession


@dataclass(frozen=True)
class FunctionConfiguration:
    function: str
    # Read: Lambda's `Architectures` and `PackageType`. Not read: `error_code` says why.
    architectures: tuple[str, ...] = ()
    package_type: str = ""
    error_code: str = ""
    error: str = ""

    @property
    def read(self) -> bool:
        return not self.error_code


@dataclass(frozen=True)
class FunctionConfigurations:
    configurations: tuple[FunctionConfiguration, ...]


@dataclass(frozen=True)
class Verdict:
    refusal: str | None
    warnings: tuple[str, ...] = ()


def parse_configurations(functions: Iterable[str], result: FallibleProcessResult) -> FunctionConfigurations:
    """The script's answer; a crash makes every function unread, with the crash as the reason."""
    answer, error = client_result(result, "function configuration")
    if answer is None:
        return FunctionConfigurations(
            tuple(FunctionConfiguration(f, error_code="ProcessFailed", error=error) for f in functions)
        )
    return FunctionConfigurations(
        tuple(
            FunctionConfiguration(
                a["function"],
                architectures=tuple(a.get("architectures") or ()),
                package_type=a.get("package_type", ""),
                error_code=a.get("code", ""),
                error=a.get("message", ""),
            )
            for a in answer
        )
    )


@rule(desc="Reading the configuration of a chromadb_lambda's functions", level=LogLevel.DEBUG)
async def read_function_configurations(request: FunctionConfigurationsRequest) -> FunctionConfigurations:
    spec: dict[str, Any] = {"session": request.session.id, "functions": list(request.functions)}
    aws_env, inputs = await MultiGet(
        Get(EnvironmentVars, EnvironmentVarsRequest(LAMBDA_ENV_VARS)),
        Get(
            Digest,
            CreateDigest(
                [FileContent(DEPLOY_SCRIPT, script_source(DEPLOY_SCRIPT)), FileContent("spec.json", json.dumps(spec).encode())]
            ),
        ),
    )
    result = await Get(
        FallibleProcessResult,
        Process(
            # Pants' own interpreter, which imports boto3; credentials only in the environment.
            argv=(sys.executable, DEPLOY_SCRIPT, "configurations", "spec.json"),
            input_digest=inputs,
            env={**aws_env, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            description=f"Reading the configuration of {', '.join(request.functions)} ({request.address})",
            # Never reused across runs: spec.json holds the session id (see push.PublishSession).
            cache_scope=ProcessCacheScope.PER_RESTART_SUCCESSFUL,
            level=LogLevel.DEBUG,
        ),
    )
    return parse_configurations(request.functions, result)


def _names(functions: list[str]) -> str:
    return functions[0] if len(functions) == 1 else f"{', '.join(functions[:-1])} and {functions[-1]}"


def mismatch_message(
    address: str, architecture: str, configurations: tuple[FunctionConfiguration, ...], refused: str
) -> str | None:
    """The refusal of functions that do not run on `architecture`, or None. `refused`: what is not
    done ("is not published")."""
    mismatched = [c for c in configurations if c.read and architecture not in c.architectures]
    if not mismatched:
        return None
    names = _names([c.function for c in mismatched])
    running = sorted({a for c in mismatched for a in c.architectures[:1]})
    subject = f"the function {names} runs" if len(mismatched) == 1 else f"the functions {names} run"
    matching = [c for c in configurations if c.read and architecture in c.architectures]
    if len(running) == 1 and not matching:
        fix = (
            f"Set `architecture=\"{running[0]}\"` on {address} (its base image must be {running[0]} too), or "
            f"change the architecture in the configuration of {names}."
        )
    else:
        fix = (
            f"One image runs on one architecture: change the architecture in the configuration of {names}, or "
            f"give {'it' if len(mismatched) == 1 else 'them'} a `chromadb_lambda` target of "
            f"{'its' if len(mismatched) == 1 else 'their'} own."
        )
    return (
        f"{address} {refused}: its `architecture` field is {architecture!r}, and {subject} on "
        f"{'/'.join(running)}, so {'it' if len(mismatched) == 1 else 'they'} could not run this image. {fix} "
        "Nothing was pushed."
    )


def unread_reason(address: str, configuration: FunctionConfiguration, goal: str) -> str:
    """Why one function's configuration could not be read, and the fix."""
    function, code = configuration.function, configuration.error_code
    if code == "ResourceNotFoundException":
        return (
            f"there is no function {function} (in the region of the AWS credential chain, or the ARN's): create "
            f"it, or fix the `functions` field of {address}"
        )
    if code in ("AccessDeniedException", "AccessDenied"):
        return f"access denied for `{READ_ACTION}` on {function}: grant it to the identity that runs `pants {goal}`"
    if code == "NoCredentialsError":
        return (
            "no AWS credentials: configure the standard AWS chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/"
            f"AWS_SECRET_ACCESS_KEY, SSO, an instance or task role) in the environment of `pants {goal}`"
        )
    if code in ("UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
                "ExpiredTokenException", "ExpiredToken"):
        return "the AWS credentials were rejected: check AWS_PROFILE / AWS_ACCESS_KEY_ID and that they are current"
    if code in ("NoRegion", "ProcessFailed"):
        return configuration.error
    if code in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return f"cannot reach the AWS Lambda API: {configuration.error}"
    return f"AWS refused `{READ_ACTION}` on {function} ({code}): {configuration.error}"


def preflight_verdict(
    address: str, architecture: str, configurations: FunctionConfigurations, check: FunctionCheck, goal: str
) -> Verdict:
    """What `pants <goal>` does before the push: refuse a function of another architecture; for a
    function it could not read, warn (`warn`), refuse (`strict`), or, for `experimental-deploy`,
    nothing (its deploy step reports the function by name, as for any deploy)."""
    refused = "is not published" if goal == "publish" else "is neither published nor deployed"
    mismatch = mismatch_message(address, architecture, configurations.configurations, refused)
    if mismatch:
        return Verdict(mismatch)
    unread = [c for c in configurations.configurations if not c.read]
    if not unread or goal != "publish":
        return Verdict(None)
    reasons = [unread_reason(address, c, goal) for c in unread]
    if check == FunctionCheck.strict:
        return Verdict(
            "\n".join(
                f"{address} is not published: `{CHECK_OPTION}` is \"strict\", and the configuration of the "
                f"function {c.function} could not be read: {reason}. Nothing was pushed."
                for c, reason in zip(unread, reasons)
            )
        )
    return Verdict(
        None,
        tuple(
            f"{address}: publishing without comparing the `architecture` field ({architecture!r}) with the "
            f"function {c.function}, whose configuration could not be read: {reason}. `{CHECK_OPTION} = "
            "\"off\"` publishes without reading functions; \"strict\" refuses instead."
            for c, reason in zip(unread, reasons)
        ),
    )


def refusal_process(message: str) -> InteractiveProcess:
    """Prints the refusal (no secret in it: names and architectures) and exits 1, which is how Pants'
    publish and deploy goals list the target as failed."""
    return InteractiveProcess(
        argv=(sys.executable, "-c", "import sys; print(sys.argv[1], file=sys.stderr); sys.exit(1)", message),
    )


def rules():
    return collect_rules()
