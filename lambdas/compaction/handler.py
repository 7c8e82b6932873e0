"""Compacts every delta of a collection into one snapshot on S3."""
from __future__ import annotations

import os
import shutil

import boto3

from receipt_chroma import compaction, delta
from receipt_common import Settings, get_logger, json_log

logger = get_logger(__name__)


def handle(event: dict, context: object) -> dict:
    settings = Settings.from_env()
    collection = event.get("collection", "words")
    s3 = boto3.client("s3")
    listing = s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"deltas/{collection}/")
    keys = sorted(obj["Key"] for obj in listing.get("Contents", []))
    work = os.path.join(settings.chroma_root, "compaction")
    shutil.rmtree(work, ignore_errors=True)
    paths = []
    for index, key in enumerate(keys):
        path = os.path.join(work, f"delta-{index}")
        delta.download_directory(settings.bucket, key, path, s3)
        paths.append(path)
    snapshot = os.path.join(work, "snapshot")
    size = compaction.compact(paths, snapshot, collection)
    snapshot_key = f"snapshots/{collection}/latest.tar.gz"
    delta.upload_directory(snapshot, settings.bucket, snapshot_key, s3)
    result = {"collection": collection, "deltas": len(keys), "snapshot_size": size, "snapshot_key": snapshot_key}
    json_log(logger, "compacted", **result)
    return result
