"""The compressed layer a registry gets: deterministic, and the bytes of an independent route (a gzip
header written by hand around zlib's raw deflate at level 6)."""
from __future__ import annotations

import gzip
import os
import struct
import time
import zlib

from chromadb_lambda.util_rules.assembled_push import assembled_blobs, base_push_targets
from chromadb_lambda.util_rules.image_layer import LayerFile, lambda_layer
from chromadb_lambda.testutil import BASE_NAMES, REGISTRY


def by_hand(data: bytes) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    # magic, deflate, no flags, mtime 0, no extra flags, OS "unknown" (255); then CRC-32 and size.
    header = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def test_layer_compression_is_deterministic_and_independent_of_time_and_zone() -> None:
    layer = lambda_layer([LayerFile("handler.py", b"def handle(e, c):\n    return 1\n" * 50)], "/var/task")
    config, first = assembled_blobs(b"{}", layer.tar)
    previous_tz = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kathmandu"
    time.tzset()
    try:
        time.sleep(1.1)  # a second later: an mtime from the clock would show
        _, second = assembled_blobs(b"{}", layer.tar)
    finally:
        if previous_tz is None:
            os.environ.pop("TZ")
        else:
            os.environ["TZ"] = previous_tz
        time.tzset()
    assert config == b"{}"
    assert first == second == by_hand(layer.tar)
    assert first[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    assert gzip.decompress(first) == layer.tar


def test_the_base_goes_to_each_lambda_registry_under_its_repository_and_key_tag() -> None:
    [target] = base_push_targets((REGISTRY,), BASE_NAMES)
    assert (target.address, target.repository, target.tags, target.skip_push) == (
        "reg.example.com", "acme/base", (BASE_NAMES.key_ref.rpartition(":")[2],), False,
    )
