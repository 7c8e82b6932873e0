"""Submits the unembedded words as an embedding batch: JSONL on S3, a PENDING batch in DynamoDB."""
from __future__ import annotations

import boto3

from receipt_common import Settings, get_logger, json_log
from receipt_dynamo import DynamoClient, EmbeddingBatch, unembedded_words
from receipt_label.batch import batch_request_lines
from receipt_label.records import word_record

from .naming import batch_id_for

logger = get_logger(__name__)


def handle(event: dict, context: object) -> dict:
    settings = Settings.from_env()
    dynamo = DynamoClient(settings.table_name)
    words = unembedded_words(dynamo)
    if not words:
        return {"submitted": 0}
    records = [word_record(w, label=event.get("label")) for w in words]
    batch_id = batch_id_for(r.id for r in records)
    key = f"batches/{batch_id}.jsonl"
    boto3.client("s3").put_object(Bucket=settings.bucket, Key=key, Body=batch_request_lines(records).encode())
    dynamo.put_batch(EmbeddingBatch(batch_id, "word", "PENDING", key))
    json_log(logger, "batch_submitted", batch_id=batch_id, words=len(records))
    return {"submitted": len(records), "batch_id": batch_id, "s3_key": key}
