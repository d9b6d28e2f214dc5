"""TF OD API TFRecords as dataset versions and imports use them: shard names, writing a shard,
reading a record set's examples, and `read`, the importer entry point.

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
these separated by commas; GZIP-compressed files are recognised by their magic bytes
(`tfrecord_framing`, which also frames records: length, CRC-32C). Examples are parsed with
`backend/tf_protos/example.proto` and written in wire format by hand (`tf_example`): neither reading nor writing
imports TensorFlow. Validating a set is `tfrecord_checks`, drawing and extracting its images
`tfrecord_preview`.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from backend.errors import Invalid, NotFound
from backend.formats.label_map import LabelMap
from backend.formats.records import AnnotatedImage, ExportImage, ObjectBox, ReadResult
from backend.formats import tf_example, tfrecord_framing


def shard_name(split: str, index: int, count: int) -> str:
    """`train.record-00003-of-00010`: the TF OD API's sharded-file naming."""
    return f"{split}.record-{index:05d}-of-{count:05d}"


def shard_glob(split: str, count: int) -> str:
    """The `input_path` glob matching every shard of a split: `train.record-?????-of-00010`."""
    return f"{split}.record-?????-of-{count:05d}"


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
            head, data = tf_example.example_parts(image, image.source.read_bytes())
            header, footer = tfrecord_framing.frame(head, data)
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


def iter_examples(pattern: str | Path) -> Iterator[tuple[str, int, tf_example.DecodedExample | tfrecord_framing.RecordError]]:
    """Yield (file, record index, example or RecordError) over a whole record set."""
    for path in tfrecord_framing.resolve(pattern):
        for index, raw in tfrecord_framing.iter_raw(path):
            if isinstance(raw, tfrecord_framing.RecordError):
                yield str(path), index, raw
                continue
            try:
                yield str(path), index, tf_example.decode(raw, str(path), index)
            except tfrecord_framing.RecordError as exc:
                yield str(path), index, exc


def read_page(pattern: str | Path, start: int, count: int) -> list[tf_example.DecodedExample | tuple]:
    """Examples number `start` .. `start + count - 1` of the set (counting across files);
    unreadable records come back as `(file, index, RecordError)`."""
    page = []
    for number, (file, index, item) in enumerate(iter_examples(pattern)):
        if number < start:
            continue
        if number >= start + count:
            break
        page.append(item if isinstance(item, tf_example.DecodedExample) else (file, index, item))
    return page


def find_label_map(pattern: str | Path) -> Path | None:
    """A `label_map.pbtxt` beside the set's first file (as Boxwise exports write it), if any."""
    try:
        first = tfrecord_framing.resolve(pattern)[0]
    except NotFound:
        return None
    candidate = first.parent / "label_map.pbtxt"
    return candidate if candidate.is_file() else None


def to_annotated(example: tf_example.DecodedExample, label_map: LabelMap | None = None) -> AnnotatedImage:
    """The example as an importable image: its bytes and its normalised boxes by class name."""
    name = example.filename or f"{Path(example.file).name}-{example.index}.{example.format or 'jpg'}"
    item = AnnotatedImage(name=name, where=f"{example.file} record {example.index}",
                          width=example.width, height=example.height, normalized=True,
                          image_bytes=example.encoded)
    if not example.encoded:
        item.problems.append("missing image/encoded")
    lengths = {len(example.features.get(k, [])) for k in tf_example.BOX_KEYS}
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


def read(path: str | Path, images_dir: Path | None = None) -> ReadResult:
    """Importer entry point: every example of a record set as an `AnnotatedImage` (normalised
    boxes, image bytes from image/encoded). A `label_map.pbtxt` beside the records names
    boxes that carry only a label id."""
    from backend.formats import label_map as label_map_format

    result = ReadResult()
    try:
        files = tfrecord_framing.resolve(path)
    except NotFound as exc:
        result.problems.append(str(exc))
        return result
    found = find_label_map(path)
    label_map = None
    if found:
        try:
            label_map = label_map_format.read(found)
            result.notes.extend(label_map.notes)
        except (Invalid, NotFound) as exc:
            result.problems.append(str(exc))
    for file in files:
        for index, offset, raw in tfrecord_framing.iter_framed(file):
            if isinstance(raw, tfrecord_framing.RecordError):
                result.problems.append(f"{file} record {index}: {raw}")
                continue
            try:
                item = to_annotated(tf_example.decode(raw, str(file), index), label_map)
            except tfrecord_framing.RecordError as exc:
                result.problems.append(f"{file} record {index}: {exc}")
                continue
            if offset is not None and item.image_bytes is not None:
                # Keep the place, not the bytes: a big set is imported one image at a time.
                item.image_bytes = None
                item.load = functools.partial(_encoded_at, file, offset)
            result.images.append(item)
    return result


def _encoded_at(path: Path, offset: int) -> bytes | None:
    return tf_example.decode(tfrecord_framing.read_record_at(path, offset)).encoded
