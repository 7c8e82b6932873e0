import hashlib

import pytest
from pants.backend.docker.target_types import DockerImageTarget
from pants.backend.python.target_types import PythonSourceTarget
from pants.engine.addresses import Addresses
from pants.engine.target import InvalidFieldException, Target, WrappedTarget

from chromadb_lambda.testutil import BASE as BASE_ADDRESS
from chromadb_lambda.testutil import BASE_IDENTITY, CLOSURE, LAMBDA, lambda_subsystem, lambda_target, rule_requests
from chromadb_lambda.util_rules.closure import LambdaClosure, LambdaClosureRequest
from chromadb_lambda.util_rules.content_keys import (
    BaseImageIdentity,
    BaseImageIdentityRequest,
    LambdaImageKeyRequest,
    compute_lambda_image_key,
    dockerfile_template,
    key_ref,
    key_tag,
    lambda_content_key,
)
from chromadb_lambda.util_rules.context import generate_dockerfile

BASE = BaseImageIdentity(context_fingerprint="a" * 64, dockerfile="base/Dockerfile", build_args=("X=1", "Y=2"))


def key(**overrides: object) -> str:
    inputs = dict(dockerfile_template="FROM <base image>\n", context_fingerprint="c" * 64, base_key=BASE.key, builder="assembler")
    inputs.update(overrides)
    return lambda_content_key(**inputs)  # type: ignore[arg-type]


def test_key_is_a_pure_function_of_its_inputs() -> None:
    assert key() == key()
    assert len(key()) == 64


def test_every_input_changes_the_key() -> None:
    changed = [
        key(dockerfile_template="FROM <base image>\nCMD []\n"),
        key(context_fingerprint="d" * 64),
        key(base_key=BaseImageIdentity("b" * 64, "base/Dockerfile", ("X=1", "Y=2")).key),
        key(builder="docker-build"),
    ]
    assert len({key(), *changed}) == 1 + len(changed)


def test_base_identity_ignores_build_arg_order() -> None:
    assert BaseImageIdentity("a" * 64, "base/Dockerfile", ("Y=2", "X=1")).key == BASE.key
    assert BaseImageIdentity("a" * 64, "base/Dockerfile", ("X=1", "Y=3")).key != BASE.key


def test_key_tag_is_a_valid_docker_tag() -> None:
    tag = key_tag(key())
    assert tag.startswith("ck-") and len(tag) == 35


def test_base_ref_names_the_repository_and_content_but_repository_is_not_identity() -> None:
    named = BaseImageIdentity("a" * 64, "base/Dockerfile", ("X=1", "Y=2"), repository="acme/base")
    assert named.key == BASE.key
    assert named.ref == f"acme/base:ck-{BASE.key[:32]}"


def test_upstream_images_are_part_of_the_base_identity() -> None:
    with_upstream = BaseImageIdentity("a" * 64, "base/Dockerfile", ("X=1", "Y=2"), upstream_keys=("u" * 64,))
    assert with_upstream.key != BASE.key
    assert BaseImageIdentity("a" * 64, "base/Dockerfile", ("X=1", "Y=2"), upstream_keys=("v" * 64,)).key != with_upstream.key


def test_task_root_enters_the_key_once_through_the_dockerfile() -> None:
    # `[lambda-image].task_root` shapes the Dockerfile (COPY, WORKDIR, ENV): that is how it changes
    # the key; `lambda_content_key` takes no option of its own for it.
    var_task = generate_dockerfile("<base image>", "/var/task", "h.handle", True)
    app = generate_dockerfile("<base image>", "/app", "h.handle", True)
    assert "WORKDIR /app" in app and "WORKDIR /var/task" in var_task
    assert key(dockerfile_template=var_task) != key(dockerfile_template=app)


def test_key_ref_names_the_repository_and_the_key_tag() -> None:
    assert key_ref("acme/fn", "0123456789abcdef" * 4) == "acme/fn:ck-0123456789abcdef0123456789abcdef"


def test_arm64_enters_the_key_and_x86_64_keeps_the_keys_made_before_the_field() -> None:
    # The key of x86_64 is the hash of exactly the inputs keys had before `architecture` existed.
    before = hashlib.sha256(
        (
            '{"base":"' + BASE.key + '","builder":"assembler","context":"' + "c" * 64
            + '","dockerfile":"FROM <base image>\\n","version":1}'
        ).encode()
    ).hexdigest()
    assert key() == key(architecture="x86_64") == before
    assert key(architecture="arm64") != before


def lambda_key_answer(base_target: Target):
    """Answers the requests of `compute_lambda_image_key` for LAMBDA, whose base is `base_target`."""
    targets = {LAMBDA: lambda_target(), BASE_ADDRESS: base_target}
    outputs = {Addresses: Addresses([BASE_ADDRESS]), LambdaClosure: CLOSURE, BaseImageIdentity: BASE_IDENTITY}

    def answer(get):
        if get.output_type is WrappedTarget:
            return WrappedTarget(targets[get.inputs[0].address])
        return outputs[get.output_type]

    return answer


def test_lambda_key_asks_for_the_base_identity_with_the_closure() -> None:
    # Every Lambda's key waits for the base's identity, which builds what the base COPYs (its
    # PEX): it is computed while the closures are, not after the first one.
    batches: list[tuple] = []
    key = rule_requests(
        compute_lambda_image_key(LambdaImageKeyRequest(LAMBDA), lambda_subsystem()),
        lambda_key_answer(DockerImageTarget({}, BASE_ADDRESS)),
        batches,
    )
    assert [tuple(get.output_type for get in batch) for batch in batches] == [
        (WrappedTarget,),
        (Addresses,),
        (WrappedTarget,),
        (LambdaClosure, BaseImageIdentity),
    ]
    assert [get.inputs[0] for get in batches[-1]] == [LambdaClosureRequest(LAMBDA), BaseImageIdentityRequest(BASE_ADDRESS)]
    assert key.closure == CLOSURE and key.base == BASE_IDENTITY
    assert key.key == lambda_content_key(
        dockerfile_template=dockerfile_template(CLOSURE, "/var/task"),
        context_fingerprint=CLOSURE.digest.fingerprint,
        base_key=BASE_IDENTITY.key,
        builder="assembler",
    )


def test_lambda_key_of_a_base_that_is_no_docker_image_names_the_field() -> None:
    # The identity of a base that is not a `docker_image` is never asked for: the error is the
    # closure's, naming the target and the field.
    batches: list[tuple] = []
    with pytest.raises(InvalidFieldException, match=r"The `base_image` field in target lambdas/fn:fn must be the address of a `docker_image` target, but base:base is a `python_source`"):
        rule_requests(
            compute_lambda_image_key(LambdaImageKeyRequest(LAMBDA), lambda_subsystem()),
            lambda_key_answer(PythonSourceTarget({"source": "base.py"}, BASE_ADDRESS)),
            batches,
        )
    assert BaseImageIdentity not in {get.output_type for batch in batches for get in batch}
