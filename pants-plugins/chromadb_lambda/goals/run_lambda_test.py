from __future__ import annotations

import json
import sys

import pytest
from pants.backend.docker.package_types import BuiltDockerImage
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.core.goals.package import BuiltPackage, PackageFieldSet
from pants.core.goals.run import RunRequest
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.target import InvalidFieldException, WrappedTarget, WrappedTargetRequest
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from chromadb_lambda.util_rules.engine import DockerEnvironment
from chromadb_lambda.goals.package import ChromadbLambdaPackageFieldSet
from chromadb_lambda.goals.run_lambda import ChromadbLambdaRunFieldSet, ChromadbLambdaTimeoutField, run_chromadb_lambda, run_spec
from chromadb_lambda.scripts import script_source
from chromadb_lambda.target_types import ChromadbLambdaBaseImageField, ChromadbLambdaHandlerField, ChromadbLambdaTarget

ADDRESS = Address("lambdas/word_polling", target_name="word_polling")


def test_run_spec_names_the_image_and_the_timeout_and_nothing_from_the_environment() -> None:
    assert json.loads(run_spec(ADDRESS, "sha256:abc", "/usr/bin/docker", 45)) == {
        "address": "lambdas/word_polling:word_polling",
        "docker": "/usr/bin/docker",
        "function_name": "word_polling",
        "image_id": "sha256:abc",
        "timeout": 45,
    }


def test_without_a_timeout_field_the_run_allows_30_seconds() -> None:
    assert json.loads(run_spec(ADDRESS, "sha256:abc", "/usr/bin/docker", None))["timeout"] == 30


def test_timeout_field_must_be_positive() -> None:
    assert ChromadbLambdaTimeoutField(900, ADDRESS).value == 900
    assert ChromadbLambdaTimeoutField(None, ADDRESS).value is None
    with pytest.raises(InvalidFieldException, match=r"The `timeout` field in target lambdas/word_polling:word_polling must be a positive number of seconds, but it is 0"):
        ChromadbLambdaTimeoutField(0, ADDRESS)


def test_run_request_packages_the_image_then_runs_the_script_on_it() -> None:
    target = ChromadbLambdaTarget({"handler": "handler.py:handle", "base_image": "//base:lambda-base"}, ADDRESS)
    field_set = ChromadbLambdaRunFieldSet(
        ADDRESS,
        handler=ChromadbLambdaHandlerField("handler.py:handle", ADDRESS),
        base_image=ChromadbLambdaBaseImageField("//base:lambda-base", ADDRESS),
        timeout=ChromadbLambdaTimeoutField(45, ADDRESS),
    )
    packaged: list[PackageFieldSet] = []
    created: list[FileContent] = []

    def package(request: PackageFieldSet) -> BuiltPackage:
        packaged.append(request)
        image = BuiltDockerImage(image_id="sha256:abc", tags=("word_polling:latest",), relpath="info.json")
        return BuiltPackage(Digest("e" * 64, 1), (image,))

    def create_digest(request: CreateDigest) -> Digest:
        created.extend(f for f in request if isinstance(f, FileContent))
        return Digest("d" * 64, 2)

    result = run_rule_with_mocks(
        run_chromadb_lambda,
        rule_args=[field_set, DockerBinary("/bin/docker", "sha"), DockerEnvironment(FrozenDict({"DOCKER_HOST": "unix:///d.sock"}))],
        mock_gets=[
            MockGet(output_type=WrappedTarget, input_types=(WrappedTargetRequest,), mock=lambda _: WrappedTarget(target)),
            MockGet(output_type=BuiltPackage, input_types=(ChromadbLambdaPackageFieldSet,), mock=package),
            MockGet(output_type=Digest, input_types=(CreateDigest,), mock=create_digest),
        ],
    )
    assert isinstance(result, RunRequest)
    [package_field_set] = packaged
    assert isinstance(package_field_set, ChromadbLambdaPackageFieldSet) and package_field_set.address == ADDRESS
    assert result.args[:2] == (sys.executable, "{chroot}/run_lambda_script.py")
    assert json.loads(result.args[2]) == {
        "address": "lambdas/word_polling:word_polling",
        "docker": "/bin/docker",
        "function_name": "word_polling",
        "image_id": "sha256:abc",
        "timeout": 45,
    }
    assert result.digest == Digest("d" * 64, 2)
    assert [(f.path, f.content) for f in created] == [
        ("run_lambda_script.py", script_source("run_lambda_script.py")),
        ("runtime_api.py", script_source("runtime_api.py")),
    ]
    assert result.extra_env["DOCKER_HOST"] == "unix:///d.sock"
