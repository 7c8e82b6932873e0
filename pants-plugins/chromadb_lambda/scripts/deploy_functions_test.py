from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chromadb_lambda.scripts.deploy_functions import (
    REFUSE,
    SKIP,
    UPDATE,
    Action,
    aws_error_message,
    DeployError,
    deploy,
    plan_action,
    published_image,
    read_configurations,
)

ADDRESS = "lambdas/word_polling:word_polling"
DIGEST = "sha256:" + "ab" * 32
OLD_DIGEST = "sha256:" + "cd" * 32
IMAGE = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/word_polling@{DIGEST}"
OLD_IMAGE = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/word_polling@{OLD_DIGEST}"
KEY = "d4b8ea2ae036325cc025a712d51a8054" + "0" * 32


def function(image: str = OLD_IMAGE, package_type: str = "Image", architectures: tuple[str, ...] = ("x86_64",),
             code_sha: str = "", resolved: str = "") -> dict[str, Any]:
    return {
        "Configuration": {"PackageType": package_type, "Architectures": list(architectures), "CodeSha256": code_sha},
        "Code": {"ImageUri": image, **({"ResolvedImageUri": resolved} if resolved else {})},
    }


@pytest.mark.parametrize(
    "current, expected",
    [
        (function(), Action(UPDATE, f"{OLD_IMAGE} -> {IMAGE}")),
        (function(image=IMAGE), Action(SKIP, f"already runs {IMAGE}")),
        # Real Lambda: CodeSha256 is the digest's hex, ResolvedImageUri names the digest.
        (function(image="repo:latest", code_sha="ab" * 32), Action(SKIP, f"already runs {IMAGE}")),
        (function(image="repo:latest", resolved=f"repo@{DIGEST}"), Action(SKIP, f"already runs {IMAGE}")),
        (function(image="repo:latest", code_sha="cd" * 32), Action(UPDATE, f"repo:latest -> {IMAGE}")),
    ],
)
def test_plan_skips_a_function_that_runs_the_digest_and_updates_the_others(current: dict, expected: Action) -> None:
    assert plan_action(ADDRESS, "fn", current, IMAGE, "x86_64") == expected


def test_plan_refuses_a_zip_function_naming_it_and_the_fix() -> None:
    action = plan_action(ADDRESS, "fn", function(image="", package_type="Zip"), IMAGE, "x86_64")
    assert action == Action(
        REFUSE,
        "the function's package type is Zip, and a container image cannot replace a .zip package: recreate fn "
        f"with PackageType=Image, or remove it from the `functions` field of {ADDRESS}",
    )


def test_plan_refuses_another_architecture_even_when_the_digest_matches() -> None:
    action = plan_action(ADDRESS, "fn", function(image=IMAGE, architectures=("x86_64",)), IMAGE, "arm64")
    assert action == Action(
        REFUSE,
        f"the function runs on x86_64, and the `architecture` field of {ADDRESS} is 'arm64': set "
        f'`architecture="x86_64"` on {ADDRESS} (its base image must be x86_64 too), or change the '
        "function's architecture in its own configuration",
    )


@pytest.mark.parametrize(
    "action, code, expected",
    [
        ("lambda:GetFunction", "ResourceNotFoundException",
         "no such function fn (in the region of the AWS credential chain, or the ARN's): create it, or fix the "
         f"`functions` field of {ADDRESS}"),
        ("lambda:UpdateFunctionCode", "AccessDeniedException",
         "access denied for `lambda:UpdateFunctionCode` on fn: grant it to the identity that runs `pants "
         "experimental-deploy`"),
        ("lambda:UpdateFunctionCode", "InvalidParameterValueException",
         "AWS refused `lambda:UpdateFunctionCode` on fn (InvalidParameterValueException): bad"),
    ],
)
def test_aws_errors_name_the_function_and_the_fix(action: str, code: str, expected: str) -> None:
    assert aws_error_message(ADDRESS, "fn", action, code, "bad") == expected


def manifest(key: str = KEY, image: str = IMAGE, registry: str = "reg") -> dict:
    return {"images": {ADDRESS: {"image": image, "registries": {registry: {"image": image, "content_key": key}}}}}


def spec(tmp_path: Path, manifest_data: dict | None, **overrides: Any) -> dict:
    path = tmp_path / "deploy.json"
    if manifest_data is not None:
        path.write_text(json.dumps(manifest_data))
    return {
        "address": ADDRESS, "functions": ["fn-a"], "alias": None, "architecture": "x86_64", "content_key": KEY,
        "key_tag": "ck-d4b8", "registries": ["other", "reg"], "manifest": str(path), "dry_run": False,
        "max_workers": 4, **overrides,
    }


