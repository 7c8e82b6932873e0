"""Lists the embedding batches still pending, optionally of one kind."""
from __future__ import annotations

from receipt_common import Settings
from receipt_dynamo.client import DynamoClient
from receipt_dynamo.queries import pending_batches


def handle(event: dict, context: object) -> dict:
    batches = pending_batches(DynamoClient(Settings.from_env().table_name), kind=event.get("kind"))
    return {"pending": [b.batch_id for b in batches]}
