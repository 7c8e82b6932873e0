"""Merging delta collections into one snapshot collection."""
from __future__ import annotations

from typing import Any, Iterable

from .client import open_collection

PAGE_SIZE = 500


def copy_collection(source: Any, target: Any) -> int:
    copied = 0
    offset = 0
    while True:
        page = source.get(include=["embeddings", "documents", "metadatas"], limit=PAGE_SIZE, offset=offset)
        ids = page["ids"]
        if not ids:
            return copied
        target.upsert(
            ids=ids,
            embeddings=[list(e) for e in page["embeddings"]],
            documents=page["documents"],
            metadatas=page["metadatas"],
        )
        copied += len(ids)
        offset += len(ids)


def compact(delta_paths: Iterable[str], snapshot_path: str, name: str) -> int:
    """Upserts every delta at `delta_paths` into the snapshot; returns the snapshot's size."""
    snapshot = open_collection(snapshot_path, name)
    for path in delta_paths:
        copy_collection(open_collection(path, name), snapshot)
    return snapshot.count()
