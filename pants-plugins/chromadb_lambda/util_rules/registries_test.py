from __future__ import annotations

import pytest
from pants.backend.docker.registries import DockerRegistries
from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException

from chromadb_lambda.util_rules.image_refs import lambda_docker_field_set, lambda_interpolation_context, push_targets
from chromadb_lambda.util_rules.registries import EcrRegistry, ecr_registry

ADDRESS = Address("lambdas/word_polling", target_name="word_polling")


def targets(
    config: dict, values: tuple[str, ...] = ("<all default registries>",), ecr: tuple[str, ...] = (), build_args=None
):
    return push_targets(
        lambda_docker_field_set(ADDRESS, "receipts/{name}", ("latest",), values),
        DockerRegistries.from_dict(config),
        default_repository="{name}",
        interpolation_context=lambda_interpolation_context(build_args or {}),
        tags=("latest",),
        key_tag="ck-0123",
        ecr_registries=ecr,
    )


@pytest.mark.parametrize(
    "address, marked, expected",
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", False, EcrRegistry("123456789012", "eu-west-1")),
        ("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", False, EcrRegistry("123456789012", "us-east-1")),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", False, EcrRegistry("123456789012", "cn-north-1")),
        ("registry.example.com:5000", False, None),
        ("127.0.0.1:5000", True, EcrRegistry(None, None)),
        ("public.ecr.aws", False, None),
    ],
)
def test_ecr_registry_is_recognised_by_address_or_configuration(address: str, marked: bool, expected) -> None:
    assert ecr_registry(address, marked) == expected


def test_default_registries_get_every_tag_and_the_content_key_tag() -> None:
    config = {
        "ecr": {"address": "123456789012.dkr.ecr.us-east-1.amazonaws.com", "default": True},
        "mirror": {"address": "mirror.example.com", "default": True, "extra_image_tags": ["stable"]},
        "other": {"address": "other.example.com"},
    }
    (ecr, mirror) = sorted(targets(config), key=lambda t: t.alias)
    assert ecr.refs == (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/receipts/word_polling:latest",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/receipts/word_polling:ck-0123",
    )
    assert ecr.ecr == EcrRegistry("123456789012", "us-east-1")
    assert mirror.tags == ("latest", "stable", "ck-0123") and mirror.ecr is None


def test_alias_marked_as_ecr_and_registry_repository_override() -> None:
    config = {"proxy": {"address": "127.0.0.1:5000", "repository": "mirror/{name}"}}
    (proxy,) = targets(config, ("@proxy",), ecr=("@proxy",))
    assert proxy.name == "127.0.0.1:5000/mirror/word_polling"
    assert proxy.ecr == EcrRegistry(None, None)


def test_explicit_addresses_and_skip_push() -> None:
    config = {"local": {"address": "localhost:5000", "skip_push": True}}
    local, explicit = targets(config, ("@local", "registry.example.com"))
    assert local.skip_push and not explicit.skip_push
    assert explicit.name == "registry.example.com/receipts/word_polling"


def test_unknown_alias_names_the_target_and_field() -> None:
    with pytest.raises(InvalidFieldException, match=r"The `registries` field in target lambdas/word_polling:word_polling .*alias: nope"):
        targets({}, ("@nope",))


def test_registry_repository_placeholders_as_docker_image_takes_them() -> None:
    config = {
        "target": {"address": "a.example.com", "repository": "mirror/{target_repository}"},
        "default": {"address": "b.example.com", "repository": "{default_repository}-{directory}"},
    }
    mirror, default = targets(config, ("@target", "@default"))
    assert mirror.name == "a.example.com/mirror/receipts/word_polling"
    assert default.name == "b.example.com/word_polling-word_polling"


def test_extra_image_tags_take_build_args() -> None:
    config = {"ci": {"address": "ci.example.com", "extra_image_tags": ["{build_args.GIT_COMMIT}"]}}
    (ci,) = targets(config, ("@ci",), build_args={"GIT_COMMIT": "c0ffee"})
    assert ci.refs == (
        "ci.example.com/receipts/word_polling:latest",
        "ci.example.com/receipts/word_polling:c0ffee",
        "ci.example.com/receipts/word_polling:ck-0123",
    )
