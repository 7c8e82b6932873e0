"""The JSONL formats of embedding batches: the request we submit and the result we poll."""
from __future__ import annotations

import json
from typing import Iterable

from .records import EmbeddingRecord

EMBEDDING_MODEL = "text-embedding-3-small"


def batch_request_lines(records: Iterable[EmbeddingRecord]) -> str:
    """One request per record, in the OpenAI batch API's JSONL shape."""
    lines = [
        json.dumps(
            {
                "custom_id": r.id,
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": EMBEDDING_MODEL, "input": r.document},
            },
            sort_keys=True,
        )
        for r in records
    ]
    return "".join(line + "\n" for line in lines)


def parse_batch_result(text: str) -> dict[str, list[float]]:
    """Maps custom_id -> embedding for each successful line of a batch result file."""
    out: dict[str, list[float]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("error"):
            continue
        try:
            embedding = row["response"]["body"]["data"][0]["embedding"]
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"line {number} of the batch result has no embedding") from e
        out[row["custom_id"]] = [float(x) for x in embedding]
    return out
