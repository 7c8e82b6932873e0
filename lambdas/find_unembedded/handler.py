"""Finds the receipt words that have no embedding yet."""
from __future__ import annotations

from receipt_common import Settings
from receipt_dynamo import DynamoClient, unembedded_words


def handle(event: dict, context: object) -> dict:
    words = unembedded_words(DynamoClient(Settings.from_env().table_name))
    limit = int(event.get("limit", 100))
    return {"count": len(words), "keys": [w.key for w in words[:limit]]}
