"""TF OD API TFRecords: write `tf.train.Example`s, open any record set, decode, validate, extract.

Feature keys are exactly those the TF OD API decoder (`TfExampleDecoder`) reads:

    image/encoded            bytes   the stored image's bytes, passed through unchanged
    image/format             bytes   b"jpeg" | b"png"
    image/height, width      int64   pixels
    image/filename           bytes
    image/source_id          bytes   unique within a set
    image/key/sha256         bytes   hex sha256 of image/encoded
    image/object/bbox/xmin|ymin|xmax|ymax   float [N], normalised to [0, 1]
    image/object/class/text  bytes [N]      class names
    image/object/class/label int64 [N]      label-map ids (>= 1)
    image/object/difficult, truncated       int64 [N]

Record sets are a file, a glob (`train.record-?????-of-00010`), a folder, or several of
these separated by commas; GZIP-compressed files are recognised by their magic bytes.
Examples are parsed with `backend/tf_protos/example.proto` and written in wire format by hand
(faster: see `example_parts`), and the record framing (length, CRC-32C) is done here too:
neither reading nor writing imports TensorFlow.
"""
from __future__ import annotations

import functools
import glob as globlib
import gzip
import hashlib
import io
import os
import re
import struct
import zlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import google_crc32c
from PIL import Image

from backend import atomic
from backend.errors import Invalid, NotFound
from backend.formats import boxes as box_convert, drawing, remote
from backend.formats.label_map import LabelMap
from backend.formats.records import AnnotatedImage, ExportImage, ObjectBox, ReadResult
from backend.projects import class_color
from backend.tf_protos import example_pb2

BOX_KEYS = ("image/object/bbox/xmin", "image/object/bbox/ymin", "image/object/bbox/xmax",
            "image/object/bbox/ymax")
PER_BOX_KEYS = BOX_KEYS + ("image/object/class/label", "image/object/class/text",
                           "image/object/difficult", "image/object/truncated")


def shard_name(split: str, index: int, count: int) -> str:
    """`train.record-00003-of-00010`: the TF OD API's sharded-file naming."""
    return f"{split}.record-{index:05d}-of-{count:05d}"


def shard_glob(split: str, count: int) -> str:
    """The `input_path` glob matching every shard of a split: `train.record-?????-of-00010`."""
    return f"{split}.record-?????-of-{count:05d}"


# ---------------------------------------------------------------- writing


# The kind of every feature the TF OD API's tf_example_decoder (and Boxwise) reads: a record
# with another kind under one of these keys is refused by name, not met later as a crash.
FEATURE_KINDS = {
    **{key: "bytes_list" for key in ("image/encoded", "image/format", "image/filename",
                                     "image/source_id", "image/key/sha256",
                                     "image/object/class/text")},
    **{key: "int64_list" for key in ("image/height", "image/width", "image/object/class/label",
                                     "image/object/difficult", "image/object/truncated",
                                     "image/object/is_crowd", "image/object/group_of")},
    **{key: "float_list" for key in (*BOX_KEYS, "image/object/area", "image/object/weight")},
}

_ONE_BYTE = [bytes((n,)) for n in range(128)]


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:  # lengths of small fields, tags, ids: the common case, looked up
        return _ONE_BYTE[value]
    if value < 0:
        value += 1 << 64  # int64 two's complement, as protobuf writes it
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _delimited(number: int, length: int) -> bytes:
    """The tag and length prefix of length-delimited protobuf field `number` (1 to 15)."""
    return _ONE_BYTE[number << 3 | 2] + _varint(length)


@functools.lru_cache(maxsize=None)
def _key_field(key: str) -> bytes:
    """The map entry's key field: `key: "image/format"` in wire format."""
    name = key.encode()
    return _delimited(1, len(name)) + name


def _entry(key: str, feature: bytes) -> bytes:
    """One `Features.feature` map entry (`key` → serialised `Feature`), with its tag."""
    body = _key_field(key) + b"\x12" + _varint(len(feature)) + feature   # field 2: the value
    return b"\n" + _varint(len(body)) + body                            # field 1 of Features


@functools.lru_cache(maxsize=256)
def _format_and_size(image_format: str, width: int, height: int) -> bytes:
    """The `image/format`, `image/height` and `image/width` entries: few distinct ones per export."""
    return b"".join([_entry("image/format", _bytes_feature([image_format.encode()])),
                     _entry("image/height", _int64_feature([height])),
                     _entry("image/width", _int64_feature([width]))])


