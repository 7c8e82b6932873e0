import hashlib

from chromadb_lambda.util_rules.content_keys import BaseImageIdentity, key_ref, key_tag, lambda_content_key
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
