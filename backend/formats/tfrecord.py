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
Examples are (de)serialised with protobuf alone; TensorFlow is imported only to write
record files (its TFRecordWriter computes the CRC32C framing), so browsing starts fast.
"""
from __future__ import annotations

import functools
import glob as globlib
import gzip
import hashlib
import io
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from PIL import Image

from backend import atomic
from backend.errors import Invalid, NotFound
from backend.formats import boxes as box_convert, drawing
from backend.formats.label_map import LabelMap
from backend.formats.records import AnnotatedImage, ExportImage, ObjectBox

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


_EXAMPLE_PROTO = None


def _example_class():
    """`tf.train.Example` and friends built from their .proto definition with protobuf alone,
    in a private descriptor pool: reading and writing Examples never imports TensorFlow
    (seconds of start-up); only TFRecordWriter, for the record framing, does."""
    global _EXAMPLE_PROTO
    if _EXAMPLE_PROTO is None:
        import types

        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        F = descriptor_pb2.FieldDescriptorProto
        proto = descriptor_pb2.FileDescriptorProto(name="boxwise/tf_example.proto",
                                                   package="tensorflow", syntax="proto3")

        def message(name, fields, parent=None):
            body = (parent.nested_type if parent else proto.message_type).add(name=name)
            for field_name, number, kind, label, type_name, oneof in fields:
                field = body.field.add(name=field_name, number=number, type=kind, label=label)
                if type_name:
                    field.type_name = type_name
                if oneof is not None:
                    field.oneof_index = oneof
            return body

        repeated, optional = F.LABEL_REPEATED, F.LABEL_OPTIONAL
        message("BytesList", [("value", 1, F.TYPE_BYTES, repeated, None, None)])
        message("FloatList", [("value", 1, F.TYPE_FLOAT, repeated, None, None)])
        message("Int64List", [("value", 1, F.TYPE_INT64, repeated, None, None)])
        feature = message("Feature", [
            ("bytes_list", 1, F.TYPE_MESSAGE, optional, ".tensorflow.BytesList", 0),
            ("float_list", 2, F.TYPE_MESSAGE, optional, ".tensorflow.FloatList", 0),
            ("int64_list", 3, F.TYPE_MESSAGE, optional, ".tensorflow.Int64List", 0)])
        feature.oneof_decl.add(name="kind")
        features = message("Features", [("feature", 1, F.TYPE_MESSAGE, repeated,
                                         ".tensorflow.Features.FeatureEntry", None)])
        entry = message("FeatureEntry", [("key", 1, F.TYPE_STRING, optional, None, None),
                                         ("value", 2, F.TYPE_MESSAGE, optional, ".tensorflow.Feature", None)],
                        parent=features)
        entry.options.map_entry = True
        message("Example", [("features", 1, F.TYPE_MESSAGE, optional, ".tensorflow.Features", None)])
        pool = descriptor_pool.DescriptorPool()
        pool.Add(proto)
        classes = message_factory.GetMessageClassesForFiles([proto.name], pool)
        _EXAMPLE_PROTO = types.SimpleNamespace(Example=classes["tensorflow.Example"])
    return _EXAMPLE_PROTO


def _varint(value: int) -> bytes:
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
    """The tag and length prefix of length-delimited protobuf field `number`."""
    return _varint(number << 3 | 2) + _varint(length)


def _encoded_image_entry(data: bytes) -> list[bytes]:
    """`Example{features{feature{"image/encoded": Feature{bytes_list{value: data}}}}}` in wire
    format, as [prefix, data]: the image bytes are never copied into a message."""
    bytes_list = _delimited(1, len(data))                          # BytesList.value
    feature = _delimited(1, len(bytes_list) + len(data))           # Feature.bytes_list
    feature_size = len(feature) + len(bytes_list) + len(data)
    key = b"image/encoded"
    entry = _delimited(1, len(key)) + key + _delimited(2, feature_size)   # map entry key, value
    entry_size = len(entry) + feature_size
    features = _delimited(1, entry_size)                           # Features.feature (map)
    example = _delimited(1, len(features) + entry_size)            # Example.features
    return [example + features + entry + feature + bytes_list, data]


def encode_example(image: ExportImage, data: bytes) -> bytes:
    """The serialised `tf.train.Example` of one image. `data` are the stored bytes, unchanged.

    The small features are serialised by protobuf; `image/encoded` is appended in wire format
    (two serialised messages back to back are one merged message in protobuf), so the image
    bytes are copied exactly once. Tests parse the result with TensorFlow's decoder spec."""
    pb = _example_class()
    example = pb.Example()
    feature = example.features.feature
    normalised = [box_convert.to_normalized(b.coords, image.width, image.height) for b in image.boxes]
    feature["image/format"].bytes_list.value.append(image.format.encode())
    feature["image/height"].int64_list.value.append(image.height)
    feature["image/width"].int64_list.value.append(image.width)
    feature["image/filename"].bytes_list.value.append(image.file_name.encode("utf-8"))
    feature["image/source_id"].bytes_list.value.append(str(image.image_id).encode())
    feature["image/key/sha256"].bytes_list.value.append(image.sha256.encode())
    for position, key in enumerate(BOX_KEYS):
        feature[key].float_list.value.extend([n[position] for n in normalised])
    feature["image/object/class/text"].bytes_list.value.extend([b.name.encode("utf-8") for b in image.boxes])
    feature["image/object/class/label"].int64_list.value.extend([b.label_map_id for b in image.boxes])
    feature["image/object/difficult"].int64_list.value.extend([int(b.difficult) for b in image.boxes])
    feature["image/object/truncated"].int64_list.value.extend([int(b.truncated) for b in image.boxes])
    if not image.boxes:  # a negative: the per-box lists exist, empty, with their types
        for key in BOX_KEYS:
            feature[key].float_list.SetInParent()
        feature["image/object/class/text"].bytes_list.SetInParent()
        for key in ("image/object/class/label", "image/object/difficult", "image/object/truncated"):
            feature[key].int64_list.SetInParent()
    return b"".join([example.SerializeToString(), *_encoded_image_entry(data)])