def _bytes_feature(values: list[bytes]) -> bytes:
    """`Feature{bytes_list{value: values}}`."""
    body = b"".join([b"\n" + _varint(len(v)) + v for v in values])   # BytesList.value, field 1
    return b"\n" + _varint(len(body)) + body                            # Feature.bytes_list, field 1


def _packed_feature(field_tag: bytes, packed: bytes) -> bytes:
    """`Feature{float_list|int64_list{value: packed}}` (`field_tag` b"\x12" or b"\x1a"); an
    empty list keeps its kind, as the TF OD API expects of a negative's per-box features."""
    body = b"\n" + _varint(len(packed)) + packed if packed else b""
    return field_tag + _varint(len(body)) + body


def _float_feature(values: list[float]) -> bytes:
    return _packed_feature(b"\x12", struct.pack(f"<{len(values)}f", *values))


def _int64_feature(values: list[int]) -> bytes:
    if all(0 <= v < 0x80 for v in values):  # each one varint byte: ids, flags
        return _packed_feature(b"\x1a", bytes(values))
    return _packed_feature(b"\x1a", b"".join(_varint(v) for v in values))


def example_parts(image: ExportImage, data: bytes) -> tuple[bytes, bytes]:
    """The serialised `tf.train.Example` of one image as two pieces, `head + data`: `data` are
    the stored bytes, unchanged and never copied, the last value of the message.

    Written in protobuf wire format by hand: building the message through protobuf costs
    about 150 µs an image, as much as copying its 200 kB (see BENCHMARKS.md). Tests parse
    the result with `tf.train.Example` and the TF OD API decoder's feature spec."""
    normalised = [box_convert.to_normalized(b.coords, image.width, image.height) for b in image.boxes]
    entries = [
        _format_and_size(image.format, image.width, image.height),
        _entry("image/filename", _bytes_feature([image.file_name.encode("utf-8")])),
        _entry("image/source_id", _bytes_feature([str(image.image_id).encode()])),
        _entry("image/key/sha256", _bytes_feature([image.sha256.encode()])),
        *(_entry(key, _float_feature([n[position] for n in normalised]))
          for position, key in enumerate(BOX_KEYS)),
        _entry("image/object/class/text", _bytes_feature([b.name.encode("utf-8") for b in image.boxes])),
        _entry("image/object/class/label", _int64_feature([b.label_map_id for b in image.boxes])),
        _entry("image/object/difficult", _int64_feature([int(b.difficult) for b in image.boxes])),
        _entry("image/object/truncated", _int64_feature([int(b.truncated) for b in image.boxes])),
    ]
    # image/encoded: Feature{bytes_list{value: data}}, its map entry up to where `data` starts.
    bytes_list = _delimited(1, len(data))
    feature = _delimited(1, len(bytes_list) + len(data)) + bytes_list
    value = _key_field("image/encoded") + _delimited(2, len(feature) + len(data)) + feature
    encoded_head = _delimited(1, len(value) + len(data)) + value
    features = b"".join(entries)
    head = _delimited(1, len(features) + len(encoded_head) + len(data)) + features + encoded_head
    return head, data


def encode_example(image: ExportImage, data: bytes) -> bytes:
    """The serialised `tf.train.Example` of one image (see `example_parts`) in one piece."""
    return b"".join(example_parts(image, data))


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


WRITE_BATCH_BYTES = 1 << 22


def write_shard(path: Path, images: Iterable[ExportImage],
                on_example: Callable[[ExportImage], None] | None = None,
                checksum: bool = True) -> str | None:
    """Write one shard file in one pass and return its sha256 (hex; None when not `checksum`).

    Each image's stored bytes are read once, and from that one copy in memory the record's
    CRC-32C, the file's sha256 (updated with exactly the bytes written) and the write are
    taken. Records are gathered up to `WRITE_BATCH_BYTES` and written with one `writev`, so
    image bytes are never copied into a buffer. Reads, sha256 (`hashlib`) and writes release
    the GIL, so shards written in threads proceed in parallel; the CRC (`google-crc32c` holds
    the GIL below 1 MB)
    and the small features are the only work that holds it (tens of µs an image)."""
    digest = hashlib.sha256() if checksum else None
    pending: list[bytes] = []
    pending_bytes = 0
    with open(path, "wb", buffering=0) as handle:
        for image in images:
            head, data = example_parts(image, image.source.read_bytes())
            header, footer = frame(head, data)
            record = (header, head, data, footer)
            if digest:
                for piece in record:
                    digest.update(piece)
            pending.extend(record)
            pending_bytes += len(header) + len(head) + len(data) + len(footer)
            if pending_bytes >= WRITE_BATCH_BYTES or len(pending) >= 512:
                _write_all(handle.fileno(), pending)
                pending, pending_bytes = [], 0
            if on_example:
                on_example(image)
        _write_all(handle.fileno(), pending)
    return digest.hexdigest() if digest else None


