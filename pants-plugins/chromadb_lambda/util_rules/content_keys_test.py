from chromadb_lambda.util_rules.content_keys import BaseImageIdentity, key_tag, lambda_content_key

BASE = BaseImageIdentity(context_fingerprint="a" * 64, dockerfile="base/Dockerfile", build_args=("X=1", "Y=2"))


def key(**overrides: object) -> str:
    inputs = dict(dockerfile_template="FROM <base image>\n", context_fingerprint="c" * 64, base_key=BASE.key, build_options={"task_root": "/var/task"})
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
        key(build_options={"task_root": "/app"}),
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
