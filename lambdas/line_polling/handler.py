"""Polls a finished line-embedding batch; reuses the word poller's module."""
from __future__ import annotations

import boto3

from receipt_common import Settings, get_logger, json_log
from word_polling.polling import poll_batch

logger = get_logger(__name__)


def handle(event: dict, context: object) -> dict:
    result = poll_batch("line", event["batch_id"], event["result_key"], Settings.from_env(), boto3.client("s3"))
    json_log(logger, "line_batch_polled", **result)
    return result
