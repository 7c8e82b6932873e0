from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

from chromadb_lambda.util_rules.image_layer import LayerFile, deterministic_gzip, lambda_layer, tar_archive

FILES = (
    LayerFile("word_polling/handler.py", b"def handle(event, context):\n    return event\n"),
    LayerFile("receipt_label/__init__.py", b""),
    LayerFile("receipt_label/data/labels.json", b'{"a": 1}\n'),
    LayerFile("receipt_label/bin/run.sh", b"#!/bin/sh\necho hi\n", is_executable=True),
    LayerFile("receipt_label-extra.py", b"X = 1\n"),
    LayerFile("word_polling/__init__.py", b""),
)


def listing(tar: bytes) -> list[tuple[str, str, int, int, int, int, str, str]]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return [
            (m.name, "dir" if m.isdir() else "file", m.mode, m.mtime, m.uid, m.gid, m.uname, m.gname)
            for m in archive.getmembers()
        ]


def test_layer_listing_is_sorted_with_parents_and_normalized() -> None:
    layer = lambda_layer(FILES, "/var/task")
    assert listing(layer.tar) == [
        ("var", "dir", 0o755, 0, 0, 0, "", ""),
        ("var/task", "dir", 0o755, 0, 0, 0, "", ""),
        ("var/task/receipt_label", "dir", 0o755, 0, 0, 0, "", ""),
        ("var/task/receipt_label/__init__.py", "file", 0o644, 0, 0, 0, "", ""),
        ("var/task/receipt_label/bin", "dir", 0o755, 0, 0, 0, "", ""),
        ("var/task/receipt_label/bin/run.sh", "file", 0o755, 0, 0, 0, "", ""),
        ("var/task/receipt_label/data", "dir", 0o755, 0, 0, 0, "", ""),
        ("var/task/receipt_label/data/labels.json", "file", 0o644, 0, 0, 0, "", ""),
        # `-` sorts before `/` as a byte, but a directory's children come right after it.
        ("var/task/receipt_label-extra.py", "file", 0o644, 0, 0, 0, "", ""),
        ("var/task/word_polling", "dir", 0o755, 0, 0, 0, "", ""),
        ("var/task/word_polling/__init__.py", "file", 0o644, 0, 0, 0, "", ""),
        ("var/task/word_polling/handler.py", "file", 0o644, 0, 0, 0, "", ""),
    ]
    with tarfile.open(fileobj=io.BytesIO(layer.tar)) as archive:
        member = archive.extractfile("var/task/receipt_label/bin/run.sh")
        assert member is not None and member.read() == b"#!/bin/sh\necho hi\n"


def test_layer_does_not_depend_on_input_order() -> None:
    assert lambda_layer(FILES, "/var/task") == lambda_layer(tuple(reversed(FILES)), "/var/task")


def test_an_empty_closure_still_makes_the_task_root() -> None:
    assert [m[0] for m in listing(lambda_layer((), "/var/task/").tar)] == ["var", "var/task"]
    assert listing(lambda_layer((), "/").tar) == []


def test_task_root_slash_puts_files_at_the_top() -> None:
    names = [m[0] for m in listing(lambda_layer(FILES[:2], "/").tar)]
    assert names == ["receipt_label", "receipt_label/__init__.py", "word_polling", "word_polling/handler.py"]


def independent_tar(files: tuple[LayerFile, ...], directories: tuple[str, ...]) -> bytes:
    """The same layer written by Python's `tarfile`, each normalization spelled out here."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        entries = [(d, None) for d in directories] + [(f.path, f) for f in files]
        for name, f in sorted(entries, key=lambda e: e[0].split("/")):
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if f is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
            else:
                info.mode = 0o755 if f.is_executable else 0o644
                info.size = len(f.content)
                archive.addfile(info, io.BytesIO(f.content))
    return out.getvalue()


def test_golden_digest_equals_tarfiles() -> None:
    long_name = "pkg/" + "m" * 120 + ".py"
    files = (*FILES, LayerFile(long_name, b"LONG = True\n"), LayerFile("pkg/caf\u00e9.txt", b"utf-8 name\n"))
    layer = lambda_layer(files, "/var/task")
    expected = independent_tar(
        tuple(LayerFile(f"var/task/{f.path}", f.content, f.is_executable) for f in files),
        (
            "var",
            "var/task",
            "var/task/pkg",
            "var/task/receipt_label",
            "var/task/receipt_label/bin",
            "var/task/receipt_label/data",
            "var/task/word_polling",
        ),
    )
    assert layer.tar == expected
    assert layer.diff_id == "sha256:" + hashlib.sha256(expected).hexdigest()
    names = [m[0] for m in listing(layer.tar)]
    assert f"var/task/{long_name}" in names and "var/task/pkg/caf\u00e9.txt" in names


def test_a_path_cannot_be_a_file_and_a_directory() -> None:
    with pytest.raises(ValueError, match="'a' is both a file and a directory"):
        tar_archive([LayerFile("a", b""), LayerFile("a/b", b"")])


def test_gzip_is_deterministic_and_round_trips() -> None:
    tar = lambda_layer(FILES, "/var/task").tar
    blob = deterministic_gzip(tar)
    assert blob == deterministic_gzip(tar)
    assert gzip.decompress(blob) == tar
    # Header: magic, deflate, no flags (no file name), mtime 0, then XFL and OS.
    assert blob[:8] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
