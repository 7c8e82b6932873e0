"""Polls a finished word-embedding batch: its vectors become a Chroma delta on S3."""
from __future__ import annotations

import boto3

from receipt_common import Settings, get_logger, json_log

from .polling import poll_batch

logger = get_logger(__name__)


def handle(event: dict, context: object) -> dict:
    result = poll_batch("word", event["batch_id"], event["result_key"], Settings.from_env(), boto3.client("s3"))
    json_log(logger, "word_batch_polled", **result)
    return result
