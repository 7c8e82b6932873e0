"""`pants experimental-deploy` end to end: real Pants in a scratch copy of the repo, the real engine,
a real `docker-registry` standing in for ECR (htpasswd user `AWS` with the password moto's ECR token
decodes to), and a moto server for the ECR and Lambda APIs over HTTP. The Lambda functions are
`PackageType=Image` functions the test creates through boto3; moto needs no Docker engine for
CreateFunction, GetFunction, UpdateFunctionCode, PublishVersion and the aliases.

The tests run in order and share one scratch repo, as successive deploys of a real repo do. The
preflight (a function of another architecture refused by `pants publish` and `experimental-deploy`
before anything is pushed) is checked against the registry's own API and the deploy manifest file.
"""
from __future__ import annotations

import base64
import json
import os
import random
import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from e2e.harness import PantsResult, Registry, copy_repo, free_port, init_git_repo, run_pants, stop_pantsd

REPOSITORY = f"chromadb-lambda-deploy-{uuid.uuid4().hex[:8]}"
ACCOUNT = str(random.SystemRandom().randrange(10**11, 10**12))
MOTO_PASSWORD = f"{ACCOUNT}-auth-token"
TOKEN = base64.b64encode(f"AWS:{MOTO_PASSWORD}".encode()).decode()
# Before any deploy, every function runs an image of another repository (what an IaC run created).
PLACEHOLDER = "127.0.0.1:1/placeholder@sha256:" + "0" * 64
# target name -> (functions of its `functions` field, `function_alias`)
DEPLOYED = {
    "word_polling": (("word-polling-a", "word-polling-b"), "live"),
    "line_polling": (("line-polling",), None),
    "list_pending": (("list-pending",), None),
}
TARGETS = tuple(f"lambdas/{name}:{name}" for name in DEPLOYED)
# The deploy manifest `pants publish` merges (`[lambda-image].deploy_manifest` in the dist dir).
MANIFEST = "dist/lambda-images.deploy.json"


def set_fields(root: Path, name: str, fields: str) -> None:
    """Adds `fields` to the `chromadb_lambda` target of lambdas/<name>/BUILD (replacing earlier ones)."""
    build = root / "lambdas" / name / "BUILD"
    text = re.sub(r'\n    functions=.*\n(    [a-z_]+=.*\n)*(?=\))', "\n", build.read_text())
    build.write_text(text.replace('base_image="//base:lambda-base",\n', f'base_image="//base:lambda-base",\n{fields}', 1))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("deploy"))
    for name, (functions, alias) in DEPLOYED.items():
        set_fields(root, name, f"    functions={list(functions)!r},\n" + (f'    function_alias="{alias}",\n' if alias else ""))
    init_git_repo(root)
    work = tmp_path_factory.mktemp("deploy-services")
    port = free_port()
    previous_account = os.environ.get("MOTO_ACCOUNT_ID")
    os.environ["MOTO_ACCOUNT_ID"] = ACCOUNT  # read by the in-process moto server on every request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    aws_env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_ECR": endpoint,
        "AWS_ENDPOINT_URL_LAMBDA": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-credentials"),
        "AWS_CONFIG_FILE": str(work / "no-config"),
    }
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    lambda_api = session.client("lambda", endpoint_url=endpoint)
    role = session.client("iam", endpoint_url=endpoint).create_role(
        RoleName="deploy-e2e", AssumeRolePolicyDocument="{}", Path="/"
    )["Role"]["Arn"]
    try:
        with Registry(work / "ecr", credentials=("AWS", MOTO_PASSWORD)) as registry:
            yield {"root": root, "registry": registry, "aws_env": aws_env, "lambda": lambda_api, "role": role}
    finally:
        stop_pantsd(root)
        moto.stop()
        if previous_account is None:
            os.environ.pop("MOTO_ACCOUNT_ID", None)
        else:
            os.environ["MOTO_ACCOUNT_ID"] = previous_account


def create_function(world: dict, name: str, architecture: str = "x86_64") -> None:
    world["lambda"].create_function(
        FunctionName=name, Role=world["role"], PackageType="Image", Code={"ImageUri": PLACEHOLDER},
        Architectures=[architecture],
    )


def pants_goal(world: dict, goal: str, targets: tuple[str, ...], extra: tuple[str, ...] = ()) -> PantsResult:
    """`goal` of `targets` against the test's registry (standing in for ECR) and moto's AWS API."""
    registries = {"ecr": {"address": world["registry"].address, "default": True}}
    return run_pants(
        world["root"],
        [
            f"--docker-registries={registries!r}",
            "--lambda-image-ecr-registries=['@ecr']",
            f"--docker-default-repository={REPOSITORY}/{{name}}",
            *extra,
            goal,
            *targets,
        ],
        env=world["aws_env"],
        pantsd=True,
    )


def deploy(world: dict, *targets: str, extra: tuple[str, ...] = ()) -> PantsResult:
    return pants_goal(world, "experimental-deploy", targets or TARGETS, extra)


def publish(world: dict, *targets: str) -> PantsResult:
    return pants_goal(world, "publish", targets)