def test_the_image_is_this_content_keys_record_of_a_deploy_registry(tmp_path: Path) -> None:
    assert published_image(manifest(), spec(tmp_path, None)) == IMAGE
    assert published_image(manifest(key="0" * 64), spec(tmp_path, None)) is None
    assert published_image(manifest(registry="elsewhere"), spec(tmp_path, None)) is None


class ClientError(Exception):
    """botocore's ClientError, by its shape."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.response = {"Error": {"Code": code, "Message": message}}


class FakeLambda:
    """A Lambda API of a few functions: name -> GetFunction response; records every change."""

    def __init__(self, functions: dict[str, dict]) -> None:
        self.functions = functions
        self.calls: list[tuple] = []
        self.aliases: dict[tuple[str, str], str] = {}

    def get_function(self, FunctionName: str) -> dict:
        if FunctionName not in self.functions:
            raise ClientError("ResourceNotFoundException", f"Function not found: {FunctionName}")
        return self.functions[FunctionName]

    def get_function_configuration(self, FunctionName: str) -> dict:
        self.calls.append(("get_function_configuration", FunctionName))
        return self.get_function(FunctionName)["Configuration"]

    def update_function_code(self, FunctionName: str, ImageUri: str) -> dict:
        self.calls.append(("update", FunctionName, ImageUri))
        self.functions[FunctionName]["Code"]["ImageUri"] = ImageUri
        return {}

    def get_waiter(self, name: str) -> Any:
        assert name == "function_updated_v2"
        calls = self.calls

        class Waiter:
            def wait(self, FunctionName: str, WaiterConfig: dict) -> None:
                calls.append(("wait", FunctionName))

        return Waiter()

    def publish_version(self, FunctionName: str) -> dict:
        self.calls.append(("publish_version", FunctionName))
        return {"Version": "7"}

    def update_alias(self, FunctionName: str, Name: str, FunctionVersion: str) -> dict:
        if (FunctionName, Name) not in self.aliases:
            raise ClientError("ResourceNotFoundException", "Alias not found")
        self.calls.append(("update_alias", FunctionName, Name, FunctionVersion))
        return {}

    def create_alias(self, FunctionName: str, Name: str, FunctionVersion: str) -> dict:
        self.calls.append(("create_alias", FunctionName, Name, FunctionVersion))
        self.aliases[(FunctionName, Name)] = FunctionVersion
        return {}


def run(spec_data: dict, fake: FakeLambda) -> tuple[int, list[tuple[str, bool]]]:
    lines: list[tuple[str, bool]] = []
    code = deploy(spec_data, client_for=lambda _: fake, print_line=lambda line, ok: lines.append((line, ok)))
    return code, lines


def test_one_missing_function_fails_by_name_while_the_others_deploy(tmp_path: Path) -> None:
    fake = FakeLambda({"fn-a": function(), "fn-c": function(image=IMAGE)})
    code, lines = run(spec(tmp_path, manifest(), functions=["fn-a", "fn-b", "fn-c"], alias="live"), fake)
    assert code == 1
    assert lines == [
        (f"{ADDRESS} fn-a: updated {OLD_IMAGE} -> {IMAGE} (version 7, alias live)", True),
        (f"{ADDRESS} fn-b: FAILED: no such function fn-b (in the region of the AWS credential chain, or the "
         f"ARN's): create it, or fix the `functions` field of {ADDRESS}", False),
        (f"{ADDRESS} fn-c: already runs {IMAGE}, not updated", True),
    ]
    assert fake.calls == [
        ("update", "fn-a", IMAGE), ("wait", "fn-a"), ("publish_version", "fn-a"), ("create_alias", "fn-a", "live", "7"),
    ]


def test_all_up_to_date_exits_zero_and_changes_nothing(tmp_path: Path) -> None:
    fake = FakeLambda({"fn-a": function(image=IMAGE)})
    assert run(spec(tmp_path, manifest()), fake) == (0, [(f"{ADDRESS} fn-a: already runs {IMAGE}, not updated", True)])
    assert fake.calls == []


def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    fake = FakeLambda({"fn-a": function(), "fn-z": function(package_type="Zip")})
    code, lines = run(spec(tmp_path, manifest(), functions=["fn-a", "fn-z"], dry_run=True, alias="live"), fake)
    assert code == 1
    assert [line for line, _ in lines] == [
        f"{ADDRESS} fn-a: would update {OLD_IMAGE} -> {IMAGE}, then move alias live",
        f"{ADDRESS} fn-z: FAILED: refused: the function's package type is Zip, and a container image cannot "
        f"replace a .zip package: recreate fn-z with PackageType=Image, or remove it from the `functions` field "
        f"of {ADDRESS}",
    ]
    assert fake.calls == []


def test_dry_run_of_an_unpublished_key_names_its_tag(tmp_path: Path) -> None:
    fake = FakeLambda({"fn-a": function()})
    code, lines = run(spec(tmp_path, None, dry_run=True), fake)
    assert (code, lines) == (0, [(f"{ADDRESS} fn-a: would update {OLD_IMAGE} -> the image publish pushes (ck-d4b8)", True)])


def test_a_deploy_without_a_published_record_of_this_key_deploys_nothing(tmp_path: Path) -> None:
    fake = FakeLambda({"fn-a": function()})
    code, lines = run(spec(tmp_path, manifest(key="1" * 64)), fake)
    assert code == 1
    assert lines == [(
        f"{ADDRESS}: the deploy manifest {tmp_path / 'deploy.json'} records no image of content key ck-d4b8 in "
        "other, reg: the publish of this run did not reach those registries (see its output above); nothing deployed",
        False,
    )]
    assert fake.calls == []


def test_the_ecr_registry_of_the_functions_region_comes_first(tmp_path: Path) -> None:
    east, west = "123456789012.dkr.ecr.us-east-1.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    data = {"images": {ADDRESS: {"registries": {
        east: {"image": f"{east}/fn@{DIGEST}", "content_key": KEY},
        west: {"image": f"{west}/fn@{DIGEST}", "content_key": KEY},
    }}}}
    both = spec(tmp_path, None, registries=[east, west])
    assert published_image(data, both, "eu-west-1") == f"{west}/fn@{DIGEST}"
    assert published_image(data, both, "us-east-1") == f"{east}/fn@{DIGEST}"
    assert published_image(data, both) == f"{east}/fn@{DIGEST}"


def test_an_alias_that_cannot_move_fails_and_says_the_code_was_updated(tmp_path: Path) -> None:
    fake = FakeLambda({"fn-a": function()})

    def denied(**_: Any) -> dict:
        raise ClientError("AccessDeniedException", "no")

    fake.publish_version = denied  # type: ignore[method-assign]
    code, lines = run(spec(tmp_path, manifest(), alias="live"), fake)
    assert (code, lines) == (1, [(
        f"{ADDRESS} fn-a: FAILED: updated {OLD_IMAGE} -> {IMAGE}, but alias live was not moved: access denied for "
        "`lambda:PublishVersion` on fn-a: grant it to the identity that runs `pants experimental-deploy`",
        False,
    )])
    assert fake.calls == [("update", "fn-a", IMAGE), ("wait", "fn-a")]


class NoCredentialsError(Exception):
    """botocore's NoCredentialsError, by its name."""


