"""Opening local ChromaDB collections (a Lambda's /tmp) without any network or model download."""
from __future__ import annotations

from typing import Any, Sequence

import chromadb
from chromadb.config import Settings


def open_collection(path: str, name: str) -> Any:
    """A persistent collection at `path`; embeddings are always supplied by the caller."""
    client = chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))
    # embedding_function=None: Chroma's default would download a model at first use.
    return client.get_or_create_collection(name=name, embedding_function=None)


def upsert_records(collection: Any, records: Sequence[Any]) -> int:
    """Upserts `EmbeddingRecord`-shaped objects that carry an embedding; returns how many."""
    records = [r for r in records if r.embedding is not None]
    if records:
        collection.upsert(
            ids=[r.id for r in records],
            embeddings=[list(r.embedding) for r in records],
            documents=[r.document for r in records],
            metadatas=[r.metadata for r in records],
        )
    return len(records)