def _write_all(fd: int, pieces: list[bytes]) -> None:
    """`os.writev` until every byte of `pieces` is written (a call may write fewer)."""
    views = [memoryview(p) for p in pieces if p]
    first = 0
    while first < len(views):
        written = os.writev(fd, views[first:first + 1024])   # at most IOV_MAX buffers a call
        while first < len(views) and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]


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


@dataclass
class DecodedExample:
    """One example: where it is, every feature as a list of Python values, and shortcuts."""
    file: str
    index: int
    features: dict[str, list]

    def one(self, key: str, default=None):
        values = self.features.get(key) or []
        return values[0] if values else default

    def text(self, key: str, default: str = "") -> str:
        value = self.one(key)
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else default

    @property
    def encoded(self) -> bytes | None:
        return self.one("image/encoded")

    @property
    def width(self) -> int | None:
        return self.one("image/width")

    @property
    def height(self) -> int | None:
        return self.one("image/height")

    @property
    def filename(self) -> str:
        return self.text("image/filename")

    @property
    def source_id(self) -> str:
        return self.text("image/source_id")

    @property
    def format(self) -> str:
        return self.text("image/format").lower()

    def boxes(self) -> list[dict]:
        """Per-box dicts (normalised xmin/ymin/xmax/ymax, label, text, difficult, truncated),
        as many as the shortest coordinate list."""
        f = self.features
        count = min(len(f.get(k, [])) for k in BOX_KEYS)
        labels = f.get("image/object/class/label", [])
        texts = f.get("image/object/class/text", [])
        difficult = f.get("image/object/difficult", [])
        truncated = f.get("image/object/truncated", [])
        out = []
        for i in range(count):
            out.append({
                "xmin": f["image/object/bbox/xmin"][i], "ymin": f["image/object/bbox/ymin"][i],
                "xmax": f["image/object/bbox/xmax"][i], "ymax": f["image/object/bbox/ymax"][i],
                "label": labels[i] if i < len(labels) else None,
                "text": texts[i].decode("utf-8", "replace") if i < len(texts) else None,
                "difficult": difficult[i] if i < len(difficult) else 0,
                "truncated": truncated[i] if i < len(truncated) else 0})
        return out

    def caption(self, box: dict, label_map: LabelMap | None = None) -> str:
        """The class name to show for a box: its text, else the label map's name, else the id."""
        if box.get("text"):
            return box["text"]
        if label_map and box.get("label") in label_map.by_id():
            return label_map.class_name(label_map.by_id()[box["label"]])
        return str(box.get("label"))

    def feature_rows(self) -> list[dict]:
        """One row per feature (key, kind, count, a short preview) for a features table."""
        rows = []
        for key in sorted(self.features):
            values = self.features[key]
            if values and isinstance(values[0], bytes):
                if key == "image/encoded":
                    preview = f"{len(values[0]):,} bytes"
                else:
                    preview = ", ".join(v.decode("utf-8", "replace")[:40] for v in values[:8])
                kind = "bytes"
            else:
                preview = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values[:8])
                kind = "float" if values and isinstance(values[0], float) else "int64"
            if len(values) > 8:
                preview += ", …"
            rows.append({"feature": key, "type": kind, "count": len(values), "values": preview})
        return rows


