"""Registry credentials for the registry scripts: the user's Docker config, ECR tokens through boto3
(written only to a private Docker config dir, see `private_docker_config`), and ECR repositories.

Part of the scripts `registry_client.py` runs (see its docstring).
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from typing import Any, Iterator

if __package__:  # imported as chromadb_lambda.scripts.* (by tests)
    from .registry_api import PublishError
else:  # run as a script: the sibling scripts are beside it in the process's sandbox
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from registry_api import PublishError  # pants: no-infer-dep


def docker_config_auth(address: str) -> str | None:
    """The `auth` of a registry in the user's Docker config (after `docker login`), if stored inline."""
    config_dir = os.environ.get("DOCKER_CONFIG") or os.path.join(os.environ.get("HOME", "/nonexistent"), ".docker")
    try:
        with open(os.path.join(config_dir, "config.json")) as f:
            auths = json.load(f).get("auths", {})
    except (OSError, ValueError):
        return None
    for key in (address, f"https://{address}", f"http://{address}"):
        if auths.get(key, {}).get("auth"):
            return auths[key]["auth"]
    return None


def _aws_error(action: str, address: str, error: Exception) -> PublishError:
    code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
    if code in ("AccessDeniedException", "AccessDenied"):
        hint = f"grant the IAM action `{action}` to the identity that runs `pants publish`"
    elif code in ("UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
                  "ExpiredTokenException", "ExpiredToken", "SignatureDoesNotMatch"):
        hint = "the AWS credentials were rejected: check AWS_PROFILE / AWS_ACCESS_KEY_ID and that they are current"
    else:
        hint = "see the AWS error above"
    return PublishError(f"AWS refused `{action}` for the ECR registry {address} ({code}): {hint}.")


def ecr_client(ecr: dict[str, Any], address: str) -> Any:
    try:
        import boto3  # pants: no-infer-dep (from the environment that runs Pants)
    except ImportError:
        raise PublishError(
            f"The registry {address} is an ECR registry, and boto3 is not importable by Pants: add "
            '`boto3` to `[GLOBAL].plugins` in pants.toml (or install it into the environment that runs Pants).'
        ) from None
    import botocore.exceptions  # pants: no-infer-dep

    # botocore reads AWS_DEFAULT_REGION; Lambda, the AWS CLI v2 and most SDKs also read AWS_REGION.
    region = ecr.get("region") or os.environ.get("AWS_REGION") or None
    try:
        return boto3.session.Session().client("ecr", region_name=region)
    except botocore.exceptions.NoRegionError:
        raise PublishError(
            f"No AWS region for the ECR registry {address}: set AWS_REGION (or AWS_DEFAULT_REGION, or a "
            "profile's region), or use the registry's `<account>.dkr.ecr.<region>.amazonaws.com` address."
        ) from None


def ecr_authorization(client: Any, ecr: dict[str, Any], address: str) -> str:
    """The base64 `AWS:<password>` that ECR's Docker login takes."""
    import botocore.exceptions  # pants: no-infer-dep

    kwargs = {"registryIds": [ecr["registry_id"]]} if ecr.get("registry_id") else {}
    try:
        data = client.get_authorization_token(**kwargs)["authorizationData"][0]
    except botocore.exceptions.NoCredentialsError:
        raise PublishError(
            f"No AWS credentials for the ECR registry {address}: configure the standard AWS chain "
            "(AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO, an instance or task role) in "
            "the environment of `pants publish`."
        ) from None
    except botocore.exceptions.ClientError as e:
        raise _aws_error("ecr:GetAuthorizationToken", address, e) from None
    except botocore.exceptions.BotoCoreError as e:
        raise PublishError(f"Cannot get an ECR token for {address}: {e}") from None
    return data["authorizationToken"]


def ensure_ecr_repository(client: Any, ecr: dict[str, Any], address: str, repository: str, spec: dict) -> bool:
    """Creates the repository when missing (if allowed). True if it was created."""
    import botocore.exceptions  # pants: no-infer-dep

    registry = {"registryId": ecr["registry_id"]} if ecr.get("registry_id") else {}
    try:
        client.describe_repositories(repositoryNames=[repository], **registry)
        return False
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] != "RepositoryNotFoundException":
            raise _aws_error("ecr:DescribeRepositories", address, e) from None
    if not spec["create_repository"]:
        raise PublishError(
            f"The ECR repository {repository} does not exist in {address}: create it, or set "
            "`[lambda-image].ecr_create_repositories = true` to let `pants publish` create it."
        )
    try:
        client.create_repository(
            repositoryName=repository,
            imageScanningConfiguration={"scanOnPush": spec["scan_on_push"]},
            imageTagMutability=spec["tag_mutability"],
            **registry,
        )
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] != "RepositoryAlreadyExistsException":  # a concurrent publish
            raise _aws_error("ecr:CreateRepository", address, e) from None
    return True


def write_docker_config(config_dir: str, address: str, auth: str) -> None:
    path = os.path.join(config_dir, "config.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auths": {address: {"auth": auth}}}, f)


@contextlib.contextmanager
def private_docker_config() -> Iterator[str]:
    """A 0700 directory, removed on exit, on SIGTERM and on Ctrl-C.

    It is made in the working directory, the process's Pants sandbox, which Pants deletes even when
    it kills the process (e.g. a push cancelled by Ctrl-C): no token survives in a temp dir.
    """
    path = tempfile.mkdtemp(prefix=".docker-config-", dir=os.getcwd())

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, _exit) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        for s, handler in previous.items():
            signal.signal(s, handler)


def registry_credentials(
    registry: dict, config_dir: str | None, secrets: list[str]
) -> tuple[str | None, str | None, Any]:
    """(basic auth for the registry API, `docker --config` dir or None, ECR client or None).

    ECR: a fresh token, written into `config_dir` (private) and added to `secrets`. Other registries:
    the user's own Docker config (`docker login`, credential helpers).
    """
    address = registry["address"]
    if registry.get("ecr") is None:
        return docker_config_auth(address), None, None
    client = ecr_client(registry["ecr"], address)
    basic_auth = ecr_authorization(client, registry["ecr"], address)
    secrets += [basic_auth, base64.b64decode(basic_auth).decode(errors="replace").partition(":")[2]]
    write_docker_config(config_dir, address, basic_auth)  # type: ignore[arg-type]
    return basic_auth, config_dir, client


def each_registry(spec: dict) -> Iterator[tuple[dict, str | None]]:
    """Every registry of the spec with its own private Docker config dir (ECR) or None."""
    needs_config = any(r.get("ecr") is not None for r in spec["registries"])
    with (private_docker_config() if needs_config else contextlib.nullcontext(None)) as config_root:
        for index, registry in enumerate(spec["registries"]):
            config_dir = None
            if config_root:
                config_dir = os.path.join(config_root, str(index))
                os.mkdir(config_dir, 0o700)
            yield registry, config_dir
