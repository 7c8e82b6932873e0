"""Points AWS Lambda functions at a published image: what `pants experimental-deploy` runs, per target.

Run with Pants' own interpreter (which imports boto3), as a script, after the target's publish:

    deploy_functions.py SPEC_JSON    -> one line per function on stdout (failures on stderr);
                                        exit code 1 if any function failed or was refused
    deploy_functions.py configurations SPEC_FILE
                                     -> the preflight of `pants publish` and `experimental-deploy`
                                        (util_rules/function_check.py): each function's
                                        `GetFunctionConfiguration` (architectures, package type) or
                                        why it could not be read, as JSON on stdout; exit code 0

The spec (goals/deploy.py writes it) names the target, its functions, its alias, its architecture,
its content key, the ECR registries it publishes to and the deploy manifest `pants publish` wrote.
The image is the manifest's record of one of those registries for this content key, by digest
(`<repository>@sha256:...`): Lambda resolves a tag once, at update time, so a tag would pin nothing.

Each function, in a thread of its own (one failure never stops the others):
1. `GetFunction`; 2. `plan_action`, a pure function of its configuration and the image: skip it when
it already runs this digest, refuse a Zip function or another architecture, else update;
3. `UpdateFunctionCode(ImageUri=...)`, then the `function_updated_v2` waiter; 4. with an alias,
`PublishVersion` and `UpdateAlias` (`CreateAlias` if it does not exist yet).
With `dry_run`, steps 1-2 only: the plan is printed, nothing changes.

Credentials and region come from the standard AWS chain in the environment (never from arguments);
`AWS_ENDPOINT_URL_LAMBDA` / `AWS_ENDPOINT_URL` are honoured by boto3.
"""
from __future__ import annotations

import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

ARN_RE = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:([a-z0-9-]+):\d{12}:function:([A-Za-z0-9_-]+)$")

SKIP = "skip"
UPDATE = "update"
REFUSE = "refuse"
WAIT_DELAY_SECONDS = 2
WAIT_MAX_ATTEMPTS = 150  # 5 minutes: image updates take seconds to a few minutes on AWS.


class DeployError(Exception):
    """A function that cannot be deployed as configured; the message names it and the fix."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Action:
    kind: str  # SKIP, UPDATE or REFUSE
    reason: str


def digest_of(image: str) -> str:
    """`sha256:...` of a `<repository>@sha256:...` reference ('' if it has none)."""
    return image.rpartition("@")[2] if "@" in image else ""


def plan_action(address: str, function: str, current: Mapping[str, Any], image: str, architecture: str) -> Action:
    """What to do with one function, from its `GetFunction` response and the image to run.

    Lambda reports the image it runs as `Code.ImageUri` (as given), `Code.ResolvedImageUri` and
    `Configuration.CodeSha256` (the digest without `sha256:`); any of them naming this digest means
    it already runs it.
    """
    config = current.get("Configuration") or {}
    code = current.get("Code") or {}
    package_type = config.get("PackageType") or "Zip"
    if package_type != "Image":
        return Action(
            REFUSE,
            f"the function's package type is {package_type}, and a container image cannot replace a "
            f".zip package: recreate {function} with PackageType=Image, or remove it from the `functions` "
            f"field of {address}",
        )
    running = tuple(config.get("Architectures") or ("x86_64",))
    if architecture not in running:
        return Action(
            REFUSE,
            f"the function runs on {'/'.join(running)}, and the `architecture` field of {address} is "
            f"{architecture!r}: set `architecture=\"{running[0]}\"` on {address} (its base image must be "
            f"{running[0]} too), or change the function's architecture in its own configuration",
        )
    digest = digest_of(image)
    current_uri = code.get("ImageUri") or ""
    if current_uri == image or (digest and (
        digest_of(code.get("ResolvedImageUri") or "") == digest or config.get("CodeSha256") == digest.partition(":")[2]
    )):
        return Action(SKIP, f"already runs {image}")
    return Action(UPDATE, f"{current_uri or 'no image'} -> {image}")


def aws_error_message(address: str, function: str, action: str, code: str, message: str) -> str:
    """A refused AWS call, with the fix."""
    if code == "ResourceNotFoundException" and action == "lambda:GetFunction":
        return (
            f"no such function {function} (in the region of the AWS credential chain, or the ARN's): create "
            f"it, or fix the `functions` field of {address}"
        )
    if code in ("AccessDeniedException", "AccessDenied"):
        return f"access denied for `{action}` on {function}: grant it to the identity that runs `pants experimental-deploy`"
    if code in ("UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
                "ExpiredTokenException", "ExpiredToken"):
        return "the AWS credentials were rejected: check AWS_PROFILE / AWS_ACCESS_KEY_ID and that they are current"
    if code == "ResourceConflictException":
        return f"{function} is being updated by someone else ({message}): run the deploy again when it is done"
    return f"AWS refused `{action}` on {function} ({code}): {message}"


def function_region(function: str) -> str | None:
    match = ARN_RE.match(function)
    return match.group(1) if match else None


def published_image(manifest: Mapping[str, Any] | None, spec: Mapping[str, Any], region: str | None = None) -> str | None:
    """The image of this content key that the deploy manifest records for one of the spec's
    registries, or None: an ECR registry of the function's `region` first (Lambda runs images from
    its own region), then the spec's order."""
    entry = ((manifest or {}).get("images") or {}).get(spec["address"]) or {}
    records = entry.get("registries") or {}
    registries = sorted(spec["registries"], key=lambda r: not (region and f".dkr.ecr.{region}." in r))
    for registry in registries:
        record = records.get(registry) or {}
        if record.get("content_key") == spec["content_key"] and record.get("image"):
            return record["image"]
    return None