def write_shard(path: Path, images: Iterable[ExportImage],
                on_example: Callable[[ExportImage], None] | None = None,
                checksum: bool = True) -> str | None:
    """Write one shard file and return its sha256 (hex; None when not `checksum`). Image bytes are read from each
    image's stored file and passed through. The hash is taken here, in the shard's own
    thread, while the file is still in the page cache (hashlib releases the GIL)."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for image in images:
            writer.write(encode_example(image, image.source.read_bytes()))
            if on_example:
                on_example(image)
    if not checksum:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- reading


def resolve(pattern: str | Path) -> list[Path]:
    """The files of a record set: a file, a folder (its `*.record*`/`*.tfrecord*` files), a
    glob, `name@N` (shards `name-?????-of-0000N`), or several of these separated by commas. Raises NotFound when nothing matches."""
    files: list[Path] = []
    for part in str(pattern).split(","):
        part = part.strip()
        if not part:
            continue
        sharded = re.fullmatch(r"(.+)@(\d+)", part)
        if sharded and not Path(part).exists():  # `train.record@10`: the sharded-set shorthand
            part = f"{sharded.group(1)}-?????-of-{int(sharded.group(2)):05d}"
        path = Path(part).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and
                           (".record" in p.name or ".tfrecord" in p.name))
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


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


class RecordError(Exception):
    """A record that cannot be read (truncated file, bad framing)."""


_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def iter_raw(path: Path) -> Iterator[tuple[int, bytes | RecordError]]:
    """Yield (record index, serialised record) of one TFRecord file (plain or GZIP).

    The framing is checked (length and its CRC); a broken record ends the file with one
    `RecordError`. The payload CRC is not recomputed here (pure Python would be slow).
    """
    for index, _, payload in iter_framed(path):
        yield index, payload


def iter_framed(path: Path) -> Iterator[tuple[int, int | None, bytes | RecordError]]:
    """Like `iter_raw`, with each record's byte offset in the file (None inside GZIP files)."""
    compressed = is_gzip(path)
    opener = gzip.open if compressed else open
    with opener(path, "rb") as handle:
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
            if _masked_crc32c(header[:8]) != length_crc:
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


def read_record_at(path: Path, offset: int) -> bytes:
    """The serialised record at byte `offset` of a plain (not GZIP) TFRecord file."""
    with open(path, "rb") as handle:
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

    example = _example_class().Example()
    try:
        example.ParseFromString(raw)
    except DecodeError as exc:
        raise RecordError(f"not a tf.train.Example: {exc}") from None
    features: dict[str, list] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
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
              box_convert.from_normalized((b["xmin"], b["ymin"], b["xmax"], b["ymax"]), width, height))
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


def read(path: str | Path, images_dir: Path | None = None) -> "ReadResult":
    """Importer entry point: every example of a record set as an `AnnotatedImage` (normalised
    boxes, image bytes from image/encoded). A `label_map.pbtxt` beside the records names
    boxes that carry only a label id."""
    from backend.formats import label_map as label_map_format
    from backend.formats.records import ReadResult

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
