"""Content keys: one hash of everything that determines a Lambda image, and nothing else.

A key is reproducible: the same commit gives the same key on any machine and in any checkout path.
Its inputs are Pants digests (content-addressed: no mtimes, no absolute paths), text the plugin
generates, and option values; never the engine's socket, image ids (a RUN step makes them differ per
engine), hostnames or times.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Mapping

# Bump when the meaning of a key changes (what the plugin puts into images), so old images rebuild.
KEY_VERSION = 1
KEY_TAG_PREFIX = "ck-"
# 128 bits of the sha256: collisions are not a concern, and tags stay readable.
KEY_TAG_HEX_CHARS = 32


def stable_hash(data: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class BaseImageIdentity:
    """What makes a base `docker_image`: its build context, Dockerfile path and build args."""

    context_fingerprint: str
    dockerfile: str
    build_args: tuple[str, ...]
    # The keys of docker_image targets the base builds FROM by address (upstream images Pants builds).
    upstream_keys: tuple[str, ...] = ()
    # The base's repository: names the image, not part of its identity.
    repository: str = ""

    @property
    def ref(self) -> str:
        """The tag Lambda images build FROM: the base's repository and content key."""
        return f"{self.repository}:{key_tag(self.key)}"

    @property
    def key(self) -> str:
        return stable_hash(
            {
                "context": self.context_fingerprint,
                "dockerfile": self.dockerfile,
                "build_args": sorted(self.build_args),
                "upstream": sorted(self.upstream_keys),
            }
        )


def lambda_content_key(
    *, dockerfile_template: str, context_fingerprint: str, base_key: str, build_options: Mapping[str, str]
) -> str:
    """The key of a Lambda image.

    `dockerfile_template` is the generated Dockerfile with the base's tag left out: the tag names the
    base for the engine, and `base_key` is what identifies it.
    """
    return stable_hash(
        {
            "version": KEY_VERSION,
            "dockerfile": dockerfile_template,
            "context": context_fingerprint,
            "base": base_key,
            "options": dict(build_options),
        }
    )


def key_tag(key: str) -> str:
    return f"{KEY_TAG_PREFIX}{key[:KEY_TAG_HEX_CHARS]}"
