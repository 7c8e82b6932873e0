"""The records the receipt pipeline keeps in DynamoDB."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

EMBEDDING_NONE = "NONE"
EMBEDDING_PENDING = "PENDING"
EMBEDDING_SUCCESS = "SUCCESS"


@dataclass(frozen=True)
class ReceiptWord:
    image_id: str
    receipt_id: int
    line_id: int
    word_id: int
    text: str
    embedding_status: str = EMBEDDING_NONE

    @property
    def key(self) -> str:
        return f"IMAGE#{self.image_id}#RECEIPT#{self.receipt_id:05d}#LINE#{self.line_id:05d}#WORD#{self.word_id:05d}"

    def to_item(self) -> dict[str, Any]:
        return {"PK": f"IMAGE#{self.image_id}", "SK": self.key.split("#", 2)[2], "TYPE": "WORD", **asdict(self)}


@dataclass(frozen=True)
class ReceiptLine:
    image_id: str
    receipt_id: int
    line_id: int
    text: str
    embedding_status: str = EMBEDDING_NONE

    @property
    def key(self) -> str:
        return f"IMAGE#{self.image_id}#RECEIPT#{self.receipt_id:05d}#LINE#{self.line_id:05d}"

    def to_item(self) -> dict[str, Any]:
        return {"PK": f"IMAGE#{self.image_id}", "SK": self.key.split("#", 2)[2], "TYPE": "LINE", **asdict(self)}


@dataclass(frozen=True)
class EmbeddingBatch:
    batch_id: str
    kind: str  # "word" or "line"
    status: str
    s3_key: str

    def to_item(self) -> dict[str, Any]:
        return {"PK": f"BATCH#{self.batch_id}", "SK": "BATCH", "TYPE": "BATCH", **asdict(self)}


def word_from_item(item: dict[str, Any]) -> ReceiptWord:
    return ReceiptWord(
        image_id=item["image_id"],
        receipt_id=int(item["receipt_id"]),
        line_id=int(item["line_id"]),
        word_id=int(item["word_id"]),
        text=item["text"],
        embedding_status=item.get("embedding_status", EMBEDDING_NONE),
    )


def batch_from_item(item: dict[str, Any]) -> EmbeddingBatch:
    return EmbeddingBatch(
        batch_id=item["batch_id"], kind=item["kind"], status=item["status"], s3_key=item["s3_key"]
    )