def test_the_preflight_reads_each_functions_configuration_and_reports_why_one_cannot_be_read() -> None:
    fake = FakeLambda({"fn-a": function(architectures=("arm64",)), "fn-z": function(package_type="Zip")})

    def client_for(name: str) -> Any:
        if name == "fn-nocreds":
            no_credentials = FakeLambda({})
            no_credentials.get_function_configuration = lambda **_: (_ for _ in ()).throw(  # type: ignore[method-assign]
                NoCredentialsError("Unable to locate credentials")
            )
            return no_credentials
        if name == "fn-noregion":
            raise DeployError("no AWS region: set AWS_REGION", "NoRegion")
        if name == "fn-nocode":
            no_code = FakeLambda({})
            no_code.get_function_configuration = lambda **_: (_ for _ in ()).throw(  # type: ignore[method-assign]
                ClientError("", "odd")
            )
            return no_code
        return fake

    functions = ["fn-a", "fn-z", "fn-missing", "fn-nocreds", "fn-noregion", "fn-nocode"]
    answer = read_configurations({"functions": functions}, client_for)
    assert answer == [
        {"function": "fn-a", "architectures": ["arm64"], "package_type": "Image"},
        {"function": "fn-z", "architectures": ["x86_64"], "package_type": "Zip"},
        {"function": "fn-missing", "code": "ResourceNotFoundException", "message": "Function not found: fn-missing"},
        {"function": "fn-nocreds", "code": "NoCredentialsError", "message": "Unable to locate credentials"},
        {"function": "fn-noregion", "code": "NoRegion", "message": "no AWS region: set AWS_REGION"},
        # An error without a code is still an error (the exception's class names it).
        {"function": "fn-nocode", "code": "ClientError", "message": "odd"},
    ]
    # Read only: GetFunctionConfiguration, nothing else.
    assert sorted(fake.calls) == [
        ("get_function_configuration", "fn-a"), ("get_function_configuration", "fn-missing"),
        ("get_function_configuration", "fn-z"),
    ]
