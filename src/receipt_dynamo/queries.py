"""Questions the pipeline asks of the receipt table."""
from __future__ import annotations

from .client import DynamoClient
from .entities import EMBEDDING_NONE, EmbeddingBatch, ReceiptWord


def unembedded_words(client: DynamoClient) -> list[ReceiptWord]:
    return client.words(embedding_status=EMBEDDING_NONE)


def pending_batches(client: DynamoClient, kind: str | None = None) -> list[EmbeddingBatch]:
    batches = client.batches(status="PENDING")
    return [b for b in batches if kind is None or b.kind == kind]
