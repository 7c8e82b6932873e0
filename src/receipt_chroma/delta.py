"""Deltas and snapshots: a Chroma persist directory shipped to S3 as a gzipped tarball."""
from __future__ import annotations

import io
import os
import tarfile
from typing import Any

import boto3


def pack_directory(path: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for root, _dirs, files in os.walk(path):
            for name in sorted(files):
                full = os.path.join(root, name)
                tar.add(full, arcname=os.path.relpath(full, path))
    return buffer.getvalue()


def unpack_to_directory(data: bytes, path: str) -> None:
    os.makedirs(path, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            target = os.path.realpath(os.path.join(path, member.name))
            if not target.startswith(os.path.realpath(path) + os.sep):
                raise ValueError(f"refusing to extract {member.name!r} outside {path}")
        tar.extractall(path)


def upload_directory(path: str, bucket: str, key: str, s3: Any = None) -> int:
    body = pack_directory(path)
    (s3 or boto3.client("s3")).put_object(Bucket=bucket, Key=key, Body=body)
    return len(body)


def download_directory(bucket: str, key: str, path: str, s3: Any = None) -> None:
    data = (s3 or boto3.client("s3")).get_object(Bucket=bucket, Key=key)["Body"].read()
    unpack_to_directory(data, path)
