"""Pushes Lambda images to their registries, pulls published ones, and records what was published.

Run with Pants' own interpreter, as a script, by `pants publish` (see publish.py) and by `pants
package` with `[lambda-image].pull_from_registries` (see pull.py):

    registry_client.py push SPEC_JSON       -> prints a JSON result on stdout
    registry_client.py pull SPEC_JSON       -> pulls the content key tag from the first registry that
                                               has it, tags it locally; prints a JSON result
    registry_client.py report MANIFEST SESSION ADDRESS RESULT_JSON [--existing ADDRESS...]
                                            -> prints the outcome, merges the deploy manifest
                                               (entries of addresses not `--existing` are dropped)

Standard library only, plus boto3 for ECR registries. ECR tokens (`ecr:GetAuthorizationToken`) are
written to a private Docker config (a 0700 directory in the process sandbox, removed before the
process ends, and with the sandbox if the process is killed) and passed to `docker --config`: they
never reach an argument list, an environment, stdout, a log, Pants' caches or `dist/`. Everything
printed is scrubbed of them anyway.
"""
from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterator

IMAGE_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
INDEX_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)

# Never retried: the registry understood the request and said no.
_AUTH_FAILURE_RE = re.compile(
    r"unauthorized|authentication required|access denied|denied:|no basic auth credentials|forbidden",
    re.IGNORECASE,
)
# Retried a bounded number of times: the registry or the network hiccuped.
_TRANSIENT_FAILURE_RE = re.compile(
    r"received unexpected HTTP status: 5\d\d|\b50[0234]\b|connection reset by peer|connection refused"
    r"|i/o timeout|TLS handshake timeout|unexpected EOF|: EOF\b|server misbehaving|toomanyrequests"
    r"|too many requests",
    re.IGNORECASE,
)
_DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")


class PublishError(Exception):
    """A push that cannot succeed as configured; the message says what to fix."""


def _backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (1, 2, 4, at most 8)."""
    return min(2.0 ** (attempt - 1), 8.0)


def _after(attempt: int) -> str:
    return f" after {attempt} attempts" if attempt > 1 else ""


def classify_push_failure(output: str) -> str:
    """`auth`, `transient` or `other`: only transient failures are retried."""
    if _AUTH_FAILURE_RE.search(output):
        return "auth"
    if _TRANSIENT_FAILURE_RE.search(output):
        return "transient"
    return "other"


def scrub(text: str, secrets: Iterator[str] | list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def is_loopback(address: str) -> bool:
    host = urllib.parse.urlsplit(f"//{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def registry_base_urls(address: str) -> tuple[str, ...]:
    # Docker itself speaks plain HTTP to loopback registries (insecure by default); so do we.
    return (f"https://{address}", f"http://{address}") if is_loopback(address) else (f"https://{address}",)


# --- the registry HTTP API v2 ---------------------------------------------------------------------


def _parse_challenge(header: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def _open(request: urllib.request.Request, timeout: float = 30):  # noqa: ANN202 - http.client response
    return urllib.request.urlopen(request, timeout=timeout)


def manifest_head(
    address: str,
    repository: str,
    reference: str,
    basic_auth: str | None,
    attempts: int = 1,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, str] | None:
    """(digest, media type) of a tag in a registry, or None if the tag does not exist.

    Basic credentials are sent as-is (ECR, htpasswd registries) or exchanged for a bearer token when
    the registry asks for one (Docker Hub, Harbor, GitLab...). An unreachable registry or a 5xx is
    retried up to `attempts` times; a refusal is not.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _manifest_head_once(address, repository, reference, basic_auth)
        except _Unreachable as e:
            if attempt == attempts:
                raise PublishError(f"Cannot reach the registry {address}{_after(attempt)}: {e.args[0]}") from None
            sleep(_backoff(attempt))
    raise AssertionError("unreachable")


class _Unreachable(Exception):
    pass


def _manifest_head_once(address: str, repository: str, reference: str, basic_auth: str | None) -> tuple[str, str] | None:
    last_error: Exception | None = None
    for base_url in registry_base_urls(address):
        url = f"{base_url}/v2/{repository}/manifests/{reference}"
        headers = {"Accept": ", ".join((*IMAGE_MANIFEST_TYPES, *INDEX_MANIFEST_TYPES))}
        if basic_auth:
            headers["Authorization"] = f"Basic {basic_auth}"
        try:
            try:
                response = _open(urllib.request.Request(url, method="HEAD", headers=headers))
            except urllib.error.HTTPError as e:
                challenge = e.headers.get("WWW-Authenticate", "") if e.code == 401 else ""
                if not challenge.lower().startswith("bearer"):
                    raise
                headers["Authorization"] = f"Bearer {_bearer_token(challenge, basic_auth)}"
                response = _open(urllib.request.Request(url, method="HEAD", headers=headers))
            with response:
                return response.headers["Docker-Content-Digest"], response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            if e.code in (401, 403):
                raise PublishError(
                    f"The registry {address} refused to show {repository}:{reference} (HTTP {e.code}): "
                    "check the registry credentials (for ECR, the `ecr:BatchGetImage` permission)."
                ) from None
            last_error = e
        except OSError as e:  # URLError, TLS errors, connection refused/reset
            last_error = e
    raise _Unreachable(str(last_error))


def _bearer_token(challenge: str, basic_auth: str | None) -> str:
    params = _parse_challenge(challenge)
    query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
    headers = {"Authorization": f"Basic {basic_auth}"} if basic_auth else {}
    with _open(urllib.request.Request(f"{params['realm']}?{query}", headers=headers)) as response:
        body = json.load(response)
    return body.get("token") or body["access_token"]


# --- credentials ----------------------------------------------------------------------------------


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


# --- pushing --------------------------------------------------------------------------------------


def run_docker(spec: dict, config_dir: str | None, *args: str) -> subprocess.CompletedProcess:
    argv = [spec["docker"], *(("--config", config_dir) if config_dir else ()), *args]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def tag_image(spec: dict, image_id: str, ref: str) -> None:
    tagged = run_docker(spec, None, "tag", image_id, ref)
    if tagged.returncode != 0:
        raise PublishError(f"`docker tag {image_id} {ref}` failed: {_last_line(tagged.stdout)}")


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
                f"The registry {address} refused the {verb} of {ref} (not retried): {_last_line(output)}\n"
                f"{refused_hint}"
            )
        if kind != "transient" or attempt == attempts:
            what = f"Pushing {ref} to" if verb == "push" else f"Pulling {ref} from"
            raise PublishError(f"{what} {address} failed{_after(attempt)}: {_last_line(output)}")
        sleep(_backoff(attempt))
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


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


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
    import registry_push  # pants: no-infer-dep (beside this script in the sandbox; `report` never needs it)

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
                raise PublishError(f"Pushing {address}/{repository} to {address} failed{_after(attempt)}: {e}") from None
            time.sleep(_backoff(attempt))
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


# --- pulling a published image --------------------------------------------------------------------


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
        raise PublishError(f"`docker image inspect {ref}` failed after the pull: {_last_line(inspected.stdout)}")
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


# --- the deploy manifest --------------------------------------------------------------------------

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
