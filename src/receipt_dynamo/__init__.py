"""DynamoDB access for receipts. The package re-exports its public API (code in `__init__.py`)."""
from .client import DynamoClient, create_table
from .entities import EmbeddingBatch, ReceiptLine, ReceiptWord
from .queries import pending_batches, unembedded_words

__all__ = [
    "DynamoClient",
    "EmbeddingBatch",
    "ReceiptLine",
    "ReceiptWord",
    "create_table",
    "pending_batches",
    "unembedded_words",
]
