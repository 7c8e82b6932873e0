"""Turns a finished embedding batch into a Chroma delta on S3 (shared with line polling)."""
from __future__ import annotations

import shutil
from typing import Any

from receipt_chroma.client import open_collection, upsert_records
from receipt_chroma.delta import upload_directory
from receipt_common import Settings
from receipt_label.batch import parse_batch_result
from receipt_label.records import EmbeddingRecord, parse_key


def poll_batch(kind: str, batch_id: str, result_key: str, settings: Settings, s3: Any) -> dict:
    text = s3.get_object(Bucket=settings.bucket, Key=result_key)["Body"].read().decode()
    embeddings = parse_batch_result(text)
    records = [
        EmbeddingRecord(id=key, document=key, metadata=parse_key(key), embedding=vector)
        for key, vector in sorted(embeddings.items())
    ]
    path = f"{settings.chroma_root}/{kind}-{batch_id}"
    shutil.rmtree(path, ignore_errors=True)
    upserted = upsert_records(open_collection(path, f"{kind}s"), records)
    delta_key = f"deltas/{kind}s/{batch_id}.tar.gz"
    size = upload_directory(path, settings.bucket, delta_key, s3)
    return {"batch_id": batch_id, "upserted": upserted, "delta_key": delta_key, "delta_bytes": size}