def decode(raw: bytes, file: str = "", index: int = 0) -> DecodedExample:
    """Parse a serialised `tf.train.Example`. Raises RecordError when it is not one."""
    from google.protobuf.message import DecodeError

    example = example_pb2.Example()
    try:
        example.ParseFromString(raw)
    except DecodeError as exc:
        raise RecordError(f"not a tf.train.Example: {exc}") from None
    features: dict[str, list] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        expected = FEATURE_KINDS.get(key)
        if kind and expected and kind != expected:
            raise RecordError(f"feature {key!r} is a {kind[:-5]} list; the TF OD API reads it "
                              f"as {expected[:-5]}")
        features[key] = list(getattr(feature, kind).value) if kind else []
    return DecodedExample(file, index, features)


def iter_examples(pattern: str | Path) -> Iterator[tuple[str, int, DecodedExample | RecordError]]:
    """Yield (file, record index, example or RecordError) over a whole record set."""
    for path in resolve(pattern):
        for index, raw in iter_raw(path):
            if isinstance(raw, RecordError):
                yield str(path), index, raw
                continue
            try:
                yield str(path), index, decode(raw, str(path), index)
            except RecordError as exc:
                yield str(path), index, exc


def read_page(pattern: str | Path, start: int, count: int) -> list[DecodedExample | tuple]:
    """Examples number `start` .. `start + count - 1` of the set (counting across files);
    unreadable records come back as `(file, index, RecordError)`."""
    page = []
    for number, (file, index, item) in enumerate(iter_examples(pattern)):
        if number < start:
            continue
        if number >= start + count:
            break
        page.append(item if isinstance(item, DecodedExample) else (file, index, item))
    return page


def find_label_map(pattern: str | Path) -> Path | None:
    """A `label_map.pbtxt` beside the set's first file (as Boxwise exports write it), if any."""
    try:
        first = resolve(pattern)[0]
    except NotFound:
        return None
    candidate = first.parent / "label_map.pbtxt"
    return candidate if candidate.is_file() else None


# ---------------------------------------------------------------- validation


@dataclass
class Problem:
    file: str
    index: int
    message: str

    def __str__(self) -> str:
        return f"{self.file} record {self.index}: {self.message}"


@dataclass
class Inspection:
    """What `inspect` found: files and their record counts, boxes per class, problems."""
    files: dict[str, int] = field(default_factory=dict)
    examples: int = 0
    boxes: int = 0
    negatives: int = 0
    classes: dict[str, int] = field(default_factory=dict)   # "id name" or name → box count
    problems: list[Problem] = field(default_factory=list)
    label_map: str | None = None
    compressed: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"files": self.files, "compressed": self.compressed, "examples": self.examples,
                "boxes": self.boxes, "negatives": self.negatives, "classes": self.classes,
                "label_map": self.label_map,
                "problems": [{"file": p.file, "index": p.index, "message": p.message}
                             for p in self.problems]}


def check_example(example: DecodedExample, label_map: LabelMap | None,
                  decode_image: bool = True) -> list[str]:
    """Everything wrong with one example, each as a sentence (no file/index: the caller adds them)."""
    problems = []
    f = example.features
    for key in ("image/encoded", "image/height", "image/width"):
        if not f.get(key):
            problems.append(f"missing {key}")
    lengths = {k: len(f[k]) for k in PER_BOX_KEYS if k in f}
    if len(set(lengths.values())) > 1:
        problems.append("per-box lists have different lengths: " +
                        ", ".join(f"{k.rsplit('/', 2)[-2] + '/' + k.rsplit('/', 1)[-1]}={n}"
                                  for k, n in lengths.items()))
    by_id = label_map.by_id() if label_map else {}
    for number, box in enumerate(example.boxes()):
        coords = (box["xmin"], box["ymin"], box["xmax"], box["ymax"])
        if any(c < 0.0 or c > 1.0 for c in coords):
            problems.append(f"box {number}: coordinates ({', '.join(f'{c:.4g}' for c in coords)}) "
                            "outside [0, 1] (pixel boxes instead of normalised?)")
        if box["xmax"] < box["xmin"] or box["ymax"] < box["ymin"]:
            problems.append(f"box {number}: inverted (xmin {box['xmin']:.4g}, xmax {box['xmax']:.4g}, "
                            f"ymin {box['ymin']:.4g}, ymax {box['ymax']:.4g})")
        label = box["label"]
        if label is not None and label < 1:
            problems.append(f"box {number}: class label {label} (label-map ids start at 1; "
                            "0 is the background)")
        elif label is not None and label_map and label not in by_id:
            problems.append(f"box {number}: class label {label} is not in the label map")
        if label is not None and box["text"] and label_map and label in by_id:
            expected = label_map.id_for_text(box["text"])
            if expected != label:
                problems.append(f"box {number}: class text {box['text']!r} and label {label} "
                                f"disagree (the label map says {label} is "
                                f"{label_map.class_name(by_id[label])!r})")
    data = example.encoded
    if data is not None:
        digest = example.text("image/key/sha256")
        if digest and digest != hashlib.sha256(data).hexdigest():
            problems.append("image/key/sha256 is not the sha256 of image/encoded")
        if decode_image:
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
                    size = image.size
            except Exception as exc:  # noqa: BLE001 - any decoder failure is the finding
                problems.append(f"image/encoded does not decode: {exc}")
            else:
                if example.width and example.height and size != (example.width, example.height):
                    problems.append(f"image is {size[0]}×{size[1]} but image/width×height say "
                                    f"{example.width}×{example.height}")
    return problems


