"""`tf.train.Example`, the message inside each TFRecord: the feature keys and kinds the TF OD API
reads, encoding in protobuf wire format by hand (`example_parts`, `encode_example`: one fixed
feature order, reproducible bytes) and decoding with `backend/tf_protos/example.proto` (`decode` into a
`DecodedExample`), without TensorFlow.
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from backend.formats import boxes as box_convert, tfrecord_framing
from backend.formats.label_map import LabelMap
from backend.formats.records import ExportImage
from backend.tf_protos import example_pb2


BOX_KEYS = ("image/object/bbox/xmin", "image/object/bbox/ymin", "image/object/bbox/xmax",
            "image/object/bbox/ymax")
PER_BOX_KEYS = BOX_KEYS + ("image/object/class/label", "image/object/class/text",
                           "image/object/difficult", "image/object/truncated")


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

    Written in protobuf wire format by hand, the features always in the same order, so the
    same image gives the same bytes in every process: protobuf's own serialisation writes the
    feature map in an order that changes between processes (ARCHITECTURE.md, "Protobuf: one
    strategy"). Tests pin the bytes and parse them with `tf.train.Example` and the TF OD
    API decoder's feature spec."""
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
        raise tfrecord_framing.RecordError(f"not a tf.train.Example: {exc}") from None
    features: dict[str, list] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        expected = FEATURE_KINDS.get(key)
        if kind and expected and kind != expected:
            raise tfrecord_framing.RecordError(f"feature {key!r} is a {kind[:-5]} list; the TF OD API reads it "
                              f"as {expected[:-5]}")
        features[key] = list(getattr(feature, kind).value) if kind else []
    return DecodedExample(file, index, features)