def registry_get(registry: Registry, path: str) -> dict | None:
    """The registry API's JSON answer for `path`, or None for a 404 (no such repository)."""
    request = urllib.request.Request(f"http://{registry.address}/v2/{path}", headers={"Authorization": f"Basic {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def registry_tags(registry: Registry, name: str) -> list[str] | None:
    """The tags of a Lambda's repository, or None if the registry has no such repository."""
    answer = registry_get(registry, f"{REPOSITORY}/{name}/tags/list")
    return None if answer is None else sorted(answer.get("tags") or [])


def registry_catalog(registry: Registry) -> list[str]:
    return (registry_get(registry, "_catalog") or {}).get("repositories") or []


def registry_digest(registry: Registry, name: str) -> str:
    """The digest the registry serves for the `latest` tag of a Lambda's repository."""
    request = urllib.request.Request(
        f"http://{registry.address}/v2/{REPOSITORY}/{name}/manifests/latest",
        method="HEAD",
        headers={
            "Authorization": f"Basic {TOKEN}",
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["Docker-Content-Digest"]


def image_uri(world: dict, function: str) -> str:
    return world["lambda"].get_function(FunctionName=function)["Code"]["ImageUri"]


def expected_uri(world: dict, name: str) -> str:
    """Hand-written shape: <registry>/<repository>/<name>@<digest the registry serves>."""
    registry = world["registry"]
    return f"{registry.address}/{REPOSITORY}/{name}@{registry_digest(registry, name)}"


def lines_of(result: PantsResult, target: str) -> dict[str, str]:
    """function -> what the deploy process said about it (`<target> <function>: <what>`)."""
    prefix = re.escape(target)
    return dict(re.findall(rf"^{prefix} (\S+): (.*)$", result.stdout + result.stderr, re.MULTILINE))


def test_first_deploy_points_every_function_at_its_image_by_digest(world: dict) -> None:
    for functions, _ in DEPLOYED.values():
        for function in functions:
            create_function(world, function)
    result = deploy(world)
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}"
    for name, (functions, alias) in DEPLOYED.items():
        uri = expected_uri(world, name)
        assert "@sha256:" in uri and ":latest" not in uri
        said = lines_of(result, f"lambdas/{name}:{name}")
        for function in functions:
            assert image_uri(world, function) == uri, function
            expected = f"updated {PLACEHOLDER} -> {uri}" + (" (version 1, alias live)" if alias else "")
            assert said[function] == expected, function
            if alias:
                assert world["lambda"].get_alias(FunctionName=function, Name=alias)["FunctionVersion"] == "1"
    # Pants' goal lists each target as deployed, after publishing it.
    for target in TARGETS:
        assert f"✓ {target} deployed to " in result.stderr


def test_second_deploy_updates_nothing(world: dict) -> None:
    before = {f: image_uri(world, f) for functions, _ in DEPLOYED.values() for f in functions}
    result = deploy(world)
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}"
    for name, (functions, _) in DEPLOYED.items():
        said = lines_of(result, f"lambdas/{name}:{name}")
        for function in functions:
            assert said[function] == f"already runs {before[function]}, not updated"
    assert {f: image_uri(world, f) for f in before} == before
    # No new version either: the alias still points at version 1, and version 2 does not exist.
    versions = world["lambda"].list_versions_by_function(FunctionName="word-polling-a")["Versions"]
    assert sorted(v["Version"] for v in versions) == ["$LATEST", "1"]


def test_one_edited_handler_updates_exactly_its_function(world: dict) -> None:
    root = world["root"]
    before = {f: image_uri(world, f) for functions, _ in DEPLOYED.values() for f in functions}
    handler = root / "lambdas" / "line_polling" / "handler.py"
    handler.write_text(handler.read_text() + "\n# deployed by deploy_e2e_test\n")

    # The dry run names the plan and changes nothing (and publishes nothing).
    dry = deploy(world, extra=("--lambda-deploy-dry-run",))
    assert dry.exit_code == 0, f"{dry.stdout}\n{dry.stderr}"
    # The new key is not published yet: the plan names it by its content key tag.
    [(function, plan)] = lines_of(dry, "lambdas/line_polling:line_polling").items()
    assert function == "line-polling"
    assert re.fullmatch(rf"would update {re.escape(before['line-polling'])} -> the image publish pushes \(ck-[0-9a-f]{{32}}\)", plan)
    assert lines_of(dry, "lambdas/list_pending:list_pending") == {
        "list-pending": f"would skip: already runs {before['list-pending']}"
    }
    assert {f: image_uri(world, f) for f in before} == before

    result = deploy(world)
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}"
    new_uri = expected_uri(world, "line_polling")
    assert new_uri != before["line-polling"]
    assert lines_of(result, "lambdas/line_polling:line_polling") == {
        "line-polling": f"updated {before['line-polling']} -> {new_uri}"
    }
    after = {f: image_uri(world, f) for f in before}
    assert after == {**before, "line-polling": new_uri}


def test_a_missing_function_is_reported_by_name_while_the_others_deploy(world: dict) -> None:
    create_function(world, "list-pending-2")
    set_fields(world["root"], "list_pending", '    functions=["list-pending", "does-not-exist", "list-pending-2"],\n')
    result = deploy(world, "lambdas/list_pending:list_pending")
    assert result.exit_code != 0
    uri = expected_uri(world, "list_pending")
    address = "lambdas/list_pending:list_pending"
    assert lines_of(result, address) == {
        "list-pending": f"already runs {uri}, not updated",
        "does-not-exist": "FAILED: no such function does-not-exist (in the region of the AWS credential chain, or "
        f"the ARN's): create it, or fix the `functions` field of {address}",
        "list-pending-2": f"updated {PLACEHOLDER} -> {uri}",
    }
    assert image_uri(world, "list-pending-2") == uri
    assert f"✕ {address} failed" in result.stderr
    # The publish before it could not read does-not-exist, said so, and published (the default
    # `[lambda-deploy].function_check = "warn"`).
    assert (
        f"{address}: publishing without comparing the `architecture` field ('x86_64') with the function "
        "does-not-exist, whose configuration could not be read: there is no function does-not-exist (in the "
        "region of the AWS credential chain, or the ARN's): create it, or fix the `functions` field of "
        f"{address}. `[lambda-deploy].function_check = \"off\"` publishes without reading functions; \"strict\" "
        "refuses instead."
    ) in result.stderr


def refusal(address: str, refused: str) -> str:
    """The preflight's message for submit-batch-arm (arm64) and an x86_64 target, hand-written."""
    return (
        f"{address} {refused}: its `architecture` field is 'x86_64', and the function submit-batch-arm runs on "
        f"arm64, so it could not run this image. Set `architecture=\"arm64\"` on {address} (its base image must be "
        "arm64 too), or change the architecture in the configuration of submit-batch-arm. Nothing was pushed."
    )


def refused_before_the_push(world: dict, command: Callable[..., PantsResult], address: str) -> PantsResult:
    """Runs `command` on `address`, which must fail having pushed nothing: no manifest of any
    repository (the base's included), the repository never made, the deploy manifest the same file,
    byte for byte."""
    registry = world["registry"]
    manifest = world["root"] / MANIFEST
    manifest_before, puts_before = manifest.read_bytes(), registry.manifest_puts()
    result = command(world, address)
    assert result.exit_code != 0
    assert registry.manifest_puts() == puts_before
    assert registry_tags(registry, "submit_batch") is None
    assert f"{REPOSITORY}/submit_batch" not in registry_catalog(registry)
    assert manifest.read_bytes() == manifest_before
    return result


def test_publish_refuses_a_function_of_another_architecture_before_the_push(world: dict) -> None:
    create_function(world, "submit-batch-arm", architecture="arm64")
    set_fields(world["root"], "submit_batch", '    functions=["submit-batch-arm"],\n')
    address = "lambdas/submit_batch:submit_batch"
    result = refused_before_the_push(world, publish, address)
    assert refusal(address, "is not published") in result.stderr
    registry = world["registry"]
    assert f"✕ {registry.address}/{REPOSITORY}/submit_batch:latest failed for (refused before the push: see above)." in result.stderr


def test_deploy_refuses_it_before_the_push_too(world: dict) -> None:
    address = "lambdas/submit_batch:submit_batch"
    result = refused_before_the_push(world, deploy, address)
    assert refusal(address, "is neither published nor deployed") in result.stderr
    assert f"✕ {address} failed for submit-batch-arm (refused before the push: see above)" in result.stderr
    assert image_uri(world, "submit-batch-arm") == PLACEHOLDER


def test_a_function_of_the_targets_architecture_publishes_as_before(world: dict) -> None:
    create_function(world, "submit-batch")
    set_fields(world["root"], "submit_batch", '    functions=["submit-batch"],\n')
    address = "lambdas/submit_batch:submit_batch"
    registry = world["registry"]
    result = publish(world, address)
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}"
    tags = registry_tags(registry, "submit_batch")
    assert tags is not None and len(tags) == 2 and "latest" in tags
    [key_tag] = [t for t in tags if t != "latest"]
    assert re.fullmatch(r"ck-[0-9a-f]{32}", key_tag)
    entry = json.loads((world["root"] / MANIFEST).read_text())["images"][address]
    assert (entry["image"], entry["content_key_tag"]) == (expected_uri(world, "submit_batch"), key_tag)


def test_arm64_on_the_amd64_base_fails_the_build_naming_the_target_and_field(world: dict) -> None:
    set_fields(world["root"], "submit_batch", '    functions=["submit-batch-arm"],\n    architecture="arm64",\n')
    address = "lambdas/submit_batch:submit_batch"
    result = deploy(world, address)
    assert result.exit_code != 0
    assert (
        f"The `architecture` field of {address} is 'arm64', but its base image is amd64: build the base for "
        "arm64 (`docker build --platform linux/arm64`), or set `architecture` to the base's ('x86_64'). This "
        "machine's Docker engine runs amd64 images and cannot build arm64 ones (no emulation): build "
        f"{address} on an arm64 machine."
    ) in re.sub(r"\s+", " ", result.stderr)
    assert image_uri(world, "submit-batch-arm") == PLACEHOLDER