def read_manifest(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Lambda:
    """The few Lambda calls a deploy makes, with AWS errors turned into DeployErrors."""

    def __init__(self, client: Any, address: str, function: str) -> None:
        self.client, self.address, self.function = client, address, function

    def call(self, action: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        # botocore's exceptions by their shape, not their class: the script imports boto3 only
        # through the client it is given (tests give a fake).
        try:
            return method(**kwargs)
        except Exception as e:
            response = getattr(e, "response", None)
            kind = type(e).__name__
            if isinstance(response, dict) and "Error" in response:  # ClientError
                code = response["Error"].get("Code", "")
                message = aws_error_message(
                    self.address, self.function, action, code, response["Error"].get("Message", "")
                )
                raise DeployError(message, code) from None
            if kind == "NoCredentialsError":
                raise DeployError(
                    "no AWS credentials: configure the standard AWS chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/"
                    "AWS_SECRET_ACCESS_KEY, SSO, an instance or task role) in the environment of `pants "
                    "experimental-deploy`"
                ) from None
            if kind == "WaiterError":
                raise DeployError(f"{self.function} did not finish updating: {e}") from None
            if kind in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
                raise DeployError(f"cannot reach the AWS Lambda API: {e}") from None
            raise

    def get(self) -> dict:
        return self.call("lambda:GetFunction", self.client.get_function, FunctionName=self.function)

    def update(self, image: str) -> None:
        self.call("lambda:UpdateFunctionCode", self.client.update_function_code, FunctionName=self.function, ImageUri=image)
        waiter = self.client.get_waiter("function_updated_v2")
        self.call(
            "lambda:GetFunction", waiter.wait, FunctionName=self.function,
            WaiterConfig={"Delay": WAIT_DELAY_SECONDS, "MaxAttempts": WAIT_MAX_ATTEMPTS},
        )

    def move_alias(self, alias: str) -> str:
        """Publishes a version of the current code and points `alias` at it; the version."""
        version = self.call("lambda:PublishVersion", self.client.publish_version, FunctionName=self.function)["Version"]
        try:
            self.call("lambda:UpdateAlias", self.client.update_alias, FunctionName=self.function, Name=alias,
                      FunctionVersion=version)
        except DeployError as e:
            if e.code != "ResourceNotFoundException":
                raise
            self.call("lambda:CreateAlias", self.client.create_alias, FunctionName=self.function, Name=alias,
                      FunctionVersion=version)
        return version


def lambda_client(function: str) -> Any:
    import boto3  # pants: no-infer-dep (from the environment that runs Pants)
    import botocore.exceptions  # pants: no-infer-dep

    region = function_region(function) or os.environ.get("AWS_REGION") or None
    try:
        return boto3.session.Session().client("lambda", region_name=region)
    except botocore.exceptions.NoRegionError:
        raise DeployError(
            "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region), or name the "
            "function by its ARN",
            "NoRegion",
        ) from None


def deploy_function(
    spec: Mapping[str, Any], function: str, manifest: Mapping[str, Any] | None, client_for: Callable[[str], Any]
) -> tuple[bool, str]:
    """(ok, what happened) for one function; never raises for an AWS refusal."""
    address = spec["address"]
    try:
        client = client_for(function)
        image = published_image(manifest, spec, getattr(getattr(client, "meta", None), "region_name", None))
        remote = Lambda(client, address, function)
        current = remote.get()
        if image is None:  # dry run of an image that is not published yet
            action = plan_action(address, function, current, "", spec["architecture"])
            if action.kind == REFUSE:
                return False, f"refused: {action.reason}"
            running = (current.get("Code") or {}).get("ImageUri") or "no image"
            return True, f"would update {running} -> the image publish pushes ({spec['key_tag']})"
        action = plan_action(address, function, current, image, spec["architecture"])
        if action.kind == REFUSE:
            return False, f"refused: {action.reason}"
        if action.kind == SKIP:
            return True, f"{action.reason}, not updated" if not spec["dry_run"] else f"would skip: {action.reason}"
        if spec["dry_run"]:
            alias = f", then move alias {spec['alias']}" if spec.get("alias") else ""
            return True, f"would update {action.reason}{alias}"
        remote.update(image)
        if not spec.get("alias"):
            return True, f"updated {action.reason}"
        try:
            version = remote.move_alias(spec["alias"])
        except DeployError as e:
            return False, f"updated {action.reason}, but alias {spec['alias']} was not moved: {e}"
        return True, f"updated {action.reason} (version {version}, alias {spec['alias']})"
    except DeployError as e:
        return False, str(e)
    except Exception as e:  # noqa: BLE001 - one function's surprise must not stop the others
        return False, f"unexpected error: {type(e).__name__}: {e}"


def deploy(spec: Mapping[str, Any], client_for: Callable[[str], Any] = lambda_client,
           print_line: Callable[[str, bool], None] | None = None) -> int:
    address = spec["address"]
    out = print_line or (lambda line, ok: print(line, file=sys.stdout if ok else sys.stderr, flush=True))
    manifest = read_manifest(spec["manifest"])
    if published_image(manifest, spec) is None and not spec["dry_run"]:
        out(
            f"{address}: the deploy manifest {spec['manifest']} records no image of content key "
            f"{spec['key_tag']} in {', '.join(spec['registries'])}: the publish of this run did not reach "
            f"those registries (see its output above); nothing deployed",
            False,
        )
        return 1
    functions: Sequence[str] = spec["functions"]
    with ThreadPoolExecutor(max_workers=max(1, min(len(functions), spec.get("max_workers") or 8))) as pool:
        results = list(pool.map(lambda f: deploy_function(spec, f, manifest, client_for), functions))
    for function, (ok, what) in zip(functions, results):
        out(f"{address} {function}: {what}" if ok else f"{address} {function}: FAILED: {what}", ok)
    return 0 if all(ok for ok, _ in results) else 1


def read_configuration(function: str, client_for: Callable[[str], Any]) -> dict[str, Any]:
    """What the preflight needs of one function (`lambda:GetFunctionConfiguration`, the smallest read
    permission), or the AWS error code and message that kept it from being read. Never raises."""
    try:
        client = client_for(function)
        config = client.get_function_configuration(FunctionName=function)
    except DeployError as e:  # no region (lambda_client)
        return {"function": function, "code": e.code or "NoRegion", "message": str(e)}
    except Exception as e:  # noqa: BLE001 - reported for this function; the others are still read
        response = getattr(e, "response", None)
        if isinstance(response, dict) and "Error" in response:  # ClientError
            error = response["Error"]
            code = error.get("Code") or type(e).__name__  # never empty: an empty code reads as "read"
            return {"function": function, "code": code, "message": error.get("Message", "")}
        return {"function": function, "code": type(e).__name__, "message": str(e)}
    return {
        "function": function,
        "architectures": list(config.get("Architectures") or ("x86_64",)),
        "package_type": config.get("PackageType") or "Zip",
    }


def read_configurations(spec: Mapping[str, Any], client_for: Callable[[str], Any] = lambda_client) -> list[dict[str, Any]]:
    functions: Sequence[str] = spec["functions"]
    with ThreadPoolExecutor(max_workers=max(1, min(len(functions), spec.get("max_workers") or 8))) as pool:
        return list(pool.map(lambda f: read_configuration(f, client_for), functions))


def main(argv: list[str]) -> int:
    if argv[1:2] == ["configurations"] and len(argv) == 3:
        with open(argv[2]) as f:
            json.dump(read_configurations(json.load(f)), sys.stdout)
        return 0
    if len(argv) != 2:
        print(f"usage: {argv[0]} SPEC_JSON | configurations SPEC_FILE", file=sys.stderr)
        return 2
    return deploy(json.loads(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
