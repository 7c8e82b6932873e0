"""The config of an assembled Lambda image, and the `docker load` archive that carries it.

The config is the base image's (as `docker image inspect` of the base's id reports it) plus what the
generated Dockerfile would add: the layer of the closure, `WORKDIR <task root>`, `ENV
LAMBDA_TASK_ROOT=<task root>` and `CMD [handler]`. It is written as canonical JSON (sorted keys, no
spaces), with a fixed `created` and no history (moby's image store accepts fewer history entries than
layers, never more), so that its sha256, which is the image id the engine gives the image, is a pure
function of the base's config and the layer.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

# 1970-01-01T00:00:00Z: `SOURCE_DATE_EPOCH` is not honoured (see image_layer.py).
CREATED = "1970-01-01T00:00:00Z"
TASK_ROOT_ENV = "LAMBDA_TASK_ROOT"
# The runtime fields of the base's config an image inherits, under Docker's (and the OCI config's)
# names. The rest of what inspect reports (Hostname, AttachStdin, Image...) is engine bookkeeping
# that differs between engine versions, not something `docker run` of the image uses.
INHERITED_CONFIG_FIELDS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "Shell",
)
# What `docker image inspect --format` prints of a base: only fields that are part of its config, so
# the output is a function of the image id alone (no tags, no engine-local times).
INSPECT_FORMAT = (
    '{"Architecture":{{json .Architecture}},"Variant":{{json .Variant}},"Os":{{json .Os}},'
    '"OsVersion":{{json .OsVersion}},"Config":{{json .Config}},"RootFS":{{json .RootFS}}}'
)


# AWS Lambda's architecture names (the `architecture` field) and Docker's (image configs, `--platform`).
DOCKER_ARCHITECTURES = {"x86_64": "amd64", "arm64": "arm64"}


def architecture_mismatch(address: str, architecture: str, base_architecture: str, host_architecture: str) -> str | None:
    """Why a Lambda of `architecture` cannot build on a base of `base_architecture` (Docker's name,
    from `docker image inspect`), or None. Lambda images inherit the base's architecture."""
    wanted = DOCKER_ARCHITECTURES[architecture]
    if base_architecture == wanted:
        return None
    engine = (
        f" This machine's Docker engine runs {host_architecture} images and cannot build {wanted} ones"
        f" (no emulation): build {address} on an {wanted} machine."
        if host_architecture and host_architecture != wanted
        else ""
    )
    return (
        f"The `architecture` field of {address} is {architecture!r}, but its base image is "
        f"{base_architecture or 'of no known architecture'}: build the base for {wanted} (`docker build "
        f"--platform linux/{wanted}`), or set `architecture` to the base's"
        f"{' (' + repr(_lambda_name(base_architecture)) + ')' if _lambda_name(base_architecture) else ''}.{engine}"
    )


def _lambda_name(docker_architecture: str) -> str:
    return next((k for k, v in DOCKER_ARCHITECTURES.items() if v == docker_architecture), "")


class UnassemblableBaseError(Exception):
    """The base image uses something the assembler cannot reproduce without `docker build`."""


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _with_env(env: Sequence[str], name: str, value: str) -> list[str]:
    """`ENV name=value` as a Dockerfile does it: an existing entry is replaced in place."""
    entry = f"{name}={value}"
    replaced = [entry if item.split("=", 1)[0] == name else item for item in env]
    return replaced if entry in replaced else [*replaced, entry]


def lambda_image_config(base_inspect: Mapping[str, Any], layer_diff_id: str, task_root: str, handler: str) -> bytes:
    """The config JSON of the Lambda image on top of the base `base_inspect` describes."""
    base_config = base_inspect.get("Config") or {}
    if base_config.get("OnBuild"):
        raise UnassemblableBaseError(
            f"the base image has ONBUILD triggers ({base_config['OnBuild']!r}), which only `docker build` runs"
        )
    os_name = base_inspect.get("Os") or ""
    if os_name != "linux":
        raise UnassemblableBaseError(f"the base image's OS is {os_name!r}; the assembler makes Linux images")
    rootfs = base_inspect.get("RootFS") or {}
    if rootfs.get("Type", "layers") != "layers":
        raise UnassemblableBaseError(f"the base image's root filesystem is of type {rootfs.get('Type')!r}")
    config = {
        field: base_config[field]
        for field in INHERITED_CONFIG_FIELDS
        # Empty values are left out: engines report unset fields as null, "" or [] depending on version.
        if base_config.get(field) not in (None, "", [], {}, False)
    }
    config["Env"] = _with_env(config.get("Env", []), TASK_ROOT_ENV, task_root)
    config["WorkingDir"] = task_root
    config["Cmd"] = [handler]
    image = {
        "architecture": base_inspect.get("Architecture") or "amd64",
        "os": os_name,
        "config": config,
        "created": CREATED,
        "rootfs": {"type": "layers", "diff_ids": [*(rootfs.get("Layers") or []), layer_diff_id]},
    }
    if base_inspect.get("Variant"):
        image["variant"] = base_inspect["Variant"]
    if base_inspect.get("OsVersion"):
        image["os.version"] = base_inspect["OsVersion"]
    return canonical_json(image)
