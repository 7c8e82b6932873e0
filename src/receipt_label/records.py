"""Chroma records (id, document, metadata) for receipt words and lines."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from receipt_dynamo.entities import ReceiptLine, ReceiptWord

from .schema import normalize_label


@dataclass(frozen=True)
class EmbeddingRecord:
    id: str
    document: str
    metadata: dict
    embedding: Sequence[float] | None = None


def word_record(word: ReceiptWord, label: str | None = None) -> EmbeddingRecord:
    return EmbeddingRecord(
        id=word.key,
        document=word.text,
        metadata={
            "image_id": word.image_id,
            "receipt_id": word.receipt_id,
            "line_id": word.line_id,
            "word_id": word.word_id,
            "label": normalize_label(label),
        },
    )


def line_record(line: ReceiptLine) -> EmbeddingRecord:
    return EmbeddingRecord(
        id=line.key,
        document=line.text,
        metadata={"image_id": line.image_id, "receipt_id": line.receipt_id, "line_id": line.line_id},
    )


def parse_key(key: str) -> dict:
    """The inverse of `ReceiptWord.key` / `ReceiptLine.key`: `IMAGE#x#RECEIPT#00001#...`."""
    parts = key.split("#")
    fields = dict(zip(parts[0::2], parts[1::2]))
    out: dict = {"image_id": fields["IMAGE"], "receipt_id": int(fields["RECEIPT"]), "line_id": int(fields["LINE"])}
    if "WORD" in fields:
        out["word_id"] = int(fields["WORD"])
    return out