def inspect(pattern: str | Path, label_map: LabelMap | None = None, label_map_source: str | None = None,
            decode_images: bool = True,
            on_progress: Callable[[int, int | None, str], None] | None = None) -> Inspection:
    """Count and validate a record set; every problem names its file and record index."""
    result = Inspection(label_map=label_map_source)
    seen_ids: dict[str, tuple[str, int]] = {}
    # Without a label map, a set must still agree with itself: one id per class text.
    id_of_text: dict[str, tuple[int, str, int]] = {}
    for path in resolve(pattern):
        result.files[str(path)] = 0
        result.compressed[str(path)] = is_gzip(path)
    for file, index, item in iter_examples(pattern):
        if isinstance(item, RecordError):
            result.problems.append(Problem(file, index, str(item)))
            continue
        result.files[file] += 1
        result.examples += 1
        for message in check_example(item, label_map, decode_images):
            result.problems.append(Problem(file, index, message))
        source_id = item.source_id
        if source_id:
            if source_id in seen_ids:
                first = seen_ids[source_id]
                result.problems.append(Problem(file, index, f"duplicate source_id {source_id!r} "
                                                            f"(first in {first[0]} record {first[1]})"))
            else:
                seen_ids[source_id] = (file, index)
        boxes = item.boxes()
        if not boxes:
            result.negatives += 1
        for number, box in enumerate(boxes):
            if label_map is None and box["text"] and box["label"] is not None:
                first = id_of_text.setdefault(box["text"], (box["label"], file, index))
                if first[0] != box["label"]:
                    result.problems.append(Problem(file, index, (
                        f"box {number}: class text {box['text']!r} has label {box['label']} here but "
                        f"{first[0]} in {first[1]} record {first[2]}")))
            result.boxes += 1
            name = item.caption(box, label_map)
            key = f"{box['label']} {name}" if box["label"] is not None and name != str(box["label"]) else name
            result.classes[key] = result.classes.get(key, 0) + 1
        if on_progress:
            on_progress(result.examples, None, f"{Path(file).name} #{index}")
    result.classes = dict(sorted(result.classes.items()))
    return result


# ---------------------------------------------------------------- extraction and preview


def preview(example: DecodedExample, label_map: LabelMap | None = None) -> Image.Image:
    """The example's image with its boxes and class names drawn. Raises Invalid if undecodable."""
    try:
        image = Image.open(io.BytesIO(example.encoded or b""))
        image.load()
    except Exception as exc:  # noqa: BLE001
        raise Invalid(f"{example.file} record {example.index}: image does not decode: {exc}") from None
    width, height = image.size
    drawn = [(example.caption(b, label_map),
              box_convert.from_normalized((b["xmin"], b["ymin"], b["xmax"], b["ymax"]), width, height),
              class_color(b["label"] if isinstance(b["label"], int) else 1))
             for b in example.boxes()]
    return drawing.draw_boxes(image, drawn)


