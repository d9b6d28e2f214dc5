"""TFRecord files below the examples: which files a record set names (a file, a folder, a glob,
`name@N`, URLs, comma-separated), GZIP detection, and the record framing (`uint64 length`,
`uint32 masked_crc32c(length)`, the data, `uint32 masked_crc32c(data)`, little-endian), read
and written without TensorFlow.
"""
from __future__ import annotations

import glob as globlib
import gzip
import re
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import google_crc32c

from backend.errors import NotFound
from backend.formats import remote


def masked_crc32c(*pieces: bytes) -> int:
    """The TFRecord checksum of `pieces` laid end to end: CRC-32C, rotated right by 15 bits,
    plus 0xa282ead8 (mod 2^32). Computed by `google-crc32c` (C, SSE4.2 instructions)."""
    crc = 0
    for piece in pieces:
        crc = google_crc32c.extend(crc, piece)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(*pieces: bytes) -> tuple[bytes, bytes]:
    """(header, footer) that make `pieces` (one serialised Example) one TFRecord:
    `uint64 length, uint32 masked_crc32c(length)` before it, `uint32 masked_crc32c(data)` after,
    all little-endian."""
    length = struct.pack("<Q", sum(len(p) for p in pieces))
    return length + struct.pack("<I", masked_crc32c(length)), struct.pack("<I", masked_crc32c(*pieces))


# ---------------------------------------------------------------- reading


def _is_record_name(name: str) -> bool:
    return ".record" in name or ".tfrecord" in name


def resolve(pattern: str | Path) -> list[Path | remote.RemoteFile]:
    """The files of a record set: a file, a folder (its `*.record*`/`*.tfrecord*` files), a
    glob, `name@N` (shards `name-?????-of-0000N`), or several of these separated by commas.
    Parts may be URLs (`gs://bucket/train.record-*`, see `remote`). Raises NotFound when
    nothing matches."""
    files: list[Path | remote.RemoteFile] = []
    for part in str(pattern).split(","):
        part = part.strip()
        if not part:
            continue
        sharded = re.fullmatch(r"(.+)@(\d+)", part)
        if sharded and not remote.as_path(part).exists():  # `train.record@10`: the sharded-set shorthand
            part = f"{sharded.group(1)}-?????-of-{int(sharded.group(2)):05d}"
        if remote.is_url(part):
            path = remote.RemoteFile(part)
            if path.is_dir():
                found = [p for p in remote.listdir(path) if _is_record_name(p.name) and not p.is_dir()]
            else:
                found = [p for p in remote.glob(part) if not p.is_dir()]
        elif (path := Path(part).expanduser()).is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and _is_record_name(p.name))
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in globlib.glob(str(path)) if Path(p).is_file())
        if not found:
            raise NotFound(f"no TFRecord files match {part!r}")
        files.extend(f for f in found if f not in files)
    if not files:
        raise NotFound("no TFRecord path given")
    return files


def _open(path: Path | remote.RemoteFile) -> BinaryIO:
    return path.open_binary() if isinstance(path, remote.RemoteFile) else open(path, "rb")


def is_gzip(path: Path) -> bool:
    with _open(path) as handle:
        return handle.read(2) == b"\x1f\x8b"


class RecordError(Exception):
    """A record that cannot be read (truncated file, bad framing)."""


def iter_raw(path: Path) -> Iterator[tuple[int, bytes | RecordError]]:
    """Yield (record index, serialised record) of one TFRecord file (plain or GZIP).

    The framing is checked (length and its CRC); a broken record ends the file with one
    `RecordError`. The payload CRC is not checked here.
    """
    for index, _, payload in iter_framed(path):
        yield index, payload


def iter_framed(path: Path) -> Iterator[tuple[int, int | None, bytes | RecordError]]:
    """Like `iter_raw`, with each record's byte offset in the file (None inside GZIP files)."""
    compressed = is_gzip(path)
    with _open(path) as raw, (gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw) as handle:
        index = 0
        while True:
            offset = None if compressed else handle.tell()
            try:
                header = handle.read(12)
            except (OSError, EOFError) as exc:
                yield index, offset, RecordError(f"cannot read: {exc}")
                return
            if not header:
                return
            if len(header) < 12:
                yield index, offset, RecordError("truncated record header (file cut short?)")
                return
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                yield index, offset, RecordError("bad record header checksum (not a TFRecord file, or corrupt)")
                return
            try:
                payload = handle.read(length)
                footer = handle.read(4)
            except (OSError, EOFError) as exc:
                yield index, offset, RecordError(f"cannot read: {exc}")
                return
            if len(payload) < length or len(footer) < 4:
                yield index, offset, RecordError("truncated record (file cut short?)")
                return
            yield index, offset, payload
            index += 1


def not_a_record_file(path: Path) -> str | None:
    """Why the local file `path` is not a TFRecord file, or None when it is one: its first
    record's framing is checked (length and its masked CRC-32C, then the data's CRC), so a
    text file, an image or a truncated copy is found before training reads it. An empty file
    is a valid, empty record file. GZIP files are checked after decompression."""
    try:
        size = Path(path).stat().st_size
        compressed = is_gzip(path)
        with open(path, "rb") as raw, \
                (gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw) as handle:
            header = handle.read(12)
            if not header:
                return None
            if len(header) < 12:
                return "it ends inside its first record's header"
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                return "its first record's length checksum is wrong"
            if not compressed and length > size - 16:
                return "it ends inside its first record"
            payload = handle.read(min(length, 1 << 31))
            footer = handle.read(4)
    except (OSError, EOFError, zlib.error) as exc:
        return f"it cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if len(payload) < length or len(footer) < 4:
        return "it ends inside its first record"
    if struct.unpack("<I", footer)[0] != masked_crc32c(payload):
        return "its first record's data checksum is wrong"
    return None


def read_record_at(path: Path, offset: int) -> bytes:
    """The serialised record at byte `offset` of a plain (not GZIP) TFRecord file."""
    with _open(path) as handle:
        handle.seek(offset)
        length, _ = struct.unpack("<QI", handle.read(12))
        return handle.read(length)
