from __future__ import annotations

import json

import pytest

from chromadb_lambda.util_rules.image_config import (
    UnassemblableBaseError,
    architecture_mismatch,
    lambda_image_config,
)

# `docker image inspect --format INSPECT_FORMAT` of a base, as a 20.10 engine prints it.
BASE_INSPECT = {
    "Architecture": "amd64",
    "Variant": "",
    "Os": "linux",
    "OsVersion": "",
    "Config": {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "Tty": False,
        "Env": ["LANG=C.UTF-8", "LAMBDA_TASK_ROOT=/old", "PATH=/opt/venv/bin:/usr/bin:/bin"],
        "Cmd": ["base.default"],
        "Image": "sha256:0123",
        "Volumes": None,
        "WorkingDir": "/",
        "Entrypoint": ["/opt/venv/bin/python3", "-m", "awslambdaric"],
        "OnBuild": None,
        "Labels": {"org.example.team": "receipts"},
        "ExposedPorts": {"8080/tcp": {}},
        "StopSignal": "SIGTERM",
    },
    "RootFS": {"Type": "layers", "Layers": ["sha256:" + "a" * 64, "sha256:" + "b" * 64]},
}
LAYER_DIFF_ID = "sha256:" + "c" * 64


def test_config_is_the_base_config_plus_the_lambda() -> None:
    config = lambda_image_config(BASE_INSPECT, LAYER_DIFF_ID, "/var/task", "word_polling.handler.handle")
    assert json.loads(config) == {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["LANG=C.UTF-8", "LAMBDA_TASK_ROOT=/var/task", "PATH=/opt/venv/bin:/usr/bin:/bin"],
            "Cmd": ["word_polling.handler.handle"],
            "WorkingDir": "/var/task",
            "Entrypoint": ["/opt/venv/bin/python3", "-m", "awslambdaric"],
            "Labels": {"org.example.team": "receipts"},
            "ExposedPorts": {"8080/tcp": {}},
            "StopSignal": "SIGTERM",
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64, "sha256:" + "b" * 64, LAYER_DIFF_ID]},
    }
    # Canonical: sorted keys, no spaces.
    assert config.startswith(b'{"architecture":"amd64","config":{"Cmd":["word_polling.handler.handle"],"Entrypoint"')
    assert b" " not in config.replace(b"-m", b"")


def test_task_root_env_is_appended_when_the_base_has_none() -> None:
    base = {**BASE_INSPECT, "Config": {"Env": ["A=1"]}, "Variant": "v8", "Architecture": "arm64"}
    config = json.loads(lambda_image_config(base, LAYER_DIFF_ID, "/app", "h.f"))
    assert config["config"] == {"Env": ["A=1", "LAMBDA_TASK_ROOT=/app"], "Cmd": ["h.f"], "WorkingDir": "/app"}
    assert (config["architecture"], config["variant"]) == ("arm64", "v8")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Config": {"OnBuild": ["RUN make"]}}, "ONBUILD triggers"),
        ({"Os": "windows"}, "OS is 'windows'"),
    ],
)
def test_bases_the_assembler_cannot_express(change: dict, message: str) -> None:
    with pytest.raises(UnassemblableBaseError, match=message):
        lambda_image_config({**BASE_INSPECT, **change}, LAYER_DIFF_ID, "/var/task", "h.f")


def test_a_base_of_the_fields_architecture_is_fine() -> None:
    assert architecture_mismatch("lambdas/a:a", "x86_64", "amd64", "amd64") is None
    assert architecture_mismatch("lambdas/a:a", "arm64", "arm64", "amd64") is None


def test_arm64_on_an_amd64_base_names_the_target_the_field_and_this_machine() -> None:
    assert architecture_mismatch("lambdas/a:a", "arm64", "amd64", "amd64") == (
        "The `architecture` field of lambdas/a:a is 'arm64', but its base image is amd64: build the base for "
        "arm64 (`docker build --platform linux/arm64`), or set `architecture` to the base's ('x86_64'). This "
        "machine's Docker engine runs amd64 images and cannot build arm64 ones (no emulation): build "
        "lambdas/a:a on an arm64 machine."
    )


def test_x86_64_on_an_arm64_base_on_an_amd64_machine_says_what_to_change() -> None:
    assert architecture_mismatch("lambdas/a:a", "x86_64", "arm64", "amd64") == (
        "The `architecture` field of lambdas/a:a is 'x86_64', but its base image is arm64: build the base for "
        "amd64 (`docker build --platform linux/amd64`), or set `architecture` to the base's ('arm64')."
    )