def to_annotated(example: DecodedExample, label_map: LabelMap | None = None) -> AnnotatedImage:
    """The example as an importable image: its bytes and its normalised boxes by class name."""
    name = example.filename or f"{Path(example.file).name}-{example.index}.{example.format or 'jpg'}"
    item = AnnotatedImage(name=name, where=f"{example.file} record {example.index}",
                          width=example.width, height=example.height, normalized=True,
                          image_bytes=example.encoded)
    if not example.encoded:
        item.problems.append("missing image/encoded")
    lengths = {len(example.features.get(k, [])) for k in BOX_KEYS}
    if len(lengths) > 1:
        item.problems.append("per-box coordinate lists have different lengths")
    for number, box in enumerate(example.boxes()):
        name = box["text"]
        if not name and box["label"] is not None:
            item_by_id = label_map.by_id() if label_map else {}
            if box["label"] in item_by_id:
                name = label_map.class_name(item_by_id[box["label"]])
            else:
                item.problems.append(f"box {number}: class label {box['label']} has no class/text "
                                     "and is not in the label map")
                continue
        item.boxes.append(ObjectBox(name, box["xmin"], box["ymin"], box["xmax"], box["ymax"],
                                    int(box["difficult"] or 0), int(box["truncated"] or 0)))
    return item


@dataclass
class Extraction:
    written: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def extract(pattern: str | Path, out: str | Path, draw: bool = False,
            label_map: LabelMap | None = None,
            on_progress: Callable[[int, int | None, str], None] | None = None) -> Extraction:
    """Write every example's image to folder `out` (or into zip `out` when it ends in .zip):
    the raw encoded bytes, or with boxes and class names drawn. Names come from
    image/filename, made unique with the record index when needed."""
    out = Path(out)
    result = Extraction()
    used: set[str] = set()
    to_zip = out.suffix.lower() == ".zip"
    archive = None
    tmp_zip = out.with_name(f".{out.name}.partial")
    if to_zip:
        out.parent.mkdir(parents=True, exist_ok=True)
        archive = zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_STORED)
    else:
        out.mkdir(parents=True, exist_ok=True)
    try:
        for number, (file, index, item) in enumerate(iter_examples(pattern), start=1):
            if isinstance(item, RecordError):
                result.problems.append(Problem(file, index, str(item)))
                continue
            suffix = ".png" if item.format == "png" else ".jpg"
            stem = Path(item.filename).stem if item.filename else f"{Path(file).name}-{index:06d}"
            name = stem + suffix
            if name in used:
                name = f"{stem}-{Path(file).name}-{index:06d}{suffix}"
            try:
                if draw:
                    data = drawing.encode(preview(item, label_map), "png" if suffix == ".png" else "jpeg")
                else:
                    data = item.encoded or b""
                    if not data:
                        raise Invalid(f"{file} record {index}: no image/encoded")
            except Invalid as exc:
                result.problems.append(Problem(file, index, str(exc)))
                continue
            used.add(name)
            if archive is not None:
                archive.writestr(name, data)
            else:
                atomic.write_bytes(out / name, data)
            result.written.append(name)
            if on_progress:
                on_progress(number, None, name)
        if archive is not None:
            archive.close()
            archive = None
            tmp_zip.replace(out)
    finally:
        if archive is not None:
            archive.close()
            tmp_zip.unlink(missing_ok=True)
    return result


def read(path: str | Path, images_dir: Path | None = None) -> ReadResult:
    """Importer entry point: every example of a record set as an `AnnotatedImage` (normalised
    boxes, image bytes from image/encoded). A `label_map.pbtxt` beside the records names
    boxes that carry only a label id."""
    from backend.formats import label_map as label_map_format

    result = ReadResult()
    try:
        files = resolve(path)
    except NotFound as exc:
        result.problems.append(str(exc))
        return result
    found = find_label_map(path)
    label_map = None
    if found:
        try:
            label_map = label_map_format.read(found)
            result.notes.extend(label_map.notes)
        except Invalid as exc:
            result.problems.append(str(exc))
    for file in files:
        for index, offset, raw in iter_framed(file):
            if isinstance(raw, RecordError):
                result.problems.append(f"{file} record {index}: {raw}")
                continue
            try:
                item = to_annotated(decode(raw, str(file), index), label_map)
            except RecordError as exc:
                result.problems.append(f"{file} record {index}: {exc}")
                continue
            if offset is not None and item.image_bytes is not None:
                # Keep the place, not the bytes: a big set is imported one image at a time.
                item.image_bytes = None
                item.load = functools.partial(_encoded_at, file, offset)
            result.images.append(item)
    return result


def _encoded_at(path: Path, offset: int) -> bytes | None:
    return decode(read_record_at(path, offset)).encoded
