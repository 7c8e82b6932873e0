"""The layer of an assembled Lambda image: the closure's files under the task root, as tar bytes that
depend on nothing but the files (paths, bytes, executable bits) and the task root.

Written by hand, not with `tarfile`, so that the bytes do not depend on the Python version: POSIX
ustar headers, a PAX extended header (`path=`) for a name that does not fit ustar's 100 ASCII bytes,
end-of-archive blocks and padding to the 10240-byte record, as `tarfile.open(..., format=PAX_FORMAT)`
writes them (the unit test compares the two byte for byte).

Normalized: entries sorted by path, each parent directory once and before its children, mtime 0
(`SOURCE_DATE_EPOCH` is NOT honoured: an image id must not depend on the environment of the run),
uid/gid 0, empty user and group names, modes 0755 for directories and executables, 0644 for files.
"""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from typing import Iterable

BLOCK = 512
RECORD = 20 * BLOCK
DIR_MODE = 0o755
FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
MTIME = 0
# gzip level of layer blobs for registries: fixed, as the blob's digest depends on it.
GZIP_LEVEL = 6
_NAME_BYTES = 100
_REGTYPE = b"0"
_DIRTYPE = b"5"
_PAXTYPE = b"x"
_PAX_NAME = "././@PaxHeader"


@dataclass(frozen=True)
class LayerFile:
    """A file of the layer: its path relative to the task root."""

    path: str
    content: bytes
    is_executable: bool = False


@dataclass(frozen=True)
class Layer:
    tar: bytes
    # sha256 of the uncompressed tar: the layer's diff id in the image config.
    diff_id: str


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _header(name: str, *, typeflag: bytes, mode: int, size: int) -> bytes:
    encoded = name.encode("ascii", "replace")[:_NAME_BYTES]
    fields = [
        encoded.ljust(_NAME_BYTES, b"\0"),
        _octal(mode, 8),
        _octal(0, 8),  # uid
        _octal(0, 8),  # gid
        _octal(size, 12),
        _octal(MTIME, 12),
        b" " * 8,  # checksum, computed below over the header with these 8 spaces
        typeflag,
        b"\0" * 100,  # linkname
        b"ustar\x0000",
        b"\0" * 32,  # uname
        b"\0" * 32,  # gname
        b"\0" * 8,  # devmajor: empty, as for every entry that is not a device
        b"\0" * 8,  # devminor
        b"\0" * 155,  # prefix
    ]
    header = b"".join(fields).ljust(BLOCK, b"\0")
    checksum = b"%06o\0 " % sum(header)
    return header[:148] + checksum + header[156:]


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def _pax_record(keyword: str, value: str) -> bytes:
    # "<length> <keyword>=<value>\n", where <length> counts its own digits.
    body = f" {keyword}={value}\n".encode()
    length = len(body)
    while len(str(length).encode()) + len(body) != length:
        length = len(str(length).encode()) + len(body)
    return str(length).encode() + body


def _entry(name: str, *, typeflag: bytes, mode: int, content: bytes = b"") -> bytes:
    pax = b""
    if len(name) > _NAME_BYTES or not name.isascii():
        records = _pax_record("path", name)
        pax = _header(_PAX_NAME, typeflag=_PAXTYPE, mode=0, size=len(records)) + _pad(records)
    return pax + _header(name, typeflag=typeflag, mode=mode, size=len(content)) + _pad(content)


def _parents(path: str) -> Iterable[str]:
    """Every directory above `path`, outermost first: `a/b/c` -> `a`, `a/b`."""
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def layer_path(task_root: str, path: str) -> str:
    root = task_root.strip("/")
    return f"{root}/{path}" if root else path


def tar_archive(files: Iterable[LayerFile], directories: Iterable[str] = ()) -> bytes:
    """A tar of `files` (paths as given) with every parent directory and `directories`, normalized."""
    by_path = {f.path: f for f in files}
    dirs = {d for d in directories if d}
    for path in by_path:
        dirs.update(_parents(path))
    clash = dirs.intersection(by_path)
    if clash:
        raise ValueError(f"{sorted(clash)[0]!r} is both a file and a directory of the layer")
    # Sorted by path components, so that a directory comes right before its children ("a/b" before
    # "a-c"): the order `sorted()` of the split paths gives.
    names = sorted([*dirs, *by_path], key=lambda p: p.split("/"))
    out = []
    for name in names:
        f = by_path.get(name)
        if f is None:
            out.append(_entry(f"{name}/", typeflag=_DIRTYPE, mode=DIR_MODE))
        else:
            mode = EXECUTABLE_MODE if f.is_executable else FILE_MODE
            out.append(_entry(name, typeflag=_REGTYPE, mode=mode, content=f.content))
    data = b"".join(out) + b"\0" * (2 * BLOCK)
    return data + b"\0" * (-len(data) % RECORD)


def lambda_layer(files: Iterable[LayerFile], task_root: str) -> Layer:
    """The closure's files under `task_root` (e.g. `var/task/handler.py`), the task root included
    even when there are no files (it is the image's working directory)."""
    placed = [LayerFile(layer_path(task_root, f.path), f.content, f.is_executable) for f in files]
    root = task_root.strip("/")
    tar = tar_archive(placed, directories=[*_parents(root), root])
    return Layer(tar=tar, diff_id=f"sha256:{hashlib.sha256(tar).hexdigest()}")


def deterministic_gzip(data: bytes) -> bytes:
    """gzip with mtime 0, no file name and a fixed level: the blob a registry push would send.

    The bytes are those of the zlib this Python links; equal across machines with the same zlib.
    """
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"
