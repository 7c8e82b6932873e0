from pathlib import Path

import pytest

from receipt_chroma.client import open_collection, upsert_records
from receipt_chroma.compaction import compact
from receipt_chroma.delta import pack_directory, unpack_to_directory
from receipt_label.records import EmbeddingRecord


def _records(prefix: str, n: int) -> list[EmbeddingRecord]:
    return [
        EmbeddingRecord(id=f"{prefix}{i}", document=f"doc {i}", metadata={"i": i}, embedding=[float(i), 1.0, 0.0])
        for i in range(n)
    ]


def test_deltas_compact_into_one_snapshot_that_answers_queries(tmp_path: Path) -> None:
    first, second = str(tmp_path / "d1"), str(tmp_path / "d2")
    assert upsert_records(open_collection(first, "words"), _records("a", 3)) == 3
    assert upsert_records(open_collection(second, "words"), _records("b", 2) + [EmbeddingRecord("x", "no vec", {})]) == 2

    restored = str(tmp_path / "restored")
    unpack_to_directory(pack_directory(second), restored)
    size = compact([first, restored], str(tmp_path / "snapshot"), "words")

    assert size == 5
    result = open_collection(str(tmp_path / "snapshot"), "words").query(query_embeddings=[[2.0, 1.0, 0.0]], n_results=1)
    assert result["ids"][0] == ["a2"]


def test_unpack_refuses_paths_outside_the_target(tmp_path: Path) -> None:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match="outside"):
        unpack_to_directory(buffer.getvalue(), str(tmp_path / "t"))
